//! Checkpoints: a model's parameters saved to and loaded from a safetensors file.
//!
//! [safetensors](https://github.com/huggingface/safetensors) stores named tensors with a JSON header and
//! raw little-endian data: no code runs on load, and PyTorch, JAX and candle all read it. Parameters are
//! named by their `VarBuilder` path (`"fc1.weight"`), so a checkpoint loads into any model built with the
//! same paths.

use std::path::Path;

use candle_nn::VarMap;

use crate::{Error, Result};

/// Saves every variable of `vars` to `path` (created atomically: a crash never leaves half a file).
///
/// ```
/// use dlhist::prelude::*;
/// let dev = Device::Cpu;
/// let (vars, vb) = dlhist::init::seeded(1, DType::F32, &dev);
/// let layer = candle_nn::linear(3, 2, vb.pp("fc"))?;
/// let dir = std::env::temp_dir().join("dlhist-doc-checkpoint");
/// std::fs::create_dir_all(&dir).unwrap();
/// dlhist::checkpoint::save(&vars, dir.join("model.safetensors"))?;
///
/// let (mut other, vb2) = dlhist::init::seeded(2, DType::F32, &dev);
/// let layer2 = candle_nn::linear(3, 2, vb2.pp("fc"))?;
/// dlhist::checkpoint::load(&mut other, dir.join("model.safetensors"))?;
/// assert_eq!(layer.weight().to_vec2::<f32>()?, layer2.weight().to_vec2::<f32>()?);
/// # Ok::<(), dlhist::Error>(())
/// ```
pub fn save(vars: &VarMap, path: impl AsRef<Path>) -> Result<()> {
    let path = path.as_ref();
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| Error::io("cannot create directory", dir, e))?;
    let file_name = path.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{file_name}.tmp-{}", std::process::id()));
    let result = vars.save(&tmp).map_err(Error::from).and_then(|_| {
        std::fs::rename(&tmp, path).map_err(|e| Error::io("cannot move checkpoint into place at", path, e))
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Loads `path` into the variables of `vars` (which must already exist: build the model first).
/// Every variable must be in the file with the same shape; the error names the first one that is not.
pub fn load(vars: &mut VarMap, path: impl AsRef<Path>) -> Result<()> {
    let path = path.as_ref();
    if !path.exists() {
        return Err(Error::NotFound {
            what: "checkpoint".into(),
            searched: vec![path.to_path_buf()],
            hint: "save one first with dlhist::checkpoint::save".into(),
        });
    }
    let tensors = candle_core::safetensors::load(path, &candle_core::Device::Cpu).map_err(|e| Error::Format {
        path: path.to_path_buf(),
        format: "safetensors",
        reason: format!("{e}; the file is damaged or not a checkpoint, save it again"),
    })?;
    let data = vars.data().lock().map_err(|_| Error::Invalid("VarMap lock poisoned".into()))?;
    let mut names: Vec<&String> = data.keys().collect();
    names.sort();
    for name in names {
        let var = &data[name];
        let t = tensors.get(name).ok_or_else(|| Error::Format {
            path: path.to_path_buf(),
            format: "checkpoint",
            reason: format!(
                "it has no parameter `{name}` (it has: {}); was it saved from a different model?",
                sorted_keys(&tensors)
            ),
        })?;
        if t.dims() != var.dims() {
            return Err(Error::Format {
                path: path.to_path_buf(),
                format: "checkpoint",
                reason: format!(
                    "parameter `{name}` has shape {:?} in the file but {:?} in the model",
                    t.dims(),
                    var.dims()
                ),
            });
        }
        var.set(&t.to_device(var.device())?.to_dtype(var.dtype())?)?;
    }
    Ok(())
}

fn sorted_keys<V>(m: &std::collections::HashMap<String, V>) -> String {
    let mut k: Vec<&String> = m.keys().collect();
    k.sort();
    k.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
}

/// The folder of the project's stored models, `assets/models/` beside the dlhist crate (the pretrained character
/// GPT, the BERT pretrained on WordNet, the Fashion-MNIST yardstick).
pub fn models_dir() -> std::path::PathBuf {
    // dlhist's own folder is known when it is compiled; the project root holds it and assets/.
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    crate_dir.parent().unwrap_or(crate_dir).join("assets").join("models")
}

/// The tensors of the stored model `path` (safetensors) on `dev`, after checking that the file exists and that its
/// SHA-256 is `sha256`. Errors name the file and say how to make or restore it (`remake`); `what` names the model.
/// How the project's trained models in `assets/models/` are read.
pub fn load_verified(
    path: &Path,
    sha256: &str,
    what: &str,
    remake: &str,
    dev: &candle_core::Device,
) -> Result<std::collections::HashMap<String, candle_core::Tensor>> {
    if !path.is_file() {
        return Err(Error::NotFound { what: what.into(), searched: vec![path.to_path_buf()], hint: remake.into() });
    }
    let actual = crate::data::download::sha256_file(path)?;
    if actual != sha256 {
        return Err(Error::Checksum { path: path.display().to_string(), expected: sha256.into(), actual });
    }
    candle_core::safetensors::load(path, dev).map_err(|e| Error::Format {
        path: path.to_path_buf(),
        format: "safetensors",
        reason: format!("{e}; {remake}"),
    })
}

/// Copies into `to` every variable of `from` whose name starts with `prefix` (pretrained weights into a new
/// model, e.g. `"bert."` from a masked language model into a classifier); returns how many were copied. Every such
/// variable must exist in `to` with the same shape; the error names the first that does not.
///
/// ```
/// use dlhist::prelude::*;
/// let dev = Device::Cpu;
/// let (pre, vb) = dlhist::init::seeded(1, DType::F32, &dev);
/// let body = candle_nn::linear(3, 2, vb.pp("body"))?;
/// let (new, vb2) = dlhist::init::seeded(2, DType::F32, &dev);
/// let (body2, _head) = (candle_nn::linear(3, 2, vb2.pp("body"))?, candle_nn::linear(2, 1, vb2.pp("head"))?);
/// assert_eq!(dlhist::checkpoint::copy_prefix(&pre, &new, "body.")?, 2);
/// assert_eq!(body.weight().to_vec2::<f32>()?, body2.weight().to_vec2::<f32>()?);
/// # Ok::<(), dlhist::Error>(())
/// ```
pub fn copy_prefix(from: &VarMap, to: &VarMap, prefix: &str) -> Result<usize> {
    let poisoned = |_| Error::Invalid("VarMap lock poisoned".into());
    let src = from.data().lock().map_err(poisoned)?;
    let dst = to.data().lock().map_err(poisoned)?;
    let mut names: Vec<&String> = src.keys().filter(|n| n.starts_with(prefix)).collect();
    names.sort();
    if names.is_empty() {
        return Err(Error::Invalid(format!("copy_prefix: no variable of the source starts with {prefix:?}")));
    }
    for name in &names {
        let var = dst.get(*name).ok_or_else(|| {
            Error::Invalid(format!(
                "copy_prefix: the target model has no variable {name}; build it with the same paths"
            ))
        })?;
        let value = src[*name].as_tensor();
        if var.dims() != value.dims() {
            return Err(Error::Invalid(format!(
                "copy_prefix: {name} is {:?} in the source and {:?} in the target; build both with the same sizes",
                value.dims(),
                var.dims()
            )));
        }
        var.set(value)?;
    }
    Ok(names.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::DType;

    #[test]
    fn round_trip_restores_exact_values() -> Result<()> {
        let dir = tempfile::tempdir().unwrap();
        let dev = crate::device::test_device();
        let (vars, vb) = crate::init::seeded(10, DType::F32, &dev);
        let a = candle_nn::linear(4, 3, vb.pp("a"))?;
        let path = dir.path().join("sub/ck.safetensors");
        save(&vars, &path)?;
        assert!(path.exists());
        assert_eq!(std::fs::read_dir(path.parent().unwrap()).unwrap().count(), 1, "no temp files left");

        let (mut vars2, vb2) = crate::init::seeded(11, DType::F32, &dev);
        let b = candle_nn::linear(4, 3, vb2.pp("a"))?;
        assert_ne!(a.weight().to_vec2::<f32>()?, b.weight().to_vec2::<f32>()?);
        load(&mut vars2, &path)?;
        assert_eq!(a.weight().to_vec2::<f32>()?, b.weight().to_vec2::<f32>()?);
        assert_eq!(a.bias().unwrap().to_vec1::<f32>()?, b.bias().unwrap().to_vec1::<f32>()?);
        Ok(())
    }

    #[test]
    fn mismatches_are_named() -> Result<()> {
        let dir = tempfile::tempdir().unwrap();
        let dev = crate::device::test_device();
        let (vars, vb) = crate::init::seeded(0, DType::F32, &dev);
        candle_nn::linear(4, 3, vb.pp("a"))?;
        let path = dir.path().join("ck.safetensors");
        save(&vars, &path)?;

        let (mut wrong_shape, vb) = crate::init::seeded(0, DType::F32, &dev);
        candle_nn::linear(5, 3, vb.pp("a"))?;
        let e = load(&mut wrong_shape, &path).unwrap_err().to_string();
        assert!(e.contains("a.weight") && e.contains("[3, 4]") && e.contains("[3, 5]"), "{e}");

        let (mut wrong_name, vb) = crate::init::seeded(0, DType::F32, &dev);
        candle_nn::linear(4, 3, vb.pp("b"))?;
        let e = load(&mut wrong_name, &path).unwrap_err().to_string();
        assert!(e.contains("no parameter `b.bias`") && e.contains("a.weight"), "{e}");

        std::fs::write(dir.path().join("junk.safetensors"), b"not a checkpoint").unwrap();
        let e = load(&mut wrong_name, dir.path().join("junk.safetensors")).unwrap_err().to_string();
        assert!(e.contains("junk.safetensors") && e.contains("safetensors"), "{e}");
        let e = load(&mut wrong_name, dir.path().join("missing.safetensors")).unwrap_err().to_string();
        assert!(e.contains("missing.safetensors"), "{e}");
        Ok(())
    }
}
