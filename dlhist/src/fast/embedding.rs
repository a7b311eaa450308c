//! A transformer's input layer after the token lookup: segment and position embeddings added in one op.
//!
//! ```text
//! x[b, t] = (X[b, t] + S[seg[b, t]]) + P[t]          X[b, t] = E[ids[b, t]], the token vectors
//! ∂L/∂X = g     ∂L/∂S[s] = Σ_{(b, t): seg[b, t] = s} g[b, t]     ∂L/∂P[t] = Σ_b g[b, t]
//! ```
//!
//! candle computes this as one or two `index_select`s, an add and a broadcast add. Its backward pass gives each
//! intermediate `[B, T, H]` gradient a zeroed buffer of its own, sums the positions' gradient over the batch in a
//! serial strided reduction, and builds each table's gradient by copying a zeroed table and scattering into the
//! copy. Here the forward pass writes the output once and the backward pass writes each table's gradient once.
//! Every sum keeps candle's order (rows in row-major order, so batch rows ascending for a position), so the
//! results are the composition's bit for bit, not merely within rounding.
//!
//! The token lookup itself stays candle's `index_select`: its backward pass adds each row into the table's
//! gradient as accumulated so far, and when the table is also the output layer's weight (BERT's tied
//! embedding) that order of additions is part of the result; a lookup inside this op would add its rows to
//! zeros first and round differently.

use candle_core::{CpuStorage, CustomOp2, CustomOp3, DType, Layout, Result, Shape, Tensor};

use super::{cpu_f32, par_chunks, slice_f32, SharedMut};

/// `(X + S[seg]) + P[0..T]` for token vectors `tokens` `[B, T, H]`, an optional segment table with its ids
/// `(S [K, H], seg [B, T] u32)`, and a position table `position` `[P, H]` with `T ≤ P`: BERT's and GPT's input
/// layers after the token lookup, `[B, T, H]`.
///
/// f32 tensors on the CPU only (see [`super::applies`]); [`crate::layers::summed_embeddings`] runs the
/// composition elsewhere.
///
/// ```
/// use dlhist::prelude::*;
/// let dev = Device::Cpu;
/// let tokens = Tensor::new(&[[[3f32, 4.], [1., 2.]]], &dev)?;
/// let pos = Tensor::new(&[[10f32, 20.], [30., 40.], [50., 60.]], &dev)?;
/// let x = dlhist::fast::embedding_sum(&tokens, None, &pos)?;
/// assert_eq!(x.to_vec3::<f32>()?, vec![vec![vec![13., 24.], vec![31., 42.]]]);
/// # Ok::<(), dlhist::Error>(())
/// ```
pub fn embedding_sum(tokens: &Tensor, segment: Option<(&Tensor, &Tensor)>, position: &Tensor) -> Result<Tensor> {
    let mut ts = vec![tokens, position];
    ts.extend(segment.map(|(s, _)| s));
    if !cpu_f32(&ts) {
        return Err(super::unsupported("embedding_sum", &ts));
    }
    let (b, t, h) = tokens.dims3()?;
    let (p, hp) = position.dims2()?;
    if hp != h || t > p {
        candle_core::bail!(
            "embedding_sum: positions {:?} must be [≥ {t}, {h}] for tokens {:?}",
            position.dims(),
            tokens.dims()
        )
    }
    let op = EmbeddingSum { segs: None, t, h };
    let (x, pos) = (tokens.contiguous()?, position.contiguous()?);
    match segment {
        None => x.apply_op2(&pos, op),
        Some((table, segs)) => {
            let (k, hs) = table.dims2()?;
            if hs != h {
                candle_core::bail!(
                    "embedding_sum: segments {:?} and tokens {:?} differ in width",
                    table.dims(),
                    tokens.dims()
                )
            }
            if segs.dtype() != DType::U32 || segs.dims() != [b, t] {
                candle_core::bail!(
                    "embedding_sum: segment ids must be u32 [{b}, {t}]; got {:?} {:?}",
                    segs.dtype(),
                    segs.dims()
                )
            }
            let ids = segs.flatten_all()?.to_vec1::<u32>()?;
            if let Some(&bad) = ids.iter().find(|&&i| i as usize >= k) {
                candle_core::bail!("embedding_sum: segment id {bad} is outside its table of {k} rows")
            }
            x.apply_op3(&table.contiguous()?, &pos, EmbeddingSum { segs: Some(ids), ..op })
        }
    }
}

struct EmbeddingSum {
    /// Segment ids, row-major `[B·T]` (checked against the table's length), when there is a segment table.
    segs: Option<Vec<u32>>,
    t: usize,
    h: usize,
}

impl EmbeddingSum {
    fn forward(&self, x: &[f32], shape: &Shape, seg: Option<&[f32]>, pos: &[f32]) -> (CpuStorage, Shape) {
        let (h, t) = (self.h, self.t);
        let n = x.len() / h;
        let mut out = vec![0f32; n * h];
        let op = SharedMut(out.as_mut_ptr());
        par_chunks(n, 64, |rows| {
            for r in rows {
                // SAFETY: row r of the output is written by this iteration only.
                let o = unsafe { std::slice::from_raw_parts_mut(op.get().add(r * h), h) };
                let (xr, p) = (&x[r * h..][..h], &pos[(r % t) * h..][..h]);
                match (seg, &self.segs) {
                    // (X + S) + P: the composition adds the two lookups first, then broadcasts the positions.
                    (Some(s), Some(ids)) => {
                        let s = &s[ids[r] as usize * h..][..h];
                        for k in 0..h {
                            o[k] = (xr[k] + s[k]) + p[k];
                        }
                    }
                    _ => {
                        for k in 0..h {
                            o[k] = xr[k] + p[k];
                        }
                    }
                }
            }
        });
        (CpuStorage::F32(out), shape.clone())
    }

    /// Each row of `g` `[B·T, H]` added into row `index(r)` of a zeroed `[rows, H]` table, rows in order (as
    /// candle's `index_add` and its reduction over the batch do).
    fn scatter(&self, g: &[f32], rows: usize, index: impl Fn(usize) -> usize) -> Vec<f32> {
        let h = self.h;
        let mut out = vec![0f32; rows * h];
        for (r, gr) in g.chunks_exact(h).enumerate() {
            out[index(r) * h..][..h].iter_mut().zip(gr).for_each(|(o, x)| *o += x);
        }
        out
    }

    /// The gradients of the token vectors (the incoming one), the segment table `[K, H]` (when present) and
    /// the position table `[P, H]`.
    fn backward(&self, grad: &Tensor, k: usize, p: usize) -> Result<(Tensor, Option<Tensor>, Tensor)> {
        let grad = grad.contiguous()?;
        let (h, t, dev) = (self.h, self.t, grad.device());
        let (ds, dp) = {
            let (storage, layout) = grad.storage_and_layout();
            let g = match &*storage {
                candle_core::Storage::Cpu(s) => slice_f32(s, layout)?,
                _ => candle_core::bail!("embedding_sum: the gradient must be on the CPU"),
            };
            let ds = self.segs.as_ref().map(|ids| self.scatter(g, k, |r| ids[r] as usize));
            (ds, self.scatter(g, p, |r| r % t))
        };
        Ok((
            grad.clone(),
            ds.map(|d| Tensor::from_vec(d, (k, h), dev)).transpose()?,
            Tensor::from_vec(dp, (p, h), dev)?,
        ))
    }
}

impl CustomOp2 for EmbeddingSum {
    fn name(&self) -> &'static str {
        "dlhist-embedding-sum"
    }

    fn cpu_fwd(&self, xs: &CpuStorage, xl: &Layout, ps: &CpuStorage, pl: &Layout) -> Result<(CpuStorage, Shape)> {
        Ok(self.forward(slice_f32(xs, xl)?, xl.shape(), None, slice_f32(ps, pl)?))
    }

    fn bwd(&self, _x: &Tensor, pos: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (dx, _, dp) = self.backward(grad, 0, pos.dims()[0])?;
        Ok((Some(dx), Some(dp)))
    }
}

impl CustomOp3 for EmbeddingSum {
    fn name(&self) -> &'static str {
        "dlhist-embedding-sum"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ss: &CpuStorage,
        sl: &Layout,
        ps: &CpuStorage,
        pl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        Ok(self.forward(slice_f32(xs, xl)?, xl.shape(), Some(slice_f32(ss, sl)?), slice_f32(ps, pl)?))
    }

    fn bwd(
        &self,
        _x: &Tensor,
        seg: &Tensor,
        pos: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (dx, ds, dp) = self.backward(grad, seg.dims()[0], pos.dims()[0])?;
        Ok((Some(dx), ds, Some(dp)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Module, Var};

    /// Values and every table's gradient equal to candle's composition bit for bit, with and without segments,
    /// repeated ids included (their gradients are sums), and positions past T getting a zero gradient.
    #[test]
    fn matches_the_composition_bit_for_bit() -> Result<()> {
        let dev = Device::Cpu;
        let randn = |shape: &[usize], seed| Var::from_tensor(&crate::fast::testing::randn(shape, seed)).unwrap();
        let (word, seg, pos) = (randn(&[11, 8], 1), randn(&[2, 8], 2), randn(&[9, 8], 3));
        let ids = Tensor::new(&[[1u32, 5, 5, 10, 0, 1, 5], [3, 3, 3, 2, 9, 1, 0], [5, 5, 5, 5, 5, 5, 5]], &dev)?;
        let segs = Tensor::new(&[[0u32, 0, 0, 1, 1, 1, 1], [0; 7], [1, 0, 1, 0, 1, 0, 1]], &dev)?;
        let g = crate::fast::testing::randn(&[3, 7, 8], 4);
        let g2 = crate::fast::testing::randn(&[21, 11], 5);
        let bits = |t: &Tensor| {
            t.flatten_all().unwrap().to_vec1::<f32>().unwrap().iter().map(|x| x.to_bits()).collect::<Vec<_>>()
        };
        for with_segments in [false, true] {
            let positions = Tensor::arange(0u32, 7, &dev)?;
            let table = |v: &Var| candle_nn::Embedding::new(v.as_tensor().clone(), 8);
            let mut plain = table(&word).forward(&ids)?;
            if with_segments {
                plain = (plain + table(&seg).forward(&segs)?)?;
            }
            let plain = plain.broadcast_add(&table(&pos).forward(&positions)?)?;
            let tokens = table(&word).forward(&ids)?;
            let fused = embedding_sum(&tokens, with_segments.then_some((seg.as_tensor(), &segs)), &pos)?;
            assert_eq!(bits(&fused), bits(&plain), "values, segments {with_segments}");
            // The token table is also the output layer's weight (tied, as in BERT): its gradient then sums the
            // output layer's part and the lookup's, in candle's order only if the lookup stays candle's.
            let loss = |x: &Tensor| -> Result<Tensor> {
                let logits = x.reshape((21, 8))?.matmul(&word.t()?)?;
                (x * &g)?.sum_all()? + (logits * &g2)?.sum_all()?
            };
            let (gf, gp) = (loss(&fused)?.backward()?, loss(&plain)?.backward()?);
            let mut tables = vec![(&word, "token"), (&pos, "position")];
            if with_segments {
                tables.push((&seg, "segment"));
            }
            for (v, name) in tables {
                assert_eq!(
                    bits(gf.get(v).unwrap()),
                    bits(gp.get(v).unwrap()),
                    "{name} gradient, segments {with_segments}"
                );
            }
            assert!(gf.get(&pos).unwrap().narrow(0, 7, 2)?.abs()?.sum_all()?.to_scalar::<f32>()? == 0.0);
        }
        Ok(())
    }

    #[test]
    fn bad_ids_and_shapes_are_named() -> Result<()> {
        let dev = Device::Cpu;
        let zeros = |shape: &[usize]| Tensor::zeros(shape, DType::F32, &dev).unwrap();
        let (tokens, pos) = (zeros(&[1, 3, 4]), zeros(&[2, 4]));
        let err = |r: Result<Tensor>| r.unwrap_err().to_string();
        assert!(err(embedding_sum(&tokens, None, &pos)).contains("positions [2, 4] must be [≥ 3, 4]"));
        let (pos, table) = (zeros(&[3, 4]), zeros(&[2, 4]));
        let segs = Tensor::new(&[[0u32, 2, 1]], &dev)?;
        assert!(err(embedding_sum(&tokens, Some((&table, &segs)), &pos)).contains("segment id 2"));
        let segs = Tensor::new(&[[0u32, 1]], &dev)?;
        assert!(err(embedding_sum(&tokens, Some((&table, &segs)), &pos)).contains("must be u32 [1, 3]"));
        Ok(())
    }
}
