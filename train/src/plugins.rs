//! Loading method plugins at run time.
//!
//! A plugin is a file `libaugur_plugin_<name>.so` in the plugins directory
//! (default: next to the `augur` binary; `--plugins DIR` or `AUGUR_PLUGINS`
//! override it). For each, the loader reads the C-ABI fingerprint first and
//! refuses a plugin built against another augur-core, rustc or feature set;
//! only then does it call the Rust registration function. Libraries are never
//! unloaded: components they created may live until the process ends.

use std::ffi::{CStr, c_char};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use anyhow::{Result, anyhow, bail};
use augur_core::plugin::{Component, ComponentKind, FINGERPRINT, FINGERPRINT_SYMBOL, REGISTER_SYMBOL, Registry};

/// Prefix and suffix of plugin file names.
pub const PREFIX: &str = "libaugur_plugin_";
pub const SUFFIX: &str = std::env::consts::DLL_SUFFIX;

/// One loaded plugin and what it registered.
pub struct Plugin {
    pub name: String,
    pub path: PathBuf,
    pub fingerprint: String,
    pub components: Vec<Component>,
}

/// Every plugin found in a directory.
pub struct Plugins {
    pub dir: PathBuf,
    pub plugins: Vec<Plugin>,
}

/// The directory plugins are read from: `--plugins`, else `AUGUR_PLUGINS`,
/// else the directory of the running binary.
pub fn plugin_dir(cli: Option<&Path>) -> PathBuf {
    if let Some(dir) = cli {
        return dir.to_path_buf();
    }
    if let Some(dir) = std::env::var_os("AUGUR_PLUGINS") {
        return PathBuf::from(dir);
    }
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.to_path_buf()))
        .map(|d| if d.ends_with("deps") { d.parent().unwrap_or(&d).to_path_buf() } else { d })
        .unwrap_or_else(|| PathBuf::from("."))
}

impl Plugins {
    /// Load every `libaugur_plugin_*.so` in `dir`.
    pub fn load_dir(dir: &Path) -> Result<Plugins> {
        let entries = std::fs::read_dir(dir).map_err(|e| {
            anyhow!(
                "cannot read plugins directory {}: {e}; build the plugins (cargo build --release) or pass --plugins DIR",
                dir.display()
            )
        })?;
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(PREFIX) && n.ends_with(SUFFIX))
            })
            .collect();
        paths.sort();
        let plugins = paths.iter().map(|p| load_plugin(p)).collect::<Result<Vec<_>>>()?;
        Ok(Plugins {
            dir: dir.to_path_buf(),
            plugins,
        })
    }

    /// Find a component by kind and name, with an error listing what exists.
    pub fn find(&self, kind: ComponentKind, name: &str) -> Result<&Component> {
        self.plugins
            .iter()
            .flat_map(|p| &p.components)
            .find(|c| c.kind() == kind && c.name == name)
            .ok_or_else(|| {
                let known: Vec<&str> = self
                    .plugins
                    .iter()
                    .flat_map(|p| &p.components)
                    .filter(|c| c.kind() == kind)
                    .map(|c| c.name.as_str())
                    .collect();
                anyhow!(
                    "no plugin provides {} `{name}` (found in {}: {}); check the name or build its plugin",
                    kind.name(),
                    self.dir.display(),
                    if known.is_empty() { "none".to_string() } else { known.join(", ") }
                )
            })
    }
}

/// Read a plugin's fingerprint without trusting anything else in it.
pub fn read_fingerprint(lib: &libloading::Library, path: &Path) -> Result<String> {
    // SAFETY: the symbol is declared by `export_plugin!` as
    // `extern "C" fn() -> *const c_char` returning a static NUL-terminated string.
    let f: libloading::Symbol<unsafe extern "C" fn() -> *const c_char> =
        unsafe { lib.get(FINGERPRINT_SYMBOL) }.map_err(|_| {
            anyhow!(
                "{} is not an Augur plugin: it exports no `augur_plugin_fingerprint` (use augur_core::export_plugin!)",
                path.display()
            )
        })?;
    // SAFETY: see above.
    let ptr = unsafe { f() };
    if ptr.is_null() {
        bail!("{}: the plugin returned no fingerprint", path.display());
    }
    // SAFETY: non-null, NUL-terminated static string.
    Ok(unsafe { CStr::from_ptr(ptr) }.to_string_lossy().into_owned())
}

/// What each plugin contract changed (core/build.rs's `PLUGIN_CONTRACT`).
const CONTRACT_CHANGES: [(u32, &str); 1] = [(2, "methods, components and momentum copies take `&Backbone` where they took `&ResNet`")];

/// The plugin contract a fingerprint names; 1 for one from before contracts
/// were numbered.
fn contract_of(fingerprint: &str) -> u32 {
    fingerprint
        .split_once(" contract ")
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(1)
}

/// Load one plugin: check its fingerprint, then let it register.
pub fn load_plugin(path: &Path) -> Result<Plugin> {
    // SAFETY: loading a library runs its initialisers; Augur plugins have none
    // beyond Rust's. A library built against another augur-core usually fails
    // right here with an undefined symbol, which we report as a mismatch.
    let lib = unsafe { libloading::Library::new(path) }.map_err(|e| {
        anyhow!(
            "cannot load plugin {}: {e}; if it was built against another augur-core, rebuild it with this workspace (cargo build --release); if the workspace no longer builds that plugin (a removed or merged crate), delete the file",
            path.display()
        )
    })?;
    let fingerprint = read_fingerprint(&lib, path)?;
    let (theirs, ours) = (contract_of(&fingerprint), contract_of(FINGERPRINT));
    if theirs != ours {
        bail!(
            "plugin {} was built against plugin contract {theirs}, this runner's is {ours} ({}): rebuild the plugin against this augur-core (cargo build --release; docs/writing-a-plugin.md says what changed); plugin fingerprint `{fingerprint}`, runner fingerprint `{FINGERPRINT}`",
            path.display(),
            CONTRACT_CHANGES.iter().filter(|(n, _)| *n > theirs && *n <= ours).map(|(n, what)| format!("{n}: {what}")).collect::<Vec<_>>().join("; ")
        );
    }
    if fingerprint != FINGERPRINT {
        bail!(
            "plugin {} was built for another Augur: plugin fingerprint `{fingerprint}`, runner fingerprint `{FINGERPRINT}`; rebuild the plugin with the same toolchain and Cargo.lock as the runner (cargo build --release)",
            path.display()
        );
    }
    // SAFETY: fingerprints match, so the plugin was compiled by the same rustc
    // against the same augur-core: the Rust ABI of this signature is the same.
    let register: libloading::Symbol<fn(&mut Registry)> = unsafe { lib.get(REGISTER_SYMBOL) }
        .map_err(|_| anyhow!("{} exports no `augur_plugin_register`", path.display()))?;
    let mut registry = Registry::default();
    catch_unwind(AssertUnwindSafe(|| register(&mut registry)))
        .map_err(|p| anyhow!("plugin {} panicked while registering: {}", path.display(), panic_message(&p)))?;
    // Never unload: objects made by the plugin may outlive any scope here.
    std::mem::forget(lib);
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .map(|n| n.trim_start_matches(PREFIX).trim_end_matches(SUFFIX).to_string())
        .unwrap_or_default();
    Ok(Plugin {
        name,
        path: path.to_path_buf(),
        fingerprint,
        components: registry.components,
    })
}

/// The text of a caught panic.
pub fn panic_message(payload: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-text payload".into()
    }
}
