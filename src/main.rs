//! `fap-warehouse`: see `fap-warehouse --help` and the README.

use std::process::ExitCode;

/// DataFusion allocates and frees many short-lived buffers across threads;
/// mimalloc (as in DataFusion's own CLI) measured ~5% less CPU and wall than
/// glibc malloc for a first `run`, and a faster rerun (README, Benchmarks).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    fap_warehouse::cli::main()
}
