//! What a digest shows, prepared once for both parts: the subject, heading, window, cards with
//! their excerpts and buttons, and the palette, with everything from a run cleaned, cut and
//! checked, so the templates (`templates/email/digest.{html,txt}`) only lay it out.

use super::content::{DigestContent, DigestRun};
use crate::domain::text::{UNNAMED_RUN, clean_block, non_blank, one_line};
use crate::domain::{ButtonStyle, RunStatus, cut};
use crate::links::{FeedbackLink, KeyLinks};
use chrono::{DateTime, Utc};

/// Longest subject produced. RFC 5322 recommends lines under 78 characters and folds longer
/// ones; inboxes show ~60–90. 150 keeps every useful part and still folds into a few lines.
pub(super) const MAX_SUBJECT_CHARS: usize = 150;
/// Longest route name or subject override quoted in the subject, so the run count always fits.
pub(super) const MAX_SUBJECT_LABEL_CHARS: usize = 100;
/// Longest input, output or error excerpt shown per run. A digest holds up to 500 runs; about
/// twenty lines each keeps a 50-run digest readable and well under Gmail's 102 KB clipping.
pub(super) const MAX_EMAIL_EXCERPT_CHARS: usize = 1_200;
/// The preview line inbox lists show after the subject: they cut at 90–140 characters.
pub(super) const MAX_PREHEADER_CHARS: usize = 140;
/// Run names, projects and button labels are identifiers, not prose.
pub(super) const MAX_SHORT_TEXT_CHARS: usize = 150;
/// A line of tags is enough to recognise a run.
pub(super) const MAX_TAGS_CHARS: usize = 200;
/// An address longer than RFC 5321's 254-character path limit cannot be a real recipient.
pub(super) const MAX_RECIPIENT_CHARS: usize = 254;

/// What both parts show: cleaned, cut and checked once, so the templates only lay it out.
pub(super) struct DigestView {
    pub(super) subject: String,
    /// "3 runs to rate".
    pub(super) heading: String,
    /// "Showing the newest 50", when runs were left out.
    pub(super) showing: Option<String>,
    pub(super) route: String,
    /// "2026-11-30 08:00–09:00 UTC".
    pub(super) window: String,
    pub(super) preheader: String,
    /// The digest's runs, then the runs still waiting for a rating.
    pub(super) cards: Vec<RunCard>,
    /// Where in `cards` the runs still waiting for a rating start, when there are some.
    pub(super) waiting_from: Option<usize>,
    /// "4 more runs in LangSmith", when runs were left out.
    pub(super) more: Option<String>,
    /// An http(s) project link, when known.
    pub(super) project_url: Option<String>,
    /// "Feedback links expire in 7 days, on 2026-12-07 09:00 UTC."
    pub(super) expiry: Option<String>,
    pub(super) recipient: String,
    /// The recipient's unsubscribe page on this service (`email.unsubscribe`).
    pub(super) unsubscribe: Option<String>,
}

/// One run's card.
pub(super) struct RunCard {
    pub(super) title: String,
    pub(super) status: &'static str,
    pub(super) badge: Palette,
    /// Label and value pairs: project, end time, tags, run id.
    pub(super) meta: Vec<(String, String)>,
    pub(super) excerpts: Vec<Excerpt>,
    /// Linked only when it is an http(s) URL: (URL, label).
    pub(super) run_url: Option<(String, String)>,
    pub(super) keys: Vec<KeyRow>,
}

/// Which part of a run an excerpt comes from; each is drawn differently so a reader tells the
/// question from the answer at a glance.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum ExcerptKind {
    Input,
    Output,
    Error,
}

/// An input, output or error excerpt.
pub(super) struct Excerpt {
    pub(super) kind: ExcerptKind,
    pub(super) text: String,
}

impl Excerpt {
    pub(super) fn label(&self) -> &'static str {
        match self.kind {
            ExcerptKind::Input => "Input",
            ExcerptKind::Output => "Output",
            ExcerptKind::Error => "Error",
        }
    }

    pub(super) fn is_input(&self) -> bool {
        self.kind == ExcerptKind::Input
    }

    pub(super) fn is_error(&self) -> bool {
        self.kind == ExcerptKind::Error
    }

    /// The lines, so the HTML can put a `<br>` between them: Outlook's Word engine ignores
    /// `white-space: pre-wrap`, which other clients use to keep the indentation.
    pub(super) fn lines(&self) -> Vec<&str> {
        self.text.split('\n').collect()
    }

    /// The text quoted with "> ", so in the plain-text part a run's own words cannot pass for
    /// the digest's lines (an answer containing "  👍 Helpful: https://…" stays inside a quote).
    pub(super) fn quoted(&self) -> String {
        self.text
            .split('\n')
            .map(|line| {
                if line.is_empty() {
                    ">".to_string()
                } else {
                    format!("> {line}")
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// One key's buttons.
pub(super) struct KeyRow {
    pub(super) label: String,
    pub(super) buttons: Vec<ButtonView>,
}

/// One feedback button.
pub(super) struct ButtonView {
    pub(super) label: String,
    pub(super) url: String,
    pub(super) palette: Palette,
}

/// Colours of a button or badge, plus the class the dark-mode block restyles.
#[derive(Clone, Copy)]
pub(super) struct Palette {
    pub(super) background: &'static str,
    pub(super) text: &'static str,
    pub(super) border: &'static str,
    pub(super) dark_class: &'static str,
}

impl Palette {
    const fn new(background: &'static str, text: &'static str, border: &'static str, dark_class: &'static str) -> Self {
        Palette {
            background,
            text,
            border,
            dark_class,
        }
    }

    /// Button colours after GitHub's: white on saturated green or red stays readable when a
    /// client inverts the message; the neutral button gets a border so it never melts into the
    /// card.
    fn of_button(style: ButtonStyle) -> Self {
        match style {
            ButtonStyle::Primary => Palette::new("#1a7f37", "#ffffff", "#1a7f37", "dm-btn-primary"),
            ButtonStyle::Danger => Palette::new("#cf222e", "#ffffff", "#cf222e", "dm-btn-danger"),
            ButtonStyle::Default => Palette::new("#f6f8fa", "#1f2328", "#d0d7de", "dm-btn-default"),
        }
    }

    /// Status badge colours: green for success, red for error, grey for the rest.
    fn of_status(status: RunStatus) -> Self {
        match status {
            RunStatus::Success => Palette::new("#dafbe1", "#116329", "#aceebb", "dm-badge-success"),
            RunStatus::Error => Palette::new("#ffebe9", "#a40e26", "#ffcecb", "dm-badge-error"),
            _ => Palette::new("#eff2f5", "#59636e", "#d1d9e0", "dm-badge-other"),
        }
    }
}

impl DigestView {
    pub(super) fn new(d: &DigestContent) -> Self {
        let shown = d.runs.len();
        let total = shown + d.more;
        let heading = format!("{total} {} to rate", plural(total, "run", "runs"));
        let route = cut(&one_line(&d.route), MAX_SUBJECT_LABEL_CHARS);
        let cards: Vec<RunCard> = d.runs.iter().chain(&d.waiting).map(RunCard::new).collect();
        let waiting_from = (!d.waiting.is_empty()).then_some(shown);
        let expires_at = d
            .runs
            .iter()
            .chain(&d.waiting)
            .flat_map(|r| &r.keys)
            .map(|k| k.expires_at)
            .min();
        DigestView {
            subject: subject(d, &heading, &route),
            showing: (d.more > 0).then(|| format!("Showing the newest {shown}")),
            window: window_text(d.window_start, d.window_end),
            preheader: preheader(d, &heading),
            more: (d.more > 0).then(|| format!("{} more {} in LangSmith", d.more, plural(d.more, "run", "runs"))),
            project_url: d.project_url.as_deref().and_then(|u| web_url(u, true)).map(|(u, _)| u),
            expiry: expires_at.map(|at| expiry_text(at, d.window_end)),
            recipient: cut(&one_line(&d.recipient), MAX_RECIPIENT_CHARS),
            // This service's own page; anything but an http(s) URL is not linked.
            unsubscribe: d
                .unsubscribe_url
                .clone()
                .filter(|u| u.starts_with("https://") || u.starts_with("http://")),
            heading,
            route,
            cards,
            waiting_from,
        }
    }

    /// Whether the card at `index` (from 0) is the first of those still waiting for a rating,
    /// under which heading both parts put it.
    pub(super) fn starts_waiting(&self, index: &usize) -> bool {
        self.waiting_from == Some(*index)
    }
}

impl RunCard {
    pub(super) fn new(run: &DigestRun) -> Self {
        let e = &run.event;
        let title = non_blank(e.run_name.as_deref())
            .map(|name| cut(&one_line(name), MAX_SHORT_TEXT_CHARS))
            .unwrap_or_else(|| UNNAMED_RUN.to_string());
        let mut meta = Vec::new();
        if let Some(project) = non_blank(e.project.as_deref()) {
            meta.push(("Project".to_string(), cut(&one_line(project), MAX_SHORT_TEXT_CHARS)));
        }
        if let Some(ended) = e.ended_at {
            meta.push(("Ended".to_string(), ended.format("%Y-%m-%d %H:%M UTC").to_string()));
        }
        match &e.fields {
            // The route chose what to show beside the project.
            Some(chosen) => {
                for f in chosen {
                    let label = cut(&one_line(&f.label), MAX_SHORT_TEXT_CHARS);
                    let value = cut(&one_line(&f.value), MAX_TAGS_CHARS);
                    if !label.is_empty() && !value.is_empty() {
                        meta.push((label, value));
                    }
                }
            }
            None => {
                let tags: Vec<String> = e.tags.iter().map(|t| one_line(t)).filter(|t| !t.is_empty()).collect();
                if !tags.is_empty() {
                    meta.push(("Tags".to_string(), cut(&tags.join(", "), MAX_TAGS_CHARS)));
                }
            }
        }
        let excerpts = [
            (ExcerptKind::Input, &e.input),
            (ExcerptKind::Output, &e.output),
            (ExcerptKind::Error, &e.error),
        ]
        .into_iter()
        .filter_map(|(kind, text)| {
            non_blank(text.as_deref()).map(|t| Excerpt {
                kind,
                text: cut(&clean_block(t), MAX_EMAIL_EXCERPT_CHARS),
            })
        })
        .collect();
        RunCard {
            title,
            status: e.status.as_str(),
            badge: Palette::of_status(e.status),
            meta,
            excerpts,
            run_url: e.run_url.as_deref().and_then(|u| web_url(u, e.run_url_trusted)),
            keys: merge_questions(run.keys.iter().filter_map(KeyRow::new).collect()),
        }
    }
}

impl KeyRow {
    /// `None` when the key has no button left to show.
    pub(super) fn new(key: &KeyLinks) -> Option<Self> {
        let buttons: Vec<ButtonView> = key.links.iter().filter_map(ButtonView::new).collect();
        (!buttons.is_empty()).then(|| KeyRow {
            label: key.question.clone(),
            buttons,
        })
    }
}

impl ButtonView {
    /// `None` for a non-http(s) link: presigned URLs come from the LangSmith API, and a
    /// misconfigured or hostile endpoint must not get a `javascript:` button into the mail.
    pub(super) fn new(link: &FeedbackLink) -> Option<Self> {
        if !matches!(link.url.scheme(), "http" | "https") {
            return None;
        }
        let label = cut(&one_line(&link.label), MAX_SHORT_TEXT_CHARS);
        Some(ButtonView {
            label: if label.is_empty() {
                crate::domain::format_score(link.score)
            } else {
                label
            },
            url: link.url.as_str().to_string(),
            palette: Palette::of_button(link.style),
        })
    }
}

/// See [`render_digest`] for the shapes.
fn subject(d: &DigestContent, heading: &str, route: &str) -> String {
    let count = if d.more > 0 {
        format!("{heading} (showing {})", d.runs.len())
    } else {
        heading.to_string()
    };
    let line = match d.subject.as_deref().map(one_line).filter(|s| !s.is_empty()) {
        Some(custom) => format!("{} — {count}", cut(&custom, MAX_SUBJECT_LABEL_CHARS)),
        None => format!("{count} — {route}"),
    };
    cut(&line, MAX_SUBJECT_CHARS)
}

/// The first run's answer (else its input or error) on one line, for the inbox preview.
fn preheader(d: &DigestContent, heading: &str) -> String {
    let first = d.runs.first().map(|r| &r.event);
    let text = first.and_then(|e| {
        non_blank(e.output.as_deref())
            .or(non_blank(e.input.as_deref()))
            .or(non_blank(e.error.as_deref()))
    });
    match text {
        Some(t) => cut(&one_line(t), MAX_PREHEADER_CHARS),
        None => heading.to_string(),
    }
}

/// "2026-11-30 08:00–09:00 UTC", or both dates when the window spans midnight.
fn window_text(start: DateTime<Utc>, end: DateTime<Utc>) -> String {
    if start.date_naive() == end.date_naive() {
        format!("{}–{} UTC", start.format("%Y-%m-%d %H:%M"), end.format("%H:%M"))
    } else {
        format!(
            "{} – {} UTC",
            start.format("%Y-%m-%d %H:%M"),
            end.format("%Y-%m-%d %H:%M")
        )
    }
}

/// "Feedback links expire in 7 days, on 2026-12-07 09:00 UTC." The distance is from the send
/// time, and rounded: a reader plans by days, not minutes.
fn expiry_text(at: DateTime<Utc>, sent: DateTime<Utc>) -> String {
    let when = at.format("%Y-%m-%d %H:%M UTC");
    let minutes = (at - sent).num_minutes();
    let distance = match minutes {
        m if m <= 0 => return format!("Feedback links expire on {when}."),
        m if m >= 36 * 60 => {
            let days = (m + 12 * 60) / (24 * 60);
            format!("{days} days")
        }
        m if m >= 90 => {
            let hours = (m + 30) / 60;
            format!("{hours} hours")
        }
        m => format!("{m} {}", plural(m as usize, "minute", "minutes")),
    };
    format!("Feedback links expire in {distance}, on {when}.")
}

/// Keys in a row that ask the same question share one row of buttons.
fn merge_questions(rows: Vec<KeyRow>) -> Vec<KeyRow> {
    let mut out: Vec<KeyRow> = Vec::with_capacity(rows.len());
    for row in rows {
        match out.last_mut() {
            Some(last) if last.label == row.label => last.buttons.extend(row.buttons),
            _ => out.push(row),
        }
    }
    out
}

/// The URL, normalised, when it parses as http(s); anything else (`javascript:`, `data:`, a
/// bare path) is not linked at all.
/// An http(s) run link and its label ([`crate::domain::run_link_label`]).
fn web_url(s: &str, trusted: bool) -> Option<(String, String)> {
    let url = url::Url::parse(s.trim()).ok()?;
    (matches!(url.scheme(), "http" | "https") && url.host_str().is_some())
        .then(|| (url.to_string(), crate::domain::run_link_label(&url, trusted)))
}

fn plural(n: usize, one: &'static str, many: &'static str) -> &'static str {
    if n == 1 { one } else { many }
}
