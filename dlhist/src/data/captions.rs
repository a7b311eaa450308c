//! Captioned Fashion-MNIST: text for the CLIP and DALL-E notebooks, made from labels and measured pixels.
//!
//! No captioned images are installable offline, so we make the captions, and say so wherever they are used. A
//! caption names the item (a synonym of its class, or only its kind: *top*, *shoe*, …) and adds words that are
//! **measured from the image itself**, not copied from its label:
//!
//! | attribute | measured as | words (training-set tertiles: bottom, top third) |
//! | --- | --- | --- |
//! | tone | mean brightness of the item's pixels (those above [`INK`]) | `dark`, `light` |
//! | shape | width ÷ height of the item's bounding box | `tall`, `wide` |
//! | fill | share of the bounding box the item covers | `open`, `solid` |
//!
//! The middle third of each measure gets no word, so a caption says only what clearly holds. Captions are drawn
//! afresh every time an image is used (a template, a noun, a random subset of its attribute words), as the web
//! gives CLIP many different captions for similar images. A second set of templates, [`PROMPT_TEMPLATES`], never
//! appears in training captions: zero-shot classification is asked in words the model has not been trained on.
//!
//! [`WordTokenizer`] turns captions into fixed-length rows of word ids for the text encoder: every word the
//! templates, nouns and attributes can produce, padding id 0, and an end-of-text marker with the **largest** id,
//! CLIP's convention (its text encoder reads the caption's summary at the position of the largest id).

use std::collections::HashMap;

use candle_core::{Device, Tensor};

use crate::rng::Rng;
use crate::{Error, Result};

/// A pixel brighter than this (in `[0, 1]`) belongs to the item rather than the background.
pub const INK: f32 = 0.1;

/// Per class of Fashion-MNIST (in label order): its names (any of them may stand for it in a caption) and its
/// kind, the coarser noun shared with related classes.
pub const CLASS_WORDS: [(&[&str], &str); 10] = [
    (&["t-shirt", "tee"], "top"),
    (&["trousers", "pants"], "garment"),
    (&["pullover", "sweater", "jumper"], "top"),
    (&["dress", "gown"], "garment"),
    (&["coat", "jacket"], "top"),
    (&["sandal"], "shoe"),
    (&["shirt", "blouse"], "top"),
    (&["sneaker", "trainer"], "shoe"),
    (&["bag", "handbag"], "accessory"),
    (&["ankle boot", "boot"], "shoe"),
];

/// The caption templates of training; `{}` stands for the noun phrase (attribute words, then the noun).
pub const TRAIN_TEMPLATES: [&str; 6] =
    ["a photo of {}", "{}", "this is {}", "an image of {}", "a product photo of {}", "{} on a black background"];

/// Templates never used in training captions, for zero-shot prompts (their new words keep their untrained
/// embeddings: the model has to cope with unseen phrasing, as CLIP did with its prompts).
pub const PROMPT_TEMPLATES: [&str; 5] =
    ["a picture of {}", "a close-up picture of {}", "here we see {}", "a catalog picture showing {}", "look at {}"];

/// The attribute words, as (below the lower tertile, above the upper tertile), for tone, shape and fill.
pub const ATTRIBUTE_WORDS: [(&str, &str); 3] = [("dark", "light"), ("tall", "wide"), ("open", "solid")];

/// Measures of one image: mean brightness of the item, bounding-box width ÷ height, and covered share of the box.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Measures {
    /// Mean value of the item's pixels (those above [`INK`]).
    pub tone: f32,
    /// Bounding-box width ÷ height.
    pub shape: f32,
    /// Item pixels ÷ bounding-box area.
    pub fill: f32,
}

impl Measures {
    /// The measures of every image of `images` `[N, 1, H, W]` (or `[N, H, W]`), pixels in `[0, 1]`. An image with
    /// no pixel above [`INK`] is an error naming it (there is no item to describe).
    ///
    /// ```
    /// use dlhist::data::captions::Measures;
    /// use dlhist::prelude::*;
    /// let mut px = vec![0f32; 28 * 28];
    /// for r in 4..24 { for c in 10..15 { px[r * 28 + c] = 0.5; } } // a 20 × 5 grey bar
    /// let m = Measures::of(&Tensor::from_vec(px, (1, 1, 28, 28), &Device::Cpu)?)?;
    /// assert_eq!(m[0], Measures { tone: 0.5, shape: 0.25, fill: 1.0 });
    /// # Ok::<(), dlhist::Error>(())
    /// ```
    pub fn of(images: &Tensor) -> Result<Vec<Measures>> {
        let dims = images.dims();
        let (h, w) = match dims {
            [_, 1, h, w] | [_, h, w] => (*h, *w),
            _ => return Err(Error::Invalid(format!("Measures::of expects images [N, 1, H, W]; got {dims:?}"))),
        };
        let px: Vec<f32> = images.flatten_all()?.to_vec1()?;
        px.chunks(h * w)
            .enumerate()
            .map(|(i, img)| {
                let (mut sum, mut count) = (0f32, 0usize);
                let (mut r0, mut r1, mut c0, mut c1) = (h, 0, w, 0);
                for (k, &v) in img.iter().enumerate() {
                    if v > INK {
                        let (r, c) = (k / w, k % w);
                        (sum, count) = (sum + v, count + 1);
                        (r0, r1, c0, c1) = (r0.min(r), r1.max(r), c0.min(c), c1.max(c));
                    }
                }
                if count == 0 {
                    return Err(Error::Invalid(format!("image {i} has no pixel above {INK}: nothing to describe")));
                }
                let (bh, bw) = ((r1 - r0 + 1) as f32, (c1 - c0 + 1) as f32);
                Ok(Measures { tone: sum / count as f32, shape: bw / bh, fill: count as f32 / (bh * bw) })
            })
            .collect()
    }

    fn get(&self, k: usize) -> f32 {
        [self.tone, self.shape, self.fill][k]
    }
}

/// The tertile boundaries of each measure, fitted on a training set, that decide which words an image earns.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tertiles {
    /// `(lower, upper)` for tone, shape and fill: below `lower` earns the first word of [`ATTRIBUTE_WORDS`],
    /// above `upper` the second.
    pub bounds: [(f32, f32); 3],
}

impl Tertiles {
    /// The 1/3 and 2/3 quantiles of each measure over `measures` (an error if empty).
    pub fn fit(measures: &[Measures]) -> Result<Self> {
        if measures.is_empty() {
            return Err(Error::Invalid("Tertiles::fit needs at least one image's measures".into()));
        }
        let mut bounds = [(0f32, 0f32); 3];
        for (k, b) in bounds.iter_mut().enumerate() {
            let mut v: Vec<f32> = measures.iter().map(|m| m.get(k)).collect();
            v.sort_by(f32::total_cmp);
            let q = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
            *b = (q(1.0 / 3.0), q(2.0 / 3.0));
        }
        Ok(Tertiles { bounds })
    }

    /// The attribute words `m` earns, one per measure at most, in the order tone, shape, fill.
    ///
    /// ```
    /// use dlhist::data::captions::{Measures, Tertiles};
    /// let t = Tertiles { bounds: [(0.4, 0.6), (0.8, 1.2), (0.5, 0.7)] };
    /// let m = Measures { tone: 0.3, shape: 1.0, fill: 0.9 };
    /// assert_eq!(t.words(&m), vec!["dark", "solid"]); // shape in the middle third: no word
    /// ```
    pub fn words(&self, m: &Measures) -> Vec<&'static str> {
        let mut out = vec![];
        for (k, &(lo, hi)) in self.bounds.iter().enumerate() {
            let v = m.get(k);
            if v < lo {
                out.push(ATTRIBUTE_WORDS[k].0);
            } else if v > hi {
                out.push(ATTRIBUTE_WORDS[k].1);
            }
        }
        out
    }
}

/// "a" or "an" before `phrase`.
fn article(phrase: &str) -> &'static str {
    if phrase.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    }
}

/// `template` with `{}` replaced by an article, the attribute words and the noun.
///
/// ```
/// assert_eq!(dlhist::data::captions::fill_template("a photo of {}", &["open"], "shoe"), "a photo of an open shoe");
/// ```
pub fn fill_template(template: &str, attributes: &[&str], noun: &str) -> String {
    let mut phrase = attributes.join(" ");
    if !phrase.is_empty() {
        phrase.push(' ');
    }
    phrase.push_str(noun);
    template.replace("{}", &format!("{} {phrase}", article(&phrase)))
}

/// How a caption names its item.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CaptionStyle {
    /// Probability that the noun is one of the class's names (otherwise its kind, e.g. `shoe`).
    pub p_name: f32,
    /// Probability that each earned attribute word is said.
    pub p_attribute: f32,
}

impl Default for CaptionStyle {
    /// Names 70% of the time, each earned attribute word half of the time.
    fn default() -> Self {
        CaptionStyle { p_name: 0.7, p_attribute: 0.5 }
    }
}

/// A random training caption for an image of class `label` that earned the attribute words `attributes`:
/// a template of [`TRAIN_TEMPLATES`], a random subset of the words (in their fixed order), and a noun.
///
/// ```
/// use dlhist::data::captions::{caption, CaptionStyle};
/// let mut rng = dlhist::rng::Rng::new(0);
/// let c = caption(7, &["wide"], CaptionStyle::default(), &mut rng);
/// assert!(c.contains("sneaker") || c.contains("trainer") || c.contains("shoe"), "{c}");
/// ```
pub fn caption(label: u32, attributes: &[&str], style: CaptionStyle, rng: &mut Rng) -> String {
    let (names, kind) = CLASS_WORDS[label as usize];
    let template = TRAIN_TEMPLATES[rng.below(TRAIN_TEMPLATES.len())];
    let noun = if rng.uniform() < style.p_name { names[rng.below(names.len())] } else { kind };
    let said: Vec<&str> = attributes.iter().copied().filter(|_| rng.uniform() < style.p_attribute).collect();
    fill_template(template, &said, noun)
}

/// A word-level tokenizer over the closed vocabulary of the captions and prompts this module makes.
///
/// Ids: 0 is padding, 1 stands for any word outside the vocabulary, then the words in sorted order, and last
/// the end-of-text marker (the largest id, CLIP's convention). Words are lowercase runs split at spaces; `,` and
/// `.` are dropped.
#[derive(Debug, Clone)]
pub struct WordTokenizer {
    words: Vec<String>,
    index: HashMap<String, u32>,
    context: usize,
}

impl WordTokenizer {
    /// Padding id.
    pub const PAD: u32 = 0;
    /// Unknown-word id.
    pub const UNK: u32 = 1;

    /// The tokenizer over every word of [`TRAIN_TEMPLATES`], [`PROMPT_TEMPLATES`], [`CLASS_WORDS`] and
    /// [`ATTRIBUTE_WORDS`] (plus the articles), with rows of `context` ids (words, end-of-text, padding).
    ///
    /// ```
    /// use dlhist::data::captions::WordTokenizer;
    /// let tok = WordTokenizer::captions(8);
    /// let ids = tok.encode("a photo of a dark sneaker")?;
    /// assert_eq!(ids.len(), 8);
    /// assert_eq!(ids[6], tok.eot()); // six words, then the marker, then padding
    /// assert_eq!(ids[7], WordTokenizer::PAD);
    /// assert_eq!(tok.decode(&ids), "a photo of a dark sneaker");
    /// # Ok::<(), dlhist::Error>(())
    /// ```
    pub fn captions(context: usize) -> Self {
        let mut words: Vec<String> = vec!["a".into(), "an".into()];
        for t in TRAIN_TEMPLATES.iter().chain(PROMPT_TEMPLATES.iter()) {
            words.extend(split(t).filter(|w| *w != "{}").map(String::from));
        }
        for (names, kind) in CLASS_WORDS {
            words.extend(names.iter().flat_map(|n| split(n)).map(String::from));
            words.push(kind.to_string());
        }
        for (lo, hi) in ATTRIBUTE_WORDS {
            words.extend([lo.to_string(), hi.to_string()]);
        }
        Self::new(words, context)
    }

    /// A tokenizer over `words` (sorted and deduplicated here), with rows of `context` ids.
    pub fn new(mut words: Vec<String>, context: usize) -> Self {
        words.sort();
        words.dedup();
        let mut all = vec!["<pad>".to_string(), "<unk>".to_string()];
        all.extend(words);
        all.push("<eot>".to_string());
        let index = all.iter().enumerate().map(|(i, w)| (w.clone(), i as u32)).collect();
        WordTokenizer { words: all, index, context }
    }

    /// The number of ids.
    pub fn vocab_size(&self) -> usize {
        self.words.len()
    }

    /// Ids per encoded row.
    pub fn context(&self) -> usize {
        self.context
    }

    /// The end-of-text id (the largest).
    pub fn eot(&self) -> u32 {
        self.words.len() as u32 - 1
    }

    /// The word of each id (the vocabulary in id order).
    pub fn words(&self) -> &[String] {
        &self.words
    }

    /// `text` as `context` ids: its words, the end-of-text marker, padding. Text too long for the context is
    /// an error that says how long it is.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let mut ids: Vec<u32> = split(text).map(|w| self.index.get(w).copied().unwrap_or(Self::UNK)).collect();
        if ids.len() + 1 > self.context {
            return Err(Error::Invalid(format!(
                "\"{text}\" has {} words; with the end-of-text marker it needs a context of {}, the tokenizer has {}",
                ids.len(),
                ids.len() + 1,
                self.context
            )));
        }
        ids.push(self.eot());
        ids.resize(self.context, Self::PAD);
        Ok(ids)
    }

    /// Every text of `texts` encoded, as a `[N, context]` u32 tensor.
    pub fn encode_batch<S: AsRef<str>>(&self, texts: &[S], dev: &Device) -> Result<Tensor> {
        let mut ids = Vec::with_capacity(texts.len() * self.context);
        for t in texts {
            ids.extend(self.encode(t.as_ref())?);
        }
        Ok(Tensor::from_vec(ids, (texts.len(), self.context), dev)?)
    }

    /// The words of `ids` up to the end-of-text marker, joined by spaces.
    pub fn decode(&self, ids: &[u32]) -> String {
        ids.iter()
            .take_while(|&&i| i != self.eot())
            .filter(|&&i| i != Self::PAD)
            .map(|&i| self.words.get(i as usize).map_or("<unk>", String::as_str))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

fn split(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| c.is_whitespace() || c == ',' || c == '.').filter(|w| !w.is_empty())
}

/// Images with what their captions are made from: labels and the attribute words each image earned.
#[derive(Debug, Clone)]
pub struct CaptionedImages {
    /// The images `[N, 1, 28, 28]`, pixels in `[0, 1]`.
    pub images: Tensor,
    /// Class of each image.
    pub labels: Vec<u32>,
    /// The attribute words each image earned ([`Tertiles::words`]).
    pub attributes: Vec<Vec<&'static str>>,
}

impl CaptionedImages {
    /// `images` with `labels`, their attribute words decided by `tertiles` (fit them on the training images).
    pub fn new(images: Tensor, labels: Vec<u32>, tertiles: &Tertiles) -> Result<Self> {
        let measures = Measures::of(&images)?;
        if measures.len() != labels.len() {
            return Err(Error::Invalid(format!("{} images but {} labels", measures.len(), labels.len())));
        }
        let attributes = measures.iter().map(|m| tertiles.words(m)).collect();
        Ok(CaptionedImages { images, labels, attributes })
    }

    /// The number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The images at `rows`, in that order.
    pub fn select(&self, rows: &[u32]) -> Result<Self> {
        let ids = Tensor::new(rows, self.images.device())?;
        Ok(CaptionedImages {
            images: self.images.index_select(&ids, 0)?,
            labels: rows.iter().map(|&r| self.labels[r as usize]).collect(),
            attributes: rows.iter().map(|&r| self.attributes[r as usize].clone()).collect(),
        })
    }

    /// The images whose class is not in `classes`.
    pub fn without_classes(&self, classes: &[u32]) -> Result<Self> {
        self.where_class(|c| !classes.contains(&c))
    }

    /// The images whose class is in `classes`.
    pub fn of_classes(&self, classes: &[u32]) -> Result<Self> {
        self.where_class(|c| classes.contains(&c))
    }

    /// The images whose class passes `keep`, in their order.
    fn where_class(&self, keep: impl Fn(u32) -> bool) -> Result<Self> {
        let rows: Vec<u32> = (0..self.len() as u32).filter(|&r| keep(self.labels[r as usize])).collect();
        self.select(&rows)
    }

    /// A fresh random caption ([`caption`]) for each image at `rows`.
    pub fn captions(&self, rows: &[u32], style: CaptionStyle, rng: &mut Rng) -> Vec<String> {
        rows.iter().map(|&r| caption(self.labels[r as usize], &self.attributes[r as usize], style, rng)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bar(rows: std::ops::Range<usize>, cols: std::ops::Range<usize>, v: f32) -> Vec<f32> {
        let mut px = vec![0f32; 28 * 28];
        for r in rows {
            for c in cols.clone() {
                px[r * 28 + c] = v;
            }
        }
        px
    }

    #[test]
    fn measures_read_the_pixels() {
        let mut px = bar(10..14, 2..26, 0.9); // wide, bright, full
        px.extend(bar(0..28, 0..28, 0.0).iter().enumerate().map(|(k, _)| if k % 2 == 0 { 0.3 } else { 0.0 }));
        let m = Measures::of(&Tensor::from_vec(px, (2, 1, 28, 28), &Device::Cpu).unwrap()).unwrap();
        assert!((m[0].tone - 0.9).abs() < 1e-5 && m[0].shape == 6.0 && m[0].fill == 1.0, "{:?}", m[0]);
        // Even columns lit in every row: a box of 27 columns × 28 rows, half-and-a-bit covered.
        let want = Measures { tone: 0.3, shape: 27.0 / 28.0, fill: 14.0 / 27.0 };
        assert!((m[1].fill - want.fill).abs() < 1e-5 && (m[1].tone - 0.3).abs() < 1e-5, "{:?}", m[1]);
        assert!((m[1].shape - want.shape).abs() < 1e-6);
        let blank = Tensor::zeros((1, 1, 28, 28), candle_core::DType::F32, &Device::Cpu).unwrap();
        let err = Measures::of(&blank).unwrap_err().to_string();
        assert!(err.contains("image 0") && err.contains("nothing to describe"), "{err}");
        let bad = Tensor::zeros((2, 3, 28, 28), candle_core::DType::F32, &Device::Cpu).unwrap();
        assert!(Measures::of(&bad).unwrap_err().to_string().contains("[2, 3, 28, 28]"));
    }

    #[test]
    fn tertiles_split_in_thirds() {
        let ms: Vec<Measures> = (0..9).map(|i| Measures { tone: i as f32, shape: 1.0, fill: -(i as f32) }).collect();
        let t = Tertiles::fit(&ms).unwrap();
        let words: Vec<Vec<&str>> = ms.iter().map(|m| t.words(m)).collect();
        assert_eq!(words.iter().filter(|w| w.contains(&"dark")).count(), 3);
        assert_eq!(words.iter().filter(|w| w.contains(&"light")).count(), 3);
        assert!(words.iter().all(|w| !w.contains(&"tall") && !w.contains(&"wide")), "constant shape earns nothing");
        assert_eq!(words[0], vec!["dark", "solid"]);
        assert!(Tertiles::fit(&[]).is_err());
    }

    #[test]
    fn every_caption_and_prompt_is_in_the_vocabulary_and_fits() {
        let tok = WordTokenizer::captions(12);
        let mut rng = Rng::new(3);
        for label in 0..10 {
            for _ in 0..50 {
                let c = caption(label, &["dark", "wide", "solid"], CaptionStyle::default(), &mut rng);
                let ids = tok.encode(&c).unwrap();
                assert!(!ids.contains(&WordTokenizer::UNK), "{c}");
                assert_eq!(tok.decode(&ids), c);
            }
            for t in PROMPT_TEMPLATES {
                for n in CLASS_WORDS[label as usize].0 {
                    let ids = tok.encode(&fill_template(t, &["light", "tall", "open"], n)).unwrap();
                    assert!(!ids.contains(&WordTokenizer::UNK));
                }
            }
        }
        assert_eq!(tok.encode("a photo of a zebra").unwrap()[4], WordTokenizer::UNK);
        assert_eq!(*tok.encode("a").unwrap().iter().max().unwrap(), tok.eot(), "end-of-text has the largest id");
        let err = WordTokenizer::captions(3).encode("a photo of").unwrap_err().to_string();
        assert!(err.contains("3 words") && err.contains("context of 4"), "{err}");
    }

    #[test]
    fn prompt_template_words_never_appear_in_training_captions() {
        let train: std::collections::HashSet<&str> = TRAIN_TEMPLATES.iter().flat_map(|t| split(t)).collect();
        for t in PROMPT_TEMPLATES {
            assert!(split(t).any(|w| w != "{}" && w != "a" && !train.contains(w)), "{t} adds no unseen word");
        }
    }

    #[test]
    fn captions_are_seeded_and_vary() {
        let mut a = Rng::new(9);
        let mut b = Rng::new(9);
        let ca: Vec<String> = (0..20).map(|_| caption(0, &["dark"], CaptionStyle::default(), &mut a)).collect();
        let cb: Vec<String> = (0..20).map(|_| caption(0, &["dark"], CaptionStyle::default(), &mut b)).collect();
        assert_eq!(ca, cb);
        let distinct: std::collections::HashSet<&String> = ca.iter().collect();
        assert!(distinct.len() > 5, "{distinct:?}");
        assert!(ca.iter().any(|c| c.contains(" top")) && ca.iter().any(|c| c.contains("dark")));
    }
}
