//! Properties of the pure parts that stand between untrusted text and a reader: mrkdwn escaping,
//! Slack and email rendering, and feedback-link building, each checked on generated input mixed
//! with the pieces a hostile run would send. The fuzz targets (`fuzz/`, `scripts/fuzz`) search
//! the same ground longer; these keep it covered in every `cargo test`.

use chrono::{TimeZone, Utc};
use feedback_dispatch::DigestRun;
use feedback_dispatch::MintedToken;
use feedback_dispatch::{Button, ButtonStyle, FeedbackKey, KeySpec, RunEvent, RunId, format_score};
use feedback_dispatch::{KeyLinks, key_links};
use feedback_dispatch::{check_limits, escape_mrkdwn, render_run_message};
use feedback_dispatch::{render_digest, sample_content};
use proptest::prelude::*;

/// Enough cases to meet every piece below in many combinations while the suite stays fast.
const CASES: u32 = 128;

/// Markup and characters that have broken renderers: Slack mentions and links, HTML, fences,
/// entities, control, bidi and separator characters.
const PIECES: &[&str] = &[
    "<!channel>",
    "<!here>",
    "<!date^1^{date}|x>",
    "<@U123>",
    "<https://evil.example|click>",
    "<script>alert(1)</script>",
    "<SCRIPT>",
    "\"><img src=x onerror=alert(1)>",
    "```",
    "&",
    "&amp;",
    "&lt;",
    "<",
    ">",
    "|",
    "#",
    "?",
    "%",
    "+",
    "=",
    " ",
    "\n",
    "\r\n",
    "\t",
    "\u{0}",
    "\u{7}",
    "\u{1b}",
    "\u{85}",
    "\u{202E}",
    "\u{2066}",
    "\u{2028}",
    "é",
    "👍",
];

/// Short text: any characters (control ones included) mixed with [`PIECES`].
fn text() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            any::<char>().prop_map(String::from),
            prop::sample::select(PIECES).prop_map(str::to_string),
        ],
        0..40,
    )
    .prop_map(|pieces| pieces.concat())
}

/// Short text, or one piece repeated past Slack's 3,000-character and the email's
/// 1,200-character cuts.
fn run_text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => text(),
        1 => (prop::sample::select(PIECES), 1..4_000usize).prop_map(|(piece, n)| piece.repeat(n)),
    ]
}

/// Characters `escape_mrkdwn` drops: control characters other than `\n` and `\t`, and the bidi
/// embeddings, overrides and isolates.
fn dropped(c: char) -> bool {
    (c.is_control() && c != '\n' && c != '\t') || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

fn token() -> MintedToken {
    MintedToken {
        id: uuid::Uuid::from_u128(7),
        run_id: RunId::from(uuid::Uuid::from_u128(1)),
        feedback_key: FeedbackKey::parse("correctness").expect("a valid key"),
        url: url::Url::parse(
            "https://api.smith.langchain.com/api/v1/feedback/tokens/00000000-0000-0000-0000-000000000007",
        )
        .expect("a valid URL"),
        expires_at: Utc.with_ymd_and_hms(2026, 12, 7, 9, 0, 0).unwrap(),
    }
}

fn links(buttons: Vec<Button>) -> KeyLinks {
    let spec = KeySpec {
        question: None,
        reasons: None,
        negative_below: None,
        key: FeedbackKey::parse("correctness").expect("a valid key"),
        feedback_config: None,
        buttons,
    };
    key_links(&spec, &token())
}

fn thumbs() -> KeyLinks {
    links(vec![Button {
        label: "👍".into(),
        score: 1.0,
        value: None,
        style: ButtonStyle::Primary,
        comment: false,
    }])
}

/// The sample digest's first run with every text field replaced.
fn event(name: String, project: String, input: String, output: String, error: String, tag: String) -> RunEvent {
    RunEvent {
        run_name: Some(name),
        project: Some(project),
        input: Some(input),
        output: Some(output),
        error: Some(error),
        tags: vec![tag],
        run_url: None,
        run_url_trusted: false,
        ..sample_content().runs.remove(0).event
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn escaped_mrkdwn_has_no_angle_brackets_and_unescapes_to_the_input_minus_dropped_characters(s in text()) {
        let escaped = escape_mrkdwn(&s);

        prop_assert!(!escaped.contains(['<', '>']), "{escaped:?}");
        // `&amp;` last, so an escaped entity in the input (`&amp;lt;`) is not unescaped twice.
        let unescaped = escaped.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&");
        let kept: String = s.chars().filter(|&c| !dropped(c)).collect();
        prop_assert_eq!(unescaped, kept);
    }

    #[test]
    fn a_slack_message_for_any_run_text_passes_the_limits_and_carries_no_mention_or_link(
        name in run_text(),
        project in run_text(),
        input in run_text(),
        output in run_text(),
        error in run_text(),
        tag in text(),
        route in text(),
    ) {
        let run = event(name, project, input, output, error, tag);

        let content = render_run_message(&run, &route, &[thumbs()]);

        let problems = check_limits(&content);
        prop_assert!(problems.is_empty(), "{problems:?}");
        // The expiry is the renderer's own `<!date^…>`; with no run URL nothing else may open one.
        let json = serde_json::to_string(&content).unwrap().replace("<!date^", "");
        prop_assert!(!json.contains("<!"), "a mention reached the message: {json:.500}");
        prop_assert!(!json.contains("<http"), "a link reached the message: {json:.500}");
        prop_assert!(!json.contains("\\u0000") && !json.contains("\\u001b"), "{json:.500}");
    }

    #[test]
    fn key_links_carry_exactly_the_score_and_value_on_the_token_path(
        label in text(),
        value in proptest::option::of(text()),
        score in any::<f64>(),
    ) {
        let key = links(vec![Button { label: label.clone(), score, value: value.clone(), style: ButtonStyle::Default, comment: false }]);

        let link = &key.links[0];
        let token = token();
        let pairs: Vec<(String, String)> = link.url.query_pairs().into_owned().collect();
        let mut expected = vec![("score".to_string(), format_score(score))];
        expected.extend(value.map(|v| ("value".to_string(), v)));
        prop_assert_eq!(pairs, expected);
        prop_assert_eq!(link.url.path(), token.url.path());
        prop_assert_eq!(link.url.host_str(), token.url.host_str());
        prop_assert_eq!(link.url.fragment(), None);
        prop_assert!(!link.url.as_str().contains([' ', '#']), "{}", link.url);
        prop_assert_eq!(&link.label, &label);
    }

    #[test]
    fn a_digest_of_any_run_text_has_no_markup_of_its_own_and_a_one_line_subject(
        name in run_text(),
        project in run_text(),
        input in run_text(),
        output in run_text(),
        error in run_text(),
        tag in text(),
        route in text(),
        subject in proptest::option::of(text()),
    ) {
        let run = event(name, project, input, output, error, tag);
        let mut digest = sample_content();
        digest.runs = vec![DigestRun { event: run, keys: vec![thumbs()] }];
        digest.route = route.clone();
        digest.recipient = route;
        digest.subject = subject;

        let mail = render_digest(&digest).unwrap();

        let html = mail.html.to_ascii_lowercase();
        for raw in ["<script", "<img"] {
            prop_assert!(!html.contains(raw), "{raw} in the HTML");
        }
        prop_assert!(mail.subject.chars().count() <= 150, "{:?}", mail.subject);
        prop_assert!(!mail.subject.chars().any(|c| c.is_control() || dropped(c)), "{:?}", mail.subject);
    }
}

/// What redaction looks for, mixed with what it must leave alone: addresses, phone numbers,
/// card numbers (valid and failing the Luhn check), credentials, dates, order numbers, and the
/// separators that join them.
const SENSITIVE: &[&str] = &[
    "ana.lopez+work@example.co.uk",
    "a@b.example",
    "@",
    ".",
    "+1 415 555 0134",
    "(415) 555-0134",
    "415-555-0134",
    "020 7946 0958",
    "4111 1111 1111 1111",
    "4111111111111111",
    "5500-0000-0000-0004",
    "4111111111111112",
    "378282246310005",
    "sk-proj-abcdefghijklmnop1234",
    "lsv2_pt_0123456789abcdef_0123456789",
    "xoxb-1234-5678-abcdefghij",
    "AKIAIOSFODNN7EXAMPLE",
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig",
    "Bearer abc.def-123456",
    "ACME-123456",
    "2026-12-03",
    "order #48213",
    "0",
    "1",
    "9",
    " ",
    "-",
    "\n",
    "[card]",
    "[email]",
    // Look-alikes, which redaction reads folded: fullwidth and Arabic-Indic digits, no-break,
    // thin and zero-width spaces, a soft hyphen, a fullwidth at sign, accents, a ligature.
    "４１１１ １１１１ １１１１ １１１１",
    "٤١١١١١١١١١١١١١١١",
    "５",
    "٣",
    "\u{A0}",
    "\u{2009}",
    "\u{200B}",
    "\u{AD}",
    "＠",
    "josé.garcía@müller.de",
    "e\u{301}",
    "ﬁ",
];

fn sensitive_text() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            2 => prop::sample::select(SENSITIVE).prop_map(str::to_string),
            1 => "[ -~]{0,6}",
            1 => "[0-9 -]{1,8}",
        ],
        0..30,
    )
    .prop_map(|pieces| pieces.concat())
}

fn redactor() -> feedback_dispatch::Redactor {
    use feedback_dispatch::{RedactKind, RedactRule, Redactor};
    let mut rules: Vec<RedactRule> = RedactKind::ALL.into_iter().map(RedactRule::Kind).collect();
    rules.push(RedactRule::Pattern {
        pattern: r"ACME-\d{6}".into(),
        replace: "[ticket]".into(),
    });
    rules.push(RedactRule::Pattern {
        pattern: r"(?i)order\s*#?\d{5,}".into(),
        replace: "[order]".into(),
    });
    Redactor::new(rules).expect("valid rules")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: CASES * 4, ..ProptestConfig::default() })]

    /// A redacted string never contains a match of its patterns, and a text without one comes
    /// back untouched.
    #[test]
    fn a_redacted_string_never_contains_a_match_of_its_patterns(text in sensitive_text()) {
        let redactor = redactor();
        let mut counts = Default::default();
        match redactor.redact(&text, &mut counts) {
            Some(redacted) => {
                prop_assert!(redactor.find(&redacted).is_none(), "{:?} → {:?} still holds {:?}", text, redacted, redactor.find(&redacted));
                prop_assert!(!counts.0.is_empty(), "a change is counted");
            }
            None => prop_assert!(redactor.find(&text).is_none(), "{:?} holds {:?} but was left alone", text, redactor.find(&text)),
        }
    }
}
