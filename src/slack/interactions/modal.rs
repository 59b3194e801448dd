//! The comment modal: opened with `views.open` for a button that asks for a comment or for a
//! negative choice of a key with reasons (radio buttons for `reasons_pick = "one"`, checkboxes
//! for "many", above the optional comment box), its click carried in `private_metadata` signed
//! by this service and read back only as signed.

use super::click::Click;
use crate::domain::{Reasons, ReasonsPick};
use crate::state::AppState;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use slack_morphism::prelude::*;

/// The `callback_id` of the comment modal.
pub(super) const COMMENT_VIEW: &str = "fd_comment";

/// Longest comment taken (the modal's box takes as much; a longer one was not typed there).
pub(super) const MAX_COMMENT: usize = 3_000;

/// The `block_id` of the modal's reasons (its element's `action_id` is `reasons`).
pub(super) const REASONS_BLOCK: &str = "fd_reasons";

/// A comment modal's `private_metadata`: the click it was opened for and `sig`, an HMAC-SHA256
/// of the click's JSON. Slack hands the metadata back as it was given, but Slack's signature
/// on the submission vouches only that Slack sent it: anyone in the workspace who can make an
/// app post a `view_submission` with this callback id could write the metadata. Signed, it is
/// the click this service opened the modal for, or nothing.
#[derive(Serialize, Deserialize)]
pub(super) struct SignedClick {
    /// The click.
    #[serde(flatten)]
    click: Click,
    /// Hex HMAC of the click's JSON under [`modal_mac`]'s key.
    sig: String,
}

/// What the modal key is derived for: the MAC is never a value Slack's own signing (of
/// `v0:{timestamp}:{body}`) could produce.
const MODAL_KEY_PURPOSE: &[u8] = b"feedback-dispatch/comment-modal/v1";

/// The MAC of a modal's click, keyed by a key derived from the signing secret (which only
/// Slack and this service hold, which every replica shares, and without which no modal is
/// opened or read); `None` only if HMAC refused the key, which it does not.
fn modal_mac(secret: &SecretString) -> Option<hmac::Hmac<sha2::Sha256>> {
    use hmac::Mac;
    let mut derive = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.expose_secret().as_bytes()).ok()?;
    derive.update(MODAL_KEY_PURPOSE);
    hmac::Hmac::<sha2::Sha256>::new_from_slice(&derive.finalize().into_bytes()).ok()
}

impl SignedClick {
    /// The metadata for `click`.
    pub(super) fn sign(click: &Click, secret: &SecretString) -> Option<String> {
        use hmac::Mac;
        let mut mac = modal_mac(secret)?;
        mac.update(serde_json::to_string(click).ok()?.as_bytes());
        let mut metadata = serde_json::to_value(click).ok()?;
        metadata["sig"] = Value::String(hex::encode(mac.finalize().into_bytes()));
        Some(metadata.to_string())
    }

    /// The click of `metadata` if this service signed it as it is (compared in constant time).
    pub(super) fn verify(metadata: &str, secret: &SecretString) -> Option<Click> {
        use hmac::Mac;
        let signed: SignedClick = serde_json::from_str(metadata).ok()?;
        let sig = hex::decode(&signed.sig).ok()?;
        let mut mac = modal_mac(secret)?;
        mac.update(serde_json::to_string(&signed.click).ok()?.as_bytes());
        mac.verify_slice(&sig).ok()?;
        Some(signed.click)
    }
}

/// The comment modal: the rating given, the reasons when the choice asks for them, and an
/// optional box for the comment, whose block and action ids are what [`Click::from_view`] reads
/// back.
fn comment_view(metadata: String, label: &str, reasons: Option<&Reasons>) -> Result<Value, String> {
    let plain = |text: &str| SlackBlockPlainTextOnly::from(text);
    let rating = SlackSectionBlock::new().with_text(SlackBlockText::Plain(format!("Your rating: {label}").into()));
    let comment = SlackInputBlock::new(
        plain("Comment (optional)"),
        SlackBlockPlainTextInputElement::new()
            .with_action_id(SlackActionId::new("comment".into()))
            .with_multiline(true)
            .with_max_length(MAX_COMMENT as u64)
            .into(),
    )
    .with_block_id(SlackBlockId::new(COMMENT_VIEW.into()))
    .with_optional(true);
    let title = if reasons.is_some() {
        "What went wrong?"
    } else {
        "Add a comment"
    };
    let view = SlackView::Modal(
        SlackModalView::new(plain(title), vec![rating.into(), comment.into()])
            .with_callback_id(SlackCallbackId::new(COMMENT_VIEW.into()))
            .with_private_metadata(metadata)
            .with_submit(plain("Submit"))
            .with_close(plain("Cancel")),
    );
    let mut view = serde_json::to_value(view).map_err(|e| format!("cannot write the modal: {e}"))?;
    if let Some(reasons) = reasons
        && let Some(blocks) = view["blocks"].as_array_mut()
    {
        blocks.insert(1, reasons_block(reasons));
    }
    Ok(view)
}

/// The reasons as a required input: radio buttons for "one", checkboxes for "many"; each
/// option's value is the reason itself (at most 75 characters, within Slack's 150).
fn reasons_block(reasons: &Reasons) -> Value {
    let options: Vec<Value> = reasons
        .list
        .iter()
        .map(|r| serde_json::json!({"text": {"type": "plain_text", "text": r}, "value": r}))
        .collect();
    let (element, label) = match reasons.pick {
        ReasonsPick::One => ("radio_buttons", "Reason"),
        ReasonsPick::Many => ("checkboxes", "Reasons"),
    };
    serde_json::json!({
        "type": "input",
        "block_id": REASONS_BLOCK,
        "label": {"type": "plain_text", "text": label},
        "element": {"type": element, "action_id": "reasons", "options": options},
    })
}

/// A modal to open for a click before it counts: its comment box and, for a negative choice of
/// a key with reasons, the reasons.
#[derive(Debug)]
pub(crate) struct ModalRequest {
    /// The click's `trigger_id`.
    pub(super) trigger: String,
    /// The button's label, shown in the modal.
    pub(super) label: String,
    /// The reasons to pick from, when asked.
    pub(super) reasons: Option<Reasons>,
}

impl ModalRequest {
    /// Opens it (`views.open`).
    pub(super) async fn open(&self, state: &AppState, click: &Click) -> Result<(), String> {
        open_comment_box(state, &self.trigger, click, &self.label, self.reasons.as_ref()).await
    }
}

/// Opens the comment modal for a click (`views.open`, within the 3 s its trigger lasts); the
/// click itself travels in the modal's `private_metadata` and comes back with the submission.
pub(super) async fn open_comment_box(
    state: &AppState,
    trigger: &str,
    click: &Click,
    label: &str,
    reasons: Option<&Reasons>,
) -> Result<(), String> {
    let slack = &state.settings.slack;
    let token = slack.bot_token.as_ref().ok_or("SLACK_BOT_TOKEN is not set")?;
    let secret = slack.signing_secret.as_ref().ok_or("SLACK_SIGNING_SECRET is not set")?;
    let metadata = SignedClick::sign(click, secret).ok_or("cannot sign the click for the modal")?;
    if metadata.len() > 3_000 {
        return Err("the click does not fit the modal's metadata".into());
    }
    let label: String = label.chars().filter(|c| !c.is_control()).take(200).collect();
    let view = comment_view(metadata, &label, reasons)?;
    let url = format!("{}/views.open", slack.api_url.as_str().trim_end_matches('/'));
    let res = state
        .slack_http
        .post(url)
        .timeout(std::time::Duration::from_secs(2))
        .bearer_auth(token.expose_secret())
        .json(&serde_json::json!({"trigger_id": trigger, "view": view}))
        .send()
        .await
        .map_err(|e| e.without_url().to_string())?;
    let body: Value = res.json().await.map_err(|e| e.without_url().to_string())?;
    if body["ok"] == true {
        Ok(())
    } else {
        Err(format!(
            "views.open answered {}",
            body["error"].as_str().unwrap_or("an error")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ButtonValue;

    fn click(user: &str) -> Click {
        Click {
            value: ButtonValue::decode(r#"{"j":1,"r":"support","k":"thumbs_down","c":0}"#),
            user: user.into(),
            team: Some("T1".into()),
            channel: Some("C0123456789".into()),
            message_ts: Some("1.1".into()),
            action_ts: "1.2".into(),
            response_url: "https://hooks.slack.com/actions/T1/1/x".into(),
            trigger_id: Some("trigger".into()),
        }
    }

    #[test]
    fn a_modals_click_reads_back_only_as_signed() {
        let secret = SecretString::from("8f742231b10e8888abcd99yyyzzz85a5");
        let metadata = SignedClick::sign(&click("U1"), &secret).unwrap();
        let back = SignedClick::verify(&metadata, &secret).expect("as signed");
        assert_eq!((back.user.as_str(), back.trigger_id), ("U1", None));
        let mut altered: Value = serde_json::from_str(&metadata).unwrap();
        altered["user"] = "U2".into();
        assert!(SignedClick::verify(&altered.to_string(), &secret).is_none(), "altered");
        let unsigned = serde_json::to_string(&click("U1")).unwrap();
        assert!(SignedClick::verify(&unsigned, &secret).is_none(), "unsigned");
        let other = SecretString::from("another secret");
        assert!(SignedClick::verify(&metadata, &other).is_none(), "another key");
    }

    #[test]
    fn the_comment_modal_is_the_view_slack_is_sent() {
        let view = comment_view("{\"sig\":\"00\"}".into(), "👎 Not helpful", None).unwrap();
        let expected = serde_json::json!({
            "type": "modal",
            "callback_id": "fd_comment",
            "private_metadata": "{\"sig\":\"00\"}",
            "title": {"type": "plain_text", "text": "Add a comment"},
            "submit": {"type": "plain_text", "text": "Submit"},
            "close": {"type": "plain_text", "text": "Cancel"},
            "blocks": [
                {"type": "section", "text": {"type": "plain_text", "text": "Your rating: 👎 Not helpful"}},
                {"type": "input", "block_id": "fd_comment", "optional": true,
                 "label": {"type": "plain_text", "text": "Comment (optional)"},
                 "element": {"type": "plain_text_input", "action_id": "comment", "multiline": true, "max_length": 3000}}
            ]
        });
        assert_eq!(view, expected);
    }
}
