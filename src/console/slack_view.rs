//! A Slack message drawn in HTML the way Slack shows it: header, sections with their fields,
//! context lines, dividers and rows of buttons, with Slack's mrkdwn (`*bold*`, `_italic_`,
//! `` `code` ``, `<url|label>` links) rendered. Buttons are drawn without their URLs: a page
//! never carries a presigned link.

use super::charts::escape;
use serde_json::Value;
use std::fmt::Write as _;

/// The HTML of a `chat.postMessage` request's blocks (or its text when it has none).
pub(crate) fn draw(request: &Value, bot_name: &str) -> String {
    let mut out = String::from(r#"<div class="slack">"#);
    let _ = write!(
        out,
        r#"<p class="who-line"><span class="bot">{}</span><span class="app">APP</span></p>"#,
        escape(bot_name)
    );
    match request.get("blocks").and_then(Value::as_array) {
        Some(blocks) if !blocks.is_empty() => {
            for block in blocks {
                draw_block(&mut out, block);
            }
        }
        _ => {
            let text = request.get("text").and_then(Value::as_str).unwrap_or("");
            let _ = write!(out, r#"<div class="section">{}</div>"#, mrkdwn(text));
        }
    }
    out.push_str("</div>");
    out
}

fn text_of(obj: &Value) -> String {
    let text = obj.get("text").and_then(Value::as_str).unwrap_or("");
    match obj.get("type").and_then(Value::as_str) {
        Some("mrkdwn") => mrkdwn(text),
        _ => escape(&unescape_slack(text)),
    }
}

fn draw_block(out: &mut String, block: &Value) {
    match block.get("type").and_then(Value::as_str) {
        Some("header") => {
            let _ = write!(
                out,
                r#"<div class="header">{}</div>"#,
                block.get("text").map(text_of).unwrap_or_default()
            );
        }
        Some("section") => {
            if let Some(text) = block.get("text") {
                let _ = write!(out, r#"<div class="section">{}</div>"#, text_of(text));
            }
            if let Some(fields) = block.get("fields").and_then(Value::as_array) {
                out.push_str(r#"<div class="fields">"#);
                for f in fields {
                    let _ = write!(out, "<div>{}</div>", text_of(f));
                }
                out.push_str("</div>");
            }
        }
        Some("context") => {
            out.push_str(r#"<div class="context">"#);
            let parts: Vec<String> = block
                .get("elements")
                .and_then(Value::as_array)
                .map(|els| els.iter().filter(|e| e.get("text").is_some()).map(text_of).collect())
                .unwrap_or_default();
            out.push_str(&parts.join(" · "));
            out.push_str("</div>");
        }
        Some("divider") => out.push_str("<hr>"),
        Some("actions") => {
            out.push_str(r#"<div class="actions">"#);
            for el in block.get("elements").and_then(Value::as_array).into_iter().flatten() {
                let style = match el.get("style").and_then(Value::as_str) {
                    Some("primary") => " primary",
                    Some("danger") => " danger",
                    _ => "",
                };
                let label = el.get("text").map(text_of).unwrap_or_default();
                let _ = write!(out, r#"<span class="btn{style}">{label}</span>"#);
            }
            out.push_str("</div>");
        }
        _ => {}
    }
}

/// Slack's own escapes in message text (`&amp;`, `&lt;`, `&gt;`) back to characters.
fn unescape_slack(text: &str) -> String {
    text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
}

/// Slack mrkdwn as HTML, escaped: ```` ``` ```` blocks, links (`<url|label>`, http and https
/// only), `*bold*`, `_italic_`, `~strike~`, `` `code` `` and line breaks.
pub(crate) fn mrkdwn(text: &str) -> String {
    let mut out = String::new();
    for (i, part) in text.split("```").enumerate() {
        if i % 2 == 1 {
            let body = part.strip_prefix('\n').unwrap_or(part);
            let body = body.strip_suffix('\n').unwrap_or(body);
            let _ = write!(out, "<pre>{}</pre>", escape(&unescape_slack(body)));
        } else {
            let part = if i > 0 {
                part.strip_prefix('\n').unwrap_or(part)
            } else {
                part
            };
            out.push_str(&spans(part));
        }
    }
    out
}

/// Mrkdwn outside code blocks.
fn spans(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find('<') {
        out.push_str(&inline(&unescape_slack(&rest[..start])));
        let after = &rest[start + 1..];
        let Some(end) = after.find('>') else {
            out.push_str(&inline(&unescape_slack(&rest[start..])));
            rest = "";
            break;
        };
        let inner = &after[..end];
        let (target, label) = inner.split_once('|').unwrap_or((inner, inner));
        let target = unescape_slack(target);
        let label = unescape_slack(label);
        if target.starts_with("https://") || target.starts_with("http://") {
            // Drawn as a link, but without its address: a page never carries a URL from a
            // message (it could be a presigned one).
            let _ = write!(out, r#"<span class="link">{}</span>"#, escape(&label));
        } else {
            out.push_str(&escape(&label));
        }
        rest = &after[end + 1..];
    }
    out.push_str(&inline(&unescape_slack(rest)));
    out.replace('\n', "<br>")
}

/// Bold, italic, strike and code spans of plain text, escaped.
fn inline(text: &str) -> String {
    let mut out = String::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let tag = match c {
            '*' => Some("strong"),
            '_' => Some("em"),
            '~' => Some("s"),
            '`' => Some("code"),
            _ => None,
        };
        if let Some(tag) = tag {
            // A span closes on the same character later on the same line, with text between.
            if let Some(len) = chars[i + 1..].iter().take_while(|&&x| x != '\n').position(|&x| x == c)
                && len > 0
            {
                let inner: String = chars[i + 1..i + 1 + len].iter().collect();
                let _ = write!(out, "<{tag}>{}</{tag}>", escape(&inner));
                i += len + 2;
                continue;
            }
        }
        out.push_str(&escape(&c.to_string()));
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn mrkdwn_is_drawn_and_everything_else_escaped() {
        assert_eq!(
            mrkdwn("*Run* _ok_ `x&lt;y`"),
            "<strong>Run</strong> <em>ok</em> <code>x&lt;y</code>"
        );
        assert_eq!(
            mrkdwn("<https://smith.example/r/1|Open &amp; see>"),
            r#"<span class="link">Open &amp; see</span>"#
        );
        assert_eq!(mrkdwn("<javascript:alert(1)|x>"), "x");
        assert_eq!(
            mrkdwn("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "&lt;script&gt;alert(1)&lt;/script&gt;"
        );
        assert_eq!(mrkdwn("a*b\nc*"), "a*b<br>c*", "no span across lines");
        assert_eq!(
            mrkdwn("*Output*\n```\nx <b>\n*y*\n```\nafter"),
            "<strong>Output</strong><br><pre>x &lt;b&gt;\n*y*</pre>after"
        );
    }

    #[test]
    fn blocks_become_the_parts_slack_shows_and_buttons_carry_no_url() {
        let req = json!({"blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": "Rate <this>"}},
            {"type": "section", "fields": [{"type": "mrkdwn", "text": "*Project*\nsupport"}]},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": "route"}, {"type": "mrkdwn", "text": "run"}]},
            {"type": "actions", "elements": [{"type": "button", "style": "primary", "text": {"type": "plain_text", "text": "👍 Helpful"}, "url": "https://api.example/feedback/tokens/secret"}]}
        ]});
        let html = draw(&req, "Feedback <bot>");
        assert!(
            html.contains(r#"<div class="header">Rate &lt;this&gt;</div>"#),
            "{html}"
        );
        assert!(html.contains("<strong>Project</strong><br>support"));
        assert!(html.contains("route · run"));
        assert!(html.contains(r#"<span class="btn primary">👍 Helpful</span>"#));
        assert!(!html.contains("tokens/secret"), "a button's URL is never drawn");
        assert!(html.contains("Feedback &lt;bot&gt;"));
    }
}
