//! Readers that are not ours: pyarrow, pandas and freqtrade from PyPI, installed on first
//! use into a venv under target/ (as scripts/schemathesis.sh installs Schemathesis), and
//! Python's own json, gzip and csv modules, driven by `read_back.py`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::Value;

/// freqtrade as the export tests load files with it: the release its layout was checked
/// against (its data handlers pick their six columns by name).
const FREQTRADE: &str = "freqtrade==2026.9";

/// The venv's Python, with pyarrow, pandas and freqtrade importable; made once per test run.
fn python() -> &'static Path {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| {
        let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/pyarrow-venv");
        let python = venv.join("bin/python");
        let ready = |python: &Path| {
            Command::new(python)
                .args(["-c", "import pyarrow, pandas, freqtrade.data.history"])
                .output()
                .is_ok_and(|out| out.status.success())
        };
        if !ready(&python) {
            eprintln!(
                "installing pyarrow, pandas and {FREQTRADE} into {}",
                venv.display()
            );
            let made = Command::new("python3")
                .args(["-m", "venv"])
                .arg(&venv)
                .status()
                .expect("python3 runs");
            assert!(made.success(), "python3 -m venv {}", venv.display());
            let installed = Command::new(venv.join("bin/pip"))
                .args(["install", "--quiet", "pyarrow", "pandas", FREQTRADE])
                .status()
                .expect("pip runs");
            assert!(
                installed.success(),
                "pip installed pyarrow, pandas and {FREQTRADE}"
            );
            assert!(ready(&python), "pyarrow, pandas and freqtrade import");
        }
        python
    })
}

/// What the readers see in a file (or at a URL) of `format`: see `read_back.py`.
pub async fn read_back(format: &str, source: &str) -> Value {
    let python = python().to_owned();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/export/read_back.py");
    let output = tokio::process::Command::new(python)
        .arg(script)
        .args([format, source])
        .output()
        .await
        .expect("the reader runs");
    assert!(
        output.status.success(),
        "reading {source} as {format} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("the reader prints JSON")
}
