//! Progress lines for long loops.
//!
//! In a notebook, evcxr streams output line by line but cannot redraw a line (`\r` shows nothing until
//! the next newline, see `shared/GUIDE.md`), so there we print a fresh line every few seconds. In a
//! terminal we redraw one bar in place.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use super::history::fmt_num;

/// Reports how far a loop has come: a line every `every` seconds (notebooks, pipes), or a redrawn bar on
/// a terminal.
///
/// ```
/// let mut p = dlhist::train::Progress::new("train", 100).quiet();
/// for step in 1..=100 {
///     p.update(step, &[("loss", 1.0 / step as f64)]);
/// }
/// assert!(p.finish(&[]).contains("100/100"));
/// ```
#[derive(Debug)]
pub struct Progress {
    label: String,
    total: usize,
    start: Instant,
    last: Option<Instant>,
    every: Duration,
    tty: bool,
    quiet: bool,
    done: usize,
}

impl Progress {
    /// A reporter for `total` units of work (steps, batches, files).
    pub fn new(label: impl Into<String>, total: usize) -> Self {
        Progress {
            label: label.into(),
            total,
            start: Instant::now(),
            last: None,
            every: Duration::from_secs(5),
            tty: std::io::stdout().is_terminal(),
            quiet: false,
            done: 0,
        }
    }

    /// Print at most one line per `secs` seconds (default 5) in line mode.
    pub fn every(mut self, secs: f64) -> Self {
        self.every = Duration::from_secs_f64(secs.max(0.0));
        self
    }

    /// Print nothing (the lines are still formatted and returned by [`Progress::finish`]).
    pub fn quiet(mut self) -> Self {
        self.quiet = true;
        self
    }

    /// Seconds since the reporter was created.
    pub fn elapsed(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    /// The status line for `done` units and the given metrics.
    pub fn line(&self, done: usize, metrics: &[(&str, f64)]) -> String {
        let elapsed = self.elapsed();
        let pct = if self.total > 0 { 100.0 * done as f64 / self.total as f64 } else { 100.0 };
        let mut s = format!("[{}] {done}/{} ({pct:.0}%)", self.label, self.total);
        for (k, v) in metrics {
            s.push_str(&format!(" {k} {}", fmt_num(*v)));
        }
        s.push_str(&format!(" | {elapsed:.1} s"));
        if done > 0 && done < self.total {
            let left = elapsed / done as f64 * (self.total - done) as f64;
            s.push_str(&format!(", ~{left:.0} s left"));
        }
        s
    }

    /// Reports that `done` units are finished. Prints only when the interval has passed (line mode) or
    /// redraws the bar (terminal).
    pub fn update(&mut self, done: usize, metrics: &[(&str, f64)]) {
        self.done = done;
        if self.quiet {
            return;
        }
        let now = Instant::now();
        let due = self.last.is_none_or(|t| now.duration_since(t) >= self.every);
        if self.tty {
            // A terminal can redraw cheaply, but still not on every step.
            if self.last.is_none_or(|t| now.duration_since(t) >= Duration::from_millis(100)) {
                self.last = Some(now);
                let mut out = std::io::stdout().lock();
                let _ = write!(out, "\r\x1b[2K{} {}", self.bar(done), self.line(done, metrics));
                let _ = out.flush();
            }
        } else if due {
            self.last = Some(now);
            println!("{}", self.line(done, metrics));
        }
    }

    fn bar(&self, done: usize) -> String {
        let width = 20;
        let filled = (width * done.min(self.total)).checked_div(self.total).unwrap_or(width);
        format!("{}{}", "#".repeat(filled), ".".repeat(width - filled))
    }

    /// Prints (unless quiet) and returns the final line.
    pub fn finish(&mut self, metrics: &[(&str, f64)]) -> String {
        let line = self.line(self.done.max(self.total), metrics);
        if !self.quiet {
            if self.tty {
                println!("\r\x1b[2K{line}");
            } else {
                println!("{line}");
            }
        }
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_shows_counts_metrics_and_eta() {
        let p = Progress::new("fit", 200).quiet();
        let l = p.line(50, &[("loss", 0.123456), ("acc", 0.9)]);
        assert!(l.starts_with("[fit] 50/200 (25%) loss 0.1235 acc 0.9 | "), "{l}");
        assert!(l.contains("s left"), "{l}");
        assert!(!p.line(200, &[]).contains("left"));
    }

    #[test]
    fn bar_fills_proportionally() {
        let p = Progress::new("x", 10).quiet();
        assert_eq!(p.bar(5), "##########..........");
        assert_eq!(p.bar(10), "####################");
    }
}
