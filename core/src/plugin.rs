//! The plugin ABI: a build fingerprint, checked before any Rust type crosses,
//! and a registry of named components that a plugin fills.
//!
//! A plugin crate is a Rust `dylib` linking this same `augur-core` dylib, so
//! host and plugins share one copy of burn (its autodiff state is
//! process-wide). Rust has no stable ABI, so the host first reads the
//! plugin's fingerprint through a C function and refuses a plugin built by
//! another compiler, another augur-core or other features.

use crate::aware::AwarenessFactory;
use crate::method::MethodFactory;
use crate::options::{Options, OptionsSpec};

/// This build's fingerprint: augur-core version, rustc version, burn version
/// and features, profile. A plugin embeds the value it was compiled against.
pub const FINGERPRINT: &str = env!("AUGUR_FINGERPRINT");

/// [`FINGERPRINT`] as a C string, for the exported C function.
pub const FINGERPRINT_NUL: &str = concat!(env!("AUGUR_FINGERPRINT"), "\0");

/// Name of the exported C function returning the fingerprint.
pub const FINGERPRINT_SYMBOL: &[u8] = b"augur_plugin_fingerprint";
/// Name of the exported registration function (Rust ABI).
pub const REGISTER_SYMBOL: &[u8] = b"augur_plugin_register";

/// The kind of a registered component.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ComponentKind {
    /// A whole method, selected by `method.name`.
    Method,
    /// An augmentation-aware component added to a method (`method.aware`).
    Awareness,
}

impl ComponentKind {
    pub fn name(self) -> &'static str {
        match self {
            ComponentKind::Method => "method",
            ComponentKind::Awareness => "awareness",
        }
    }
}

/// How to build a registered component.
#[derive(Clone, Copy)]
pub enum Factory {
    Method(MethodFactory),
    Awareness(AwarenessFactory),
}

/// One named component a plugin registers.
#[derive(Clone)]
pub struct Component {
    pub name: String,
    pub summary: String,
    /// Its options table: resolving it, listing it.
    pub options: OptionsSpec,
    pub factory: Factory,
    /// A method's default augmentation recipe (its authors' pipeline,
    /// `augur_core::augment::recipes`), written into each run that names
    /// none. `None`: `simclr-cifar`.
    pub recipe: Option<String>,
    /// A method whose authors start each residual block at the identity
    /// (`model.zero_init_residual` by default).
    pub zero_init_residual: bool,
}

impl Component {
    /// Declare a method's authors' augmentation recipe (a name of
    /// `augur_core::augment::recipes::RECIPES`), the default of its runs.
    pub fn recipe(&mut self, name: &str) -> &mut Self {
        self.recipe = Some(name.to_string());
        self
    }

    /// Declare that a method's authors zero-initialise each residual
    /// block's last batch norm (torchvision's `zero_init_residual`).
    pub fn zero_init_residual(&mut self) -> &mut Self {
        self.zero_init_residual = true;
        self
    }

    pub fn kind(&self) -> ComponentKind {
        match self.factory {
            Factory::Method(_) => ComponentKind::Method,
            Factory::Awareness(_) => ComponentKind::Awareness,
        }
    }
}

/// What a plugin's registration function fills.
#[derive(Default, Clone)]
pub struct Registry {
    pub components: Vec<Component>,
}

impl Registry {
    /// Register a method under `name` (what `method.name` selects in a
    /// sweep) whose `[method]` table is `O` (declared with
    /// [`options!`](crate::options!)).
    pub fn method<O: Options>(&mut self, name: &str, summary: &str, factory: MethodFactory) -> &mut Component {
        self.push(name, summary, OptionsSpec::of::<O>(), Factory::Method(factory))
    }

    /// Register an augmentation-aware component under `name` (what
    /// `method.aware` lists in a sweep) whose `[method.<name>]` table is `O`.
    pub fn awareness<O: Options>(&mut self, name: &str, summary: &str, factory: AwarenessFactory) -> &mut Component {
        self.push(name, summary, OptionsSpec::of::<O>(), Factory::Awareness(factory))
    }

    fn push(&mut self, name: &str, summary: &str, options: OptionsSpec, factory: Factory) -> &mut Component {
        self.components.push(Component { name: name.to_string(), summary: summary.to_string(), options, factory, recipe: None, zero_init_residual: false });
        self.components.last_mut().expect("just pushed")
    }

    pub fn find(&self, kind: ComponentKind, name: &str) -> Option<&Component> {
        self.components
            .iter()
            .find(|c| c.kind() == kind && c.name == name)
    }
}

/// Export a plugin: `augur_core::export_plugin!(register);` where
/// `fn register(registry: &mut augur_core::plugin::Registry)`.
#[macro_export]
macro_rules! export_plugin {
    ($register:path) => {
        /// The fingerprint of the augur-core this plugin was compiled against.
        #[unsafe(no_mangle)]
        pub extern "C" fn augur_plugin_fingerprint() -> *const ::std::ffi::c_char {
            $crate::plugin::FINGERPRINT_NUL.as_ptr() as *const ::std::ffi::c_char
        }

        /// Registers this plugin's components. Called only after the
        /// fingerprint matched the host's.
        #[unsafe(no_mangle)]
        pub fn augur_plugin_register(registry: &mut $crate::plugin::Registry) {
            $register(registry)
        }
    };
}
