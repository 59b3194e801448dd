//! `preview`: what each matching route would send for an event, without sending anything —
//! the Slack request JSON (with a Block Kit Builder link), the Teams card JSON, the email HTML and
//! text — and the
//! lint `check-config` runs on the rendered output of a built-in sample event.

use crate::domain::{KeySpec, Route, RunEvent, RunId};
use crate::email::digest::{compose, select_runs};
use crate::email::render::{MAX_HTML_BYTES, render_digest_within};
use crate::jobs::DigestRunPayload;
use crate::langsmith::{LangSmithClient, MintedToken};
use crate::links::links_for_run;
use crate::routing::{keys_for, matching_routes};
use crate::settings::{LangSmithEndpoint, Settings};
use crate::slack::deliver::{OutgoingMessage, request_json};
use crate::slack::render::{VotesView, check_limits, render_run_message, run_message};
use anyhow::{Context, bail};
use chrono::Utc;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// Where placeholder links point: a reserved name that resolves nowhere, so a preview can never
/// record feedback.
const PLACEHOLDER_BASE: &str = "https://langsmith.invalid";

/// What `preview` was asked.
#[derive(Debug, Clone)]
pub(crate) struct PreviewOptions {
    /// The event file (rule webhook, Agent Server run, or generic event(s)).
    pub event: PathBuf,
    /// Only this route (rendered even if it would not match).
    pub route: Option<String>,
    /// Write files here instead of printing.
    pub out: Option<PathBuf>,
    /// Mint real tokens instead of placeholders.
    pub mint: bool,
    /// Also a PNG of each email and Slack message (needs Chromium).
    pub screenshot: bool,
}

/// Reads an event file: the payload as JSON.
pub(crate) fn read_event_file(path: &Path) -> anyhow::Result<Value> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))
}

fn is_agent_server(value: &Value) -> bool {
    value.get("kwargs").is_some() || (value.get("thread_id").is_some() && value.get("assistant_id").is_some())
}

/// Parses any of the three intake payloads, told apart by their shape.
pub(crate) fn parse_payload(value: &Value, settings: &Settings) -> Result<Vec<RunEvent>, crate::intake::IntakeError> {
    if value.get("runs").is_some() {
        crate::intake::parse_rule_webhook(value, &settings.langsmith.ui_url)
    } else if is_agent_server(value) {
        crate::intake::parse_agent_server(value).map(|e| vec![e])
    } else {
        crate::intake::parse_generic(value)
    }
}

/// The inputs and outputs of each run of any of the three payloads, as `parse_payload` orders them.
pub(crate) fn payload_parts(value: &Value) -> Vec<crate::domain::RunParts<'_>> {
    if value.get("runs").is_some() {
        crate::intake::rule_parts(value)
    } else if is_agent_server(value) {
        vec![crate::intake::agent_server_parts(value)]
    } else {
        crate::intake::generic_parts(value)
    }
}

/// Placeholder tokens for `keys`, expiring `ttl` from now.
fn placeholder_tokens(run: RunId, specs: &[&KeySpec], ttl: std::time::Duration) -> Vec<MintedToken> {
    specs
        .iter()
        .enumerate()
        .map(|(i, spec)| {
            let id = uuid::Uuid::from_u128(i as u128 + 1);
            MintedToken {
                id,
                run_id: run,
                feedback_key: spec.key.clone(),
                url: url::Url::parse(&format!("{PLACEHOLDER_BASE}/api/v1/feedback/tokens/{id}")).expect("valid URL"),
                expires_at: Utc::now() + chrono::Duration::from_std(ttl).unwrap_or_default(),
            }
        })
        .collect()
}

fn channel_for(route: &Route, event: &RunEvent) -> Option<String> {
    route.slack.as_ref()?.channel.resolve(event).ok()?.channel
}

/// A Block Kit Builder link that opens the message's blocks.
pub(crate) fn block_kit_builder_link(request: &Value) -> String {
    let blocks = serde_json::json!({"blocks": request.get("blocks").cloned().unwrap_or(Value::Null)});
    let encoded: String = url::form_urlencoded::byte_serialize(blocks.to_string().as_bytes()).collect();
    format!(
        "https://app.slack.com/block-kit-builder#{}",
        encoded.replace('+', "%20")
    )
}

/// Renders every matching route's output for the event file; prints it or writes it to `out`.
pub(crate) async fn run(settings: &Settings, opts: &PreviewOptions) -> anyhow::Result<String> {
    use std::fmt::Write;
    let payload = read_event_file(&opts.event)?;
    let events =
        parse_payload(&payload, settings).with_context(|| format!("{} is not a valid event", opts.event.display()))?;
    let parts = payload_parts(&payload);
    let minter = if opts.mint {
        let base = match &settings.langsmith.endpoint {
            LangSmithEndpoint::Remote(u) => u.clone(),
            // The embedded service lives in a running `serve`.
            LangSmithEndpoint::Embedded => settings
                .server
                .public_url
                .clone()
                .context("--mint with the embedded service needs server.public_url of a running `serve`")?,
        };
        // A running `serve`'s embedded service takes the key it keeps beside the database.
        let key = crate::langsmith::embedded::api_key(settings, None)
            .await
            .context("cannot read the embedded LangSmith service's API key")?
            .or_else(|| settings.langsmith.api_key.clone());
        Some(LangSmithClient::from_settings(&settings.langsmith, &base, key)?)
    } else {
        None
    };
    if let Some(dir) = &opts.out {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let mut report = String::new();
    for (i, event) in events.iter().enumerate() {
        let routed = &*crate::routing::with_link_trust(event, settings);
        let run_parts = parts.get(i).copied().unwrap_or_default();
        let routes: Vec<&Route> = match &opts.route {
            Some(name) => vec![
                settings
                    .route(name)
                    .with_context(|| format!("no route named {name:?}"))?,
            ],
            None => matching_routes(routed, &settings.routes),
        };
        if routes.is_empty() {
            let _ = writeln!(report, "run {}: no route takes it", routed.run_id);
            continue;
        }
        for route in routes {
            let matched = route.matcher.matches(routed);
            let keys = keys_for(route, routed, settings);
            // What the route would store and show: its fields, redacted.
            let event = &*crate::routing::shown_event(route, routed, &run_parts, &mut Default::default());
            let _ = writeln!(
                report,
                "run {} → route {:?}{}: keys {}",
                event.run_id,
                route.name,
                if matched { "" } else { " (would not match)" },
                keys.iter().map(|k| k.to_string()).collect::<Vec<_>>().join(", ")
            );
            let _ = writeln!(report, "  {}", decisions(route, routed, matched));
            let specs: Vec<&KeySpec> = keys.iter().filter_map(|k| settings.key(k)).collect();
            let tokens = match &minter {
                Some(client) => {
                    let requests = crate::delivery::token_requests(settings, event, &keys, route.link_ttl);
                    client.mint(&requests).await.context("minting tokens")?
                }
                None => placeholder_tokens(event.run_id, &specs, route.link_ttl),
            };
            let mut links = links_for_run(&settings.keys, &tokens);
            if !route.extend_trace_retention {
                crate::links::keep_trace_retention(&mut links);
            }
            let stem = format!("{}-{}", sanitize(&route.name), event.run_id);
            if route.slack.is_some() {
                let content = run_message(event, &route.name, &links, &VotesView::default());
                for problem in check_limits(&content.to_content()) {
                    let _ = writeln!(report, "  warning: {problem}");
                }
                let msg = OutgoingMessage {
                    route: route.name.clone(),
                    channel: channel_for(route, routed),
                    thread_ts: None,
                    content,
                    file_stem: stem.clone(),
                };
                let request = request_json(&msg);
                let pretty = serde_json::to_string_pretty(&request)?;
                match &opts.out {
                    Some(dir) => {
                        let path = dir.join(format!("slack-{stem}.json"));
                        std::fs::write(&path, &pretty)?;
                        let _ = writeln!(report, "  slack request: {}", path.display());
                        // The message drawn as Slack shows it, as the console draws it.
                        let html = dir.join(format!("slack-{stem}.html"));
                        std::fs::write(&html, crate::console::slack_page(&request, &settings.slack.app_name))?;
                        let _ = writeln!(report, "  slack message drawn: {}", html.display());
                        if opts.screenshot {
                            let png = dir.join(format!("slack-{stem}.png"));
                            screenshot(&html, &png)?;
                            let _ = writeln!(report, "  slack screenshot: {}", png.display());
                        }
                    }
                    None => {
                        let _ = writeln!(report, "  slack request (chat.postMessage):\n{pretty}");
                    }
                }
                if !opts.mint {
                    // With real tokens the link would carry presigned URLs to a third party.
                    let _ = writeln!(report, "  Block Kit Builder: {}", block_kit_builder_link(&request));
                }
            }
            if route.teams.is_some() {
                // The presigned links, even for a route that votes through confirm pages: a
                // preview stores no confirm page to open.
                let card = crate::teams::render::render_card(event, &route.name, &links, route.show_route);
                let pretty = serde_json::to_string_pretty(&card)?;
                match &opts.out {
                    Some(dir) => {
                        let path = dir.join(format!("teams-{stem}.json"));
                        std::fs::write(&path, &pretty)?;
                        let _ = writeln!(report, "  teams card: {}", path.display());
                    }
                    None => {
                        let _ = writeln!(report, "  teams card (Workflows webhook POST):\n{pretty}");
                    }
                }
            }
            if let Some(email) = &route.email {
                let now = Utc::now();
                let run = DigestRunPayload {
                    event: event.clone(),
                    keys: keys.clone(),
                    recipient: None,
                };
                let shown = select_runs(vec![(run, now)], email.max_runs);
                let recipient = email.to.first().map(|m| m.to_string()).unwrap_or_default();
                let mut content = compose(
                    &route.name,
                    email,
                    &recipient,
                    &shown,
                    &tokens,
                    &settings.keys,
                    (now, now),
                );
                let rendered = render_digest_within(&mut content, MAX_HTML_BYTES).context("rendering the digest")?;
                let _ = writeln!(report, "  email subject: {}", rendered.subject);
                match &opts.out {
                    Some(dir) => {
                        let html = dir.join(format!("email-{stem}.html"));
                        let text = dir.join(format!("email-{stem}.txt"));
                        std::fs::write(&html, &rendered.html)?;
                        std::fs::write(&text, &rendered.text)?;
                        let _ = writeln!(
                            report,
                            "  email html: {}\n  email text: {}",
                            html.display(),
                            text.display()
                        );
                        if opts.screenshot {
                            let png = dir.join(format!("email-{stem}.png"));
                            screenshot(&html, &png)?;
                            let _ = writeln!(report, "  email screenshot: {}", png.display());
                        }
                    }
                    None => {
                        let _ = writeln!(report, "  email text part:\n{}", rendered.text);
                    }
                }
            }
        }
    }
    Ok(report)
}

/// The order in which an ask of `event` on `route` is decided (docs/asking.md), each step with
/// what it decides for this run: route match → sample → conversation supersede → cap →
/// recipient. Ids read from the run are never printed (a conversation is shown by its key).
fn decisions(route: &Route, event: &RunEvent, matched: bool) -> String {
    use crate::domain::{AskFallback, AskTo, is_slack_user_id};
    let ask = &route.ask;
    let sample = match route.matcher.sample {
        rate if rate < 1.0 => format!("sample {rate} ({})", if matched { "taken" } else { "left" }),
        _ => "sample: every run".to_string(),
    };
    let delay = if ask.delay.is_zero() {
        "at once".to_string()
    } else {
        format!("after {}", humantime::format_duration(ask.delay))
    };
    let conversation = match (&ask.conversation_from, ask.conversation_key(&route.name, event)) {
        (None, _) => format!("conversation: every run asked, {delay}"),
        (Some(_), Some(key)) => format!(
            "conversation supersede: one ask per conversation (key {}…), {delay}",
            &key[..12]
        ),
        (Some(p), None) => format!("conversation supersede: the run names none at {p}, asked on its own, {delay}"),
    };
    let cap = match ask.daily_cap {
        Some(n) => format!("cap: {n} a day per person or channel ({})", ask.timezone.name()),
        None => "cap: none".to_string(),
    };
    let fallback = match ask.fallback {
        AskFallback::Channel => "none usable, so the route's channel or recipients",
        AskFallback::Skip => "none usable, so not asked (fallback = \"skip\")",
    };
    let recipient = match ask.to {
        AskTo::Channel => "recipient: the route's channel or recipients".to_string(),
        AskTo::Initiator => {
            let slack_user = ask
                .user_from
                .as_ref()
                .and_then(|p| p.resolve(event))
                .is_some_and(|u| is_slack_user_id(&u));
            let address = ask
                .email_from
                .as_ref()
                .and_then(|p| p.resolve(event))
                .is_some_and(|a| crate::domain::Mailbox::parse(&a).is_ok());
            match (route.slack.is_some() && slack_user, route.email.is_some() && address) {
                (true, _) | (_, true) => {
                    "recipient: the initiator (a Slack direct message or their own digest)".to_string()
                }
                _ => format!("recipient: the initiator: {fallback}"),
            }
        }
        AskTo::Thread => {
            let thread = route
                .slack
                .as_ref()
                .and_then(|s| s.thread_ts_from.as_ref())
                .and_then(|p| p.resolve(event))
                .is_some();
            if thread {
                "recipient: a reply in the run's thread".to_string()
            } else {
                format!("recipient: the run's thread: {fallback}")
            }
        }
    };
    format!(
        "decisions: route match ({}) → {sample} → {conversation} → {cap} → {recipient}",
        if matched { "matched" } else { "would not match" }
    )
}

fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Renders `html` to `png` with headless Chromium.
fn screenshot(html: &Path, png: &Path) -> anyhow::Result<()> {
    let chromium = ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|c| {
            std::process::Command::new(c)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .context("--screenshot needs Chromium (Debian: apt-get install chromium)")?;
    let profile = std::env::temp_dir().join(format!("feedback-dispatch-preview-{}", std::process::id()));
    let html = std::fs::canonicalize(html)?;
    let status = std::process::Command::new(chromium)
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--hide-scrollbars",
            "--window-size=720,1400",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("file://{}", html.display()))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()?;
    let _ = std::fs::remove_dir_all(&profile);
    if !status.success() || !png.exists() {
        bail!("Chromium could not render {}", html.display());
    }
    Ok(())
}

/// Renders a demanding built-in sample event through every Slack route and returns each
/// violation of Slack's limits as (path, problem).
pub(crate) fn lint_routes(settings: &Settings) -> Vec<(String, String)> {
    let long = "A long answer with <markup> & links https://example.com ".repeat(200);
    let mut problems = Vec::new();
    for (i, route) in settings.routes.iter().enumerate() {
        if route.slack.is_none() {
            continue;
        }
        let keys: Vec<&KeySpec> = match &route.keys {
            Some(keys) => keys.iter().filter_map(|k| settings.key(k)).collect(),
            // Routes that take the event's keys may get any configured key.
            None => settings.keys.iter().collect(),
        };
        let event = RunEvent {
            run_id: RunId::from(uuid::Uuid::from_u128(0x5a3a)),
            source: crate::domain::Source::Generic,
            project: Some("x".repeat(200)),
            project_id: None,
            run_name: Some("n".repeat(200)),
            status: crate::domain::RunStatus::Error,
            input: Some(long.clone()),
            output: Some(long.clone()),
            error: Some(long.clone()),
            tags: (0..50).map(|t| format!("tag-{t}")).collect(),
            metadata: Default::default(),
            run_url: Some("https://smith.langchain.com/o/1/projects/p/2/r/3".into()),
            run_url_trusted: true,
            feedback_keys: vec![],
            started_at: None,
            ended_at: None,
            fields: None,
        };
        let tokens = placeholder_tokens(event.run_id, &keys, route.link_ttl);
        // The longest links a route sends, for the URL limits.
        let mut links = links_for_run(&settings.keys, &tokens);
        if !route.extend_trace_retention {
            crate::links::keep_trace_retention(&mut links);
        }
        let content = render_run_message(&event, &route.name, &links);
        for problem in check_limits(&content) {
            problems.push((
                format!("routes[{i}].slack"),
                format!("the sample message breaks a Slack limit: {problem}"),
            ));
        }
    }
    problems
}

/// The `chat.postMessage` request a stored Slack job sends, rebuilt from its payload with
/// placeholder links (the console draws it; a page never carries a presigned URL). `None` for
/// another kind of job or a payload this build cannot read.
pub(crate) fn slack_request_for_job(settings: &Settings, job: &crate::store::Job) -> Option<Value> {
    let payload: crate::jobs::SlackJobPayload = serde_json::from_value(job.payload.clone()).ok()?;
    let specs: Vec<&KeySpec> = payload.keys.iter().filter_map(|k| settings.key(k)).collect();
    let tokens = placeholder_tokens(
        payload.event.run_id,
        &specs,
        std::time::Duration::from_secs(payload.link_ttl_secs),
    );
    let links = links_for_run(&settings.keys, &tokens);
    let route = settings.route(&job.route);
    let view = VotesView {
        job: Some(job.id),
        route: Some(job.route.clone()),
        buttons: route
            .and_then(|r| r.slack.as_ref())
            .map(|s| s.buttons)
            .unwrap_or_default(),
        show_route: route.is_some_and(|r| r.show_route),
        ..Default::default()
    };
    let content = run_message(&payload.event, &job.route, &links, &view);
    let msg = OutgoingMessage {
        route: job.route.clone(),
        channel: payload.channel.clone(),
        thread_ts: payload.thread_ts.clone(),
        content,
        file_stem: String::new(),
    };
    Some(request_json(&msg))
}

/// A stored digest run as its digest shows it (one run, placeholder links), for the console:
/// the HTML with every link's address removed, so that no URL from a message reaches a page.
/// `None` when the route has no email target or the payload cannot be read.
pub(crate) fn digest_card_for_run(settings: &Settings, route: &str, payload: &str) -> Option<String> {
    let email = settings.route(route)?.email.as_ref()?;
    let run: DigestRunPayload = serde_json::from_str(payload).ok()?;
    let specs: Vec<&KeySpec> = run.keys.iter().filter_map(|k| settings.key(k)).collect();
    let ttl = settings.route(route).map(|r| r.link_ttl).unwrap_or_default();
    let tokens = placeholder_tokens(run.event.run_id, &specs, ttl);
    let now = Utc::now();
    let shown = select_runs(vec![(run, now)], email.max_runs);
    let mut content = compose(
        route,
        email,
        "reader@example.com",
        &shown,
        &tokens,
        &settings.keys,
        (now, now),
    );
    let rendered = render_digest_within(&mut content, MAX_HTML_BYTES).ok()?;
    Some(strip_hrefs(&rendered.html))
}

/// `html` with the value of every `href` attribute emptied.
fn strip_hrefs(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut rest = html;
    while let Some(at) = rest.find("href=\"") {
        out.push_str(&rest[..at]);
        let after = &rest[at + 6..];
        match after.find('"') {
            Some(end) => {
                out.push_str("href=\"#\"");
                rest = &after[end + 1..];
            }
            None => {
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}
