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
