//! dlhist's transformer models against candle-transformers' production implementations, with shared weights.
//!
//! Part of `cargo test`; alone: `cargo test -p dlhist --test reference_models`. candle-transformers is a
//! dev-dependency only, so notebooks' builds of dlhist never compile it.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use candle_nn::{ModuleT, VarBuilder};
use candle_transformers::models::bert as reference;
use dlhist::rng::Rng;
use dlhist::transformers::{BertConfig, BertForMaskedLm};

/// Largest absolute difference between two tensors of one shape.
fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims());
    (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
}

/// Draws every parameter of `vars` at random, in name order, from a normal of spread `std` around 0, or around 1
/// for the norms' gains (the names `is_gain` picks), so that no bias is zero and no norm is the identity;
/// returns copies of the drawn tensors by name, for the reference model to load.
fn randomize(
    vars: &candle_nn::VarMap,
    is_gain: impl Fn(&str) -> bool,
    std: f32,
    rng: &mut Rng,
) -> dlhist::Result<HashMap<String, Tensor>> {
    let data = vars.data().lock().unwrap();
    let mut names: Vec<&String> = data.keys().collect();
    names.sort();
    let mut tensors = HashMap::new();
    for name in names {
        let var = &data[name];
        let base = if is_gain(name) { 1.0 } else { 0.0 };
        var.set(&rng.normal_tensor(var.dims(), base, std, var.device())?)?;
        tensors.insert(name.clone(), var.as_tensor().copy()?);
    }
    Ok(tensors)
}

/// Our BERT (post-LN, as the paper) with every parameter drawn at random (so no bias is zero and no norm is the
/// identity), and candle-transformers' `BertModel` / `BertForMaskedLM` loaded from the very same tensors by
/// Hugging Face's names: the hidden states and the masked-LM logits agree to 1e-5.
#[test]
fn bert_matches_candle_transformers() -> dlhist::Result<()> {
    let dev = Device::Cpu;
    let cfg = BertConfig {
        hidden: 32,
        n_layer: 2,
        n_head: 4,
        intermediate: 64,
        max_len: 16,
        dropout: 0.0,
        ..BertConfig::small(50)
    };
    let (vars, vb) = dlhist::init::seeded(1, DType::F32, &dev);
    let ours = BertForMaskedLm::new(cfg, vb)?;
    let mut rng = Rng::new(2);
    let mut tensors = randomize(&vars, |n| n.ends_with("LayerNorm.weight"), 0.2, &mut rng)?;
    // Hugging Face stores the tied output layer under its own name too.
    tensors.insert("cls.predictions.decoder.weight".into(), tensors["bert.embeddings.word_embeddings.weight"].clone());
    tensors.insert("cls.predictions.decoder.bias".into(), tensors["cls.predictions.bias"].clone());
    let config: reference::Config = serde_json::from_value(serde_json::json!({
        "vocab_size": 50, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
        "intermediate_size": 64, "hidden_act": "gelu", "hidden_dropout_prob": 0.0, "max_position_embeddings": 16,
        "type_vocab_size": 2, "initializer_range": 0.02, "layer_norm_eps": 1e-12, "pad_token_id": 0,
        "classifier_dropout": null, "model_type": "bert"
    }))
    .unwrap();
    let vb = VarBuilder::from_tensors(tensors, DType::F32, &dev);
    let theirs = reference::BertModel::load(vb.clone(), &config)?;
    let theirs_mlm = reference::BertForMaskedLM::load(vb, &config)?;

    // Two sequences, the second padded after 5 tokens, with both segments in use.
    let ids = Tensor::new(&[[2u32, 17, 9, 33, 4, 21, 3, 40], [2, 11, 48, 3, 6, 0, 0, 0]], &dev)?;
    let types = Tensor::new(&[[0u32, 0, 0, 0, 1, 1, 1, 1], [0, 0, 0, 0, 1, 0, 0, 0]], &dev)?;
    let mask = Tensor::new(&[[1u32, 1, 1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 0, 0, 0]], &dev)?;
    let lens = [8, 5];
    for fused in [true, false] {
        let h_ours = if fused {
            ours.bert().forward_t(&ids, Some(&types), &lens, false)?
        } else {
            dlhist::fast::plain(|| ours.bert().forward_t(&ids, Some(&types), &lens, false))?
        };
        let h_theirs = theirs.forward(&ids, &types, Some(&mask))?;
        // Padded positions' own states are not defined the same way (they are never read): compare real ones.
        for (b, &n) in lens.iter().enumerate() {
            let d = max_diff(&h_ours.get(b)?.narrow(0, 0, n)?, &h_theirs.get(b)?.narrow(0, 0, n)?);
            assert!(d < 1e-5, "hidden states of row {b} (fused {fused}) differ by {d}");
        }
        let (bsz, t, h) = h_ours.dims3()?;
        let logits_ours = ours.logits(&h_ours.reshape((bsz * t, h))?)?.reshape((bsz, t, 50))?;
        let logits_theirs = theirs_mlm.forward(&ids, &types, Some(&mask))?;
        let d = max_diff(&logits_ours.get(0)?, &logits_theirs.get(0)?);
        assert!(d < 1e-4, "masked-LM logits (fused {fused}) differ by {d}");
    }
    // And the packed interface of training gives the same logits at the flagged positions.
    let packed = Tensor::new(&[[[2u32, 17, 9, 33, 4, 21, 3, 40], [0, 1, 0, 0, 0, 0, 1, 0]]], &dev)?;
    let flagged = ours.forward_t(&packed, false)?;
    let h = ours.bert().forward_t(&ids.narrow(0, 0, 1)?, None, &[8], false)?.squeeze(0)?;
    let direct = ours.logits(&Tensor::cat(&[h.get(1)?.unsqueeze(0)?, h.get(6)?.unsqueeze(0)?], 0)?)?;
    assert!(max_diff(&flagged, &direct) < 1e-5);
    Ok(())
}

/// Our small T5 test sizes: 60 tokens, width 32, 4 heads of 8, feed-forward 48, 3 layers, 32 buckets up to 20.
fn t5_test_config() -> dlhist::transformers::t5::T5Config {
    dlhist::transformers::t5::T5Config {
        vocab_size: 60,
        d_model: 32,
        d_kv: 8,
        d_ff: 48,
        n_layer: 3,
        n_head: 4,
        num_buckets: 32,
        max_distance: 20,
        eps: 1e-6,
    }
}

/// candle-transformers' configuration of the same sizes; `untied` gives the decoder its own output layer
/// (T5 v1.1's `lm_head`).
fn t5_reference_config(untied: bool) -> candle_transformers::models::t5::Config {
    use candle_transformers::models::t5 as t5_reference;
    t5_reference::Config {
        vocab_size: 60,
        d_model: 32,
        d_kv: 8,
        d_ff: 48,
        num_layers: 3,
        num_decoder_layers: None,
        num_heads: 4,
        relative_attention_num_buckets: 32,
        relative_attention_max_distance: 20,
        dropout_rate: 0.0,
        layer_norm_epsilon: 1e-6,
        initializer_factor: 1.0,
        // dlhist's GELU is the exact one (candle's `Gelu`); T5 v1.1's "gated-gelu" is the tanh approximation.
        feed_forward_proj: t5_reference::ActivationWithOptionalGating {
            gated: true,
            activation: candle_nn::Activation::Gelu,
        },
        tie_word_embeddings: !untied,
        is_decoder: false,
        is_encoder_decoder: true,
        use_cache: false,
        pad_token_id: 0,
        eos_token_id: 1,
        decoder_start_token_id: Some(0),
    }
}

/// Our T5 encoder (RMS norm, relative position buckets, gated GELU) with every parameter drawn at random, and
/// candle-transformers' `T5EncoderModel` loaded from the same tensors by Hugging Face's names: the hidden states
/// agree to 1e-5 (measured: see the test's output). The sequence (40 tokens) is longer than `max_distance` (20), so exact, logarithmic and clamped
/// buckets all occur. The reference takes no padding mask, so the sequences are unpadded.
#[test]
fn t5_encoder_matches_candle_transformers() -> dlhist::Result<()> {
    use candle_transformers::models::t5 as t5_reference;
    use dlhist::transformers::t5::T5Encoder;
    use dlhist::transformers::KeyMask;
    let dev = Device::Cpu;
    let (vars, vb) = dlhist::init::seeded(3, DType::F32, &dev);
    let ours = T5Encoder::new(t5_test_config(), vb)?;
    let mut rng = Rng::new(4);
    let tensors = randomize(&vars, |n| n.ends_with("layer_norm.weight"), 0.3, &mut rng)?;
    let config = t5_reference_config(false);
    let mut theirs = t5_reference::T5EncoderModel::load(VarBuilder::from_tensors(tensors, DType::F32, &dev), &config)?;
    let ids: Vec<u32> = (0..80).map(|_| rng.below(60) as u32).collect();
    let ids = Tensor::from_vec(ids, (2, 40), &dev)?;
    let h_ours = ours.forward(&ids, &KeyMask::none())?;
    let h_theirs = theirs.forward(&ids)?;
    let d = max_diff(&h_ours, &h_theirs);
    assert!(d < 1e-5, "T5 encoder hidden states differ by {d}");
    // The comparison is not vacuous: the states are of unit scale (the final RMS norm), and without the position
    // bias (its table zeroed in our model only) they would differ clearly.
    let scale = h_ours.abs()?.mean_all()?.to_scalar::<f32>()?;
    assert!(scale > 0.1, "states of scale {scale}");
    let table =
        vars.data().lock().unwrap()["encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"].clone();
    table.set(&table.zeros_like()?)?;
    let without_bias = max_diff(&ours.forward(&ids, &KeyMask::none())?, &h_theirs);
    assert!(without_bias > 1e-2, "zeroing the position bias changed the states by only {without_bias}");
    eprintln!("T5 encoder: largest difference {d:e} on states of mean magnitude {scale:.3}; {without_bias:.3} without the bias");
    Ok(())
}

/// The whole encoder-decoder: our `T5` and candle-transformers' `T5ForConditionalGeneration` (untied output layer,
/// as T5 v1.1) loaded from the same random tensors give the same next-token logits, to 1e-5, for decoder inputs of
/// every length at which both compute the same position buckets.
///
/// They do not agree at every length, and the reason is candle's: its attention computes buckets with the
/// bidirectional rule in the decoder too (candle-transformers 0.11.1, `T5Attention::forward`, commented "This only
/// handles the bidirectional case"), where T5 (Mesh TensorFlow, Hugging Face and dlhist) uses the causal rule, 32
/// buckets looking back instead of 16. The two rules give the same bucket to the offsets below 10 with these sizes,
/// so decoder inputs of up to 10 tokens must agree, and longer ones must differ: the test checks both, so it fails
/// if either model changes.
#[test]
fn t5_encoder_decoder_matches_candle_transformers_where_buckets_agree() -> dlhist::Result<()> {
    use candle_transformers::models::t5 as t5_reference;
    use dlhist::transformers::t5::{relative_position_bucket, T5};
    let dev = Device::Cpu;
    let (vars, vb) = dlhist::init::seeded(5, DType::F32, &dev);
    let ours = T5::new(t5_test_config(), vb)?;
    let mut rng = Rng::new(6);
    let tensors = randomize(&vars, |n| n.ends_with("layer_norm.weight"), 0.3, &mut rng)?;
    let mut theirs = t5_reference::T5ForConditionalGeneration::load(
        VarBuilder::from_tensors(tensors, DType::F32, &dev),
        &t5_reference_config(true),
    )?;
    let src: Vec<u32> = (0..2 * 25).map(|_| rng.below(60) as u32).collect();
    let src = Tensor::from_vec(src, (2, 25), &dev)?;
    let src_mask = Tensor::ones((2, 25), DType::F32, &dev)?;
    let memory = ours.encode(&src, &src_mask)?;
    let tgt: Vec<u32> = (0..2 * 14).map(|_| rng.below(60) as u32).collect();
    let tgt = Tensor::from_vec(tgt, (2, 14), &dev)?;
    let (mut agreeing, mut differing) = (0, 0);
    for t in 1..=14 {
        // Whether every offset a decoder of t tokens sees gets the same bucket from both rules.
        let same_buckets = (0..t as i64)
            .all(|d| relative_position_bucket(-d, false, 32, 20) == relative_position_bucket(-d, true, 32, 20));
        let prefix = tgt.narrow(1, 0, t)?;
        let ours_last = ours.decode(&prefix, &memory)?.narrow(1, t - 1, 1)?.squeeze(1)?;
        theirs.clear_kv_cache();
        let theirs_last = theirs.forward(&src, &prefix)?;
        let d = max_diff(&ours_last, &theirs_last);
        if same_buckets {
            assert!(d < 1e-5, "decoder input of {t} tokens: next-token logits differ by {d}");
            agreeing += 1;
        } else {
            assert!(d > 1e-3, "decoder input of {t} tokens: the bucket rules differ but the logits agree ({d})");
            differing += 1;
        }
        eprintln!(
            "T5 encoder-decoder, {t} decoder tokens: largest logit difference {d:e} (same buckets: {same_buckets})"
        );
    }
    assert_eq!((agreeing, differing), (10, 4), "offsets 0..9 share their buckets under both rules");
    Ok(())
}

/// Our ViT with every parameter drawn at random, and candle-transformers' `vit::Model` (Hugging Face's
/// `ViTForImageClassification`) loaded from the very same tensors by name: the logits agree to 1e-5, on the fused and
/// on the plain path. candle's patch embedding is a stride-`P` convolution; ours cuts and flattens the patches and
/// multiplies by the same kernel, so this also checks the cut's order.
#[test]
fn vit_matches_candle_transformers() -> dlhist::Result<()> {
    use candle_transformers::models::vit;
    use dlhist::transformers::{Vit, VitConfig};
    let dev = Device::Cpu;
    let cfg = VitConfig {
        image_size: 12,
        patch_size: 4,
        channels: 2,
        hidden: 32,
        n_layer: 2,
        n_head: 4,
        intermediate: 48,
        classes: 5,
        layer_norm_eps: 1e-12,
    };
    let (vars, vb) = dlhist::init::seeded(1, DType::F32, &dev);
    let ours = Vit::new(cfg, vb)?;
    // The layer norms' gains around 1 (`…layernorm_before.weight`, `vit.layernorm.weight`, …).
    let tensors = randomize(&vars, |n| n.contains("layernorm") && n.ends_with("weight"), 0.2, &mut Rng::new(3))?;
    let mut rng = Rng::new(4);
    let reference_cfg = vit::Config {
        hidden_size: 32,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        intermediate_size: 48,
        hidden_act: candle_nn::Activation::Gelu,
        layer_norm_eps: 1e-12,
        image_size: 12,
        patch_size: 4,
        num_channels: 2,
        qkv_bias: true,
    };
    let theirs = vit::Model::new(&reference_cfg, 5, VarBuilder::from_tensors(tensors, DType::F32, &dev))?;
    let images = rng.normal_tensor((3, 2, 12, 12), 0.0, 1.0, &dev)?;
    let want = theirs.forward(&images)?;
    for fused in [true, false] {
        let got = if fused {
            ours.forward_t(&images, false)?
        } else {
            dlhist::fast::plain(|| ours.forward_t(&images, false))?
        };
        let d = max_diff(&got, &want);
        assert!(d < 1e-5, "ViT logits (fused {fused}) differ by {d}");
    }
    Ok(())
}

/// The diffusion schedule's closed-form forward process and posterior against candle-transformers' DDPM scheduler
/// (`stable_diffusion::ddpm`, linear betas, ε-prediction, "fixed small" variance). Its `step` draws its noise from
/// candle's unseedable CPU generator, so the posterior is compared by moments over 200,000 draws: the mean of
/// `x_{t−1}` to within 4 standard errors, its variance to within 2%.
#[test]
fn diffusion_schedule_matches_candle_transformers_ddpm() -> dlhist::Result<()> {
    use candle_transformers::models::stable_diffusion::ddpm::{DDPMScheduler, DDPMSchedulerConfig};
    use candle_transformers::models::stable_diffusion::schedulers::BetaSchedule;
    use dlhist::image_generation::diffusion::Schedule;
    let cfg = DDPMSchedulerConfig {
        beta_start: 1e-4,
        beta_end: 0.02,
        beta_schedule: BetaSchedule::Linear,
        train_timesteps: 1000,
        ..Default::default()
    };
    let theirs = DDPMScheduler::new(1000, cfg)?;
    let ours = Schedule::linear(1000, 1e-4, 0.02)?;
    let dev = Device::Cpu;
    let n = 200_000;
    // The forward process: add_noise at step t is √ᾱ_t x_0 + √(1 − ᾱ_t) ε, for the same x_0 and ε.
    let x0 = Rng::new(1).normal_tensor(8, 0.0, 1.0, &dev)?.to_dtype(DType::F64)?;
    let eps = Rng::new(2).normal_tensor(8, 0.0, 1.0, &dev)?.to_dtype(DType::F64)?;
    for t in [0usize, 10, 500, 999] {
        let want = theirs.add_noise(&x0, eps.clone(), t)?;
        let got = ours.q_sample(&x0.to_dtype(DType::F32)?, &[t; 8], &eps.to_dtype(DType::F32)?)?;
        assert!(max_diff(&got, &want.to_dtype(DType::F32)?) < 1e-6, "q_sample at step {t}");
    }
    // One reverse step from x_t = 0.5 with predicted noise ε̂ = 0.3 everywhere.
    for t in [1usize, 50, 500, 999] {
        let sample = Tensor::full(0.5f64, n, &dev)?;
        let eps_hat = Tensor::full(0.3f64, n, &dev)?;
        let next = theirs.step(&eps_hat, t, &sample)?;
        let (mean, var) = (next.mean_all()?.to_scalar::<f64>()?, next.var(0)?.to_scalar::<f64>()?);
        let ab = ours.alpha_bar(t);
        let (c0, ct, our_var) = ours.posterior(t);
        let x0_hat = (0.5 - (1.0 - ab).sqrt() * 0.3) / ab.sqrt();
        let our_mean = c0 * x0_hat + ct * 0.5;
        let se = (our_var / n as f64).sqrt();
        assert!((mean - our_mean).abs() < 4.0 * se, "step {t}: mean {mean} against ours {our_mean} (se {se})");
        assert!((var / our_var - 1.0).abs() < 0.02, "step {t}: variance {var} against ours {our_var}");
    }
    Ok(())
}

/// Our CLIP's text tower with every parameter drawn at random, and candle-transformers' `clip::ClipModel` loaded
/// from the very same tensors by Hugging Face's names (its vision tower, which ours does not share, drawn from a
/// seeded stream): the projected text features agree to 1e-5 on the fused and on the plain path (causal
/// attention, QuickGELU, the read-out at the end-of-text id), our scaled logits of its image features and our
/// text features equal its `logits_per_image`, and our symmetric contrastive loss equals the mean of the two
/// cross-entropies computed by `candle_nn::loss` on its logits.
#[test]
fn clip_text_tower_logits_and_loss_match_candle_transformers() -> dlhist::Result<()> {
    use candle_transformers::models::clip::{self as reference, text_model, vision_model};
    use dlhist::data::captions::WordTokenizer;
    use dlhist::image_generation::clip::{contrastive_loss, normalize, Clip, ClipConfig};
    let dev = Device::Cpu;
    let tok = WordTokenizer::captions(10);
    let cfg = ClipConfig {
        text_width: 32,
        text_layers: 2,
        text_heads: 4,
        channels: (4, 8),
        image_width: 16,
        embed: 12,
        ..ClipConfig::small(tok.vocab_size(), 10)
    };
    let (vars, vb) = dlhist::init::seeded(1, DType::F32, &dev);
    let ours = Clip::new(cfg, vb)?;
    let tensors = randomize(&vars, |n| n.contains("layer_norm") && n.ends_with("weight"), 0.2, &mut Rng::new(5))?;
    // candle-transformers' model reads the shared tensors by name; the rest (its vision tower) is drawn here.
    let (shared, vb_ref) = dlhist::init::seeded(2, DType::F32, &dev);
    for (name, t) in &tensors {
        if name.starts_with("text_") || name == "logit_scale" {
            shared.data().lock().unwrap().insert(name.clone(), candle_core::Var::from_tensor(t)?);
        }
    }
    let reference_cfg = reference::ClipConfig {
        text_config: text_model::ClipTextConfig {
            vocab_size: tok.vocab_size(),
            embed_dim: 32,
            activation: text_model::Activation::QuickGelu,
            intermediate_size: 128,
            max_position_embeddings: 10,
            pad_with: None,
            num_hidden_layers: 2,
            num_attention_heads: 4,
            projection_dim: 12,
        },
        vision_config: vision_model::ClipVisionConfig {
            embed_dim: 16,
            activation: text_model::Activation::QuickGelu,
            intermediate_size: 32,
            num_hidden_layers: 1,
            num_attention_heads: 2,
            projection_dim: 12,
            num_channels: 3,
            image_size: 8,
            patch_size: 4,
        },
        logit_scale_init_value: 2.6592,
        image_size: 8,
    };
    let theirs = reference::ClipModel::new(vb_ref, &reference_cfg)?;
    let captions = ["a photo of a dark coat", "look at a sandal", "a wide open shoe", "this is a tall tee"];
    let ids = tok.encode_batch(&captions, &dev)?;
    let want = theirs.get_text_features(&ids)?;
    for fused in [true, false] {
        let got = if fused { ours.text_features(&ids)? } else { dlhist::fast::plain(|| ours.text_features(&ids))? };
        let d = max_diff(&got, &want);
        assert!(d < 1e-5, "CLIP text features (fused {fused}) differ by {d}");
    }
    let pixels = Rng::new(6).normal_tensor((4, 3, 8, 8), 0.0, 1.0, &dev)?;
    let (per_text, per_image) = theirs.forward(&pixels, &ids)?;
    let image_embeddings = normalize(&theirs.get_image_features(&pixels)?)?;
    let logits = ours.logits(&image_embeddings, &ours.text_embeddings(&ids)?)?;
    let d = max_diff(&logits, &per_image.contiguous()?);
    assert!(d < 1e-5, "scaled logits differ by {d}");
    let diag = Tensor::arange(0u32, 4, &dev)?;
    let want_loss = ((candle_nn::loss::cross_entropy(&per_image.contiguous()?, &diag)?
        + candle_nn::loss::cross_entropy(&per_text, &diag)?)?
        * 0.5)?;
    let d = max_diff(&contrastive_loss(&logits)?, &want_loss);
    assert!(d < 1e-5, "contrastive loss differs by {d}");
    Ok(())
}
