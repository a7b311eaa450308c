//! Tests that the two install paths pin the same versions: pip + cargo (`xtask/requirements.txt`,
//! [`crate::project::EVCXR_JUPYTER_VERSION`]) and conda (`environment.yml`).

use std::collections::BTreeMap;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

fn read(relative: &str) -> String {
    std::fs::read_to_string(format!("{ROOT}/{relative}")).unwrap_or_else(|e| panic!("reading {relative}: {e}"))
}

/// `name==1.2.3` lines of a requirements file (comments and blank lines skipped) as name -> version.
fn requirements(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .map(|line| line.split('#').next().unwrap_or("").trim())
        .filter(|line| !line.is_empty())
        .map(|line| {
            let (name, version) = line.split_once("==").unwrap_or_else(|| panic!("`{line}` is not pinned with =="));
            (name.trim().to_lowercase(), version.trim().to_owned())
        })
        .collect()
}

/// environment.yml's dependencies as name -> version constraint (`==0.22.0`, `>=3.9`, or empty).
fn conda_dependencies(yaml: &serde_norway::Value) -> BTreeMap<String, String> {
    let deps = yaml["dependencies"].as_sequence().expect("environment.yml has a dependencies list");
    deps.iter()
        .map(|dep| {
            let spec = dep.as_str().expect("conda dependencies are plain strings (no pip: section)");
            let split = spec.find(['=', '<', '>', '!', ' ']).unwrap_or(spec.len());
            (spec[..split].to_lowercase(), spec[split..].replace(' ', ""))
        })
        .collect()
}

fn environment() -> serde_norway::Value {
    serde_norway::from_str(&read("environment.yml")).expect("environment.yml is valid YAML")
}

#[test]
fn requirements_are_exact_pins_of_the_jupyter_stack() {
    let reqs = requirements(&read("xtask/requirements.txt"));
    for name in ["jupyterlab", "nbclient", "nbformat", "ipykernel"] {
        let version = reqs.get(name).unwrap_or_else(|| panic!("xtask/requirements.txt lacks {name}"));
        assert!(version.split('.').all(|p| p.parse::<u32>().is_ok()), "{name}=={version} is not an exact release");
    }
}

#[test]
fn environment_yml_pins_what_setup_installs() {
    let env = environment();
    assert_eq!(env["channels"], serde_norway::from_str::<serde_norway::Value>("[conda-forge]").unwrap());
    let conda = conda_dependencies(&env);
    for (name, version) in requirements(&read("xtask/requirements.txt")) {
        assert_eq!(conda.get(&name), Some(&format!("=={version}")), "environment.yml's {name} differs from pip's");
    }
    assert_eq!(
        conda.get("evcxr"),
        Some(&format!("=={}", crate::project::EVCXR_JUPYTER_VERSION)),
        "environment.yml's evcxr differs from the evcxr_jupyter that setup installs"
    );
    let (major, minor) = crate::project::MIN_PYTHON;
    assert_eq!(conda.get("python"), Some(&format!(">={major}.{minor}")));
}

#[test]
fn the_kernel_and_the_harness_pin_the_same_evcxr_release() {
    // The root package builds the kernel (`evcxr_jupyter`) and runs the harness (`evcxr`): one release for both.
    let manifest: toml::Table = read("Cargo.toml").parse().expect("Cargo.toml is valid TOML");
    let pin = |table: &str, name: &str| manifest[table][name].as_str().map(str::to_owned);
    let wanted = format!("={}", crate::project::EVCXR_JUPYTER_VERSION);
    assert_eq!(pin("dependencies", "evcxr_jupyter"), Some(wanted.clone()), "root Cargo.toml's evcxr_jupyter");
    assert_eq!(pin("dev-dependencies", "evcxr"), Some(wanted), "root Cargo.toml's evcxr");
}

#[test]
fn environment_yml_has_a_rust_toolchain_new_enough_for_the_workspace() {
    let manifest = read("Cargo.toml");
    let rust_version = manifest
        .lines()
        .find_map(|l| l.trim().strip_prefix("rust-version = "))
        .expect("Cargo.toml sets rust-version")
        .trim_matches('"');
    let conda = conda_dependencies(&environment());
    for name in ["rust", "rust-src"] {
        assert_eq!(conda.get(name), Some(&format!(">={rust_version}")), "environment.yml's {name}");
    }
}

#[test]
fn parsers_read_what_they_should() {
    let reqs = requirements("# c\nJupyterLab==4.6.6  # lab\n\nnbclient==0.11.0\n");
    assert_eq!(reqs.get("jupyterlab").map(String::as_str), Some("4.6.6"));
    assert_eq!(reqs.len(), 2);
    let yaml: serde_norway::Value = serde_norway::from_str("dependencies:\n  - evcxr ==0.22.0\n  - rust\n").unwrap();
    let deps = conda_dependencies(&yaml);
    assert_eq!(deps.get("evcxr").map(String::as_str), Some("==0.22.0"));
    assert_eq!(deps.get("rust").map(String::as_str), Some(""));
}
