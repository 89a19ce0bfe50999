//! `augur`: run self-supervised ablation sweeps; see `augur --help`.
use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // `augur runs | head` ends quietly when the reader closes the pipe, as
    // Unix tools do, instead of panicking on the next print.
    #[cfg(unix)]
    // SAFETY: set once, before any thread exists; SIG_DFL is always valid.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    keep_freed_memory();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("AUGUR_LOG"))
        .with_writer(std::io::stderr)
        .init();
    let cli = augur::cli::Cli::parse();
    match augur::cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            let chain: Vec<String> = e.chain().map(|c| c.to_string()).collect();
            eprintln!("error: {}", chain.join(": ").replace('\n', " "));
            ExitCode::FAILURE
        }
    }
}

/// A training step frees and allocates the same activation-sized buffers
/// every step. glibc's defaults hand the large ones back to the kernel
/// (`munmap`, heap trimming) and fault them in again, zeroed, the next step:
/// 12% of a libtorch CPU step on the AVX-512 machine (docs/benchmarks.md,
/// "libtorch's own gradients through its autograd tape"). Keep buffers up to glibc's
/// largest mmap threshold (32 MiB) on the heap and never trim it, so the
/// process reuses its own pages; its resident memory stays at its peak.
fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; called before any thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
    }
}
