//! Helpers for the notebooks' check cells.

use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// Where notebooks save their figures: `$DLHIST_ASSETS_DIR` if set (the test harness points it at a scratch
/// folder, so quick runs never overwrite the committed figures), else the project's `assets/` folder, found
/// by walking up from the working directory (a notebook's own folder when run by Jupyter).
pub fn assets_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("DLHIST_ASSETS_DIR") {
        return Ok(PathBuf::from(dir));
    }
    let cwd = std::env::current_dir().map_err(|e| Error::io("cannot read the working directory", ".", e))?;
    find_assets_from(&cwd)
}

fn find_assets_from(start: &Path) -> Result<PathBuf> {
    let mut searched = vec![];
    for dir in start.ancestors() {
        let candidate = dir.join("assets");
        // The project root is the folder holding both `assets/` and the `dlhist/` crate.
        if candidate.is_dir() && dir.join("dlhist").is_dir() {
            return Ok(candidate);
        }
        searched.push(candidate);
    }
    Err(Error::NotFound {
        what: "the project's assets/ folder".into(),
        searched,
        hint: "run the notebook from inside the dlhist project, or set DLHIST_ASSETS_DIR".into(),
    })
}

/// The path of asset `name` (e.g. `"01-dnn-loss.svg"`) inside [`assets_dir`], creating the folder.
pub fn asset_path(name: &str) -> Result<PathBuf> {
    let dir = assets_dir()?;
    std::fs::create_dir_all(&dir).map_err(|e| Error::io("cannot create", &dir, e))?;
    Ok(dir.join(name))
}

/// The prefix of the line [`report`] prints; the notebook runners look for it.
pub const METRICS_PREFIX: &str = "dlhist-metrics: ";

/// Prints the metrics a notebook's check cell measured as one line, `dlhist-metrics: {json}`, which the
/// headless runner and `cargo test` collect into their summaries. Returns the line.
///
/// Non-finite values are written as `null` (JSON has no NaN).
///
/// ```
/// let line = dlhist::notebook::report(&[("accuracy", 0.97), ("steps", 500.0)]);
/// assert_eq!(line, r#"dlhist-metrics: {"accuracy":0.97,"steps":500.0}"#);
/// ```
pub fn report(metrics: &[(&str, f64)]) -> String {
    let mut map = serde_json::Map::new();
    for (k, v) in metrics {
        map.insert(
            (*k).to_string(),
            serde_json::Number::from_f64(*v).map_or(serde_json::Value::Null, serde_json::Value::Number),
        );
    }
    let line = format!("{METRICS_PREFIX}{}", serde_json::Value::Object(map));
    println!("{line}");
    line
}

/// Parses a [`report`] line back into `(name, value)` pairs (`None` if the line is not one).
pub fn parse_report(line: &str) -> Option<Vec<(String, Option<f64>)>> {
    let json = line.trim().strip_prefix(METRICS_PREFIX)?;
    let map: serde_json::Map<String, serde_json::Value> = serde_json::from_str(json).ok()?;
    Some(map.into_iter().map(|(k, v)| (k, v.as_f64())).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assets_folder_is_found_from_a_notebook_folder() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("assets")).unwrap();
        std::fs::create_dir_all(root.path().join("dlhist")).unwrap();
        let nb = root.path().join("notebooks/01-x/01-y");
        std::fs::create_dir_all(&nb).unwrap();
        assert_eq!(find_assets_from(&nb).unwrap(), root.path().join("assets"));
        let lonely = tempfile::tempdir().unwrap();
        let e = find_assets_from(lonely.path()).unwrap_err().to_string();
        assert!(e.contains("assets") && e.contains("DLHIST_ASSETS_DIR"), "{e}");
    }

    #[test]
    fn report_round_trips_and_handles_nan() {
        let line = report(&[("b", 2.5), ("a", f64::NAN)]);
        let parsed = parse_report(&line).unwrap();
        assert_eq!(parsed, vec![("a".to_string(), None), ("b".to_string(), Some(2.5))]);
        assert!(parse_report("accuracy: 0.9").is_none());
    }
}
