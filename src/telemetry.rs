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
/// call is ignored), which tests rely on. Lines go to stderr as each is written; the running
/// service logs through [`init_batched`] instead.
pub fn init(format: LogFormat, level: &str) {
    install(format, level, std::io::stderr);
}

/// As [`init`], for `serve`: lines go to stderr in batches, at most [`LINGER`] after they were
/// logged (see [`Batched`]). Call [`flush`] before the process exits.
pub fn init_batched(format: LogFormat, level: &str) {
    install(format, level, Batched::start());
}

fn install<W>(format: LogFormat, level: &str, writer: W)
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new(format!(
            "{level},sqlx=warn,hyper=warn,hyper_util=warn,slack_morphism=warn,rustls=warn"
        ))
    });
    use std::io::IsTerminal;
    let ansi = std::io::stderr().is_terminal();
    let _ = match format {
        LogFormat::Text => text_subscriber(writer, ansi).with_env_filter(filter).try_init(),
        LogFormat::Json => json_subscriber(writer).with_env_filter(filter).try_init(),
    };
}

/// How long a line may wait in [`Batched`]'s buffer before it is written.
pub const LINGER: std::time::Duration = std::time::Duration::from_millis(20);

/// How much [`Batched`] holds while its output is not read; lines beyond are dropped, and
/// counted in a line written once the output takes lines again.
const HOLD_AT_MOST: usize = 8 << 20;

/// Log lines in batches: a line is appended to a buffer, and a thread of its own writes what
/// the buffer holds [`LINGER`] after its first line came, in one `write`. The service logs a
/// line per delivery; written one by one, each line was a system call on the thread that
/// logged it and, for whoever reads the pipe (journald, a container runtime), a wake-up.
/// Lines keep their order. [`flush`] writes what is waiting, at exit and before a panic's
/// message; a process killed outright loses at most the last [`LINGER`] of lines, never a half
/// line. An output that is not read (a stalled pipe) no longer stalls the thread that logs:
/// past [`HOLD_AT_MOST`] bytes waiting, lines are dropped and their number reported.
#[derive(Clone)]
pub struct Batched(std::sync::Arc<BatchShared>);

struct BatchShared {
    pending: std::sync::Mutex<Pending>,
    arrived: std::sync::Condvar,
    /// The output, with the batch being written: held while a batch is taken and written, so
    /// batches reach the output in the order taken.
    output: std::sync::Mutex<Output>,
    /// Set when the writing thread could not be started: each line is written as it comes.
    direct: std::sync::atomic::AtomicBool,
}

#[derive(Default)]
struct Pending {
    lines: Vec<u8>,
    dropped: u64,
}

struct Output {
    out: Box<dyn std::io::Write + Send>,
    batch: Vec<u8>,
}

static BATCHED: std::sync::OnceLock<Batched> = std::sync::OnceLock::new();

impl Batched {
    /// The process's batched writer to stderr, started on first use; a panic writes what is
    /// waiting before its message.
    fn start() -> Batched {
        BATCHED
            .get_or_init(|| {
                let batched = Batched::new(Box::new(std::io::stderr()));
                let previous = std::panic::take_hook();
                std::panic::set_hook(Box::new(move |info| {
                    flush();
                    previous(info)
                }));
                batched
            })
            .clone()
    }

    /// A batched writer to `out`, with its writing thread.
    fn new(out: Box<dyn std::io::Write + Send>) -> Batched {
        let shared = std::sync::Arc::new(BatchShared {
            pending: std::sync::Mutex::new(Pending {
                lines: Vec::with_capacity(64 * 1024),
                dropped: 0,
            }),
            arrived: std::sync::Condvar::new(),
            output: std::sync::Mutex::new(Output {
                out,
                batch: Vec::with_capacity(64 * 1024),
            }),
            direct: std::sync::atomic::AtomicBool::new(false),
        });
        let writer = std::sync::Arc::clone(&shared);
        let spawned = std::thread::Builder::new().name("log-writer".into()).spawn(move || {
            loop {
                {
                    let mut pending = lock(&writer.pending);
                    while pending.lines.is_empty() {
                        pending = writer.arrived.wait(pending).unwrap_or_else(|e| e.into_inner());
                    }
                }
                std::thread::sleep(LINGER);
                writer.write_out();
            }
        });
        if spawned.is_err() {
            shared.direct.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        Batched(shared)
    }

    /// Writes what is waiting.
    #[cfg(test)]
    fn flush_now(&self) {
        self.0.write_out();
    }
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl BatchShared {
    fn write_out(&self) {
        self.write_out_with(lock(&self.output));
    }

    /// As `write_out`, unless the output has not taken the batch before it within a second
    /// (a pipe nobody reads): then the lines are left, so that exiting, or a panic's message,
    /// does not wait for a reader forever.
    fn write_out_or_give_up(&self) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
        loop {
            match self.output.try_lock() {
                Ok(output) => return self.write_out_with(output),
                Err(std::sync::TryLockError::Poisoned(e)) => return self.write_out_with(e.into_inner()),
                Err(std::sync::TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                Err(std::sync::TryLockError::WouldBlock) => return,
            }
        }
    }

    fn write_out_with(&self, mut output: std::sync::MutexGuard<'_, Output>) {
        let Output { out, batch } = &mut *output;
        let dropped = {
            let mut pending = lock(&self.pending);
            std::mem::swap(&mut pending.lines, batch);
            std::mem::take(&mut pending.dropped)
        };
        if dropped > 0 {
            batch.extend_from_slice(format!("{dropped} log lines dropped: the log output was not read\n").as_bytes());
        }
        if !batch.is_empty() {
            // Nowhere to report a failed write of the log; the lines are dropped, as an
            // unbuffered logger's would be.
            let _ = out.write_all(batch).and_then(|()| out.flush());
            batch.clear();
        }
    }
}

/// Writes the log lines the service's [`Batched`] holds; a no-op when lines are not batched.
/// Gives up after a second when the output takes nothing (a pipe nobody reads), so that the
/// process can still exit.
pub fn flush() {
    if let Some(batched) = BATCHED.get() {
        batched.0.write_out_or_give_up();
    }
}

impl<'a> MakeWriter<'a> for Batched {
    type Writer = Batched;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl std::io::Write for Batched {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut pending = lock(&self.0.pending);
        let was_empty = pending.lines.is_empty();
        if pending.lines.len() + buf.len() > HOLD_AT_MOST {
            pending.dropped += 1;
            return Ok(buf.len());
        }
        pending.lines.extend_from_slice(buf);
        drop(pending);
        if self.0.direct.load(std::sync::atomic::Ordering::Relaxed) {
            self.0.write_out();
        } else if was_empty {
            self.0.arrived.notify_one();
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
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
    // Each value is written through the escaping writer as it is formatted: no text of its
    // own per field.
    let fields = tracing_subscriber::fmt::format::debug_fn(|w: &mut Writer<'_>, field, value| {
        use std::fmt::Write as _;
        match field.name() {
            "message" => write!(Escaping(w), "{value:?}"),
            // tracing-log's own fields, which the default format leaves out too.
            name if name.starts_with("log.") => Ok(()),
            name => {
                w.write_str(name)?;
                w.write_char('=')?;
                write!(Escaping(w), "{value:?}")
            }
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

/// Writes what it is given to the inner writer as [`escape_controls`] would return it; a
/// piece at a time, which comes to the same, as each character is escaped alone.
struct Escaping<'a, W>(&'a mut W);

impl<W: std::fmt::Write> std::fmt::Write for Escaping<'_, W> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.write_str(&escape_controls(s))
    }
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

    /// Lines from several threads reach the output whole and each thread's in its order, by
    /// the writing thread alone (no flush), and `flush_now` writes what is still waiting.
    #[test]
    fn batched_lines_arrive_whole_and_in_order() {
        use std::io::Write;
        let out = Buffer::default();
        let batched = Batched::new(Box::new(out.clone()));
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let mut w = batched.make_writer();
                std::thread::spawn(move || {
                    for i in 0..500 {
                        w.write_all(format!("thread {t} line {i}\n").as_bytes()).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while out.0.lock().unwrap().len() < 4 * 500 * "thread 0 line 0\n".len() && std::time::Instant::now() < deadline
        {
            std::thread::sleep(LINGER);
        }
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 2000, "every line, by the writing thread");
        for t in 0..4 {
            let mine: Vec<usize> = text
                .lines()
                .filter_map(|l| l.strip_prefix(&format!("thread {t} line ")))
                .map(|n| n.parse().unwrap())
                .collect();
            assert_eq!(mine, (0..500).collect::<Vec<_>>());
        }
        batched.make_writer().write_all(b"last\n").unwrap();
        batched.flush_now();
        assert!(
            out.0.lock().unwrap().ends_with(b"last\n"),
            "flush_now writes what waits"
        );
    }

    /// An output nobody reads holds at most `HOLD_AT_MOST` bytes; the lines beyond are counted
    /// and the count written once the output takes lines again.
    #[test]
    fn batched_lines_beyond_the_limit_are_dropped_and_counted() {
        use std::io::Write;
        struct Stalled(std::sync::Arc<std::sync::Mutex<()>>, Buffer);
        impl std::io::Write for Stalled {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                let _held = self.0.lock().unwrap();
                self.1.write(buf)
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let gate = std::sync::Arc::new(std::sync::Mutex::new(()));
        let out = Buffer::default();
        let closed = gate.lock().unwrap();
        let batched = Batched::new(Box::new(Stalled(gate.clone(), out.clone())));
        let line = vec![b'x'; 1023].into_iter().chain([b'\n']).collect::<Vec<u8>>();
        let mut w = batched.make_writer();
        // The writing thread takes the first batch and stalls on it; the rest wait.
        w.write_all(&line).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while !lock(&batched.0.pending).lines.is_empty() {
            assert!(std::time::Instant::now() < deadline, "the writing thread takes a batch");
            std::thread::sleep(LINGER);
        }
        for _ in 0..(HOLD_AT_MOST / line.len() + 10) {
            w.write_all(&line).unwrap();
        }
        drop(closed);
        batched.flush_now();
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert!(
            text.contains("10 log lines dropped: the log output was not read\n"),
            "{}",
            &text[text.len() - 200..]
        );
        assert_eq!(
            text.lines().filter(|l| l.starts_with('x')).count(),
            HOLD_AT_MOST / line.len() + 1
        );
    }

    #[test]
    fn escaping_piece_by_piece_writes_what_escaping_the_whole_does() {
        use std::fmt::Write as _;
        let text = "a\\b\r\n\u{1b}[2J \u{202e}ünï\u{2028}👍\u{9b}";
        for cut in (0..=text.len()).filter(|&i| text.is_char_boundary(i)) {
            let mut out = String::new();
            let mut w = Escaping(&mut out);
            w.write_str(&text[..cut]).unwrap();
            w.write_str(&text[cut..]).unwrap();
            assert_eq!(out, escape_controls(text), "cut at {cut}");
        }
    }

    #[test]
    fn escaping_leaves_plain_text_alone() {
        assert!(matches!(escape_controls("C0123 ünïcödé 👍"), Cow::Borrowed(_)));
        assert_eq!(escape_controls("a\r\nb\tc\u{7}"), r"a\r\nb\tc\u{7}");
        assert_eq!(escape_controls(r"a\nb"), r"a\\nb", "a backslash is doubled");
    }
}
