//! Heatmaps: a matrix drawn as coloured cells with row and column labels, a colour bar, and
//! optionally the numbers in the cells. For attention weights (rows = queries, columns = keys),
//! confusion matrices ([`confusion_matrix`]), weight matrices and correlation tables.
//!
//! Cells are square and sized so the whole figure fits about 640 x 480 pixels; labels that
//! would collide are thinned (every k-th shown) and long column labels stand vertical.
//! Matrices with more than 40 000 cells are drawn as one embedded PNG instead of one rectangle
//! per cell, to keep the SVG small.
//!
//! plotters draws the cells (`Rectangle`s on a chart whose axes are the row and column
//! categories), the numbers in them, the labels and the axes; the colour bar is a second
//! plotters chart on the split-off right part of the canvas, its gradient drawn as 48
//! rectangles. The cell size is ours: the label areas are sized so plotters' plotting area is
//! exactly the grid of cells.

use candle_core::Tensor;
use plotters::prelude::{ChartBuilder, Color, RGBColor, Rectangle, Text};
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::axes::{draw_frame, vertical_x_labels, Scale, LABEL_DIST, TICK_LEN};
use super::render::{
    append_markup, bold, bold_text_width, colored, font, image_element, png_data_uri, render_svg, text_width,
};
use super::{
    class_ids, shape_str, Colormap, Figure, PlotValue, Rgb, AXIS_COLOR, LABEL_SIZE, MARGIN, TEXT_COLOR, TICK_SIZE,
    TITLE_SIZE,
};
use crate::{Error, Result};

/// Above this many cells the matrix is drawn as an embedded PNG.
const MAX_RECT_CELLS: usize = 40_000;
/// Largest cell side in pixels (small matrices do not blow up into huge squares).
const MAX_CELL: f64 = 56.0;
/// Colour bar: its width, the gap between it and the cells, and its number of colour steps.
const COLORBAR_W: f64 = 14.0;
const COLORBAR_GAP: f64 = 16.0;
const COLORBAR_STEPS: usize = 48;

/// Anything that is a matrix: a 2-D tensor `[R, C]` (any dtype) or rows of numbers
/// (`Vec<Vec<T>>`, `&[Vec<T>]`), e.g. the counts from [`confusion_counts`].
pub trait IntoMatrix {
    /// `(rows, cols, values row by row)`, or an error if the input is not a rectangular matrix.
    fn into_matrix(self) -> Result<(usize, usize, Vec<f64>)>;
}

fn tensor_matrix(t: &Tensor) -> Result<(usize, usize, Vec<f64>)> {
    match *t.dims() {
        [r, c] => Ok((r, c, super::tensor_values(t)?)),
        _ => Err(Error::Invalid(format!(
            "Heatmap expects a matrix of shape [R, C]; got {} (index or squeeze it to 2-D first, e.g. one \
             attention head with .i((batch, head))?)",
            shape_str(t.dims())
        ))),
    }
}

impl IntoMatrix for &Tensor {
    fn into_matrix(self) -> Result<(usize, usize, Vec<f64>)> {
        tensor_matrix(self)
    }
}

impl IntoMatrix for Tensor {
    fn into_matrix(self) -> Result<(usize, usize, Vec<f64>)> {
        tensor_matrix(&self)
    }
}

fn rows_matrix<T: PlotValue>(rows: &[Vec<T>]) -> Result<(usize, usize, Vec<f64>)> {
    let c = rows.first().map_or(0, Vec::len);
    let mut values = Vec::with_capacity(rows.len() * c);
    for (i, row) in rows.iter().enumerate() {
        if row.len() != c {
            return Err(Error::Invalid(format!(
                "Heatmap: row {i} has {} values but row 0 has {c}; every row must have the same length",
                row.len()
            )));
        }
        values.extend(row.iter().map(|v| v.to_f64()));
    }
    Ok((rows.len(), c, values))
}

impl<T: PlotValue> IntoMatrix for Vec<Vec<T>> {
    fn into_matrix(self) -> Result<(usize, usize, Vec<f64>)> {
        rows_matrix(&self)
    }
}

impl<T: PlotValue> IntoMatrix for &Vec<Vec<T>> {
    fn into_matrix(self) -> Result<(usize, usize, Vec<f64>)> {
        rows_matrix(self)
    }
}

impl<T: PlotValue> IntoMatrix for &[Vec<T>] {
    fn into_matrix(self) -> Result<(usize, usize, Vec<f64>)> {
        rows_matrix(self)
    }
}

/// A heatmap builder.
///
/// ```
/// use dlhist::plot::Heatmap;
/// // Attention of 3 queries over 4 keys.
/// let attn = vec![vec![0.7, 0.1, 0.1, 0.1], vec![0.2, 0.5, 0.2, 0.1], vec![0.0, 0.1, 0.3, 0.6]];
/// let fig = Heatmap::new(attn)
///     .title("Attention")
///     .row_labels(["the", "cat", "sat"])
///     .col_labels(["<s>", "the", "cat", "sat"])
///     .x_label("key")
///     .y_label("query")
///     .annotate()
///     .render()?;
/// assert!(fig.svg().contains("query"));
/// # Ok::<(), dlhist::Error>(())
/// ```
#[derive(Debug)]
pub struct Heatmap {
    data: Result<(usize, usize, Vec<f64>)>,
    title: String,
    x_label: String,
    y_label: String,
    row_labels: Option<Vec<String>>,
    col_labels: Option<Vec<String>>,
    colormap: Colormap,
    annotate: bool,
    decimals: Option<usize>,
    range: Option<(f64, f64)>,
    max_size: (u32, u32),
}

impl Heatmap {
    /// A heatmap of `matrix`: a `[R, C]` tensor or rows of numbers.
    pub fn new(matrix: impl IntoMatrix) -> Self {
        Heatmap {
            data: matrix.into_matrix(),
            title: String::new(),
            x_label: String::new(),
            y_label: String::new(),
            row_labels: None,
            col_labels: None,
            colormap: Colormap::Viridis,
            annotate: false,
            decimals: None,
            range: None,
            max_size: (640, 480),
        }
    }

    /// Title above the matrix.
    pub fn title(mut self, title: impl Into<String>) -> Self {
        self.title = title.into();
        self
    }

    /// Label under the column labels.
    pub fn x_label(mut self, label: impl Into<String>) -> Self {
        self.x_label = label.into();
        self
    }

    /// Label left of the row labels.
    pub fn y_label(mut self, label: impl Into<String>) -> Self {
        self.y_label = label.into();
        self
    }

    /// One label per row, top to bottom (default: 0, 1, 2...).
    pub fn row_labels<S: ToString>(mut self, labels: impl IntoIterator<Item = S>) -> Self {
        self.row_labels = Some(super::strings(labels));
        self
    }

    /// One label per column, left to right (default: 0, 1, 2...).
    pub fn col_labels<S: ToString>(mut self, labels: impl IntoIterator<Item = S>) -> Self {
        self.col_labels = Some(super::strings(labels));
        self
    }

    /// The colour scale (default [`Colormap::Viridis`]).
    pub fn colormap(mut self, colormap: Colormap) -> Self {
        self.colormap = colormap;
        self
    }

    /// Writes each value in its cell (when the cells are large enough to hold it).
    pub fn annotate(mut self) -> Self {
        self.annotate = true;
        self
    }

    /// Decimals of the numbers written in cells (default: 0 for whole numbers, else 2, fewer
    /// for large values).
    pub fn decimals(mut self, decimals: usize) -> Self {
        self.decimals = Some(decimals);
        self
    }

    /// Fixes the value range of the colour scale (default: the data's finite minimum to
    /// maximum; symmetric around 0 for [`Colormap::Diverging`]). Values beyond are clamped.
    pub fn range(mut self, lo: f64, hi: f64) -> Self {
        self.range = Some((lo, hi));
        self
    }

    /// The largest size the figure may take (default 640 x 480); cells shrink to fit.
    pub fn max_size(mut self, width: u32, height: u32) -> Self {
        self.max_size = (width, height);
        self
    }

    /// Draws the heatmap.
    ///
    /// Errors if the matrix is not 2-D or is empty, if the label counts differ from the matrix
    /// shape, or if the range is invalid.
    pub fn render(self) -> Result<Figure> {
        let (r, c, values) = self.data?;
        super::check_size(&super::describe("Heatmap", &self.title), self.max_size)?;
        if r == 0 || c == 0 {
            return Err(Error::Invalid(format!("Heatmap: the matrix is empty ({r} x {c}); nothing to draw")));
        }
        let labels = |given: Option<Vec<String>>, n: usize, what: &str| -> Result<Vec<String>> {
            match given {
                Some(l) if l.len() != n => Err(Error::Invalid(format!(
                    "Heatmap: {} {what} labels for a matrix with {n} {what}s ({r} x {c}); give one per {what}",
                    l.len()
                ))),
                Some(l) => Ok(l),
                None => Ok((0..n).map(|i| i.to_string()).collect()),
            }
        };
        let row_labels = labels(self.row_labels, r, "row")?;
        let col_labels = labels(self.col_labels, c, "column")?;
        let (lo, hi) = match self.range {
            Some((lo, hi)) if lo.is_finite() && hi.is_finite() && lo < hi => (lo, hi),
            Some((lo, hi)) => {
                return Err(Error::Invalid(format!("Heatmap: range({lo}, {hi}) must be finite with lo < hi")))
            }
            None => value_range(&values, self.colormap == Colormap::Diverging),
        };
        let t = |v: f64| (v - lo) / (hi - lo);

        // ---- Layout ----
        let title_h = if self.title.is_empty() { 0.0 } else { TITLE_SIZE + 12.0 };
        let y_label_w = if self.y_label.is_empty() { 0.0 } else { LABEL_SIZE + 8.0 };
        let x_label_h = if self.x_label.is_empty() { 0.0 } else { LABEL_SIZE + 8.0 };
        let widest = |labels: &[String]| labels.iter().map(|l| text_width(l, TICK_SIZE)).fold(0.0, f64::max);
        let (row_label_w, col_label_w) = (widest(&row_labels), widest(&col_labels));
        // The colour bar's tick count depends on its height, known only later: reserve room
        // for the widest labels any count could produce.
        let bar_scale = Scale::linear(lo, hi);
        let bar_label_w = (2..=6).map(|n| widest(&bar_scale.labels(n))).fold(0.0, f64::max);
        let colorbar_w = COLORBAR_GAP + COLORBAR_W + LABEL_DIST + 4.0 + bar_label_w;
        let fixed_w = 2.0 * MARGIN + y_label_w + row_label_w + LABEL_DIST + 2.0 + colorbar_w;
        let (max_w, max_h) = (f64::from(self.max_size.0), f64::from(self.max_size.1));
        let fit = |col_h: f64| {
            let fixed_h = 2.0 * MARGIN + title_h + col_h + x_label_h;
            ((max_w - fixed_w) / c as f64).min((max_h - fixed_h) / r as f64).clamp(1.0, MAX_CELL)
        };
        let flat_h = LABEL_DIST + TICK_SIZE + 4.0;
        let mut cell = fit(flat_h);
        // Column labels stay horizontal if they fit, or if they are numbers (positions, unit
        // indices) that read fine thinned to every 2nd or 5th; names stand vertical instead,
        // since skipping a class name loses information.
        let numeric = col_labels.iter().all(|l| l.parse::<f64>().is_ok());
        let vertical = col_label_w + 4.0 > cell && !numeric;
        let col_h = if vertical { LABEL_DIST + col_label_w + 4.0 } else { flat_h };
        if vertical {
            cell = fit(col_h);
        }
        let row_every = ((TICK_SIZE + 2.0) / cell).ceil().max(1.0) as usize;
        let col_every = if vertical { row_every } else { ((col_label_w + 6.0) / cell).ceil().max(1.0) as usize };

        // Whole pixels, so that plotters' plotting area is exactly the grid of cells.
        let grid_w = (c as f64 * cell).round().max(1.0);
        let grid_h = (r as f64 * cell).round().max(1.0);
        let bar_h = grid_h.max(80.0);
        let gx = (MARGIN + y_label_w + row_label_w + LABEL_DIST + 2.0).ceil();
        let gy = (MARGIN + title_h).ceil();
        let title_w = bold_text_width(&self.title, TITLE_SIZE);
        let width = (gx + grid_w + colorbar_w + MARGIN).max(title_w + 2.0 * MARGIN).ceil();
        let height = (gy + grid_h.max(bar_h) + col_h + x_label_h + MARGIN).ceil();

        // ---- What goes in the cells ----
        let colors: Vec<Rgb> = values.iter().map(|&v| self.colormap.color(t(v))).collect();
        let cells_png = if r * c > MAX_RECT_CELLS {
            let rgb: Vec<u8> = colors.iter().flat_map(|col| [col.0, col.1, col.2]).collect();
            Some(png_data_uri(c as u32, r as u32, &rgb)?)
        } else {
            None
        };
        let numbers = if self.annotate {
            let decimals = self.decimals.unwrap_or_else(|| auto_decimals(&values));
            let texts: Vec<String> =
                values.iter().map(|v| if v.is_finite() { format!("{v:.decimals$}") } else { String::new() }).collect();
            let widest = texts.iter().map(|s| text_width(s, 1.0)).fold(0.0, f64::max);
            // Largest font (up to 12 px) at which the widest number fits its cell; too small
            // to read, the numbers are left out.
            // Whole pixels, which plotters writes without rounding noise.
            let size = 12f64.min(cell * 0.45).min(if widest > 0.0 { (cell - 4.0) / widest } else { 12.0 }).floor();
            (size >= 7.0).then_some((texts, size))
        } else {
            None
        };

        // ---- Drawing ----
        let what = super::describe("Heatmap", &self.title);
        let (x, y) = (Scale::category(col_labels, false), Scale::category(row_labels, true));
        let (title, x_label, y_label, colormap) = (self.title.as_str(), self.x_label, self.y_label, self.colormap);
        let px = |v: f64| v as u32;
        let mut svg = render_svg(&what, (px(width), px(height)), |root| {
            if !title.is_empty() {
                // Centred over the cells, but kept inside the figure when the title is long.
                let cx =
                    (gx + grid_w / 2.0).clamp(MARGIN + title_w / 2.0, (width - MARGIN - title_w / 2.0).max(MARGIN));
                let style = bold(TITLE_SIZE).pos(Pos::new(HPos::Center, VPos::Top));
                root.draw(&Text::new(title, (cx as i32, MARGIN as i32), style))?;
            }
            let split = gx + grid_w + COLORBAR_GAP / 2.0;
            let (cells_area, bar_area) = root.split_horizontally(px(split));

            let mut chart = ChartBuilder::on(&cells_area)
                .margin_top(px(gy))
                .margin_left(px(MARGIN))
                .margin_right(px(COLORBAR_GAP / 2.0))
                .margin_bottom(px(MARGIN))
                .y_label_area_size(px(gx - MARGIN))
                .x_label_area_size(px(height - MARGIN - gy - grid_h))
                .build_cartesian_2d(x, y)?;
            let mut mesh = chart.configure_mesh();
            mesh.disable_mesh()
                .x_labels(c.div_ceil(col_every))
                .y_labels(r.div_ceil(row_every))
                .axis_style(RGBColor::from(AXIS_COLOR).stroke_width(1))
                .label_style(font(TICK_SIZE))
                .axis_desc_style(font(LABEL_SIZE))
                .set_all_tick_mark_size(TICK_LEN);
            if !x_label.is_empty() {
                mesh.x_desc(x_label.as_str());
            }
            if !y_label.is_empty() {
                mesh.y_desc(y_label.as_str());
            }
            if vertical {
                mesh.disable_x_axis();
            }
            mesh.draw()?;
            if cells_png.is_none() {
                chart.draw_series((0..r * c).map(|k| {
                    let (i, j) = ((k / c) as f64, (k % c) as f64);
                    Rectangle::new([(j - 0.5, i - 0.5), (j + 0.5, i + 0.5)], RGBColor::from(colors[k]).filled())
                }))?;
            }
            if let Some((texts, size)) = &numbers {
                chart.draw_series(texts.iter().enumerate().map(|(k, text)| {
                    // Light text on dark cells, dark text on light ones.
                    let color = if colors[k].luminance() < 0.5 { Rgb(255, 255, 255) } else { TEXT_COLOR };
                    let style = colored(font(*size), color).pos(Pos::new(HPos::Center, VPos::Center));
                    Text::new(text.clone(), ((k % c) as f64, (k / c) as f64), style)
                }))?;
            }
            if vertical {
                vertical_x_labels(root, &chart, col_every)?;
            }
            draw_frame(root, &chart)?;

            // The colour bar: a chart of the value range, labelled on its right.
            let bar_label_area = width - split - COLORBAR_GAP / 2.0 - COLORBAR_W - MARGIN;
            let mut bar = ChartBuilder::on(&bar_area)
                .margin_top(px(gy))
                .margin_left(px(COLORBAR_GAP / 2.0))
                .margin_right(px(MARGIN))
                .margin_bottom(px(height - gy - bar_h))
                .right_y_label_area_size(px(bar_label_area))
                .build_cartesian_2d(Scale::linear(0.0, 1.0), Scale::linear(lo, hi))?;
            bar.configure_mesh()
                .disable_mesh()
                .disable_x_axis()
                .y_labels(((bar_h / 32.0).floor() as usize).clamp(2, 6))
                .axis_style(RGBColor::from(AXIS_COLOR).stroke_width(1))
                .label_style(font(TICK_SIZE))
                .set_all_tick_mark_size(TICK_LEN)
                .draw()?;
            let step = (hi - lo) / COLORBAR_STEPS as f64;
            bar.draw_series((0..COLORBAR_STEPS).map(|s| {
                let v = lo + s as f64 * step;
                let color = colormap.color((s as f64 + 0.5) / COLORBAR_STEPS as f64);
                Rectangle::new([(0.0, v), (1.0, v + step)], RGBColor::from(color).filled())
            }))?;
            draw_frame(root, &bar)?;
            Ok(())
        })?;
        if let Some(uri) = cells_png {
            // Over the plotting area, which is exactly the grid.
            append_markup(&mut svg, &image_element(gx as i32, gy as i32, grid_w as i32, grid_h as i32, &uri))?;
        }
        Ok(Figure::new(svg, px(width), px(height), &self.title))
    }
}

/// The colour scale's range from the data: finite min..max, symmetric around 0 if asked, and
/// widened around a constant matrix.
fn value_range(values: &[f64], symmetric: bool) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for &v in values.iter().filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if lo > hi {
        return (0.0, 1.0);
    }
    if symmetric {
        let m = lo.abs().max(hi.abs());
        return if m > 0.0 { (-m, m) } else { (-1.0, 1.0) };
    }
    if lo == hi {
        (lo - 0.5, hi + 0.5)
    } else {
        (lo, hi)
    }
}

/// Decimals for numbers in cells: none for whole numbers, else fewer as values grow.
fn auto_decimals(values: &[f64]) -> usize {
    let finite = values.iter().filter(|v| v.is_finite());
    if finite.clone().all(|v| v.fract() == 0.0) {
        return 0;
    }
    let max = finite.fold(0.0f64, |m, v| m.max(v.abs()));
    if max >= 100.0 {
        0
    } else if max >= 10.0 {
        1
    } else {
        2
    }
}

/// Counts of (true class, predicted class) pairs: `counts[t][p]` is how many examples of class
/// `t` were predicted as `p`. Rows are true classes, columns predictions (the convention of
/// scikit-learn's `confusion_matrix`).
///
/// `pred` is `[N]` class ids or `[N, C]` scores (logits or probabilities; the argmax is the
/// prediction); `target` is `[N]` class ids (or one-hot `[N, C]`).
///
/// ```
/// use candle_core::{Device, Tensor};
/// let dev = Device::Cpu;
/// let pred = Tensor::new(&[0u32, 1, 1, 2], &dev)?;
/// let target = Tensor::new(&[0u32, 1, 2, 2], &dev)?;
/// let m = dlhist::plot::confusion_counts(&pred, &target, 3)?;
/// assert_eq!(m, vec![vec![1, 0, 0], vec![0, 1, 0], vec![0, 1, 1]]);
/// # Ok::<(), dlhist::Error>(())
/// ```
pub fn confusion_counts(pred: &Tensor, target: &Tensor, n_classes: usize) -> Result<Vec<Vec<usize>>> {
    if n_classes == 0 {
        return Err(Error::Invalid("confusion_counts: n_classes must be at least 1".into()));
    }
    let p = class_ids(pred, "confusion_counts pred")?;
    let t = class_ids(target, "confusion_counts target")?;
    if p.len() != t.len() {
        return Err(Error::Invalid(format!(
            "confusion_counts: {} predictions (pred shape {}) but {} targets (target shape {}); they must pair up",
            p.len(),
            shape_str(pred.dims()),
            t.len(),
            shape_str(target.dims())
        )));
    }
    let mut counts = vec![vec![0usize; n_classes]; n_classes];
    for (i, (&pi, &ti)) in p.iter().zip(&t).enumerate() {
        for (what, v) in [("target", ti), ("prediction", pi)] {
            if v >= n_classes {
                return Err(Error::Invalid(format!(
                    "confusion_counts: {what} {v} at index {i} is out of range for {n_classes} classes"
                )));
            }
        }
        counts[ti][pi] += 1;
    }
    Ok(counts)
}

/// A confusion matrix figure: counts of true (rows) against predicted (columns) classes, with
/// the counts in the cells and the accuracy in the title. `classes` names the classes in id
/// order; their number is the number of classes. See [`confusion_counts`] for the inputs.
///
/// ```
/// use candle_core::{Device, Tensor};
/// let dev = Device::Cpu;
/// let logits = Tensor::new(&[[2f32, 0.1], [0.3, 1.0], [1.5, 0.2]], &dev)?;
/// let target = Tensor::new(&[0u32, 1, 1], &dev)?;
/// let fig = dlhist::plot::confusion_matrix(&logits, &target, ["cat", "dog"])?;
/// assert!(fig.svg().contains("accuracy 66.7%"));
/// # Ok::<(), dlhist::Error>(())
/// ```
pub fn confusion_matrix<S: ToString>(
    pred: &Tensor,
    target: &Tensor,
    classes: impl IntoIterator<Item = S>,
) -> Result<Figure> {
    let names = super::strings(classes);
    let counts = confusion_counts(pred, target, names.len())?;
    let total: usize = counts.iter().flatten().sum();
    let correct: usize = (0..names.len()).map(|k| counts[k][k]).sum();
    let accuracy = if total > 0 { 100.0 * correct as f64 / total as f64 } else { 0.0 };
    Heatmap::new(counts)
        .title(format!("Confusion matrix: accuracy {accuracy:.1}% (n = {total})"))
        .row_labels(&names)
        .col_labels(&names)
        .x_label("predicted")
        .y_label("true")
        .colormap(Colormap::Blues)
        .annotate()
        .render()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plot::test_util::*;
    use candle_core::DType;

    /// The cells: filled rectangles inside the frame around the matrix.
    fn cells(svg: &str) -> usize {
        let (fx, fy, fw, fh) = frame(svg);
        let doc = parse(svg);
        let n = doc
            .descendants()
            .filter(|n| {
                let at = |a: &str| n.attribute(a).and_then(|v| v.parse::<f64>().ok()).unwrap_or(-1.0);
                n.has_tag_name("rect")
                    && n.attribute("fill") != Some("none")
                    && (fx..=fx + fw).contains(&at("x"))
                    && (fy..=fy + fh).contains(&at("y"))
                    && at("width") < fw
            })
            .count();
        n
    }

    /// The numbers in the cells: the texts centred on a point (plotters' `0.5ex` shift) and
    /// anchored in the middle.
    fn numbers(svg: &str) -> Vec<String> {
        let doc = parse(svg);
        let t = doc
            .descendants()
            .filter(|n| {
                n.has_tag_name("text")
                    && n.attribute("dy") == Some("0.5ex")
                    && n.attribute("text-anchor") == Some("middle")
            })
            .map(|n| n.text().unwrap_or("").trim().to_string())
            .collect();
        t
    }

    #[test]
    fn one_cell_per_entry_with_labels_and_values() {
        let m = vec![vec![1.0, 2.0, 3.0], vec![4.0, 5.0, 6.5]];
        let fig = Heatmap::new(&m)
            .title("M")
            .row_labels(["a", "b"])
            .col_labels(["x", "y", "z"])
            .annotate()
            .render()
            .expect("renders");
        let svg = fig.svg();
        assert_eq!(cells(svg), 6);
        assert_eq!(y_ticks(svg), ["a", "b"]);
        assert_eq!(x_ticks(svg), ["x", "y", "z"]);
        assert_eq!(numbers(svg), ["1.00", "2.00", "3.00", "4.00", "5.00", "6.50"]);
        // The colour bar is labelled right of the cells.
        let (fx, _, fw, _) = frame(svg);
        let doc = parse(svg);
        let right = doc
            .descendants()
            .filter(|n| {
                n.has_tag_name("text")
                    && n.attribute("x").and_then(|x| x.parse::<f64>().ok()).is_some_and(|x| x > fx + fw + 20.0)
            })
            .count();
        assert!(right >= 2, "{right} colour bar labels");
        // Lowest value gets the first viridis colour, highest the last.
        assert!(rects(svg, Colormap::Viridis.color(0.0)) >= 1 && rects(svg, Colormap::Viridis.color(1.0)) >= 1);
    }

    #[test]
    fn tensor_input_and_shape_errors() {
        let dev = crate::device::test_device();
        let t = crate::rng::Rng::new(1).uniform_tensor((5, 7), 0.0, 1.0, &dev).expect("tensor");
        assert_eq!(cells(Heatmap::new(&t).render().expect("renders").svg()), 35);
        let cube = Tensor::zeros((2, 3, 4), DType::F32, &dev).expect("tensor");
        let err = Heatmap::new(&cube).render().expect_err("3-D");
        assert!(err.to_string().contains("[R, C]") && err.to_string().contains("[2, 3, 4]"), "{err}");
        let err = Heatmap::new(vec![vec![1.0, 2.0], vec![3.0]]).render().expect_err("ragged");
        assert!(err.to_string().contains("row 1 has 1 values"), "{err}");
        let err = Heatmap::new(vec![vec![1.0, 2.0]]).row_labels(["a", "b"]).render().expect_err("labels");
        assert!(err.to_string().contains("2 row labels"), "{err}");
        assert!(Heatmap::new(Vec::<Vec<f64>>::new()).render().is_err());
    }

    #[test]
    fn large_matrices_thin_labels_and_use_png() {
        let dev = crate::device::test_device();
        let t = crate::rng::Rng::new(1).uniform_tensor((64, 64), 0.0, 1.0, &dev).expect("tensor");
        let fig = Heatmap::new(&t).render().expect("renders");
        assert_eq!(cells(fig.svg()), 4096);
        assert!(y_ticks(fig.svg()).len() < 64);
        assert!(fig.width() <= 640 && fig.height() <= 480, "{}x{}", fig.width(), fig.height());
        let big = crate::rng::Rng::new(1).uniform_tensor((300, 300), 0.0, 1.0, &dev).expect("tensor");
        let fig = Heatmap::new(&big).render().expect("renders");
        assert_eq!(cells(fig.svg()), 0);
        // One image, exactly over the plot frame's inside.
        let (fx, fy, fw, fh) = frame(fig.svg());
        assert_eq!(images(fig.svg()), vec![(fx + 1.0, fy + 1.0, fw - 1.0, fh - 1.0)]);
    }

    #[test]
    fn confusion_counts_count() {
        let dev = crate::device::test_device();
        let scores = Tensor::new(&[[0.9f32, 0.1, 0.0], [0.1, 0.2, 0.7], [0.3, 0.6, 0.1], [0.2, 0.2, 0.6]], &dev)
            .expect("tensor");
        let target = Tensor::new(&[0i64, 2, 2, 1], &dev).expect("tensor");
        let m = confusion_counts(&scores, &target, 3).expect("counts");
        assert_eq!(m, vec![vec![1, 0, 0], vec![0, 0, 1], vec![0, 1, 1]]);
        let bad = Tensor::new(&[5u32, 0, 0, 0], &dev).expect("tensor");
        let err = confusion_counts(&bad, &target, 3).expect_err("out of range");
        assert!(err.to_string().contains("prediction 5 at index 0"), "{err}");
        let short = Tensor::new(&[0u32], &dev).expect("tensor");
        assert!(confusion_counts(&short, &target, 3).is_err());
    }

    #[test]
    fn confusion_matrix_figure() {
        let dev = crate::device::test_device();
        let pred = Tensor::new(&[0u8, 1, 1, 2, 2, 2], &dev).expect("tensor");
        let target = Tensor::new(&[0u8, 1, 2, 2, 2, 0], &dev).expect("tensor");
        let names = ["T-shirt/top", "Trouser", "Pullover"];
        let fig = confusion_matrix(&pred, &target, names).expect("renders");
        let svg = fig.svg();
        assert_eq!(cells(svg), 9);
        assert_eq!(numbers(svg), ["1", "0", "1", "0", "1", "0", "0", "1", "2"]);
        assert!(texts(svg).iter().any(|t| t.contains("accuracy 66.7%")), "{:?}", texts(svg));
        assert_eq!(y_ticks(svg), names);
        // Class names are never thinned: all stand under the columns.
        assert_eq!(x_ticks(svg), names);
    }

    #[test]
    fn diverging_range_is_symmetric() {
        assert_eq!(value_range(&[-1.0, 3.0], true), (-3.0, 3.0));
        assert_eq!(value_range(&[-1.0, 3.0, f64::NAN], false), (-1.0, 3.0));
        assert_eq!(value_range(&[2.0, 2.0], false), (1.5, 2.5));
        assert_eq!(auto_decimals(&[1.0, 2.0]), 0);
        assert_eq!(auto_decimals(&[0.5, 2.0]), 2);
    }
}
