//! Charts with x and y axes (line, scatter, decision regions, bars) drawn by plotters'
//! `ChartBuilder`: plotters lays out the title, label areas and plotting area, draws the mesh
//! (grid lines, tick marks, tick labels, axis labels) and the legend
//! (`configure_series_labels`), and maps data to pixels through its linear and logarithmic
//! coordinates (`(lo..hi).log_scale()`).
//!
//! What is decided here, because plotters leaves it to the caller: how wide the label areas
//! must be for the tick labels, how many ticks fit without their labels colliding, which
//! corner the legend goes to (the one covering the fewest data points), where a logarithmic
//! axis puts its labels (plotters labels only powers of ten, which leaves a loss curve
//! spanning less than a decade with one label), and the tick label text.

use plotters::backend::SVGBackend;
use plotters::coord::cartesian::Cartesian2d;
use plotters::coord::combinators::{IntoLogRange, LogCoord};
use plotters::coord::ranged1d::{KeyPointHint, NoDefaultFormatting, Ranged, ValueFormatter};
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::render::{bold, font, render_svg, text_width, Area, DrawResult};
use super::{Rgb, AXIS_COLOR, GRID_COLOR, LABEL_SIZE, LEGEND_SIZE, MARGIN, MINOR_GRID_COLOR, TICK_SIZE, TITLE_SIZE};
use crate::Result;

/// Length of the tick marks; plotters puts tick labels twice this far from the axis.
pub(crate) const TICK_LEN: i32 = 4;
/// Gap between an axis and its tick labels (plotters' rule: twice the tick length).
pub(crate) const LABEL_DIST: f64 = 2.0 * TICK_LEN as f64;
/// Extra room right of the plot, for the last x tick label's right half.
const RIGHT_PAD: f64 = 12.0;
/// Legend box: space for the swatch left of the names, and padding inside the box.
const LEGEND_SWATCH: u32 = 26;
const LEGEND_PAD: u32 = 7;

/// The chart type every axis chart draws on.
pub(crate) type Chart<'a, 'b> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<Scale, Scale>>;

/// One axis' mapping from data to pixels, and its ticks and tick labels.
///
/// plotters' coordinate types do the mapping; this enum lets one chart type hold either kind
/// of axis (plotters' linear and log coordinates are different types), adds named categories,
/// and chooses the ticks.
pub(crate) enum Scale {
    /// plotters' linear axis; ticks at its 1-2-5 key points.
    Linear(RangedCoordf64),
    /// plotters' logarithmic axis; ticks from [`log_ticks`].
    Log(LogCoord<f64>),
    /// Named categories at 0, 1, ..., n - 1 on a linear axis from -0.5 to n - 0.5 (reversed:
    /// from n - 0.5 to -0.5, so the first category comes first from the top).
    Category { coord: RangedCoordf64, labels: Vec<String> },
}

impl Scale {
    pub fn linear(lo: f64, hi: f64) -> Scale {
        Scale::Linear((lo..hi).into())
    }

    pub fn log(lo: f64, hi: f64) -> Scale {
        Scale::Log((lo..hi).log_scale().into())
    }

    pub fn category(labels: Vec<String>, reversed: bool) -> Scale {
        let n = labels.len() as f64;
        let range = if reversed { n - 0.5..-0.5 } else { -0.5..n - 0.5 };
        Scale::Category { coord: range.into(), labels }
    }

    /// Where `v` falls along the axis: 0 at the range's start, 1 at its end.
    pub fn frac(&self, v: f64) -> f64 {
        // plotters maps to whole pixels; a long virtual axis keeps the rounding negligible.
        f64::from(self.map(&v, (0, 1 << 20))) / f64::from(1 << 20)
    }

    /// The labelled ticks when about `target` are wanted.
    pub fn ticks(&self, target: usize) -> Vec<f64> {
        match self {
            Scale::Linear(c) => c.key_points(target),
            Scale::Log(c) => {
                let r = c.range();
                log_ticks(r.start, r.end, target).0
            }
            Scale::Category { labels, .. } => {
                let every = labels.len().div_ceil(target.max(1)).max(1);
                (0..labels.len()).step_by(every).map(|i| i as f64).collect()
            }
        }
    }

    /// The unlabelled (minor) ticks that go with [`ticks`](Self::ticks)`(target)`: only log axes
    /// have them.
    fn minor_ticks(&self, target: usize) -> Vec<f64> {
        match self {
            Scale::Log(c) => {
                let r = c.range();
                log_ticks(r.start, r.end, target).1
            }
            _ => Vec::new(),
        }
    }

    /// The tick label at `v`.
    pub fn label(&self, v: f64) -> String {
        match self {
            Scale::Linear(c) => {
                let r = c.range();
                fmt_linear(v, r.start.abs().max(r.end.abs()))
            }
            Scale::Log(_) => fmt_log(v),
            Scale::Category { labels, .. } => {
                let i = v.round();
                if i >= 0.0 {
                    labels.get(i as usize).cloned().unwrap_or_default()
                } else {
                    String::new()
                }
            }
        }
    }

    pub fn labels(&self, target: usize) -> Vec<String> {
        self.ticks(target).into_iter().map(|v| self.label(v)).collect()
    }
}

impl Ranged for Scale {
    type FormatOption = NoDefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        match self {
            Scale::Linear(c) | Scale::Category { coord: c, .. } => c.map(value, limit),
            Scale::Log(c) => c.map(value, limit),
        }
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        // plotters asks twice: light points for the faint grid, bold points for the labelled
        // grid lines and ticks.
        if hint.weight().allow_light_points() {
            self.minor_ticks(hint.bold_points())
        } else {
            self.ticks(hint.max_num_points())
        }
    }

    fn range(&self) -> std::ops::Range<f64> {
        match self {
            Scale::Linear(c) | Scale::Category { coord: c, .. } => c.range(),
            Scale::Log(c) => c.range(),
        }
    }
}

impl ValueFormatter<f64> for Scale {
    fn format_ext(&self, value: &f64) -> String {
        self.label(*value)
    }
}

/// The range spanned by the usable values (finite, and positive on a log axis), widened by
/// `pad` of its span on each side (measured in decades on a log axis). A single distinct
/// value gets a range around it. `None` if no value is usable.
pub(crate) fn auto_range(values: impl IntoIterator<Item = f64>, log: bool, pad: f64) -> Option<(f64, f64)> {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values {
        if v.is_finite() && (!log || v > 0.0) {
            lo = lo.min(v);
            hi = hi.max(v);
        }
    }
    if lo > hi {
        return None;
    }
    if log {
        let (a, b) = (lo.log10(), hi.log10());
        let (a, b) = if b - a < 1e-9 { (a - 0.5, b + 0.5) } else { (a - (b - a) * pad, b + (b - a) * pad) };
        return Some((10f64.powf(a), 10f64.powf(b)));
    }
    if hi - lo <= f64::EPSILON * hi.abs().max(1.0) {
        // A flat series: centre it instead of dividing by a zero span.
        let p = if lo == 0.0 { 1.0 } else { lo.abs() * 0.1 };
        return Some((lo - p, hi + p));
    }
    let p = (hi - lo) * pad;
    Some((lo - p, hi + p))
}

/// A number with at most nine significant decimals and no trailing zeros: the tick values
/// are multiples of steps like 0.1, which binary floating point cannot hit exactly.
fn fmt_plain(v: f64) -> String {
    let s = format!("{v:.9}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".into()
    } else {
        s.into()
    }
}

/// Scientific notation with the mantissa's trailing zeros dropped: `1e-4`, `2.5e6`.
fn fmt_sci(v: f64) -> String {
    let s = format!("{v:.8e}");
    match s.split_once('e') {
        Some((m, e)) => format!("{}e{e}", m.trim_end_matches('0').trim_end_matches('.')),
        None => s,
    }
}

/// A tick label on a linear axis whose values reach `maxabs`: plain decimals, or scientific
/// notation for the whole axis when its magnitude is very large or very small.
pub(crate) fn fmt_linear(v: f64, maxabs: f64) -> String {
    if v == 0.0 || v.abs() < maxabs * 1e-12 {
        "0".into()
    } else if (1e-3..1e5).contains(&maxabs) {
        fmt_plain(v)
    } else {
        fmt_sci(v)
    }
}

/// A tick label on a log axis: plain decimals from 0.001 to 10000, scientific beyond.
pub(crate) fn fmt_log(v: f64) -> String {
    if (1e-3..1e5).contains(&(v.abs() * (1.0 + 1e-9))) {
        fmt_plain(v)
    } else {
        fmt_sci(v)
    }
}

/// `m * 10^k`, computed so that e.g. 3 * 10^-1 is exactly the double nearest 0.3.
fn decade_value(m: u32, k: i32) -> f64 {
    if k >= 0 {
        f64::from(m) * 10f64.powi(k)
    } else {
        f64::from(m) / 10f64.powi(-k)
    }
}

/// Ticks for a log axis over [lo, hi] (both > 0), as (labelled, unlabelled): labelled at 1-9,
/// 1-2-5 or 1 times each power of ten (the densest that keeps to about `target` labels),
/// every n-th decade when even that is too many, with unlabelled minor ticks at the other
/// multiples. A range too narrow to hold two such ticks gets plotters' linear key points.
pub(crate) fn log_ticks(lo: f64, hi: f64, target: usize) -> (Vec<f64>, Vec<f64>) {
    let (lo, hi) = (lo.min(hi), lo.max(hi));
    let target = target.max(2);
    let (k0, k1) = (lo.log10().floor() as i32, hi.log10().ceil() as i32);
    let inside = |v: f64| v >= lo * (1.0 - 1e-9) && v <= hi * (1.0 + 1e-9);
    let at = |mults: &[u32]| -> Vec<f64> {
        (k0..=k1).flat_map(|k| mults.iter().map(move |&m| decade_value(m, k))).filter(|&v| inside(v)).collect()
    };
    let options: [(&[u32], &[u32]); 3] =
        [(&[1, 2, 3, 4, 5, 6, 7, 8, 9], &[]), (&[1, 2, 5], &[3, 4, 6, 7, 8, 9]), (&[1], &[2, 3, 4, 5, 6, 7, 8, 9])];
    let mut chosen = None;
    for (i, (major, _)) in options.iter().enumerate() {
        let n = at(major).len();
        if n < 2 {
            // Sparser options have even fewer; keep the previous (denser) one if any.
            break;
        }
        chosen = Some(i);
        if n <= target {
            break;
        }
    }
    let Some(i) = chosen else {
        return (RangedCoordf64::from(lo..hi).key_points(target), Vec::new());
    };
    let (major, minor) = options[i];
    let mut labelled = at(major);
    // Minor grid lines only while decades are few enough for them to be seen apart.
    let mut unlabelled = if k1 - k0 <= 8 { at(minor) } else { Vec::new() };
    if i == 2 && labelled.len() > target {
        // Many decades: label every `every`-th one, keep the others as minor grid lines.
        let every = labelled.len().div_ceil(target) as i64;
        let (keep, skip): (Vec<f64>, Vec<f64>) =
            labelled.iter().partition(|v| ((v.log10() + 1e-9).floor() as i64).rem_euclid(every) == 0);
        labelled = keep;
        unlabelled.extend(skip);
    }
    (labelled, unlabelled)
}

/// Cuts a polyline at the edges of the box x in `xr`, y in `yr` (data values; the cut is
/// computed in log10 space on a log axis, where the drawn line is straight): the pieces
/// inside, each with at least two points. plotters clamps points outside its plotting area
/// onto the edge, which would draw a data series beyond a fixed range as a false flat line.
pub(crate) fn clip_polyline(
    points: &[(f64, f64)],
    xr: (f64, f64),
    yr: (f64, f64),
    log: (bool, bool),
) -> Vec<Vec<(f64, f64)>> {
    let fwd = |v: f64, log: bool| if log { v.log10() } else { v };
    let back = |v: f64, log: bool| if log { 10f64.powf(v) } else { v };
    let (x0, x1) = (fwd(xr.0, log.0), fwd(xr.1, log.0));
    let (y0, y1) = (fwd(yr.0, log.1), fwd(yr.1, log.1));
    let t: Vec<(f64, f64)> = points.iter().map(|&(x, y)| (fwd(x, log.0), fwd(y, log.1))).collect();
    let mut runs: Vec<Vec<(f64, f64)>> = Vec::new();
    let mut cur: Vec<(f64, f64)> = Vec::new();
    let flush = |cur: &mut Vec<(f64, f64)>, runs: &mut Vec<Vec<(f64, f64)>>| {
        if cur.len() > 1 {
            runs.push(std::mem::take(cur));
        }
        cur.clear();
    };
    for (k, w) in t.windows(2).enumerate() {
        let (p, q) = (w[0], w[1]);
        let (dx, dy) = (q.0 - p.0, q.1 - p.1);
        // Liang-Barsky: p + s * d stays inside while s * a <= b for each edge (a, b).
        let (mut s0, mut s1) = (0.0f64, 1.0f64);
        let mut outside = false;
        for (a, b) in [(-dx, p.0 - x0), (dx, x1 - p.0), (-dy, p.1 - y0), (dy, y1 - p.1)] {
            if a == 0.0 {
                outside |= b < 0.0;
            } else if a < 0.0 {
                s0 = s0.max(b / a);
            } else {
                s1 = s1.min(b / a);
            }
        }
        if outside || s0 > s1 {
            flush(&mut cur, &mut runs);
            continue;
        }
        // Endpoints inside are kept exactly as given; cut points are mapped back to data.
        let at = |s: f64| (back(p.0 + s * dx, log.0), back(p.1 + s * dy, log.1));
        let a = if s0 == 0.0 { points[k] } else { at(s0) };
        let b = if s1 == 1.0 { points[k + 1] } else { at(s1) };
        if cur.last() != Some(&a) {
            flush(&mut cur, &mut runs);
            cur.push(a);
        }
        cur.push(b);
        if s1 < 1.0 {
            // The line leaves the box here.
            flush(&mut cur, &mut runs);
        }
    }
    flush(&mut cur, &mut runs);
    runs
}

/// How a legend entry shows its series.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Swatch {
    Line,
    Marker,
    Block,
}

/// One legend row.
#[derive(Clone, Debug)]
pub(crate) struct LegendEntry {
    pub name: String,
    pub color: Rgb,
    pub swatch: Swatch,
}

/// A chart with axes, ready to draw.
pub(crate) struct AxisChart<'s> {
    /// Names the figure in error messages.
    pub what: &'s str,
    pub size: (u32, u32),
    pub title: &'s str,
    pub x_label: &'s str,
    pub y_label: &'s str,
    pub x: Scale,
    pub y: Scale,
    /// Grid lines across the plot at the x ticks (bars go without).
    pub x_grid: bool,
    pub legend: Vec<LegendEntry>,
}

/// How the x tick labels are shown.
struct XLabels {
    /// Labelled ticks to ask plotters for.
    target: usize,
    /// Category labels too long to sit side by side: drawn vertically, every `thin`-th one.
    vertical: Option<usize>,
}

fn widest(labels: &[String]) -> f64 {
    labels.iter().map(|l| text_width(l, TICK_SIZE)).fold(0.0, f64::max)
}

/// Whether neighbouring x tick labels keep apart on an axis `length` pixels long.
fn x_labels_fit(scale: &Scale, ticks: &[f64], length: f64) -> bool {
    let placed: Vec<(f64, f64)> =
        ticks.iter().map(|&v| (scale.frac(v) * length, text_width(&scale.label(v), TICK_SIZE))).collect();
    placed.windows(2).all(|w| (w[1].0 - w[0].0).abs() >= (w[0].1 + w[1].1) / 2.0 + 10.0)
}

impl AxisChart<'_> {
    /// Draws the chart: plotters lays out the title, axes and mesh, then `draw_data` draws the
    /// data in data coordinates, then the frame and the legend go on top. The legend takes the
    /// corner of the plot that covers the fewest of the `occupied` data points.
    pub fn render(
        self,
        occupied: &[(f64, f64)],
        draw_data: impl FnOnce(&mut Chart<'_, '_>) -> DrawResult,
    ) -> Result<String> {
        let (w, h) = (f64::from(self.size.0), f64::from(self.size.1));
        let title_h = if self.title.is_empty() { 0.0 } else { TITLE_SIZE + 10.0 };
        let x_desc_h = if self.x_label.is_empty() { 0.0 } else { LABEL_SIZE + 6.0 };
        let y_desc_w = if self.y_label.is_empty() { 0.0 } else { LABEL_SIZE + 8.0 };
        let flat_x_area = LABEL_DIST + TICK_SIZE + 4.0 + x_desc_h;

        // The y labels decide the left label area, which decides the plot width, which
        // decides whether category labels turn vertical, which changes the plot height: two
        // passes settle it.
        let mut x_area = flat_x_area;
        let mut vertical = None;
        let (mut y_area, mut y_target, mut plot_w) = (0.0, 2, 0.0);
        for _ in 0..2 {
            let plot_h = (h - 2.0 * MARGIN - title_h - x_area).max(20.0);
            // About one label per 40 px, and at least two labels.
            y_target = ((plot_h / 40.0).round() as usize).clamp(2, 10);
            while self.y.ticks(y_target).len() < 2 && y_target < 8 {
                y_target += 1;
            }
            y_area = (widest(&self.y.labels(y_target)) + LABEL_DIST + 6.0 + y_desc_w).ceil();
            plot_w = (w - 2.0 * MARGIN - RIGHT_PAD - y_area).max(20.0);
            if let Scale::Category { labels, .. } = &self.x {
                let slot = plot_w / labels.len().max(1) as f64;
                let wide = widest(labels);
                if wide + 6.0 > slot {
                    vertical = Some(((TICK_SIZE + 3.0) / slot).ceil().max(1.0) as usize);
                    // Very long labels are capped so the plot keeps most of its height.
                    x_area = LABEL_DIST + wide.min(h * 0.35) + 6.0 + x_desc_h;
                } else {
                    vertical = None;
                    x_area = flat_x_area;
                }
            }
        }
        let x_labels = match &self.x {
            Scale::Category { labels, .. } => XLabels { target: labels.len(), vertical },
            scale => {
                // About one label per 70 px, fewer until the labels stop colliding.
                let mut target = ((plot_w / 70.0).round() as usize).clamp(2, 10);
                while target > 2 && !x_labels_fit(scale, &scale.ticks(target), plot_w) {
                    target -= 1;
                }
                while scale.ticks(target).len() < 2 && target < 8 {
                    target += 1;
                }
                XLabels { target, vertical: None }
            }
        };

        let AxisChart { what, size, title, x_label, y_label, x, y, x_grid, legend } = self;
        render_svg(what, size, |root| {
            let mut builder = ChartBuilder::on(root);
            builder
                .margin_top(MARGIN as u32)
                .margin_bottom(MARGIN as u32)
                .margin_left(MARGIN as u32)
                .margin_right((MARGIN + RIGHT_PAD) as u32)
                .x_label_area_size(x_area.ceil() as u32)
                .y_label_area_size(y_area as u32);
            if !title.is_empty() {
                builder.caption(title, bold(TITLE_SIZE));
            }
            let mut chart = builder.build_cartesian_2d(x, y)?;
            let mut mesh = chart.configure_mesh();
            mesh.x_labels(x_labels.target)
                .y_labels(y_target)
                .bold_line_style(RGBColor::from(GRID_COLOR).stroke_width(1))
                .light_line_style(RGBColor::from(MINOR_GRID_COLOR).stroke_width(1))
                .axis_style(RGBColor::from(AXIS_COLOR).stroke_width(1))
                .label_style(font(TICK_SIZE))
                .axis_desc_style(font(LABEL_SIZE))
                .set_all_tick_mark_size(TICK_LEN);
            if !x_label.is_empty() {
                mesh.x_desc(x_label);
            }
            if !y_label.is_empty() {
                mesh.y_desc(y_label);
            }
            if !x_grid {
                mesh.disable_x_mesh();
            }
            if x_labels.vertical.is_some() {
                // plotters centres rotated tick labels on their anchor, half inside the plot;
                // these are drawn below, hanging from the axis.
                mesh.disable_x_axis();
            }
            mesh.draw()?;
            draw_data(&mut chart)?;
            if let Some(thin) = x_labels.vertical {
                vertical_x_labels(root, &chart, thin)?;
            }
            draw_frame(root, &chart)?;
            if !legend.is_empty() {
                draw_legend(&mut chart, &legend, occupied)?;
            }
            Ok(())
        })
    }
}

/// The frame around the plotting area, over plotters' left and bottom axis lines (which sit
/// just outside the area's pixels).
pub(crate) fn draw_frame(root: &Area<'_>, chart: &Chart<'_, '_>) -> DrawResult {
    let (xr, yr) = chart.plotting_area().get_pixel_range();
    let style = RGBColor::from(AXIS_COLOR).stroke_width(1);
    root.draw(&Rectangle::new([(xr.start - 1, yr.start - 1), (xr.end, yr.end)], style))?;
    Ok(())
}

/// Category names under the x axis, written bottom to top and ending at the axis, every
/// `thin`-th one, each with its tick mark.
pub(crate) fn vertical_x_labels(root: &Area<'_>, chart: &Chart<'_, '_>, thin: usize) -> DrawResult {
    let Scale::Category { labels, .. } = chart.as_coord_spec().x_spec() else { return Ok(()) };
    let (_, yr) = chart.plotting_area().get_pixel_range();
    let axis = RGBColor::from(AXIS_COLOR).stroke_width(1);
    let style = font(TICK_SIZE).transform(FontTransform::Rotate270).pos(Pos::new(HPos::Right, VPos::Center));
    for (i, label) in labels.iter().enumerate().step_by(thin.max(1)) {
        let (x, _) = chart.backend_coord(&(i as f64, 0.0));
        root.draw(&PathElement::new(vec![(x, yr.end), (x, yr.end + TICK_LEN)], axis))?;
        root.draw(&Text::new(label.as_str(), (x, yr.end + LABEL_DIST as i32), style.clone()))?;
    }
    Ok(())
}

/// About how tall the plotting area of an axis chart of `size` comes out (the x labels of
/// category axes may take more), for charts that make room for their legend.
pub(crate) fn plot_height(size: (u32, u32), title: &str, x_label: &str) -> f64 {
    let title_h = if title.is_empty() { 0.0 } else { TITLE_SIZE + 10.0 };
    let x_desc_h = if x_label.is_empty() { 0.0 } else { LABEL_SIZE + 6.0 };
    (f64::from(size.1) - 2.0 * MARGIN - title_h - (LABEL_DIST + TICK_SIZE + 4.0 + x_desc_h)).max(20.0)
}

/// The legend's height in pixels.
pub(crate) fn legend_height(entries: &[LegendEntry]) -> f64 {
    f64::from(legend_box(entries).1)
}

/// The legend's size in pixels as plotters will lay it out (its text estimate, not ours:
/// plotters sizes the box).
fn legend_box(entries: &[LegendEntry]) -> (i32, i32) {
    // plotters' font-less estimate: 0.7 em per byte, with its em being size / 1.24.
    let text = entries.iter().map(|e| e.name.len()).max().unwrap_or(0) as f64 * 0.7 * LEGEND_SIZE;
    let rows = entries.len().saturating_sub(1) as f64 * 1.25 * 1.24 * LEGEND_SIZE + LEGEND_SIZE;
    ((text + f64::from(LEGEND_SWATCH + 2 * LEGEND_PAD)) as i32, (rows + f64::from(2 * LEGEND_PAD)) as i32)
}

/// The corner of the plotting area where a `legend`-sized box covers the fewest `occupied`
/// points (data coordinates); ties go to the upper right, then upper left, lower right, lower
/// left.
fn legend_corner(chart: &Chart<'_, '_>, legend: (i32, i32), occupied: &[(f64, f64)]) -> SeriesLabelPosition {
    let (xr, yr) = chart.plotting_area().get_pixel_range();
    let (lw, lh) = legend;
    // plotters insets the box 5 px from the chosen corner.
    let (left, right) = (xr.start + 5, xr.end - 5 - lw);
    let (top, bottom) = (yr.start + 5, yr.end - 5 - lh);
    let corners = [
        (SeriesLabelPosition::UpperRight, right, top),
        (SeriesLabelPosition::UpperLeft, left, top),
        (SeriesLabelPosition::LowerRight, right, bottom),
        (SeriesLabelPosition::LowerLeft, left, bottom),
    ];
    let pixels: Vec<(i32, i32)> = occupied.iter().map(|p| chart.backend_coord(p)).collect();
    let covered = |x: i32, y: i32| {
        pixels.iter().filter(|&&(px, py)| px >= x - 4 && px <= x + lw + 4 && py >= y - 4 && py <= y + lh + 4).count()
    };
    corners
        .into_iter()
        .map(|(pos, x, y)| (covered(x, y), pos))
        .min_by_key(|(count, _)| *count)
        .map_or(SeriesLabelPosition::UpperRight, |(_, pos)| pos)
}

/// plotters' legend: one annotation per entry (attached to an empty series, since a series
/// drawn in pieces would otherwise be listed once per piece), in the emptiest corner.
fn draw_legend<'a, 'b: 'a>(chart: &mut Chart<'a, 'b>, legend: &[LegendEntry], occupied: &[(f64, f64)]) -> DrawResult {
    let position = legend_corner(chart, legend_box(legend), occupied);
    for entry in legend {
        let color = RGBColor::from(entry.color);
        let anno = chart.draw_series(std::iter::empty::<Circle<(f64, f64), i32>>())?;
        anno.label(entry.name.as_str());
        // The swatch function gets the left middle of the swatch space.
        match entry.swatch {
            Swatch::Line => {
                anno.legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(3)))
            }
            Swatch::Marker => anno.legend(move |(x, y)| Circle::new((x + 9, y), 5, color.filled())),
            Swatch::Block => {
                anno.legend(move |(x, y)| Rectangle::new([(x + 4, y - 5), (x + 14, y + 5)], color.filled()))
            }
        };
    }
    chart
        .configure_series_labels()
        .position(position)
        .legend_area_size(LEGEND_SWATCH)
        .margin(LEGEND_PAD)
        .label_font(font(LEGEND_SIZE))
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(0xcc, 0xcc, 0xcc))
        .draw()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(scale: &Scale, target: usize) -> Vec<String> {
        scale.labels(target)
    }

    #[test]
    fn linear_labels_are_round() {
        assert_eq!(labels(&Scale::linear(-0.13, 1.07), 6), ["0", "0.2", "0.4", "0.6", "0.8", "1"]);
        assert_eq!(labels(&Scale::linear(0.0, 1000.0), 6), ["0", "200", "400", "600", "800", "1000"]);
        let big = labels(&Scale::linear(0.0, 3.0e6), 4);
        assert!(big.contains(&"1e6".to_string()) && big.contains(&"3e6".to_string()), "{big:?}");
        assert!(Scale::linear(2.0, 2.5).ticks(4).iter().all(|v| (2.0..=2.5).contains(v)));
    }

    #[test]
    fn log_ticks_label_decades_or_multiples() {
        // Five decades: labels at powers of ten, minor lines between.
        let (major, minor) = log_ticks(1e-4, 10.0, 6);
        let l: Vec<String> = major.iter().map(|&v| fmt_log(v)).collect();
        assert_eq!(l, ["1e-4", "0.001", "0.01", "0.1", "1", "10"]);
        assert!(minor.iter().any(|&v| (v - 0.02).abs() < 1e-12));
        // Less than a decade: 1-2-5, where plotters' own key points would give "1" alone.
        let (major, _) = log_ticks(0.15, 2.5, 6);
        let l: Vec<String> = major.iter().map(|&v| fmt_log(v)).collect();
        assert_eq!(l, ["0.2", "0.5", "1", "2"]);
        // Many decades: every other one labelled.
        let (major, minor) = log_ticks(1e-10, 1e10, 6);
        assert!(major.len() <= 7 && major.contains(&1.0), "{major:?}");
        assert!(minor.contains(&1e-9), "{minor:?}");
        // Too narrow for two multiples: linear ticks.
        assert!(log_ticks(0.31, 0.39, 4).0.len() >= 2);
        // The scale hands plotters the same ticks.
        assert_eq!(Scale::log(1e-4, 10.0).ticks(6).len(), 6);
    }

    #[test]
    fn category_ticks_thin_and_name() {
        let s = Scale::category((0..10).map(|i| format!("c{i}")).collect(), false);
        assert_eq!(s.ticks(10).len(), 10);
        assert_eq!(s.ticks(4), [0.0, 3.0, 6.0, 9.0]);
        assert_eq!(s.label(3.0), "c3");
        assert!(s.frac(0.0) < s.frac(9.0));
        let r = Scale::category(vec!["a".into(), "b".into()], true);
        // Reversed: the first category at the far end (the top of a y axis).
        assert!(r.frac(0.0) > r.frac(1.0));
    }

    #[test]
    fn number_formats() {
        assert_eq!(fmt_linear(0.30000000000000004, 1.0), "0.3");
        assert_eq!(fmt_linear(-0.0, 1.0), "0");
        assert_eq!(fmt_linear(2.5e-5, 3e-5), "2.5e-5");
        assert_eq!(fmt_log(1e5), "1e5");
        assert_eq!(fmt_log(1e4), "10000");
        assert_eq!(fmt_log(0.001), "0.001");
    }

    #[test]
    fn ranges_ignore_non_finite_and_pad() {
        let (lo, hi) = auto_range([f64::NAN, 0.0, 10.0, f64::INFINITY], false, 0.05).expect("range");
        assert!((lo + 0.5).abs() < 1e-12 && (hi - 10.5).abs() < 1e-12);
        assert_eq!(auto_range([f64::NAN], false, 0.05), None);
        assert_eq!(auto_range([-1.0, 0.0], true, 0.05), None);
        let (lo, hi) = auto_range([3.0, 3.0], false, 0.05).expect("flat");
        assert!(lo < 3.0 && hi > 3.0);
        let (lo, hi) = auto_range([0.01, 100.0], true, 0.0).expect("log");
        assert!((lo - 0.01).abs() < 1e-12 && (hi - 100.0).abs() < 1e-9);
    }

    #[test]
    fn polylines_are_cut_at_the_box() {
        let b = ((0.0, 1.0), (0.0, 1.0));
        // In, out, back in: two pieces, cut at the top edge.
        let pts = [(0.0, 0.5), (0.5, 3.0), (0.6, 3.0), (1.0, 0.5)];
        let runs = clip_polyline(&pts, b.0, b.1, (false, false));
        assert_eq!(runs.len(), 2, "{runs:?}");
        assert_eq!(runs[0][0], pts[0]);
        assert!((runs[0][1].1 - 1.0).abs() < 1e-12 && (runs[0][1].0 - 0.1).abs() < 1e-12, "{runs:?}");
        assert_eq!(runs[1].last(), Some(&pts[3]));
        // Entirely outside: nothing. Entirely inside: unchanged.
        assert!(clip_polyline(&[(2.0, 2.0), (3.0, 3.0)], b.0, b.1, (false, false)).is_empty());
        let inside = [(0.1, 0.1), (0.2, 0.3), (0.3, 0.2)];
        assert_eq!(clip_polyline(&inside, b.0, b.1, (false, false)), vec![inside.to_vec()]);
        // On a log axis the cut is where the straight on-screen line meets the edge.
        let runs = clip_polyline(&[(0.0, 1.0), (1.0, 100.0)], b.0, (1.0, 10.0), (false, true));
        assert!((runs[0][1].0 - 0.5).abs() < 1e-9 && (runs[0][1].1 - 10.0).abs() < 1e-9, "{runs:?}");
    }
}
