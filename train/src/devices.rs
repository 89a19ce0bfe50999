//! Device names, as a sweep's `device` key and `--device` flags spell them,
//! and the burn devices they open.
//!
//! - `flex`: burn's pure-Rust CPU backend, in every build;
//! - `tch-cpu`: libtorch on the CPU (the `tch` build, scripts/tch.sh);
//! - `cuda:N` (`cuda` = `cuda:0`): libtorch on CUDA device N (the `tch` build);
//! - `auto`: CUDA device 0 when the `tch` build sees one, else `tch-cpu` in
//!   the `tch` build, else `flex`.
//!
//! A run records the name it asked for (part of its config) and each attempt
//! the concrete device it ran on (`auto` resolved).

use augur_core::burn::tensor::Device;

/// The build command that adds the libtorch devices.
pub const TCH_BUILD: &str = "scripts/tch.sh cargo build --release --workspace --features augur/tch";

/// A device name, checked for spelling only (availability is [`open`]'s).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceName {
    Flex,
    TchCpu,
    Cuda(usize),
    Auto,
}

impl DeviceName {
    pub fn parse(name: &str) -> Result<Self, String> {
        match name {
            "flex" => Ok(Self::Flex),
            "tch-cpu" => Ok(Self::TchCpu),
            "cuda" => Ok(Self::Cuda(0)),
            "auto" => Ok(Self::Auto),
            _ => match name.strip_prefix("cuda:").map(str::parse::<usize>) {
                Some(Ok(i)) => Ok(Self::Cuda(i)),
                _ => Err(format!("device `{name}` is unknown; use `flex`, `tch-cpu`, `cuda:N` (N = 0, 1, ...) or `auto`")),
            },
        }
    }

    /// The concrete device `auto` stands for in this build, on this machine.
    pub fn resolve(self) -> Self {
        match self {
            Self::Auto if cuda_count() > 0 => Self::Cuda(0),
            Self::Auto if cfg!(feature = "tch") => Self::TchCpu,
            Self::Auto => Self::Flex,
            other => other,
        }
    }
}

impl std::fmt::Display for DeviceName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Flex => write!(f, "flex"),
            Self::TchCpu => write!(f, "tch-cpu"),
            Self::Cuda(i) => write!(f, "cuda:{i}"),
            Self::Auto => write!(f, "auto"),
        }
    }
}

/// CUDA devices libtorch sees (0 without the `tch` build).
pub fn cuda_count() -> usize {
    #[cfg(feature = "tch")]
    {
        use augur_core::burn::tensor::DeviceType;
        Device::enumerate(DeviceType::LibTorch).into_iter().count()
    }
    #[cfg(not(feature = "tch"))]
    0
}

/// Open a device by name; an error says why it is not available and what to do.
pub fn open(name: &str) -> Result<Device, String> {
    let parsed = DeviceName::parse(name)?.resolve();
    match parsed {
        DeviceName::Flex => Ok(Device::flex()),
        DeviceName::TchCpu | DeviceName::Cuda(_) if !cfg!(feature = "tch") => Err(format!(
            "device `{name}` needs libtorch, which this build of augur does not have; build it with `{TCH_BUILD}` and run target/tch/release/augur through scripts/tch.sh"
        )),
        DeviceName::Cuda(i) if i >= cuda_count() => Err(format!(
            "device `{name}`: libtorch sees {} CUDA device(s) on this machine; use `tch-cpu`, `flex` or `auto`",
            cuda_count()
        )),
        other => Ok(libtorch(other)),
    }
}

#[cfg(feature = "tch")]
#[allow(deprecated)] // burn-tch is deprecated after 0.22; it is still the CUDA path measured here
fn libtorch(name: DeviceName) -> Device {
    match name {
        DeviceName::Cuda(i) => Device::libtorch_cuda(i),
        _ => Device::libtorch(),
    }
}

#[cfg(not(feature = "tch"))]
fn libtorch(_: DeviceName) -> Device {
    unreachable!("open() refuses libtorch devices in a build without tch")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_print_back() {
        for name in ["flex", "tch-cpu", "cuda:0", "cuda:3", "auto"] {
            assert_eq!(DeviceName::parse(name).unwrap().to_string(), name);
        }
        assert_eq!(DeviceName::parse("cuda").unwrap(), DeviceName::Cuda(0));
        for bad in ["gpu", "cuda:", "cuda:x", "tch", "CUDA:0"] {
            let e = DeviceName::parse(bad).unwrap_err();
            assert!(e.contains(bad) && e.contains("tch-cpu"), "{e}");
        }
    }

    #[test]
    fn auto_and_unavailable_devices() {
        let auto = DeviceName::Auto.resolve();
        assert_ne!(auto, DeviceName::Auto);
        assert!(open("auto").is_ok());
        assert!(open("flex").is_ok());
        if cfg!(feature = "tch") {
            assert!(open("tch-cpu").is_ok());
        } else {
            assert_eq!(auto, DeviceName::Flex);
            let e = open("tch-cpu").unwrap_err();
            assert!(e.contains("scripts/tch.sh"), "{e}");
        }
        let e = open("cuda:64").unwrap_err();
        assert!(e.contains("cuda:64"), "{e}");
    }

    /// The fused batch norm on libtorch (native_batch_norm and its backward)
    /// against the unfused path: output, gradients, running statistics. CI
    /// runs the runner's lib tests in the tch build (scripts/test.sh).
    #[cfg(feature = "tch")]
    #[test]
    fn fused_batch_norm_matches_unfused_on_libtorch() {
        augur_core::fused::batch_norm::assert_matches_unfused(&open("tch-cpu").unwrap().autodiff());
    }

    /// The convolution on libtorch (its own `convolution_backward`) against
    /// burn's convolution and generic gradients.
    #[cfg(feature = "tch")]
    #[test]
    fn convolution_matches_burns_on_libtorch() {
        augur_core::fused::conv::assert_matches_burns_convolution(&open("tch-cpu").unwrap().autodiff());
    }

    /// The ReLU on libtorch (threshold_backward into the gradient's buffer)
    /// against burn's.
    #[cfg(feature = "tch")]
    #[test]
    fn relu_matches_burns_on_libtorch() {
        augur_core::fused::relu::assert_matches_burns(&open("tch-cpu").unwrap().autodiff());
    }

    /// The fused SGD step and EMA on libtorch against burn's `Sgd` and the
    /// tensor-op blend.
    #[cfg(feature = "tch")]
    #[test]
    fn fused_sgd_and_ema_match_unfused_on_libtorch() {
        augur_core::fused::step::assert_matches_unfused(&open("tch-cpu").unwrap());
        augur_core::fused::step::assert_matches_unfused(&open("tch-cpu").unwrap().autodiff());
    }
}
