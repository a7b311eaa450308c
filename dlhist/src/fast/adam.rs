//! Adam's whole update of one f32 parameter in one in-place pass (the equations of
//! [`crate::optimization::Adam`], which calls this for f32 parameters on the CPU).
//!
//! The tensor arithmetic of that module allocates about ten temporaries per parameter per step (the decayed
//! parameter, both moments, their scaled copies, the square root, the quotient) and writes the parameter back
//! with `Var::set`. Here the moments are plain vectors owned by the optimizer, and parameter, moments and
//! AMSGrad's maximum are updated together element by element, split over candle's worker pool for large
//! parameters.

use candle_core::{CpuStorage, Layout, Result, Tensor};

use super::par_chunks;

/// The constants of one Adam step, as the optimizer computes them in f64 (they are rounded to f32 once here).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamStep {
    /// β1, the first moment's decay.
    pub beta1: f64,
    /// β2, the second moment's decay.
    pub beta2: f64,
    /// `lr / (1 − β1ᵗ)`: the learning rate with the first moment's bias correction folded in.
    pub step: f64,
    /// `1 − β2ᵗ`, the second moment's bias correction.
    pub bc2: f64,
    /// ε, added after the correction.
    pub eps: f64,
    /// Coupled L2 coefficient λ (0 for none): `g ← g + λ θ`.
    pub l2: f64,
    /// Decoupled shrink factor `1 − lr·λ` (1 for none): `θ ← (1 − lr·λ) θ` before the step.
    pub shrink: f64,
}

/// The moment vectors of one parameter: `m`, `v` and AMSGrad's running maximum of `v` when enabled.
#[derive(Debug)]
pub struct AdamMoments<'a> {
    /// First moment, one value per parameter element.
    pub m: &'a mut [f32],
    /// Second moment.
    pub v: &'a mut [f32],
    /// AMSGrad's `max(v_max, v)`, or `None`.
    pub v_max: Option<&'a mut [f32]>,
}

/// Applies one Adam step to `param` (an f32 CPU tensor, contiguous from offset 0: a [`candle_core::Var`]'s
/// storage) in place, from `grad` (f32 on the CPU, same element count) and the moments, which are updated too.
///
/// ```
/// use dlhist::prelude::*;
/// use dlhist::fast::{adam_update, AdamMoments, AdamStep};
/// let theta = Var::new(&[1f32, -2.], &Device::Cpu)?;
/// let g = Tensor::new(&[0.5f32, -0.5], &Device::Cpu)?;
/// let (mut m, mut v) = (vec![0f32; 2], vec![0f32; 2]);
/// let k = AdamStep { beta1: 0.9, beta2: 0.999, step: 0.1 / 0.1, bc2: 0.001, eps: 1e-8, l2: 0.0, shrink: 1.0 };
/// adam_update(&theta, &g, AdamMoments { m: &mut m, v: &mut v, v_max: None }, k)?;
/// // The first step moves every weight by lr (0.1) against its gradient's sign.
/// let got = theta.to_vec1::<f32>()?;
/// assert!((got[0] - 0.9).abs() < 1e-6 && (got[1] + 1.9).abs() < 1e-6);
/// # Ok::<(), dlhist::Error>(())
/// ```
pub fn adam_update(param: &Tensor, grad: &Tensor, moments: AdamMoments<'_>, k: AdamStep) -> Result<()> {
    if !super::cpu_f32(&[param, grad]) {
        candle_core::bail!(
            "fast::adam_update runs f32 tensors on the CPU; got {:?} on {:?} (Adam's tensor arithmetic handles the rest)",
            param.dtype(),
            param.device()
        )
    }
    let grad = grad.contiguous()?;
    let op = FusedAdam { moments: std::cell::RefCell::new(moments), k: Scalars::new(k) };
    param.inplace_op2(&grad, &op)
}

/// The op: `inplace_op2` takes it by `&`, hence the `RefCell` around the moments it borrows for the call.
struct FusedAdam<'a> {
    moments: std::cell::RefCell<AdamMoments<'a>>,
    k: Scalars,
}

/// The step's constants in f32.
#[derive(Clone, Copy)]
struct Scalars {
    b1: f32,
    b2: f32,
    one_b1: f32,
    one_b2: f32,
    step: f32,
    inv_sqrt_bc2: f32,
    eps: f32,
    l2: f32,
    shrink: f32,
}

impl Scalars {
    fn new(k: AdamStep) -> Self {
        Scalars {
            b1: k.beta1 as f32,
            b2: k.beta2 as f32,
            one_b1: (1.0 - k.beta1) as f32,
            one_b2: (1.0 - k.beta2) as f32,
            step: k.step as f32,
            inv_sqrt_bc2: (1.0 / k.bc2.sqrt()) as f32,
            eps: k.eps as f32,
            l2: k.l2 as f32,
            shrink: k.shrink as f32,
        }
    }

    /// Updates `theta` (and the moments at the same positions) from `g`, in the order of the tensor arithmetic.
    #[allow(clippy::needless_range_loop)] // five arrays indexed together read best as one index
    fn update(self, theta: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], mut v_max: Option<&mut [f32]>) {
        for k in 0..theta.len() {
            let g = g[k] + self.l2 * theta[k];
            let th = theta[k] * self.shrink;
            m[k] = self.b1 * m[k] + self.one_b1 * g;
            v[k] = self.b2 * v[k] + self.one_b2 * (g * g);
            let v_used = match v_max.as_deref_mut() {
                Some(vm) => {
                    vm[k] = vm[k].max(v[k]);
                    vm[k]
                }
                None => v[k],
            };
            theta[k] = th - (m[k] * self.step) / (v_used.sqrt() * self.inv_sqrt_bc2 + self.eps);
        }
    }
}

impl candle_core::InplaceOp2 for FusedAdam<'_> {
    fn name(&self) -> &'static str {
        "dlhist-fused-adam"
    }

    fn cpu_fwd(&self, s1: &mut CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<()> {
        let (Some((t0, t1)), Some((g0, g1))) = (l1.contiguous_offsets(), l2.contiguous_offsets()) else {
            candle_core::bail!("fused Adam expects contiguous parameter and gradient")
        };
        let (CpuStorage::F32(theta), CpuStorage::F32(g)) = (s1, s2) else {
            candle_core::bail!("fused Adam expects f32 parameter and gradient")
        };
        let (theta, g) = (&mut theta[t0..t1], &g[g0..g1]);
        let mut moments = self.moments.borrow_mut();
        let AdamMoments { m, v, v_max } = &mut *moments;
        let vm_ok = v_max.as_ref().is_none_or(|vm| vm.len() == theta.len());
        if g.len() != theta.len() || m.len() != theta.len() || v.len() != theta.len() || !vm_ok {
            candle_core::bail!(
                "fused Adam: parameter of {} values, gradient of {}, moments of {} and {}",
                theta.len(),
                g.len(),
                m.len(),
                v.len()
            )
        }
        let k = self.k;
        // Large parameters are split over candle's worker pool; chunks are independent element ranges.
        let (tp, gp) = (theta.as_mut_ptr() as usize, g.as_ptr() as usize);
        let (mp, vp) = (m.as_mut_ptr() as usize, v.as_mut_ptr() as usize);
        let vmp = v_max.as_deref_mut().map(|vm| vm.as_mut_ptr() as usize);
        par_chunks(theta.len(), 1 << 15, |r| {
            let len = r.len();
            // SAFETY: every range is visited once and all five slices have theta's length (checked above).
            unsafe {
                let part = |p: usize| std::slice::from_raw_parts_mut((p as *mut f32).add(r.start), len);
                k.update(part(tp), &part(gp)[..], part(mp), part(vp), vmp.map(part));
            }
        });
        Ok(())
    }
}
