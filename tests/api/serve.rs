//! The real binary: `serve` binds (port 0 works), logs the bound address, answers, and exits 0
//! on SIGTERM and SIGINT.

use crate::helpers::serve::{signal_and_wait, start_serve};
use std::process::Command;

#[tokio::test]
async fn serve_binds_port_zero_answers_and_stops_cleanly_on_sigterm_and_sigint() {
    crate::helpers::init();
    for signal in ["TERM", "INT"] {
        let dir = tempfile::tempdir().unwrap();
        let config = "[server]\nlisten = \"127.0.0.1:0\"\n[store]\nurl = \"sqlite://db/x.db\"\n";
        let (mut child, address, _logs) = start_serve(dir.path(), config, &[]);
        let res = reqwest::get(format!("{address}/healthz")).await.unwrap();
        assert_eq!(res.status(), 200);
        assert!(dir.path().join("db/x.db").exists(), "the database folder is created");
        let status = signal_and_wait(&mut child, signal);
        assert!(status.success(), "SIG{signal}: {status:?}");
    }
}

#[tokio::test]
async fn serve_refuses_to_start_on_an_invalid_config() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("settings.toml");
    std::fs::write(&path, "[slack]\nmode = \"api\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_feedback-dispatch"))
        .args(["serve", "--config"])
        .arg(&path)
        .env_clear()
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("SLACK_BOT_TOKEN"));
}
