//! Inputs the fuzz targets (`fuzz/`, `scripts/fuzz`) found, kept as tests so each stays handled.

use feedback_dispatch::RunEvent;
use feedback_dispatch::parse_agent_server;
use serde_json::Value;

/// `agent_server` crash-021f9368… and crash-fcc9418a…, minimized: a float in metadata. The job
/// payload keeps the event as JSON text, and serde_json without its `float_roundtrip` feature
/// does not read all of its own output back exactly: 1.8518443822222218e230 was written as
/// `1.8518443822222218e+230` and read as 1.8518443822222214e230, two ULPs lower, so such a float
/// moved between intake and the worker. The feature is on (Cargo.toml); the event must come back
/// bit for bit.
#[test]
fn a_stored_event_comes_back_bit_for_bit_floats_in_metadata_included() {
    for decimal in [
        "221111111.22222222222222E222",
        "185184438.222222202222E222",
        "0.1",
        "-4.9e-324",
    ] {
        let body: Value = serde_json::from_str(&format!(
            r#"{{"run_id": "1e8d4c2b-5a3f-4d9e-8b7a-210cfe5d9a36", "metadata": {{"x": {decimal}, "n": 0.1}}}}"#
        ))
        .unwrap();
        let event = parse_agent_server(&body).unwrap();
        // What the intake parsed is the decimal's nearest double, as Rust's own parser reads it.
        let x = event.metadata["x"].as_f64().unwrap();
        assert_eq!(x.to_bits(), decimal.parse::<f64>().unwrap().to_bits(), "{decimal}");

        // The worker reads the job payload the store kept as JSON text.
        let stored = serde_json::to_string(&event).unwrap();
        let back: RunEvent = serde_json::from_str(&stored).unwrap();
        assert_eq!(back.metadata["x"].as_f64().unwrap().to_bits(), x.to_bits(), "{decimal}");
        assert_eq!(back, event, "{decimal}");
    }
}
