//! `fap-warehouse`: see `fap-warehouse --help` and the README.

use std::process::ExitCode;

fn main() -> ExitCode {
    fap_warehouse::cli::main()
}
