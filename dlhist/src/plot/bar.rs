//! Bar charts: one value per labelled category (test accuracy per model, per-class recall),
//! or several series side by side in groups (train vs test, one bar per run). Bars start at
//! zero, so negative values hang below a zero line.

use plotters::prelude::{Color, EmptyElement, PathElement, RGBColor, Rectangle, Text};
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::axes::{legend_height, plot_height, AxisChart, LegendEntry, Scale, Swatch};
use super::render::{font, text_width};
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
/// assert!(fig.svg().contains("0.990"));
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
                let mut hi = if max > 0.0 || min == 0.0 { max + pad } else { 0.0 };
                if !legend.is_empty() && min >= 0.0 && max > 0.0 {
                    // plotters keeps legends inside the plot: raise the top until the legend
                    // fits above the tallest bar and its value label.
                    let plot_h = plot_height(self.size, &self.title, &self.x_label);
                    let room = 1.0 - (legend_height(&legend) + 10.0 + TICK_SIZE + 4.0) / plot_h;
                    if room > 0.4 {
                        hi = hi.max(max / room);
                    }
                }
                (if min < 0.0 { min - pad } else { 0.0 }, hi)
            }
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
        let value_labels = self.value_labels.then(|| {
            let decimals = self.decimals.unwrap_or_else(|| bar_decimals(&finite));
            let texts: Vec<Vec<String>> =
                series.iter().map(|vals| vals.iter().map(|v| format!("{v:.decimals$}")).collect()).collect();
            texts
        });
        let chart = AxisChart {
            what: &what,
            size: self.size,
            title: &self.title,
            x_label: &self.x_label,
            y_label: &self.y_label,
            x: Scale::category(labels, false),
            y: Scale::linear(lo, hi),
            x_grid: false,
            legend,
        };
        let svg = chart.render(&occupied, |chart| {
            let (xr, _) = chart.plotting_area().get_pixel_range();
            let bar_px = bar_w * f64::from(xr.end - xr.start) / n as f64;
            for (s, values) in series.iter().enumerate() {
                let color = RGBColor::from(palette(s)).filled();
                chart.draw_series(values.iter().enumerate().filter(|(_, v)| v.is_finite()).map(|(i, &v)| {
                    let mut bar = Rectangle::new(
                        [(bar_center(i, s) - bar_w / 2.0, 0.0), (bar_center(i, s) + bar_w / 2.0, v)],
                        color,
                    );
                    if k > 1 && bar_px >= 4.0 {
                        // A hair of gap between neighbouring bars of a group.
                        bar.set_margin(0, 0, 1, 0);
                    }
                    bar
                }))?;
            }
            if lo < 0.0 && hi > 0.0 {
                let zero = vec![(-0.5, 0.0), (n as f64 - 0.5, 0.0)];
                chart
                    .draw_series(std::iter::once(PathElement::new(zero, RGBColor::from(AXIS_COLOR).stroke_width(1))))?;
            }
            if let Some(texts) = &value_labels {
                let widest = texts.iter().flatten().map(|t| text_width(t, 1.0)).fold(0.0, f64::max);
                // Labels may overhang their bar a little, never into the next group's labels;
                // too small to read, they are left out.
                let size = (TICK_SIZE - 1.0).min((bar_px + 6.0) / widest.max(1e-9)).floor();
                if size >= 7.0 {
                    for (s, values) in series.iter().enumerate() {
                        let shown = values.iter().enumerate().filter(|(_, v)| v.is_finite() && (lo..=hi).contains(*v));
                        chart.draw_series(shown.map(|(i, &v)| {
                            // Above a bar that goes up, below one that goes down, 3 px away.
                            let (dy, v_pos) = if v >= 0.0 { (-3, VPos::Bottom) } else { (3, VPos::Top) };
                            let style = font(size).pos(Pos::new(HPos::Center, v_pos));
                            EmptyElement::at((bar_center(i, s), v)) + Text::new(texts[s][i].clone(), (0, dy), style)
                        }))?;
                    }
                }
            }
            Ok(())
        })?;
        Ok(Figure::new(svg, self.size.0, self.size.1, &self.title))
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

    /// The value labels over (or under) the bars: the 10 px texts.
    fn value_texts(svg: &str) -> Vec<String> {
        let mut t = texts_where(svg, TICK_SIZE - 1.0, "middle", false);
        t.retain(|s| !s.is_empty());
        t
    }

    #[test]
    fn one_bar_per_value_with_labels() {
        let fig = BarChart::new("Per-class accuracy")
            .labels(["T-shirt", "Trouser", "Pullover", "Dress"])
            .series("acc", vec![0.82f32, 0.97, 0.79, 0.88])
            .value_labels()
            .render()
            .expect("renders");
        let svg = fig.svg();
        assert_eq!(rects(svg, palette(0)), 4);
        assert_eq!(x_ticks(svg), ["T-shirt", "Trouser", "Pullover", "Dress"]);
        assert_eq!(value_texts(svg), ["0.820", "0.970", "0.790", "0.880"]);
        assert!(texts(svg).contains(&"Per-class accuracy".to_string()));
        // A single series needs no legend.
        assert!(legend_labels(svg).is_empty());
    }

    #[test]
    fn grouped_bars_have_a_legend() {
        let fig = BarChart::new("g")
            .labels(["a", "b", "c"])
            .series("train", [1, 2, 3])
            .series("test", [1, 1, 2])
            .render()
            .expect("renders");
        // Each series' bars and its legend swatch.
        assert_eq!(rects(fig.svg(), palette(0)), 3 + 1);
        assert_eq!(rects(fig.svg(), palette(1)), 3 + 1);
        assert_eq!(legend_labels(fig.svg()), ["train", "test"]);
    }

    #[test]
    fn negative_values_hang_below_zero() {
        let fig = BarChart::new("n").series("v", [2.0, -1.0, f64::NAN]).value_labels().render().expect("renders");
        let svg = fig.svg();
        assert_eq!(rects(svg, palette(0)), 2);
        let ticks = y_ticks(svg);
        assert!(ticks.iter().any(|t| t.starts_with('-')), "{ticks:?}");
        assert_eq!(x_ticks(svg), ["0", "1", "2"]);
        assert_eq!(value_texts(svg), ["2", "-1"]);
    }

    #[test]
    fn long_labels_rotate() {
        let labels: Vec<String> = (0..12).map(|i| format!("a rather long label {i}")).collect();
        let fig = BarChart::new("r").labels(&labels).series("v", vec![1.0; 12]).render().expect("renders");
        // Standing vertical, every one of them (12 slots of about 45 px hold 11 px text).
        assert_eq!(texts_where(fig.svg(), TICK_SIZE, "end", true), labels);
        assert!(fig.svg().contains("rotate(270"), "labels should be rotated");
    }

    #[test]
    fn errors_are_clear() {
        assert!(BarChart::new("e").render().is_err());
        let err = BarChart::new("e").labels(["a", "b"]).series("v", [1.0]).render().expect_err("mismatch");
        assert!(err.to_string().contains("1 values for 2 categories"), "{err}");
        assert!(BarChart::new("e").series("v", Vec::<f64>::new()).render().is_err());
    }
}
