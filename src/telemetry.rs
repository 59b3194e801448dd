//! Logging: a `tracing` subscriber writing text or JSON lines to stderr.
//!
//! Secrets never reach it: they are `SecretString`s (their `Debug` is redacted), and presigned
//! URLs travel in types whose `Debug` hides them (`MintedToken`, `FeedbackLink`); log lines name
//! token ids instead.
//!
//! Values in a log line often come from requests (a channel, a feedback key, a run's name). A
//! line feed in one would start a forged line, and an escape sequence would run in the terminal
//! of whoever reads the log, so neither format writes control characters raw: the text format
//! escapes them in every field and message ([`escape_controls`], which doubles a backslash too,
//! so a value holding the two characters `\n` cannot pass for an escaped line feed), and the
//! JSON format, whose encoder escapes those below U+0020 (and the backslash) already, gets the
//! rest escaped too (DEL, C1 controls and bidirectional formatting characters, as `\uXXXX`).

use crate::settings::LogFormat;
use std::borrow::Cow;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::field::MakeExt;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::format::Writer;

/// Installs the global subscriber; `RUST_LOG` overrides `level`. Safe to call twice (the second
/// call is ignored), which tests rely on.
pub fn init(format: LogFormat, level: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new(format!(
            "{level},sqlx=warn,hyper=warn,hyper_util=warn,slack_morphism=warn,rustls=warn"
        ))
    });
    use std::io::IsTerminal;
    let ansi = std::io::stderr().is_terminal();
    let _ = match format {
        LogFormat::Text => text_subscriber(std::io::stderr, ansi)
            .with_env_filter(filter)
            .try_init(),
        LogFormat::Json => json_subscriber(std::io::stderr).with_env_filter(filter).try_init(),
    };
}

/// The text format, escaping control characters in every field.
pub fn text_subscriber<W>(
    writer: W,
    ansi: bool,
) -> tracing_subscriber::fmt::SubscriberBuilder<
    impl for<'w> tracing_subscriber::fmt::FormatFields<'w> + 'static,
    tracing_subscriber::fmt::format::Format,
    EnvFilter,
    W,
>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let fields = tracing_subscriber::fmt::format::debug_fn(|w: &mut Writer<'_>, field, value| {
        let text = format!("{value:?}");
        match field.name() {
            "message" => w.write_str(&escape_controls(&text)),
            // tracing-log's own fields, which the default format leaves out too.
            name if name.starts_with("log.") => Ok(()),
            name => write!(w, "{name}={}", escape_controls(&text)),
        }
    })
    .delimited(" ");
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::new("info"))
        .fmt_fields(fields)
        .with_ansi(ansi)
        .with_writer(writer)
}

/// The JSON format, one object per line, with the characters its encoder leaves raw escaped.
pub(crate) fn json_subscriber<W>(
    writer: W,
) -> tracing_subscriber::fmt::SubscriberBuilder<
    tracing_subscriber::fmt::format::JsonFields,
    tracing_subscriber::fmt::format::Format<tracing_subscriber::fmt::format::Json>,
    EnvFilter,
    JsonEscaping<W>,
>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::new("info"))
        .json()
        .flatten_event(true)
        .with_writer(JsonEscaping(writer))
}

/// `text` with control characters, and the invisible characters that make a text read as
/// another (bidirectional overrides, zero-width ones), written as escapes: `\n`, `\r`, `\t`,
/// `\u{1b}`; a backslash is doubled, so an escape read back is one this function wrote, not
/// text that looks like it. Text without any is returned as it is.
pub(crate) fn escape_controls(text: &str) -> Cow<'_, str> {
    if !text.chars().any(|c| c == '\\' || needs_escape(c)) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if needs_escape(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

fn needs_escape(c: char) -> bool {
    c.is_control() || crate::domain::is_invisible_format(c) || matches!(c, '\u{2028}' | '\u{2029}')
}

/// A writer for JSON lines that escapes what the JSON encoder writes raw: DEL, the C1 controls
/// (U+0080–U+009F, some terminals run them as escape sequences), bidirectional and zero-width
/// characters, and line and paragraph separators. They can only occur inside JSON strings, so
/// the `\uXXXX` escape reads back as the same text.
pub(crate) struct JsonEscaping<W>(W);

impl<'a, W: MakeWriter<'a>> MakeWriter<'a> for JsonEscaping<W> {
    type Writer = EscapingWriter<W::Writer>;
    fn make_writer(&'a self) -> Self::Writer {
        EscapingWriter(self.0.make_writer())
    }
}

/// See [`JsonEscaping`].
pub(crate) struct EscapingWriter<W>(W);

impl<W: std::io::Write> std::io::Write for EscapingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // A line is written whole (tracing formats it into one buffer); bytes below 0x7F need
        // nothing, which is nearly every line.
        if buf.iter().all(|b| *b < 0x7f) {
            return self.0.write_all(buf).map(|()| buf.len());
        }
        let text = String::from_utf8_lossy(buf);
        let mut out = String::with_capacity(text.len() + 16);
        for c in text.chars() {
            // Those below U+0020 are escaped by the encoder already, but for the line's end.
            if c >= '\u{7f}' && needs_escape(c) {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            } else {
                out.push(c);
            }
        }
        self.0.write_all(out.as_bytes()).map(|()| buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Buffer {
        type Writer = Buffer;
        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    const FORGED: &str = "C01\n2030-01-01T00:00:00Z  INFO feedback_dispatch: forged\u{1b}[2J\u{9b}2J\u{202e}";

    fn log_once(subscriber: impl tracing::Subscriber + Send + Sync) {
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("request", route = %FORGED);
            let _enter = span.enter();
            tracing::info!(channel = %FORGED, key = FORGED, "delivered {}", FORGED);
        });
    }

    #[test]
    fn text_lines_cannot_be_forged_nor_carry_escape_sequences() {
        let buffer = Buffer::default();
        log_once(text_subscriber(buffer.clone(), false).finish());
        let out = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        assert_eq!(out.lines().count(), 1, "{out}");
        assert!(!out.contains(['\u{1b}', '\u{9b}', '\u{202e}']), "{out:?}");
        assert!(out.contains(r"channel=C01\n2030-01-01T00:00:00Z"), "{out}");
        assert!(out.contains(r"route=C01\n2030"), "{out}");
        assert!(out.contains(r"delivered C01\n2030"), "{out}");
        assert!(out.contains(r"\u{1b}[2J"), "{out}");
    }

    #[test]
    fn json_lines_cannot_be_forged_nor_carry_escape_sequences() {
        let buffer = Buffer::default();
        log_once(json_subscriber(buffer.clone()).finish());
        let out = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        assert_eq!(out.lines().count(), 1, "{out}");
        assert!(!out.contains(['\u{1b}', '\u{9b}', '\u{202e}']), "{out:?}");
        let line: serde_json::Value = serde_json::from_str(out.trim_end()).unwrap_or_else(|e| panic!("{e}: {out}"));
        // Escaped, not lost: the JSON reads back as the value logged.
        assert_eq!(line["channel"], FORGED);
        assert_eq!(line["key"], FORGED);
    }

    #[test]
    fn escaping_leaves_plain_text_alone() {
        assert!(matches!(escape_controls("C0123 ünïcödé 👍"), Cow::Borrowed(_)));
        assert_eq!(escape_controls("a\r\nb\tc\u{7}"), r"a\r\nb\tc\u{7}");
        assert_eq!(escape_controls(r"a\nb"), r"a\\nb", "a backslash is doubled");
    }
}
