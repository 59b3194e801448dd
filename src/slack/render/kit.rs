//! The Block Kit a run's message is made of, as this service renders it: headers, sections,
//! context lines, rows of buttons and Slack's feedback buttons, and nothing else. Each value
//! is written straight to JSON, in the shape (and key order) slack-morphism's values of the same
//! blocks serialize to, so a message reads the same to Slack whichever built it; a unit test
//! holds the two to the byte. Building and serializing slack-morphism's general values
//! (options for every field Slack knows, internally tagged enums) cost about a sixth of a
//! delivered run's instructions; these are plain strings.
//!
//! [`Message::to_content`] gives the same message as slack-morphism's [`SlackMessageContent`],
//! for [`super::check_limits`], previews and tests.

use crate::json::write_str;
use serde::ser::{Serialize, SerializeStruct, Serializer};
use slack_morphism::prelude::SlackMessageContent;

/// A message: its fallback text (what notifications show) and its blocks.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// The fallback text.
    pub text: String,
    /// The blocks, in order.
    pub blocks: Vec<Block>,
}

/// One block of a message.
#[derive(Debug, Clone, PartialEq)]
pub enum Block {
    /// A header: plain text.
    Header(String),
    /// A section of one mrkdwn text.
    Text(String),
    /// A section of mrkdwn fields.
    Fields(Vec<String>),
    /// A context line of mrkdwn elements.
    Context(Vec<String>),
    /// A row of buttons.
    Actions {
        /// Its id.
        block_id: String,
        /// The buttons.
        elements: Vec<Button>,
    },
    /// Slack's feedback buttons (a `context_actions` block with one `feedback_buttons`).
    Feedback {
        /// The block's id.
        block_id: String,
        /// The element's action id.
        action_id: String,
        /// The positive side.
        positive: FeedbackSide,
        /// The negative side.
        negative: FeedbackSide,
    },
}

/// A button of a row.
#[derive(Debug, Clone, PartialEq)]
pub struct Button {
    /// Its action id.
    pub action_id: String,
    /// Its label, plain text.
    pub text: String,
    /// The URL it opens (link buttons).
    pub url: Option<String>,
    /// The value a click sends.
    pub value: Option<String>,
    /// `primary` or `danger`.
    pub style: Option<&'static str>,
}

/// One side of Slack's feedback buttons.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedbackSide {
    /// Its label, plain text.
    pub text: String,
    /// The value a click sends.
    pub value: String,
}

impl Message {
    /// The same message as slack-morphism's content (read back from its JSON).
    pub fn to_content(&self) -> SlackMessageContent {
        let json = serde_json::to_vec(self).expect("a message always serializes");
        serde_json::from_slice(&json).expect("slack-morphism reads every block this service writes")
    }
}

/// `{"type":"plain_text","text":…}`.
struct Plain<'a>(&'a str);
/// `{"type":"mrkdwn","text":…,"verbatim":true}`: `verbatim` stops Slack from auto-linking bare
/// URLs and channel names and from parsing mentions in untrusted text; explicit `<url|…>` and
/// `<!date…>` still work.
struct Mrkdwn<'a>(&'a str);
/// A list of mrkdwn texts.
struct MrkdwnList<'a>(&'a [String]);
/// `[{"type":"feedback_buttons",…}]`: the one element of a feedback block.
struct FeedbackElement<'a> {
    action_id: &'a str,
    positive: &'a FeedbackSide,
    negative: &'a FeedbackSide,
}

impl Serialize for Plain<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut o = s.serialize_struct("PlainText", 2)?;
        o.serialize_field("type", "plain_text")?;
        o.serialize_field("text", self.0)?;
        o.end()
    }
}

impl Serialize for Mrkdwn<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut o = s.serialize_struct("Mrkdwn", 3)?;
        o.serialize_field("type", "mrkdwn")?;
        o.serialize_field("text", self.0)?;
        o.serialize_field("verbatim", &true)?;
        o.end()
    }
}

impl Serialize for MrkdwnList<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|t| Mrkdwn(t)))
    }
}

impl Serialize for Message {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut o = s.serialize_struct("Message", 2)?;
        o.serialize_field("text", &self.text)?;
        o.serialize_field("blocks", &self.blocks)?;
        o.end()
    }
}

impl Serialize for Block {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut o = s.serialize_struct("Block", 3)?;
        match self {
            Block::Header(text) => {
                o.serialize_field("type", "header")?;
                o.serialize_field("text", &Plain(text))?;
            }
            Block::Text(text) => {
                o.serialize_field("type", "section")?;
                o.serialize_field("text", &Mrkdwn(text))?;
            }
            Block::Fields(fields) => {
                o.serialize_field("type", "section")?;
                o.serialize_field("fields", &MrkdwnList(fields))?;
            }
            Block::Context(elements) => {
                o.serialize_field("type", "context")?;
                o.serialize_field("elements", &MrkdwnList(elements))?;
            }
            Block::Actions { block_id, elements } => {
                o.serialize_field("type", "actions")?;
                o.serialize_field("block_id", block_id)?;
                o.serialize_field("elements", elements)?;
            }
            Block::Feedback {
                block_id,
                action_id,
                positive,
                negative,
            } => {
                o.serialize_field("type", "context_actions")?;
                o.serialize_field("block_id", block_id)?;
                o.serialize_field(
                    "elements",
                    &[FeedbackElement {
                        action_id,
                        positive,
                        negative,
                    }],
                )?;
            }
        }
        o.end()
    }
}

impl Serialize for Button {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut o = s.serialize_struct("Button", 6)?;
        o.serialize_field("type", "button")?;
        o.serialize_field("action_id", &self.action_id)?;
        o.serialize_field("text", &Plain(&self.text))?;
        if let Some(url) = &self.url {
            o.serialize_field("url", url)?;
        }
        if let Some(value) = &self.value {
            o.serialize_field("value", value)?;
        }
        if let Some(style) = self.style {
            o.serialize_field("style", style)?;
        }
        o.end()
    }
}

impl Serialize for FeedbackElement<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut o = s.serialize_struct("FeedbackButtons", 4)?;
        o.serialize_field("type", "feedback_buttons")?;
        o.serialize_field("action_id", self.action_id)?;
        o.serialize_field("positive_button", self.positive)?;
        o.serialize_field("negative_button", self.negative)?;
        o.end()
    }
}

impl Serialize for FeedbackSide {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut o = s.serialize_struct("FeedbackButton", 2)?;
        o.serialize_field("text", &Plain(&self.text))?;
        o.serialize_field("value", &self.value)?;
        o.end()
    }
}

impl Message {
    /// The message as a JSON object (`{"text":…,"blocks":[…]}`), written by [`write_fields`].
    pub(crate) fn to_json(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(4096);
        out.push(b'{');
        write_fields(&mut out, &self.text, &self.blocks);
        out.push(b'}');
        out
    }
}

/// Appends `"text":…,"blocks":[…]` of a message's `text` and `blocks`, inside a request body's
/// object: the same JSON as `Serialize` writes, written straight into the body. The fixed
/// parts of each block (its type, its keys, a text's type) are copied as they are, and only
/// the texts are escaped (`crate::json::write_str`); through `Serialize`, every key and fixed
/// value was a string to escape, most of a message's escaping calls. Tests hold the two to the
/// byte.
pub(crate) fn write_fields(out: &mut Vec<u8>, text: &str, blocks: &[Block]) {
    out.extend_from_slice(b"\"text\":");
    write_str(out, text);
    out.extend_from_slice(b",\"blocks\":");
    write_blocks(out, blocks);
}

/// `[…]` of `items`, each written by `write`.
fn write_list<T>(out: &mut Vec<u8>, items: &[T], write: impl Fn(&mut Vec<u8>, &T)) {
    out.push(b'[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write(out, item);
    }
    out.push(b']');
}

/// `[…]` of `blocks`.
fn write_blocks(out: &mut Vec<u8>, blocks: &[Block]) {
    write_list(out, blocks, write_block);
}

/// One block.
fn write_block(out: &mut Vec<u8>, block: &Block) {
    match block {
        Block::Header(text) => {
            out.extend_from_slice(b"{\"type\":\"header\",\"text\":");
            write_plain(out, text);
        }
        Block::Text(text) => {
            out.extend_from_slice(b"{\"type\":\"section\",\"text\":");
            write_mrkdwn(out, text);
        }
        Block::Fields(fields) => {
            out.extend_from_slice(b"{\"type\":\"section\",\"fields\":");
            write_mrkdwn_list(out, fields);
        }
        Block::Context(elements) => {
            out.extend_from_slice(b"{\"type\":\"context\",\"elements\":");
            write_mrkdwn_list(out, elements);
        }
        Block::Actions { block_id, elements } => {
            out.extend_from_slice(b"{\"type\":\"actions\",\"block_id\":");
            write_str(out, block_id);
            out.extend_from_slice(b",\"elements\":");
            write_list(out, elements, write_button);
        }
        Block::Feedback {
            block_id,
            action_id,
            positive,
            negative,
        } => {
            out.extend_from_slice(b"{\"type\":\"context_actions\",\"block_id\":");
            write_str(out, block_id);
            out.extend_from_slice(b",\"elements\":[{\"type\":\"feedback_buttons\",\"action_id\":");
            write_str(out, action_id);
            out.extend_from_slice(b",\"positive_button\":");
            write_feedback_side(out, positive);
            out.extend_from_slice(b",\"negative_button\":");
            write_feedback_side(out, negative);
            out.extend_from_slice(b"}]");
        }
    }
    out.push(b'}');
}

fn write_plain(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(b"{\"type\":\"plain_text\",\"text\":");
    write_str(out, text);
    out.push(b'}');
}

fn write_mrkdwn(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(b"{\"type\":\"mrkdwn\",\"text\":");
    write_str(out, text);
    out.extend_from_slice(b",\"verbatim\":true}");
}

fn write_mrkdwn_list(out: &mut Vec<u8>, texts: &[String]) {
    write_list(out, texts, |out, text| write_mrkdwn(out, text));
}

fn write_button(out: &mut Vec<u8>, button: &Button) {
    out.extend_from_slice(b"{\"type\":\"button\",\"action_id\":");
    write_str(out, &button.action_id);
    out.extend_from_slice(b",\"text\":");
    write_plain(out, &button.text);
    if let Some(url) = &button.url {
        out.extend_from_slice(b",\"url\":");
        write_str(out, url);
    }
    if let Some(value) = &button.value {
        out.extend_from_slice(b",\"value\":");
        write_str(out, value);
    }
    if let Some(style) = button.style {
        out.extend_from_slice(b",\"style\":");
        write_str(out, style);
    }
    out.push(b'}');
}

fn write_feedback_side(out: &mut Vec<u8>, side: &FeedbackSide) {
    out.extend_from_slice(b"{\"text\":");
    write_plain(out, &side.text);
    out.extend_from_slice(b",\"value\":");
    write_str(out, &side.value);
    out.push(b'}');
}

#[cfg(test)]
pub(in crate::slack) mod tests {
    use super::*;

    /// What [`write_fields`] writes of `message`, as a whole object.
    pub(in crate::slack) fn written(message: &Message) -> String {
        String::from_utf8(message.to_json()).unwrap()
    }

    fn every_block() -> Message {
        let side = |text: &str, value: &str| FeedbackSide {
            text: text.into(),
            value: value.into(),
        };
        Message {
            text: "a <b> & \"c\" — rate it".into(),
            blocks: vec![
                Block::Header("Run \u{1F600} &amp; \"quoted\"".into()),
                Block::Fields(vec!["*Project*\nx".into(), "*Status*\n✅ success".into()]),
                Block::Text("*Input*\n```\nline\\n\ttab\n```".into()),
                Block::Context(vec!["<https://x.example/r?a=1&amp;b|Open>".into(), "Route `r`".into()]),
                Block::Context(vec![]),
                Block::Actions {
                    block_id: "fd_key_0".into(),
                    elements: vec![
                        Button {
                            action_id: "fd:0:0".into(),
                            text: "👍".into(),
                            url: Some("https://api.example/api/v1/feedback/tokens/abc?score=1".into()),
                            value: Some("v1|7|r|k|0".into()),
                            style: Some("primary"),
                        },
                        Button {
                            action_id: "fd:0:1".into(),
                            text: "👎".into(),
                            url: None,
                            value: None,
                            style: Some("danger"),
                        },
                        Button {
                            action_id: "fd:0:2".into(),
                            text: "meh".into(),
                            url: Some("https://api.example/t".into()),
                            value: None,
                            style: None,
                        },
                    ],
                },
                Block::Feedback {
                    block_id: "fd_key_1".into(),
                    action_id: "fd:1:feedback".into(),
                    positive: side("Good", "v1|7|r|k|0"),
                    negative: side("Bad", "v1|7|r|k|1"),
                },
            ],
        }
    }

    /// Every block written here reads back into slack-morphism's values, and those write the
    /// same bytes: the message is the one slack-morphism would have sent.
    #[test]
    fn each_block_is_written_as_slack_morphisms_values_of_it_are() {
        let message = every_block();
        let ours = serde_json::to_string(&message).unwrap();
        let theirs = serde_json::to_string(&message.to_content()).unwrap();
        assert_eq!(ours, theirs);
        // The read-back cannot see a field left out (slack-morphism reads it as absent), so the
        // bytes are pinned too: what the renderer built on slack-morphism's values wrote.
        assert_eq!(ours, PINNED);
        // And the request bodies' writer writes the same.
        assert_eq!(written(&message), PINNED);
    }

    const PINNED: &str = concat!(
        r#"{"text":"a <b> & \"c\" — rate it","blocks":[{"type":"header","text":{"type":"plain_text","text":"Run 😀 &amp; \"quoted\""}},"#,
        r#"{"type":"section","fields":[{"type":"mrkdwn","text":"*Project*\nx","verbatim":true},"#,
        r#"{"type":"mrkdwn","text":"*Status*\n✅ success","verbatim":true}]},"#,
        r#"{"type":"section","text":{"type":"mrkdwn","text":"*Input*\n```\nline\\n\ttab\n```","verbatim":true}},"#,
        r#"{"type":"context","elements":[{"type":"mrkdwn","text":"<https://x.example/r?a=1&amp;b|Open>","verbatim":true},"#,
        r#"{"type":"mrkdwn","text":"Route `r`","verbatim":true}]},{"type":"context","elements":[]},"#,
        r#"{"type":"actions","block_id":"fd_key_0","elements":[{"type":"button","action_id":"fd:0:0","text":{"type":"plain_text","text":"👍"},"url":"https://api.example/api/v1/feedback/tokens/abc?score=1","value":"v1|7|r|k|0","style":"primary"},"#,
        r#"{"type":"button","action_id":"fd:0:1","text":{"type":"plain_text","text":"👎"},"style":"danger"},"#,
        r#"{"type":"button","action_id":"fd:0:2","text":{"type":"plain_text","text":"meh"},"url":"https://api.example/t"}]},"#,
        r#"{"type":"context_actions","block_id":"fd_key_1","elements":[{"type":"feedback_buttons","action_id":"fd:1:feedback","positive_button":{"text":{"type":"plain_text","text":"Good"},"value":"v1|7|r|k|0"},"negative_button":{"text":{"type":"plain_text","text":"Bad"},"value":"v1|7|r|k|1"}}]}]}"#,
    );
}
