//! LangSmith automation-rule webhooks: any JSON body is parsed without panicking, and every
//! event it yields keeps the parser's promises (see `check_event`); run links stay on the UI host.

#![no_main]

use feedback_dispatch::parse_rule_webhook;
use feedback_dispatch_fuzz::{check_event, json};
use libfuzzer_sys::fuzz_target;
use std::sync::LazyLock;

static UI_URL: LazyLock<url::Url> =
    LazyLock::new(|| url::Url::parse("https://smith.langchain.com").expect("a valid literal"));

fuzz_target!(|data: &[u8]| {
    let Some(body) = json(data) else { return };
    let Ok(events) = parse_rule_webhook(&body, &UI_URL) else {
        return;
    };
    for event in &events {
        check_event(event);
        if let Some(u) = &event.run_url {
            let parsed = url::Url::parse(u).expect("checked above");
            assert_eq!(parsed.host_str(), UI_URL.host_str(), "run_url {u:?} left the UI host");
            assert_eq!(parsed.scheme(), UI_URL.scheme(), "run_url {u:?}");
        }
    }
});
