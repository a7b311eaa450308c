//! # The Vision Transformer: an image as a sequence of patches
//!
//! A. Dosovitskiy et al., "An Image is Worth 16x16 Words: Transformers for Image Recognition at Scale", ICLR 2021.
//! <https://arxiv.org/abs/2010.11929>
//!
//! Cut the image `x [C, H, W]` into `N = HW / P²` square patches of `P × P` pixels, flatten each to a row
//! `x_p^i` of `C P²` numbers, and map every row to the model width `D` with one shared matrix `E`. A learned
//! *class token* goes in front and learned position embeddings are added; then a pre-norm Transformer encoder, and
//! a linear classifier reads the class token's final state (the paper's equations 1-4):
//!
//! ```text
//! z₀ = [x_class; x_p^1 E; x_p^2 E; …; x_p^N E] + E_pos          E ∈ R^{(C P²) × D},  E_pos ∈ R^{(N+1) × D}
//! z'ℓ = MSA(LN(zℓ₋₁)) + zℓ₋₁
//! zℓ  = MLP(LN(z'ℓ)) + z'ℓ                                       MLP: two layers with a GELU between
//! y   = LN(z_L^0) W_head
//! ```
//!
//! Nothing in it knows that patch 8 lies next to patch 9: the only two-dimensional structure is in how the patches
//! are cut. A CNN builds locality and translation equivariance into every layer; the ViT must learn them from
//! data, which is the paper's point: with little data the CNN's prior wins, with enough the Transformer catches up
//! (its Figures 3 and 4). The patch map `x_p E` is a convolution with kernel and stride `P`;
//! [`PatchEmbedding`] writes it as the paper does, cut-and-flatten then one matrix product, and keeps the weight in
//! the convolution's shape `[D, C, P, P]`.
//!
//! Parameters follow Hugging Face's `ViTForImageClassification` names (`vit.embeddings.cls_token`,
//! `vit.encoder.layer.{i}.attention.attention.query`, …, `classifier`), which `candle_transformers::models::vit`
//! loads too: a test (`tests/reference_models.rs`) checks both give the same logits.
//! Departures from the paper, for a small model trained from scratch on a CPU: no dropout, and a linear head (the
//! paper's pre-training head has one hidden layer; its fine-tuning head is linear, as here).
//!
//! [`Vit::attention_maps`] returns the real attention weights of every layer, from which
//! [`mean_attention_distance`] (the paper's Figure 7: how far in the image each head looks) and
//! [`attention_rollout`] (its Figure 6: where the class token draws from, through all layers; Abnar and Zuidema
//! 2020) are computed.

use candle_core::{Module, ModuleT, Result, Tensor, D};
use candle_nn::{Init, Linear, VarBuilder};

use super::attention::{KeyMask, MultiHeadAttention};
use crate::layers::{Activation, Dense};
use crate::optimization::LayerNorm;

/// Sizes of a [`Vit`].
///
/// ```
/// let cfg = dlhist::transformers::VitConfig::fashion_mnist(4);
/// assert_eq!((cfg.grid(), cfg.num_patches(), cfg.patch_dim()), (7, 49, 16));
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VitConfig {
    /// Height and width of the (square) input images, in pixels.
    pub image_size: usize,
    /// Side `P` of a patch; `image_size` must be a multiple.
    pub patch_size: usize,
    /// Input channels `C`.
    pub channels: usize,
    /// Model width `D`.
    pub hidden: usize,
    /// Encoder layers `L`.
    pub n_layer: usize,
    /// Attention heads (`hidden` must be a multiple).
    pub n_head: usize,
    /// Width of the MLP's hidden layer.
    pub intermediate: usize,
    /// Number of classes.
    pub classes: usize,
    /// ε of every layer norm (Hugging Face's ViT: 1e-12).
    pub layer_norm_eps: f64,
}

impl VitConfig {
    /// A CPU-sized ViT for 28×28 grey images of ten classes, in ViT-Base's proportions (MLP 4D wide, heads of
    /// 16): `D = 64`, 4 layers, 4 heads, MLP 256, patches of `patch_size` pixels.
    pub fn fashion_mnist(patch_size: usize) -> Self {
        VitConfig {
            image_size: 28,
            patch_size,
            channels: 1,
            hidden: 64,
            n_layer: 4,
            n_head: 4,
            intermediate: 256,
            classes: 10,
            layer_norm_eps: 1e-12,
        }
    }

    /// Patches per side, `image_size / patch_size`.
    pub fn grid(&self) -> usize {
        self.image_size / self.patch_size
    }

    /// Patches per image, `N`.
    pub fn num_patches(&self) -> usize {
        self.grid() * self.grid()
    }

    /// Numbers per flattened patch, `C P²`.
    pub fn patch_dim(&self) -> usize {
        self.channels * self.patch_size * self.patch_size
    }

    fn check(&self) -> Result<()> {
        if self.patch_size == 0 || !self.image_size.is_multiple_of(self.patch_size) {
            candle_core::bail!(
                "VitConfig: image_size = {} must be a multiple of patch_size = {}",
                self.image_size,
                self.patch_size
            )
        }
        if self.n_head == 0 || !self.hidden.is_multiple_of(self.n_head) {
            candle_core::bail!("VitConfig: hidden = {} must be a multiple of n_head = {}", self.hidden, self.n_head)
        }
        Ok(())
    }
}

/// Cuts images `[B, C, H, W]` into `P × P` patches and flattens each: `[B, N, C P²]`, patches in reading order
/// (row by row), each patch's numbers channel by channel, then row by row (the order of a convolution kernel's
/// weights `[C, P, P]`).
///
/// ```
/// use dlhist::prelude::*;
/// // One 4×4 image holding 0..16, cut into four 2×2 patches.
/// let x = Tensor::arange(0f32, 16., &Device::Cpu)?.reshape((1, 1, 4, 4))?;
/// let p = dlhist::transformers::vit::patchify(&x, 2)?;
/// assert_eq!(p.dims(), &[1, 4, 4]);
/// assert_eq!(p.get(0)?.get(1)?.to_vec1::<f32>()?, vec![2., 3., 6., 7.]); // the top-right patch
/// # Ok::<(), dlhist::Error>(())
/// ```
pub fn patchify(x: &Tensor, patch: usize) -> Result<Tensor> {
    let (b, c, h, w) = x.dims4()?;
    if patch == 0 || !h.is_multiple_of(patch) || !w.is_multiple_of(patch) {
        candle_core::bail!("patchify: image {:?} cannot be cut into {patch}×{patch} patches", x.dims())
    }
    let (gh, gw) = (h / patch, w / patch);
    // [B, C, gh, P, gw, P]: split each axis into (which patch, where inside it) ...
    let split = x.reshape(vec![b, c, gh, patch, gw, patch])?;
    // ... then bring the patch indices forward and a patch's own pixels (channel, row, column) to the back.
    split.permute(vec![0, 2, 4, 1, 3, 5])?.contiguous()?.reshape((b, gh * gw, c * patch * patch))
}

/// The patch embedding `x_p E + b`: parameters `{path}.projection.weight [D, C, P, P]` (a convolution's shape, so
/// the same tensor loads into a stride-`P` convolution) and `{path}.projection.bias [D]`.
#[derive(Debug, Clone)]
pub struct PatchEmbedding {
    weight: Tensor,
    bias: Tensor,
    patch: usize,
}

impl PatchEmbedding {
    /// The embedding of `cfg`'s patches, drawn like PyTorch's default for a layer of `C P²` inputs.
    pub fn new(cfg: &VitConfig, vb: VarBuilder) -> Result<Self> {
        let (d, c, p) = (cfg.hidden, cfg.channels, cfg.patch_size);
        let bound = 1.0 / (cfg.patch_dim() as f64).sqrt();
        let vb = vb.pp("projection");
        Ok(PatchEmbedding {
            weight: vb.get_with_hints((d, c, p, p), "weight", Init::Uniform { lo: -bound, up: bound })?,
            bias: vb.get_with_hints(d, "bias", Init::Uniform { lo: -bound, up: bound })?,
            patch: p,
        })
    }
}

impl PatchEmbedding {
    /// The filters, `E` as `[D, C, P, P]`: what each of the `D` features looks for in a patch.
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    /// The bias `b`, `[D]`.
    pub fn bias(&self) -> &Tensor {
        &self.bias
    }
}

impl Module for PatchEmbedding {
    /// Images `[B, C, H, W]` to patch embeddings `[B, N, D]`.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (d, c, ..) = self.weight.dims4()?;
        if x.rank() != 4 || x.dims()[1] != c {
            candle_core::bail!("PatchEmbedding expects images [B, {c}, H, W]; got {:?}", x.dims())
        }
        // E as a [D, C P²] matrix: the kernel [D, C, P, P] flattened in patchify's order.
        let e = self.weight.reshape((d, c * self.patch * self.patch))?;
        Dense::from_linear(Linear::new(e, Some(self.bias.clone())), None).forward(&patchify(x, self.patch)?)
    }
}

/// One pre-norm encoder layer (equations 2-3), under Hugging Face's names: `{path}.layernorm_before`,
/// `{path}.attention.attention.{query,key,value}`, `{path}.attention.output.dense`, `{path}.layernorm_after`,
/// `{path}.intermediate.dense`, `{path}.output.dense`.
#[derive(Debug, Clone)]
pub struct VitLayer {
    norm_before: LayerNorm,
    attn: MultiHeadAttention,
    norm_after: LayerNorm,
    up: Dense,
    down: Dense,
}

impl VitLayer {
    /// A layer of `cfg`'s sizes.
    pub fn new(cfg: &VitConfig, vb: VarBuilder) -> Result<Self> {
        let (d, eps) = (cfg.hidden, cfg.layer_norm_eps);
        Ok(VitLayer {
            norm_before: LayerNorm::with_eps(d, eps, vb.pp("layernorm_before"))?,
            attn: MultiHeadAttention::with_names(
                d,
                cfg.n_head,
                vb.clone(),
                [
                    "attention.attention.query",
                    "attention.attention.key",
                    "attention.attention.value",
                    "attention.output.dense",
                ],
            )?,
            norm_after: LayerNorm::with_eps(d, eps, vb.pp("layernorm_after"))?,
            up: Dense::new(d, cfg.intermediate, Some(Activation::Gelu), vb.pp("intermediate.dense"))?,
            down: Dense::new(cfg.intermediate, d, None, vb.pp("output.dense"))?,
        })
    }

    /// `[B, T, D]` to `[B, T, D]`.
    pub fn forward(&self, z: &Tensor) -> Result<Tensor> {
        let h = self.norm_before.forward(z)?;
        // Every token sees every other: no mask (all images have the same number of patches).
        let z = (z + self.attn.forward(&h, &h, &KeyMask::none())?)?;
        self.mlp(&z)
    }

    /// [`VitLayer::forward`] by the plain attention path, and the attention weights `[B, heads, T, T]`.
    pub fn forward_with_weights(&self, z: &Tensor) -> Result<(Tensor, Tensor)> {
        let h = self.norm_before.forward(z)?;
        let (a, weights) = self.attn.forward_with_weights(&h, &h, &KeyMask::none())?;
        Ok((self.mlp(&(z + a)?)?, weights))
    }

    /// `z' + MLP(LN(z'))`.
    fn mlp(&self, z: &Tensor) -> Result<Tensor> {
        z + self.down.forward(&self.up.forward(&self.norm_after.forward(z)?)?)?
    }
}

/// The Vision Transformer of the module docs: images `[B, C, H, W]` to class logits `[B, classes]`.
///
/// Parameters at `vit.embeddings.{cls_token, position_embeddings, patch_embeddings.projection}`,
/// `vit.encoder.layer.{i}` ([`VitLayer`]), `vit.layernorm` and `classifier`. The class token and the position
/// embeddings start from N(0, 0.02²) (as Hugging Face's), every dense layer from PyTorch's default.
///
/// ```
/// use dlhist::prelude::*;
/// use dlhist::transformers::{Vit, VitConfig};
/// let dev = Device::Cpu;
/// let (vars, vb) = dlhist::init::seeded(0, DType::F32, &dev);
/// let vit = Vit::new(VitConfig { n_layer: 2, ..VitConfig::fashion_mnist(7) }, vb)?;
/// let x = Tensor::zeros((3, 1, 28, 28), DType::F32, &dev)?;
/// assert_eq!(vit.forward_t(&x, false)?.dims(), &[3, 10]);
/// let maps = vit.attention_maps(&x)?; // one [B, heads, 1 + N, 1 + N] per layer
/// assert_eq!((maps.len(), maps[0].dims()), (2, &[3, 4, 17, 17][..]));
/// # Ok::<(), dlhist::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Vit {
    cls_token: Tensor,
    position: Tensor,
    patches: PatchEmbedding,
    layers: Vec<VitLayer>,
    norm: LayerNorm,
    head: Dense,
    config: VitConfig,
}

impl Vit {
    /// A ViT of the given sizes, built at `vb`'s root (paths `vit.…` and `classifier`).
    pub fn new(config: VitConfig, vb: VarBuilder) -> Result<Self> {
        config.check()?;
        let (d, n) = (config.hidden, config.num_patches());
        let small = Init::Randn { mean: 0.0, stdev: 0.02 };
        let v = vb.pp("vit");
        let e = v.pp("embeddings");
        Ok(Vit {
            cls_token: e.get_with_hints((1, 1, d), "cls_token", small)?,
            position: e.get_with_hints((1, n + 1, d), "position_embeddings", small)?,
            patches: PatchEmbedding::new(&config, e.pp("patch_embeddings"))?,
            layers: (0..config.n_layer)
                .map(|i| VitLayer::new(&config, v.pp(format!("encoder.layer.{i}"))))
                .collect::<Result<_>>()?,
            norm: LayerNorm::with_eps(d, config.layer_norm_eps, v.pp("layernorm"))?,
            head: Dense::new(d, config.classes, None, vb.pp("classifier"))?,
            config,
        })
    }

    /// The model's sizes.
    pub fn config(&self) -> &VitConfig {
        &self.config
    }

    /// The learned position embeddings `E_pos`, `[1, 1 + N, D]` (row 0 belongs to the class token).
    pub fn position_embeddings(&self) -> &Tensor {
        &self.position
    }

    /// The patch embedding `x_p E + b`.
    pub fn patch_embedding(&self) -> &PatchEmbedding {
        &self.patches
    }

    /// `z₀`: the class token followed by the patch embeddings, plus the position embeddings, `[B, 1 + N, D]`.
    pub fn embed(&self, x: &Tensor) -> Result<Tensor> {
        let cfg = &self.config;
        let (b, c, h, w) = x.dims4().map_err(|_| shape_error(cfg, x))?;
        if c != cfg.channels || h != cfg.image_size || w != cfg.image_size {
            return Err(shape_error(cfg, x));
        }
        let patches = self.patches.forward(x)?;
        let cls = self.cls_token.broadcast_as((b, 1, cfg.hidden))?;
        Tensor::cat(&[&cls, &patches], 1)?.broadcast_add(&self.position)
    }

    /// The final states of every token, `[B, 1 + N, D]` (before the last layer norm).
    pub fn hidden_states(&self, x: &Tensor) -> Result<Tensor> {
        self.layers.iter().try_fold(self.embed(x)?, |z, layer| layer.forward(&z))
    }

    /// The attention weights of every layer, `[B, heads, 1 + N, 1 + N]` each (token 0 is the class token; row
    /// `q`, column `k`: how much query `q` takes from key `k`; rows sum to 1).
    pub fn attention_maps(&self, x: &Tensor) -> Result<Vec<Tensor>> {
        let mut z = self.embed(x)?;
        let mut maps = Vec::with_capacity(self.layers.len());
        for layer in &self.layers {
            let (next, weights) = layer.forward_with_weights(&z)?;
            maps.push(weights);
            z = next;
        }
        Ok(maps)
    }
}

impl ModuleT for Vit {
    fn forward_t(&self, x: &Tensor, _train: bool) -> Result<Tensor> {
        let z = self.hidden_states(x)?;
        // y = LN(z_L^0) W_head: the class token's state alone decides the class.
        self.head.forward(&self.norm.forward(&z.narrow(1, 0, 1)?.squeeze(1)?)?)
    }
}

fn shape_error(cfg: &VitConfig, x: &Tensor) -> candle_core::Error {
    candle_core::Error::Msg(format!(
        "Vit expects images [B, {}, {}, {}]; got {:?}",
        cfg.channels,
        cfg.image_size,
        cfg.image_size,
        x.dims()
    ))
}

/// The paper's *mean attention distance* (its Figure 7) of one layer's weights `[B, heads, 1 + N, 1 + N]`, per
/// head, in pixels: for each patch query, the distance between its patch's centre and each key patch's centre,
/// weighted by the attention between them, averaged over queries and images. The class token has no place in the
/// image and is left out; each query's weights over the `N` patches are renormalized to sum to 1.
///
/// Small values mean the head looks nearby, like a convolution's kernel; large ones that it mixes the whole image.
///
/// ```
/// use dlhist::prelude::*;
/// // A 2×2 grid of 4-pixel patches, one head that always looks at the patch to its right (or left, at the edge).
/// let mut w = vec![0f32; 25];
/// for (q, k) in [(1, 2), (2, 1), (3, 4), (4, 3)] { w[q * 5 + k] = 1.0; }
/// w[0] = 1.0; // the class token looks at itself
/// let w = Tensor::from_vec(w, (1, 1, 5, 5), &Device::Cpu)?;
/// let d = dlhist::transformers::vit::mean_attention_distance(&w, 2, 4)?;
/// assert!((d[0] - 4.0).abs() < 1e-6);
/// # Ok::<(), dlhist::Error>(())
/// ```
pub fn mean_attention_distance(weights: &Tensor, grid: usize, patch: usize) -> Result<Vec<f64>> {
    let (_, h, t, s) = weights.dims4()?;
    let n = grid * grid;
    if t != n + 1 || s != n + 1 {
        candle_core::bail!(
            "mean_attention_distance: weights {:?} do not fit a {grid}×{grid} grid (expected [B, heads, {}, {}])",
            weights.dims(),
            n + 1,
            n + 1
        )
    }
    // dist[q][k]: pixels between the centres of patches q and k.
    let dist: Vec<f32> = (0..n)
        .flat_map(|q| {
            (0..n).map(move |k| {
                let (dy, dx) = ((q / grid) as f32 - (k / grid) as f32, (q % grid) as f32 - (k % grid) as f32);
                patch as f32 * (dy * dy + dx * dx).sqrt()
            })
        })
        .collect();
    let dist = Tensor::from_vec(dist, (1, 1, n, n), weights.device())?;
    let w = weights.narrow(2, 1, n)?.narrow(3, 1, n)?.to_dtype(candle_core::DType::F32)?;
    let w = w.broadcast_div(&w.sum_keepdim(D::Minus1)?)?;
    // Σ_k w[q, k] dist[q, k] per query, then the mean over images and queries: one number per head.
    let per_query = w.broadcast_mul(&dist)?.sum(D::Minus1)?; // [B, heads, N]
    let per_head = per_query.mean(2)?.mean(0)?; // [heads]
    debug_assert_eq!(per_head.dims(), &[h]);
    Ok(per_head.to_vec1::<f32>()?.into_iter().map(f64::from).collect())
}

/// Attention rollout (Abnar and Zuidema 2020; the ViT paper's Figure 6): how much each token's final state draws
/// from each input token through all layers, `[B, 1 + N, 1 + N]`. Each layer's weights are averaged over heads,
/// the residual connection is added as the identity (`0.5 A + 0.5 I`, rows summing to 1), and the layers are
/// multiplied in order. Row 0, columns `1..`, is the class token's map over the patches.
///
/// ```
/// use dlhist::prelude::*;
/// let uniform = Tensor::full(0.5f32, (1, 2, 2, 2), &Device::Cpu)?; // one layer, two heads, two tokens
/// let r = dlhist::transformers::vit::attention_rollout(&[uniform])?;
/// assert_eq!(r.to_vec3::<f32>()?[0], vec![vec![0.75, 0.25], vec![0.25, 0.75]]);
/// # Ok::<(), dlhist::Error>(())
/// ```
pub fn attention_rollout(maps: &[Tensor]) -> Result<Tensor> {
    let first = maps.first().ok_or_else(|| candle_core::Error::Msg("attention_rollout: no layers given".into()))?;
    let (b, _, t, _) = first.dims4()?;
    let eye = Tensor::eye(t, candle_core::DType::F32, first.device())?.unsqueeze(0)?.broadcast_as((b, t, t))?;
    let mut rollout = eye.clone();
    for map in maps {
        let a = ((map.to_dtype(candle_core::DType::F32)?.mean(1)? * 0.5)? + (&eye * 0.5)?)?;
        // Layer ℓ's output mixes its inputs by a; its inputs already mix the image by the rollout so far.
        rollout = a.matmul(&rollout)?;
    }
    Ok(rollout)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    fn tiny() -> VitConfig {
        VitConfig {
            image_size: 8,
            patch_size: 4,
            channels: 2,
            hidden: 16,
            n_layer: 2,
            n_head: 4,
            intermediate: 24,
            classes: 3,
            layer_norm_eps: 1e-12,
        }
    }

    fn images(dev: &Device) -> crate::Result<Tensor> {
        crate::rng::Rng::new(5).normal_tensor((3, 2, 8, 8), 0.0, 1.0, dev)
    }

    /// Cut-and-flatten then `E` is exactly a convolution with kernel and stride `P` (the module docs' claim).
    #[test]
    fn patch_embedding_is_a_stride_p_convolution() -> crate::Result<()> {
        let dev = Device::Cpu;
        let (_vars, vb) = crate::init::seeded(3, DType::F32, &dev);
        let embed = PatchEmbedding::new(&tiny(), vb)?;
        let x = images(&dev)?;
        let conv = x.conv2d(&embed.weight, 0, 4, 1, 1)?.broadcast_add(&embed.bias.reshape((1, 16, 1, 1))?)?;
        let conv = conv.flatten_from(2)?.transpose(1, 2)?; // [B, N, D], patches in reading order
        let gap = (embed.forward(&x)? - conv)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(gap < 1e-5, "{gap}");
        Ok(())
    }

    /// The fused kernels and the plain candle composition give the same logits and gradients (the key bias's
    /// gradient is zero in exact arithmetic: only its rounding noise is bounded).
    #[test]
    fn fused_and_plain_paths_agree() -> crate::Result<()> {
        let dev = Device::Cpu;
        let (vars, vb) = crate::init::seeded(7, DType::F32, &dev);
        let vit = Vit::new(tiny(), vb)?;
        let x = images(&dev)?;
        let (fused, plain) = (vit.forward_t(&x, true)?, crate::fast::plain(|| vit.forward_t(&x, true))?);
        Ok(crate::fast::testing::assert_paths_agree_but_zero(&fused, &plain, &vars, &[], "key.bias", "vit")?)
    }

    /// The weights of [`Vit::attention_maps`] are the ones the forward pass uses: rows sum to 1, and the layers fed
    /// through the weighted path reach the same final states.
    #[test]
    fn attention_maps_are_the_forward_pass_weights() -> crate::Result<()> {
        let dev = Device::Cpu;
        let (_vars, vb) = crate::init::seeded(9, DType::F32, &dev);
        let vit = Vit::new(tiny(), vb)?;
        let x = images(&dev)?;
        let maps = vit.attention_maps(&x)?;
        assert_eq!((maps.len(), maps[1].dims()), (2, &[3, 4, 5, 5][..]));
        let row_sums = maps[1].sum(D::Minus1)?.flatten_all()?.to_vec1::<f32>()?;
        assert!(row_sums.iter().all(|s| (s - 1.0).abs() < 1e-5));
        let by_weights = vit.layers.iter().try_fold(vit.embed(&x)?, |z, l| l.forward_with_weights(&z).map(|r| r.0))?;
        let gap = (by_weights - vit.hidden_states(&x)?)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(gap < 1e-5, "{gap}");
        // Rollout rows stay distributions.
        let r = attention_rollout(&maps)?.sum(D::Minus1)?.flatten_all()?.to_vec1::<f32>()?;
        assert!(r.iter().all(|s| (s - 1.0).abs() < 1e-5));
        Ok(())
    }

    /// Uniform attention over a 3×3 grid: the mean distance between patch centres, computed by hand.
    #[test]
    fn mean_attention_distance_of_uniform_weights() -> crate::Result<()> {
        let dev = Device::Cpu;
        let w = Tensor::full(0.1f32, (2, 3, 10, 10), &dev)?; // 1 + 9 tokens; the class token's column is dropped
        let d = mean_attention_distance(&w, 3, 2)?;
        let mut total = 0.0;
        for q in 0..9 {
            for k in 0..9 {
                let (dy, dx) = ((q / 3) as f64 - (k / 3) as f64, (q % 3) as f64 - (k % 3) as f64);
                total += 2.0 * (dy * dy + dx * dx).sqrt();
            }
        }
        let want = total / 81.0;
        assert_eq!(d.len(), 3);
        assert!(d.iter().all(|v| (v - want).abs() < 1e-5), "{d:?} vs {want}");
        assert!(mean_attention_distance(&w, 4, 2).is_err());
        Ok(())
    }

    /// Wrong image shapes and impossible sizes are refused with the shapes named.
    #[test]
    fn bad_shapes_are_refused() -> crate::Result<()> {
        let dev = Device::Cpu;
        let (_vars, vb) = crate::init::seeded(1, DType::F32, &dev);
        let vit = Vit::new(tiny(), vb.clone())?;
        let err = vit.forward_t(&Tensor::zeros((1, 2, 9, 8), DType::F32, &dev)?, false).unwrap_err();
        assert!(err.to_string().contains("[B, 2, 8, 8]") && err.to_string().contains("[1, 2, 9, 8]"), "{err}");
        assert!(Vit::new(VitConfig { patch_size: 3, ..tiny() }, vb.pp("b")).is_err());
        assert!(patchify(&Tensor::zeros((1, 1, 6, 6), DType::F32, &dev)?, 4).is_err());
        Ok(())
    }
}
