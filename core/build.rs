//! Computes the build fingerprint that every plugin embeds and the runner
//! checks before it touches any Rust type from a plugin; with the `tch`
//! feature, compiles src/fused/native.cpp against torch-sys's libtorch.
use std::process::Command;

/// The plugin contract's version: what the traits a plugin implements take.
/// Raised when they change shape, so a plugin built against an earlier one
/// is refused with a message to rebuild it (2: one `Backbone` type where
/// methods, components and momentum copies took `&ResNet`).
const PLUGIN_CONTRACT: u32 = 2;

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
        "cargo:rustc-env=AUGUR_FINGERPRINT=augur-core {} contract {PLUGIN_CONTRACT} | {} | burn 0.22.1 [flex,autodiff{}] | {}",
        std::env::var("CARGO_PKG_VERSION").unwrap(),
        version,
        features.iter().map(|f| format!(",{f}")).collect::<String>(),
        profile,
    );
    println!("cargo:rerun-if-changed=build.rs");
    #[cfg(feature = "tch")]
    compile_native();
}

/// libtorch's backward kernels tch does not expose (src/fused/native.rs),
/// built with the flags torch-sys builds its own C++ with.
#[cfg(feature = "tch")]
fn compile_native() {
    let lib = std::path::PathBuf::from(
        std::env::var("DEP_TCH_LIBTORCH_LIB").expect("torch-sys says where libtorch is (run cargo through scripts/tch.sh)"),
    );
    let include = lib.parent().expect("libtorch's lib folder has a parent").join("include");
    // PyTorch 2.9.0's wheels (scripts/tch.sh's venv) use the C++11 ABI; an
    // unpacked libtorch names its own with LIBTORCH_CXX11_ABI, as for torch-sys.
    let abi = std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".into());
    println!("cargo:rerun-if-changed=src/fused/native.cpp");
    println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");
    cc::Build::new()
        .cpp(true)
        .pic(true)
        .warnings(false)
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        .flag("-std=c++17")
        .flag(format!("-D_GLIBCXX_USE_CXX11_ABI={abi}"))
        .flag("-DGLOG_USE_GLOG_EXPORT")
        .file("src/fused/native.cpp")
        .compile("augur_native");
}
