//! Our top-k routing and dispatch ([`dlhist::sequence_modeling::moe`]) against candle-transformers' Mixtral
//! sparse MoE block, with shared weights. Part of `cargo test`; alone: `cargo test -p dlhist --test moe_mixtral`.
//!
//! Mixtral's block is private to its model, so the test builds a one-layer `mixtral::Model` in which the block is
//! the only thing left to compare: the attention's output projection is zero (the attention adds nothing to the
//! residual stream), every RMSNorm weight is 1, each token is its own sequence of length 1, and the readout
//! `lm_head` is the identity on the first `hidden` of its outputs. The model then computes, per token embedding
//! `x`, `rms(x + moe(rms(x)))`, which we compute on our side with our gate (no noise, `k = 2`) and our
//! [`dispatch`], running Mixtral's own expert function `w2(silu(w1 z) ⊙ w3 z)` on the rows routed to each expert
//! (Mixtral's experts are gated; our layer's ReLU experts are a different function and are not compared here).
//!
//! Mixtral routes by `softmax` over all experts, then the top `k` probabilities renormalised to sum to 1; we
//! route by the paper's `Softmax(KeepTopK(x·W_g, k))`. The two agree because the softmax is increasing (same
//! winners) and `p_i / Σ_top p_j = e^{l_i} / Σ_top e^{l_j}`.

use candle_core::{DType, Device, Tensor, D};
use candle_nn::{VarBuilder, VarMap};
use candle_transformers::models::mixtral::{Config, Model};
use dlhist::rng::Rng;
use dlhist::sequence_modeling::moe::{dispatch, NoisyTopKGate};

const HIDDEN: usize = 8;
const VOCAB: usize = 40;
const EXPERTS: usize = 6;
const EPS: f64 = 1e-5;

/// `x / sqrt(mean(x²) + ε)` over the last axis (an RMSNorm of weight 1).
fn rms(x: &Tensor) -> candle_core::Result<Tensor> {
    x.broadcast_div(&(x.sqr()?.mean_keepdim(D::Minus1)? + EPS)?.sqrt()?)
}

fn silu(x: &Tensor) -> candle_core::Result<Tensor> {
    x * candle_nn::ops::sigmoid(x)?
}

/// A one-layer Mixtral whose output is `rms(x + moe(rms(x)))` per token, its variables seeded.
fn mixtral(k: usize) -> dlhist::Result<(Model, VarMap)> {
    let cfg: Config = serde_json::from_value(serde_json::json!({
        "vocab_size": VOCAB, "hidden_size": HIDDEN, "intermediate_size": 12, "num_hidden_layers": 1,
        "num_attention_heads": 2, "num_key_value_heads": 1, "hidden_act": "silu", "max_position_embeddings": 16,
        "rms_norm_eps": EPS, "rope_theta": 10000.0, "sliding_window": 16, "num_experts_per_tok": k,
        "num_local_experts": EXPERTS, "use_flash_attn": false
    }))
    .map_err(|e| dlhist::Error::Invalid(format!("mixtral config: {e}")))?;
    let varmap = VarMap::new();
    let model = Model::new(&cfg, VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu))?;
    {
        let vars = varmap.data().lock().expect("varmap lock");
        let mut names: Vec<&String> = vars.keys().collect();
        names.sort(); // a fixed order, so the seed gives the same weights every run
        let mut rng = Rng::new(2017);
        for name in names {
            let var = &vars[name];
            let value = if name.ends_with("norm.weight") {
                Tensor::ones(var.dims(), DType::F32, &Device::Cpu)?
            } else if name.contains("o_proj") {
                Tensor::zeros(var.dims(), DType::F32, &Device::Cpu)? // the attention adds nothing
            } else if name == "lm_head.weight" {
                // [vocab, hidden]: the identity on the first `hidden` outputs, zero below.
                Tensor::cat(
                    &[
                        Tensor::eye(HIDDEN, DType::F32, &Device::Cpu)?,
                        Tensor::zeros((VOCAB - HIDDEN, HIDDEN), DType::F32, &Device::Cpu)?,
                    ],
                    0,
                )?
            } else {
                rng.normal_tensor(var.dims(), 0.0, 1.0, &Device::Cpu)?
            };
            var.set(&value)?;
        }
    }
    Ok((model, varmap))
}

fn weight(varmap: &VarMap, name: &str) -> Tensor {
    let vars = varmap.data().lock().expect("varmap lock");
    vars.get(name).unwrap_or_else(|| panic!("mixtral has no variable {name}")).as_tensor().clone()
}

/// Our routing + dispatch, with Mixtral's weights and expert function, on every token of the vocabulary.
fn ours(varmap: &VarMap, k: usize) -> dlhist::Result<(Tensor, Vec<usize>)> {
    let p = "model.layers.0.block_sparse_moe";
    let x = weight(varmap, "model.embed_tokens.weight"); // [vocab, hidden]: token t's embedding is row t
    let z = rms(&x)?; // post_attention_layernorm
    let w_g = weight(varmap, &format!("{p}.gate.weight")).t()?.contiguous()?; // Linear [n, d] → our [d, n]
    let gate = NoisyTopKGate::from_weights(w_g.clone(), w_g.zeros_like()?, k, false, 0)?;
    let routing = gate.route(&z, false)?;
    let (moe, rows) = dispatch(&z, &routing, HIDDEN, |e, rows| {
        let w = |m: &str| weight(varmap, &format!("{p}.experts.{e}.{m}.weight"));
        (silu(&rows.matmul(&w("w1").t()?)?)? * rows.matmul(&w("w3").t()?)?)?.matmul(&w("w2").t()?)
    })?;
    Ok((rms(&(x + moe)?)?, rows))
}

#[test]
fn top_k_routing_and_dispatch_match_mixtral_sparse_moe_block() -> dlhist::Result<()> {
    let (mut model, varmap) = mixtral(2)?;
    let ids = Tensor::arange(0u32, VOCAB as u32, &Device::Cpu)?.reshape((VOCAB, 1))?; // one token per sequence
    let theirs = model.forward(&ids, 0)?.squeeze(1)?.narrow(1, 0, HIDDEN)?;
    let (mine, rows) = ours(&varmap, 2)?;
    let diff = (&mine - &theirs)?.abs()?.max_all()?.to_scalar::<f32>()?;
    let scale = theirs.abs()?.max_all()?.to_scalar::<f32>()?;
    assert!(diff <= 1e-5 * scale, "ours and Mixtral's differ by {diff} (largest value {scale})");
    assert_eq!(rows.iter().sum::<usize>(), VOCAB * 2);
    assert!(rows.iter().filter(|&&r| r > 0).count() >= 3, "the test should exercise several experts: {rows:?}");
    // The comparison can fail: routing to one expert instead of two changes the output.
    let (one, _) = ours(&varmap, 1)?;
    let off = (&one - &theirs)?.abs()?.max_all()?.to_scalar::<f32>()?;
    assert!(off > 1e-2 * scale, "k = 1 should not match Mixtral's k = 2 (difference {off})");
    Ok(())
}
