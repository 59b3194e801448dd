//! The official `langsmith` Python SDK against the embedded token service: the compatibility
//! claim in `src/langsmith/embedded/`, proven with the real client rather than our reading of it.
//!
//! The interpreter is `$FD_TEST_PYTHON` or `.venv-test/bin/python` (made by `scripts/test`, with
//! the pinned `langsmith` and PyYAML). A missing interpreter fails the test: skipping would let the claim rot.

use crate::helpers::spawn_app;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The test interpreter: the pinned SDK, and PyYAML (which `slack_setup` reads manifests with).
pub fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("FD_TEST_PYTHON").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv-test/bin/python");
    assert!(
        venv.exists(),
        "{} does not exist: run `scripts/test`, which creates the .venv-test virtualenv with the pinned \
         langsmith SDK (or point FD_TEST_PYTHON at a python that has it)",
        venv.display()
    );
    venv
}

#[tokio::test]
async fn the_official_python_sdk_mints_lists_and_submits_through_the_embedded_service() {
    let app = spawn_app("").await;
    let python = python();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sdk/sdk_compat.py");
    let run_id = uuid::Uuid::new_v4().to_string();

    // The script blocks on HTTP to the app, which runs on this runtime: keep it off the workers.
    let (address, run, key) = (app.address.clone(), run_id.clone(), app.langsmith_key());
    let out: Output = tokio::task::spawn_blocking(move || {
        Command::new(&python)
            .arg(&script)
            .arg(&address)
            .arg(&run)
            .env("LANGSMITH_API_KEY", key)
            .env("LANGSMITH_TRACING", "false")
            .env("PYTHONUNBUFFERED", "1")
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .output()
            .unwrap_or_else(|e| panic!("could not run {}: {e}", python.display()))
    })
    .await
    .expect("the SDK script's thread");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Shown with `--nocapture` (and on failure): one line per SDK call.
    println!("{stdout}{stderr}");
    assert!(
        out.status.success(),
        "sdk_compat.py failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );
    assert!(
        stdout.contains("sdk_compat: all steps passed"),
        "the script stopped early:\n{stdout}\n{stderr}"
    );

    // Independently of the SDK: the two accepted submissions are on the run, the refused one is not.
    let feedback: Value = app.get_json(&format!("/api/v1/feedback?run={run_id}")).await;
    let mut got: Vec<(String, f64, Option<String>)> = feedback
        .as_array()
        .expect("a JSON array")
        .iter()
        .map(|f| {
            assert_eq!(f["run_id"], run_id.as_str());
            assert!(
                f["extra"]["feedback_ingest_token_id"].is_string(),
                "recorded through a token: {f}"
            );
            (
                f["key"].as_str().unwrap().to_string(),
                f["score"].as_f64().unwrap(),
                f["comment"].as_str().map(str::to_string),
            )
        })
        .collect();
    got.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        got,
        [
            ("thumbs_up".to_string(), 1.0, Some("from the sdk".to_string())),
            ("user_score".to_string(), 4.0, None)
        ]
    );
    app.stop().await;
}
