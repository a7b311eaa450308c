//! Figures that render inline in Jupyter (through the evcxr kernel) and save to `.svg` files.
//!
//! Every figure is a [`Figure`]: a finished SVG document. A notebook cell that ends with a
//! `Figure` shows it, because evcxr calls [`Figure::evcxr_display`]; `fig.save("loss.svg")?`
//! writes it. SVG is the one format every notebook front end renders (Jupyter Lab and Notebook,
//! VS Code, GitHub's viewer) and it needs no system fonts: text stays text.
//!
//! | figure | builder | for |
//! | --- | --- | --- |
//! | line chart | [`LineChart`] | loss and accuracy curves, log scales |
//! | scatter | [`ScatterPlot`], [`DecisionPlot`] | 2-D data, a classifier's decision regions |
//! | image grid | [`ImageGrid`] | dataset samples, predictions, learned filters |
//! | heatmap | [`Heatmap`], [`confusion_matrix`] | attention maps, confusion matrices, weights |
//! | bar chart | [`BarChart`] | comparing runs, per-class accuracy |
//!
//! [`Figure::row`] and [`Figure::grid`] put finished figures side by side (a loss curve next to
//! the decision boundary it produced).
//!
//! ```
//! use dlhist::plot::{Figure, LineChart};
//! let loss: Vec<f32> = (0..100).map(|i| 2.0 * (-0.05 * i as f32).exp() + 0.1).collect();
//! let fig = LineChart::new("Training loss").x_label("step").y_label("loss").log_y().series_y("train", &loss).render()?;
//! assert!(fig.svg().contains("Training loss"));
//! let both = Figure::row([&fig, &fig])?;
//! assert_eq!(both.width(), 2 * fig.width());
//! # Ok::<(), dlhist::Error>(())
//! ```
//!
//! # What draws what
//! [plotters](https://docs.rs/plotters) draws every chart with axes: its `ChartBuilder` lays
//! out the title, label areas and plotting area, its mesh draws grid lines, tick marks, tick
//! labels and axis labels, its linear and logarithmic (`log_scale`) coordinates map data to
//! pixels, `LineSeries`, `Circle` and `Rectangle` elements draw the data, and
//! `configure_series_labels` draws the legends. It renders with its SVG backend into a
//! `String`, without its `ttf` feature, so no system font is read: text stays `<text>`.
//! Colour scales come from plotters' colormaps. PNG images inside figures are encoded by the
//! `png` crate and base64 by the `base64` crate.
//!
//! What is ours: the decisions plotters leaves to its caller, made from the data (label area
//! sizes from estimated text widths, how many ticks fit, which corner the legend takes, tick
//! labels on log axes spanning less than a few decades, headroom for a bar chart's legend,
//! thinning long curves to a few points per pixel column, cutting lines at a fixed range);
//! the heatmap's cell sizing and colour bar (a second plotters chart, its gradient 48
//! rectangles); the image grid's layout; and [`Figure::grid`], which places finished SVG
//! documents side by side in one document (plotters can split a canvas but cannot draw a
//! finished document into a part of it). Text, frames and shapes are plotters elements even
//! there; only `<image>` elements and the grid's panels are written by hand.
//!
//! Details dropped in the move to plotters: a legend never moves outside the plot (plotters
//! draws legends inside the plotting area; when every corner holds data it sits in the
//! emptiest one, on a translucent background), long category labels stand vertical rather
//! than at 40° (plotters rotates text by quarter turns only), scatter markers have no white
//! outline, coordinates are whole pixels, and drawn elements carry no `class` attributes.
//!
//! Figures never contain `id` attributes, so several combine into one SVG and sit next to
//! each other when inlined into HTML pages (nbconvert exports, the classic notebook).

use std::borrow::Borrow;
use std::fmt;
use std::io::Write as _;
use std::path::Path;

use candle_core::{DType, Tensor};
use plotters::prelude::{BlackWhite, ColorMap, DerivedColorMap, RGBColor, ViridisRGB};

use crate::{Error, Result};

mod axes;
pub mod bar;
pub mod heatmap;
pub mod images;
pub mod line;
pub mod pca;
mod render;
pub mod scatter;

pub use bar::BarChart;
pub use heatmap::{confusion_counts, confusion_matrix, Heatmap, IntoMatrix};
pub use images::{image_grid, ImageGrid, Normalize};
pub use line::LineChart;
pub use pca::Pca;
pub use scatter::{DecisionPlot, ScatterPlot};

// ---------------------------------------------------------------------------------------------
// The shared style: every figure draws with these, so they look like one family.
// ---------------------------------------------------------------------------------------------

/// Default figure width in pixels: fits a notebook column without scrolling.
pub const WIDTH: u32 = 640;
/// Default figure height in pixels.
pub const HEIGHT: u32 = 400;

/// Font stack written on every text element. DejaVu Sans first because the layout's width
/// estimates are tuned to it; the others are what Mac and Windows viewers have.
pub(crate) const FONT_FAMILY: &str = "DejaVu Sans, Helvetica, Arial, sans-serif";
pub(crate) const TITLE_SIZE: f64 = 14.0;
pub(crate) const LABEL_SIZE: f64 = 12.0;
pub(crate) const TICK_SIZE: f64 = 11.0;
pub(crate) const LEGEND_SIZE: f64 = 12.0;
pub(crate) const CAPTION_SIZE: f64 = 11.0;
/// Blank border around every figure.
pub(crate) const MARGIN: f64 = 12.0;
pub(crate) const TEXT_COLOR: Rgb = Rgb(0x22, 0x22, 0x22);
pub(crate) const AXIS_COLOR: Rgb = Rgb(0x88, 0x88, 0x88);
pub(crate) const GRID_COLOR: Rgb = Rgb(0xe4, 0xe4, 0xe4);
pub(crate) const MINOR_GRID_COLOR: Rgb = Rgb(0xf2, 0xf2, 0xf2);
/// Marks what deserves attention, e.g. a misclassified image's caption.
pub(crate) const HIGHLIGHT_COLOR: Rgb = Rgb(0xd6, 0x27, 0x28);

/// The series and class colours, in order: Tableau 10, chosen to stay distinguishable for the
/// common forms of colour blindness and when printed in grey. Series `i` gets `PALETTE[i % 10]`.
pub const PALETTE: [Rgb; 10] = [
    Rgb(0x4e, 0x79, 0xa7), // blue
    Rgb(0xf2, 0x8e, 0x2b), // orange
    Rgb(0xe1, 0x57, 0x59), // red
    Rgb(0x76, 0xb7, 0xb2), // teal
    Rgb(0x59, 0xa1, 0x4f), // green
    Rgb(0xed, 0xc9, 0x48), // yellow
    Rgb(0xb0, 0x7a, 0xa1), // purple
    Rgb(0xff, 0x9d, 0xa7), // pink
    Rgb(0x9c, 0x75, 0x5f), // brown
    Rgb(0xba, 0xb0, 0xac), // grey
];

/// The palette colour of series or class `i`.
pub(crate) fn palette(i: usize) -> Rgb {
    PALETTE[i % PALETTE.len()]
}

/// An sRGB colour.
///
/// ```
/// use dlhist::plot::Rgb;
/// assert_eq!(Rgb(255, 128, 0).hex(), "#ff8000");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rgb(pub u8, pub u8, pub u8);

impl Rgb {
    /// The colour as `#rrggbb`.
    pub fn hex(self) -> String {
        format!("#{:02x}{:02x}{:02x}", self.0, self.1, self.2)
    }

    /// Linear blend: `t = 0` gives `self`, `t = 1` gives `other`.
    pub fn mix(self, other: Rgb, t: f64) -> Rgb {
        let t = t.clamp(0.0, 1.0);
        let m = |a: u8, b: u8| (f64::from(a) + (f64::from(b) - f64::from(a)) * t).round() as u8;
        Rgb(m(self.0, other.0), m(self.1, other.1), m(self.2, other.2))
    }

    /// Relative luminance in [0, 1] (Rec. 709 weights on gamma-encoded values; close enough to
    /// choose black or white text on top of this colour).
    pub fn luminance(self) -> f64 {
        (0.2126 * f64::from(self.0) + 0.7152 * f64::from(self.1) + 0.0722 * f64::from(self.2)) / 255.0
    }
}

/// How values map to colours in heatmaps and grayscale image grids.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Colormap {
    /// Perceptually uniform dark purple to yellow (matplotlib's default); good for any matrix.
    #[default]
    Viridis,
    /// White to dark blue: counts, e.g. confusion matrices.
    Blues,
    /// Black to white: grayscale images.
    Gray,
    /// Blue (low) through white (middle) to red (high): signed values such as weights. Heatmaps
    /// using it centre their automatic range on zero.
    Diverging,
}

/// ColorBrewer's "Blues" (white to dark blue), evenly spaced stops.
const BLUES: [RGBColor; 9] = [
    RGBColor(0xf7, 0xfb, 0xff),
    RGBColor(0xde, 0xeb, 0xf7),
    RGBColor(0xc6, 0xdb, 0xef),
    RGBColor(0x9e, 0xca, 0xe1),
    RGBColor(0x6b, 0xae, 0xd6),
    RGBColor(0x42, 0x92, 0xc6),
    RGBColor(0x21, 0x71, 0xb5),
    RGBColor(0x08, 0x51, 0x9c),
    RGBColor(0x08, 0x30, 0x6b),
];
/// ColorBrewer's "RdBu" reversed (blue, white, red), evenly spaced stops.
const DIVERGING: [RGBColor; 9] = [
    RGBColor(0x21, 0x66, 0xac),
    RGBColor(0x43, 0x93, 0xc3),
    RGBColor(0x92, 0xc5, 0xde),
    RGBColor(0xd1, 0xe5, 0xf0),
    RGBColor(0xf7, 0xf7, 0xf7),
    RGBColor(0xfd, 0xdb, 0xc7),
    RGBColor(0xf4, 0xa5, 0x82),
    RGBColor(0xd6, 0x60, 0x4d),
    RGBColor(0xb2, 0x18, 0x2b),
];

impl Colormap {
    /// The colour of `t` in [0, 1] (clamped; NaN maps to a neutral grey).
    ///
    /// ```
    /// use dlhist::plot::{Colormap, Rgb};
    /// assert_eq!(Colormap::Gray.color(0.0), Rgb(0, 0, 0));
    /// assert_eq!(Colormap::Gray.color(1.0), Rgb(255, 255, 255));
    /// ```
    pub fn color(self, t: f64) -> Rgb {
        if t.is_nan() {
            return Rgb(0xcc, 0xcc, 0xcc);
        }
        // plotters' colormaps interpolate linearly between evenly spaced stops.
        let t = t.clamp(0.0, 1.0);
        let RGBColor(r, g, b) = match self {
            Colormap::Viridis => ViridisRGB.get_color(t),
            Colormap::Gray => BlackWhite.get_color(t),
            Colormap::Blues => DerivedColorMap::new(&BLUES).get_color(t),
            Colormap::Diverging => DerivedColorMap::new(&DIVERGING).get_color(t),
        };
        Rgb(r, g, b)
    }
}

// ---------------------------------------------------------------------------------------------
// Figure
// ---------------------------------------------------------------------------------------------

/// A finished figure: an SVG document and its size in pixels.
///
/// Shows inline when it is the last expression of an evcxr notebook cell; [`save`](Figure::save)
/// writes it to a `.svg` file.
///
/// ```
/// use dlhist::plot::BarChart;
/// let fig = BarChart::new("Accuracy").labels(["MLP", "CNN"]).series("test", [0.91, 0.97]).render()?;
/// assert!(fig.svg().starts_with("<svg"));
/// println!("{fig}"); // a one-line summary, not the whole document
/// # Ok::<(), dlhist::Error>(())
/// ```
#[derive(Clone, PartialEq)]
pub struct Figure {
    svg: String,
    width: u32,
    height: u32,
    title: String,
    /// Drawn by this module: the root is plotters' plain `<svg>` element of exactly this size
    /// (no attributes that its children depend on), so compositions can lift out its children.
    own: bool,
}

impl Figure {
    /// Wraps an SVG document made elsewhere (for example with plotters' `SVGBackend`) so it can
    /// be displayed, saved and composed like any other figure. `width` and `height` are its
    /// size in pixels, used when it is placed in a [`Figure::grid`].
    pub fn from_svg(svg: impl Into<String>, width: u32, height: u32) -> Result<Figure> {
        let svg = svg.into();
        if !svg.contains("<svg") {
            return Err(Error::Plot("Figure::from_svg expects an SVG document (no <svg element found)".into()));
        }
        if width == 0 || height == 0 {
            return Err(Error::Invalid(format!("Figure::from_svg: size must be positive, got {width}x{height}")));
        }
        Ok(Figure { svg, width, height, title: String::new(), own: false })
    }

    pub(crate) fn new(svg: String, width: u32, height: u32, title: &str) -> Figure {
        Figure { svg, width, height, title: title.to_string(), own: true }
    }

    /// The SVG document.
    pub fn svg(&self) -> &str {
        &self.svg
    }

    /// The SVG document, by value.
    pub fn into_svg(self) -> String {
        self.svg
    }

    /// Width in pixels.
    pub fn width(&self) -> u32 {
        self.width
    }

    /// Height in pixels.
    pub fn height(&self) -> u32 {
        self.height
    }

    /// The title the figure was made with (empty for compositions and wrapped SVG).
    pub fn title(&self) -> &str {
        &self.title
    }

    /// Shows the figure in a Jupyter notebook running the evcxr kernel. evcxr calls this on a
    /// cell's last expression; call it yourself to show a figure from the middle of a cell.
    pub fn evcxr_display(&self) {
        // One locked write, so output printed from other threads cannot land inside the block.
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(self.evcxr_block().as_bytes());
        let _ = out.flush();
    }

    /// What [`evcxr_display`](Self::evcxr_display) prints: the kernel's display protocol, a
    /// MIME type line, the payload, an end line.
    fn evcxr_block(&self) -> String {
        format!("EVCXR_BEGIN_CONTENT image/svg+xml\n{}\nEVCXR_END_CONTENT\n", self.svg.trim_end())
    }

    /// Writes the figure to `path`, which must end in `.svg` (SVG is the only format dlhist
    /// writes; `rsvg-convert -o fig.png fig.svg` or any browser turns it into a bitmap).
    ///
    /// The file is written to a temporary name in the same folder and renamed into place, so a
    /// crash never leaves half a figure behind. Missing parent folders are created.
    ///
    /// ```
    /// use dlhist::plot::LineChart;
    /// let fig = LineChart::new("y = x²").series("x²", [0.0, 1.0, 2.0], [0.0, 1.0, 4.0]).render()?;
    /// let dir = tempfile::tempdir()?;
    /// fig.save(dir.path().join("square.svg"))?;
    /// assert!(fig.save(dir.path().join("square.png")).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let is_svg = path.extension().and_then(|e| e.to_str()).is_some_and(|e| e.eq_ignore_ascii_case("svg"));
        if !is_svg {
            return Err(Error::Invalid(format!(
                "cannot save a figure to {}: only .svg is supported; use a path ending in .svg (convert to PNG \
                 afterwards with `rsvg-convert -o out.png in.svg` if you need a bitmap)",
                path.display()
            )));
        }
        let file_name = path.file_name().and_then(|n| n.to_str()).unwrap_or("figure.svg");
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => std::path::PathBuf::from("."),
        };
        std::fs::create_dir_all(&dir).map_err(|e| Error::io("cannot create folder", &dir, e))?;
        // Same folder as the target so the rename stays on one file system (and is atomic).
        let tmp = dir.join(format!(".{file_name}.{}.tmp", std::process::id()));
        let written = std::fs::write(&tmp, self.svg.as_bytes()).and_then(|()| std::fs::rename(&tmp, path));
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(Error::io("cannot write figure", path, e));
        }
        Ok(())
    }

    /// Places figures left to right in one figure (top-aligned).
    ///
    /// Accepts figures by value or by reference: `Figure::row([&loss, &regions])?`.
    pub fn row<F: Borrow<Figure>>(figures: impl IntoIterator<Item = F>) -> Result<Figure> {
        let figs: Vec<F> = figures.into_iter().collect();
        let n = figs.len();
        Self::grid(figs, n.max(1))
    }

    /// Stacks figures top to bottom in one figure (left-aligned).
    pub fn column<F: Borrow<Figure>>(figures: impl IntoIterator<Item = F>) -> Result<Figure> {
        Self::grid(figures, 1)
    }

    /// Lays figures out in a grid `cols` wide, row by row. Each column is as wide as its widest
    /// figure and each row as tall as its tallest, so figures of different sizes line up.
    ///
    /// The result is one SVG document holding every figure's drawing, so everything stays
    /// vector.
    ///
    /// ```
    /// use dlhist::plot::{Figure, LineChart};
    /// let figs: Vec<Figure> = (1..=4)
    ///     .map(|k| LineChart::new(format!("x^{k}")).series_y("", (0..10).map(|i| (i as f64).powi(k)).collect::<Vec<_>>()).render())
    ///     .collect::<Result<_, _>>()?;
    /// let grid = Figure::grid(&figs, 2)?;
    /// assert_eq!((grid.width(), grid.height()), (2 * figs[0].width(), 2 * figs[0].height()));
    /// # Ok::<(), dlhist::Error>(())
    /// ```
    pub fn grid<F: Borrow<Figure>>(figures: impl IntoIterator<Item = F>, cols: usize) -> Result<Figure> {
        let figs: Vec<F> = figures.into_iter().collect();
        if figs.is_empty() {
            return Err(Error::Invalid("Figure::grid/row/column needs at least one figure; got none".into()));
        }
        if cols == 0 {
            return Err(Error::Invalid("Figure::grid needs at least 1 column; got cols = 0".into()));
        }
        let rows = figs.len().div_ceil(cols);
        let mut col_w = vec![0u32; cols];
        let mut row_h = vec![0u32; rows];
        for (i, f) in figs.iter().enumerate() {
            let f = f.borrow();
            col_w[i % cols] = col_w[i % cols].max(f.width);
            row_h[i / cols] = row_h[i / cols].max(f.height);
        }
        let width: u32 = col_w.iter().sum();
        let height: u32 = row_h.iter().sum();
        // plotters makes the outer document (a white canvas); the panels are placed by hand,
        // since plotters can split a canvas but cannot draw an SVG document into a part of it.
        let mut svg = render::render_svg("Figure::grid", (width, height), |_| Ok(()))?;
        let mut panels = String::new();
        for (i, f) in figs.iter().enumerate() {
            let f = f.borrow();
            let x: u32 = col_w[..i % cols].iter().sum();
            let y: u32 = row_h[..i / cols].iter().sum();
            panels.push_str(&format!("<g class=\"panel\" transform=\"translate({x},{y})\">\n"));
            panels.push_str(panel_content(f));
            panels.push_str("\n</g>\n");
        }
        render::append_markup(&mut svg, &panels)?;
        Ok(Figure::new(svg, width, height, ""))
    }
}

/// What goes inside a grid panel. This module's figures are unwrapped, their root's children
/// only, because a nested `<svg>` element is resized by page CSS such as JupyterLab's
/// `svg { height: auto }` when the figure is inlined into HTML. Other SVG (from
/// [`Figure::from_svg`]) stays a nested document, minus any XML declaration or doctype, which
/// may not appear inside another document.
fn panel_content(f: &Figure) -> &str {
    if f.own {
        let body = f.svg.find("<svg").and_then(|i| f.svg[i..].find('>').map(|j| i + j + 1));
        if let (Some(start), Some(end)) = (body, f.svg.rfind("</svg>")) {
            if start <= end {
                return f.svg[start..end].trim();
            }
        }
    }
    f.svg.find("<svg").map_or(f.svg.as_str(), |i| &f.svg[i..]).trim_end()
}

impl fmt::Display for Figure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kib = self.svg.len() as f64 / 1024.0;
        if self.title.is_empty() {
            write!(f, "Figure ({}x{} SVG, {kib:.1} KiB)", self.width, self.height)
        } else {
            write!(f, "Figure \"{}\" ({}x{} SVG, {kib:.1} KiB)", self.title, self.width, self.height)
        }
    }
}

impl fmt::Debug for Figure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The document can be megabytes: show its size, not its text.
        f.debug_struct("Figure")
            .field("title", &self.title)
            .field("width", &self.width)
            .field("height", &self.height)
            .field("svg_bytes", &self.svg.len())
            .finish()
    }
}

// ---------------------------------------------------------------------------------------------
// Inputs: numbers from slices, vectors and tensors
// ---------------------------------------------------------------------------------------------

/// A number that can be plotted (converted to `f64`).
pub trait PlotValue: Copy {
    /// The value as `f64`.
    fn to_f64(self) -> f64;
}

macro_rules! plot_value {
    ($($t:ty),*) => {$(
        impl PlotValue for $t {
            fn to_f64(self) -> f64 {
                self as f64
            }
        }
    )*};
}
plot_value!(f32, f64, i8, i16, i32, i64, u8, u16, u32, u64, usize, isize);

/// Anything that gives a list of numbers to plot: `Vec`s, slices and arrays of numbers, a
/// `Range<usize>`, or a candle [`Tensor`] (flattened, any dtype).
pub trait IntoValues {
    /// The values as `f64`, or an error if a tensor cannot be read.
    fn into_values(self) -> Result<Vec<f64>>;
}

impl<T: PlotValue> IntoValues for Vec<T> {
    fn into_values(self) -> Result<Vec<f64>> {
        Ok(self.into_iter().map(PlotValue::to_f64).collect())
    }
}
impl<T: PlotValue> IntoValues for &Vec<T> {
    fn into_values(self) -> Result<Vec<f64>> {
        Ok(self.iter().map(|v| v.to_f64()).collect())
    }
}
impl<T: PlotValue> IntoValues for &[T] {
    fn into_values(self) -> Result<Vec<f64>> {
        Ok(self.iter().map(|v| v.to_f64()).collect())
    }
}
impl<T: PlotValue, const K: usize> IntoValues for [T; K] {
    fn into_values(self) -> Result<Vec<f64>> {
        Ok(self.iter().map(|v| v.to_f64()).collect())
    }
}
impl<T: PlotValue, const K: usize> IntoValues for &[T; K] {
    fn into_values(self) -> Result<Vec<f64>> {
        Ok(self.iter().map(|v| v.to_f64()).collect())
    }
}
impl IntoValues for std::ops::Range<usize> {
    fn into_values(self) -> Result<Vec<f64>> {
        Ok(self.map(|v| v as f64).collect())
    }
}
impl IntoValues for &Tensor {
    fn into_values(self) -> Result<Vec<f64>> {
        tensor_values(self)
    }
}
impl IntoValues for Tensor {
    fn into_values(self) -> Result<Vec<f64>> {
        tensor_values(&self)
    }
}

/// All elements of a tensor, flattened, as `f64`.
pub(crate) fn tensor_values(t: &Tensor) -> Result<Vec<f64>> {
    Ok(t.flatten_all()?.to_dtype(DType::F64)?.to_vec1::<f64>()?)
}

/// `[2, 5]` for error messages.
pub(crate) fn shape_str(dims: &[usize]) -> String {
    let inner: Vec<String> = dims.iter().map(|d| d.to_string()).collect();
    format!("[{}]", inner.join(", "))
}

/// Class ids from `[N]` ids (any dtype; floats must hold whole numbers) or `[N, C]` scores
/// (argmax over C). `what` names the argument in error messages.
pub(crate) fn class_ids(t: &Tensor, what: &str) -> Result<Vec<usize>> {
    match t.dims() {
        [_] => {
            let vals = tensor_values(t)?;
            vals.iter()
                .enumerate()
                .map(|(i, &v)| {
                    if v.is_finite() && v >= 0.0 && v.fract() == 0.0 {
                        Ok(v as usize)
                    } else {
                        Err(Error::Invalid(format!(
                            "{what}: value {v} at index {i} is not a class id (a non-negative whole number)"
                        )))
                    }
                })
                .collect()
        }
        [_, c] if *c > 0 => {
            let ids = t.argmax(1)?.to_dtype(DType::U32)?.to_vec1::<u32>()?;
            Ok(ids.into_iter().map(|v| v as usize).collect())
        }
        dims => {
            Err(Error::Invalid(format!("{what} must be [N] class ids or [N, C] scores; got shape {}", shape_str(dims))))
        }
    }
}

/// `LineChart "Loss"` (or just `LineChart` when untitled), to start error messages.
pub(crate) fn describe(kind: &str, title: &str) -> String {
    if title.is_empty() {
        kind.to_string()
    } else {
        format!("{kind} \"{title}\"")
    }
}

/// Rejects figure sizes too small to hold axes and labels (or absurdly large).
pub(crate) fn check_size(what: &str, (width, height): (u32, u32)) -> Result<()> {
    if !(120..=10_000).contains(&width) || !(80..=10_000).contains(&height) {
        return Err(Error::Invalid(format!(
            "{what}: size {width}x{height} is out of range; use a width of 120 to 10000 and a height of 80 to 10000 \
             pixels (default {WIDTH}x{HEIGHT})"
        )));
    }
    Ok(())
}

/// Collects label-like things into strings.
pub(crate) fn strings<S: ToString>(items: impl IntoIterator<Item = S>) -> Vec<String> {
    items.into_iter().map(|s| s.to_string()).collect()
}

#[cfg(test)]
pub(crate) mod test_util {
    //! Helpers the figure tests share: parse the SVG and count what was drawn. plotters' SVG
    //! carries no classes, so elements are told apart by colour, size and text style.

    use super::{Rgb, AXIS_COLOR, LEGEND_SIZE, TICK_SIZE};

    /// Parses `svg` as XML (panicking with the parser's message if it is not).
    pub fn parse(svg: &str) -> roxmltree::Document<'_> {
        roxmltree::Document::parse(svg).unwrap_or_else(|e| panic!("figure is not valid XML: {e}"))
    }

    fn num(n: &roxmltree::Node<'_, '_>, attr: &str) -> f64 {
        n.attribute(attr).and_then(|v| v.trim().parse().ok()).unwrap_or(f64::NAN)
    }

    fn is(n: &roxmltree::Node<'_, '_>, attr: &str, color: Rgb) -> bool {
        n.attribute(attr).is_some_and(|v| v.eq_ignore_ascii_case(&color.hex()))
    }

    fn text_of(n: &roxmltree::Node<'_, '_>) -> String {
        // plotters ends every text with a newline.
        n.text().unwrap_or("").trim().to_string()
    }

    /// Every text element's content, in document order.
    pub fn texts(svg: &str) -> Vec<String> {
        let doc = parse(svg);
        let t = doc.descendants().filter(|n| n.has_tag_name("text")).map(|n| text_of(&n)).collect();
        t
    }

    /// The texts `size` pixels high with `text-anchor` `anchor`, rotated or not.
    pub fn texts_where(svg: &str, size: f64, anchor: &str, rotated: bool) -> Vec<String> {
        let doc = parse(svg);
        let t = doc
            .descendants()
            .filter(|n| {
                n.has_tag_name("text")
                    && (num(n, "font-size") - size).abs() < 1e-6
                    && n.attribute("text-anchor") == Some(anchor)
                    && n.attribute("transform").is_some() == rotated
            })
            .map(|n| text_of(&n))
            .collect();
        t
    }

    /// The y axis tick labels (right-aligned beside the axis), bottom to top.
    pub fn y_ticks(svg: &str) -> Vec<String> {
        texts_where(svg, TICK_SIZE, "end", false)
    }

    /// The x axis tick labels (centred under the axis, or standing vertical), left to right.
    pub fn x_ticks(svg: &str) -> Vec<String> {
        let flat = texts_where(svg, TICK_SIZE, "middle", false);
        if flat.is_empty() {
            texts_where(svg, TICK_SIZE, "end", true)
        } else {
            flat
        }
    }

    /// The legend's names, top to bottom.
    pub fn legend_labels(svg: &str) -> Vec<String> {
        texts_where(svg, LEGEND_SIZE, "start", false)
    }

    /// The points of each polyline stroked in `color`, `width` pixels wide.
    pub fn polylines(svg: &str, color: Rgb, width: u32) -> Vec<Vec<(f64, f64)>> {
        let doc = parse(svg);
        let lines = doc
            .descendants()
            .filter(|n| {
                n.has_tag_name("polyline") && is(n, "stroke", color) && num(n, "stroke-width") == f64::from(width)
            })
            .map(|n| {
                let pts = n.attribute("points").unwrap_or("").split_whitespace();
                pts.filter_map(|p| p.split_once(','))
                    .map(|(x, y)| (x.parse().unwrap_or(f64::NAN), y.parse().unwrap_or(f64::NAN)))
                    .collect()
            })
            .collect();
        lines
    }

    /// How many circles are filled with `color` and have radius `r`.
    pub fn circles(svg: &str, color: Rgb, r: i32) -> usize {
        let doc = parse(svg);
        let n = doc
            .descendants()
            .filter(|n| n.has_tag_name("circle") && is(n, "fill", color) && num(n, "r") == f64::from(r))
            .count();
        n
    }

    /// How many rectangles are filled with `color`.
    pub fn rects(svg: &str, color: Rgb) -> usize {
        let doc = parse(svg);
        let n = doc.descendants().filter(|n| n.has_tag_name("rect") && is(n, "fill", color)).count();
        n
    }

    /// How many rectangles are outlined (not filled) in `color`.
    pub fn outlines(svg: &str, color: Rgb) -> usize {
        let doc = parse(svg);
        let n = doc
            .descendants()
            .filter(|n| n.has_tag_name("rect") && n.attribute("fill") == Some("none") && is(n, "stroke", color))
            .count();
        n
    }

    /// The embedded images' `(x, y, width, height)`.
    pub fn images(svg: &str) -> Vec<(f64, f64, f64, f64)> {
        let doc = parse(svg);
        let i = doc
            .descendants()
            .filter(|n| n.has_tag_name("image"))
            .map(|n| (num(&n, "x"), num(&n, "y"), num(&n, "width"), num(&n, "height")))
            .collect();
        i
    }

    /// The plot frame's `(x, y, width, height)`: the first outline in the axis colour.
    pub fn frame(svg: &str) -> (f64, f64, f64, f64) {
        let doc = parse(svg);
        let f = doc
            .descendants()
            .find(|n| n.has_tag_name("rect") && n.attribute("fill") == Some("none") && is(n, "stroke", AXIS_COLOR))
            .map(|n| (num(&n, "x"), num(&n, "y"), num(&n, "width"), num(&n, "height")));
        f.unwrap_or_else(|| panic!("no plot frame in the figure"))
    }
}

#[cfg(test)]
mod tests {
    use super::test_util::*;
    use super::*;

    fn small() -> Figure {
        LineChart::new("small").series("a", [0.0, 1.0], [1.0, 2.0]).render().expect("renders")
    }

    #[test]
    fn display_and_debug_do_not_dump_the_svg() {
        let fig = small();
        let shown = fig.to_string();
        assert!(shown.contains("640x400") && shown.contains("small"), "{shown}");
        assert!(!shown.contains("<svg"));
        let dbg = format!("{fig:?}");
        assert!(dbg.contains("svg_bytes") && !dbg.contains("<svg"), "{dbg}");
    }

    #[test]
    fn evcxr_block_follows_the_protocol() {
        let fig = small();
        let block = fig.evcxr_block();
        let lines: Vec<&str> = block.lines().collect();
        assert_eq!(lines[0], "EVCXR_BEGIN_CONTENT image/svg+xml");
        assert!(lines[1].starts_with("<svg"));
        assert_eq!(lines.last(), Some(&"EVCXR_END_CONTENT"));
        assert!(block.ends_with('\n'));
        // The payload is the whole document, unchanged.
        assert!(block.contains(fig.svg().trim_end()));
    }

    #[test]
    fn save_writes_svg_and_rejects_other_extensions() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fig = small();
        let path = dir.path().join("sub/fig.svg");
        fig.save(&path).expect("saves");
        assert_eq!(std::fs::read_to_string(&path).expect("reads back"), fig.svg());
        // No temporary file is left next to it.
        assert_eq!(std::fs::read_dir(dir.path().join("sub")).expect("lists").count(), 1);
        // Upper-case extension is fine too.
        fig.save(dir.path().join("FIG.SVG")).expect("saves .SVG");
        let err = fig.save(dir.path().join("fig.png")).expect_err("png is rejected");
        assert!(err.to_string().contains("only .svg"), "{err}");
        assert!(!dir.path().join("fig.png").exists());
        assert!(fig.save(dir.path().join("noext")).is_err());
    }

    #[test]
    fn grid_nests_figures_and_sizes_to_fit() {
        let a = small();
        let b = BarChart::new("bars").labels(["x", "y"]).series("v", [1.0, 2.0]).size(300, 200).render().expect("bar");
        let g = Figure::grid([&a, &b, &a], 2).expect("grid");
        assert_eq!(g.width(), 640 + 300);
        assert_eq!(g.height(), 800);
        let doc = parse(g.svg());
        // The figures' contents are unwrapped into the outer document: one <svg> element only.
        assert_eq!(doc.descendants().filter(|n| n.has_tag_name("svg")).count(), 1);
        // Every panel keeps its drawing: three plot frames.
        assert_eq!(outlines(g.svg(), AXIS_COLOR), 3);
        let panels: Vec<_> = doc.descendants().filter(|n| n.attribute("class") == Some("panel")).collect();
        assert_eq!(panels.len(), 3);
        assert_eq!(panels[1].attribute("transform"), Some("translate(640,0)"));
        assert_eq!(panels[2].attribute("transform"), Some("translate(0,400)"));
        assert!(texts(g.svg()).iter().any(|t| t == "bars"));
        let r = Figure::row(vec![a.clone(), b.clone()]).expect("row");
        assert_eq!((r.width(), r.height()), (940, 400));
        let c = Figure::column([&a, &b]).expect("column");
        assert_eq!((c.width(), c.height()), (640, 600));
        assert!(Figure::grid(Vec::<Figure>::new(), 2).is_err());
        assert!(Figure::grid([&a], 0).is_err());
    }

    #[test]
    fn no_ids_and_no_nested_documents() {
        let svg = small().into_svg();
        assert!(!svg.contains(" id="));
        assert_eq!(svg.matches("<svg").count(), 1);
    }

    #[test]
    fn from_svg_strips_prolog_when_nested() {
        let raw = r#"<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"></svg>"#;
        let f = Figure::from_svg(raw, 10, 10).expect("wraps");
        let g = Figure::row([&f, &f]).expect("row");
        assert!(!g.svg().contains("<?xml"));
        // Foreign documents stay nested.
        assert_eq!(parse(g.svg()).descendants().filter(|n| n.has_tag_name("svg")).count(), 3);
        assert!(Figure::from_svg("hello", 10, 10).is_err());
    }

    #[test]
    fn colormaps_interpolate() {
        // Viridis' end points (matplotlib's) and a clamped value past the end of Blues.
        assert_eq!(Colormap::Viridis.color(0.0), Rgb(68, 1, 84));
        assert_eq!(Colormap::Viridis.color(1.0), Rgb(254, 232, 37));
        assert_eq!(Colormap::Blues.color(2.0), Rgb(0x08, 0x30, 0x6b));
        assert_eq!(Colormap::Diverging.color(0.0), Rgb(0x21, 0x66, 0xac));
        let mid = Colormap::Gray.color(0.5);
        assert!(mid.0 > 120 && mid.0 < 135, "{mid:?}");
        assert!(Colormap::Diverging.color(0.5).luminance() > 0.9);
    }

    #[test]
    fn class_ids_from_ids_and_scores() {
        let dev = crate::device::test_device();
        let ids = Tensor::new(&[2u32, 0, 1], &dev).expect("tensor");
        assert_eq!(class_ids(&ids, "labels").expect("ids"), vec![2, 0, 1]);
        let scores = Tensor::new(&[[0.1f32, 0.9], [0.8, 0.2]], &dev).expect("tensor");
        assert_eq!(class_ids(&scores, "pred").expect("argmax"), vec![1, 0]);
        let bad = Tensor::new(&[0.5f32], &dev).expect("tensor");
        assert!(class_ids(&bad, "labels").is_err());
        let cube = Tensor::zeros((2, 2, 2), DType::F32, &dev).expect("tensor");
        let err = class_ids(&cube, "labels").expect_err("3-D is rejected");
        assert!(err.to_string().contains("[2, 2, 2]"), "{err}");
    }

    #[test]
    fn notebook_02_dnn_calls_still_work() -> Result<()> {
        // The calls notebooks/01-deep-neural-networks/01-dnn/02-dnn.ipynb makes, on a smaller
        // network and data set.
        use crate::deep_neural_networks::Mlp;
        use crate::layers::Activation;
        use candle_nn::Module;
        let dev = crate::device::test_device();
        let rng = crate::rng::Rng::new(1986);
        let train = crate::data::two_moons(40, 0.1, &mut rng.fork("train"), &dev)?;
        let (_varmap, vb) = crate::init::seeded(1986, DType::F32, &dev);
        let mlp = Mlp::new(&[2, 8, 2], Activation::Tanh, vb.pp("mlp"))?;
        let regions = DecisionPlot::new(&train.x, &train.y)
            .title("candle MLP")
            .regions(|grid: &Tensor| mlp.forward(grid), 60)
            .render()?;
        let (sx, sy): (Vec<f64>, Vec<f64>) =
            (0..100).map(|i| (i as f64, 0.7 * (-(i as f64) / 30.0).exp() + 0.05)).unzip();
        let losses = LineChart::new("Training loss (cross-entropy)")
            .x_label("step")
            .y_label("loss")
            .log_y()
            .series("scalar autograd", sx.clone(), sy.clone())
            .series("candle", sx, sy)
            .render()?;
        let both = Figure::row([losses, regions])?;
        assert_eq!((both.width(), both.height()), (2 * WIDTH, HEIGHT));
        let texts = test_util::texts(both.svg());
        assert!(texts.iter().any(|t| t == "candle MLP") && texts.iter().any(|t| t == "scalar autograd"), "{texts:?}");
        Ok(())
    }

    #[test]
    fn values_from_many_sources() {
        assert_eq!(vec![1u8, 2].into_values().expect("vec"), vec![1.0, 2.0]);
        assert_eq!((0..3).into_values().expect("range"), vec![0.0, 1.0, 2.0]);
        let t = Tensor::new(&[[1f32, 2.0], [3.0, 4.0]], &crate::device::test_device()).expect("tensor");
        assert_eq!((&t).into_values().expect("tensor"), vec![1.0, 2.0, 3.0, 4.0]);
    }
}

/// Renders one figure of each kind into the folder named by `DLHIST_PLOT_GALLERY`, for looking
/// at them (`cargo test -p dlhist --lib plot::gallery -- --ignored`, then open the `.svg` files
/// or convert them with `rsvg-convert`). Layout quality is judged by eye; the other tests
/// check structure.
#[cfg(test)]
mod gallery {
    use super::*;

    #[test]
    #[ignore = "writes files for a person to look at; set DLHIST_PLOT_GALLERY"]
    fn gallery() -> Result<()> {
        let dir = std::path::PathBuf::from(
            std::env::var("DLHIST_PLOT_GALLERY").unwrap_or_else(|_| "/tmp/plot-examples".into()),
        );
        let dev = crate::device::test_device();
        let mut rng = crate::rng::Rng::new(7);

        let steps = 2000;
        let train: Vec<f64> = (0..steps)
            .map(|i| 2.3 * (-(i as f64) / 300.0).exp() + 0.25 + 0.08 * (rng.uniform() as f64 - 0.5))
            .collect();
        let valid: Vec<f64> = (0..steps / 100).map(|i| 2.3 * (-(i as f64 * 100.0) / 320.0).exp() + 0.32).collect();
        let loss = LineChart::new("Training loss (MLP on Fashion-MNIST)")
            .x_label("step")
            .y_label("cross-entropy")
            .log_y()
            .series("train", 0..steps, &train)
            .series("valid", (0..steps / 100).map(|i| i * 100).collect::<Vec<_>>(), &valid)
            .render()?;
        loss.save(dir.join("line.svg"))?;

        // Two interleaved spirals and a radial "classifier".
        let n = 300;
        let mut xy = Vec::new();
        let mut labels = Vec::new();
        for i in 0..n {
            let class = i % 3;
            let r = (i / 3) as f32 / (n / 3) as f32;
            let a = r * 4.0 + class as f32 * 2.094 + 0.2 * rng.uniform();
            xy.extend([r * a.cos(), r * a.sin()]);
            labels.push(class as u32);
        }
        let points = Tensor::from_vec(xy, (n, 2), &dev)?;
        let labels = Tensor::from_vec(labels, n, &dev)?;
        let regions = DecisionPlot::new(&points, &labels)
            .title("Decision regions (3 spirals)")
            .x_label("x₁")
            .y_label("x₂")
            .class_names(["spiral A", "spiral B", "spiral C"])
            .regions(
                |g: &Tensor| {
                    // The spiral each grid point is closest to in angle, computed on the host.
                    let ids: Vec<u32> = g
                        .to_vec2::<f32>()?
                        .iter()
                        .map(|p| {
                            let turn = p[1].atan2(p[0]) - 4.0 * (p[0] * p[0] + p[1] * p[1]).sqrt();
                            let k = (turn / 2.094 + 0.5).rem_euclid(3.0).floor() as u32;
                            k % 3
                        })
                        .collect();
                    Tensor::new(ids.as_slice(), g.device())
                },
                150,
            )
            .render()?;
        regions.save(dir.join("decision.svg"))?;
        Figure::row([&loss, &regions])?.save(dir.join("row.svg"))?;

        // Blobs and rings at different places, so pixelation and orientation are easy to judge.
        let mut px = Vec::with_capacity(16 * 28 * 28);
        for k in 0..16 {
            let (cx, cy) = (6.0 + (k % 4) as f32 * 5.0, 6.0 + (k / 4) as f32 * 5.0);
            for y in 0..28 {
                for x in 0..28 {
                    let d = ((x as f32 - cx).powi(2) + (y as f32 - cy).powi(2)).sqrt();
                    let v = if k % 2 == 0 { (-d * d / 30.0).exp() } else { (-(d - 7.0).powi(2) / 4.0).exp() };
                    px.push(v * (0.8 + 0.2 * rng.uniform()));
                }
            }
        }
        let imgs = Tensor::from_vec(px, (16, 28, 28), &dev)?;
        let grid = ImageGrid::new(&imgs)
            .title("Samples")
            .captions((0..16).map(|i| format!("pred {} / true {}", i % 10, (i * 3) % 10)))
            .highlight((0..16).map(|i| i % 10 != (i * 3) % 10))
            .render()?;
        grid.save(dir.join("images.svg"))?;
        let rgb = rng.uniform_tensor((6, 3, 8, 8), -1.0, 1.0, &dev)?;
        ImageGrid::new(&rgb).title("RGB, per-image normalised").render()?.save(dir.join("images-rgb.svg"))?;

        let names =
            ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"];
        let target: Vec<u32> = (0..2000).map(|i| i % 10).collect();
        let pred: Vec<u32> =
            target.iter().map(|&t| if rng.uniform() < 0.8 { t } else { (rng.uniform() * 10.0) as u32 % 10 }).collect();
        let cm = confusion_matrix(&Tensor::new(pred.as_slice(), &dev)?, &Tensor::new(target.as_slice(), &dev)?, names)?;
        cm.save(dir.join("confusion.svg"))?;

        let tokens = ["<s>", "the", "cat", "sat", "on", "the", "mat", "."];
        let attn: Vec<Vec<f64>> = (0..8)
            .map(|i| {
                let row: Vec<f64> = (0..8).map(|j| if j <= i { (-((i - j) as f64)).exp() } else { 0.0 }).collect();
                let s: f64 = row.iter().sum();
                row.into_iter().map(|v| v / s).collect()
            })
            .collect();
        let heat = Heatmap::new(attn)
            .title("Causal attention, head 0")
            .row_labels(tokens)
            .col_labels(tokens)
            .x_label("key")
            .y_label("query")
            .annotate()
            .render()?;
        heat.save(dir.join("heatmap.svg"))?;

        let bars = BarChart::new("Test accuracy by model")
            .labels(["perceptron", "MLP", "MLP + dropout", "CNN"])
            .series("Fashion-MNIST", [0.812, 0.884, 0.893, 0.912])
            .series("MNIST", [0.921, 0.979, 0.983, 0.991])
            .y_label("accuracy")
            .value_labels()
            .render()?;
        bars.save(dir.join("bar.svg"))?;

        let scatter = ScatterPlot::new("Scatter")
            .x_label("feature 1")
            .y_label("feature 2")
            .series(
                "a",
                (0..50).map(|i| (i as f64 * 0.3).sin()).collect::<Vec<_>>(),
                (0..50).map(|i| i as f64 / 50.0).collect::<Vec<_>>(),
            )
            .series(
                "b",
                (0..50).map(|i| (i as f64 * 0.3).cos() + 1.0).collect::<Vec<_>>(),
                (0..50).map(|i| 1.0 - i as f64 / 50.0).collect::<Vec<_>>(),
            )
            .render()?;
        scatter.save(dir.join("scatter.svg"))?;

        // Harder layouts: a small figure with many series, a rectangular signed matrix.
        let mut small = LineChart::new("Learning rates").x_label("epoch").y_label("accuracy").markers().size(360, 240);
        for (k, lr) in ["1e-1", "3e-2", "1e-2", "3e-3", "1e-3"].iter().enumerate() {
            let ys: Vec<f64> = (0..8).map(|e| 1.0 - 0.6 * (-(e as f64) * (0.2 + 0.15 * k as f64)).exp()).collect();
            small = small.series(format!("lr = {lr}"), 1..9, ys);
        }
        let small = small.render()?;
        small.save(dir.join("line-small.svg"))?;
        let w = rng.normal_tensor((20, 32), 0.0, 1.0, &dev)?;
        let weights = Heatmap::new(&w)
            .title("First-layer weights (20 units x 32 inputs)")
            .colormap(Colormap::Diverging)
            .x_label("input")
            .y_label("unit")
            .render()?;
        weights.save(dir.join("heatmap-weights.svg"))?;
        Figure::grid([&small, &small, &small, &small], 2)?.save(dir.join("grid.svg"))?;

        // Long category names (vertical labels), and tiny values (scientific tick labels) cut at
        // a fixed range.
        let recall: Vec<f64> = (0..10).map(|i| 0.7 + 0.03 * i as f64).collect();
        BarChart::new("Recall per class")
            .labels(names)
            .series("recall", recall)
            .y_label("recall")
            .render()?
            .save(dir.join("bar-vertical.svg"))?;
        let grad: Vec<f64> = (0..300).map(|i| 3e-5 * (1.0 + (i as f64 / 20.0).sin()) + 1e-7 * i as f64).collect();
        LineChart::new("Gradient norm")
            .x_label("step")
            .y_label("‖g‖")
            .series_y("layer 1", &grad)
            .y_range(0.0, 5e-5)
            .render()?
            .save(dir.join("line-clipped.svg"))?;
        Ok(())
    }
}
