//! The real binary: `serve` started in a folder on a config, its address read from its log,
//! waited on until ready, stopped by a signal (tests of crashes, replicas, restarts and
//! shutdown run it this way); and one-shot commands (`cli`) with their exit code and output.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running `serve`, killed if it is dropped still running: a test that fails before it
/// stops the process must not leave it behind (it would outlive its folder and the suite).
pub struct Serve(Child);

impl std::ops::Deref for Serve {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Serve {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Starts `feedback-dispatch serve` on `config` in `dir`; returns the process (the caller
/// stops it with [`signal_and_wait`]) and its address.
pub fn start_serve(
    dir: &std::path::Path,
    config: &str,
    env: &[(&str, &str)],
) -> (Serve, String, std::sync::mpsc::Receiver<String>) {
    let path = dir.join("settings.toml");
    std::fs::write(&path, config).unwrap();
    let mut child = Serve(
        Command::new(env!("CARGO_BIN_EXE_feedback-dispatch"))
            .args(["serve", "--config"])
            .arg(&path)
            .current_dir(dir)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn serve"),
    );
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()))
            .expect("serve logs its address");
        if let Some(rest) = line.split("address=").nth(1) {
            let addr = rest.split_whitespace().next().unwrap().to_string();
            return (child, format!("http://{addr}"), rx);
        }
        // The JSON log format.
        if let Some(addr) = serde_json::from_str::<serde_json::Value>(&line)
            .ok()
            .and_then(|l| l["address"].as_str().map(str::to_string))
        {
            return (child, format!("http://{addr}"), rx);
        }
    }
}

/// Sends a signal by name and waits for the exit status.
pub fn signal_and_wait(child: &mut Child, signal: &str) -> std::process::ExitStatus {
    Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .expect("kill");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "serve did not stop after SIG{signal}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until the service at `address` answers `/readyz` with 200; panics after `timeout`.
pub async fn wait_until_ready(http: &reqwest::Client, address: &str, timeout: Duration) {
    // Every 100 ms: the service under test may be busy recovering, the probe need not add load.
    super::wait_for_every(
        timeout,
        Duration::from_millis(100),
        &format!("{address}/readyz to answer 200"),
        || async {
            let status = http.get(format!("{address}/readyz")).send().await.unwrap().status();
            if status == 200 { Ok(()) } else { Err(status) }
        },
    )
    .await
}

/// Runs the binary with `args` on `config` and `vars`: (exit code, stdout, stderr).
pub fn cli(config: &std::path::Path, vars: &[(&str, &str)], args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_feedback-dispatch"))
        .args(args)
        .arg("--config")
        .arg(config)
        .env_clear()
        .envs(vars.iter().copied())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
