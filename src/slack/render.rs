//! Slack rendering: a [`RunEvent`] and its feedback links become one Block Kit message
//! (header, status fields, input/output excerpts, a context line, one actions block per key).
//! Pure: no I/O, no clock. Everything from a run is untrusted and goes through
//! [`escape_mrkdwn`]; presigned feedback URLs appear only in button `url`s, never in text,
//! because Slack's unfurler GETs URLs it finds in text and a GET on a presigned link records
//! feedback. [`check_limits`] states Slack's size limits as a checkable list.

use crate::domain::slack_limits::*;
use crate::domain::text::{UNNAMED_RUN, collapse_whitespace, is_bidi_control, non_blank};
use crate::domain::{AfterVote, ButtonMode, ButtonStyle, ButtonValue, MAX_BUTTON_VALUE, RunEvent, RunStatus};
use crate::links::KeyLinks;
use slack_morphism::prelude::*;
use std::collections::{HashMap, HashSet};

/// Longest fallback text we send. Slack accepts far more, but the fallback is what a mobile
/// notification shows: one readable line, not an essay.
const MAX_FALLBACK_TEXT: usize = 3_000;
/// How much of a run name or project the fallback line quotes, so a hostile 60 KB name cannot
/// crowd out the status.
const MAX_FALLBACK_PART: usize = 150;
/// Short values in the status fields: a project name is an identifier, not prose.
const MAX_FIELD_VALUE: usize = 300;
/// Tags can be many; a line of them is enough to recognise a run.
const MAX_TAGS_TEXT: usize = 500;
/// Slack takes ten fields in a section.
const MAX_SECTION_FIELDS: usize = 10;
/// A chosen field's title: a name made readable.
const MAX_FIELD_TITLE: usize = 80;

/// Escapes untrusted text for Slack mrkdwn (and the fallback `text`): `&` first so the entities
/// added for `<` and `>` are not escaped again, then `<` and `>`, which is what stops
/// `<!channel>` from pinging everyone and `<https://evil|click>` from disguising a link.
/// Control characters other than `\n` and `\t` are dropped (they garble clients and logs), as
/// are the Unicode bidi overrides and isolates, which can make text read differently from what
/// it is.
pub fn escape_mrkdwn(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let bytes = s.as_bytes();
    // Runs of characters kept as they are are copied whole; printable ASCII other than `&`,
    // `<` and `>` is decided by its byte, anything else by its character.
    let mut kept_from = 0;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if (b' '..=b'~').contains(&b) && !matches!(b, b'&' | b'<' | b'>') || b == b'\n' || b == b'\t' {
            i += 1;
            continue;
        }
        let c = s[i..].chars().next().expect("a character starts here");
        let piece = Escaped::of(c);
        if !matches!(piece, Some(Escaped::Char(_))) {
            out.push_str(&s[kept_from..i]);
            if let Some(piece) = piece {
                piece.push_to(&mut out);
            }
            kept_from = i + c.len_utf8();
        }
        i += c.len_utf8();
    }
    out.push_str(&s[kept_from..]);
    out
}

/// Renders the Slack message for one run.
///
/// `route` is the route that sent it (shown in the context line); `keys` are the run's minted
/// feedback links, one [`KeyLinks`] per key, in display order. The result always passes
/// [`check_limits`]: long excerpts are cut with "…", over-long button URLs are skipped, and
/// when keys do not fit in 50 blocks the last ones are dropped with a note.
pub fn render_run_message(event: &RunEvent, route: &str, keys: &[KeyLinks]) -> SlackMessageContent {
    render_run_message_with(event, route, keys, &VotesView::default())
}

/// What a message shows of its votes and the values its buttons carry: the first send has
/// the job (for the values) and no votes; an update after a vote has both.
#[derive(Debug, Default, Clone)]
pub struct VotesView {
    /// The job whose message this is and its route, for the buttons' values (`None`: no
    /// values, as in previews).
    pub job: Option<i64>,
    /// The job's route.
    pub route: Option<String>,
    /// What a vote changes.
    pub after_vote: AfterVote,
    /// The votes so far, oldest first.
    pub votes: Vec<VoteView>,
    /// The tokens have expired: the buttons give way to a note.
    pub expired: bool,
    /// How the buttons work.
    pub buttons: ButtonMode,
    /// Show the route's name (`show = { route = true }`).
    pub show_route: bool,
}

/// One vote as a tally shows it: who chose which button of which key. The caller builds it
/// from whatever it stores, so rendering depends on no store row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoteView {
    /// The key rated.
    pub key: String,
    /// Which of the key's buttons, from 0.
    pub choice: u32,
    /// The button's label when the vote was given (shown if the key has no such button now).
    pub label: String,
    /// The Slack user id, or the email recipient.
    pub voter: String,
}

impl VotesView {
    /// Each voter's latest vote on `key`, in the order voters first voted.
    fn latest(&self, key: &str) -> Vec<&VoteView> {
        let mut order: Vec<&str> = Vec::new();
        let mut latest: HashMap<&str, &VoteView> = HashMap::new();
        for v in self.votes.iter().filter(|v| v.key == key) {
            if !latest.contains_key(v.voter.as_str()) {
                order.push(&v.voter);
            }
            latest.insert(&v.voter, v);
        }
        order.iter().map(|voter| latest[voter]).collect()
    }
}

/// Most voters a tally names; the rest are counted.
const MAX_VOTERS_SHOWN: usize = 20;

/// Longest question shown above a row of buttons.
const MAX_QUESTION_CHARS: usize = 150;

/// Longest text of a side of Slack's `feedback_buttons`.
const MAX_FEEDBACK_BUTTON_TEXT: usize = 75;

/// `<@U123>` for a Slack user id, which is letters and digits; anything else is not mentioned.
fn mention(voter: &str) -> Option<String> {
    (!voter.is_empty() && voter.len() <= 32 && voter.chars().all(|c| c.is_ascii_alphanumeric()))
        .then(|| format!("<@{voter}>"))
}

/// "👍 Helpful 2 · 👎 Not helpful 1 — <@U1>, <@U2>, <@U3>": counts per button (people, each
/// with their latest choice), then who rated.
fn tally_line(key: &KeyLinks, votes: &[&VoteView]) -> String {
    let mut parts = Vec::new();
    for (choice, link) in key.links.iter().enumerate() {
        let n = votes.iter().filter(|v| v.choice as usize == choice).count();
        if n > 0 {
            parts.push(format!("{} {n}", escape_mrkdwn(&one_line(&link.label))));
        }
    }
    let mut who: Vec<String> = votes.iter().filter_map(|v| mention(&v.voter)).collect();
    if who.len() > MAX_VOTERS_SHOWN {
        let more = who.len() - MAX_VOTERS_SHOWN;
        who.truncate(MAX_VOTERS_SHOWN);
        who.push(format!("and {more} more"));
    }
    format!("{} — {}", parts.join(" · "), who.join(", "))
}

/// Renders the Slack message for one run with `view`'s votes and button values.
pub fn render_run_message_with(
    event: &RunEvent,
    route: &str,
    keys: &[KeyLinks],
    view: &VotesView,
) -> SlackMessageContent {
    let mut blocks: Vec<SlackBlock> = vec![header_block(event), fields_block(event)];
    if let Some(input) = non_blank(event.input.as_deref()) {
        blocks.push(excerpt_block("Input", input));
    }
    if let Some(output) = non_blank(event.output.as_deref()) {
        blocks.push(excerpt_block("Output", output));
    }
    if let Some(error) = non_blank(event.error.as_deref()) {
        blocks.push(excerpt_block("Error", error));
    }
    blocks.extend(context_block(event, view.show_route.then_some(route), keys));

    // Keys in a row that ask the same question share a row of buttons.
    let mut groups: Vec<Vec<SlackBlock>> = Vec::new();
    let mut first = 0;
    while first < keys.len() {
        let end = (first + 1..keys.len())
            .find(|&i| keys[i].question != keys[first].question)
            .unwrap_or(keys.len());
        let group = question_blocks(first, &keys[first..end], view);
        if !group.is_empty() {
            groups.push(group);
        }
        first = end;
    }
    let needed: usize = groups.iter().map(Vec::len).sum();
    if blocks.len() + needed <= MAX_BLOCKS {
        blocks.extend(groups.into_iter().flatten());
    } else {
        // Keys are in configured order, most important first: keep whole keys from the front
        // (half a key's buttons would be a misleading scale) and say what was left out, so a
        // reader knows to rate the rest in LangSmith. One block is kept for that note.
        let budget = MAX_BLOCKS - blocks.len() - 1;
        let mut used = 0;
        let mut shown = 0;
        for group in &groups {
            if used + group.len() > budget {
                break;
            }
            used += group.len();
            shown += 1;
        }
        let dropped = groups.len() - shown;
        blocks.extend(groups.into_iter().take(shown).flatten());
        let note = format!(
            "{dropped} more feedback {} not shown: Slack allows {MAX_BLOCKS} blocks per message.",
            if dropped == 1 { "key" } else { "keys" }
        );
        blocks.push(SlackContextBlock::new(vec![mrkdwn(note).into()]).into());
    }

    SlackMessageContent::new()
        .with_text(fallback_text(event))
        .with_blocks(blocks)
}

/// Every Slack limit `content` breaks (PROTOCOLS.md "Slack", plus Slack's field, context and
/// block-id limits), as sentences a person can act on. Empty means Slack should accept it.
pub fn check_limits(content: &SlackMessageContent) -> Vec<String> {
    let mut problems = Vec::new();
    if content.text.as_deref().is_none_or(|t| t.trim().is_empty()) {
        problems.push("the fallback text is missing (mobile notifications show only it)".to_string());
    }
    let blocks = content.blocks.as_deref().unwrap_or_default();
    if blocks.len() > MAX_BLOCKS {
        problems.push(format!(
            "the message has {} blocks (Slack allows {MAX_BLOCKS})",
            blocks.len()
        ));
    }
    let mut block_ids = HashSet::new();
    let mut action_ids = HashSet::new();
    for (i, block) in blocks.iter().enumerate() {
        let at = format!("block {} ({})", i + 1, block_kind(block));
        if let Some(id) = block_id(block) {
            if chars(&id.0) > MAX_ACTION_ID {
                problems.push(format!(
                    "{at}: block_id is {} characters (Slack allows {MAX_ACTION_ID})",
                    chars(&id.0)
                ));
            }
            if !block_ids.insert(id.0.clone()) {
                problems.push(format!("{at}: block_id {:?} is used more than once", id.0));
            }
        }
        match block {
            SlackBlock::Header(h) => {
                let n = chars(&plain_only_text(&h.text));
                if n > MAX_HEADER_TEXT {
                    problems.push(format!(
                        "{at}: header text is {n} characters (Slack allows {MAX_HEADER_TEXT})"
                    ));
                }
            }
            SlackBlock::Section(s) => {
                if let Some(text) = &s.text {
                    let n = chars(block_text(text));
                    if n > MAX_SECTION_TEXT {
                        problems.push(format!(
                            "{at}: text is {n} characters (Slack allows {MAX_SECTION_TEXT})"
                        ));
                    }
                }
                let fields = s.fields.as_deref().unwrap_or_default();
                if fields.len() > MAX_FIELDS {
                    problems.push(format!("{at}: {} fields (Slack allows {MAX_FIELDS})", fields.len()));
                }
                for (j, field) in fields.iter().enumerate() {
                    let n = chars(block_text(field));
                    if n > MAX_FIELD_TEXT {
                        problems.push(format!(
                            "{at}: field {} is {n} characters (Slack allows {MAX_FIELD_TEXT})",
                            j + 1
                        ));
                    }
                }
                if let Some(SlackSectionBlockElement::Button(b)) = &s.accessory {
                    check_button(&format!("{at}: accessory button"), b, &mut action_ids, &mut problems);
                }
            }
            SlackBlock::Actions(a) => {
                if a.elements.is_empty() {
                    problems.push(format!("{at}: has no elements (Slack requires at least one)"));
                }
                if a.elements.len() > MAX_ACTIONS_ELEMENTS {
                    problems.push(format!(
                        "{at}: {} elements (Slack allows {MAX_ACTIONS_ELEMENTS})",
                        a.elements.len()
                    ));
                }
                for (j, element) in a.elements.iter().enumerate() {
                    if let SlackActionBlockElement::Button(b) = element {
                        check_button(&format!("{at}: button {}", j + 1), b, &mut action_ids, &mut problems);
                    }
                }
            }
            SlackBlock::Context(c) => {
                if c.elements.is_empty() {
                    problems.push(format!("{at}: has no elements (Slack requires at least one)"));
                }
                if c.elements.len() > MAX_CONTEXT_ELEMENTS {
                    problems.push(format!(
                        "{at}: {} elements (Slack allows {MAX_CONTEXT_ELEMENTS})",
                        c.elements.len()
                    ));
                }
            }
            _ => {}
        }
    }
    problems
}

fn check_button(
    at: &str,
    button: &SlackBlockButtonElement,
    action_ids: &mut HashSet<String>,
    problems: &mut Vec<String>,
) {
    let n = chars(&plain_only_text(&button.text));
    if n > MAX_BUTTON_TEXT {
        problems.push(format!("{at}: text is {n} characters (Slack allows {MAX_BUTTON_TEXT})"));
    }
    if let Some(url) = &button.url {
        let n = chars(url.as_str());
        if n > MAX_BUTTON_URL {
            problems.push(format!("{at}: url is {n} characters (Slack allows {MAX_BUTTON_URL})"));
        }
    }
    if let Some(value) = &button.value {
        let n = chars(value);
        if n > MAX_BUTTON_VALUE {
            problems.push(format!(
                "{at}: value is {n} characters (Slack allows {MAX_BUTTON_VALUE})"
            ));
        }
    }
    if let Some(id) = &button.action_id {
        let n = chars(&id.0);
        if n > MAX_ACTION_ID {
            problems.push(format!(
                "{at}: action_id is {n} characters (Slack allows {MAX_ACTION_ID})"
            ));
        }
        if !action_ids.insert(id.0.clone()) {
            problems.push(format!(
                "{at}: action_id {:?} is used more than once in the message",
                id.0
            ));
        }
    }
}

fn header_block(event: &RunEvent) -> SlackBlock {
    // A header is plain_text, which Slack does not parse for mentions; it is escaped anyway so
    // that a `<!channel>` run name never reaches the payload verbatim (previews, logs, the
    // outbox, other clients). The cost, if a client ever showed entities literally, would be a
    // cosmetic `&amp;` in a title.
    let name = non_blank(event.run_name.as_deref())
        .map(one_line)
        .filter(|n| !n.is_empty());
    let text = escape_cut(name.as_deref().unwrap_or(UNNAMED_RUN), MAX_HEADER_TEXT);
    SlackHeaderBlock::new(SlackBlockPlainTextOnly::from(text)).into()
}

fn fields_block(event: &RunEvent) -> SlackBlock {
    let project = event
        .project
        .as_deref()
        .or(event.project_id.as_deref())
        .map(one_line)
        .filter(|p| !p.is_empty());
    let mut fields = vec![
        field(
            "Project",
            &escape_cut(project.as_deref().unwrap_or("unknown"), MAX_FIELD_VALUE),
        ),
        field(
            "Status",
            &format!("{} {}", status_emoji(event.status), event.status.as_str()),
        ),
        field("Source", event.source.as_str()),
    ];
    match &event.fields {
        // The route chose what to show beside the project and status.
        Some(chosen) => {
            for f in chosen.iter().take(MAX_SECTION_FIELDS - fields.len()) {
                let title = escape_cut(&one_line(&f.label), MAX_FIELD_TITLE);
                fields.push(field(&title, &escape_cut(&one_line(&f.value), MAX_FIELD_VALUE)));
            }
        }
        None if !event.tags.is_empty() => {
            let tags = one_line(&event.tags.join(", "));
            fields.push(field("Tags", &escape_cut(&tags, MAX_TAGS_TEXT)));
        }
        None => {}
    }
    SlackSectionBlock::new().with_fields(fields).into()
}

/// `value` must already be escaped.
fn field(title: &str, value: &str) -> SlackBlockText {
    mrkdwn(format!("*{title}*\n{value}")).into()
}

fn status_emoji(status: RunStatus) -> &'static str {
    match status {
        RunStatus::Success => "✅",
        RunStatus::Error => "❌",
        RunStatus::Timeout => "⏱",
        RunStatus::Interrupted => "⏸",
        RunStatus::Pending => "⏳",
        RunStatus::Other => "❔",
    }
}

/// A titled section with `text` in a code block: monospace keeps JSON excerpts and line breaks
/// readable, and the whole section stays within Slack's section limit.
fn excerpt_block(title: &str, text: &str) -> SlackBlock {
    let open = format!("*{title}*\n```\n");
    let close = "\n```";
    let budget = MAX_SECTION_TEXT - chars(&open) - chars(close);
    let body = escape_cut(&defuse_fences(text.trim()), budget);
    SlackSectionBlock::new()
        .with_text(mrkdwn(format!("{open}{body}{close}")).into())
        .into()
}

/// Stops untrusted text from closing our code block early (and formatting the rest as
/// mrkdwn): a zero-width space between adjacent backticks means "```" never occurs.
fn defuse_fences(text: &str) -> String {
    if !text.contains("``") {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    let mut previous = None;
    for c in text.chars() {
        if c == '`' && previous == Some('`') {
            out.push('\u{200B}');
        }
        out.push(c);
        previous = Some(c);
    }
    out
}

fn context_block(event: &RunEvent, route: Option<&str>, keys: &[KeyLinks]) -> Option<SlackBlock> {
    let mut elements: Vec<SlackContextBlockElement> = Vec::new();
    if let Some((url, label)) = event
        .run_url
        .as_deref()
        .and_then(|u| run_link_target(u, event.run_url_trusted))
    {
        elements.push(mrkdwn(format!("<{url}|{label}>")).into());
    }
    // The tokens of one run are minted together, but each has its own expiry: the earliest is
    // when the message stops fully working.
    if let Some(expires) = keys.iter().map(|k| k.expires_at).min() {
        let fallback = expires.format("%Y-%m-%d %H:%M UTC");
        // Slack shows the date in each reader's own time zone; the text after `|` is for
        // clients that cannot.
        elements.push(
            mrkdwn(format!(
                "Links expire <!date^{}^{{date_short_pretty}} {{time}}|{fallback}>",
                expires.timestamp()
            ))
            .into(),
        );
    }
    if let Some(route) = route {
        elements.push(mrkdwn(format!("Route `{}`", escape_cut(&one_line(route), MAX_FIELD_VALUE))).into());
    }
    // Slack refuses a context block without elements.
    (!elements.is_empty()).then(|| SlackContextBlock::new(elements).into())
}

/// The run URL as it may appear inside `<…|label>`, with its label, or `None` when it must not
/// be linked: only absolute http(s) URLs with a host (no `javascript:`, `data:` or `slack:`), and
/// never a feedback-token endpoint, whose GET would record feedback if anything fetched it. The
/// label says "Open in LangSmith" only for a trusted host ([`crate::domain::run_link_label`]).
fn run_link_target(raw: &str, trusted: bool) -> Option<(String, String)> {
    let url = url::Url::parse(raw.trim()).ok()?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
        return None;
    }
    if url.path().contains("/feedback/tokens") {
        return None;
    }
    // The parser has already percent-encoded `<`, `>`, spaces and quotes; `|` would end the
    // URL part of Slack's link syntax, so it is encoded too. `&` (in queries) is escaped as an
    // entity, which Slack decodes inside links as everywhere else.
    let serialized = url.as_str().replace('|', "%7C");
    if serialized.chars().any(char::is_control) {
        return None;
    }
    Some((
        escape_mrkdwn(&serialized),
        escape_mrkdwn(&crate::domain::run_link_label(&url, trusted)),
    ))
}

/// The blocks of keys in a row that ask the same question: the question, then one row of their
/// buttons (in chunks of 25), then per key what the votes show (a tally, who locked it). Empty
/// when no key has a usable button and nothing is to be said of it.
fn question_blocks(first: usize, group: &[KeyLinks], view: &VotesView) -> Vec<SlackBlock> {
    let note = |text: String| -> SlackBlock { SlackContextBlock::new(vec![mrkdwn(text).into()]).into() };
    let question = escape_cut(&one_line(&group[0].question), MAX_QUESTION_CHARS);
    let mut row: Vec<SlackActionBlockElement> = Vec::new();
    let mut after: Vec<SlackBlock> = Vec::new();
    let mut native: Option<SlackBlock> = None;
    for (offset, key) in group.iter().enumerate() {
        let index = first + offset;
        let votes = view.latest(key.key.as_str());
        let tally = (!votes.is_empty() && view.after_vote == AfterVote::Tally).then(|| note(tally_line(key, &votes)));
        if view.expired {
            after.extend(tally);
            continue;
        }
        if view.after_vote == AfterVote::Lock
            && let Some(first_vote) = view.votes.iter().find(|v| v.key == key.key.as_str())
        {
            let label = key.links.get(first_vote.choice as usize).map_or_else(
                || escape_mrkdwn(&first_vote.label),
                |l| escape_mrkdwn(&one_line(&l.label)),
            );
            let by = mention(&first_vote.voter).unwrap_or_else(|| "someone".into());
            after.push(note(format!("Rated {label} by {by}")));
            continue;
        }
        if group.len() == 1
            && let Some(block) = native_block(index, key, view)
        {
            native = Some(block);
        } else {
            row.extend(key_buttons(index, key, view));
        }
        after.extend(tally);
    }
    if view.expired {
        after.push(note("The rating links of this message have expired.".to_string()));
    }
    if row.is_empty() && native.is_none() && after.is_empty() {
        return Vec::new();
    }
    let mut blocks = vec![note(format!("*{question}*"))];
    blocks.extend(native);
    for (chunk, elements) in row.chunks(MAX_ACTIONS_ELEMENTS).enumerate() {
        let block_id = if chunk == 0 {
            format!("fd_key_{first}")
        } else {
            format!("fd_key_{first}_{chunk}")
        };
        blocks.push(
            SlackActionsBlock::new(elements.to_vec())
                .with_block_id(SlackBlockId(block_id))
                .into(),
        );
    }
    blocks.extend(after);
    blocks
}

/// The value a button of `key` carries: the job, route, key and choice, so a click that Slack
/// forwards (Interactivity) can be counted; never the token.
fn button_value(key: &KeyLinks, button: usize, view: &VotesView) -> Option<String> {
    let (job, route) = (view.job?, view.route.as_deref()?);
    let value = ButtonValue {
        job,
        route: route.to_string(),
        key: key.key.as_str().to_string(),
        choice: button,
    }
    .encode();
    (value.len() <= MAX_BUTTON_VALUE).then_some(value)
}

/// A button label from the operator's config: plain_text is not parsed for mentions, so only
/// control characters are dropped ("Q&A" stays "Q&A").
fn button_label(label: &str, max: usize) -> String {
    let label: String = label.chars().filter(|&c| Escaped::of(c).is_some()).collect();
    let label = cut_chars(&one_line(&label), max);
    if label.is_empty() { "…".to_string() } else { label }
}

/// Whether the view's buttons submit through this service (no URL).
fn submits(view: &VotesView) -> bool {
    view.buttons.submits() && view.job.is_some()
}

/// Slack's own feedback control for a key of exactly two buttons in native mode: its two sides
/// carry the values; no URL, no style.
fn native_block(index: usize, key: &KeyLinks, view: &VotesView) -> Option<SlackBlock> {
    if !submits(view) || view.buttons != ButtonMode::Native {
        return None;
    }
    let [positive, negative] = key.links.as_slice() else {
        return None;
    };
    let (up, down) = (button_value(key, 0, view)?, button_value(key, 1, view)?);
    let item = |link: &crate::links::FeedbackLink, value: String| SlackFeedbackButtonItem {
        text: SlackBlockPlainTextOnly::from(button_label(&link.label, MAX_FEEDBACK_BUTTON_TEXT)),
        value,
        accessibility_label: None,
    };
    let element = SlackBlockFeedbackButtonsElement {
        action_id: Some(SlackActionId(format!("fd:{index}:feedback"))),
        positive_button: item(positive, up),
        negative_button: item(negative, down),
    };
    Some(
        SlackContextActionsBlock {
            block_id: Some(SlackBlockId(format!("fd_key_{index}"))),
            elements: vec![element.into()],
        }
        .into(),
    )
}

/// The buttons of one key: link buttons, or in interactive mode buttons without a URL.
fn key_buttons(index: usize, key: &KeyLinks, view: &VotesView) -> Vec<SlackActionBlockElement> {
    let submits = submits(view);
    key.links
        .iter()
        .enumerate()
        // A URL over Slack's limit cannot be sent, and a cut one would submit the wrong thing.
        .filter(|(_, link)| submits || chars(link.url.as_str()) <= MAX_BUTTON_URL)
        .map(|(button, link)| {
            // Position-based ids are short, unique per message, and reveal nothing of the token.
            let mut element = SlackBlockButtonElement::new(SlackBlockPlainTextOnly::from(button_label(
                &link.label,
                MAX_BUTTON_TEXT,
            )))
            .with_action_id(SlackActionId(format!("fd:{index}:{button}")));
            // Interactive buttons carry no URL: their clicks come only to this service.
            if !submits {
                element = element.with_url(link.url.clone());
            }
            if let Some(value) = button_value(key, button, view) {
                element = element.with_value(value);
            }
            let element = match link.style {
                ButtonStyle::Primary => element.with_style(SlackBlockButtonStyle::Primary),
                ButtonStyle::Danger => element.with_style(SlackBlockButtonStyle::Danger),
                ButtonStyle::Default => element,
            };
            element.into()
        })
        .collect()
}

/// "<run> (<project>) finished: <status> — rate it in Slack": what notifications and clients
/// without Block Kit show. Escaped like any mrkdwn, and built only from run fields, so a
/// feedback URL can never end up in it.
fn fallback_text(event: &RunEvent) -> String {
    let name = non_blank(event.run_name.as_deref())
        .map(one_line)
        .filter(|n| !n.is_empty());
    let name = escape_cut(name.as_deref().unwrap_or(UNNAMED_RUN), MAX_FALLBACK_PART);
    let project = event
        .project
        .as_deref()
        .map(one_line)
        .filter(|p| !p.is_empty())
        .map(|p| format!(" ({})", escape_cut(&p, MAX_FALLBACK_PART)))
        .unwrap_or_default();
    let text = format!("{name}{project} finished: {} — rate it in Slack", event.status.as_str());
    // Cannot trigger with the part caps above; kept so the limit holds if they change.
    cut_chars(&text, MAX_FALLBACK_TEXT)
}

/// A mrkdwn text object. `verbatim` stops Slack from auto-linking bare URLs and channel names
/// and from parsing mentions in untrusted text; our explicit `<url|…>` and `<!date…>` still work.
fn mrkdwn(text: String) -> SlackBlockMarkDownText {
    SlackBlockMarkDownText::new(text).with_verbatim(true)
}

/// One character of escaped output: kept, replaced by an entity, or (`None`) dropped.
enum Escaped {
    Char(char),
    Entity(&'static str),
}

impl Escaped {
    fn of(c: char) -> Option<Self> {
        match c {
            '&' => Some(Escaped::Entity("&amp;")),
            '<' => Some(Escaped::Entity("&lt;")),
            '>' => Some(Escaped::Entity("&gt;")),
            '\n' | '\t' => Some(Escaped::Char(c)),
            c if c.is_control() || is_bidi_control(c) => None,
            c => Some(Escaped::Char(c)),
        }
    }

    fn chars(&self) -> usize {
        match self {
            Escaped::Char(_) => 1,
            Escaped::Entity(e) => e.len(),
        }
    }

    fn push_to(&self, out: &mut String) {
        match self {
            Escaped::Char(c) => out.push(*c),
            Escaped::Entity(e) => out.push_str(e),
        }
    }
}

/// Escapes `text` and cuts the result to at most `max` characters (as Slack counts them, after
/// escaping), ending in "…" when anything was dropped. Cutting per source character means an
/// entity such as `&amp;` is never split into a stray `&am`.
fn escape_cut(text: &str, max: usize) -> String {
    let escaped = escape_mrkdwn(text);
    if chars(&escaped) <= max {
        return escaped;
    }
    let budget = max.saturating_sub(1);
    let mut out = String::new();
    let mut used = 0;
    for piece in text.chars().filter_map(Escaped::of) {
        if used + piece.chars() > budget {
            break;
        }
        used += piece.chars();
        piece.push_to(&mut out);
    }
    out.push('…');
    out
}

/// Cuts already-safe text to `max` characters with "…".
fn cut_chars(text: &str, max: usize) -> String {
    crate::domain::cut(text, max)
}

/// Collapses all whitespace (newlines included) to single spaces, for one-line places such as
/// the header, fields and the fallback (escaping drops control characters after).
fn one_line(text: &str) -> String {
    collapse_whitespace(text)
}

fn chars(text: &str) -> usize {
    text.chars().count()
}

fn plain_only_text(text: &SlackBlockPlainTextOnly) -> String {
    // slack-morphism keeps the inner text private; the conversion is its public way out.
    match SlackBlockText::from(text.clone()) {
        SlackBlockText::Plain(p) => p.text,
        SlackBlockText::MarkDown(m) => m.text,
    }
}

fn block_text(text: &SlackBlockText) -> &str {
    match text {
        SlackBlockText::Plain(p) => &p.text,
        SlackBlockText::MarkDown(m) => &m.text,
    }
}

fn block_kind(block: &SlackBlock) -> &'static str {
    match block {
        SlackBlock::Section(_) => "section",
        SlackBlock::Header(_) => "header",
        SlackBlock::Actions(_) => "actions",
        SlackBlock::Context(_) => "context",
        SlackBlock::Divider(_) => "divider",
        _ => "other",
    }
}

fn block_id(block: &SlackBlock) -> Option<&SlackBlockId> {
    match block {
        SlackBlock::Section(b) => b.block_id.as_ref(),
        SlackBlock::Header(b) => b.block_id.as_ref(),
        SlackBlock::Actions(b) => b.block_id.as_ref(),
        SlackBlock::Context(b) => b.block_id.as_ref(),
        SlackBlock::Divider(b) => b.block_id.as_ref(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{FeedbackKey, RunId, Source};
    use crate::links::FeedbackLink;
    use chrono::{TimeZone, Utc};
    use serde_json::Value;

    const TOKEN_BASE: &str = "https://api.smith.langchain.com/api/v1/feedback/tokens";

    fn event() -> RunEvent {
        RunEvent {
            run_id: RunId::parse("21d04a73-4101-4c4b-8915-bc8f5010a2dd").unwrap(),
            source: Source::AgentServer,
            project: Some("support-bot".into()),
            project_id: None,
            run_name: Some("support_agent".into()),
            status: RunStatus::Success,
            input: Some("How do I reset my password?".into()),
            output: Some("Open Settings → Security → Reset.".into()),
            error: None,
            tags: vec!["prod".into()],
            metadata: serde_json::Map::new(),
            run_url: Some("https://smith.langchain.com/o/1/projects/p/2/r/3?trace_id=4&start_time=5".into()),
            run_url_trusted: true,
            feedback_keys: vec![],
            started_at: None,
            ended_at: None,
            fields: None,
        }
    }

    fn link(key: &str, token: u32, label: &str, score: f64, style: ButtonStyle) -> FeedbackLink {
        FeedbackLink {
            key: FeedbackKey::parse(key).unwrap(),
            label: label.into(),
            style,
            score,
            url: url::Url::parse(&format!(
                "{TOKEN_BASE}/00000000-0000-0000-0000-{token:012}?score={}",
                crate::domain::format_score(score)
            ))
            .unwrap(),
        }
    }

    fn key(name: &str, links: Vec<FeedbackLink>, expires_hour: u32) -> KeyLinks {
        let key = FeedbackKey::parse(name).unwrap();
        KeyLinks {
            question: key.readable(),
            key,
            links,
            expires_at: Utc.with_ymd_and_hms(2026, 9, 5, expires_hour, 15, 0).unwrap(),
        }
    }

    fn thumbs(token: u32, expires_hour: u32) -> KeyLinks {
        key(
            "thumbs_up",
            vec![
                link("thumbs_up", token, "👍", 1.0, ButtonStyle::Primary),
                link("thumbs_up", token, "👎", 0.0, ButtonStyle::Danger),
            ],
            expires_hour,
        )
    }

    fn many_buttons(name: &str, token: u32, count: usize) -> KeyLinks {
        let links = (0..count)
            .map(|i| link(name, token, &format!("{i}"), i as f64, ButtonStyle::Default))
            .collect();
        key(name, links, 12)
    }

    fn blocks(content: &SlackMessageContent) -> &[SlackBlock] {
        content.blocks.as_deref().unwrap()
    }

    fn actions(content: &SlackMessageContent) -> Vec<&SlackActionsBlock> {
        blocks(content)
            .iter()
            .filter_map(|b| match b {
                SlackBlock::Actions(a) => Some(a),
                _ => None,
            })
            .collect()
    }

    fn buttons(block: &SlackActionsBlock) -> Vec<&SlackBlockButtonElement> {
        block
            .elements
            .iter()
            .filter_map(|e| match e {
                SlackActionBlockElement::Button(b) => Some(b),
                _ => None,
            })
            .collect()
    }

    fn section_texts(content: &SlackMessageContent) -> Vec<String> {
        blocks(content)
            .iter()
            .filter_map(|b| match b {
                SlackBlock::Section(s) => s.text.as_ref().map(|t| block_text(t).to_string()),
                _ => None,
            })
            .collect()
    }

    fn context_texts(content: &SlackMessageContent) -> Vec<String> {
        blocks(content)
            .iter()
            .filter_map(|b| match b {
                SlackBlock::Context(c) => Some(c),
                _ => None,
            })
            .flat_map(|c| &c.elements)
            .filter_map(|e| match e {
                SlackContextBlockElement::MarkDown(m) => Some(m.text.clone()),
                _ => None,
            })
            .collect()
    }

    /// Strings containing a token path anywhere except a button's `url`, with their JSON path.
    fn token_urls_outside_buttons(value: &Value, path: &str, found: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                let is_button = map.get("type").and_then(Value::as_str) == Some("button");
                for (k, v) in map {
                    if is_button && k == "url" && v.is_string() {
                        continue;
                    }
                    token_urls_outside_buttons(v, &format!("{path}.{k}"), found);
                }
            }
            Value::Array(items) => {
                for (i, v) in items.iter().enumerate() {
                    token_urls_outside_buttons(v, &format!("{path}[{i}]"), found);
                }
            }
            Value::String(s) if s.contains("/feedback/tokens/") => found.push(path.to_string()),
            _ => {}
        }
    }

    #[test]
    fn escaping_covers_ampersand_first_then_angle_brackets_and_drops_control_characters() {
        assert_eq!(escape_mrkdwn("a & <b> &lt;"), "a &amp; &lt;b&gt; &amp;lt;");
        assert_eq!(
            escape_mrkdwn("line\none\ttab\u{7}\r\u{1b}[31m\u{202E}x"),
            "line\none\ttab[31mx"
        );
        assert_eq!(escape_mrkdwn("<!channel>"), "&lt;!channel&gt;");
    }

    #[test]
    fn cutting_escaped_text_never_splits_an_entity() {
        let cut = escape_cut(&"&".repeat(10), 12);
        assert_eq!(cut, "&amp;&amp;…");
        assert_eq!(escape_cut("short", 10), "short");
    }

    #[test]
    fn the_message_for_a_normal_run_has_header_fields_excerpts_context_and_one_actions_block_per_key() {
        let keys = vec![
            thumbs(1, 9),
            key(
                "correctness",
                vec![
                    link("correctness", 2, "Right", 1.0, ButtonStyle::Primary),
                    link("correctness", 2, "Half", 0.5, ButtonStyle::Default),
                ],
                10,
            ),
        ];

        let content = render_run_message(&event(), "support", &keys);

        assert!(check_limits(&content).is_empty(), "{:?}", check_limits(&content));
        let all = blocks(&content);
        let SlackBlock::Header(header) = &all[0] else {
            panic!("first block is not a header: {:?}", all[0])
        };
        assert_eq!(plain_only_text(&header.text), "support_agent");
        let SlackBlock::Section(fields) = &all[1] else {
            panic!("second block is not the fields section")
        };
        let fields: Vec<&str> = fields.fields.as_deref().unwrap().iter().map(block_text).collect();
        assert_eq!(
            fields,
            [
                "*Project*\nsupport-bot",
                "*Status*\n✅ success",
                "*Source*\nagent_server",
                "*Tags*\nprod"
            ]
        );
        assert_eq!(
            section_texts(&content),
            [
                "*Input*\n```\nHow do I reset my password?\n```",
                "*Output*\n```\nOpen Settings → Security → Reset.\n```"
            ]
        );
        let context = context_texts(&content);
        assert_eq!(
            context[0],
            "<https://smith.langchain.com/o/1/projects/p/2/r/3?trace_id=4&amp;start_time=5|Open in LangSmith>"
        );
        let nine_fifteen = Utc.with_ymd_and_hms(2026, 9, 5, 9, 15, 0).unwrap().timestamp();
        assert_eq!(
            context[1],
            format!("Links expire <!date^{nine_fifteen}^{{date_short_pretty}} {{time}}|2026-09-05 09:15 UTC>")
        );
        assert!(context.contains(&"*Thumbs up*".to_string()), "{context:?}");
        assert!(context.contains(&"*Correctness*".to_string()), "{context:?}");
        assert!(
            !context.iter().any(|c| c.contains("Route")),
            "the route is not shown by default"
        );

        let actions = actions(&content);
        assert_eq!(actions.len(), 2);
        assert_eq!(actions[0].block_id, Some(SlackBlockId("fd_key_0".into())));
        let first = buttons(actions[0]);
        assert_eq!(
            first[0].url.as_ref().unwrap().as_str(),
            format!("{TOKEN_BASE}/00000000-0000-0000-0000-000000000001?score=1")
        );
        assert_eq!(
            first[1].url.as_ref().unwrap().as_str(),
            format!("{TOKEN_BASE}/00000000-0000-0000-0000-000000000001?score=0")
        );
        assert_eq!(plain_only_text(&first[0].text), "👍");
        assert_eq!(first[0].style, Some(SlackBlockButtonStyle::Primary));
        assert_eq!(first[1].style, Some(SlackBlockButtonStyle::Danger));
        let second = buttons(actions[1]);
        assert_eq!(second[1].style, None);
        assert_eq!(second[1].action_id, Some(SlackActionId("fd:1:1".into())));
        assert_eq!(
            content.text.as_deref(),
            Some("support_agent (support-bot) finished: success — rate it in Slack")
        );
    }

    #[test]
    fn a_single_key_asks_its_question_and_a_failed_run_shows_output_and_error() {
        let mut run = event();
        run.status = RunStatus::Error;
        run.error = Some("ValueError: boom".into());

        let content = render_run_message(&run, "support", &[thumbs(1, 9)]);

        assert!(context_texts(&content).contains(&"*Thumbs up*".to_string()));
        let sections = section_texts(&content);
        assert!(sections[1].starts_with("*Output*"));
        assert_eq!(sections[2], "*Error*\n```\nValueError: boom\n```");
        assert!(content.text.unwrap().contains("finished: error"));
    }

    #[test]
    fn keys_asking_the_same_question_share_one_row_and_the_route_shows_only_when_asked() {
        let mut up = thumbs(1, 9);
        let mut down = key(
            "thumbs_down",
            vec![link("thumbs_down", 2, "👎", 0.0, ButtonStyle::Danger)],
            9,
        );
        up.question = "Was this answer helpful?".into();
        down.question = "Was this answer helpful?".into();
        let view = VotesView {
            show_route: true,
            ..Default::default()
        };
        let content = render_run_message_with(&event(), "support", &[up, down], &view);
        let context = context_texts(&content);
        assert_eq!(
            context.iter().filter(|c| *c == "*Was this answer helpful?*").count(),
            1,
            "{context:?}"
        );
        assert!(context.contains(&"Route `support`".to_string()), "{context:?}");
        let actions = actions(&content);
        assert_eq!(actions.len(), 1, "one row");
        let row = buttons(actions[0]);
        let labels: Vec<String> = row.iter().map(|b| plain_only_text(&b.text)).collect();
        assert_eq!(labels, ["👍", "👎", "👎"]);
        assert_eq!(row[2].action_id, Some(SlackActionId("fd:1:0".into())));
    }

    #[test]
    fn hostile_text_is_escaped_cut_and_never_exposes_token_urls_in_text() {
        let mut run = event();
        run.run_name = Some("<!channel> urgent\u{7}".into());
        run.project = Some("A & B <https://evil.example|click>".into());
        run.input = Some(format!(
            "<!channel> {}",
            "<https://evil.example|click> & ```".repeat(2_000)
        ));
        run.output = Some("x".repeat(60 * 1024));
        run.error = Some("bad\u{0}\u{1b}[2J<!here>".into());
        run.tags = vec!["<!everyone>".into(), "a&b".into()];

        let content = render_run_message(&run, "support", &[thumbs(1, 9)]);

        assert!(check_limits(&content).is_empty(), "{:?}", check_limits(&content));
        let json = serde_json::to_string(&content).unwrap();
        for raw in [
            "<!channel>",
            "<!here>",
            "<!everyone>",
            "<https://evil",
            "\\u0007",
            "\\u0000",
            "\\u001b",
        ] {
            assert!(!json.contains(raw), "{raw} leaked into {json:.300}");
        }
        assert!(json.contains("&lt;!channel&gt;"));
        assert!(json.contains("&lt;https://evil.example|click&gt;"));
        assert!(json.contains("A &amp; B"));
        let sections = section_texts(&content);
        for text in &sections {
            assert!(text.chars().count() <= MAX_SECTION_TEXT);
            assert_eq!(
                text.matches("```").count(),
                2,
                "the excerpt closed the code block early"
            );
        }
        for long in &sections[..2] {
            assert!(
                long.ends_with("…\n```"),
                "long excerpt not cut with an ellipsis: {long:.80}"
            );
        }
        let mut leaks = Vec::new();
        token_urls_outside_buttons(&serde_json::to_value(&content).unwrap(), "$", &mut leaks);
        assert!(leaks.is_empty(), "token URLs outside button urls at {leaks:?}");
        assert!(
            json.contains("/feedback/tokens/"),
            "the walk above must have had something to find"
        );
    }

    #[test]
    fn thirty_buttons_on_one_key_are_split_into_two_actions_blocks() {
        let content = render_run_message(&event(), "support", &[many_buttons("score", 1, 30)]);

        assert!(check_limits(&content).is_empty(), "{:?}", check_limits(&content));
        let actions = actions(&content);
        assert_eq!(actions.iter().map(|a| a.elements.len()).collect::<Vec<_>>(), [25, 5]);
        assert_eq!(actions[1].block_id, Some(SlackBlockId("fd_key_0_1".into())));
        assert_eq!(buttons(actions[1])[0].action_id, Some(SlackActionId("fd:0:25".into())));
    }

    #[test]
    fn sixty_keys_keep_the_message_within_fifty_blocks_and_say_what_was_dropped() {
        let keys: Vec<KeyLinks> = (0..60).map(|i| many_buttons(&format!("key_{i}"), i, 2)).collect();

        let content = render_run_message(&event(), "support", &keys);

        assert!(check_limits(&content).is_empty(), "{:?}", check_limits(&content));
        assert!(blocks(&content).len() <= MAX_BLOCKS);
        assert!(matches!(blocks(&content)[0], SlackBlock::Header(_)));
        let shown = actions(&content);
        assert_eq!(
            shown[0].block_id,
            Some(SlackBlockId("fd_key_0".into())),
            "the first keys are kept"
        );
        let note = context_texts(&content).pop().unwrap();
        assert_eq!(
            note,
            format!(
                "{} more feedback keys not shown: Slack allows 50 blocks per message.",
                60 - shown.len()
            )
        );
    }

    #[test]
    fn over_long_button_urls_are_skipped_not_cut() {
        let mut long = link("thumbs_up", 1, "👍", 1.0, ButtonStyle::Primary);
        long.url
            .set_query(Some(&format!("score=1&value={}", "v".repeat(MAX_BUTTON_URL))));
        let keys = [key(
            "thumbs_up",
            vec![long, link("thumbs_up", 1, "👎", 0.0, ButtonStyle::Danger)],
            9,
        )];

        let content = render_run_message(&event(), "support", &keys);

        let buttons = buttons(actions(&content)[0]);
        assert_eq!(buttons.len(), 1);
        assert_eq!(plain_only_text(&buttons[0].text), "👎");
        assert_eq!(buttons[0].action_id, Some(SlackActionId("fd:0:1".into())));
    }

    #[test]
    fn unsafe_run_urls_are_not_linked() {
        for bad in [
            "javascript:alert(1)",
            "data:text/html,<script>",
            "slack://channel?id=C1",
            "not a url",
            "https://api.smith.langchain.com/api/v1/feedback/tokens/00000000-0000-0000-0000-000000000001?score=1",
        ] {
            let mut run = event();
            run.run_url = Some(bad.into());

            let content = render_run_message(&run, "support", &[thumbs(1, 9)]);

            assert!(
                !context_texts(&content).iter().any(|t| t.contains("Open in LangSmith")),
                "{bad} was linked"
            );
        }
    }

    #[test]
    fn run_urls_cannot_break_out_of_the_link_syntax() {
        let (target, _) = run_link_target("https://smith.example/r/1?q=a|b<c>&d", true).unwrap();
        assert_eq!(target, "https://smith.example/r/1?q=a%7Cb%3Cc%3E&amp;d");
    }

    #[test]
    fn a_link_to_another_host_is_labelled_with_its_host() {
        let mut run = event();
        run.run_url = Some("https://evil.example/phish".into());
        run.run_url_trusted = false;
        let texts = context_texts(&render_run_message(&run, "r", &[]));
        assert!(
            texts
                .iter()
                .any(|t| t == "<https://evil.example/phish|Open run (evil.example)>"),
            "{texts:?}"
        );
        assert!(!texts.iter().any(|t| t.contains("Open in LangSmith")), "{texts:?}");
        run.run_url_trusted = true;
        let texts = context_texts(&render_run_message(&run, "r", &[]));
        assert!(texts.iter().any(|t| t.contains("|Open in LangSmith>")), "{texts:?}");
    }

    #[test]
    fn limit_checks_report_every_broken_limit() {
        let button = |id: &str| {
            SlackActionBlockElement::from(
                SlackBlockButtonElement::new(SlackBlockPlainTextOnly::from("b".repeat(80)))
                    .with_action_id(SlackActionId(id.into())),
            )
        };
        let mut blocks: Vec<SlackBlock> = vec![
            SlackHeaderBlock::new(SlackBlockPlainTextOnly::from("h".repeat(151))).into(),
            SlackSectionBlock::new()
                .with_text(mrkdwn("s".repeat(3_001)).into())
                .into(),
            SlackActionsBlock::new((0..26).map(|i| button(&format!("a{i}"))).collect()).into(),
            SlackActionsBlock::new(vec![button("a0"), button(&"x".repeat(256))]).into(),
        ];
        blocks.extend((0..50).map(|_| SlackBlock::from(SlackContextBlock::new(vec![mrkdwn("c".into()).into()]))));
        let content = SlackMessageContent::new().with_blocks(blocks);

        let problems = check_limits(&content).join("\n");

        for expected in [
            "fallback text is missing",
            "54 blocks",
            "header text is 151 characters",
            "text is 3001 characters",
            "26 elements",
            "text is 80 characters",
            "\"a0\" is used more than once",
            "action_id is 256 characters",
        ] {
            assert!(problems.contains(expected), "missing {expected:?} in:\n{problems}");
        }
    }
}
