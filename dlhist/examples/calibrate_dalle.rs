//! Calibration runs for the DALL-E notebook (`notebooks/05-image-generation/05-dall-e`): a CLIP on captioned
//! Fashion-MNIST (all ten classes), DALL-E (a dVAE trained through the Gumbel-softmax relaxation, a transformer over
//! caption and image tokens, CLIP reranking) and DALL-E 2 (a diffusion prior from CLIP text to image embeddings, a
//! U-Net decoder conditioned on the image embedding, variations), each judged by the yardstick classifier.
//!
//! ```sh
//! cargo run --release -p dlhist --example calibrate_dalle
//! SKIP=dalle DEC_PARAM=eps cargo run --release -p dlhist --example calibrate_dalle
//! ```
//!
//! Knobs (environment): SEED (0), CLIP_STEPS (600), DVAE_STEPS (800), BETA (1.0), CODES (64), CHANNELS (32),
//! T2I_STEPS (1000), T2I_WIDTH (96), T2I_LAYERS (2), T2I_BATCH (32), PER_CLASS (20 captions), CANDIDATES (8),
//! PRIOR_STEPS (1000), DEC_STEPS (1000), GUIDANCE (3.0), DEC_PARAM (start: the decoder predicts the clean image;
//! eps: the noise), DEC_CHANNELS (16), SKIP (comma list of parts to skip: dalle, unclip). The defaults are the
//! notebook's full-mode sizes.

use dlhist::data::captions::{
    fill_template, CaptionStyle, CaptionedImages, Measures, Tertiles, WordTokenizer, CLASS_WORDS,
};
use dlhist::image_generation::clip::{agreement, normalize, Clip, ClipConfig, ClipTraining};
use dlhist::image_generation::dalle::{DiscreteVae, DiscreteVaeConfig, EmbeddingPrior, TextToImage};
use dlhist::image_generation::diffusion::{
    diffusion_loss, drop_condition, sample, Guided, Parameterization, Schedule, UNet,
};
use dlhist::image_generation::vq_vae::perplexity;
use dlhist::image_generation::yardstick::Yardstick;
use dlhist::optimization::{Adam, AdamConfig};
use dlhist::prelude::*;
use dlhist::train::for_batches;
use dlhist::transformers::Sampling;

mod common;

fn classes_of(yardstick: &Yardstick, images: &Tensor) -> Result<Vec<u32>> {
    Ok(yardstick.probabilities(images)?.argmax(D::Minus1)?.to_vec1()?)
}

fn main() -> Result<()> {
    let seed: u64 = common::env("SEED", 0);
    let clip_steps: usize = common::env("CLIP_STEPS", 600);
    let dvae_steps: usize = common::env("DVAE_STEPS", 800);
    let beta: f64 = common::env("BETA", 1.0);
    let codes: usize = common::env("CODES", 64);
    let channels: usize = common::env("CHANNELS", 32);
    let t2i_batch: usize = common::env("T2I_BATCH", 32);
    let t2i_steps: usize = common::env("T2I_STEPS", 1000);
    let t2i_width: usize = common::env("T2I_WIDTH", 96);
    let t2i_layers: usize = common::env("T2I_LAYERS", 2);
    let per_class: usize = common::env("PER_CLASS", 20);
    let candidates: usize = common::env("CANDIDATES", 8);
    let prior_steps: usize = common::env("PRIOR_STEPS", 1000);
    let dec_steps: usize = common::env("DEC_STEPS", 1000);
    let guidance: f64 = common::env("GUIDANCE", 3.0);
    let dec_param = match std::env::var("DEC_PARAM").as_deref() {
        Ok("eps") => Parameterization::Epsilon,
        _ => Parameterization::Start,
    };
    let dec_channels: usize = common::env("DEC_CHANNELS", 16);
    let skip: Vec<String> = common::list("SKIP", "");
    let dev = Device::Cpu;
    let t0 = std::time::Instant::now();
    let fashion = dlhist::data::fashion_mnist()?;
    let tertiles = Tertiles::fit(&Measures::of(&fashion.train.x)?)?;
    let train = CaptionedImages::new(fashion.train.x.clone(), fashion.train.y.to_vec1()?, &tertiles)?;
    let yardstick = Yardstick::load(&dev)?;
    let tok = WordTokenizer::captions(12);
    // CLIP on all ten classes.
    let (clip_vars, clip_vb) = dlhist::init::seeded(seed, DType::F32, &dev);
    let clip = Clip::new(ClipConfig::small(tok.vocab_size(), tok.context()), clip_vb)?;
    let cfg = ClipTraining { steps: clip_steps, batch: 256, seed, ..Default::default() };
    clip.train(&clip_vars, &train, &tok, &cfg, |_, _| Ok(()))?;
    println!("CLIP trained ({:.0} s)", t0.elapsed().as_secs_f64());
    // Evaluation captions: per class, `per_class` training-style captions naming it.
    let mut rng = Rng::new(seed).fork("eval captions");
    let mut wanted: Vec<u32> = vec![];
    let mut texts: Vec<String> = vec![];
    for k in 0..10u32 {
        for _ in 0..per_class {
            let names = CLASS_WORDS[k as usize].0;
            let tpl = dlhist::data::captions::TRAIN_TEMPLATES[rng.below(3)];
            texts.push(fill_template(tpl, &[], names[rng.below(names.len())]));
            wanted.push(k);
        }
    }
    let text_ids = tok.encode_batch(&texts, &dev)?;
    let text_e = clip.text_embeddings(&text_ids)?.detach();
    if !skip.iter().any(|s| s == "dalle") {
        let (vars, vb) = dlhist::init::seeded(seed + 1, DType::F32, &dev);
        let dvae = DiscreteVae::new(DiscreteVaeConfig { codes, beta, channels, ..DiscreteVaeConfig::small() }, vb)?;
        let t = std::time::Instant::now();
        dvae.train(&vars, &fashion.train, dvae_steps, 64, 2e-3, seed, |s, tau, l| {
            if s % (dvae_steps / 5).max(1) == 0 {
                println!("  dVAE step {s}: τ {tau:.3} recon {:.1} kl {:.1}", l.recon, l.kl);
            }
            Ok(())
        })?;
        let test = fashion.test.take(2000)?;
        let test_codes = dvae.encode(&test.x)?;
        let recon = dvae.decode(&test_codes)?;
        let mse = (&recon - &test.x)?.sqr()?.mean_all()?.to_scalar::<f32>()?;
        let keep = agreement(&classes_of(&yardstick, &recon)?, &test.y.to_vec1()?);
        let used = perplexity(&test_codes.flatten_all()?, codes)?;
        println!(
            "dVAE ({:.0} s): MSE {mse:.4}, recon class kept {keep:.3}, perplexity {used:.1}",
            t.elapsed().as_secs_f64()
        );
        // All training images as codes.
        let all_codes = Tensor::cat(
            &(0..60000)
                .step_by(1000)
                .map(|s| dvae.encode(&fashion.train.x.narrow(0, s, 1000)?))
                .collect::<candle_core::Result<Vec<_>>>()?,
            0,
        )?;
        let (tvars, tvb) = dlhist::init::seeded(seed + 2, DType::F32, &dev);
        let t2i = TextToImage::new(tok.vocab_size(), tok.context(), codes, t2i_layers, 4, t2i_width, tvb)?;
        let mut opt = Adam::new(tvars.all_vars(), AdamConfig::new(1e-3))?;
        let rows = Dataset::new(all_codes.clone(), Tensor::arange(0u32, 60000, &dev)?)?;
        let mut cap_rng = Rng::new(seed).fork("t2i captions");
        let t = std::time::Instant::now();
        for_batches(&rows, t2i_steps, t2i_batch, seed, |s, c, y| {
            let picked: Vec<u32> = y.to_vec1()?;
            let ids = tok.encode_batch(&train.captions(&picked, CaptionStyle::default(), &mut cap_rng), &dev)?;
            let (loss, tl, il) = t2i.loss(&ids, c)?;
            opt.backward_step(&loss)?;
            if s % (t2i_steps / 5).max(1) == 0 {
                println!("  T2I step {s}: text {tl:.3} image {il:.3} ({:.0} s)", t.elapsed().as_secs_f64());
            }
            Ok(())
        })?;
        // Samples: `candidates` per caption.
        let t = std::time::Instant::now();
        let n = texts.len();
        let rep = Tensor::cat(&vec![text_ids.clone(); candidates], 0)?; // candidate j of caption i at row j·n + i
        let sampled = t2i.sample(&rep, &Sampling::plain(), &mut Rng::new(seed).fork("sample"))?;
        let images = dvae.decode(&sampled)?;
        let img_e = clip.embed_images(&images)?;
        let rep_text_e = Tensor::cat(&vec![text_e.clone(); candidates], 0)?;
        let score: Vec<f32> = (img_e * rep_text_e)?.sum(1)?.to_vec1()?;
        let cls = classes_of(&yardstick, &images)?;
        let first = agreement(&cls[..n], &wanted);
        let mut best_cls = vec![];
        let mut all_agree = 0usize;
        for i in 0..n {
            let j = (0..candidates).max_by(|&a, &b| score[a * n + i].total_cmp(&score[b * n + i])).unwrap();
            best_cls.push(cls[j * n + i]);
            all_agree += (0..candidates).filter(|&j| cls[j * n + i] == wanted[i]).count();
        }
        let reranked = agreement(&best_cls, &wanted);
        println!(
            "DALL-E ({:.0} s sampling): class agreement first sample {first:.3}, all samples {:.3}, CLIP-reranked best of {candidates} {reranked:.3}",
            t.elapsed().as_secs_f64(),
            all_agree as f64 / (n * candidates) as f64
        );
        let fd = yardstick.frechet(&images.narrow(0, 0, n)?, &fashion.test.take(n)?.x)?;
        println!("  Fréchet of first samples {fd:.1}");
    }
    if !skip.iter().any(|s| s == "unclip") {
        let scale = (64f64).sqrt(); // embeddings of length 1 in 64 dimensions: coordinates of unit spread
        let img_e_all = clip.embed_images(&fashion.train.x)?;
        // Prior.
        let schedule = Schedule::cosine(1000, 0.008)?;
        let (pvars, pvb) = dlhist::init::seeded(seed + 3, DType::F32, &dev);
        let prior = EmbeddingPrior::new(64, 512, pvb)?;
        let mut popt = Adam::new(pvars.all_vars(), AdamConfig::new(1e-3))?;
        let rows = Dataset::new(img_e_all.clone(), Tensor::arange(0u32, 60000, &dev)?)?;
        let (mut cap_rng, mut noise_rng, mut drop_rng) =
            (Rng::new(seed).fork("prior captions"), Rng::new(seed).fork("prior noise"), Rng::new(seed).fork("drop"));
        let t = std::time::Instant::now();
        for_batches(&rows, prior_steps, 256, seed, |s, z, y| {
            let picked: Vec<u32> = y.to_vec1()?;
            let ids = tok.encode_batch(&train.captions(&picked, CaptionStyle::default(), &mut cap_rng), &dev)?;
            let cond = drop_condition(&(clip.text_embeddings(&ids)?.detach() * scale)?, 0.1, &mut drop_rng)?;
            let guided = Guided { model: &prior, cond, scale: 1.0 };
            let loss = diffusion_loss(&guided, &schedule, Parameterization::Start, &(z * scale)?, &mut noise_rng)?;
            popt.backward_step(&loss)?;
            if s % (prior_steps / 4).max(1) == 0 {
                println!("  prior step {s}: loss {:.4} ({:.0} s)", loss.to_scalar::<f32>()?, t.elapsed().as_secs_f64());
            }
            Ok(())
        })?;
        // How close are prior samples to the caption's class? Nearest class centroid of CLIP image embeddings.
        let labels: Vec<u32> = fashion.train.y.to_vec1()?;
        let mut centroids = vec![];
        for k in 0..10u32 {
            let idx: Vec<u32> = (0..60000u32).filter(|&i| labels[i as usize] == k).collect();
            centroids
                .push(normalize(&img_e_all.index_select(&Tensor::new(idx.as_slice(), &dev)?, 0)?.mean_keepdim(0)?)?);
        }
        let centroids = Tensor::cat(&centroids, 0)?;
        let z = sample(
            &Guided { model: &prior, cond: (&text_e * scale)?, scale: 1.0 },
            &schedule,
            Parameterization::Start,
            &[texts.len(), 64],
            50,
            false,
            None,
            &mut Rng::new(seed).fork("prior sample"),
            &dev,
        )?;
        let z = normalize(&z)?;
        let prior_cls = Clip::classify(&z, &centroids)?;
        println!(
            "prior ({:.0} s): sampled embeddings nearest the captioned class's centroid {:.3}",
            t.elapsed().as_secs_f64(),
            agreement(&prior_cls, &wanted)
        );
        // Decoder.
        let lin = Schedule::linear(1000, 1e-4, 0.02)?;
        let (dvars, dvb) = dlhist::init::seeded(seed + 4, DType::F32, &dev);
        let decoder = UNet::conditioned(dec_channels, 64, dvb)?;
        let mut dopt = Adam::new(dvars.all_vars(), AdamConfig::new(2e-3))?;
        let rows = Dataset::new(fashion.train.x.clone(), Tensor::arange(0u32, 60000, &dev)?)?;
        let t = std::time::Instant::now();
        for_batches(&rows, dec_steps, 64, seed, |s, x, y| {
            let cond = drop_condition(&(img_e_all.index_select(y, 0)? * scale)?, 0.1, &mut drop_rng)?;
            let guided = Guided { model: &decoder, cond, scale: 1.0 };
            let loss = diffusion_loss(&guided, &lin, dec_param, &x.affine(2.0, -1.0)?, &mut noise_rng)?;
            dopt.backward_step(&loss)?;
            if s % (dec_steps / 4).max(1) == 0 {
                println!(
                    "  decoder step {s}: loss {:.4} ({:.0} s)",
                    loss.to_scalar::<f32>()?,
                    t.elapsed().as_secs_f64()
                );
            }
            Ok(())
        })?;
        for s in [1.0, guidance] {
            let t = std::time::Instant::now();
            let x = sample(
                &Guided { model: &decoder, cond: (&z * scale)?, scale: s },
                &lin,
                dec_param,
                &[texts.len(), 1, 28, 28],
                50,
                true,
                None,
                &mut Rng::new(seed).fork("decode"),
                &dev,
            )?;
            let x = ((x + 1.0)? * 0.5)?.clamp(0f32, 1f32)?;
            let a = agreement(&classes_of(&yardstick, &x)?, &wanted);
            let fd = yardstick.frechet(&x, &fashion.test.take(texts.len())?.x)?;
            println!(
                "unCLIP text→image, guidance {s}: class agreement {a:.3}, Fréchet {fd:.1} ({:.0} s)",
                t.elapsed().as_secs_f64()
            );
        }
        // Variations of 20 test images (two per class), 4 each.
        let test = fashion.test.take(2000)?;
        let tl: Vec<u32> = test.y.to_vec1()?;
        let src: Vec<u32> = (0..10u32)
            .flat_map(|k| {
                tl.iter().enumerate().filter(|(_, &l)| l == k).take(2).map(|(i, _)| i as u32).collect::<Vec<_>>()
            })
            .collect();
        let src_x = test.x.index_select(&Tensor::new(src.as_slice(), &dev)?, 0)?;
        let src_e = clip.embed_images(&src_x)?;
        let rep = Tensor::cat(&vec![src_e.clone(); 4], 0)?;
        let x = sample(
            &Guided { model: &decoder, cond: (&rep * scale)?, scale: guidance },
            &lin,
            dec_param,
            &[80, 1, 28, 28],
            50,
            true,
            None,
            &mut Rng::new(seed).fork("variations"),
            &dev,
        )?;
        let x = ((x + 1.0)? * 0.5)?.clamp(0f32, 1f32)?;
        let src_cls: Vec<u32> = src.iter().map(|&i| tl[i as usize]).collect();
        let want: Vec<u32> = (0..4).flat_map(|_| src_cls.clone()).collect();
        let keep = agreement(&classes_of(&yardstick, &x)?, &want);
        let diff = (&x - Tensor::cat(&vec![src_x.clone(); 4], 0)?)?.sqr()?.mean_all()?.sqrt()?.to_scalar::<f32>()?;
        let between = (x.narrow(0, 0, 20)? - x.narrow(0, 20, 20)?)?.sqr()?.mean_all()?.sqrt()?.to_scalar::<f32>()?;
        println!("variations: class kept {keep:.3}; RMS pixel difference from the source {diff:.3}, between two variations {between:.3}");
    }
    println!("total {:.0} s", t0.elapsed().as_secs_f64());
    Ok(())
}
