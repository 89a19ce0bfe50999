//! `augur`: run self-supervised ablation sweeps; see `augur --help`.
use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
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
