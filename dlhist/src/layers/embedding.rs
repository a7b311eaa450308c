//! A transformer's input layer: a token's embedding plus its position's (plus its segment's, in BERT).
//!
//! Attention is blind to order, so the Transformer (Vaswani et al. 2017) adds to each token's vector one that
//! says where the token stands; GPT and BERT learn that position table like the token table, and BERT adds a
//! third, learned per segment (sentence A or B):
//!
//! ```text
//! x[b, t] = E[ids[b, t]] + S[seg[b, t]] + P[t]
//! ```

use candle_core::{Module, Result, Tensor};
use candle_nn::Embedding;

use crate::fast;

/// `E[ids] (+ S[seg]) + P[0..T]`: token embeddings `[B, T, H]` of ids `[B, T]` (u32, `T` at most the position
/// table's length), with the segment table and ids when given.
///
/// ```
/// use dlhist::prelude::*;
/// use candle_nn::Embedding;
/// let dev = Device::Cpu;
/// let word = Embedding::new(Tensor::new(&[[0f32, 0.], [1., 2.], [3., 4.]], &dev)?, 2);
/// let pos = Embedding::new(Tensor::new(&[[10f32, 20.], [30., 40.], [50., 60.]], &dev)?, 2);
/// let x = dlhist::layers::summed_embeddings(&word, &Tensor::new(&[[2u32, 1]], &dev)?, None, &pos)?;
/// assert_eq!(x.to_vec3::<f32>()?, vec![vec![vec![13., 24.], vec![31., 42.]]]);
/// # Ok::<(), dlhist::Error>(())
/// ```
pub fn summed_embeddings(
    word: &Embedding,
    ids: &Tensor,
    segment: Option<(&Embedding, &Tensor)>,
    position: &Embedding,
) -> Result<Tensor> {
    let (_, t) = ids.dims2()?;
    let (e, p) = (word.embeddings(), position.embeddings());
    if fast::applies(&[e, p]) && segment.is_none_or(|(s, _)| fast::applies(&[s.embeddings()])) {
        // Fused (crate::fast::embedding_sum): after the token lookup, the segment and position sums in one pass,
        // and their tables' gradients written once in the backward pass; the same numbers as the lines below,
        // bit for bit.
        return fast::embedding_sum(&word.forward(ids)?, segment.map(|(s, seg)| (s.embeddings(), seg)), p);
    }
    // Plain: a row lookup per table (index_select), summed; the positions 0..T broadcast over the batch.
    let mut x = word.forward(ids)?;
    if let Some((table, seg)) = segment {
        x = (x + table.forward(seg)?)?;
    }
    x.broadcast_add(&position.forward(&Tensor::arange(0u32, t as u32, ids.device())?)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    #[test]
    fn fused_and_plain_paths_agree() -> Result<()> {
        let dev = Device::Cpu;
        let (vars, vb) = crate::init::seeded(3, DType::F32, &dev);
        let word = candle_nn::embedding(13, 6, vb.pp("word"))?;
        let seg = candle_nn::embedding(2, 6, vb.pp("seg"))?;
        let pos = candle_nn::embedding(8, 6, vb.pp("pos"))?;
        let ids = Tensor::new(&[[3u32, 12, 3, 0, 7], [1, 1, 2, 3, 5]], &dev)?;
        let segs = Tensor::new(&[[0u32, 0, 1, 1, 1], [0, 1, 0, 1, 0]], &dev)?;
        for segment in [None, Some((&seg, &segs))] {
            let run = || summed_embeddings(&word, &ids, segment, &pos);
            let (fused, plain) = (run()?, fast::plain(run)?);
            let names = if segment.is_some() { "with segments" } else { "tokens and positions" };
            // The segment table gets no gradient without segments: compare only the tables in use.
            let used = candle_nn::VarMap::new();
            for (name, var) in vars.data().lock().unwrap().iter() {
                if segment.is_some() || !name.starts_with("seg") {
                    used.data().lock().unwrap().insert(name.clone(), var.clone());
                }
            }
            fast::testing::assert_paths_agree(&fused, &plain, &used, &[], names)?;
        }
        Ok(())
    }
}
