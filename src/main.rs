//! `fap-warehouse`: see `fap-warehouse --help` and the README.

use std::process::ExitCode;

/// DataFusion frees batches on other threads than the ones that made them;
/// glibc's allocator makes them wait on each other's arena locks for it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    fap_warehouse::cli::main()
}
