//! The layout engine of the charts with x and y axes (line, scatter, bar): data ranges, tick
//! positions and labels (linear and logarithmic), margins sized to the labels, grid lines, and
//! a legend placed in the emptiest corner of the plot (or outside it when every corner is
//! crowded).
//!
//! A chart builds a [`Chart`], asks it for a [`Layout`] (passing the data points, so the legend
//! can avoid them), draws its data between [`Layout::begin`] and [`Layout::finish`] using
//! [`Layout::px`] / [`Layout::py`], and gets the SVG text back.

use super::svg::{text_width, Anchor, Svg, TextStyle};
use super::{Rgb, AXIS_COLOR, GRID_COLOR, LABEL_SIZE, LEGEND_SIZE, MARGIN, MINOR_GRID_COLOR, TICK_SIZE, TITLE_SIZE};

/// Length of the tick marks outside the frame.
const TICK_LEN: f64 = 4.0;
/// Angle of rotated category labels, in degrees.
const ROTATION: f64 = 40.0;
/// Distance between the legend and the plot frame.
const LEGEND_INSET: f64 = 8.0;
/// Height of one legend row.
const LEGEND_ROW: f64 = 18.0;

/// Maps data values on one axis to a fraction of the axis length.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Scale {
    pub lo: f64,
    pub hi: f64,
    pub log: bool,
}

impl Scale {
    pub fn new(lo: f64, hi: f64, log: bool) -> Self {
        Scale { lo, hi, log }
    }

    fn t(&self, v: f64) -> f64 {
        if self.log {
            v.log10()
        } else {
            v
        }
    }

    /// Where `v` falls along the axis: 0 at `lo`, 1 at `hi` (outside for values beyond them;
    /// NaN for non-positive values on a log axis).
    pub fn frac(&self, v: f64) -> f64 {
        let (a, b) = (self.t(self.lo), self.t(self.hi));
        (self.t(v) - a) / (b - a)
    }
}

/// A tick: a grid line at `value`, labelled unless it is a minor tick.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Tick {
    pub value: f64,
    pub label: Option<String>,
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

/// A step of 1, 2 or 5 times a power of ten that cuts `span` into about `target` pieces.
pub(crate) fn nice_step(span: f64, target: usize) -> f64 {
    let raw = span / target.max(1) as f64;
    let mag = 10f64.powi(raw.log10().floor() as i32);
    let f = raw / mag;
    let nice = if f < 1.5 {
        1.0
    } else if f < 3.0 {
        2.0
    } else if f < 7.0 {
        5.0
    } else {
        10.0
    };
    nice * mag
}

/// Formats a value on a linear axis with as many decimals as the step needs; scientific
/// notation for very large or very small magnitudes.
pub(crate) fn fmt_linear(v: f64, step: f64, maxabs: f64) -> String {
    // Multiples of the step computed in floating point can land at 1e-17 instead of 0.
    let v = if v.abs() < step * 1e-6 { 0.0 } else { v };
    if !(1e-3..1e6).contains(&maxabs) {
        if v == 0.0 {
            return "0".into();
        }
        let digits = (maxabs.log10().floor() - step.log10().floor()).max(0.0) as usize;
        return format!("{v:.digits$e}");
    }
    let decimals = (-(step.log10() + 1e-9).floor()).max(0.0) as usize;
    format!("{v:.decimals$}")
}

/// Evenly spaced ticks at a "nice" step, about `target` of them, all inside [lo, hi].
pub(crate) fn linear_ticks(lo: f64, hi: f64, target: usize) -> Vec<Tick> {
    let step = nice_step(hi - lo, target);
    if !(step.is_finite() && step > 0.0) {
        return Vec::new();
    }
    let first = (lo / step - 1e-9).ceil() as i64;
    let last = (hi / step + 1e-9).floor() as i64;
    let maxabs = lo.abs().max(hi.abs());
    // The step divides the span into ~target parts, so this bound only guards against overflow.
    (first..=last.min(first + 1000))
        .map(|k| {
            let v = k as f64 * step;
            Tick { value: v, label: Some(fmt_linear(v, step, maxabs)) }
        })
        .collect()
}

/// `m * 10^k`, computed so that e.g. 3 * 10^-1 is exactly the double nearest 0.3.
fn decade_value(m: u32, k: i32) -> f64 {
    if k >= 0 {
        f64::from(m) * 10f64.powi(k)
    } else {
        f64::from(m) / 10f64.powi(-k)
    }
}

/// Formats a tick on a log axis: plain decimals from 0.001 to 10000, scientific beyond.
pub(crate) fn fmt_log(v: f64) -> String {
    let e = (v.log10() + 1e-9).floor();
    if (-3.0..=4.0).contains(&e) {
        let decimals = (-e).max(0.0) as usize;
        format!("{v:.decimals$}")
    } else {
        format!("{v:e}")
    }
}

/// Ticks for a log axis over [lo, hi] (both > 0): labelled at 1-9, 1-2-5 or 1 times each
/// power of ten (the densest that keeps to about `target` labels), every n-th decade when even
/// that is too many, and unlabelled minor ticks at the other multiples. Ranges too narrow to
/// hold two such ticks get linear ticks (still placed on the log scale).
pub(crate) fn log_ticks(lo: f64, hi: f64, target: usize) -> Vec<Tick> {
    let target = target.max(2);
    let (k0, k1) = (lo.log10().floor() as i32, hi.log10().ceil() as i32);
    let inside = |v: f64| v >= lo * (1.0 - 1e-9) && v <= hi * (1.0 + 1e-9);
    let at = |mults: &[u32]| -> Vec<f64> {
        let mut out = Vec::new();
        for k in k0..=k1 {
            for &m in mults {
                let v = decade_value(m, k);
                if inside(v) {
                    out.push(v);
                }
            }
        }
        out
    };
    let options: [(&[u32], &[u32]); 3] =
        [(&[1, 2, 3, 4, 5, 6, 7, 8, 9], &[]), (&[1, 2, 5], &[3, 4, 6, 7, 8, 9]), (&[1], &[2, 3, 4, 5, 6, 7, 8, 9])];
    let mut chosen: Option<usize> = None;
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
        return linear_ticks(lo, hi, target);
    };
    let (major, minor) = options[i];
    let labelled = at(major);
    let mut ticks: Vec<Tick> = if i == 2 && labelled.len() > target {
        // Many decades: label every `every`-th one, keep the others as minor grid lines.
        let every = labelled.len().div_ceil(target);
        labelled
            .iter()
            .map(|&v| {
                let k = (v.log10() + 1e-9).floor() as i64;
                Tick { value: v, label: (k.rem_euclid(every as i64) == 0).then(|| fmt_log(v)) }
            })
            .collect()
    } else {
        labelled.iter().map(|&v| Tick { value: v, label: Some(fmt_log(v)) }).collect()
    };
    // Minor grid lines only while decades are few enough for them to be seen apart.
    if k1 - k0 <= 8 {
        ticks.extend(at(minor).into_iter().map(|v| Tick { value: v, label: None }));
    }
    ticks.sort_by(|a, b| a.value.total_cmp(&b.value));
    ticks
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

/// One axis of a chart.
#[derive(Clone, Debug)]
pub(crate) struct Axis {
    pub scale: Scale,
    pub label: String,
    /// Fixed ticks (category axes); `None` lets the layout choose from the scale and the room.
    pub ticks: Option<Vec<Tick>>,
    /// Grid lines across the plot at the ticks.
    pub grid: bool,
}

impl Axis {
    pub fn new(lo: f64, hi: f64, log: bool, label: &str) -> Self {
        Axis { scale: Scale::new(lo, hi, log), label: label.to_string(), ticks: None, grid: true }
    }
}

/// What a chart with axes needs to be laid out.
pub(crate) struct Chart {
    pub width: u32,
    pub height: u32,
    pub title: String,
    pub x: Axis,
    pub y: Axis,
    pub legend: Vec<LegendEntry>,
}

/// Where everything goes: the plot rectangle, the ticks chosen and the legend position.
#[derive(Clone, Debug)]
pub(crate) struct Layout {
    pub left: f64,
    pub top: f64,
    pub right: f64,
    pub bottom: f64,
    x_scale: Scale,
    y_scale: Scale,
    x_ticks: Vec<Tick>,
    y_ticks: Vec<Tick>,
    x_rotated: bool,
    /// Top-left corner of the legend box, when there is a legend.
    legend_at: Option<(f64, f64)>,
    legend_size: (f64, f64),
}

fn max_label_width(ticks: &[Tick], size: f64) -> f64 {
    ticks.iter().filter_map(|t| t.label.as_deref()).map(|l| text_width(l, size)).fold(0.0, f64::max)
}

/// Whether neighbouring labelled ticks keep their labels apart at this axis length.
fn labels_fit(ticks: &[Tick], scale: &Scale, length: f64, horizontal: bool) -> bool {
    let mut prev: Option<(f64, f64)> = None;
    for t in ticks {
        let Some(label) = &t.label else { continue };
        let pos = scale.frac(t.value) * length;
        let w = text_width(label, TICK_SIZE);
        if let Some((p, pw)) = prev {
            let need = if horizontal { (w + pw) / 2.0 + 10.0 } else { TICK_SIZE + 4.0 };
            if (pos - p).abs() < need {
                return false;
            }
        }
        prev = Some((pos, w));
    }
    true
}

/// Ticks for an axis `length` pixels long: as many as fit without labels colliding.
fn choose_ticks(axis: &Axis, length: f64, horizontal: bool) -> Vec<Tick> {
    if let Some(t) = &axis.ticks {
        return t.clone();
    }
    let s = axis.scale;
    let make = |target: usize| if s.log { log_ticks(s.lo, s.hi, target) } else { linear_ticks(s.lo, s.hi, target) };
    let labelled = |ticks: &[Tick]| ticks.iter().filter(|t| t.label.is_some()).count();
    // Start from about one label per 60 px (40 px vertically) and drop to fewer until the
    // labels stop colliding.
    let per = if horizontal { 60.0 } else { 40.0 };
    let mut target = ((length / per).round() as usize).clamp(2, 12);
    let mut ticks = make(target);
    while target > 2 && !labels_fit(&ticks, &s, length, horizontal) {
        target -= 1;
        ticks = make(target);
    }
    // A short axis can round to a single label; an axis needs two to be read.
    while labelled(&ticks) < 2 && target < 6 {
        target += 1;
        ticks = make(target);
    }
    ticks
}

/// Keeps every `every`-th label of fixed ticks (the others become unlabelled ticks).
fn thin_labels(ticks: &mut [Tick], every: usize) {
    if every > 1 {
        for (i, t) in ticks.iter_mut().enumerate() {
            if i % every != 0 {
                t.label = None;
            }
        }
    }
}

fn legend_size(entries: &[LegendEntry]) -> (f64, f64) {
    let swatch = if entries.iter().any(|e| e.swatch == Swatch::Line) { 22.0 } else { 12.0 };
    let text = entries.iter().map(|e| text_width(&e.name, LEGEND_SIZE)).fold(0.0, f64::max);
    (8.0 + swatch + 6.0 + text + 8.0, 8.0 + entries.len() as f64 * LEGEND_ROW + 2.0)
}

impl Chart {
    /// Lays the chart out. `occupied` are data points (x, y) the legend should not cover.
    pub fn layout(&self, occupied: &[(f64, f64)]) -> Layout {
        let (w, h) = (f64::from(self.width), f64::from(self.height));
        let top = if self.title.is_empty() { MARGIN + TICK_SIZE / 2.0 } else { MARGIN + TITLE_SIZE + 12.0 };
        let x_label_h = if self.x.label.is_empty() { 0.0 } else { LABEL_SIZE + 6.0 };
        let y_label_w = if self.y.label.is_empty() { 0.0 } else { LABEL_SIZE + 8.0 };
        let base_bottom = MARGIN + x_label_h + TICK_LEN + 4.0 + TICK_SIZE;
        let right_margin = MARGIN + 14.0;

        // The y ticks decide the left margin, which decides the plot width, which decides
        // whether category labels must rotate, which changes the plot height: two passes.
        let mut bottom_margin = base_bottom;
        let mut x_rotated = false;
        let mut x_thin = 1;
        let (mut left, mut y_ticks) = (0.0, Vec::new());
        for _ in 0..2 {
            let plot_h = (h - top - bottom_margin).max(20.0);
            y_ticks = choose_ticks(&self.y, plot_h, false);
            left = MARGIN + y_label_w + max_label_width(&y_ticks, TICK_SIZE) + TICK_LEN + 4.0;
            let plot_w = (w - left - right_margin).max(20.0);
            if let Some(fixed) = &self.x.ticks {
                // Category labels: horizontal if they fit side by side, else rotated; thinned
                // when even rotated labels would overlap.
                let n = fixed.len().max(1) as f64;
                let slot = plot_w / n;
                let widest = max_label_width(fixed, TICK_SIZE);
                x_rotated = widest + 6.0 > slot;
                x_thin = if x_rotated { ((TICK_SIZE + 3.0) / slot).ceil().max(1.0) as usize } else { 1 };
                bottom_margin = if x_rotated {
                    let rad = ROTATION.to_radians();
                    // Very long labels are capped so the plot keeps at least half the height.
                    let drop = (widest * rad.sin() + TICK_SIZE * rad.cos()).min(h * 0.35);
                    MARGIN + x_label_h + TICK_LEN + 4.0 + drop
                } else {
                    base_bottom
                };
            }
        }
        let bottom = h - bottom_margin;
        let mut right = w - right_margin;

        // The legend goes in the corner of the plot that covers the fewest data points; if
        // every corner covers some and there is room, beside the plot instead.
        let legend_size = legend_size(&self.legend);
        let mut legend_at = None;
        if !self.legend.is_empty() {
            let (lw, lh) = legend_size;
            let plot_w = right - left;
            let corners = [
                (right - LEGEND_INSET - lw, top + LEGEND_INSET),
                (left + LEGEND_INSET, top + LEGEND_INSET),
                (right - LEGEND_INSET - lw, bottom - LEGEND_INSET - lh),
                (left + LEGEND_INSET, bottom - LEGEND_INSET - lh),
            ];
            let px = |x: f64| left + self.x.scale.frac(x) * plot_w;
            let py = |y: f64| bottom - self.y.scale.frac(y) * (bottom - top);
            let covered = |(cx, cy): (f64, f64)| {
                occupied
                    .iter()
                    .filter(|&&(x, y)| {
                        let (x, y) = (px(x), py(y));
                        x >= cx - 4.0 && x <= cx + lw + 4.0 && y >= cy - 4.0 && y <= cy + lh + 4.0
                    })
                    .count()
            };
            let counts: Vec<usize> = corners.iter().map(|&c| covered(c)).collect();
            let best = (0..4).min_by_key(|&i| counts[i]).unwrap_or(0);
            let too_tall = lh > (bottom - top) - 2.0 * LEGEND_INSET;
            // Outside only if the plot keeps at least half its width (and 150 px).
            let room_outside = plot_w - lw - 16.0 >= (0.5 * plot_w).max(150.0);
            if (counts[best] > 0 || too_tall) && room_outside {
                right -= lw + 16.0;
                legend_at = Some((w - MARGIN - lw, top));
            } else {
                legend_at = Some(corners[best]);
            }
        }

        let mut x_ticks = choose_ticks(&self.x, right - left, true);
        thin_labels(&mut x_ticks, x_thin);
        Layout {
            left,
            top,
            right,
            bottom,
            x_scale: self.x.scale,
            y_scale: self.y.scale,
            x_ticks,
            y_ticks,
            x_rotated,
            legend_at,
            legend_size,
        }
    }
}

impl Layout {
    /// Pixel x of data value `x`.
    pub fn px(&self, x: f64) -> f64 {
        self.left + self.x_scale.frac(x) * (self.right - self.left)
    }

    /// Pixel y of data value `y`.
    pub fn py(&self, y: f64) -> f64 {
        self.bottom - self.y_scale.frac(y) * (self.bottom - self.top)
    }

    /// Whether pixel point (x, y) lies inside the plot rectangle (with half a pixel to spare).
    pub fn contains(&self, (x, y): (f64, f64)) -> bool {
        x >= self.left - 0.5 && x <= self.right + 0.5 && y >= self.top - 0.5 && y <= self.bottom + 0.5
    }

    /// The segment p0-p1 clipped to the plot rectangle (Liang-Barsky), or `None` if it lies
    /// outside. Endpoints inside are returned exactly as given.
    fn clip_segment(&self, p0: (f64, f64), p1: (f64, f64)) -> Option<((f64, f64), (f64, f64))> {
        let (dx, dy) = (p1.0 - p0.0, p1.1 - p0.1);
        let (mut t0, mut t1) = (0.0f64, 1.0f64);
        // Each edge as (-direction, distance to the edge): p0 + t*d stays inside while
        // t*p <= q.
        for (p, q) in [
            (-dx, p0.0 - (self.left - 0.5)),
            (dx, (self.right + 0.5) - p0.0),
            (-dy, p0.1 - (self.top - 0.5)),
            (dy, (self.bottom + 0.5) - p0.1),
        ] {
            if p == 0.0 {
                if q < 0.0 {
                    return None;
                }
            } else {
                let t = q / p;
                if p < 0.0 {
                    t0 = t0.max(t);
                } else {
                    t1 = t1.min(t);
                }
            }
        }
        if t0 > t1 {
            return None;
        }
        let at = |t: f64| (p0.0 + t * dx, p0.1 + t * dy);
        Some((if t0 == 0.0 { p0 } else { at(t0) }, if t1 == 1.0 { p1 } else { at(t1) }))
    }

    /// Clips a polyline (pixel points) to the plot rectangle: the pieces inside, each with at
    /// least two points. Data beyond a user-fixed range is cut at the frame this way rather
    /// than with an SVG clip path (see the `svg` module for why).
    pub fn clip_polyline(&self, points: &[(f64, f64)]) -> Vec<Vec<(f64, f64)>> {
        let mut runs = Vec::new();
        let mut cur: Vec<(f64, f64)> = Vec::new();
        for w in points.windows(2) {
            match self.clip_segment(w[0], w[1]) {
                None => {
                    if cur.len() > 1 {
                        runs.push(std::mem::take(&mut cur));
                    }
                    cur.clear();
                }
                Some((a, b)) => {
                    if cur.last() != Some(&a) {
                        if cur.len() > 1 {
                            runs.push(std::mem::take(&mut cur));
                        }
                        cur = vec![a];
                    }
                    cur.push(b);
                    if b != w[1] {
                        // The line leaves the plot here.
                        runs.push(std::mem::take(&mut cur));
                    }
                }
            }
        }
        if cur.len() > 1 {
            runs.push(cur);
        }
        runs
    }

    /// Starts the document: background, title and grid. The caller then draws its data, clipped
    /// to the plot rectangle with [`contains`](Self::contains) and
    /// [`clip_polyline`](Self::clip_polyline).
    pub fn begin(&self, chart: &Chart) -> Svg {
        let mut svg = Svg::new(chart.width, chart.height);
        if !chart.title.is_empty() {
            let tw = super::svg::text_width(&chart.title, TITLE_SIZE);
            let w = f64::from(chart.width);
            // Centred over the plot, but kept inside the figure when the title is long.
            let cx = ((self.left + self.right) / 2.0).clamp(MARGIN + tw / 2.0, (w - MARGIN - tw / 2.0).max(MARGIN));
            svg.text(
                cx,
                MARGIN + TITLE_SIZE / 2.0,
                &chart.title,
                TextStyle::new(TITLE_SIZE).bold(),
                r#"class="title""#,
            );
        }
        svg.open_group(r#"class="grid" shape-rendering="crispEdges""#);
        // Minor lines first so major ones draw over them.
        for minor in [true, false] {
            let color = if minor { MINOR_GRID_COLOR } else { GRID_COLOR }.hex();
            if chart.x.grid {
                for t in self.x_ticks.iter().filter(|t| t.label.is_none() == minor) {
                    let x = self.px(t.value);
                    svg.line(x, self.top, x, self.bottom, &color, 1.0);
                }
            }
            if chart.y.grid {
                for t in self.y_ticks.iter().filter(|t| t.label.is_none() == minor) {
                    let y = self.py(t.value);
                    svg.line(self.left, y, self.right, y, &color, 1.0);
                }
            }
        }
        svg.close_group();
        svg
    }

    /// Closes the plot area and draws the frame, ticks, axis labels and legend on top.
    pub fn finish(&self, chart: &Chart, mut svg: Svg) -> String {
        let axis = AXIS_COLOR.hex();
        svg.rect(
            self.left,
            self.top,
            self.right - self.left,
            self.bottom - self.top,
            "none",
            &format!(r#"class="frame" stroke="{axis}" stroke-width="1" shape-rendering="crispEdges""#),
        );
        let w = f64::from(chart.width);
        let tick_style = TextStyle::new(TICK_SIZE);
        for t in &self.x_ticks {
            let x = self.px(t.value);
            if !(x.is_finite() && x >= self.left - 0.5 && x <= self.right + 0.5) {
                continue;
            }
            let Some(label) = &t.label else { continue };
            svg.line(x, self.bottom, x, self.bottom + TICK_LEN, &axis, 1.0);
            let y = self.bottom + TICK_LEN + 4.0 + TICK_SIZE / 2.0;
            if self.x_rotated {
                svg.text(x + 3.0, y, label, tick_style.anchor(Anchor::End).rotate(-ROTATION), r#"class="tick-x""#);
            } else {
                // Keep the last label inside the figure.
                let half = text_width(label, TICK_SIZE) / 2.0;
                let x = x.min(w - 2.0 - half);
                svg.text(x, y, label, tick_style, r#"class="tick-x""#);
            }
        }
        for t in &self.y_ticks {
            let y = self.py(t.value);
            if !(y.is_finite() && y >= self.top - 0.5 && y <= self.bottom + 0.5) {
                continue;
            }
            let Some(label) = &t.label else { continue };
            svg.line(self.left - TICK_LEN, y, self.left, y, &axis, 1.0);
            svg.text(self.left - TICK_LEN - 4.0, y, label, tick_style.anchor(Anchor::End), r#"class="tick-y""#);
        }
        let h = f64::from(chart.height);
        if !chart.x.label.is_empty() {
            let cx = (self.left + self.right) / 2.0;
            svg.text(
                cx,
                h - MARGIN - LABEL_SIZE / 2.0,
                &chart.x.label,
                TextStyle::new(LABEL_SIZE),
                r#"class="x-label""#,
            );
        }
        if !chart.y.label.is_empty() {
            let cy = (self.top + self.bottom) / 2.0;
            let style = TextStyle::new(LABEL_SIZE).rotate(-90.0);
            svg.text(MARGIN + LABEL_SIZE / 2.0, cy, &chart.y.label, style, r#"class="y-label""#);
        }
        if let Some((lx, ly)) = self.legend_at {
            draw_legend(&mut svg, &chart.legend, lx, ly, self.legend_size);
        }
        svg.finish()
    }
}

fn draw_legend(svg: &mut Svg, entries: &[LegendEntry], x: f64, y: f64, (w, h): (f64, f64)) {
    svg.open_group(r#"class="legend""#);
    svg.rect(x, y, w, h, "white", r##"fill-opacity="0.85" stroke="#cccccc" stroke-width="1" rx="3""##);
    let swatch = if entries.iter().any(|e| e.swatch == Swatch::Line) { 22.0 } else { 12.0 };
    for (i, e) in entries.iter().enumerate() {
        let cy = y + 5.0 + LEGEND_ROW / 2.0 + i as f64 * LEGEND_ROW;
        let color = e.color.hex();
        let sx = x + 8.0;
        match e.swatch {
            Swatch::Line => svg.line(sx, cy, sx + swatch, cy, &color, 2.5),
            Swatch::Marker => svg.circle(sx + swatch / 2.0, cy, 4.5, &color, ""),
            Swatch::Block => svg.rect(sx + swatch / 2.0 - 5.0, cy - 5.0, 10.0, 10.0, &color, ""),
        }
        let style = TextStyle::new(LEGEND_SIZE).anchor(Anchor::Start);
        svg.text(sx + swatch + 6.0, cy, &e.name, style, r#"class="legend-label""#);
    }
    svg.close_group();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(ticks: &[Tick]) -> Vec<String> {
        ticks.iter().filter_map(|t| t.label.clone()).collect()
    }

    #[test]
    fn nice_steps() {
        let close = |a: f64, b: f64| (a - b).abs() < 1e-12 * b.abs();
        assert!(close(nice_step(10.0, 5), 2.0));
        assert!(close(nice_step(1.0, 10), 0.1));
        assert!(close(nice_step(700.0, 7), 100.0));
        assert!(close(nice_step(0.03, 6), 0.005));
    }

    #[test]
    fn linear_ticks_are_round_and_inside() {
        let t = linear_ticks(-0.13, 1.07, 6);
        assert_eq!(labels(&t), ["0.0", "0.2", "0.4", "0.6", "0.8", "1.0"]);
        let t = linear_ticks(0.0, 1000.0, 5);
        assert_eq!(labels(&t), ["0", "200", "400", "600", "800", "1000"]);
        let t = linear_ticks(0.0, 3.0e6, 3);
        assert_eq!(labels(&t), ["0", "1e6", "2e6", "3e6"]);
        assert!(linear_ticks(2.0, 2.5, 4).iter().all(|t| (2.0..=2.5).contains(&t.value)));
    }

    #[test]
    fn log_ticks_label_decades_or_multiples() {
        // Five decades: labels at powers of ten, minor lines between.
        let t = log_ticks(1e-4, 10.0, 6);
        assert_eq!(labels(&t), ["1e-4", "0.001", "0.01", "0.1", "1", "10"]);
        assert!(t.iter().any(|t| t.label.is_none() && (t.value - 0.02).abs() < 1e-12));
        // Less than a decade: 1-2-5 or every multiple.
        let t = log_ticks(0.15, 2.5, 6);
        assert_eq!(labels(&t), ["0.2", "0.5", "1", "2"]);
        // Many decades: every other one labelled.
        let t = log_ticks(1e-10, 1e10, 6);
        let l = labels(&t);
        assert!(l.len() <= 7 && l.contains(&"1".to_string()), "{l:?}");
        assert!(l.contains(&"1e-8".to_string()), "{l:?}");
        // Too narrow for two multiples: linear ticks.
        let t = log_ticks(0.31, 0.39, 4);
        assert!(labels(&t).len() >= 2);
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
    fn polylines_are_clipped_to_the_plot() {
        let chart = Chart {
            width: 400,
            height: 300,
            title: String::new(),
            x: Axis::new(0.0, 1.0, false, ""),
            y: Axis::new(0.0, 1.0, false, ""),
            legend: Vec::new(),
        };
        let l = chart.layout(&[]);
        let (left, right) = (l.left, l.right);
        let mid = (l.top + l.bottom) / 2.0;
        // In, out, back in: two pieces, cut at the right edge.
        let pts = [(left + 10.0, mid), (right + 50.0, mid), (right + 60.0, mid + 5.0), (right - 10.0, mid + 5.0)];
        let runs = l.clip_polyline(&pts);
        assert_eq!(runs.len(), 2, "{runs:?}");
        assert_eq!(runs[0][0], pts[0]);
        assert!((runs[0][1].0 - (right + 0.5)).abs() < 1e-9);
        assert_eq!(runs[1].last(), Some(&pts[3]));
        // Entirely outside: nothing.
        assert!(l.clip_polyline(&[(0.0, 0.0), (1.0, 1.0)]).is_empty());
        // Entirely inside: unchanged.
        let inside = [(left + 1.0, mid), (left + 2.0, mid + 1.0), (left + 3.0, mid)];
        assert_eq!(l.clip_polyline(&inside), vec![inside.to_vec()]);
        assert!(l.contains((left + 1.0, mid)) && !l.contains((right + 2.0, mid)));
    }

    #[test]
    fn legend_avoids_the_data() {
        let chart = Chart {
            width: 640,
            height: 400,
            title: "t".into(),
            x: Axis::new(0.0, 1.0, false, "x"),
            y: Axis::new(0.0, 1.0, false, "y"),
            legend: vec![LegendEntry { name: "series".into(), color: Rgb(0, 0, 0), swatch: Swatch::Line }],
        };
        // Data crowds the upper-right corner: the legend goes elsewhere, inside the plot.
        let pts: Vec<(f64, f64)> = (0..50).map(|i| (0.9 + i as f64 * 0.002, 0.95)).collect();
        let l = chart.layout(&pts);
        let (lx, _) = l.legend_at.expect("legend");
        assert!(lx < (l.left + l.right) / 2.0, "legend at {lx}");
        // Data everywhere: the legend moves outside, right of the plot.
        let grid: Vec<(f64, f64)> =
            (0..=20).flat_map(|i| (0..=20).map(move |j| (i as f64 / 20.0, j as f64 / 20.0))).collect();
        let l = chart.layout(&grid);
        let (lx, _) = l.legend_at.expect("legend");
        assert!(lx > l.right, "legend at {lx}, plot ends at {}", l.right);
    }
}
