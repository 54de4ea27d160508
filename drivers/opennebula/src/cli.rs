//! Command-line parsing shared by our binaries, writing through injectable
//! streams so tests drive the binaries in-process.

use std::ffi::OsString;

use clap::Parser;

use crate::driver::Io;

/// Exit code for a command line that cannot be understood.
pub const EXIT_USAGE: u8 = 2;

/// Parses `argv`. `--help` and `--version` print to stdout and give `Err(0)`;
/// a usage error prints to stderr and gives `Err(EXIT_USAGE)`.
pub fn parse_args<C: Parser>(argv: Vec<OsString>, io: &mut Io<'_>) -> Result<C, u8> {
    C::try_parse_from(argv).map_err(|e| {
        let text = e.render().to_string();
        if e.use_stderr() {
            let _ = io.stderr.write_all(text.as_bytes());
            EXIT_USAGE
        } else {
            let _ = io.stdout.write_all(text.as_bytes());
            0
        }
    })
}
