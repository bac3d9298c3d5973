//! Reading and atomically replacing the files of the CA directory.
//!
//! A file is replaced by writing a temporary file beside it, syncing it, renaming it over the
//! old one and syncing the directory. A rename within a directory is atomic, so after a crash
//! each file holds either its old or its new contents, never a mix; the directory sync makes the
//! rename itself durable before the caller is told the write is done.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

use crate::PkiError;

/// Who may read a written file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// Whatever the process's umask allows: certificates, the CRL, the record.
    Public,
    /// The owner only (mode 0600): the CA's private key.
    OwnerOnly,
}

/// Replaces `dir/name` with `contents`, atomically and durably.
pub(crate) fn write_atomic(dir: &Path, name: &str, contents: &[u8], access: Access) -> Result<(), PkiError> {
    let path = dir.join(name);
    let tmp = dir.join(format!(".{name}.tmp"));
    let io_err = |source: io::Error| PkiError::Io { path: path.clone(), source };
    // A temporary file left by a crash may carry other permissions; it is removed so that the
    // file made below is new and gets exactly the mode asked for.
    match fs::remove_file(&tmp) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(io_err(e)),
        _ => {}
    }
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // The mode is set when the file is created, so the key is never readable by others,
        // not even for the moment between creating and restricting it.
        options.mode(if access == Access::OwnerOnly { 0o600 } else { 0o644 });
    }
    let mut file = options.open(&tmp).map_err(io_err)?;
    file.write_all(contents).map_err(io_err)?;
    file.sync_all().map_err(io_err)?;
    drop(file);
    fs::rename(&tmp, &path).map_err(io_err)?;
    sync_dir(dir)
}

/// Makes renames and new entries in `dir` durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), PkiError> {
    // Only Unix lets a directory be opened and synced; elsewhere the file system decides when a
    // rename is durable.
    #[cfg(unix)]
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| PkiError::Io { path: dir.to_path_buf(), source })?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// The text of `dir/name`.
pub(crate) fn read_text(dir: &Path, name: &str) -> Result<String, PkiError> {
    let path = dir.join(name);
    fs::read_to_string(&path).map_err(|source| PkiError::Io { path, source })
}
