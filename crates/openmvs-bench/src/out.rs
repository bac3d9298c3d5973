//! Standard output for every subcommand. `println!` panics when the reader has gone away
//! (`openmvs-bench suite | head`); [`outln!`] instead ends the process quietly with status 0,
//! the reader having taken all it wanted, as `cat` or `grep` would. Any other write error (a full
//! disk behind a redirection) is reported on standard error with status 1. `println!` itself is
//! refused in this crate by `clippy::print_stdout`.

use std::fmt;
use std::io::{ErrorKind, Write};

/// Writes one line to standard output; see the module documentation for a closed output.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::out::line(format_args!($($arg)*))
    };
}
pub(crate) use outln;

/// Writes `args` and a newline to standard output, or ends the process as the module says.
pub fn line(args: fmt::Arguments<'_>) {
    if let Err(e) = try_line(args) {
        if e.kind() == ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("openmvs-bench: writing to standard output: {e}");
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
