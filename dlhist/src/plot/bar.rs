//! Bar charts: one value per labelled category (test accuracy per model, per-class recall),
//! or several series side by side in groups (train vs test, one bar per run). Bars start at
//! zero, so negative values hang below a zero line.

use super::axes::{Axis, Chart, LegendEntry, Swatch, Tick};
use super::svg::{text_width, TextStyle};
use super::{palette, Figure, IntoValues, AXIS_COLOR, HEIGHT, TICK_SIZE, WIDTH};
use crate::{Error, Result};

/// Fraction of each category's slot covered by its bars (the rest separates categories).
const GROUP_WIDTH: f64 = 0.8;

/// A bar chart builder.
///
/// ```
/// use dlhist::plot::BarChart;
/// let fig = BarChart::new("Test accuracy")
///     .labels(["perceptron", "MLP", "CNN"])
///     .series("Fashion-MNIST", [0.81, 0.88, 0.91])
///     .series("MNIST", [0.92, 0.98, 0.99])
///     .y_label("accuracy")
///     .value_labels()
///     .render()?;
/// assert_eq!(fig.svg().matches(r#"class="bar""#).count(), 6);
/// # Ok::<(), dlhist::Error>(())
/// ```
#[derive(Debug)]
pub struct BarChart {
    title: String,
    x_label: String,
    y_label: String,
    labels: Vec<String>,
    series: Vec<(String, Result<Vec<f64>>)>,
    value_labels: bool,
    decimals: Option<usize>,
    y_range: Option<(f64, f64)>,
    size: (u32, u32),
}

impl BarChart {
    /// A bar chart titled `title` (may be empty), with no bars yet.
    pub fn new(title: impl Into<String>) -> Self {
        BarChart {
            title: title.into(),
            x_label: String::new(),
            y_label: String::new(),
            labels: Vec::new(),
            series: Vec::new(),
            value_labels: false,
            decimals: None,
            y_range: None,
            size: (WIDTH, HEIGHT),
        }
    }

    /// The category names, one per bar (or group of bars), left to right. Default: 0, 1, 2...
    pub fn labels<S: ToString>(mut self, labels: impl IntoIterator<Item = S>) -> Self {
        self.labels = super::strings(labels);
        self
    }

    /// Adds a series: one value per category. With several series the bars are grouped per
    /// category and a legend names the series.
    pub fn series(mut self, name: impl Into<String>, values: impl IntoValues) -> Self {
        self.series.push((name.into(), values.into_values()));
        self
    }

    /// Label under the category axis.
    pub fn x_label(mut self, label: impl Into<String>) -> Self {
        self.x_label = label.into();
        self
    }

    /// Label beside the value axis.
    pub fn y_label(mut self, label: impl Into<String>) -> Self {
        self.y_label = label.into();
        self
    }

    /// Writes each bar's value at its end.
    pub fn value_labels(mut self) -> Self {
        self.value_labels = true;
        self
    }

    /// Decimals of the value labels (default: 0 for whole numbers, otherwise about three
    /// significant digits).
    pub fn decimals(mut self, decimals: usize) -> Self {
        self.decimals = Some(decimals);
        self
    }

    /// Fixes the value axis range (default: from 0, or the lowest negative value, to a little
    /// above the highest value).
    pub fn y_range(mut self, lo: f64, hi: f64) -> Self {
        self.y_range = Some((lo, hi));
        self
    }

    /// Figure size in pixels (default 640 x 400).
    pub fn size(mut self, width: u32, height: u32) -> Self {
        self.size = (width, height);
        self
    }

    /// Draws the chart. Non-finite values leave their bar out.
    ///
    /// Errors if there is no series, if series lengths differ from each other or from the
    /// labels, or if a tensor cannot be read.
    pub fn render(self) -> Result<Figure> {
        let what = super::describe("BarChart", &self.title);
        super::check_size(&what, self.size)?;
        if self.series.is_empty() {
            return Err(Error::Invalid(format!("{what} has no bars; add values with .series(name, values)")));
        }
        let mut names = Vec::new();
        let mut series = Vec::new();
        for (name, values) in self.series {
            names.push(name);
            series.push(values?);
        }
        let n = if self.labels.is_empty() { series[0].len() } else { self.labels.len() };
        for (name, values) in names.iter().zip(&series) {
            if values.len() != n {
                return Err(Error::Invalid(format!(
                    "{what}: series \"{name}\" has {} values for {n} categories; give one value per category",
                    values.len()
                )));
            }
        }
        if n == 0 {
            return Err(Error::Invalid(format!("{what}: no categories; the series are empty")));
        }
        let labels: Vec<String> =
            if self.labels.is_empty() { (0..n).map(|i| i.to_string()).collect() } else { self.labels };

        let finite: Vec<f64> = series.iter().flatten().copied().filter(|v| v.is_finite()).collect();
        let (lo, hi) = match self.y_range {
            Some((lo, hi)) if lo.is_finite() && hi.is_finite() && lo < hi => (lo, hi),
            Some((lo, hi)) => {
                return Err(Error::Invalid(format!("{what}: y_range({lo}, {hi}) must be finite with lo < hi")))
            }
            None => {
                let min = finite.iter().copied().fold(0.0, f64::min);
                let max = finite.iter().copied().fold(0.0, f64::max);
                let span = if max > min { max - min } else { 1.0 };
                // Headroom on the side(s) away from zero, more when values are written there.
                let pad = span * if self.value_labels { 0.12 } else { 0.05 };
                (if min < 0.0 { min - pad } else { 0.0 }, if max > 0.0 || min == 0.0 { max + pad } else { 0.0 })
            }
        };

        let k = series.len();
        let bar_w = GROUP_WIDTH / k as f64;
        let bar_center = |i: usize, s: usize| i as f64 - GROUP_WIDTH / 2.0 + (s as f64 + 0.5) * bar_w;

        let legend: Vec<LegendEntry> = if k > 1 {
            names
                .iter()
                .enumerate()
                .filter(|(_, n)| !n.is_empty())
                .map(|(s, n)| LegendEntry { name: n.clone(), color: palette(s), swatch: Swatch::Block })
                .collect()
        } else {
            Vec::new()
        };
        // Points spread over every bar (and the space above it for value labels), for the legend
        // to avoid.
        let mut occupied = Vec::new();
        for (s, values) in series.iter().enumerate() {
            for (i, &v) in values.iter().enumerate().filter(|(_, v)| v.is_finite()) {
                let top = if self.value_labels { v + (hi - lo) * 0.06 * v.signum() } else { v };
                // Dense enough vertically (every 1/20 of the bar) that a legend cannot fit between
                // two samples.
                for a in 0..3 {
                    for b in 0..=20 {
                        let x = bar_center(i, s) + (f64::from(a) - 1.0) * bar_w / 2.0;
                        occupied.push((x, top * f64::from(b) / 20.0));
                    }
                }
            }
        }
        let mut x = Axis::new(-0.5, n as f64 - 0.5, false, &self.x_label);
        x.ticks =
            Some(labels.iter().enumerate().map(|(i, l)| Tick { value: i as f64, label: Some(l.clone()) }).collect());
        x.grid = false;
        let chart = Chart {
            width: self.size.0,
            height: self.size.1,
            title: self.title,
            x,
            y: Axis::new(lo, hi, false, &self.y_label),
            legend,
        };
        let layout = chart.layout(&occupied);
        let mut svg = layout.begin(&chart);
        let zero = layout.py(0.0_f64.clamp(lo, hi));
        for (s, values) in series.iter().enumerate() {
            let color = palette(s).hex();
            svg.open_group(&format!(r#"class="bars" fill="{color}""#));
            for (i, &v) in values.iter().enumerate().filter(|(_, v)| v.is_finite()) {
                let x0 = layout.px(bar_center(i, s) - bar_w / 2.0);
                let x1 = layout.px(bar_center(i, s) + bar_w / 2.0);
                // Bars beyond a user-fixed range stop at the frame.
                let y = layout.py(v).clamp(layout.top, layout.bottom);
                // A hair of gap between neighbouring bars of a group.
                let inset = if k > 1 { 0.5 } else { 0.0 };
                svg.rect(x0 + inset, y.min(zero), x1 - x0 - 2.0 * inset, (y - zero).abs(), &color, r#"class="bar""#);
            }
            svg.close_group();
        }
        if lo < 0.0 && hi > 0.0 {
            svg.line(layout.left, zero, layout.right, zero, &AXIS_COLOR.hex(), 1.0);
        }
        if self.value_labels {
            let decimals = self.decimals.unwrap_or_else(|| bar_decimals(&finite));
            let texts: Vec<Vec<String>> =
                series.iter().map(|vals| vals.iter().map(|v| format!("{v:.decimals$}")).collect()).collect();
            let widest = texts.iter().flatten().map(|t| text_width(t, 1.0)).fold(0.0, f64::max);
            let bar_px = layout.px(bar_w) - layout.px(0.0);
            // Labels may overhang their bar a little, never into the next group's labels.
            let size = (TICK_SIZE - 1.0).min((bar_px + 6.0) / widest.max(1e-9));
            if size >= 7.0 {
                for (s, values) in series.iter().enumerate() {
                    for (i, &v) in values.iter().enumerate().filter(|(_, v)| v.is_finite() && (lo..=hi).contains(*v)) {
                        let x = layout.px(bar_center(i, s));
                        let y = layout.py(v);
                        let y = if v >= 0.0 { y - 3.0 - size / 2.0 } else { y + 3.0 + size / 2.0 };
                        svg.text(x, y, &texts[s][i], TextStyle::new(size), r#"class="bar-value""#);
                    }
                }
            }
        }
        let text = layout.finish(&chart, svg);
        Ok(Figure::new(text, chart.width, chart.height, &chart.title))
    }
}

/// Decimals for value labels: none for whole numbers, otherwise about three significant digits.
fn bar_decimals(values: &[f64]) -> usize {
    if values.iter().all(|v| v.fract() == 0.0) {
        return 0;
    }
    let max = values.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    if max >= 100.0 {
        0
    } else if max >= 10.0 {
        1
    } else if max >= 1.0 {
        2
    } else {
        3
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plot::test_util::*;

    #[test]
    fn one_bar_per_value_with_labels() {
        let fig = BarChart::new("Per-class accuracy")
            .labels(["T-shirt", "Trouser", "Pullover", "Dress"])
            .series("acc", vec![0.82f32, 0.97, 0.79, 0.88])
            .value_labels()
            .render()
            .expect("renders");
        let svg = fig.svg();
        assert_eq!(count_class(svg, "bar"), 4);
        assert_eq!(texts_of(svg, "tick-x"), ["T-shirt", "Trouser", "Pullover", "Dress"]);
        assert_eq!(texts_of(svg, "bar-value"), ["0.820", "0.970", "0.790", "0.880"]);
        assert!(texts(svg).contains(&"Per-class accuracy".to_string()));
        // A single series needs no legend.
        assert_eq!(count_class(svg, "legend"), 0);
    }

    #[test]
    fn grouped_bars_have_a_legend() {
        let fig = BarChart::new("g")
            .labels(["a", "b", "c"])
            .series("train", [1, 2, 3])
            .series("test", [1, 1, 2])
            .render()
            .expect("renders");
        assert_eq!(count_class(fig.svg(), "bar"), 6);
        assert_eq!(texts_of(fig.svg(), "legend-label"), ["train", "test"]);
    }

    #[test]
    fn negative_values_hang_below_zero() {
        let fig = BarChart::new("n").series("v", [2.0, -1.0, f64::NAN]).value_labels().render().expect("renders");
        let svg = fig.svg();
        assert_eq!(count_class(svg, "bar"), 2);
        let ticks = texts_of(svg, "tick-y");
        assert!(ticks.iter().any(|t| t.starts_with('-')), "{ticks:?}");
        assert_eq!(texts_of(svg, "tick-x"), ["0", "1", "2"]);
    }

    #[test]
    fn long_labels_rotate() {
        let labels: Vec<String> = (0..12).map(|i| format!("a rather long label {i}")).collect();
        let fig = BarChart::new("r").labels(&labels).series("v", vec![1.0; 12]).render().expect("renders");
        assert!(fig.svg().contains("rotate(-40"), "labels should be rotated");
    }

    #[test]
    fn errors_are_clear() {
        assert!(BarChart::new("e").render().is_err());
        let err = BarChart::new("e").labels(["a", "b"]).series("v", [1.0]).render().expect_err("mismatch");
        assert!(err.to_string().contains("1 values for 2 categories"), "{err}");
        assert!(BarChart::new("e").series("v", Vec::<f64>::new()).render().is_err());
    }
}
