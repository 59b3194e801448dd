//! Inputs the fuzz targets (`fuzz/`, `scripts/fuzz`) found, kept as tests so each stays handled.

use feedback_dispatch::domain::RunEvent;
use feedback_dispatch::intake::parse_agent_server;
use serde_json::Value;

/// `agent_server` crash-021f9368… and crash-fcc9418a…, minimized: a float in metadata. The job
/// payload keeps the event as JSON text, and serde_json without its `float_roundtrip` feature
/// does not read all of its own output back exactly: 1.8518443822222218e230 is written as
/// `1.8518443822222218e+230` and read as 1.8518443822222214e230, two ULPs lower. So such a float
/// moved between intake and the worker. Everything else must come back unchanged, the float only
/// by parsing noise, and once serde_json reads floats exactly (the feature on) not at all.
#[test]
fn a_stored_event_comes_back_unchanged_except_metadata_floats_within_parsing_noise() {
    for (decimal, drifts_by_ulps) in [("221111111.22222222222222E222", 1), ("185184438.222222202222E222", 2)] {
        let body: Value = serde_json::from_str(&format!(
            r#"{{"run_id": "1e8d4c2b-5a3f-4d9e-8b7a-210cfe5d9a36", "metadata": {{"x": {decimal}, "n": 0.1}}}}"#
        ))
        .unwrap();
        let event = parse_agent_server(&body).unwrap();

        // The worker reads the job payload the store kept as JSON text.
        let stored = serde_json::to_string(&event).unwrap();
        let back: RunEvent = serde_json::from_str(&stored).unwrap();

        let written = serde_json::to_string(&event.metadata["x"]).unwrap();
        let reads_exactly = serde_json::from_str::<f64>(&written).unwrap() == written.parse::<f64>().unwrap();
        if reads_exactly {
            assert_eq!(back, event, "{decimal}");
            continue;
        }
        let bits = |e: &RunEvent| e.metadata["x"].as_f64().unwrap().to_bits();
        assert_eq!(bits(&back).abs_diff(bits(&event)), drifts_by_ulps, "{decimal}");
        assert_eq!(back.metadata["n"], event.metadata["n"], "{decimal}");
        let without_metadata = |e: RunEvent| RunEvent {
            metadata: serde_json::Map::new(),
            ..e
        };
        assert_eq!(without_metadata(back), without_metadata(event), "{decimal}");
    }
}
