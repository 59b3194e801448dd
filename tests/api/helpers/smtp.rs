//! A real SMTP server on loopback (the `mailin` protocol engine on std threads) that records
//! every accepted message and can be told to answer 451 to a DATA or 550 to a recipient.

use mailin::{Action, Handler, Response, SessionBuilder};
use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, TcpListener};
use std::sync::{Arc, Mutex};

/// One accepted message.
#[derive(Debug, Clone)]
pub struct Received {
    /// Envelope recipients.
    pub to: Vec<String>,
    /// The raw message.
    pub data: Vec<u8>,
}

impl Received {
    /// The decoded (quoted-printable/base64 undone) HTML and text parts.
    pub fn parts(&self) -> (String, String) {
        let msg = mail_parser::MessageParser::default()
            .parse(&self.data)
            .expect("a MIME message");
        (
            msg.body_html(0).expect("an HTML part").into_owned(),
            msg.body_text(0).expect("a text part").into_owned(),
        )
    }

    /// A header's value.
    pub fn header(&self, name: &str) -> Option<String> {
        let msg = mail_parser::MessageParser::default().parse(&self.data)?;
        msg.header(name).map(|h| match h {
            mail_parser::HeaderValue::Text(t) => t.to_string(),
            other => format!("{other:?}"),
        })
    }
}

#[derive(Default)]
struct State {
    received: Vec<Received>,
    fail_next_data: Vec<u16>,
    reject_rcpt: Vec<(String, u16)>,
    data_attempts: usize,
    stall_connections: usize,
}

/// The server's handle.
#[derive(Clone)]
pub struct SmtpSink {
    /// The port it listens on.
    pub port: u16,
    state: Arc<Mutex<State>>,
}

struct Session {
    state: Arc<Mutex<State>>,
    to: Vec<String>,
    data: Vec<u8>,
}

impl Handler for Session {
    fn rcpt(&mut self, to: &str) -> Response {
        let state = self.state.lock().unwrap();
        if let Some((_, code)) = state.reject_rcpt.iter().find(|(addr, _)| to.contains(addr.as_str())) {
            return Response::custom(*code, "Mailbox unavailable".into());
        }
        mailin::response::OK
    }

    fn data_start(&mut self, _domain: &str, _from: &str, _is8bit: bool, to: &[String]) -> Response {
        let mut state = self.state.lock().unwrap();
        state.data_attempts += 1;
        // Refused at the DATA command: mailin keeps a session usable after that, unlike a
        // refusal after the message body.
        if !state.fail_next_data.is_empty() {
            let code = state.fail_next_data.remove(0);
            return Response::custom(code, "Try again later".into());
        }
        self.to = to.to_vec();
        self.data.clear();
        mailin::response::OK
    }

    fn data(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.data.extend_from_slice(buf);
        Ok(())
    }

    fn data_end(&mut self) -> Response {
        let mut state = self.state.lock().unwrap();
        state.received.push(Received {
            to: self.to.clone(),
            data: std::mem::take(&mut self.data),
        });
        mailin::response::OK
    }
}

impl SmtpSink {
    /// Starts the server on a free loopback port.
    pub fn start() -> Self {
        Self::start_on(0)
    }

    /// Starts the server on a given loopback port (0 = any).
    pub fn start_on(port: u16) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let state = shared.clone();
                if state.lock().unwrap().stall_connections > 0 {
                    // Accept, then say nothing: the client must time out.
                    state.lock().unwrap().stall_connections -= 1;
                    std::thread::spawn(move || {
                        std::thread::sleep(std::time::Duration::from_secs(30));
                        drop(stream);
                    });
                    continue;
                }
                std::thread::spawn(move || {
                    let mut writer = stream.try_clone().unwrap();
                    let mut reader = BufReader::new(stream);
                    let builder = SessionBuilder::new("sink.test");
                    let mut session = builder.build(
                        IpAddr::from([127, 0, 0, 1]),
                        Session {
                            state,
                            to: vec![],
                            data: vec![],
                        },
                    );
                    if session.greeting().write_to(&mut writer).is_err() {
                        return;
                    }
                    let mut line = Vec::new();
                    loop {
                        line.clear();
                        match reader.read_until(b'\n', &mut line) {
                            Ok(0) | Err(_) => return,
                            Ok(_) => {}
                        }
                        let response = session.process(&line);
                        match response.action {
                            Action::NoReply => {}
                            Action::Close => {
                                let _ = response.write_to(&mut writer);
                                let _ = writer.flush();
                                return;
                            }
                            _ => {
                                if response.write_to(&mut writer).is_err() {
                                    return;
                                }
                            }
                        }
                    }
                });
            }
        });
        SmtpSink { port, state }
    }

    /// Answers `code` to the next DATA (once per call).
    pub fn fail_next_data(&self, code: u16) {
        self.state.lock().unwrap().fail_next_data.push(code);
    }

    /// Accepts the next `n` connections without ever answering.
    pub fn stall_connections(&self, n: usize) {
        self.state.lock().unwrap().stall_connections += n;
    }

    /// Refuses `address` as a recipient with `code`.
    pub fn reject_recipient(&self, address: &str, code: u16) {
        self.state.lock().unwrap().reject_rcpt.push((address.to_string(), code));
    }

    /// Messages accepted so far.
    pub fn received(&self) -> Vec<Received> {
        self.state.lock().unwrap().received.clone()
    }

    /// How many DATA commands came (accepted or not).
    pub fn data_attempts(&self) -> usize {
        self.state.lock().unwrap().data_attempts
    }

    /// Waits for `n` accepted messages.
    pub async fn wait_for(&self, n: usize, timeout: std::time::Duration) -> Vec<Received> {
        super::wait_for(timeout, &format!("{n} messages"), || async {
            let got = self.received();
            if got.len() >= n { Ok(got) } else { Err(got.len()) }
        })
        .await
    }
}
