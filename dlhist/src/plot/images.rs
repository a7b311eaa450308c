//! Image grids: a batch of images (dataset samples, predictions, a layer's filters) laid out in
//! rows, each with an optional caption such as "pred 3 / true 5".
//!
//! # Why embedded PNGs
//! Each image is an `<image>` element whose pixels are a PNG `data:` URI, instead of one SVG
//! rectangle per pixel. Sixty-four 28 x 28 Fashion-MNIST images are 50 176 pixels: as
//! rectangles that is a few megabytes of SVG even after merging equal neighbours (natural
//! images have few equal neighbours), which makes notebooks slow to open and to diff. As PNGs
//! it is a few tens of kilobytes. The `png` crate encodes them and the `base64` crate turns
//! them into URIs; plotters draws the title, the captions and the frames around the images
//! (its SVG backend can embed images only through the `image` crate, so the `<image>`
//! elements are added to its document afterwards).
//!
//! Images are upscaled by whole-number factors before encoding (nearest neighbour: pixel
//! blocks stay sharp) and marked `image-rendering: pixelated`, so viewers that scale the figure
//! do not blur the pixels into mush. Repeated rows and pixels cost almost nothing after PNG's
//! filtering and deflate.

use candle_core::{DType, Tensor};

use plotters::prelude::{Color, RGBColor, Rectangle, Text};
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::render::{
    append_markup, bold, bold_text_width, colored, font, image_element, png_data_uri, render_svg, text_width,
};
use super::{shape_str, Colormap, Figure, Rgb, CAPTION_SIZE, HIGHLIGHT_COLOR, MARGIN, TITLE_SIZE};
use crate::{Error, Result};

/// The frame around images that are not highlighted.
const FRAME_COLOR: Rgb = Rgb(0xdd, 0xdd, 0xdd);

/// Most images one grid shows: beyond this the SVG gets too heavy for a notebook, and nobody
/// looks at each image anyway.
const MAX_IMAGES: usize = 1024;

/// How pixel values map to brightness.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub enum Normalize {
    /// `u8` tensors: 0..=255. Float tensors whose values all lie in [0, 1]: as they are.
    /// Anything else: [`PerImage`](Normalize::PerImage).
    #[default]
    Auto,
    /// Each image stretched to its own minimum..maximum (shows the structure of e.g. learned
    /// filters, whose scales differ).
    PerImage,
    /// All images stretched to the batch's minimum..maximum (keeps images comparable).
    Global,
    /// A fixed range: `lo` is black, `hi` is white, values beyond are clamped.
    Range(f64, f64),
}

/// A grid of images with optional captions.
///
/// ```
/// use candle_core::{Device, Tensor};
/// use dlhist::plot::ImageGrid;
/// // Four 8x8 gradients.
/// let imgs = Tensor::arange(0f32, 256.0, &Device::Cpu)?.reshape((4, 8, 8))?;
/// let fig = ImageGrid::new(&imgs)
///     .cols(2)
///     .title("Samples")
///     .captions(["a", "b", "c", "d"])
///     .highlight([false, true, false, false]) // e.g. a misclassified one
///     .render()?;
/// assert_eq!(fig.svg().matches("<image").count(), 4);
/// # Ok::<(), dlhist::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct ImageGrid {
    images: Tensor,
    cols: Option<usize>,
    title: String,
    captions: Vec<String>,
    highlight: Vec<bool>,
    pixel: Option<u32>,
    colormap: Colormap,
    normalize: Normalize,
}

/// A grid of `images` (`[N, H, W]`, `[N, 1, H, W]` or `[N, 3, H, W]`) `cols` wide; see
/// [`ImageGrid`] for captions and options.
///
/// ```
/// use candle_core::{DType, Device, Tensor};
/// let imgs = Tensor::zeros((6, 1, 28, 28), DType::U8, &Device::Cpu)?;
/// let fig = dlhist::plot::image_grid(&imgs, 3)?;
/// assert_eq!(fig.svg().matches("<image").count(), 6);
/// # Ok::<(), dlhist::Error>(())
/// ```
pub fn image_grid(images: &Tensor, cols: usize) -> Result<Figure> {
    ImageGrid::new(images).cols(cols).render()
}

impl ImageGrid {
    /// A grid of `images`: `[N, H, W]` or `[N, 1, H, W]` grayscale, or `[N, 3, H, W]` RGB;
    /// any dtype (see [`Normalize`] for how values become brightness).
    pub fn new(images: &Tensor) -> Self {
        ImageGrid {
            images: images.clone(),
            cols: None,
            title: String::new(),
            captions: Vec::new(),
            highlight: Vec::new(),
            pixel: None,
            colormap: Colormap::Gray,
            normalize: Normalize::Auto,
        }
    }

    /// Images per row (default: up to 8, fewer for large images).
    pub fn cols(mut self, cols: usize) -> Self {
        self.cols = Some(cols);
        self
    }

    /// Title above the grid.
    pub fn title(mut self, title: impl Into<String>) -> Self {
        self.title = title.into();
        self
    }

    /// One caption per image, shown under it.
    pub fn captions<S: ToString>(mut self, captions: impl IntoIterator<Item = S>) -> Self {
        self.captions = super::strings(captions);
        self
    }

    /// Marks images (red frame, red caption), one flag per image: e.g. `pred != target`.
    pub fn highlight(mut self, flags: impl IntoIterator<Item = bool>) -> Self {
        self.highlight = flags.into_iter().collect();
        self
    }

    /// Screen pixels per image pixel (default: about 84 screen pixels per image side).
    pub fn pixel_size(mut self, px: u32) -> Self {
        self.pixel = Some(px);
        self
    }

    /// Colours for grayscale images (default [`Colormap::Gray`]; ignored for RGB).
    pub fn colormap(mut self, colormap: Colormap) -> Self {
        self.colormap = colormap;
        self
    }

    /// How values map to brightness (default [`Normalize::Auto`]).
    pub fn normalize(mut self, normalize: Normalize) -> Self {
        self.normalize = normalize;
        self
    }

    /// Draws the grid.
    ///
    /// Errors if the tensor is not `[N, H, W]`, `[N, 1, H, W]` or `[N, 3, H, W]` with N > 0,
    /// if the numbers of captions or highlight flags differ from N, or on a bad option.
    pub fn render(self) -> Result<Figure> {
        let (n, channels, h, w) = match *self.images.dims() {
            [n, h, w] => (n, 1, h, w),
            [n, c, h, w] if c == 1 || c == 3 => (n, c, h, w),
            _ => {
                return Err(Error::Invalid(format!(
                    "image_grid expects [N, H, W], [N, 1, H, W] or [N, 3, H, W]; got {}",
                    shape_str(self.images.dims())
                )))
            }
        };
        if n == 0 || h == 0 || w == 0 {
            return Err(Error::Invalid(format!(
                "image_grid got an empty batch (shape {}); nothing to show",
                shape_str(self.images.dims())
            )));
        }
        if n > MAX_IMAGES {
            return Err(Error::Invalid(format!(
                "image_grid: {n} images are too many for one figure (at most {MAX_IMAGES}); show a slice, e.g. \
                 images.narrow(0, 0, 64)?"
            )));
        }
        for (what, len) in [("captions", self.captions.len()), ("highlight flags", self.highlight.len())] {
            if len != 0 && len != n {
                return Err(Error::Invalid(format!("image_grid: {len} {what} for {n} images; give one per image")));
            }
        }
        if self.cols == Some(0) || self.pixel == Some(0) {
            return Err(Error::Invalid("image_grid: cols and pixel_size must be at least 1".into()));
        }
        let values = super::tensor_values(&self.images)?;
        let per_image = channels * h * w;

        let normalize = match self.normalize {
            Normalize::Auto if self.images.dtype() == DType::U8 => Normalize::Range(0.0, 255.0),
            Normalize::Auto if values.iter().all(|v| (0.0..=1.0).contains(v)) => Normalize::Range(0.0, 1.0),
            Normalize::Auto => Normalize::PerImage,
            other => other,
        };
        if let Normalize::Range(lo, hi) = normalize {
            if !(lo.is_finite() && hi.is_finite() && lo < hi) {
                return Err(Error::Invalid(format!("image_grid: Normalize::Range({lo}, {hi}) needs lo < hi")));
            }
        }
        let global = finite_min_max(&values);

        // Layout: whole-number upscaling to about 84 screen pixels per side.
        let side = h.max(w) as f64;
        let p = self.pixel.unwrap_or_else(|| (84.0 / side).round().clamp(1.0, 16.0) as u32) as usize;
        let (img_w, img_h) = ((w * p) as f64, (h * p) as f64);
        let gap = 10.0;
        // Highlighted captions are bold, about 10% wider.
        let widen = if self.highlight.iter().any(|&h| h) { 1.1 } else { 1.0 };
        let caption_w = self.captions.iter().map(|c| text_width(c, CAPTION_SIZE) * widen).fold(0.0, f64::max);
        let col_w = img_w.max(caption_w + 4.0);
        let cols = self.cols.unwrap_or_else(|| ((760.0 / (col_w + gap)).floor() as usize).clamp(1, 8)).min(n);
        let rows = n.div_ceil(cols);
        let caption_h = if self.captions.is_empty() { 0.0 } else { CAPTION_SIZE + 6.0 };
        let row_h = img_h + caption_h;
        let title_h = if self.title.is_empty() { 0.0 } else { TITLE_SIZE + 12.0 };
        let title_w = bold_text_width(&self.title, TITLE_SIZE);
        let grid_w = cols as f64 * col_w + (cols - 1) as f64 * gap;
        let width = (2.0 * MARGIN + grid_w.max(title_w)).ceil();
        let height = (2.0 * MARGIN + title_h + rows as f64 * row_h + (rows - 1) as f64 * gap).ceil();
        let x0 = (width - grid_w) / 2.0;

        // Where each image goes (whole pixels) and its pixels as a PNG data URI.
        let mut placed = Vec::with_capacity(n);
        let mut rgb = vec![0u8; w * p * h * p * 3];
        for i in 0..n {
            let img = &values[i * per_image..(i + 1) * per_image];
            let (lo, hi) = match normalize {
                Normalize::Range(lo, hi) => (lo, hi),
                Normalize::Global => global,
                _ => finite_min_max(img),
            };
            paint(img, channels, h, w, p, (lo, hi), self.colormap, &mut rgb);
            let uri = png_data_uri((w * p) as u32, (h * p) as u32, &rgb)?;
            let (r, c) = (i / cols, i % cols);
            let cx = (x0 + c as f64 * (col_w + gap) + col_w / 2.0).round() as i32;
            let y = (MARGIN + title_h + r as f64 * (row_h + gap)).round() as i32;
            placed.push((cx, y, uri));
        }
        let (iw, ih) = (img_w as i32, img_h as i32);
        let (title, captions, highlight) = (self.title.as_str(), &self.captions, &self.highlight);
        let mut svg = render_svg("image_grid", (width as u32, height as u32), |root| {
            if !title.is_empty() {
                let style = bold(TITLE_SIZE).pos(Pos::new(HPos::Center, VPos::Top));
                root.draw(&Text::new(title, ((width / 2.0) as i32, MARGIN as i32), style))?;
            }
            for (i, (cx, y, _)) in placed.iter().enumerate() {
                let x = cx - iw / 2;
                let flagged = highlight.get(i).copied().unwrap_or(false);
                // A 2 px stroke centred one pixel outside the image's edges lies flush against
                // it, so the image, drawn over the frames afterwards, hides none of it.
                let color = if flagged { HIGHLIGHT_COLOR } else { FRAME_COLOR };
                let frame = [(x - 1, y - 1), (x + iw + 1, y + ih + 1)];
                root.draw(&Rectangle::new(frame, RGBColor::from(color).stroke_width(2)))?;
                if let Some(caption) = captions.get(i) {
                    let style = if flagged { colored(bold(CAPTION_SIZE), color) } else { font(CAPTION_SIZE) };
                    root.draw(&Text::new(
                        caption.as_str(),
                        (*cx, y + ih + 4),
                        style.pos(Pos::new(HPos::Center, VPos::Top)),
                    ))?;
                }
            }
            Ok(())
        })?;
        let images: String = placed.iter().map(|(cx, y, uri)| image_element(cx - iw / 2, *y, iw, ih, uri)).collect();
        append_markup(&mut svg, &images)?;
        Ok(Figure::new(svg, width as u32, height as u32, &self.title))
    }
}

/// The smallest and largest finite values; (0, 1) if there are none, and a unit range around a
/// constant so a flat image shows as mid-grey rather than dividing by zero.
fn finite_min_max(values: &[f64]) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for &v in values.iter().filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if lo > hi {
        (0.0, 1.0)
    } else if lo == hi {
        (lo - 0.5, hi + 0.5)
    } else {
        (lo, hi)
    }
}

/// Writes one image (channel-first values) into `rgb`, upscaled `p` times.
#[allow(clippy::too_many_arguments)]
fn paint(
    img: &[f64],
    channels: usize,
    h: usize,
    w: usize,
    p: usize,
    (lo, hi): (f64, f64),
    cmap: Colormap,
    rgb: &mut [u8],
) {
    let t = |v: f64| (v - lo) / (hi - lo);
    let out_w = w * p;
    for y in 0..h {
        for x in 0..w {
            let color = if channels == 1 {
                cmap.color(t(img[y * w + x]))
            } else {
                let ch = |c: usize| {
                    let v = t(img[c * h * w + y * w + x]);
                    if v.is_finite() {
                        (v.clamp(0.0, 1.0) * 255.0).round() as u8
                    } else {
                        0
                    }
                };
                Rgb(ch(0), ch(1), ch(2))
            };
            for dy in 0..p {
                let row = (y * p + dy) * out_w;
                for dx in 0..p {
                    let o = (row + x * p + dx) * 3;
                    rgb[o..o + 3].copy_from_slice(&[color.0, color.1, color.2]);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plot::test_util::*;

    #[test]
    fn grid_has_one_image_per_input_and_captions() {
        let dev = crate::device::test_device();
        let imgs = crate::rng::Rng::new(1).uniform_tensor((10, 28, 28), 0.0, 1.0, &dev).expect("tensor");
        let fig = ImageGrid::new(&imgs)
            .cols(4)
            .title("Fashion-MNIST")
            .captions((0..10).map(|i| format!("pred {i}")))
            .highlight((0..10).map(|i| i == 3))
            .render()
            .expect("renders");
        let svg = fig.svg();
        let placed = images(svg);
        assert_eq!(placed.len(), 10);
        let captions = texts_where(svg, CAPTION_SIZE, "middle", false);
        assert_eq!(captions, (0..10).map(|i| format!("pred {i}")).collect::<Vec<_>>());
        assert_eq!(outlines(svg, HIGHLIGHT_COLOR), 1);
        assert_eq!(outlines(svg, FRAME_COLOR), 9);
        assert!(texts(svg).contains(&"Fashion-MNIST".to_string()));
        // 4 columns and 3 rows of 84 px images.
        let xs: std::collections::BTreeSet<i64> = placed.iter().map(|p| p.0 as i64).collect();
        let ys: std::collections::BTreeSet<i64> = placed.iter().map(|p| p.1 as i64).collect();
        assert_eq!((xs.len(), ys.len()), (4, 3));
        assert!(placed.iter().all(|p| (p.2, p.3) == (84.0, 84.0)), "{placed:?}");
        assert!(svg.contains("data:image/png;base64,iVBORw0KGgo"), "PNG signature in base64");
    }

    #[test]
    fn accepts_all_layouts_and_dtypes() {
        let dev = crate::device::test_device();
        for shape in [vec![3, 5, 7], vec![3, 1, 5, 7], vec![3, 3, 5, 7]] {
            let t = Tensor::ones(shape.as_slice(), DType::F32, &dev).expect("tensor");
            let fig = image_grid(&t, 2).expect("renders");
            assert_eq!(images(fig.svg()).len(), 3, "shape {shape:?}");
        }
        let bytes = Tensor::zeros((2, 4, 4), DType::U8, &dev).expect("tensor");
        assert_eq!(images(image_grid(&bytes, 8).expect("u8").svg()).len(), 2);
        // Values outside [0, 1] are normalised rather than clipped to white.
        let big = (Tensor::arange(0f32, 32.0, &dev).expect("t").reshape((2, 4, 4)).expect("t") * 100.0).expect("t");
        let fig = ImageGrid::new(&big).render().expect("renders");
        assert_eq!(images(fig.svg()).len(), 2);
    }

    #[test]
    fn shape_errors_name_the_shape() {
        let dev = crate::device::test_device();
        let t = Tensor::zeros((2, 5), DType::F32, &dev).expect("tensor");
        let err = image_grid(&t, 2).expect_err("2-D");
        assert_eq!(err.to_string(), "image_grid expects [N, H, W], [N, 1, H, W] or [N, 3, H, W]; got [2, 5]");
        let t = Tensor::zeros((2, 2, 5, 5), DType::F32, &dev).expect("tensor");
        assert!(image_grid(&t, 2).is_err());
        let t = Tensor::zeros((2, 5, 5), DType::F32, &dev).expect("tensor");
        let err = ImageGrid::new(&t).captions(["one"]).render().expect_err("caption count");
        assert!(err.to_string().contains("1 captions for 2 images"), "{err}");
        assert!(image_grid(&t, 0).is_err());
    }

    #[test]
    fn painting_normalises_and_upscales() {
        let mut rgb = vec![0u8; 2 * 2 * 2 * 2 * 3];
        paint(&[0.0, 1.0, 2.0, 3.0], 1, 2, 2, 2, (0.0, 3.0), Colormap::Gray, &mut rgb);
        // Top-left 2x2 block black, bottom-right block white.
        assert_eq!(&rgb[0..3], &[0, 0, 0]);
        assert_eq!(&rgb[rgb.len() - 3..], &[255, 255, 255]);
        // Pixel (0, 1) of the upscaled image repeats pixel (0, 0).
        assert_eq!(&rgb[3..6], &[0, 0, 0]);
        assert_eq!(finite_min_max(&[f64::NAN, 2.0, 2.0]), (1.5, 2.5));
    }
}
