//! LangGraph Agent Server run webhooks: any JSON body is parsed without panicking, and the event
//! keeps the parser's promises (see `check_event`).

#![no_main]

use feedback_dispatch::parse_agent_server;
use feedback_dispatch_fuzz::{check_event, json};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(body) = json(data) else { return };
    if let Ok(event) = parse_agent_server(&body) {
        check_event(&event);
        assert_eq!(event.run_url, None, "Agent Server runs carry no run URL");
    }
});
