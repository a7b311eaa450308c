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
    use std::sync::Mutex;
    // One handle per GPU for the whole process. candle gives every `Device::new_cuda` a fresh id and refuses to
    // mix tensors of two ids ("device mismatch"), so a second call must hand back the first handle, not a new one.
    // (Opening a context also costs a few hundred milliseconds.)
    static OPENED: Mutex<Vec<(usize, Device)>> = Mutex::new(Vec::new());
    let mut opened = OPENED.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some((_, dev)) = opened.iter().find(|(n, _)| *n == ordinal) {
        return Ok(dev.clone());
    }
    let dev = Device::new_cuda(ordinal).map_err(|e| {
        Error::Device(format!(
            "{DEVICE_ENV}={request} but CUDA device {ordinal} could not be opened ({e}); check `nvidia-smi`, or unset {DEVICE_ENV} to run on the CPU"
        ))
    })?;
    opened.push((ordinal, dev.clone()));
    Ok(dev)
}

#[cfg(not(feature = "cuda"))]
fn cuda(_ordinal: usize, request: &str) -> Result<Device> {
    Err(Error::Device(format!(
        "{DEVICE_ENV}={request} but dlhist was built without CUDA; rebuild with `--features cuda` (in a notebook: `:dep dlhist = {{ path = \"...\", features = [\"cuda\"] }}`), or unset {DEVICE_ENV} to run on the CPU"
    )))
}

/// The device dlhist's own tests run on: [`device()`], so `DLHIST_DEVICE=cuda cargo test -p dlhist --features
/// cuda` runs every test that is not about the CPU kernels on the GPU. Panics with [`device()`]'s message when
/// the variable asks for a device that cannot be opened (a test run on the wrong device would prove nothing).
#[cfg(test)]
pub(crate) fn test_device() -> Device {
    device().unwrap_or_else(|e| panic!("{e}"))
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

    #[cfg(feature = "cuda")]
    #[test]
    fn cuda_handles_are_shared() {
        // Only meaningful where a GPU is present; without one the error must say what to check.
        match device_from(Some("cuda")) {
            Ok(a) => {
                let b = device_from(Some("cuda:0")).unwrap();
                assert!(a.same_device(&b), "two calls must return the same CUDA handle");
                let x = candle_core::Tensor::ones(3, candle_core::DType::F32, &a).unwrap();
                let y = candle_core::Tensor::ones(3, candle_core::DType::F32, &b).unwrap();
                assert_eq!((x + y).unwrap().to_vec1::<f32>().unwrap(), [2.0; 3]);
            }
            Err(e) => assert!(e.to_string().contains("nvidia-smi"), "{e}"),
        }
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn cuda_without_the_feature_says_how_to_enable_it() {
        let e = device_from(Some("cuda")).unwrap_err().to_string();
        assert!(e.contains("--features cuda"), "{e}");
    }
}

/// The same forward and backward pass on the CPU (through the fused kernels of `fast`) and on the GPU (where every
/// layer takes its plain candle path): the loss and every gradient must agree to 1e-4; Adam, given the same
/// gradients, must move the parameters the same way. Skipped, saying why, where no GPU can be opened.
#[cfg(all(test, feature = "cuda"))]
mod on_cuda {
    use candle_core::{DType, Device, Module, ModuleT, Tensor};
    use candle_nn::{Optimizer, VarBuilder};

    use crate::deep_neural_networks::{
        AlexNet, AlexNetConfig, Mlp, SmallCnn, UNet, UNetConfig, WeightedPixelCrossEntropy,
    };
    use crate::layers::Activation;
    use crate::optimization::{Adam, AdamConfig};
    use crate::rng::Rng;
    use crate::sequence_modeling::{Gru, GruVariant, Lstm, Rnn};
    use crate::train::{CrossEntropy, Loss, Mse};
    use crate::transformers::{Gpt, GptConfig};
    use crate::Result;

    fn gpu() -> Option<Device> {
        match super::device_from(Some("cuda")) {
            Ok(dev) => Some(dev),
            Err(e) => {
                println!("skipped: {e}");
                None
            }
        }
    }

    /// Loss and gradients of `make`'s model on `dev`, as named flat vectors.
    fn one_step<M: ModuleT>(
        dev: &Device,
        make: &dyn Fn(VarBuilder<'static>) -> Result<M>,
        x: &Tensor,
        y: &Tensor,
        loss: &dyn Loss,
    ) -> Result<Vec<(String, Vec<f32>)>> {
        let (vars, vb) = crate::init::seeded(7, DType::F32, dev);
        let model = make(vb)?;
        let (x, y) = (x.to_device(dev)?, y.to_device(dev)?);
        let l = loss.compute(&model.forward_t(&x, true)?, &y)?;
        let grads = l.backward()?;
        let mut out = vec![("loss".to_string(), vec![l.to_scalar::<f32>()?])];
        for (name, var) in named_vars(&vars) {
            if let Some(g) = grads.get(&var) {
                out.push((format!("gradient of {name}"), g.flatten_all()?.to_vec1()?));
            }
        }
        Ok(out)
    }

    /// A VarMap's variables, sorted by name.
    fn named_vars(vars: &candle_nn::VarMap) -> Vec<(String, candle_core::Var)> {
        let data = vars.data().lock().expect("VarMap lock");
        let mut v: Vec<_> = data.iter().map(|(n, var)| (n.clone(), var.clone())).collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// `|cpu − gpu| ≤ tol · max(1, max |cpu|)` for every pair of named vectors.
    fn assert_agree(what: &str, cpu: &[(String, Vec<f32>)], gpu: &[(String, Vec<f32>)], tol: f32) {
        assert_eq!(cpu.len(), gpu.len(), "{what}: the CPU and the GPU produced different tensors");
        for ((name, a), (_, b)) in cpu.iter().zip(gpu) {
            let scale = a.iter().fold(1f32, |m, v| m.max(v.abs()));
            let worst = a.iter().zip(b).map(|(p, q)| (p - q).abs()).fold(0f32, f32::max);
            assert!(worst <= tol * scale, "{what}: {name} differs by {worst:e} between CPU and GPU (scale {scale})");
        }
    }

    /// Runs `make`'s forward and backward pass on both devices and compares them to 1e-4.
    fn agree<M: ModuleT>(
        what: &str,
        make: &dyn Fn(VarBuilder<'static>) -> Result<M>,
        x: &Tensor,
        y: &Tensor,
        loss: &dyn Loss,
    ) -> Result<()> {
        let Some(gpu) = gpu() else { return Ok(()) };
        let x_gpu = x.to_device(&gpu)?;
        assert!(!crate::fast::applies(&[&x_gpu]), "{what}: fast::applies must be false for GPU tensors");
        let cpu = one_step(&Device::Cpu, make, x, y, loss)?;
        let cuda = one_step(&gpu, make, x, y, loss)?;
        assert_agree(what, &cpu, &cuda, 1e-4);
        println!("{what}: the loss and {} gradients agree", cpu.len() - 1);
        Ok(())
    }

    fn ids(rng: &mut Rng, n: usize, classes: usize) -> Result<Tensor> {
        let v: Vec<u32> = (0..n).map(|_| rng.below(classes) as u32).collect();
        Ok(Tensor::from_vec(v, n, &Device::Cpu)?)
    }

    #[test]
    fn mlp_dense_layers() -> Result<()> {
        let mut rng = Rng::new(1);
        let x = rng.normal_tensor((16, 20), 0.0, 1.0, &Device::Cpu)?;
        let y = ids(&mut rng, 16, 5)?;
        agree("MLP", &|vb| Ok(Mlp::new(&[20, 32, 32, 5], Activation::Relu, vb)?), &x, &y, &CrossEntropy)
    }

    #[test]
    fn cnn_convolutions_and_pooling() -> Result<()> {
        let mut rng = Rng::new(2);
        let x = rng.normal_tensor((4, 1, 28, 28), 0.0, 1.0, &Device::Cpu)?;
        let y = ids(&mut rng, 4, 10)?;
        agree("SmallCnn", &|vb| Ok(SmallCnn::new(10, vb)?), &x, &y, &CrossEntropy)
    }

    #[test]
    fn alexnet_lrn_overlapping_pool_dropout() -> Result<()> {
        let mut rng = Rng::new(3);
        let x = rng.normal_tensor((4, 1, 28, 28), 0.0, 1.0, &Device::Cpu)?;
        let y = ids(&mut rng, 4, 10)?;
        let cfg = AlexNetConfig { dropout_seed: 3, ..AlexNetConfig::full(10) };
        agree("AlexNet", &|vb| Ok(AlexNet::new(cfg, vb)?), &x, &y, &CrossEntropy)
    }

    #[test]
    fn unet_segmentation() -> Result<()> {
        let mut rng = Rng::new(4);
        let x = rng.normal_tensor((2, 1, 16, 16), 0.0, 1.0, &Device::Cpu)?;
        // Targets [N, 2, H, W]: class ids, then per-pixel weights.
        let classes = ids(&mut rng, 2 * 16 * 16, 2)?.to_dtype(DType::F32)?.reshape((2, 1, 16, 16))?;
        let weights = rng.uniform_tensor((2, 1, 16, 16), 1.0, 5.0, &Device::Cpu)?;
        let y = Tensor::cat(&[&classes, &weights], 1)?;
        agree("UNet", &|vb| Ok(UNet::new(UNetConfig::new(8, 2), vb)?), &x, &y, &WeightedPixelCrossEntropy)
    }

    /// The character GPT: layer norm, causal attention, GELU feed-forward, cross-entropy over [B·T, V].
    struct Flat(Gpt);
    impl Module for Flat {
        fn forward(&self, idx: &Tensor) -> candle_core::Result<Tensor> {
            self.0.forward(idx)?.flatten_to(1)
        }
    }

    #[test]
    fn gpt_layer_norm_attention_gelu() -> Result<()> {
        let mut rng = Rng::new(5);
        let x = ids(&mut rng, 2 * 16, 11)?.reshape((2, 16))?;
        let y = ids(&mut rng, 2 * 16, 11)?;
        let cfg = GptConfig { vocab_size: 11, block_size: 16, n_embd: 32, n_layer: 2, n_head: 4 };
        agree("GPT", &|vb| Ok(Flat(Gpt::new(cfg, vb)?)), &x, &y, &CrossEntropy)
    }

    /// A recurrent layer read out at its last step, as in the benchmark.
    struct LastStep<R: Module>(R, candle_nn::Linear, usize);
    impl<R: Module> Module for LastStep<R> {
        fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
            let h = self.0.forward(x)?; // [B, T, H]
                                        // Packed: candle's CUDA matrix product only takes packed rows.
            self.1.forward(&h.narrow(1, self.2 - 1, 1)?.squeeze(1)?.contiguous()?)
        }
    }

    #[test]
    fn recurrent_layers() -> Result<()> {
        let mut rng = Rng::new(6);
        let x = rng.normal_tensor((4, 12, 3), 0.0, 1.0, &Device::Cpu)?;
        let y = rng.normal_tensor((4, 1), 0.0, 1.0, &Device::Cpu)?;
        let head = |vb: &VarBuilder| candle_nn::linear(16, 1, vb.pp("out"));
        agree("LSTM", &|vb| Ok(LastStep(Lstm::new(3, 16, vb.pp("l"))?, head(&vb)?, 12)), &x, &y, &Mse)?;
        agree("tanh RNN", &|vb| Ok(LastStep(Rnn::new(3, 16, vb.pp("l"))?, head(&vb)?, 12)), &x, &y, &Mse)?;
        for variant in [GruVariant::ResetAfter, GruVariant::ResetBefore] {
            let what = format!("GRU ({variant:?})");
            agree(&what, &|vb| Ok(LastStep(Gru::new(3, 16, variant, vb.pp("l"))?, head(&vb)?, 12)), &x, &y, &Mse)?;
        }
        Ok(())
    }

    #[test]
    fn rnnsearch_additive_attention() -> Result<()> {
        use crate::sequence_modeling::attention::{RnnSearch, RnnSearchConfig};
        let mut rng = Rng::new(7);
        let (b, l) = (4, 9);
        let mut x = vec![];
        for _ in 0..b {
            x.extend((0..l).map(|_| 3 + rng.below(10) as u32));
            x.push(crate::data::pairs::BOS);
            x.extend((1..l).map(|_| 3 + rng.below(12) as u32));
        }
        let x = Tensor::from_vec(x, (b, 2, l), &Device::Cpu)?;
        let y = ids(&mut rng, b * l, 15)?.reshape((b, l))?;
        let cfg =
            RnnSearchConfig { src_vocab: 13, tgt_vocab: 15, embed: 8, hidden: 16, align: 16, bidirectional: true };
        agree("RNNsearch", &|vb| Ok(RnnSearch::new(cfg, vb)?), &x, &y, &crate::layers::SequenceCrossEntropy)
    }

    /// Adam (fused on the CPU, tensor arithmetic on the GPU) fed identical gradients: three steps of
    /// `Σ p · g` make the gradient of every parameter exactly `g`, on both devices.
    #[test]
    fn adam_steps_agree() -> Result<()> {
        let Some(gpu) = gpu() else { return Ok(()) };
        let run = |dev: &Device| -> Result<Vec<(String, Vec<f32>)>> {
            let (vars, vb) = crate::init::seeded(9, DType::F32, dev);
            let _ = Mlp::new(&[12, 16, 4], Activation::Relu, vb)?;
            let mut opt = Adam::new(vars.all_vars(), AdamConfig { amsgrad: true, ..AdamConfig::new(1e-2) })?;
            let mut rng = Rng::new(10);
            for _ in 0..3 {
                let mut total = Tensor::zeros((), DType::F32, dev)?;
                for (_, var) in named_vars(&vars) {
                    let g = rng.normal_tensor(var.dims(), 0.0, 1.0, dev)?;
                    total = (total + (var.as_tensor() * g)?.sum_all()?)?;
                }
                opt.backward_step(&total)?;
            }
            named_vars(&vars).into_iter().map(|(n, v)| Ok((n, v.flatten_all()?.to_vec1()?))).collect::<Result<Vec<_>>>()
        };
        assert_agree("Adam", &run(&Device::Cpu)?, &run(&gpu)?, 1e-6);
        Ok(())
    }

    #[test]
    fn seeded_weights_and_checkpoints_cross_devices() -> Result<()> {
        let Some(gpu) = gpu() else { return Ok(()) };
        // The generator runs on the host, so one seed gives the same weights on both devices, bit for bit.
        let (cpu_vars, vb) = crate::init::seeded(11, DType::F32, &Device::Cpu);
        let _ = Mlp::new(&[6, 8, 3], Activation::Relu, vb)?;
        let (gpu_vars, vb) = crate::init::seeded(11, DType::F32, &gpu);
        let _ = Mlp::new(&[6, 8, 3], Activation::Relu, vb)?;
        let flat = |m: &candle_nn::VarMap| -> Result<Vec<f32>> {
            let data = m.data().lock().expect("VarMap lock");
            let mut names: Vec<&String> = data.keys().collect();
            names.sort();
            let mut out = vec![];
            for n in names {
                out.extend(data[n].flatten_all()?.to_vec1::<f32>()?);
            }
            Ok(out)
        };
        assert_eq!(flat(&cpu_vars)?, flat(&gpu_vars)?, "seeded weights differ between CPU and GPU");
        // Saved from the GPU, loaded on the CPU, and back.
        let dir = tempfile::tempdir().expect("temp dir");
        let (trained, vb) = crate::init::seeded(12, DType::F32, &gpu);
        let _ = Mlp::new(&[6, 8, 3], Activation::Relu, vb)?;
        crate::checkpoint::save(&trained, dir.path().join("gpu.safetensors"))?;
        let mut on_cpu = cpu_vars.clone();
        crate::checkpoint::load(&mut on_cpu, dir.path().join("gpu.safetensors"))?;
        assert_eq!(flat(&on_cpu)?, flat(&trained)?, "a GPU checkpoint loaded on the CPU");
        crate::checkpoint::save(&on_cpu, dir.path().join("cpu.safetensors"))?;
        let mut back = gpu_vars.clone();
        crate::checkpoint::load(&mut back, dir.path().join("cpu.safetensors"))?;
        assert_eq!(flat(&back)?, flat(&trained)?, "a CPU checkpoint loaded on the GPU");
        assert!(back.all_vars().iter().all(|v| v.device().same_device(&gpu)), "loaded parameters left the GPU");
        Ok(())
    }

    #[test]
    fn fused_kernels_refuse_gpu_tensors_clearly() -> Result<()> {
        let Some(gpu) = gpu() else { return Ok(()) };
        let x = Tensor::ones((2, 4), DType::F32, &gpu)?;
        let w = Tensor::ones(4, DType::F32, &gpu)?;
        let e = crate::fast::layer_norm(&x, &w, &w, 1e-5).expect_err("a fused kernel must refuse GPU tensors");
        assert!(e.to_string().contains("on the CPU"), "{e}");
        Ok(())
    }
}
