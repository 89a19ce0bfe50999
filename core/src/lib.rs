//! augur-core: the plugin SDK of Augur.
//!
//! - [`record`]: the augmentation record and its descriptor schema (the spine);
//! - [`augment`]: the view pipeline that produces records;
//! - [`backbone`]: the one backbone type every method takes (ResNets, basic and bottleneck);
//! - [`hyper`]: hypernetwork convolutions (amortised invariance);
//! - [`norm`]: batch norm as the backbones and heads apply it;
//! - [`fused`]: burn backend extensions (fused batch norm);
//! - [`blocks`]: MLPs, trainable modules, momentum copies (EMA), the feature queue;
//! - [`heads`]: the named projectors and predictors of the base methods, each in its paper's shape;
//! - [`optim`]: the optimizers a run names (SGD, AdamW, LARS);
//! - [`precision`]: bf16 autocast (`train.precision`);
//! - [`losses`]: the objectives' losses (NT-Xent, InfoNCE, BYOL, Barlow Twins, VICReg);
//! - [`method`]: the traits a method plugin implements;
//! - [`aware`]: augmentation-aware components (CASSLE, AugSelf) added to any method;
//! - [`plugin`]: the plugin ABI (fingerprint, registry, `export_plugin!`).
//!
//! This crate is a Rust `dylib` and re-exports burn: plugins and the runner
//! use `augur_core::burn`, never their own copy.

pub use burn;
pub use serde;
pub use serde_json;

pub mod augment;
pub mod affine;
pub mod aware;
pub mod backbone;
pub mod blocks;
pub mod fused;
pub mod heads;
pub mod hyper;
pub mod lift;
pub mod losses;
pub mod method;
pub mod norm;
pub mod optim;
pub mod options;
pub mod plugin;
pub mod precision;
pub mod record;
pub mod views;
