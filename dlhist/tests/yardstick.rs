//! Section 05's yardstick on real data: the stored classifier (`assets/models/fashion-yardstick.safetensors`) and
//! the measures of `image_generation::metrics` read through it. Real images against real images must score near
//! the floor, noise near the ceiling. Needs Fashion-MNIST (Debian's `dataset-fashion-mnist`, which CI installs).

use dlhist::image_generation::metrics::{class_histogram, inception_score, precision_recall};
use dlhist::image_generation::yardstick::Yardstick;
use dlhist::prelude::*;

#[test]
fn the_yardstick_tells_real_images_from_noise() -> Result<()> {
    let dev = Device::Cpu;
    let yardstick = Yardstick::load(&dev)?;
    let fashion = dlhist::data::fashion_mnist()?;
    let n = 2000;
    let test = fashion.test.take(n)?;
    let train = fashion.train.take(n)?;
    // The stored model classifies the test images as its record says (0.899 on all 10,000).
    let probs = yardstick.probabilities(&test.x)?;
    let labels = test.y.to_dtype(DType::U32)?.to_vec1::<u32>()?;
    let predicted = probs.argmax(1)?.to_dtype(DType::U32)?.to_vec1::<u32>()?;
    let accuracy = labels.iter().zip(&predicted).filter(|(a, b)| a == b).count() as f64 / n as f64;
    let noise = Rng::new(1).uniform_tensor((n, 1, 28, 28), 0.0, 1.0, &dev)?;
    let floor = yardstick.frechet(&test.x, &train.x)?;
    let ceiling = yardstick.frechet(&test.x, &noise)?;
    let is_real = inception_score(&probs)?;
    let is_noise = inception_score(&yardstick.probabilities(&noise)?)?;
    let hist = class_histogram(&probs)?;
    let (f_test, f_train, f_noise) =
        (yardstick.features(&test.x)?, yardstick.features(&train.x)?, yardstick.features(&noise)?);
    let (p_real, r_real) = precision_recall(&f_train, &f_test, 3)?;
    let (p_noise, r_noise) = precision_recall(&f_train, &f_noise, 3)?;
    println!("accuracy {accuracy:.4}; Fréchet test-train {floor:.3}, test-noise {ceiling:.3}; inception score real {is_real:.3}, noise {is_noise:.3}");
    println!("histogram {hist:.3?}; precision/recall test {p_real:.3}/{r_real:.3}, noise {p_noise:.3}/{r_noise:.3}");
    assert!(accuracy >= 0.88, "{accuracy}");
    assert!(ceiling > 50.0 * floor, "test-train {floor}, test-noise {ceiling}");
    assert!(is_real > 2.0 * is_noise, "{is_real} against {is_noise}");
    assert!(hist.iter().all(|h| (0.05..0.15).contains(h)), "{hist:?}");
    assert!(p_real > 0.6 && r_real > 0.6, "{p_real} {r_real}");
    // Uniform noise is all read as one class (the inception score near 1 says so), and its features collapse into a
    // tight cluster that sits inside the real manifold's balls: precision alone is fooled (0.67 measured), recall is
    // not. Section 05 reads the two together, with the Fréchet distance.
    let noise_hist = class_histogram(&yardstick.probabilities(&noise)?)?;
    assert!(noise_hist.iter().copied().fold(0.0, f64::max) > 0.9, "{noise_hist:?}");
    assert!(r_noise < 0.05, "{r_noise} (precision {p_noise})");
    Ok(())
}
