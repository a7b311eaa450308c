//! [`History`]: what happened during training, step by step and epoch by epoch.
//!
//! Every training run in the notebooks returns one. It turns into a polars `DataFrame` for tables and
//! comparisons, and shows itself as an HTML table when it is the last expression of a notebook cell.

use std::collections::BTreeMap;

use polars::prelude::{Column, DataFrame};

use crate::{Error, Result};

/// One row: an index (step or epoch) and named values.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// The step (for per-step records) or epoch (for per-epoch records), counting from 0.
    pub index: usize,
    /// Metric name to value, e.g. `"loss" -> 0.31`.
    pub values: BTreeMap<String, f64>,
}

/// Per-step and per-epoch metrics of a training run.
///
/// ```
/// let mut h = dlhist::train::History::default();
/// h.log_step(0, &[("loss", 1.0)]);
/// h.log_step(1, &[("loss", 0.5)]);
/// h.log_epoch(0, &[("train_loss", 0.75), ("val_acc", 0.9)]);
/// assert_eq!(h.last_step("loss"), Some(0.5));
/// assert_eq!(h.epochs_frame()?.shape(), (1, 3));
/// # Ok::<(), dlhist::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct History {
    /// One record per logged optimizer step.
    pub steps: Vec<Record>,
    /// One record per finished epoch.
    pub epochs: Vec<Record>,
}

fn record(index: usize, values: &[(&str, f64)]) -> Record {
    Record { index, values: values.iter().map(|(k, v)| (k.to_string(), *v)).collect() }
}

fn series(records: &[Record], name: &str) -> (Vec<f64>, Vec<f64>) {
    records.iter().filter_map(|r| r.values.get(name).map(|v| (r.index as f64, *v))).unzip()
}

fn frame(records: &[Record], index_name: &str) -> Result<DataFrame> {
    // Columns: the index, then every metric name seen, in sorted order; missing values are null.
    let mut names: Vec<&String> = records.iter().flat_map(|r| r.values.keys()).collect();
    names.sort();
    names.dedup();
    let mut cols = vec![Column::new(index_name.into(), records.iter().map(|r| r.index as u64).collect::<Vec<_>>())];
    for name in names {
        let vals: Vec<Option<f64>> = records.iter().map(|r| r.values.get(name).copied()).collect();
        cols.push(Column::new(name.as_str().into(), vals));
    }
    Ok(DataFrame::new_infer_height(cols)?)
}

impl History {
    /// Records metrics for optimizer step `step`.
    pub fn log_step(&mut self, step: usize, values: &[(&str, f64)]) {
        self.steps.push(record(step, values));
    }

    /// Records metrics for epoch `epoch`.
    pub fn log_epoch(&mut self, epoch: usize, values: &[(&str, f64)]) {
        self.epochs.push(record(epoch, values));
    }

    /// `(steps, values)` of a per-step metric, ready to plot.
    pub fn step_series(&self, name: &str) -> (Vec<f64>, Vec<f64>) {
        series(&self.steps, name)
    }

    /// `(epochs, values)` of a per-epoch metric, ready to plot.
    pub fn epoch_series(&self, name: &str) -> (Vec<f64>, Vec<f64>) {
        series(&self.epochs, name)
    }

    /// The last logged value of a per-step metric.
    pub fn last_step(&self, name: &str) -> Option<f64> {
        self.steps.iter().rev().find_map(|r| r.values.get(name).copied())
    }

    /// The last logged value of a per-epoch metric.
    pub fn last_epoch(&self, name: &str) -> Option<f64> {
        self.epochs.iter().rev().find_map(|r| r.values.get(name).copied())
    }

    /// The last value of `name`, per-epoch if logged per epoch, else per step; an error naming the
    /// metrics that exist if it was never logged.
    pub fn last(&self, name: &str) -> Result<f64> {
        self.last_epoch(name).or_else(|| self.last_step(name)).ok_or_else(|| {
            let mut known: Vec<&String> = self.steps.iter().chain(&self.epochs).flat_map(|r| r.values.keys()).collect();
            known.sort();
            known.dedup();
            Error::Invalid(format!("no metric `{name}` in this History; it has: {known:?}"))
        })
    }

    /// Moving average of a per-step metric over `window` steps (for noisy mini-batch losses).
    pub fn smoothed_steps(&self, name: &str, window: usize) -> (Vec<f64>, Vec<f64>) {
        let (x, y) = self.step_series(name);
        let w = window.max(1);
        let mut out = Vec::with_capacity(y.len());
        let mut sum = 0.0;
        for i in 0..y.len() {
            sum += y[i];
            if i >= w {
                sum -= y[i - w];
            }
            out.push(sum / (i + 1).min(w) as f64);
        }
        (x, out)
    }

    /// The per-epoch records as a `DataFrame` (column `epoch`, then one column per metric).
    pub fn epochs_frame(&self) -> Result<DataFrame> {
        frame(&self.epochs, "epoch")
    }

    /// The per-step records as a `DataFrame` (column `step`, then one column per metric).
    pub fn steps_frame(&self) -> Result<DataFrame> {
        frame(&self.steps, "step")
    }

    /// Shows the per-epoch table (or the last 20 steps when no epoch was logged) as HTML in a notebook.
    pub fn evcxr_display(&self) {
        println!("EVCXR_BEGIN_CONTENT text/html\n{}\nEVCXR_END_CONTENT", self.to_html());
    }

    /// The table [`History::evcxr_display`] shows, as an HTML string.
    pub fn to_html(&self) -> String {
        let (records, index, note) = if self.epochs.is_empty() {
            let skip = self.steps.len().saturating_sub(20);
            (
                &self.steps[skip..],
                "step",
                format!("{} steps logged (last {} shown)", self.steps.len(), self.steps.len() - skip),
            )
        } else {
            (&self.epochs[..], "epoch", format!("{} epochs, {} steps logged", self.epochs.len(), self.steps.len()))
        };
        let mut names: Vec<&String> = records.iter().flat_map(|r| r.values.keys()).collect();
        names.sort();
        names.dedup();
        let mut html = format!("<table><caption>{note}</caption><thead><tr><th>{index}</th>");
        for n in &names {
            html.push_str(&format!("<th>{}</th>", escape(n)));
        }
        html.push_str("</tr></thead><tbody>");
        for r in records {
            html.push_str(&format!("<tr><td>{}</td>", r.index));
            for n in &names {
                match r.values.get(*n) {
                    Some(v) => html.push_str(&format!("<td>{}</td>", fmt_num(*v))),
                    None => html.push_str("<td></td>"),
                }
            }
            html.push_str("</tr>");
        }
        html.push_str("</tbody></table>");
        html
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// Four significant digits, enough to compare runs without drowning the table.
pub(crate) fn fmt_num(v: f64) -> String {
    if v == 0.0 || (v.abs() >= 1e-3 && v.abs() < 1e5) {
        let s = format!("{v:.4}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        format!("{v:.3e}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> History {
        let mut h = History::default();
        for s in 0..6 {
            h.log_step(s, &[("loss", 6.0 - s as f64)]);
        }
        h.log_epoch(0, &[("train_loss", 4.5)]);
        h.log_epoch(1, &[("train_loss", 1.5), ("val_acc", 0.875)]);
        h
    }

    #[test]
    fn series_last_and_missing_metrics() {
        let h = sample();
        assert_eq!(h.step_series("loss").1, vec![6.0, 5.0, 4.0, 3.0, 2.0, 1.0]);
        assert_eq!(h.epoch_series("val_acc"), (vec![1.0], vec![0.875]));
        assert_eq!(h.last("train_loss").unwrap(), 1.5);
        assert_eq!(h.last("loss").unwrap(), 1.0);
        let e = h.last("accuracy").unwrap_err().to_string();
        assert!(e.contains("accuracy") && e.contains("val_acc"), "{e}");
    }

    #[test]
    fn smoothing_is_a_trailing_mean() {
        let (_, y) = sample().smoothed_steps("loss", 2);
        assert_eq!(y, vec![6.0, 5.5, 4.5, 3.5, 2.5, 1.5]);
    }

    #[test]
    fn frames_have_one_column_per_metric_with_nulls() -> Result<()> {
        let h = sample();
        let df = h.epochs_frame()?;
        assert_eq!(df.shape(), (2, 3));
        assert_eq!(
            df.get_column_names().iter().map(|s| s.as_str()).collect::<Vec<_>>(),
            ["epoch", "train_loss", "val_acc"]
        );
        assert_eq!(df.column("val_acc")?.null_count(), 1);
        assert_eq!(h.steps_frame()?.shape(), (6, 2));
        Ok(())
    }

    #[test]
    fn html_table_carries_the_values() {
        let html = sample().to_html();
        assert!(
            html.contains("<th>val_acc</th>") && html.contains("<td>0.875</td>") && html.contains("<td>1.5</td>"),
            "{html}"
        );
        assert_eq!(html.matches("<tr>").count(), 3);
        assert_eq!(fmt_num(0.000012345), "1.234e-5");
    }
}
