//! Line charts: training and validation curves, learning-rate schedules, anything that is a
//! sequence of (x, y) points. Several named series share the axes and a legend; either axis can
//! be logarithmic (loss curves usually read best with a log y axis).
//!
//! Non-finite points (NaN, ±inf, and values ≤ 0 on a log axis) are skipped and break the line
//! there, so a diverging run shows where it blew up instead of failing to plot.

use plotters::prelude::*;

use super::axes::{auto_range, clip_polyline, AxisChart, LegendEntry, Scale, Swatch};
use super::{palette, Figure, IntoValues, HEIGHT, WIDTH};
use crate::{Error, Result};

/// A series as given: names and values, or the error met reading them (reported by
/// [`LineChart::render`], so the builder chain stays free of `?`).
#[derive(Debug)]
struct Series {
    name: String,
    xs: Result<Vec<f64>>,
    ys: Result<Vec<f64>>,
}

/// A line chart builder.
///
/// ```
/// use dlhist::plot::LineChart;
/// let train = [2.3, 1.1, 0.62, 0.41, 0.33, 0.29];
/// let valid = [2.2, 1.2, 0.71, 0.55, 0.52, 0.53];
/// let fig = LineChart::new("Fashion-MNIST MLP")
///     .x_label("epoch")
///     .y_label("cross-entropy")
///     .log_y()
///     .series("train", 1..7, train)
///     .series("valid", 1..7, valid)
///     .render()?;
/// assert!(fig.svg().contains("valid"));
/// # Ok::<(), dlhist::Error>(())
/// ```
#[derive(Debug)]
pub struct LineChart {
    title: String,
    x_label: String,
    y_label: String,
    log_x: bool,
    log_y: bool,
    x_range: Option<(f64, f64)>,
    y_range: Option<(f64, f64)>,
    markers: bool,
    size: (u32, u32),
    series: Vec<Series>,
}

impl LineChart {
    /// A chart titled `title` (may be empty), with no series yet.
    pub fn new(title: impl Into<String>) -> Self {
        LineChart {
            title: title.into(),
            x_label: String::new(),
            y_label: String::new(),
            log_x: false,
            log_y: false,
            x_range: None,
            y_range: None,
            markers: false,
            size: (WIDTH, HEIGHT),
            series: Vec::new(),
        }
    }

    /// Label under the x axis.
    pub fn x_label(mut self, label: impl Into<String>) -> Self {
        self.x_label = label.into();
        self
    }

    /// Label beside the y axis.
    pub fn y_label(mut self, label: impl Into<String>) -> Self {
        self.y_label = label.into();
        self
    }

    /// Logarithmic x axis (points with x ≤ 0 are skipped).
    pub fn log_x(mut self) -> Self {
        self.log_x = true;
        self
    }

    /// Logarithmic y axis (points with y ≤ 0 are skipped).
    pub fn log_y(mut self) -> Self {
        self.log_y = true;
        self
    }

    /// Fixes the x range instead of fitting it to the data (what falls outside is clipped).
    pub fn x_range(mut self, lo: f64, hi: f64) -> Self {
        self.x_range = Some((lo, hi));
        self
    }

    /// Fixes the y range instead of fitting it to the data (what falls outside is clipped).
    pub fn y_range(mut self, lo: f64, hi: f64) -> Self {
        self.y_range = Some((lo, hi));
        self
    }

    /// Draws a marker at every point as well as the line (useful for a few points, e.g. one
    /// per epoch).
    pub fn markers(mut self) -> Self {
        self.markers = true;
        self
    }

    /// Figure size in pixels (default 640 x 400).
    pub fn size(mut self, width: u32, height: u32) -> Self {
        self.size = (width, height);
        self
    }

    /// Adds a series of points `(xs[i], ys[i])`. `xs` and `ys` can be vectors, slices or
    /// arrays of numbers, a `Range<usize>`, or tensors (flattened). An empty `name` leaves the
    /// series out of the legend.
    pub fn series(mut self, name: impl Into<String>, xs: impl IntoValues, ys: impl IntoValues) -> Self {
        self.series.push(Series { name: name.into(), xs: xs.into_values(), ys: ys.into_values() });
        self
    }

    /// Adds a series plotted against its index: `ys[i]` at x = i (a loss per step).
    pub fn series_y(mut self, name: impl Into<String>, ys: impl IntoValues) -> Self {
        let ys = ys.into_values();
        let xs = ys.as_ref().map(|v| (0..v.len()).map(|i| i as f64).collect()).map_err(|_| {
            // The real error is reported once, from `ys`.
            Error::Plot(String::new())
        });
        self.series.push(Series { name: name.into(), xs, ys });
        self
    }

    /// Draws the chart.
    ///
    /// Errors if there is no series, if a series' `xs` and `ys` differ in length, if a tensor
    /// could not be read, or if no point is finite (positive, on a log axis).
    pub fn render(self) -> Result<Figure> {
        let what = super::describe("LineChart", &self.title);
        super::check_size(&what, self.size)?;
        if self.series.is_empty() {
            return Err(Error::Invalid(format!("{what} has no series; add one with .series(name, xs, ys)")));
        }
        let ok = |v: f64, log: bool| v.is_finite() && (!log || v > 0.0);
        // Each series becomes runs of consecutive drawable points.
        let mut names = Vec::with_capacity(self.series.len());
        let mut runs: Vec<Vec<Vec<(f64, f64)>>> = Vec::with_capacity(self.series.len());
        for s in self.series {
            let ys = s.ys?;
            let xs = s.xs?;
            if xs.len() != ys.len() {
                return Err(Error::Invalid(format!(
                    "{what}: series \"{}\" has {} x values but {} y values; they must pair up",
                    s.name,
                    xs.len(),
                    ys.len()
                )));
            }
            let mut parts: Vec<Vec<(f64, f64)>> = vec![Vec::new()];
            for (x, y) in xs.into_iter().zip(ys) {
                if ok(x, self.log_x) && ok(y, self.log_y) {
                    if let Some(p) = parts.last_mut() {
                        p.push((x, y));
                    }
                } else if parts.last().is_some_and(|p| !p.is_empty()) {
                    parts.push(Vec::new());
                }
            }
            parts.retain(|p| !p.is_empty());
            runs.push(parts);
            names.push(s.name);
        }
        let all = || runs.iter().flatten().flatten().copied();
        let no_points = || {
            let need = match (self.log_x, self.log_y) {
                (false, false) => "a finite (x, y) point",
                (true, false) => "a point with finite y and positive x (the x axis is logarithmic)",
                (false, true) => "a point with finite x and positive y (the y axis is logarithmic)",
                (true, true) => "a point with positive x and y (both axes are logarithmic)",
            };
            Error::Plot(format!("{what}: nothing to draw; no series has {need}"))
        };
        let x_range = match self.x_range {
            Some(r) => check_range(r, self.log_x, &what, "x")?,
            None => auto_range(all().map(|p| p.0), self.log_x, 0.02).ok_or_else(no_points)?,
        };
        let y_range = match self.y_range {
            Some(r) => check_range(r, self.log_y, &what, "y")?,
            None => auto_range(all().map(|p| p.1), self.log_y, 0.05).ok_or_else(no_points)?,
        };
        let legend = names
            .iter()
            .enumerate()
            .filter(|(_, n)| !n.is_empty())
            .map(|(i, n)| LegendEntry { name: n.clone(), color: palette(i), swatch: Swatch::Line })
            .collect();
        let scale = |(lo, hi): (f64, f64), log: bool| if log { Scale::log(lo, hi) } else { Scale::linear(lo, hi) };
        let (x, y) = (scale(x_range, self.log_x), scale(y_range, self.log_y));
        let occupied = occupied(&x, &y, &runs);
        let log = (self.log_x, self.log_y);
        let markers = self.markers;
        let chart = AxisChart {
            what: &what,
            size: self.size,
            title: &self.title,
            x_label: &self.x_label,
            y_label: &self.y_label,
            x,
            y,
            x_grid: true,
            legend,
        };
        let inside =
            |&(x, y): &(f64, f64)| (x_range.0..=x_range.1).contains(&x) && (y_range.0..=y_range.1).contains(&y);
        let svg = chart.render(&occupied, |chart| {
            for (i, parts) in runs.iter().enumerate() {
                let color = RGBColor::from(palette(i));
                for part in parts {
                    if part.len() == 1 {
                        // A lone point has no line to show it: mark it.
                        chart.draw_series(
                            part.iter().filter(|p| inside(p)).map(|&p| Circle::new(p, 2, color.filled())),
                        )?;
                    }
                    // Cut where the line leaves a fixed range rather than let plotters flatten
                    // the part outside onto the frame.
                    for piece in clip_polyline(part, x_range, y_range, log) {
                        let piece = decimate(&piece, |p| chart.backend_coord(p));
                        chart.draw_series(LineSeries::new(piece, color.stroke_width(LINE_WIDTH)))?;
                    }
                    if markers {
                        chart.draw_series(
                            part.iter().filter(|p| inside(p)).map(|&p| Circle::new(p, MARKER_RADIUS, color.filled())),
                        )?;
                    }
                }
            }
            Ok(())
        })?;
        Ok(Figure::new(svg, self.size.0, self.size.1, &self.title))
    }
}

/// Stroke width of the lines, in pixels.
const LINE_WIDTH: u32 = 2;
/// Radius of the markers drawn by [`LineChart::markers`], in pixels.
const MARKER_RADIUS: i32 = 3;

/// Validates a user-given axis range.
fn check_range((lo, hi): (f64, f64), log: bool, what: &str, axis: &str) -> Result<(f64, f64)> {
    if !(lo.is_finite() && hi.is_finite() && lo < hi) {
        return Err(Error::Invalid(format!("{what}: {axis}_range({lo}, {hi}) must be finite with lo < hi")));
    }
    if log && lo <= 0.0 {
        return Err(Error::Invalid(format!(
            "{what}: {axis}_range({lo}, {hi}) starts at or below 0, which a logarithmic {axis} axis cannot show"
        )));
    }
    Ok((lo, hi))
}

/// Points along the lines (vertices and a few points between them) for the legend to avoid,
/// at most a few thousand.
fn occupied(x: &Scale, y: &Scale, runs: &[Vec<Vec<(f64, f64)>>]) -> Vec<(f64, f64)> {
    // Interpolating in axis fractions keeps the samples evenly spread on screen, on log axes
    // too; they are mapped back to data values through the same fractions.
    let mut out = Vec::new();
    for run in runs.iter().flatten() {
        let stride = (run.len() / 1000).max(1);
        let picked: Vec<(f64, f64)> = run.iter().step_by(stride).copied().collect();
        for w in picked.windows(2) {
            let ((x0, y0), (x1, y1)) = (w[0], w[1]);
            // About one sample per 1% of the plot along the segment, so long straight segments
            // (a few epochs across the whole width) cannot pass under the legend unseen.
            let (du, dv) = (x.frac(x1) - x.frac(x0), y.frac(y1) - y.frac(y0));
            let k = ((du.hypot(dv) * 100.0).ceil() as u32).clamp(1, 100);
            for j in 0..k {
                let t = f64::from(j) / f64::from(k);
                out.push((lerp(x0, x1, t, matches!(x, Scale::Log(_))), lerp(y0, y1, t, matches!(y, Scale::Log(_)))));
            }
        }
        if let Some(&last) = picked.last() {
            out.push(last);
        }
    }
    out
}

/// Interpolates between two data values, geometrically on a log axis, so samples are evenly
/// spread on screen.
fn lerp(a: f64, b: f64, t: f64, log: bool) -> f64 {
    if log {
        a * (b / a).powf(t)
    } else {
        a + (b - a) * t
    }
}

/// Thins a long run of points to at most four per pixel column (first, lowest, highest and
/// last of each column's consecutive points, as `pixel` maps them): the drawn line looks the
/// same and the SVG stays small even for 100k-step curves. Short runs are returned as they are.
fn decimate(points: &[(f64, f64)], pixel: impl Fn(&(f64, f64)) -> (i32, i32)) -> Vec<(f64, f64)> {
    let px: Vec<(i32, i32)> = points.iter().map(&pixel).collect();
    let columns = match (px.first(), px.last()) {
        (Some(a), Some(b)) => (a.0 - b.0).unsigned_abs() as usize + 1,
        _ => return Vec::new(),
    };
    if points.len() <= 2 * columns {
        return points.to_vec();
    }
    let mut out = Vec::new();
    let mut i = 0;
    while i < points.len() {
        let mut j = i;
        while j < points.len() && px[j].0 == px[i].0 {
            j += 1;
        }
        // Screen y grows downwards, but only which points are extreme matters.
        let group = i..j;
        let lo = group.clone().min_by_key(|&k| px[k].1).unwrap_or(i);
        let hi = group.clone().max_by_key(|&k| px[k].1).unwrap_or(i);
        let mut keep = vec![i, lo, hi, j - 1];
        keep.sort_unstable();
        keep.dedup();
        out.extend(keep.into_iter().map(|k| points[k]));
        i = j;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plot::test_util::*;

    /// The number of points of each line drawn in series colour `i`.
    fn line_points(svg: &str, i: usize) -> Vec<usize> {
        polylines(svg, palette(i), LINE_WIDTH).iter().map(|p| p.len()).collect()
    }

    #[test]
    fn renders_series_with_legend_and_labels() {
        let fig = LineChart::new("Training loss")
            .x_label("step")
            .y_label("loss")
            .series("train", 0..50, (0..50).map(|i| 1.0 / (i as f64 + 1.0)).collect::<Vec<_>>())
            .series_y("valid", (0..30).map(|i| 1.5 / (i as f64 + 1.0)).collect::<Vec<_>>())
            .render()
            .expect("renders");
        let svg = fig.svg();
        let texts = texts(svg);
        for want in ["Training loss", "step", "loss", "train", "valid"] {
            assert!(texts.iter().any(|t| t == want), "missing text {want:?} in {texts:?}");
        }
        assert_eq!(line_points(svg, 0), vec![50]);
        assert_eq!(line_points(svg, 1), vec![30]);
        assert_eq!(legend_labels(svg), ["train", "valid"]);
        // Each legend entry shows its colour as a line swatch.
        assert_eq!(polylines(svg, palette(1), 3).len(), 1);
        assert_eq!((fig.width(), fig.height()), (640, 400));
    }

    #[test]
    fn markers_match_points() {
        let fig =
            LineChart::new("m").series("a", [1.0, 2.0, 3.0], [3.0, 1.0, 2.0]).markers().render().expect("renders");
        assert_eq!(circles(fig.svg(), palette(0), MARKER_RADIUS), 3);
    }

    #[test]
    fn log_scale_changes_tick_labels() {
        let ys: Vec<f64> = (0..100).map(|i| 10f64.powf(-(i as f64) / 25.0)).collect();
        let lin = LineChart::new("lin").series_y("loss", &ys).render().expect("linear");
        let log = LineChart::new("log").series_y("loss", &ys).log_y().render().expect("log");
        let (lin_ticks, log_ticks) = (y_ticks(lin.svg()), y_ticks(log.svg()));
        assert_ne!(lin_ticks, log_ticks);
        assert!(log_ticks.contains(&"0.001".to_string()) && log_ticks.contains(&"0.1".to_string()), "{log_ticks:?}");
        assert!(lin_ticks.contains(&"0.2".to_string()), "{lin_ticks:?}");
        // Log x as well.
        let both = LineChart::new("").series("", [1.0, 10.0, 100.0], [1.0, 2.0, 3.0]).log_x().render().expect("log x");
        let x_ticks = x_ticks(both.svg());
        for want in ["1", "10", "100"] {
            assert!(x_ticks.contains(&want.to_string()), "{x_ticks:?}");
        }
        // Log spacing: 1-2-5 steps, never the evenly spaced 40 of a linear axis.
        assert!(!x_ticks.contains(&"40".to_string()), "{x_ticks:?}");
        // A loss curve spanning less than a decade still gets several labels.
        let short = LineChart::new("").series_y("", [2.3, 1.2, 0.6, 0.4, 0.3]).log_y().render().expect("short");
        assert!(y_ticks(short.svg()).len() >= 3, "{:?}", y_ticks(short.svg()));
    }

    #[test]
    fn legend_avoids_the_data() {
        // Where the legend's name is written, left or right of the plot's middle.
        let legend_on_right = |fig: &Figure| {
            let doc = parse(fig.svg());
            let name = doc
                .descendants()
                .find(|n| n.has_tag_name("text") && n.text().is_some_and(|t| t.trim() == "curve"))
                .and_then(|n| n.attribute("x").and_then(|x| x.parse::<f64>().ok()))
                .expect("legend name");
            let (fx, _, fw, _) = frame(fig.svg());
            name > fx + fw / 2.0
        };
        // A falling curve leaves the upper right free.
        let falling = LineChart::new("").series("curve", [0.0, 0.1, 1.0], [1.0, 0.1, 0.0]).render().expect("renders");
        assert!(legend_on_right(&falling));
        // A rising one fills it: the legend moves to the upper left, which is empty.
        let rising = LineChart::new("").series("curve", [0.0, 0.9, 1.0], [0.0, 0.1, 1.0]).render().expect("renders");
        assert!(!legend_on_right(&rising));
    }

    #[test]
    fn non_finite_points_break_the_line() {
        let fig = LineChart::new("nan")
            .series_y("a", [1.0, 2.0, f64::NAN, 3.0, 4.0, 5.0, f64::INFINITY])
            .render()
            .expect("renders");
        assert_eq!(line_points(fig.svg(), 0), vec![2, 3]);
        // On a log axis, zero and negative values are skipped too.
        let fig = LineChart::new("log").series_y("a", [1.0, 0.0, 0.5, 0.25]).log_y().render().expect("renders");
        assert_eq!(line_points(fig.svg(), 0), vec![2]);
        // The lone first point is marked instead.
        assert_eq!(circles(fig.svg(), palette(0), 2), 1);
    }

    #[test]
    fn errors_are_clear() {
        let err = LineChart::new("t").render().expect_err("no series");
        assert!(err.to_string().contains("no series"), "{err}");
        let err = LineChart::new("t").series("s", [1.0, 2.0], [1.0]).render().expect_err("length mismatch");
        assert!(err.to_string().contains("2 x values but 1 y values"), "{err}");
        let err = LineChart::new("t").series_y("s", [f64::NAN, f64::INFINITY]).render().expect_err("all NaN");
        assert!(matches!(err, Error::Plot(_)) && err.to_string().contains("nothing to draw"), "{err}");
        let err = LineChart::new("t").series_y("s", [-1.0, 0.0]).log_y().render().expect_err("log of negatives");
        assert!(err.to_string().contains("positive y"), "{err}");
        let err = LineChart::new("t").series_y("s", [1.0]).y_range(1.0, 0.0).render().expect_err("bad range");
        assert!(err.to_string().contains("lo < hi"), "{err}");
        let err = LineChart::new("").series_y("s", [1.0]).size(50, 50).render().expect_err("too small");
        assert!(err.to_string().starts_with("LineChart: size 50x50"), "{err}");
    }

    #[test]
    fn tensor_input() {
        let dev = crate::device::test_device();
        let t = candle_core::Tensor::new(&[3f32, 2.0, 1.0], &dev).expect("tensor");
        let fig = LineChart::new("t").series_y("loss", &t).render().expect("renders");
        assert_eq!(line_points(fig.svg(), 0), vec![3]);
    }

    #[test]
    fn long_series_are_decimated() {
        let ys: Vec<f64> = (0..100_000).map(|i| ((i as f64) * 0.01).sin()).collect();
        let fig = LineChart::new("long").series_y("", &ys).render().expect("renders");
        let n = line_points(fig.svg(), 0)[0];
        assert!(n < 4 * 640 && n > 500, "{n} points drawn");
        assert!(fig.svg().len() < 100_000, "{} bytes", fig.svg().len());
    }

    #[test]
    fn user_ranges_apply_and_clip() {
        let fig = LineChart::new("r").series_y("", [0.0, 1.0]).y_range(0.0, 100.0).render().expect("renders");
        assert!(y_ticks(fig.svg()).contains(&"100".to_string()));
        // The middle point is far above the range: the line is cut into two pieces at the frame,
        // and its marker is left out.
        let fig = LineChart::new("clip")
            .series_y("", [0.0, 0.5, 1000.0, 0.5, 0.0])
            .y_range(0.0, 1.0)
            .markers()
            .render()
            .expect("renders");
        assert_eq!(line_points(fig.svg(), 0), vec![3, 3]);
        assert_eq!(circles(fig.svg(), palette(0), MARKER_RADIUS), 4);
        // No point of the lines lies outside the plot: the cut ends on the frame.
        let top = polylines(fig.svg(), palette(0), LINE_WIDTH).iter().flatten().map(|p| p.1).fold(f64::MAX, f64::min);
        let frame_top = frame(fig.svg()).1;
        assert!(top >= frame_top, "line reaches y = {top}, above the frame at {frame_top}");
    }
}
