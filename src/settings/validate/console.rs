//! `[console]`: who may see the console, and where.

use super::Validator;
use crate::console::users::{USERS_VAR, parse_users};
use crate::domain::IpBlock;
use crate::settings::raw::RawConsole;
use crate::settings::{ConsoleRole, ConsoleSettings, Env};
use std::net::SocketAddr;
use std::time::Duration;

impl Validator {
    /// The console's settings; `server_listen` is where it is served without a listener of its
    /// own. A console reachable from other machines needs users or a trusted proxy header.
    pub(super) fn console(
        &mut self,
        raw: RawConsole,
        env: &dyn Env,
        server_listen: Option<SocketAddr>,
        public_url: Option<&url::Url>,
    ) -> Option<ConsoleSettings> {
        let enabled = raw.enabled.unwrap_or(false);
        let listen = match raw.listen.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(text) => match text.parse::<SocketAddr>() {
                Ok(a) => Some(a),
                Err(_) => {
                    self.fail(
                        "console.listen",
                        format!("{text:?} is not an address (expected \"127.0.0.1:8081\")"),
                    );
                    return None;
                }
            },
        };
        let users = match env.var(USERS_VAR) {
            None => Vec::new(),
            Some(text) => match parse_users(&text) {
                Ok(users) => users,
                Err(problems) => {
                    for p in problems {
                        self.fail(USERS_VAR, p);
                    }
                    Vec::new()
                }
            },
        };
        let trusted_header = match raw.trusted_header.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(name) => match axum::http::HeaderName::from_bytes(name.as_bytes()) {
                Ok(h) => Some(h),
                Err(_) => {
                    self.fail(
                        "console.trusted_header",
                        format!("{name:?} is not a header name (expected e.g. \"X-Forwarded-User\")"),
                    );
                    None
                }
            },
        };
        let mut trusted_proxies = Vec::new();
        for (i, text) in raw.trusted_proxies.unwrap_or_default().iter().enumerate() {
            match IpBlock::parse(text) {
                Ok(b) => trusted_proxies.push(b),
                Err(e) => self.fail(format!("console.trusted_proxies[{i}]"), e),
            }
        }
        if trusted_header.is_some() && trusted_proxies.is_empty() {
            self.fail(
                "console.trusted_proxies",
                "empty: console.trusted_header is believed only from the proxy that sets it (expected its address, e.g. [\"127.0.0.1\"])",
            );
        }
        let trusted_role = match raw.trusted_role.as_deref() {
            None | Some("read") => ConsoleRole::Read,
            Some("admin") => ConsoleRole::Admin,
            Some(other) => {
                self.fail(
                    "console.trusted_role",
                    format!("{other:?} is not a role (expected \"read\" or \"admin\")"),
                );
                ConsoleRole::Read
            }
        };
        let refresh = self.bounded_duration(
            "console.refresh",
            raw.refresh,
            "30s",
            (Duration::from_secs(5), Duration::from_secs(3600)),
        );
        if enabled {
            let at = listen.or(server_listen);
            // On the service's own listener behind a public URL, a reverse proxy on this machine
            // brings the world to a loopback address.
            let proxied = listen.is_none() && public_url.is_some_and(|u| !super::infra::is_loopback(u));
            let open_to_others = at.is_some_and(|a| !a.ip().is_loopback()) || proxied;
            if open_to_others && users.is_empty() && trusted_header.is_none() {
                self.fail(
                    "console.enabled",
                    format!(
                        "the console would be served on {}{} to anyone who can reach it: set {USERS_VAR} (entries name:hash:admin|read; `feedback-dispatch console hash-password` makes a hash) or console.trusted_header behind an SSO proxy, or serve it on a listener of its own on 127.0.0.1 (console.listen)",
                        at.map(|a| a.to_string()).unwrap_or_default(),
                        if proxied { ", which server.public_url makes public" } else { "" }
                    ),
                );
            }
        }
        Some(ConsoleSettings {
            enabled,
            listen,
            users,
            trusted_header,
            trusted_proxies,
            trusted_role,
            refresh: refresh?,
        })
    }
}
