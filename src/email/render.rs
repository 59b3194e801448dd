//! Email digest rendering: one route's window of runs, each with its feedback links, becomes one
//! message for one recipient — a subject, an HTML part (`templates/email/digest.html`) and a
//! plain-text part (`templates/email/digest.txt`). Pure: no I/O and no clock; "in 7 days" is
//! measured from the window's end, which is when a digest goes out.
//!
//! The HTML is written for mail clients, not browsers: Outlook lays out with Word, Gmail drops
//! `<style>` in some views, and most clients ignore flexbox. So it is nested tables with inline
//! CSS on every element and "bulletproof" buttons — a coloured table cell around a coloured,
//! padded link — which still show as buttons when a client drops either half of the styling.
//! Colours are explicit everywhere and a `prefers-color-scheme` block only improves clients that
//! support it, so the message reads the same when a client inverts it on its own.
//!
//! Everything that came with a run is untrusted. askama HTML-escapes every `{{ }}` in
//! `digest.html` (nothing goes through `|safe`), URLs are linked only when they are http(s), the
//! subject loses CR/LF and other control characters, and every piece is cut to a size that keeps
//! one hostile 60 KB answer from burying the rest. Each feedback URL appears exactly once per
//! part — as its button, or as its labelled line — so no bare, unlabelled copy of a link that
//! records a rating sits anywhere in the message.

use super::content::{DigestContent, DigestRun};
use super::view::DigestView;
use crate::domain::{ButtonStyle, FeedbackKey, RunEvent, RunId, RunStatus, Source};
use crate::links::{FeedbackLink, KeyLinks};
use askama::Template;
use chrono::{DateTime, TimeZone, Utc};

/// A rendered digest, ready for a `multipart/alternative` message.
#[derive(Clone)]
pub struct RenderedEmail {
    /// One line, no control characters, at most 150 characters.
    pub subject: String,
    /// The HTML part.
    pub html: String,
    /// The plain-text part, with the same runs and links.
    pub text: String,
}

impl std::fmt::Debug for RenderedEmail {
    // Both bodies carry presigned URLs, which are bearer credentials and must not reach logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RenderedEmail")
            .field("subject", &self.subject)
            .field("html", &format_args!("[{} bytes]", self.html.len()))
            .field("text", &format_args!("[{} bytes]", self.text.len()))
            .finish()
    }
}

/// Renders one digest message.
///
/// The subject counts every run of the window and names the route: "3 runs to rate —
/// support-bot", "1 run to rate — support-bot", "53 runs to rate (showing 50) — support-bot".
/// A route's subject override takes the route name's place and goes first, because a reader
/// chose it to recognise the mail, while the count stays because it is what tells one digest
/// from the next: `subject = "Daily support review"` gives "Daily support review — 3 runs to
/// rate". A blank override is ignored.
pub fn render_digest(d: &DigestContent) -> Result<RenderedEmail, askama::Error> {
    let view = DigestView::new(d);
    let html = DigestHtml { v: &view }.render()?;
    let text = DigestText { v: &view }.render()?;
    Ok(RenderedEmail {
        subject: view.subject,
        html,
        text,
    })
}

/// Largest HTML part a digest is sent with. Gmail clips an HTML part past about 102 KB behind
/// a "View entire message" link, and the runs below the cut lose their buttons; a little
/// under that leaves room for the MIME encoding's line breaks.
pub(crate) const MAX_HTML_BYTES: usize = 100_000;

/// Renders `d` with its HTML part within `max_html_bytes`: while it is larger, the oldest runs
/// are left out (and counted in `d.more`, which the email reports with the project link). The
/// newest run is always shown, so the email is never empty.
pub(crate) fn render_digest_within(
    d: &mut DigestContent,
    max_html_bytes: usize,
) -> Result<RenderedEmail, askama::Error> {
    loop {
        let rendered = render_digest(d)?;
        let shown = d.runs.len();
        if rendered.html.len() <= max_html_bytes || shown <= 1 {
            return Ok(rendered);
        }
        // Runs are about the same size: keep the share that fits, then check again (the fixed
        // part of the email makes the estimate a little high, so this converges in a step or two).
        let keep = (shown * max_html_bytes / rendered.html.len()).clamp(1, shown - 1);
        d.more += shown - keep;
        d.runs.truncate(keep);
    }
}

/// The HTML part.
#[derive(Template)]
#[template(path = "email/digest.html")]
struct DigestHtml<'a> {
    v: &'a DigestView,
}

/// The plain-text part (`.txt`: askama does not escape it, and nothing in plain text needs it).
#[derive(Template)]
#[template(path = "email/digest.txt")]
struct DigestText<'a> {
    v: &'a DigestView,
}

/// A realistic digest for `preview` and the screenshot test: three runs of the `support-bot`
/// route (a success with thumbs and a categorical key, a failed tool call, a success with a
/// 1–5 score) and four more left out, with links to a local embedded token service.
pub fn sample_content() -> DigestContent {
    let window_end = sample_time(2026, 11, 30, 9, 0);
    let expires_at = sample_time(2026, 12, 7, 9, 0);
    let project_url = "https://smith.langchain.com/o/6b1f3c2e-5a0d-4f5e-9d3a-2c7b8e1f0a94/projects/p/\
                       3f2a9c1e-7b4d-4e8a-a1c6-9d0e5b2f7c38";
    let run = |n: u128, name: &str, status: RunStatus, minute: u32| {
        let run_id = RunId::from(uuid::Uuid::from_u128(0x1f0c_9a7e_5b3d_4c21_8e6f_0000_0000_0000 + n));
        RunEvent {
            run_id,
            source: Source::LangsmithRule,
            project: Some("support-bot-prod".into()),
            project_id: Some("3f2a9c1e-7b4d-4e8a-a1c6-9d0e5b2f7c38".into()),
            run_name: Some(name.into()),
            status,
            input: None,
            output: None,
            error: None,
            tags: vec!["prod".into(), "chat".into()],
            metadata: serde_json::Map::new(),
            run_url: Some(format!("{project_url}/r/{run_id}?poll=true")),
            run_url_trusted: true,
            feedback_keys: Vec::new(),
            started_at: Some(sample_time(2026, 11, 30, 8, minute - 1)),
            ended_at: Some(sample_time(2026, 11, 30, 8, minute)),
            fields: None,
        }
    };
    let key = |token: u128, name: &str, buttons: &[(&str, f64, Option<&str>, ButtonStyle)]| {
        let key = FeedbackKey::parse(name).expect("sample keys are valid literals");
        let base = format!(
            "http://127.0.0.1:8080/api/v1/feedback/tokens/{}",
            uuid::Uuid::from_u128(0x7d2e_41b0_93c5_4a6f_b8d1_0000_0000_0000 + token)
        );
        let links = buttons
            .iter()
            .map(|&(label, score, value, style)| {
                let mut url = url::Url::parse(&base).expect("the sample base URL is valid");
                url.query_pairs_mut()
                    .append_pair("score", &crate::domain::format_score(score));
                if let Some(v) = value {
                    url.query_pairs_mut().append_pair("value", v);
                }
                FeedbackLink {
                    key: key.clone(),
                    label: label.into(),
                    style,
                    score,
                    url,
                }
            })
            .collect();
        KeyLinks {
            question: key.readable(),
            key,
            links,
            expires_at,
        }
    };
    let thumbs = |token| {
        key(
            token,
            "thumbs",
            &[
                ("👍 Helpful", 1.0, None, ButtonStyle::Primary),
                ("👎 Not helpful", 0.0, None, ButtonStyle::Danger),
            ],
        )
    };

    let mut rotate = run(1, "support_agent", RunStatus::Success, 51);
    rotate.input = Some("How do I rotate my API key without downtime?".into());
    rotate.output = Some(
        "You can rotate a key with zero downtime:\n\n\
         1. Create a second key under Settings → API Keys.\n\
         2. Deploy it to your services and check that traffic uses it.\n\
         3. Revoke the old key once its \"last used\" time stops changing.\n\n\
         Keys can't be edited after creation, so rotating always means creating a new one."
            .into(),
    );
    let correctness = key(
        2,
        "correctness",
        &[
            ("Correct", 1.0, Some("correct"), ButtonStyle::Default),
            ("Partly correct", 0.5, Some("partly correct"), ButtonStyle::Default),
            ("Wrong", 0.0, Some("wrong"), ButtonStyle::Default),
        ],
    );

    let mut refund = run(3, "refund_lookup", RunStatus::Error, 37);
    refund.input = Some("Where is my refund for order #48213? It's been two weeks.".into());
    refund.error = Some(
        "ToolException: orders API returned 503 Service Unavailable\n  \
         at lookup_order (tools/orders.py:88)\n  \
         retried 3 times over 4.2 s"
            .into(),
    );

    let mut invoice = run(4, "support_agent", RunStatus::Success, 12);
    invoice.input = Some("Can I get an invoice with our VAT number on it?".into());
    invoice.output = Some(
        "Yes. Add your VAT number under Billing → Company details; every invoice issued after \
         that shows it. For past invoices, open the invoice and choose \"Regenerate\"."
            .into(),
    );
    let score = key(
        5,
        "user_score",
        &[
            ("1", 1.0, None, ButtonStyle::Default),
            ("2", 2.0, None, ButtonStyle::Default),
            ("3", 3.0, None, ButtonStyle::Default),
            ("4", 4.0, None, ButtonStyle::Default),
            ("5", 5.0, None, ButtonStyle::Default),
        ],
    );

    DigestContent {
        unsubscribe_url: None,
        waiting: Vec::new(),
        route: "support-bot".into(),
        recipient: "reviewers@example.com".into(),
        runs: vec![
            DigestRun {
                event: rotate,
                keys: vec![thumbs(1), correctness],
            },
            DigestRun {
                event: refund,
                keys: vec![thumbs(3)],
            },
            DigestRun {
                event: invoice,
                keys: vec![score],
            },
        ],
        more: 4,
        project_url: Some(project_url.into()),
        window_start: sample_time(2026, 11, 30, 8, 0),
        window_end,
        subject: None,
    }
}

fn sample_time(year: i32, month: u32, day: u32, hour: u32, minute: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(year, month, day, hour, minute, 0)
        .single()
        .expect("sample times are valid literals")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::text::{UNNAMED_RUN, is_bidi_control};
    use crate::email::view::{MAX_EMAIL_EXCERPT_CHARS, MAX_SUBJECT_CHARS};

    /// Undoes askama's HTML escaping (`&#34;`, `&#38;`, `&#39;`, `&#60;`, `&#62;`), `&` last so
    /// an escaped entity is not unescaped twice.
    fn unescape(html: &str) -> String {
        html.replace("&#34;", "\"")
            .replace("&#39;", "'")
            .replace("&#60;", "<")
            .replace("&#62;", ">")
            .replace("&#38;", "&")
    }

    /// How often `url` occurs as a whole URL: a match followed by another URL character (`?score=1`
    /// inside `?score=10`, or inside `?score=1&value=x`) does not count.
    fn occurrences(haystack: &str, url: &str) -> usize {
        haystack
            .match_indices(url)
            .filter(|(at, _)| {
                haystack[at + url.len()..]
                    .chars()
                    .next()
                    .is_none_or(|c| !(c.is_ascii_alphanumeric() || "-._~:/?#[]@!$&'()*+,;=%".contains(c)))
            })
            .count()
    }

    fn all_urls(d: &DigestContent) -> Vec<String> {
        d.runs
            .iter()
            .flat_map(|r| &r.keys)
            .flat_map(|k| &k.links)
            .map(|l| l.url.to_string())
            .collect()
    }

    fn event(name: &str, status: RunStatus) -> RunEvent {
        let mut e = sample_content().runs.remove(0).event;
        e.run_name = Some(name.into());
        e.status = status;
        e
    }

    fn content(runs: Vec<DigestRun>) -> DigestContent {
        DigestContent {
            unsubscribe_url: None,
            runs,
            more: 0,
            subject: None,
            ..sample_content()
        }
    }

    #[test]
    fn a_digest_too_large_for_gmail_shows_its_newest_runs_and_counts_the_rest() {
        let mut d = sample_content();
        let long = "All good here. ".repeat(200);
        let template = d.runs[2].clone();
        d.runs = (0..50)
            .map(|n| {
                let mut run = template.clone();
                run.event.run_name = Some(format!("run-{n:02}"));
                run.event.input = Some(long.clone());
                run.event.output = Some(long.clone());
                run
            })
            .collect();
        d.more = 4;
        assert!(
            render_digest(&d).unwrap().html.len() > MAX_HTML_BYTES,
            "the test needs a large digest"
        );

        let mail = render_digest_within(&mut d, MAX_HTML_BYTES).unwrap();
        assert!(mail.html.len() <= MAX_HTML_BYTES, "{} bytes", mail.html.len());
        let shown = d.runs.len();
        assert!((1..50).contains(&shown), "{shown} runs shown");
        assert_eq!(d.more, 4 + 50 - shown, "every run left out is counted");
        assert!(mail.html.contains("run-00") && !mail.html.contains(&format!("run-{shown:02}")));
        assert!(mail.html.contains(&format!("{} more runs in LangSmith", d.more)));
        assert!(mail.text.contains(&format!("{} more runs in LangSmith", d.more)));
        // Close to the budget, not far under it: the estimate keeps as many runs as fit.
        let one_more = {
            let mut bigger = d.clone();
            bigger.runs.push(template.clone());
            render_digest(&bigger).unwrap().html.len()
        };
        assert!(one_more > MAX_HTML_BYTES * 9 / 10, "{one_more}");

        // A single run is shown however large it is.
        let mut one = d.clone();
        one.runs.truncate(1);
        assert_eq!(
            render_digest_within(&mut one, 1_000).unwrap().html,
            render_digest(&one).unwrap().html
        );
        assert_eq!(one.runs.len(), 1);
    }

    #[test]
    fn every_link_of_a_three_run_digest_appears_exactly_once_in_each_part() {
        // The sample has 3 runs, a categorical key whose links carry `&value=` (escaped in the
        // HTML) and a 1–5 key whose links share a token.
        let d = sample_content();
        let urls = all_urls(&d);
        assert_eq!(urls.len(), 2 + 3 + 2 + 5);
        assert!(urls.iter().any(|u| u.contains('&')));

        let mail = render_digest(&d).unwrap();

        let html = unescape(&mail.html);
        for url in &urls {
            assert_eq!(occurrences(&html, url), 1, "HTML has {url} once");
            assert_eq!(
                occurrences(&html, &format!("href=\"{url}\"")),
                1,
                "{url} is a button href"
            );
            assert_eq!(occurrences(&mail.text, url), 1, "text has {url} once");
        }
        assert!(mail.text.contains(&format!("  👍 Helpful: {}\n", urls[0])));
        assert!(!mail.html.contains("&value="), "`&` in hrefs is escaped");
    }

    #[test]
    fn the_subject_carries_the_count_and_the_route() {
        let run = |n| DigestRun {
            event: event(&format!("r{n}"), RunStatus::Success),
            keys: vec![],
        };
        let cases: [(usize, usize, Option<&str>, &str); 5] = [
            (1, 0, None, "1 run to rate — support-bot"),
            (3, 0, None, "3 runs to rate — support-bot"),
            (50, 3, None, "53 runs to rate (showing 50) — support-bot"),
            (
                3,
                0,
                Some("Daily support review"),
                "Daily support review — 3 runs to rate",
            ),
            (3, 0, Some("   "), "3 runs to rate — support-bot"),
        ];
        for (shown, more, custom, expected) in cases {
            let d = DigestContent {
                unsubscribe_url: None,
                more,
                subject: custom.map(str::to_string),
                ..content((0..shown).map(run).collect())
            };
            assert_eq!(render_digest(&d).unwrap().subject, expected);
        }
    }

    #[test]
    fn a_subject_cannot_start_a_new_header_line() {
        let d = DigestContent {
            unsubscribe_url: None,
            route: "support\r\nBcc: x@evil".into(),
            subject: Some("Review\r\nBcc: x@evil\u{0}\u{7}\u{202E}".into()),
            ..sample_content()
        };
        let mail = render_digest(&d).unwrap();
        assert!(!mail.subject.contains(['\r', '\n']), "{:?}", mail.subject);
        assert!(!mail.subject.chars().any(|c| c.is_control() || is_bidi_control(c)));
        assert!(
            mail.subject.starts_with("Review Bcc: x@evil — 7 runs to rate"),
            "{:?}",
            mail.subject
        );

        let long = DigestContent {
            unsubscribe_url: None,
            subject: Some("x".repeat(10_000)),
            ..sample_content()
        };
        let subject = render_digest(&long).unwrap().subject;
        assert!(subject.chars().count() <= MAX_SUBJECT_CHARS);
        assert!(
            subject.ends_with("runs to rate (showing 3)"),
            "the count survives: {subject:?}"
        );
    }

    #[test]
    fn hostile_run_text_is_escaped_and_cut_in_the_html() {
        let script = "<script>alert(1)</script>";
        let breakout = "\"><img src=x onerror=alert(1)>";
        let mut e = event(script, RunStatus::Success);
        e.project = Some(breakout.into());
        e.input = Some(format!("{script} {breakout}"));
        e.output = Some("A".repeat(60_000));
        e.tags = vec![breakout.into()];
        let d = DigestContent {
            unsubscribe_url: None,
            route: script.into(),
            recipient: breakout.into(),
            ..content(vec![DigestRun { event: e, keys: vec![] }])
        };

        let mail = render_digest(&d).unwrap();

        for raw in ["<script", "<img"] {
            assert!(!mail.html.contains(raw), "raw {raw:?} in the HTML");
        }
        assert!(mail.html.contains("&#60;script&#62;alert(1)&#60;/script&#62;"));
        assert!(mail.html.contains("&#34;&#62;&#60;img src=x onerror=alert(1)&#62;"));
        let kept = format!("{}…", "A".repeat(MAX_EMAIL_EXCERPT_CHARS - 1));
        assert!(mail.html.contains(&kept), "the answer is cut with an ellipsis");
        assert!(!mail.html.contains(&"A".repeat(MAX_EMAIL_EXCERPT_CHARS)));
        assert!(mail.html.len() < 40_000, "HTML is {} bytes", mail.html.len());
        assert!(mail.text.contains(&kept) && !mail.text.contains(&"A".repeat(MAX_EMAIL_EXCERPT_CHARS)));
    }

    #[test]
    fn runs_left_out_are_counted_and_linked_to_the_project() {
        let d = DigestContent {
            unsubscribe_url: None,
            more: 47,
            ..sample_content()
        };
        let mail = render_digest(&d).unwrap();
        let project = d.project_url.as_deref().unwrap();
        let html = unescape(&mail.html);
        assert!(html.contains(&format!("href=\"{project}\"")));
        assert!(html.contains("47 more runs in LangSmith"));
        assert!(mail.text.contains(&format!("47 more runs in LangSmith: {project}")));

        let unknown = DigestContent {
            unsubscribe_url: None,
            more: 1,
            project_url: None,
            ..sample_content()
        };
        let mail = render_digest(&unknown).unwrap();
        assert!(mail.html.contains("1 more run in LangSmith"));
        assert!(mail.text.contains("1 more run in LangSmith.\n"));
    }

    #[test]
    fn only_http_run_urls_are_linked() {
        let cases = [
            ("javascript:alert(1)", false),
            ("JavaScript:alert(1)", false),
            ("  javascript:alert(1)", false),
            ("data:text/html,<script>alert(1)</script>", false),
            ("/o/x/r/y", false),
            ("https://smith.langchain.com/r/abc", true),
        ];
        for (url, linked) in cases {
            let mut e = event("r", RunStatus::Success);
            e.run_url = Some(url.into());
            let d = content(vec![DigestRun { event: e, keys: vec![] }]);
            let mail = render_digest(&d).unwrap();
            assert_eq!(mail.html.contains("Open in LangSmith"), linked, "{url}");
            assert_eq!(mail.text.contains("Open in LangSmith"), linked, "{url}");
            assert!(!mail.html.to_ascii_lowercase().contains("javascript:"), "{url}");
        }
    }

    #[test]
    fn a_link_to_another_host_is_labelled_with_its_host() {
        let mut e = event("r", RunStatus::Success);
        e.run_url = Some("https://evil.example/phish".into());
        e.run_url_trusted = false;
        let mail = render_digest(&content(vec![DigestRun { event: e, keys: vec![] }])).unwrap();
        for part in [&mail.html, &mail.text] {
            assert!(part.contains("Open run (evil.example)"), "{part}");
            assert!(!part.contains("Open in LangSmith"), "{part}");
        }
    }

    #[test]
    fn the_footer_gives_the_earliest_link_expiry_and_why_the_reader_got_it() {
        let mut d = sample_content();
        d.runs[1].keys[0].expires_at = sample_time(2026, 12, 6, 9, 15);
        let mail = render_digest(&d).unwrap();
        let expiry = "Feedback links expire in 6 days, on 2026-12-06 09:15 UTC.";
        let why = "You receive this because you are on the support-bot route's digest list \
                   (to: reviewers@example.com).";
        assert!(mail.html.contains(expiry) && mail.html.contains(why));
        assert!(mail.text.contains(expiry) && mail.text.contains(why));
    }

    #[test]
    fn cards_show_the_run_status_and_name_or_a_fallback() {
        let mut unnamed = event("x", RunStatus::Error);
        unnamed.run_name = Some("  ".into());
        let d = content(vec![DigestRun {
            event: unnamed,
            keys: vec![],
        }]);
        let mail = render_digest(&d).unwrap();
        assert!(mail.html.contains(UNNAMED_RUN) && mail.text.contains(UNNAMED_RUN));
        assert!(mail.html.contains("#a40e26"), "the error badge is red");
        assert!(mail.text.contains("[error]"));
    }
}
