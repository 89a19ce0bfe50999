//! Computes the build fingerprint that every plugin embeds and the runner
//! checks before it touches any Rust type from a plugin.
use std::process::Command;

fn main() {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let version = Command::new(&rustc)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| "rustc (unknown)".into());
    let mut features: Vec<String> = std::env::vars()
        .filter_map(|(k, _)| k.strip_prefix("CARGO_FEATURE_").map(|f| f.to_lowercase()))
        .collect();
    features.sort();
    let profile = std::env::var("PROFILE").unwrap_or_default();
    println!(
        "cargo:rustc-env=AUGUR_FINGERPRINT=augur-core {} | {} | burn 0.22.1 [flex,autodiff{}] | {}",
        std::env::var("CARGO_PKG_VERSION").unwrap(),
        version,
        features.iter().map(|f| format!(",{f}")).collect::<String>(),
        profile,
    );
    println!("cargo:rerun-if-changed=build.rs");
}
