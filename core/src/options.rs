//! Plugin options, declared once. A plugin writes each option of its
//! `[method]` (or `[method.<component>]`) table one time, with its doc
//! comment, default and check, in [`options!`](crate::options!); from that
//! come the struct, its `Default`, the parser (unknown keys and wrong types
//! are typed [`OptionError`]s naming the key), the checks, and the listing
//! `augur plugins` prints. Resolving a table ([`OptionsSpec::resolve`]) is a
//! pure function: the parsed options with every default filled in, which
//! is what the run's canonical config and hash record.
//!
//! ```ignore
//! augur_core::options! {
//!     /// `[method]` options of `simclr`.
//!     struct SimclrOptions {
//!         /// Softmax temperature (0.2 in AugSelf/CASSLE).
//!         temperature: f64 = 0.5 => check::positive,
//!         /// Projector hidden width; 0 = the backbone's feature dimension.
//!         proj_hidden: usize = 0,
//!     }
//! }
//! ```

use serde::Serialize;
use serde::de::DeserializeOwned;
/// The JSON value a table arrives as (re-exported for [`options!`](crate::options!)).
pub use serde_json::Value;

/// A bad option: the key inside the component's table (`None`: the table as
/// a whole) and what is wrong, with the fix where there is one.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{}{message}", key.as_ref().map(|k| format!("`{k}`: ")).unwrap_or_default())]
pub struct OptionError {
    pub key: Option<String>,
    pub message: String,
}

impl OptionError {
    /// An error about one key.
    pub fn at(key: &str, message: impl Into<String>) -> Self {
        OptionError { key: Some(key.to_string()), message: message.into() }
    }

    /// An error about the table as a whole (or a combination of its keys).
    pub fn table(message: impl Into<String>) -> Self {
        OptionError { key: None, message: message.into() }
    }
}

/// One option as `augur plugins` lists it.
#[derive(Clone, Debug, PartialEq)]
pub struct OptionDoc {
    pub key: &'static str,
    /// The doc comment, lines joined.
    pub doc: String,
    /// The default, as it is written in a sweep file (JSON form).
    pub default: String,
}

/// A component's options type. Implemented by [`options!`](crate::options!).
pub trait Options: Default + Serialize + Sized {
    /// Parse and check a table; unset keys take their defaults.
    fn parse(table: &serde_json::Value) -> Result<Self, OptionError>;
    /// Parse a table stored with a run: planning writes every key, so a key
    /// it lacks was added after the run was stored, and takes the value its
    /// absence meant then (an option's `; before` value), not today's default.
    fn parse_stored(table: &serde_json::Value) -> Result<Self, OptionError>;
    /// Every option, in declaration order.
    fn describe() -> Vec<OptionDoc>;
}

/// What the host needs of a component's options, without its type.
#[derive(Clone, Copy)]
pub struct OptionsSpec {
    /// The table parsed, checked, and written back with every default.
    pub resolve: fn(&serde_json::Value) -> Result<serde_json::Value, OptionError>,
    /// The same for a table stored with a run ([`Options::parse_stored`]).
    pub resolve_stored: fn(&serde_json::Value) -> Result<serde_json::Value, OptionError>,
    pub describe: fn() -> Vec<OptionDoc>,
}

impl OptionsSpec {
    pub fn of<T: Options>() -> Self {
        OptionsSpec {
            resolve: |table| T::parse(table).map(|o| serde_json::to_value(o).expect("options serialise")),
            resolve_stored: |table| T::parse_stored(table).map(|o| serde_json::to_value(o).expect("options serialise")),
            describe: T::describe,
        }
    }
}

/// The value of one key, or an error naming it.
#[doc(hidden)]
pub fn parse_value<T: DeserializeOwned>(key: &str, value: &serde_json::Value) -> Result<T, OptionError> {
    serde_json::from_value(value.clone()).map_err(|e| OptionError::at(key, e.to_string()))
}

/// A default as a sweep file would write it.
#[doc(hidden)]
pub fn shown<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "?".into())
}

/// The table of a component: an object, or absent.
#[doc(hidden)]
pub fn entries(table: &serde_json::Value) -> Result<Vec<(&String, &serde_json::Value)>, OptionError> {
    match table {
        serde_json::Value::Null => Ok(Vec::new()),
        serde_json::Value::Object(map) => Ok(map.iter().collect()),
        other => Err(OptionError::table(format!("must be a table of options, not `{other}`"))),
    }
}

/// Checks for [`options!`](crate::options!)'s `=> check` clause: each takes
/// the value and says what is wrong with it.
pub mod check {
    /// A number > 0 (and finite).
    pub fn positive<T: Copy + Into<f64>>(v: &T) -> Result<(), String> {
        let x: f64 = (*v).into();
        if x > 0.0 && x.is_finite() { Ok(()) } else { Err(format!("must be positive, not {x}")) }
    }

    /// A count > 0.
    pub fn nonzero(v: &usize) -> Result<(), String> {
        if *v > 0 { Ok(()) } else { Err("must be positive, not 0".into()) }
    }

    /// A number >= 0 (and finite).
    pub fn non_negative(v: &f64) -> Result<(), String> {
        if *v >= 0.0 && v.is_finite() { Ok(()) } else { Err(format!("must be >= 0, not {v}")) }
    }

    /// A number in [0, 1].
    pub fn unit_interval(v: &f64) -> Result<(), String> {
        if (0.0..=1.0).contains(v) { Ok(()) } else { Err(format!("must lie in [0, 1], not {v}")) }
    }

    /// Descriptor key names (docs/descriptors.md).
    pub fn descriptor_keys(keys: &Vec<String>) -> Result<(), String> {
        crate::record::DescriptorSchema::parse(keys).map(|_| ())
    }
}

/// Declare a component's options once: each field with its doc comment,
/// type, default, after `; before` the value a stored run that lacks the key
/// means (for an option added with a default that changes what such a run
/// did; [`Options::parse_stored`]), and after `=>` an optional check (a function of the
/// value returning `Result<(), String>`, e.g. from [`check`]). An optional
/// trailing `validate = path;` checks combinations of keys
/// (`fn(&Self) -> Result<(), OptionError>`). Generates the struct (with
/// `Serialize`, `Default`, `Clone`, `Debug`) and its [`Options`] impl.
#[macro_export]
macro_rules! options {
    (
        $(#[doc = $sdoc:literal])*
        $vis:vis struct $name:ident {
            $(
                $(#[doc = $doc:literal])*
                $field:ident : $ty:ty = $default:expr $(; before $before:expr)? $(=> $check:expr)?
            ),* $(,)?
        }
        $(validate = $validate:path;)?
    ) => {
        $(#[doc = $sdoc])*
        #[derive(Clone, Debug, ::serde::Serialize)]
        $vis struct $name {
            $( $(#[doc = $doc])* pub $field: $ty, )*
        }

        impl ::std::default::Default for $name {
            fn default() -> Self {
                Self { $( $field: $default, )* }
            }
        }

        impl $name {
            /// What a stored table without a key meant.
            fn before_default() -> Self {
                Self { $( $field: $crate::__option_before!($default $(, $before)?), )* }
            }

            fn parse_from(mut out: Self, table: &$crate::options::Value) -> ::std::result::Result<Self, $crate::options::OptionError> {
                for (key, value) in $crate::options::entries(table)? {
                    $(
                        if key == stringify!($field) {
                            out.$field = $crate::options::parse_value(key, value)?;
                            continue;
                        }
                    )*
                    let known: &[&str] = &[$(stringify!($field)),*];
                    return Err($crate::options::OptionError::at(
                        key,
                        format!("unknown option; the options are: {}", if known.is_empty() { "none".to_string() } else { known.join(", ") }),
                    ));
                }
                $( $(
                    ($check)(&out.$field).map_err(|m| $crate::options::OptionError::at(stringify!($field), m))?;
                )? )*
                $( $validate(&out)?; )?
                Ok(out)
            }
        }

        impl $crate::options::Options for $name {
            fn parse(table: &$crate::options::Value) -> ::std::result::Result<Self, $crate::options::OptionError> {
                Self::parse_from(Self::default(), table)
            }

            fn parse_stored(table: &$crate::options::Value) -> ::std::result::Result<Self, $crate::options::OptionError> {
                Self::parse_from(Self::before_default(), table)
            }

            fn describe() -> Vec<$crate::options::OptionDoc> {
                let defaults = Self::default();
                vec![$(
                    $crate::options::OptionDoc {
                        key: stringify!($field),
                        doc: [$($doc),*].iter().map(|l: &&str| l.trim()).collect::<Vec<_>>().join(" "),
                        default: $crate::options::shown(&defaults.$field),
                    },
                )*]
            }
        }
    };
}

/// [`options!`](crate::options!)'s `; before` value, else the default.
#[doc(hidden)]
#[macro_export]
macro_rules! __option_before {
    ($default:expr) => {
        $default
    };
    ($default:expr, $before:expr) => {
        $before
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    crate::options! {
        /// Test options.
        struct Demo {
            /// A temperature.
            /// Second line.
            temperature: f64 = 0.5 => check::positive,
            width: usize = 8 => check::nonzero,
            name: String = "cat".into(),
            /// Added later: new runs get 2, a stored table without it meant 1.
            form: u32 = 2; before 1,
        }
        validate = demo_rule;
    }

    fn demo_rule(o: &Demo) -> Result<(), OptionError> {
        if o.name == "wide" && o.width < 16 { Err(OptionError::table("name = \"wide\" needs width >= 16")) } else { Ok(()) }
    }

    #[test]
    fn unset_keys_take_defaults_and_resolve_writes_them() {
        let spec = OptionsSpec::of::<Demo>();
        assert_eq!((spec.resolve)(&json!({"width": 4})).unwrap(), json!({"temperature": 0.5, "width": 4, "name": "cat", "form": 2}));
        assert_eq!((spec.resolve)(&serde_json::Value::Null).unwrap(), json!({"temperature": 0.5, "width": 8, "name": "cat", "form": 2}));
    }

    /// A table stored before `form` existed means its `before` value; one
    /// that names it (every table planned since) means what it says.
    #[test]
    fn a_stored_table_without_a_later_key_keeps_its_old_meaning() {
        let spec = OptionsSpec::of::<Demo>();
        assert_eq!((spec.resolve_stored)(&json!({"width": 4}))
            .unwrap()["form"], json!(1));
        assert_eq!((spec.resolve_stored)(&json!({"width": 4, "form": 2})).unwrap()["form"], json!(2));
        assert_eq!(Demo::default().form, 2);
    }

    #[test]
    fn errors_name_their_key() {
        let err = Demo::parse(&json!({"widht": 4})).unwrap_err();
        assert_eq!(err.key.as_deref(), Some("widht"));
        assert!(err.message.contains("temperature, width, name"), "{err}");
        let err = Demo::parse(&json!({"width": "four"})).unwrap_err();
        assert_eq!(err.key.as_deref(), Some("width"));
        let err = Demo::parse(&json!({"temperature": 0.0})).unwrap_err();
        assert_eq!((err.key.as_deref(), err.message.as_str()), (Some("temperature"), "must be positive, not 0"));
        let err = Demo::parse(&json!({"name": "wide"})).unwrap_err();
        assert_eq!(err.key, None);
        assert!(Demo::parse(&json!({"name": "wide", "width": 16})).is_ok());
        assert!(Demo::parse(&json!(3)).unwrap_err().message.contains("table"));
    }

    #[test]
    fn describe_lists_docs_and_defaults_in_order() {
        let docs = Demo::describe();
        let keys: Vec<&str> = docs.iter().map(|d| d.key).collect();
        assert_eq!(keys, ["temperature", "width", "name", "form"]);
        assert_eq!(docs[0].doc, "A temperature. Second line.");
        assert_eq!((docs[0].default.as_str(), docs[2].default.as_str()), ("0.5", "\"cat\""));
        assert_eq!(docs[1].doc, "");
    }
}
