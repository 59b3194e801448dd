//! `POST /v1/events`: any JSON body is parsed without panicking, and every event keeps the
//! parser's promises (see `check_event`).

#![no_main]

use feedback_dispatch::parse_generic;
use feedback_dispatch_fuzz::{check_event, json};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(body) = json(data) else { return };
    if let Ok(events) = parse_generic(&body) {
        assert!(!events.is_empty(), "an accepted body has at least one event");
        events.iter().for_each(check_event);
    }
});
