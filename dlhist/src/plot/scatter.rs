//! Scatter plots: 2-D points, either as named series ([`ScatterPlot`]) or coloured by class
//! label over the decision regions of a classifier ([`DecisionPlot`]), the classic picture of
//! what a perceptron or an MLP has learned on two moons or spirals.
//!
//! Decision regions are evaluated on a regular grid covering the plot: the caller's closure
//! gets all grid points at once as an `[M, 2]` tensor (one forward pass, not M), and each grid
//! row is drawn as runs of equal class merged into one rectangle, so a 200 x 200 grid of a
//! smooth boundary costs a few hundred rectangles, not 40 000.

use candle_core::{DType, Tensor};

use plotters::prelude::{Circle, Color, RGBColor, Rectangle};

use super::axes::{auto_range, AxisChart, LegendEntry, Scale, Swatch};
use super::{class_ids, palette, shape_str, Figure, IntoValues, Rgb, HEIGHT, WIDTH};
use crate::{Error, Result};

/// Marker radius in pixels: smaller when there are many points, so clouds stay readable.
fn marker_radius(n: usize) -> i32 {
    if n > 2000 {
        2
    } else if n > 500 {
        3
    } else {
        4
    }
}

/// A plain scatter plot of one or more named point sets.
///
/// ```
/// use dlhist::plot::ScatterPlot;
/// let fig = ScatterPlot::new("Two clusters")
///     .series("a", [0.0, 0.2, 0.1], [0.0, 0.1, 0.3])
///     .series("b", [1.0, 1.2, 0.9], [1.0, 0.8, 1.1])
///     .render()?;
/// assert!(fig.svg().contains("Two clusters"));
/// # Ok::<(), dlhist::Error>(())
/// ```
#[derive(Debug)]
pub struct ScatterPlot {
    title: String,
    x_label: String,
    y_label: String,
    size: (u32, u32),
    series: Vec<NamedPoints>,
}

/// A series as given: its name and coordinates, or the error met reading them (reported by
/// `render`, so the builder chain stays free of `?`).
type NamedPoints = (String, Result<Vec<f64>>, Result<Vec<f64>>);

impl ScatterPlot {
    /// A scatter plot titled `title` (may be empty), with no points yet.
    pub fn new(title: impl Into<String>) -> Self {
        ScatterPlot {
            title: title.into(),
            x_label: String::new(),
            y_label: String::new(),
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

    /// Figure size in pixels (default 640 x 400).
    pub fn size(mut self, width: u32, height: u32) -> Self {
        self.size = (width, height);
        self
    }

    /// Adds the points `(xs[i], ys[i])` in the next palette colour. An empty `name` leaves
    /// them out of the legend.
    pub fn series(mut self, name: impl Into<String>, xs: impl IntoValues, ys: impl IntoValues) -> Self {
        self.series.push((name.into(), xs.into_values(), ys.into_values()));
        self
    }

    /// Draws the plot. Non-finite points are skipped; errors if there is no series, a series'
    /// lengths differ, or no point is finite.
    pub fn render(self) -> Result<Figure> {
        let what = super::describe("ScatterPlot", &self.title);
        super::check_size(&what, self.size)?;
        if self.series.is_empty() {
            return Err(Error::Invalid(format!("{what} has no points; add some with .series(name, xs, ys)")));
        }
        let mut groups = Vec::new();
        let mut legend = Vec::new();
        for (i, (name, xs, ys)) in self.series.into_iter().enumerate() {
            let (xs, ys) = (xs?, ys?);
            if xs.len() != ys.len() {
                return Err(Error::Invalid(format!(
                    "{what}: series \"{name}\" has {} x values but {} y values; they must pair up",
                    xs.len(),
                    ys.len()
                )));
            }
            let pts: Vec<(f64, f64)> = xs.into_iter().zip(ys).filter(|(x, y)| x.is_finite() && y.is_finite()).collect();
            if !name.is_empty() {
                legend.push(LegendEntry { name, color: palette(i), swatch: Swatch::Marker });
            }
            groups.push((palette(i), pts));
        }
        let all: Vec<(f64, f64)> = groups.iter().flat_map(|g| g.1.iter().copied()).collect();
        let none = || Error::Plot(format!("{what}: nothing to draw; every point has a NaN or infinite coordinate"));
        let (x0, x1) = auto_range(all.iter().map(|p| p.0), false, 0.05).ok_or_else(none)?;
        let (y0, y1) = auto_range(all.iter().map(|p| p.1), false, 0.05).ok_or_else(none)?;
        let points: Vec<(Rgb, (f64, f64))> =
            groups.iter().flat_map(|(c, pts)| pts.iter().map(move |&p| (*c, p))).collect();
        let labels = Labels { what: &what, title: &self.title, x_label: &self.x_label, y_label: &self.y_label };
        draw(labels, self.size, ((x0, x1), (y0, y1)), legend, &points, None)
    }
}

/// The closure that classifies grid points.
type Classifier<'a> = Box<dyn FnMut(&Tensor) -> Result<Tensor> + 'a>;

/// 2-D points coloured by class, optionally over the decision regions of a classifier.
///
/// ```
/// use candle_core::{Device, Tensor};
/// use dlhist::plot::DecisionPlot;
/// let dev = Device::Cpu;
/// let points = Tensor::new(&[[-1f32, -1.0], [-0.5, -1.2], [1.0, 0.8], [1.2, 1.1]], &dev)?;
/// let labels = Tensor::new(&[0u32, 0, 1, 1], &dev)?;
/// // A linear classifier: class 1 where x + y > 0. Any model's forward pass fits here.
/// let fig = DecisionPlot::new(&points, &labels)
///     .title("A linear boundary")
///     .class_names(["negative", "positive"])
///     .regions(|grid: &Tensor| grid.sum(1)?.gt(0f32), 100)
///     .render()?;
/// assert!(fig.svg().contains("positive"));
/// # Ok::<(), dlhist::Error>(())
/// ```
pub struct DecisionPlot<'a> {
    points: Tensor,
    labels: Tensor,
    title: String,
    x_label: String,
    y_label: String,
    class_names: Vec<String>,
    size: (u32, u32),
    regions: Option<(Classifier<'a>, usize)>,
}

impl std::fmt::Debug for DecisionPlot<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecisionPlot")
            .field("points", &self.points.dims())
            .field("labels", &self.labels.dims())
            .field("title", &self.title)
            .field("regions", &self.regions.as_ref().map(|r| r.1))
            .finish()
    }
}

impl<'a> DecisionPlot<'a> {
    /// Points `[N, 2]` (any float or integer dtype) and their labels: `[N]` class ids (any
    /// integer dtype, or floats holding whole numbers) or `[N, C]` scores / one-hot rows.
    pub fn new(points: &Tensor, labels: &Tensor) -> Self {
        DecisionPlot {
            points: points.clone(),
            labels: labels.clone(),
            title: String::new(),
            x_label: String::new(),
            y_label: String::new(),
            class_names: Vec::new(),
            size: (WIDTH, HEIGHT),
            regions: None,
        }
    }

    /// Title above the plot.
    pub fn title(mut self, title: impl Into<String>) -> Self {
        self.title = title.into();
        self
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

    /// Names for the legend, by class id (default "class 0", "class 1", ...).
    pub fn class_names<S: ToString>(mut self, names: impl IntoIterator<Item = S>) -> Self {
        self.class_names = super::strings(names);
        self
    }

    /// Figure size in pixels (default 640 x 400).
    pub fn size(mut self, width: u32, height: u32) -> Self {
        self.size = (width, height);
        self
    }

    /// Shades the background by the class `classify` assigns, on a `resolution` x
    /// `resolution` grid spanning the plot (100 is smooth enough for most boundaries).
    ///
    /// `classify` gets all grid points at once as an `[M, 2]` f32 tensor on the points'
    /// device (M = resolution²) and returns one of:
    /// - `[M]` class ids (any dtype; floats are rounded),
    /// - `[M, 1]` the probability of class 1 (class 1 where it is above 0.5; apply a sigmoid
    ///   to logits first),
    /// - `[M, C]` scores, logits or probabilities (the argmax is the class).
    pub fn regions<F, E>(mut self, mut classify: F, resolution: usize) -> Self
    where
        F: FnMut(&Tensor) -> std::result::Result<Tensor, E> + 'a,
        E: Into<Error>,
    {
        self.regions = Some((Box::new(move |g: &Tensor| classify(g).map_err(Into::into)), resolution));
        self
    }

    /// Draws the plot.
    ///
    /// Errors if `points` is not `[N, 2]`, if the labels do not match it, if no point is
    /// finite, or if the classifier fails or returns an unexpected shape.
    pub fn render(self) -> Result<Figure> {
        super::check_size(&super::describe("DecisionPlot", &self.title), self.size)?;
        let n = match self.points.dims() {
            [n, 2] if *n > 0 => *n,
            dims => {
                return Err(Error::Invalid(format!(
                    "DecisionPlot expects points of shape [N, 2] with N > 0; got {}",
                    shape_str(dims)
                )))
            }
        };
        let labels = class_ids(&self.labels, "DecisionPlot labels")?;
        if labels.len() != n {
            return Err(Error::Invalid(format!(
                "DecisionPlot: points has {n} rows but labels has {} entries (shape {}); one label per point",
                labels.len(),
                shape_str(self.labels.dims())
            )));
        }
        let xy = self.points.to_dtype(DType::F64)?.to_vec2::<f64>()?;
        let mut pts = Vec::with_capacity(n);
        let mut colored = Vec::with_capacity(n);
        for (row, &label) in xy.iter().zip(&labels) {
            let p = (row[0], row[1]);
            if p.0.is_finite() && p.1.is_finite() {
                pts.push(p);
                colored.push((palette(label), p));
            }
        }
        let none = || Error::Plot("DecisionPlot: nothing to draw; every point has a NaN or infinite coordinate".into());
        // A wider margin than plain scatter plots: the regions around the data are the point.
        let (x0, x1) = auto_range(pts.iter().map(|p| p.0), false, 0.1).ok_or_else(none)?;
        let (y0, y1) = auto_range(pts.iter().map(|p| p.1), false, 0.1).ok_or_else(none)?;

        let grid = match self.regions {
            Some((mut classify, res)) => {
                Some(classify_grid(&mut classify, res, (x0, x1), (y0, y1), self.points.device())?)
            }
            None => None,
        };

        let mut classes: Vec<usize> = labels.clone();
        classes.sort_unstable();
        classes.dedup();
        let legend = classes
            .iter()
            .map(|&k| LegendEntry {
                name: self.class_names.get(k).cloned().unwrap_or_else(|| format!("class {k}")),
                color: palette(k),
                swatch: Swatch::Marker,
            })
            .collect();
        let labels =
            Labels { what: "DecisionPlot", title: &self.title, x_label: &self.x_label, y_label: &self.y_label };
        draw(labels, self.size, ((x0, x1), (y0, y1)), legend, &colored, grid.as_ref())
    }
}

/// Classes on a `res` x `res` grid over the plot, row 0 at the top.
struct RegionGrid {
    res: usize,
    x: (f64, f64),
    y: (f64, f64),
    classes: Vec<usize>,
}

fn classify_grid(
    classify: &mut Classifier<'_>,
    res: usize,
    x: (f64, f64),
    y: (f64, f64),
    device: &candle_core::Device,
) -> Result<RegionGrid> {
    if !(2..=1000).contains(&res) {
        return Err(Error::Invalid(format!(
            "DecisionPlot::regions: resolution must be between 2 and 1000 grid cells per side; got {res}"
        )));
    }
    let m = res * res;
    let mut coords = Vec::with_capacity(2 * m);
    for i in 0..res {
        // Cell centres, top row first (screen order).
        let gy = y.1 - (i as f64 + 0.5) * (y.1 - y.0) / res as f64;
        for j in 0..res {
            let gx = x.0 + (j as f64 + 0.5) * (x.1 - x.0) / res as f64;
            coords.push(gx as f32);
            coords.push(gy as f32);
        }
    }
    let grid = Tensor::from_vec(coords, (m, 2), device)?;
    let out = classify(&grid)?;
    let bad_shape = || {
        Error::Invalid(format!(
            "DecisionPlot::regions: the classifier returned shape {} for {m} grid points; expected [{m}] class ids, \
             [{m}, 1] probabilities of class 1, or [{m}, C] class scores",
            shape_str(out.dims())
        ))
    };
    let classes = match out.dims() {
        [k] if *k == m => super::tensor_values(&out)?
            .into_iter()
            .map(|v| if v.is_finite() && v > 0.0 { v.round() as usize } else { 0 })
            .collect(),
        [k, 1] if *k == m => super::tensor_values(&out)?.into_iter().map(|p| usize::from(p > 0.5)).collect(),
        [k, c] if *k == m && *c > 1 => class_ids(&out, "DecisionPlot::regions output")?,
        _ => return Err(bad_shape()),
    };
    Ok(RegionGrid { res, x, y, classes })
}

/// The texts around a scatter plot.
struct Labels<'s> {
    what: &'s str,
    title: &'s str,
    x_label: &'s str,
    y_label: &'s str,
}

/// The pale tint of class `k` that shades its decision region, so the points on top stay
/// visible.
fn region_color(k: usize) -> Rgb {
    palette(k).mix(Rgb(255, 255, 255), 0.72)
}

fn draw(
    labels: Labels<'_>,
    size: (u32, u32),
    (xr, yr): ((f64, f64), (f64, f64)),
    legend: Vec<LegendEntry>,
    points: &[(Rgb, (f64, f64))],
    grid: Option<&RegionGrid>,
) -> Result<Figure> {
    let chart = AxisChart {
        what: labels.what,
        size,
        title: labels.title,
        x_label: labels.x_label,
        y_label: labels.y_label,
        x: Scale::linear(xr.0, xr.1),
        y: Scale::linear(yr.0, yr.1),
        x_grid: true,
        legend,
    };
    let occupied: Vec<(f64, f64)> = points.iter().map(|p| p.1).collect();
    let r = marker_radius(points.len());
    let svg = chart.render(&occupied, |chart| {
        if let Some(g) = grid {
            // Each grid row is drawn as runs of equal class, one rectangle per run: a smooth
            // boundary on a 200 x 200 grid costs a few hundred rectangles, not 40 000.
            let (dx, dy) = ((g.x.1 - g.x.0) / g.res as f64, (g.y.1 - g.y.0) / g.res as f64);
            let mut runs = Vec::new();
            for (i, row) in g.classes.chunks(g.res).enumerate() {
                // Neighbouring runs and rows share their edge values exactly, so plotters maps
                // them to the same pixel and no seam shows.
                let (top, bottom) = (g.y.1 - i as f64 * dy, g.y.1 - (i + 1) as f64 * dy);
                let mut j = 0;
                while j < g.res {
                    let (k, start) = (row[j], j);
                    while j < g.res && row[j] == k {
                        j += 1;
                    }
                    let (left, right) = (g.x.0 + start as f64 * dx, g.x.0 + j as f64 * dx);
                    runs.push(Rectangle::new([(left, top), (right, bottom)], RGBColor::from(region_color(k)).filled()));
                }
            }
            chart.draw_series(runs)?;
        }
        chart.draw_series(points.iter().map(|&(c, p)| Circle::new(p, r, RGBColor::from(c).filled())))?;
        Ok(())
    })?;
    Ok(Figure::new(svg, size.0, size.1, labels.title))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plot::test_util::*;

    fn moons(n: usize) -> (Tensor, Tensor) {
        let mut xy = Vec::new();
        let mut y = Vec::new();
        for i in 0..n {
            let t = std::f32::consts::PI * i as f32 / n as f32;
            if i % 2 == 0 {
                xy.extend([t.cos(), t.sin()]);
                y.push(0u32);
            } else {
                xy.extend([1.0 - t.cos(), 0.5 - t.sin()]);
                y.push(1u32);
            }
        }
        let dev = crate::device::test_device();
        (Tensor::from_vec(xy, (n, 2), &dev).expect("points"), Tensor::from_vec(y, n, &dev).expect("labels"))
    }

    #[test]
    fn decision_plot_draws_every_point_and_regions() {
        let (x, y) = moons(60);
        let fig = DecisionPlot::new(&x, &y)
            .title("Two moons")
            .class_names(["upper", "lower"])
            .regions(|g: &Tensor| g.narrow(1, 1, 1)?.squeeze(1)?.lt(0.25f32), 50)
            .render()
            .expect("renders");
        let svg = fig.svg();
        let r = marker_radius(60);
        assert_eq!(circles(svg, palette(0), r) + circles(svg, palette(1), r), 60);
        // A horizontal boundary: one run per grid row (each row is one class), both classes.
        let (upper, lower) = (rects(svg, region_color(0)), rects(svg, region_color(1)));
        assert_eq!(upper + lower, 50);
        assert!(upper > 0 && lower > 0, "{upper} {lower}");
        assert_eq!(legend_labels(svg), ["upper", "lower"]);
        assert!(texts(svg).contains(&"Two moons".to_string()));
    }

    #[test]
    fn regions_accept_scores_and_probabilities() {
        let (x, y) = moons(20);
        // [M, 2] scores: class 1 on the right half.
        let scores = |g: &Tensor| -> candle_core::Result<Tensor> {
            let gx = g.narrow(1, 0, 1)?;
            Tensor::cat(&[gx.neg()?, gx], 1)
        };
        let regions = |fig: &Figure| rects(fig.svg(), region_color(0)) + rects(fig.svg(), region_color(1));
        let fig = DecisionPlot::new(&x, &y).regions(scores, 10).render().expect("scores");
        // A vertical boundary: two runs per row.
        assert_eq!(regions(&fig), 20);
        // [M, 1] probabilities.
        let prob = |g: &Tensor| candle_nn::ops::sigmoid(&g.narrow(1, 0, 1)?);
        let fig = DecisionPlot::new(&x, &y).regions(prob, 10).render().expect("probabilities");
        assert_eq!(regions(&fig), 20);
    }

    #[test]
    fn shape_errors_are_errors() {
        let dev = crate::device::test_device();
        let bad = Tensor::zeros((5, 3), DType::F32, &dev).expect("tensor");
        let y = Tensor::zeros(5, DType::U32, &dev).expect("tensor");
        let err = DecisionPlot::new(&bad, &y).render().expect_err("[5,3] points");
        assert!(err.to_string().contains("[N, 2]") && err.to_string().contains("[5, 3]"), "{err}");
        let (x, _) = moons(6);
        let err = DecisionPlot::new(&x, &y).render().expect_err("label count");
        assert!(err.to_string().contains("6 rows but labels has 5"), "{err}");
        let (x, y) = moons(6);
        let err = DecisionPlot::new(&x, &y).regions(|g: &Tensor| g.sum_all(), 10).render().expect_err("scalar output");
        assert!(err.to_string().contains("[100]"), "{err}");
        let err = DecisionPlot::new(&x, &y).regions(|g: &Tensor| g.sum(1), 1).render().expect_err("resolution 1");
        assert!(err.to_string().contains("resolution"), "{err}");
    }

    #[test]
    fn plain_scatter_counts_and_legend() {
        let fig = ScatterPlot::new("s")
            .x_label("x1")
            .series("a", [0.0, 1.0, f64::NAN], [0.0, 1.0, 2.0])
            .series("", vec![2.0f32, 3.0], vec![1.0f32, 0.0])
            .render()
            .expect("renders");
        // The NaN point is skipped.
        assert_eq!(circles(fig.svg(), palette(0), marker_radius(4)), 2);
        assert_eq!(circles(fig.svg(), palette(1), marker_radius(4)), 2);
        assert_eq!(legend_labels(fig.svg()), ["a"]);
        assert!(ScatterPlot::new("s").render().is_err());
        assert!(ScatterPlot::new("s").series("a", [1.0], [1.0, 2.0]).render().is_err());
    }
}
