//! Which device tensors live on.
//!
//! Everything in dlhist takes a `&Device` or reads it from its inputs, so the same code runs on
//! the CPU and on an NVIDIA GPU. [`device()`] picks one from the environment: the CPU unless the
//! crate was built with the `cuda` feature *and* `DLHIST_DEVICE=cuda` is set.

use candle_core::Device;

use crate::{Error, Result};

/// The environment variable that selects the device: `cpu` (default) or `cuda` / `cuda:N`.
pub const DEVICE_ENV: &str = "DLHIST_DEVICE";

/// The device the notebooks run on: CPU by default, CUDA when `DLHIST_DEVICE=cuda` (or `cuda:N`)
/// and the crate is built with the `cuda` feature.
///
/// Errors, saying what to do, when CUDA is asked for but not compiled in or not present, or when
/// the variable holds something else.
///
/// ```
/// let dev = dlhist::device()?; // CPU unless DLHIST_DEVICE=cuda
/// # Ok::<(), dlhist::Error>(())
/// ```
pub fn device() -> Result<Device> {
    device_from(std::env::var(DEVICE_ENV).ok().as_deref())
}

/// [`device()`] for an explicit request (`None`, `"cpu"`, `"cuda"` or `"cuda:N"`).
pub fn device_from(request: Option<&str>) -> Result<Device> {
    let request = request.map(str::trim).unwrap_or("");
    match request {
        "" | "cpu" => Ok(Device::Cpu),
        r if r == "cuda" || r.starts_with("cuda:") => {
            let ordinal: usize = match r.strip_prefix("cuda:") {
                None => 0,
                Some(n) => n.parse().map_err(|_| {
                    Error::Device(format!(
                        "{DEVICE_ENV}={r}: the GPU index after `cuda:` must be a number, e.g. cuda:0"
                    ))
                })?,
            };
            cuda(ordinal, r)
        }
        other => Err(Error::Device(format!(
            "{DEVICE_ENV}={other} is not a device dlhist knows; use `cpu`, `cuda` or `cuda:N`"
        ))),
    }
}

#[cfg(feature = "cuda")]
fn cuda(ordinal: usize, request: &str) -> Result<Device> {
    Device::new_cuda(ordinal).map_err(|e| {
        Error::Device(format!(
            "{DEVICE_ENV}={request} but CUDA device {ordinal} could not be opened ({e}); check `nvidia-smi`, or unset {DEVICE_ENV} to run on the CPU"
        ))
    })
}

#[cfg(not(feature = "cuda"))]
fn cuda(_ordinal: usize, request: &str) -> Result<Device> {
    Err(Error::Device(format!(
        "{DEVICE_ENV}={request} but dlhist was built without CUDA; rebuild with `--features cuda` (in a notebook: `:dep dlhist = {{ path = \"...\", features = [\"cuda\"] }}`), or unset {DEVICE_ENV} to run on the CPU"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_by_default_and_on_request() {
        assert!(device_from(None).unwrap().is_cpu());
        assert!(device_from(Some("cpu")).unwrap().is_cpu());
        assert!(device_from(Some(" cpu ")).unwrap().is_cpu());
    }

    #[test]
    fn unknown_device_is_a_clear_error() {
        let e = device_from(Some("tpu")).unwrap_err().to_string();
        assert!(e.contains("tpu") && e.contains("cuda:N"), "{e}");
        let e = device_from(Some("cuda:x")).unwrap_err().to_string();
        assert!(e.contains("must be a number"), "{e}");
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn cuda_without_the_feature_says_how_to_enable_it() {
        let e = device_from(Some("cuda")).unwrap_err().to_string();
        assert!(e.contains("--features cuda"), "{e}");
    }
}
