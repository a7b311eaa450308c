//! MNIST and Fashion-MNIST: 28x28 grayscale images in ten classes, read from the IDX files.
//!
//! - MNIST (LeCun, Cortes, Burges, 1998): handwritten digits 0-9,
//!   <http://yann.lecun.com/exdb/mnist/>.
//! - Fashion-MNIST (Xiao, Rasul, Vollgraf, 2017, "Fashion-MNIST: a Novel Image Dataset for
//!   Benchmarking Machine Learning Algorithms", <https://arxiv.org/abs/1708.07747>): Zalando
//!   article photos in the same format, a harder drop-in replacement for MNIST.
//!
//! Both ship as four gzipped IDX files. IDX is a tiny binary format: a 4-byte magic number
//! (two zero bytes, a type code, `0x08` = unsigned byte, and the number of dimensions), one
//! big-endian `u32` per dimension, then the values in row-major order.

use std::io::Read;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};

use super::locate::{locate_or_fetch, FileSpec, Roots};
use super::Dataset;
use crate::{Error, Result};

/// A train/test pair of image-classification datasets and the class names.
///
/// `x` holds f32 images `[N, 1, 28, 28]` (channel first, as convolutions want them) with
/// pixel values scaled to `[0, 1]` (0 = background); `y` holds u32 labels `[N]`, indices into
/// `classes`. For a fully connected model use [`ImageClassification::flatten`] (or
/// `x.flatten_from(1)`) to get `[N, 784]`.
#[derive(Debug, Clone)]
pub struct ImageClassification {
    /// The training set (60 000 images for MNIST and Fashion-MNIST).
    pub train: Dataset,
    /// The test set (10 000 images).
    pub test: Dataset,
    /// The name of each class, indexed by label.
    pub classes: Vec<String>,
}

impl ImageClassification {
    /// The same data with each image flattened to one row: `x` becomes `[N, 784]`.
    pub fn flatten(&self) -> Result<Self> {
        let flat = |d: &Dataset| -> Result<Dataset> { Dataset::new(d.x.flatten_from(1)?, d.y.clone()) };
        Ok(ImageClassification { train: flat(&self.train)?, test: flat(&self.test)?, classes: self.classes.clone() })
    }

    /// The same data on `dev`.
    pub fn to_device(&self, dev: &Device) -> Result<Self> {
        Ok(ImageClassification {
            train: self.train.to_device(dev)?,
            test: self.test.to_device(dev)?,
            classes: self.classes.clone(),
        })
    }

    /// The number of classes.
    pub fn num_classes(&self) -> usize {
        self.classes.len()
    }
}

/// Fashion-MNIST's class names, indexed by label.
pub const FASHION_MNIST_CLASSES: [&str; 10] =
    ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"];

/// The four files of a set, in the order train images, train labels, test images, test labels.
const FILES: [&str; 4] = [
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
];

/// Everything needed to find, verify and name one of the two datasets.
struct ImageSet {
    dataset: &'static str,
    sha256: [&'static str; 4],
    /// Mirror base URLs (a file's URL is base + file name).
    bases: &'static [&'static str],
    system_dirs: &'static [&'static str],
    system_repair: &'static str,
    other_source: &'static str,
    classes: Vec<String>,
}

impl ImageSet {
    fn fashion() -> Self {
        ImageSet {
            dataset: "fashion-mnist",
            // The published digests of Zalando's files (Debian's package ships them unchanged).
            sha256: [
                "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7",
                "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056",
                "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
                "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05",
            ],
            bases: &["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"],
            system_dirs: &["/usr/share/datasets/fashion-mnist"],
            system_repair: "reinstall Debian's package: apt-get install --reinstall dataset-fashion-mnist",
            other_source: "or install Debian's dataset-fashion-mnist package (apt-get install dataset-fashion-mnist)",
            classes: FASHION_MNIST_CLASSES.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn digits() -> Self {
        ImageSet {
            dataset: "mnist",
            // As listed in tensorflow-datasets' url_checksums/mnist.txt (which also gives the
            // sizes 9912422, 28881, 1648877, 4542 bytes) and in torchvision.
            sha256: [
                "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
                "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
                "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
                "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
            ],
            // LeCun's own site has refused unauthenticated downloads at times, hence the
            // mirrors first; the digests pin the bytes whichever one answers.
            bases: &[
                "https://ossci-datasets.s3.amazonaws.com/mnist/",
                "https://storage.googleapis.com/cvdf-datasets/mnist/",
                "http://yann.lecun.com/exdb/mnist/",
            ],
            system_dirs: &[],
            system_repair: "",
            other_source: "",
            classes: (0..10).map(|d| d.to_string()).collect(),
        }
    }

    fn spec(&self, i: usize) -> FileSpec {
        FileSpec {
            dataset: self.dataset.to_string(),
            file: FILES[i].to_string(),
            sha256: self.sha256[i].to_string(),
            urls: self.bases.iter().map(|b| format!("{b}{}", FILES[i])).collect(),
            system_dirs: self.system_dirs.iter().map(PathBuf::from).collect(),
            system_repair: self.system_repair.to_string(),
            other_source: self.other_source.to_string(),
        }
    }
}

/// Fashion-MNIST (Zalando, 2017): 60 000 training and 10 000 test images of clothing in ten
/// classes ([`FASHION_MNIST_CLASSES`]), as described on [`ImageClassification`], on the CPU.
///
/// Found in `$DLHIST_DATA/fashion-mnist/`, `/usr/share/datasets/fashion-mnist/` (Debian's
/// `dataset-fashion-mnist`), or the user cache; otherwise downloaded (about 30 MB) into the
/// cache. Every file is checked against its SHA-256. Loading takes well under a second.
///
/// ```no_run
/// let data = dlhist::data::fashion_mnist()?;
/// assert_eq!(data.train.x.dims(), &[60_000, 1, 28, 28]);
/// assert_eq!(data.classes[9], "Ankle boot");
/// let small = data.train.take(1000)?; // a quick run
/// # Ok::<(), dlhist::Error>(())
/// ```
pub fn fashion_mnist() -> Result<ImageClassification> {
    load_set(&ImageSet::fashion(), &Roots::from_env())
}

/// MNIST (LeCun et al., 1998): 60 000 training and 10 000 test images of handwritten digits,
/// classes `"0"` to `"9"`, as described on [`ImageClassification`], on the CPU.
///
/// Found in `$DLHIST_DATA/mnist/` or the user cache; otherwise downloaded (about 11 MB) into the
/// cache from a mirror. Every file is checked against its SHA-256.
pub fn mnist() -> Result<ImageClassification> {
    load_set(&ImageSet::digits(), &Roots::from_env())
}

/// Locates (or fetches), verifies and decodes the four files of `set`.
fn load_set(set: &ImageSet, roots: &Roots) -> Result<ImageClassification> {
    let half = |images: usize, labels: usize| -> Result<Dataset> {
        let img = locate_or_fetch(&set.spec(images), roots)?;
        let lab = locate_or_fetch(&set.spec(labels), roots)?;
        let (pixels, [n, rows, cols]) = parse_idx_images(&img.bytes, &img.path)?;
        let labels = parse_idx_labels(&lab.bytes, &lab.path)?;
        to_dataset(&pixels, [n, rows, cols], &labels, set.classes.len(), (&img.path, &lab.path))
    };
    let train = half(0, 1)?;
    let test = half(2, 3)?;
    Ok(ImageClassification { train, test, classes: set.classes.clone() })
}

/// Turns decoded IDX bytes into a [`Dataset`], checking that images and labels agree.
fn to_dataset(
    pixels: &[u8],
    [n, rows, cols]: [usize; 3],
    labels: &[u8],
    num_classes: usize,
    (img_path, lab_path): (&Path, &Path),
) -> Result<Dataset> {
    if labels.len() != n {
        return Err(Error::Format {
            path: lab_path.to_path_buf(),
            format: "IDX label",
            reason: format!(
                "it holds {} labels but {} holds {n} images; the two files do not belong together",
                labels.len(),
                img_path.display()
            ),
        });
    }
    if let Some((i, l)) = labels.iter().enumerate().find(|(_, &l)| usize::from(l) >= num_classes) {
        return Err(Error::Format {
            path: lab_path.to_path_buf(),
            format: "IDX label",
            reason: format!("label {l} at position {i} is not a class (0..{num_classes}); delete the file and rerun"),
        });
    }
    // One pass over the bytes on the host, one upload: per-pixel tensor ops would be far slower.
    let x: Vec<f32> = pixels.iter().map(|&p| f32::from(p) / 255.0).collect();
    let y: Vec<u32> = labels.iter().map(|&l| u32::from(l)).collect();
    let x = Tensor::from_vec(x, (n, 1, rows, cols), &Device::Cpu)?;
    let y = Tensor::from_vec(y, n, &Device::Cpu)?;
    Dataset::new(x, y)
}

/// Reads an IDX image file (gzipped or not): the pixels, row-major, and `[count, rows, cols]`.
///
/// Errors with [`Error::Format`], naming the file, if it is not gzip/IDX, has the wrong magic
/// number, or is truncated.
///
/// ```no_run
/// let (pixels, [n, rows, cols]) =
///     dlhist::data::mnist::read_idx_images("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz".as_ref())?;
/// assert_eq!((n, rows, cols), (10_000, 28, 28));
/// assert_eq!(pixels.len(), n * rows * cols);
/// # Ok::<(), dlhist::Error>(())
/// ```
pub fn read_idx_images(path: &Path) -> Result<(Vec<u8>, [usize; 3])> {
    let raw = std::fs::read(path).map_err(|e| Error::io("cannot read", path, e))?;
    parse_idx_images(&raw, path)
}

/// Reads an IDX label file (gzipped or not): one byte per sample.
pub fn read_idx_labels(path: &Path) -> Result<Vec<u8>> {
    let raw = std::fs::read(path).map_err(|e| Error::io("cannot read", path, e))?;
    parse_idx_labels(&raw, path)
}

/// What to tell the user when a file's content is broken.
const REPAIR: &str =
    "delete it and rerun to download it again (if it came from Debian's dataset-fashion-mnist, reinstall that package)";

fn parse_idx_images(raw: &[u8], path: &Path) -> Result<(Vec<u8>, [usize; 3])> {
    let (dims, data) = parse_idx(raw, path, 3, "IDX image")?;
    Ok((data, [dims[0], dims[1], dims[2]]))
}

fn parse_idx_labels(raw: &[u8], path: &Path) -> Result<Vec<u8>> {
    let (_, data) = parse_idx(raw, path, 1, "IDX label")?;
    Ok(data)
}

/// Decompresses if gzipped, checks the magic number for unsigned bytes in `ndim` dimensions,
/// and checks that the payload is exactly as long as the header says.
fn parse_idx(raw: &[u8], path: &Path, ndim: u8, format: &'static str) -> Result<(Vec<usize>, Vec<u8>)> {
    let bad = |reason: String| Error::Format { path: path.to_path_buf(), format, reason };
    // Gzip streams start with 1f 8b; accept plain IDX too (some mirrors ship it unpacked).
    let mut bytes = if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::with_capacity(gzip_size_hint(raw));
        flate2::read::GzDecoder::new(raw).read_to_end(&mut out).map_err(|e| Error::Format {
            path: path.to_path_buf(),
            format: "gzip",
            reason: format!("the compressed data is truncated or corrupt ({e}); {REPAIR}"),
        })?;
        out
    } else {
        raw.to_vec()
    };
    // Magic first: a file of the wrong kind should say so, not complain about its length.
    if bytes.len() < 4 {
        return Err(bad(format!("it is only {} bytes long, too short for an IDX header; {REPAIR}", bytes.len())));
    }
    let magic = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    let want = 0x0800 | u32::from(ndim);
    if magic != want {
        let hint = if magic & 0xffff_ff00 == 0x0800 && magic & 0xff != u32::from(ndim) {
            format!(" (a {}-dimensional IDX file: images and labels swapped?)", magic & 0xff)
        } else {
            String::new()
        };
        return Err(bad(format!(
            "its magic number is {magic:#010x}, not {want:#010x} (unsigned bytes, {ndim} dimension{}){hint}; {REPAIR}",
            if ndim == 1 { "" } else { "s" }
        )));
    }
    let header_len = 4 + 4 * usize::from(ndim);
    if bytes.len() < header_len {
        return Err(bad(format!(
            "it is only {} bytes long, shorter than its {header_len}-byte header; {REPAIR}",
            bytes.len()
        )));
    }
    let dims: Vec<usize> = (0..usize::from(ndim))
        .map(|d| {
            let o = 4 + 4 * d;
            u32::from_be_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]]) as usize
        })
        .collect();
    let expected = dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
    let have = bytes.len() - header_len;
    if expected != Some(have) {
        let shape = dims.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(" x ");
        let what = if expected.is_some_and(|e| have < e) { "truncated" } else { "the wrong length" };
        return Err(bad(format!(
            "the header announces {shape} values but {have} bytes follow it: the file is {what}; {REPAIR}"
        )));
    }
    bytes.drain(..header_len);
    Ok((dims, bytes))
}

/// The uncompressed size a gzip stream announces in its last 4 bytes (mod 2^32), capped so a
/// corrupt trailer cannot make us reserve gigabytes.
fn gzip_size_hint(raw: &[u8]) -> usize {
    match raw.len().checked_sub(4) {
        Some(o) => (u32::from_le_bytes([raw[o], raw[o + 1], raw[o + 2], raw[o + 3]]) as usize).min(256 << 20),
        None => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::download::sha256_bytes;
    use std::io::Write;

    /// An IDX file of unsigned bytes with the given dimensions and payload.
    fn idx(dims: &[u32], data: &[u8]) -> Vec<u8> {
        let mut out = vec![0, 0, 0x08, dims.len() as u8];
        for d in dims {
            out.extend_from_slice(&d.to_be_bytes());
        }
        out.extend_from_slice(data);
        out
    }

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    /// `n` images of 2x3 pixels where image i is filled with 10*i + pixel index; label i % 10.
    fn toy_files(n: usize) -> (Vec<u8>, Vec<u8>) {
        let pixels: Vec<u8> = (0..n).flat_map(|i| (0..6).map(move |p| (10 * i + p) as u8)).collect();
        let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
        (gz(&idx(&[n as u32, 2, 3], &pixels)), gz(&idx(&[n as u32], &labels)))
    }

    fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
        std::fs::create_dir_all(dir).unwrap();
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }

    fn format_reason(e: Error) -> (PathBuf, String) {
        match e {
            Error::Format { path, reason, .. } => (path, reason),
            other => panic!("expected a Format error, got {other:?}"),
        }
    }

    #[test]
    fn reads_gzipped_and_plain_idx() {
        let dir = tempfile::tempdir().unwrap();
        let (images, labels) = toy_files(4);
        let p = write(dir.path(), "img.gz", &images);
        let (pix, dims) = read_idx_images(&p).unwrap();
        assert_eq!(dims, [4, 2, 3]);
        assert_eq!(&pix[6..12], &[10, 11, 12, 13, 14, 15]);
        let l = write(dir.path(), "lab.gz", &labels);
        assert_eq!(read_idx_labels(&l).unwrap(), vec![0, 1, 2, 3]);
        let plain = write(dir.path(), "lab", &idx(&[2], &[7, 9]));
        assert_eq!(read_idx_labels(&plain).unwrap(), vec![7, 9]);
    }

    #[test]
    fn wrong_magic_is_a_format_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let (images, labels) = toy_files(2);
        let p = write(dir.path(), "labels-as-images.gz", &labels);
        let (path, reason) = format_reason(read_idx_images(&p).unwrap_err());
        assert_eq!(path, p);
        assert!(reason.contains("magic number is 0x00000801") && reason.contains("swapped"), "{reason}");
        let p = write(dir.path(), "images-as-labels.gz", &images);
        let err = read_idx_labels(&p).unwrap_err();
        assert!(err.to_string().contains("images-as-labels.gz"), "{err}");
        let p = write(dir.path(), "text.txt", b"hello, this is not IDX at all");
        let (_, reason) = format_reason(read_idx_labels(&p).unwrap_err());
        assert!(reason.contains("delete it and rerun"), "{reason}");
    }

    #[test]
    fn truncated_idx_and_bad_gzip_are_format_errors() {
        let dir = tempfile::tempdir().unwrap();
        // Header says 4 images of 2x3, payload holds 3 of them.
        let short = idx(&[4, 2, 3], &[0u8; 18]);
        let p = write(dir.path(), "short.gz", &gz(&short));
        let (path, reason) = format_reason(read_idx_images(&p).unwrap_err());
        assert_eq!(path, p);
        assert!(reason.contains("4 x 2 x 3") && reason.contains("truncated"), "{reason}");
        let p = write(dir.path(), "header.idx", &[0, 0, 8, 3, 0]);
        assert!(format_reason(read_idx_images(&p).unwrap_err()).1.contains("header"));

        let (images, _) = toy_files(50);
        let p = write(dir.path(), "cut.gz", &images[..images.len() / 2]);
        let err = read_idx_images(&p).unwrap_err();
        assert!(matches!(&err, Error::Format { format: "gzip", .. }), "{err:?}");
        assert!(err.to_string().contains("cut.gz") && err.to_string().contains("truncated or corrupt"), "{err}");
        let mut garbled = images.clone();
        for b in &mut garbled[12..40] {
            *b ^= 0x5a;
        }
        let p = write(dir.path(), "garbled.gz", &garbled);
        assert!(matches!(read_idx_images(&p).unwrap_err(), Error::Format { format: "gzip", .. }));
    }

    /// A fake dataset in a tempdir with its own digests, loaded through the real code path.
    fn fake_set(dataset: &'static str, files: &[Vec<u8>; 4]) -> ImageSet {
        let sha: Vec<&'static str> = files.iter().map(|f| &*Box::leak(sha256_bytes(f).into_boxed_str())).collect();
        ImageSet {
            dataset,
            sha256: [sha[0], sha[1], sha[2], sha[3]],
            bases: &[],
            system_dirs: &[],
            system_repair: "",
            other_source: "",
            classes: (0..10).map(|d| format!("c{d}")).collect(),
        }
    }

    #[test]
    fn load_set_builds_scaled_tensors_from_data_dir_files() {
        let dir = tempfile::tempdir().unwrap();
        let (tri, trl) = toy_files(6);
        let (tei, tel) = toy_files(3);
        let files = [tri, trl, tei, tel];
        for (name, bytes) in FILES.iter().zip(&files) {
            write(&dir.path().join("toyset"), name, bytes);
        }
        let set = fake_set("toyset", &files);
        let roots = Roots { data: Some(dir.path().to_path_buf()), cache: None, offline: true, progress: false };
        let data = load_set(&set, &roots).unwrap();
        assert_eq!(data.train.x.dims(), &[6, 1, 2, 3]);
        assert_eq!(data.test.x.dims(), &[3, 1, 2, 3]);
        assert_eq!(data.train.y.to_vec1::<u32>().unwrap(), vec![0, 1, 2, 3, 4, 5]);
        let first = data.train.x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert!((first[7] - 11.0 / 255.0).abs() < 1e-7, "{}", first[7]);
        let flat = data.flatten().unwrap();
        assert_eq!(flat.train.x.dims(), &[6, 6]);
        assert_eq!(data.num_classes(), 10);

        // A swapped-in file with the right digest but mismatched counts is caught too.
        let (_, long_labels) = toy_files(7);
        let files2 = [files[0].clone(), long_labels.clone(), files[2].clone(), files[3].clone()];
        write(&dir.path().join("toyset2"), FILES[0], &files2[0]);
        write(&dir.path().join("toyset2"), FILES[1], &long_labels);
        let err = load_set(&fake_set("toyset2", &files2), &roots).unwrap_err();
        assert!(err.to_string().contains("do not belong together"), "{err}");
    }

    #[test]
    fn offline_and_absent_lists_the_searched_folders() {
        let dir = tempfile::tempdir().unwrap();
        let roots = Roots {
            data: Some(dir.path().join("data")),
            cache: Some(dir.path().join("cache")),
            offline: true,
            progress: false,
        };
        let mut set = ImageSet::fashion();
        set.system_dirs = &[];
        let msg = load_set(&set, &roots).unwrap_err().to_string();
        assert!(msg.contains("data/fashion-mnist/train-images-idx3-ubyte.gz"), "{msg}");
        assert!(msg.contains("cache/fashion-mnist/train-images-idx3-ubyte.gz"), "{msg}");
        assert!(msg.contains("DLHIST_OFFLINE") && msg.contains("apt-get install dataset-fashion-mnist"), "{msg}");
    }

    #[test]
    fn mirrors_and_digests_are_wired_up() {
        let m = ImageSet::digits();
        let s = m.spec(3);
        assert_eq!(s.urls[0], "https://ossci-datasets.s3.amazonaws.com/mnist/t10k-labels-idx1-ubyte.gz");
        assert_eq!(s.urls.last().unwrap(), "http://yann.lecun.com/exdb/mnist/t10k-labels-idx1-ubyte.gz");
        let f = ImageSet::fashion();
        assert_eq!(
            f.spec(0).urls,
            vec!["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/train-images-idx3-ubyte.gz"]
        );
        for set in [m, f] {
            assert!(set.sha256.iter().all(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit())));
        }
    }

    /// The real Fashion-MNIST from Debian's package, when installed.
    #[test]
    fn debian_fashion_mnist_loads_with_balanced_labels() {
        if !Path::new("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz").exists() {
            eprintln!("skipped: /usr/share/datasets/fashion-mnist is absent (apt-get install dataset-fashion-mnist)");
            return;
        }
        let roots = Roots { data: None, cache: None, offline: true, progress: false };
        let start = std::time::Instant::now();
        let data = load_set(&ImageSet::fashion(), &roots).unwrap();
        eprintln!("Fashion-MNIST loaded in {:.2} s (debug build)", start.elapsed().as_secs_f64());
        assert_eq!(data.train.x.dims(), &[60_000, 1, 28, 28]);
        assert_eq!(data.test.x.dims(), &[10_000, 1, 28, 28]);
        for (d, per_class) in [(&data.train, 6000), (&data.test, 1000)] {
            let mut hist = [0usize; 10];
            for l in d.y.to_vec1::<u32>().unwrap() {
                hist[l as usize] += 1;
            }
            assert_eq!(hist, [per_class; 10]);
        }
        let max = data.test.x.max_all().unwrap().to_scalar::<f32>().unwrap();
        let min = data.test.x.min_all().unwrap().to_scalar::<f32>().unwrap();
        assert_eq!((min, max), (0.0, 1.0));
    }
}
