//! The settings loader: any file (and any `FEEDBACK_DISPATCH__…` overrides) is loaded or
//! rejected with issues, never a panic; a loaded one can be summarized. Its redaction rules
//! (built-in kinds and patterns, compiled here) run over the file's own text, and what they
//! give back holds no match of them.
//!
//! Input: optional override lines (`SECTION__KEY=value`), a NUL byte, then the file. Without a
//! NUL the whole input is the file, so the seed corpus is plain TOML.

#![no_main]

use feedback_dispatch::{Settings, settings_summary};
use libfuzzer_sys::fuzz_target;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::LazyLock;

/// One folder for the whole run: `Settings::load` reads a path, and a folder per input would
/// spend the run in the file system.
static FILE: LazyLock<(tempfile::TempDir, PathBuf)> = LazyLock::new(|| {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let path = dir.path().join("settings.toml");
    (dir, path)
});

fuzz_target!(|data: &[u8]| {
    let (env_part, file) = match data.iter().position(|&b| b == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (&[][..], data),
    };
    let env: BTreeMap<String, String> = String::from_utf8_lossy(env_part)
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (format!("FEEDBACK_DISPATCH__{k}"), v.to_string()))
        .collect();
    let path = &FILE.1;
    std::fs::write(path, file).expect("the temporary file is writable");
    match Settings::load(path, &env) {
        Ok(settings) => {
            settings_summary(&settings);
            let text = String::from_utf8_lossy(file);
            for route in &settings.routes {
                let mut counts = Default::default();
                if let Some(redacted) = route.redact.redact(&text, &mut counts) {
                    assert!(
                        route.redact.find(&redacted).is_none(),
                        "a redacted text still holds a match: {:?}",
                        route.redact.find(&redacted)
                    );
                }
            }
        }
        Err(e) => assert!(!e.issues.is_empty(), "a rejection names at least one problem"),
    }
});
