//! Standard output for every command of the `openmvs` and `openmvs-bench` binaries. `println!`
//! panics when the reader has gone away (`openmvs return-codes | head`); [`outln!`](crate::outln)
//! instead ends the process quietly with status 0, the reader having taken all it wanted, as `cat`
//! or `grep` would. Any other write error (a full disk behind a redirection) is reported on standard
//! error with status 1. Both binaries refuse `println!` itself with `clippy::print_stdout`.

use std::fmt;
use std::io::{ErrorKind, Write};

/// Writes one line to standard output; see [`crate::out`] for a closed output.
#[macro_export]
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::out::line(format_args!($($arg)*))
    };
}

/// Writes `args` and a newline to standard output, or ends the process as the module says.
pub fn line(args: fmt::Arguments<'_>) {
    if let Err(e) = try_line(args) {
        if e.kind() == ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        let program = std::env::args().next().unwrap_or_default();
        let program =
            std::path::Path::new(&program).file_name().and_then(|n| n.to_str()).unwrap_or("openmvs");
        eprintln!("{program}: writing to standard output: {e}");
        std::process::exit(1);
    }
}

/// Writes `args` and a newline to standard output, flushed; the error is the caller's to judge
/// (a server keeps serving when nobody reads its standard output).
pub fn try_line(args: fmt::Arguments<'_>) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_fmt(args)?;
    out.write_all(b"\n")?;
    out.flush()
}
