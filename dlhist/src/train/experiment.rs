//! [`Experiment`]: train several variants of one setup and compare them in a table and a chart.
//!
//! Most section-02 notebooks are controlled experiments: same data, same seed, one thing changed
//! (an activation, a norm layer, the learning rate). Each variant is a closure that trains and returns a
//! [`Trial`] (its [`History`] plus any extra measurements); the experiment times it, prints one line,
//! and collects the results into a polars `DataFrame` whose rows are the variants.

use std::time::Instant;

use polars::prelude::{Column, DataFrame};

use super::history::fmt_num;
use super::History;
use crate::plot::LineChart;
use crate::{Error, Result};

/// The outcome of one variant: its training history and named measurements.
#[derive(Debug, Clone, Default)]
pub struct Trial {
    /// What training logged.
    pub history: History,
    /// Extra measurements, in the order they were added (e.g. `("weight_norm", 3.2)`).
    pub metrics: Vec<(String, f64)>,
}

impl Trial {
    /// A trial with `history` and no extra measurements.
    pub fn new(history: History) -> Self {
        Trial { history, metrics: vec![] }
    }

    /// Adds (or replaces) a named measurement.
    pub fn metric(mut self, name: impl Into<String>, value: f64) -> Self {
        let name = name.into();
        match self.metrics.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = value,
            None => self.metrics.push((name, value)),
        }
        self
    }

    /// A measurement added with [`Trial::metric`], else the last value the history logged under `name`.
    pub fn get(&self, name: &str) -> Result<f64> {
        match self.metrics.iter().find(|(n, _)| n == name) {
            Some((_, v)) => Ok(*v),
            None => self.history.last(name),
        }
    }
}

/// One finished variant of an [`Experiment`].
#[derive(Debug, Clone)]
pub struct Run {
    /// The variant's name (a row label of the table).
    pub name: String,
    /// What the variant's closure returned.
    pub trial: Trial,
    /// Wall time of the closure in seconds.
    pub time_s: f64,
}

/// A set of named variants trained one after another.
///
/// ```
/// use dlhist::train::{Experiment, History, Trial};
/// let mut exp = Experiment::new("learning rate");
/// for lr in [0.1, 0.01] {
///     exp.run(&format!("lr={lr}"), || {
///         let mut h = History::default();
///         h.log_epoch(0, &[("train_loss", lr * 10.0)]);
///         Ok(Trial::new(h).metric("lr", lr))
///     })?;
/// }
/// let table = exp.table()?;
/// assert_eq!(table.shape(), (2, 4)); // variant, lr, train_loss, time_s
/// assert_eq!(exp.get("lr=0.01")?.trial.get("train_loss")?, 0.1);
/// assert_eq!(exp.best("train_loss", false)?.name, "lr=0.01");
/// # Ok::<(), dlhist::Error>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct Experiment {
    title: String,
    runs: Vec<Run>,
    quiet: bool,
}

impl Experiment {
    /// An empty experiment; `title` heads its table and charts.
    pub fn new(title: impl Into<String>) -> Self {
        Experiment { title: title.into(), runs: vec![], quiet: false }
    }

    /// Prints nothing when a variant finishes (by default one line per variant).
    pub fn quiet(mut self) -> Self {
        self.quiet = true;
        self
    }

    /// The experiment's title.
    pub fn title(&self) -> &str {
        &self.title
    }

    /// Runs `train` as the variant `name`, records its [`Trial`] and wall time, and returns the run.
    /// A name already used is an error (the table's rows must be distinguishable).
    pub fn run(&mut self, name: &str, train: impl FnOnce() -> Result<Trial>) -> Result<&Run> {
        if self.runs.iter().any(|r| r.name == name) {
            return Err(Error::Invalid(format!(
                "experiment `{}` already has a variant named `{name}`; give each variant its own name",
                self.title
            )));
        }
        let start = Instant::now();
        let trial = train().map_err(|e| Error::Invalid(format!("variant `{name}` failed: {e}")))?;
        let time_s = start.elapsed().as_secs_f64();
        if !self.quiet {
            let summary: Vec<String> = summary_names(&trial)
                .iter()
                .filter_map(|n| trial.get(n).ok().map(|v| format!("{n} {}", fmt_num(v))))
                .collect();
            println!("{name}: {} ({time_s:.1} s)", summary.join(", "));
        }
        self.runs.push(Run { name: name.to_string(), trial, time_s });
        Ok(self.runs.last().expect("just pushed"))
    }

    /// The finished runs, in the order they ran.
    pub fn runs(&self) -> &[Run] {
        &self.runs
    }

    /// The run named `name`, or an error listing the names that exist.
    pub fn get(&self, name: &str) -> Result<&Run> {
        self.runs.iter().find(|r| r.name == name).ok_or_else(|| {
            let names: Vec<&str> = self.runs.iter().map(|r| r.name.as_str()).collect();
            Error::Invalid(format!("experiment `{}` has no variant `{name}`; it has {names:?}", self.title))
        })
    }

    /// The value of `metric` (see [`Trial::get`]) for the variant `name`.
    pub fn metric(&self, name: &str, metric: &str) -> Result<f64> {
        self.get(name)?.trial.get(metric)
    }

    /// The run with the highest (`maximize`) or lowest value of `metric`; runs without it are skipped.
    pub fn best(&self, metric: &str, maximize: bool) -> Result<&Run> {
        let mut best: Option<(&Run, f64)> = None;
        for r in &self.runs {
            if let Ok(v) = r.trial.get(metric) {
                let better = best.is_none_or(|(_, b)| if maximize { v > b } else { v < b });
                if better && v.is_finite() {
                    best = Some((r, v));
                }
            }
        }
        best.map(|(r, _)| r)
            .ok_or_else(|| Error::Invalid(format!("no variant of `{}` has a finite `{metric}`", self.title)))
    }

    /// Column names of the table: the trials' own metrics (in first-seen order), then the last per-epoch
    /// values of their histories (sorted), then `time_s`.
    fn columns(&self) -> Vec<String> {
        let mut cols: Vec<String> = vec![];
        for r in &self.runs {
            for (n, _) in &r.trial.metrics {
                if !cols.contains(n) {
                    cols.push(n.clone());
                }
            }
        }
        let mut logged: Vec<String> = self
            .runs
            .iter()
            .flat_map(|r| r.trial.history.epochs.iter().flat_map(|e| e.values.keys().cloned()))
            .filter(|n| n != "time_s" && !cols.contains(n))
            .collect();
        logged.sort();
        logged.dedup();
        cols.extend(logged);
        cols.push("time_s".into());
        cols
    }

    fn value(run: &Run, col: &str) -> Option<f64> {
        if col == "time_s" {
            return Some(run.time_s);
        }
        run.trial.get(col).ok()
    }

    /// One row per variant: `variant`, then every measurement and final per-epoch value, then `time_s`
    /// (missing values are null).
    pub fn table(&self) -> Result<DataFrame> {
        let mut cols =
            vec![Column::new("variant".into(), self.runs.iter().map(|r| r.name.clone()).collect::<Vec<_>>())];
        for name in self.columns() {
            let vals: Vec<Option<f64>> = self.runs.iter().map(|r| Self::value(r, &name)).collect();
            cols.push(Column::new(name.as_str().into(), vals));
        }
        Ok(DataFrame::new_infer_height(cols)?)
    }

    /// A line chart of a per-step metric (moving average over `smooth` steps) or, if no run logged it per
    /// step, a per-epoch metric, one series per variant.
    pub fn chart(&self, metric: &str, smooth: usize) -> Result<LineChart> {
        let per_step = self.runs.iter().any(|r| !r.trial.history.step_series(metric).0.is_empty());
        let mut chart = LineChart::new(format!("{}: {metric}", self.title))
            .x_label(if per_step { "step" } else { "epoch" })
            .y_label(metric);
        let mut any = false;
        for r in &self.runs {
            let (x, y) = if per_step {
                r.trial.history.smoothed_steps(metric, smooth)
            } else {
                r.trial.history.epoch_series(metric)
            };
            if !x.is_empty() {
                any = true;
                chart = chart.series(r.name.clone(), x, y);
            }
        }
        if !any {
            return Err(Error::Invalid(format!("no variant of `{}` logged `{metric}`", self.title)));
        }
        Ok(chart)
    }

    /// The table as HTML (what a notebook shows when the experiment is a cell's last expression).
    pub fn to_html(&self) -> String {
        let cols = self.columns();
        let mut html = format!("<table><caption>{}</caption><thead><tr><th>variant</th>", escape(&self.title));
        for c in &cols {
            html.push_str(&format!("<th>{}</th>", escape(c)));
        }
        html.push_str("</tr></thead><tbody>");
        for r in &self.runs {
            html.push_str(&format!("<tr><td>{}</td>", escape(&r.name)));
            for c in &cols {
                let cell = Self::value(r, c).map(fmt_num).unwrap_or_default();
                html.push_str(&format!("<td>{cell}</td>"));
            }
            html.push_str("</tr>");
        }
        html.push_str("</tbody></table>");
        html
    }

    /// Shows the table in a notebook.
    pub fn evcxr_display(&self) {
        println!("EVCXR_BEGIN_CONTENT text/html\n{}\nEVCXR_END_CONTENT", self.to_html());
    }
}

/// What the one-line summary of a finished variant shows: its own metrics, then the usual final ones.
fn summary_names(trial: &Trial) -> Vec<String> {
    let mut names: Vec<String> = trial.metrics.iter().map(|(n, _)| n.clone()).collect();
    for n in ["train_loss", "val_loss", "val_acc"] {
        if !names.iter().any(|m| m == n) && trial.history.last_epoch(n).is_some() {
            names.push(n.to_string());
        }
    }
    names
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trial(loss: f64) -> Result<Trial> {
        let mut h = History::default();
        h.log_step(0, &[("loss", loss * 2.0)]);
        h.log_step(1, &[("loss", loss)]);
        h.log_epoch(0, &[("train_loss", loss), ("time_s", 9.0)]);
        Ok(Trial::new(h))
    }

    #[test]
    fn table_rows_columns_and_nulls() -> Result<()> {
        let mut exp = Experiment::new("t").quiet();
        exp.run("a", || Ok(trial(1.0)?.metric("depth", 2.0)))?;
        exp.run("b", || trial(0.5))?;
        let df = exp.table()?;
        let names: Vec<&str> = df.get_column_names().iter().map(|s| s.as_str()).collect();
        assert_eq!(names, ["variant", "depth", "train_loss", "time_s"]);
        assert_eq!(df.column("depth")?.null_count(), 1);
        assert_eq!(exp.metric("b", "train_loss")?, 0.5);
        assert_eq!(exp.best("train_loss", true)?.name, "a");
        let html = exp.to_html();
        assert!(html.contains("<td>a</td><td>2</td><td>1</td>"), "{html}");
        Ok(())
    }

    #[test]
    fn errors_name_the_problem() -> Result<()> {
        let mut exp = Experiment::new("t").quiet();
        exp.run("a", || trial(1.0))?;
        assert!(exp.run("a", || trial(1.0)).unwrap_err().to_string().contains("already has a variant named `a`"));
        let e = exp.run("bad", || Err(Error::Invalid("diverged".into()))).unwrap_err().to_string();
        assert!(e.contains("variant `bad` failed") && e.contains("diverged"), "{e}");
        assert!(exp.get("zzz").unwrap_err().to_string().contains("[\"a\"]"));
        assert!(exp.best("nope", true).is_err());
        assert!(exp.chart("nope", 1).is_err());
        Ok(())
    }

    #[test]
    fn chart_prefers_steps_and_renders() -> Result<()> {
        let mut exp = Experiment::new("t").quiet();
        exp.run("a", || trial(1.0))?;
        exp.run("b", || trial(0.5))?;
        let texts = crate::plot::test_util::texts(exp.chart("loss", 1)?.render()?.svg());
        for want in ["step", "a", "b", "t: loss"] {
            assert!(texts.iter().any(|t| t == want), "{want} missing from {texts:?}");
        }
        let texts = crate::plot::test_util::texts(exp.chart("train_loss", 1)?.render()?.svg());
        assert!(texts.iter().any(|t| t == "epoch"), "{texts:?}");
        Ok(())
    }
}
