//! Slack and email rendering of arbitrary runs: the Slack message always passes `check_limits`
//! and carries no markup of the run's own (no `<!channel>`, no `<https://…|disguised link>`, no
//! control or bidi characters); the digest renders, its HTML has only the template's own tags
//! and attributes and only http(s) links, and its subject is one short line.
//!
//! Text is built from arbitrary strings spliced with pieces a hostile run would send, so the
//! fuzzer spends its time on combinations rather than on rediscovering `<!channel>` byte by byte.

#![no_main]

use arbitrary::{Result, Unstructured};
use chrono::{DateTime, Utc};
use feedback_dispatch::MintedToken;
use feedback_dispatch::render_digest;
use feedback_dispatch::{AfterVote, ButtonMode};
use feedback_dispatch::{Button, ButtonStyle, FeedbackKey, KeySpec, RunEvent, RunId, RunStatus, Source};
use feedback_dispatch::{DigestContent, DigestRun};
use feedback_dispatch::{KeyLinks, key_links};
use feedback_dispatch::{VoteView, VotesView, check_limits, render_run_message, render_run_message_with};
use feedback_dispatch_fuzz::html_tags;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use std::collections::BTreeSet;
use std::sync::LazyLock;

/// What hostile or merely awkward run text contains: Slack mentions and links, HTML, code
/// fences, entities, control, bidi and separator characters, wide characters.
const PIECES: &[&str] = &[
    "<!channel>",
    "<!here>",
    "<!everyone>",
    "<!subteam^S1|@team>",
    "<!date^1^{date}|x>",
    "<@U123>",
    "<#C123|general>",
    "<https://evil.example|click>",
    "<http://x>",
    "<script>alert(1)</script>",
    "<SCRIPT src=//evil>",
    "\"><img src=x onerror=alert(1)>",
    "' onmouseover='x",
    "```",
    "`",
    "&",
    "&amp;",
    "&lt;!channel&gt;",
    "&#60;",
    "<",
    ">",
    "|",
    "*bold*",
    "\n",
    "\r\n",
    "\r",
    "\t",
    "\u{0}",
    "\u{7}",
    "\u{1b}[2J",
    "\u{85}",
    "\u{202E}",
    "\u{2066}",
    "\u{2028}",
    "\u{200B}",
    "é",
    "👍",
    " ",
    "javascript:alert(1)",
    "https://smith.example/r/1?q=a|b<c>&d",
    "https://api.smith.langchain.com/api/v1/feedback/tokens/00000000-0000-0000-0000-000000000001?score=1",
];

/// The tags and attributes `templates/email/digest.html` writes itself.
static TEMPLATE_TAGS: LazyLock<BTreeSet<String>> =
    LazyLock::new(|| html_tags(include_str!("../../templates/email/digest.html")));

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let Ok((runs, route, digest)) = input(&mut u) else {
        return;
    };

    for run in &runs {
        let content = render_run_message(&run.event, &route, &run.keys);
        let problems = check_limits(&content);
        assert!(problems.is_empty(), "Slack limits broken: {problems:?}");
        check_slack_strings(&serde_json::to_value(&content).expect("a message serializes"), false);
        // The same message after votes, in every mode: still within Slack's limits, and the
        // only markup added is a mention of a voter.
        let Ok(view) = votes_view(&mut u, &run.keys, &route) else {
            continue;
        };
        let content = render_run_message_with(&run.event, &route, &run.keys, &view);
        let problems = check_limits(&content);
        assert!(problems.is_empty(), "Slack limits broken after votes: {problems:?}");
        check_slack_strings(&serde_json::to_value(&content).expect("a message serializes"), false);
    }

    let digest = DigestContent { runs, route, ..digest };
    let mail = render_digest(&digest).expect("a digest renders");
    let tags = html_tags(&mail.html);
    let foreign: Vec<_> = tags.difference(&TEMPLATE_TAGS).collect();
    assert!(
        foreign.is_empty(),
        "HTML has tags or attributes the template lacks: {foreign:?}"
    );
    assert!(
        !mail.html.to_ascii_lowercase().contains("<script"),
        "raw <script in the HTML"
    );
    for href in mail.html.split("href=\"").skip(1) {
        assert!(
            href.starts_with("http://") || href.starts_with("https://"),
            "a link that is not http(s): {:.80}",
            href
        );
    }
    assert!(mail.subject.chars().count() <= 150, "subject {:?}", mail.subject);
    assert!(
        !mail.subject.chars().any(char::is_control),
        "subject {:?}",
        mail.subject
    );
});

/// Runs (with their links), the route name and the rest of a digest.
fn input(u: &mut Unstructured) -> Result<(Vec<DigestRun>, String, DigestContent)> {
    let runs = (0..count(u, 2, 4)?.max(1))
        .map(|_| run(u))
        .collect::<Result<Vec<_>>>()?;
    let route = text(u)?;
    let digest = DigestContent {
        route: String::new(),
        recipient: text(u)?,
        runs: Vec::new(),
        more: u.int_in_range(0..=100_000)?,
        project_url: optional_text(u)?,
        window_start: time(u)?,
        window_end: time(u)?,
        subject: optional_text(u)?,
        // The service's own page (`server.public_url`), never a run's text.
        unsubscribe_url: u
            .arbitrary::<bool>()?
            .then(|| "https://feedback.example/v1/email/unsubscribe/72.0f".to_string()),
        waiting: Vec::new(),
    };
    Ok((runs, route, digest))
}

fn run(u: &mut Unstructured) -> Result<DigestRun> {
    let event = RunEvent {
        run_id: RunId::from(uuid::Uuid::from_u128(u.arbitrary()?)),
        source: *u.choose(&[Source::LangsmithRule, Source::AgentServer, Source::Generic])?,
        project: optional_text(u)?,
        project_id: optional_text(u)?,
        run_name: optional_text(u)?,
        status: *u.choose(&[
            RunStatus::Success,
            RunStatus::Error,
            RunStatus::Timeout,
            RunStatus::Interrupted,
            RunStatus::Pending,
            RunStatus::Other,
        ])?,
        input: optional_text(u)?,
        output: optional_text(u)?,
        error: optional_text(u)?,
        tags: (0..count(u, 3, 60)?).map(|_| text(u)).collect::<Result<_>>()?,
        metadata: serde_json::Map::new(),
        run_url: optional_text(u)?,
        run_url_trusted: u.arbitrary()?,
        feedback_keys: Vec::new(),
        started_at: None,
        ended_at: Some(time(u)?),
        fields: None,
    };
    // Usually a few keys; sometimes up to 60, so the 50-block limit is reached as well as missed.
    let keys = (0..count(u, 3, 60)?).map(|i| key(u, i)).collect::<Result<Vec<_>>>()?;
    Ok(DigestRun { event, keys })
}

/// One key's links, minted on a token URL like LangSmith's.
fn key(u: &mut Unstructured, index: usize) -> Result<KeyLinks> {
    let name: &str = u.arbitrary()?;
    let key = FeedbackKey::parse(name).unwrap_or_else(|_| FeedbackKey::parse(&format!("key_{index}")).expect("valid"));
    // Usually a few buttons; sometimes more than the 25 one actions block holds.
    let buttons = (0..count(u, 5, 30)?.max(1))
        .map(|_| {
            Ok(Button {
                label: text(u)?,
                score: u.arbitrary()?,
                value: optional_text(u)?,
                style: *u.choose(&[ButtonStyle::Primary, ButtonStyle::Danger, ButtonStyle::Default])?,
                comment: u.arbitrary()?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let token_id = uuid::Uuid::from_u128(u.arbitrary()?);
    let token = MintedToken {
        id: token_id,
        run_id: RunId::from(uuid::Uuid::from_u128(1)),
        feedback_key: key.clone(),
        url: url::Url::parse(&format!(
            "https://api.smith.langchain.com/api/v1/feedback/tokens/{token_id}"
        ))
        .expect("a valid URL"),
        expires_at: time(u)?,
    };
    let spec = KeySpec {
        question: optional_text(u)?,
        reasons: None,
        negative_below: None,
        key,
        feedback_config: None,
        buttons,
    };
    Ok(key_links(&spec, &token))
}

/// Votes on `keys` by voters with Slack-like ids or arbitrary text, in any mode.
fn votes_view(u: &mut Unstructured, keys: &[KeyLinks], route: &str) -> Result<VotesView> {
    let mut votes = Vec::new();
    for _ in 0..count(u, 6, 40)? {
        let Some(key) = (!keys.is_empty()).then(|| u.choose(keys)).transpose()? else {
            break;
        };
        let voter = if u.arbitrary()? {
            format!("U{}", u.int_in_range(0..=99_999u32)?)
        } else {
            text(u)?
        };
        votes.push(VoteView {
            key: key.key.to_string(),
            choice: u.int_in_range(0..=key.links.len().saturating_sub(1) as u32)?,
            label: text(u)?,
            voter,
            // Reasons are checked against the settings when recorded; the tally must still
            // render whatever a stored row holds.
            reasons: if u.arbitrary()? { vec![text(u)?] } else { Vec::new() },
        });
    }
    Ok(VotesView {
        job: Some(u.arbitrary()?),
        route: Some(route.to_string()),
        after_vote: *u.choose(&[AfterVote::Tally, AfterVote::Lock, AfterVote::Private, AfterVote::None])?,
        votes,
        expired: u.arbitrary()?,
        buttons: *u.choose(&[ButtonMode::Link, ButtonMode::Interactive, ButtonMode::Native])?,
        show_route: u.arbitrary()?,
        closed: u.arbitrary()?,
        show_reasons: if u.arbitrary()? {
            keys.iter().map(|k| k.key.to_string()).collect()
        } else {
            Vec::new()
        },
    })
}

/// Longest text a repeated piece makes: past Slack's 3,000-character section and the email's
/// 1,200-character excerpt. Long texts are rare (see `text`): every character costs many
/// instrumented comparisons, and the cuts need only be reached, not reached often.
const LONG_TEXT: usize = 3_500;

/// Arbitrary text spliced with hostile pieces; sometimes one piece repeated past every cut.
fn text(u: &mut Unstructured) -> Result<String> {
    let mut out = String::new();
    for _ in 0..u.int_in_range(0..=8)? {
        let piece: &str = if u.arbitrary()? {
            u.arbitrary()?
        } else {
            u.choose(PIECES)?
        };
        if u.ratio(1, 64)? {
            let most = LONG_TEXT / piece.chars().count().max(1);
            out.push_str(&piece.repeat(u.int_in_range(1..=most.max(1))?));
        } else {
            out.push_str(piece);
        }
    }
    Ok(out)
}

/// Up to `usual` mostly, and now and then up to `most`: large counts exercise the limits, small
/// ones keep the run fast.
fn count(u: &mut Unstructured, usual: usize, most: usize) -> Result<usize> {
    let most = if u.ratio(1, 16)? { most } else { usual };
    u.int_in_range(0..=most)
}

fn optional_text(u: &mut Unstructured) -> Result<Option<String>> {
    Ok(if u.arbitrary()? { Some(text(u)?) } else { None })
}

/// Any instant chrono can represent, mostly near now.
fn time(u: &mut Unstructured) -> Result<DateTime<Utc>> {
    let seconds = if u.ratio(1, 8)? {
        u.int_in_range(DateTime::<Utc>::MIN_UTC.timestamp()..=DateTime::<Utc>::MAX_UTC.timestamp())?
    } else {
        u.int_in_range(1_700_000_000..=1_900_000_000)?
    };
    Ok(DateTime::from_timestamp(seconds, 0).unwrap_or_default())
}

/// Walks the message JSON (but button values: opaque data Slack hands back on a click, never
/// shown): outside button labels (operator config, shown as plain text), every `<` starts one
/// of the renderer's own constructs, and no control or bidi character is left.
fn check_slack_strings(value: &Value, button_label: bool) {
    match value {
        Value::String(s) => {
            assert!(
                !s.chars().any(|c| (c.is_control() && c != '\n' && c != '\t')
                    || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')),
                "control or bidi character in {s:.300?}"
            );
            if !button_label {
                check_brackets(s);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| check_slack_strings(v, button_label)),
        Value::Object(map) => {
            let is_button = map.get("type").and_then(Value::as_str) == Some("button");
            for (k, v) in map {
                // A button's `value` is opaque data Slack hands back on a click, never shown or
                // parsed as mrkdwn (it is JSON naming the route, which may hold any text).
                if k == "value" && v.is_string() {
                    continue;
                }
                // The two sides of Slack's feedback_buttons are labelled in plain text too.
                let label = (is_button && k == "text") || k == "positive_button" || k == "negative_button";
                check_slack_strings(v, button_label || label);
            }
        }
        _ => {}
    }
}

/// Every `<…>` in `s` is a date (`<!date^…|…>`) or the run link (`<http(s)://…|Open in
/// LangSmith>`), and no `>` stands alone.
fn check_brackets(s: &str) {
    let mut rest = s;
    while let Some(open) = rest.find('<') {
        assert!(!rest[..open].contains('>'), "a stray '>' in {s:.300?}");
        let tail = &rest[open + 1..];
        let close = tail.find('>').unwrap_or_else(|| panic!("an unclosed '<' in {s:.300?}"));
        let inner = &tail[..close];
        assert!(!inner.contains('<'), "nested '<' in {s:.300?}");
        let date = inner.strip_prefix("!date^").is_some_and(|d| {
            let (stamp, rest) = d.split_once('^').unwrap_or(("", ""));
            !stamp.is_empty()
                && stamp.trim_start_matches('-').chars().all(|c| c.is_ascii_digit())
                && rest.starts_with("{date_short_pretty} {time}|")
        });
        // A voter, as the tally and the lock name them.
        let mention = inner
            .strip_prefix('@')
            .is_some_and(|id| !id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric()));
        // The run link: "Open in LangSmith" for a trusted host, "Open run (host)" for another.
        let link = inner.rsplit_once('|').is_some_and(|(url, label)| {
            let label_ok = label == "Open in LangSmith"
                || label
                    .strip_prefix("Open run (")
                    .and_then(|h| h.strip_suffix(')'))
                    .is_some_and(|host| !host.is_empty() && !host.contains(['<', '>', '|', '(', ')']));
            label_ok
                && (url.starts_with("https://") || url.starts_with("http://"))
                && !url.contains(|c: char| c.is_whitespace() || c == '|')
        });
        assert!(
            date || link || mention,
            "markup from the run: <{inner:.200}> in {s:.300?}"
        );
        rest = &tail[close + 1..];
    }
    assert!(!rest.contains('>'), "a stray '>' in {s:.300?}");
}
