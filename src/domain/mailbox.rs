//! Email addresses, checked once when the settings load: `a@b.example` or
//! `Name <a@b.example>`.

use serde::{Deserialize, Serialize};
use std::fmt;

/// An address as written, checked well enough to catch typos; the SMTP layer turns it into its
/// own type when it sends.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Mailbox(String);

impl Mailbox {
    /// Checks `text`; the error names it and the forms expected.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let addr = match (text.rfind('<'), text.ends_with('>')) {
            (Some(start), true) => &text[start + 1..text.len() - 1],
            _ => text,
        };
        let bad =
            || format!("{text:?} is not an email address (expected name@example.com or \"Name <name@example.com>\")");
        let (local, domain) = addr.split_once('@').ok_or_else(bad)?;
        let invalid = |s: &str| {
            s.is_empty()
                || s.chars()
                    .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | ',' | '@'))
        };
        if invalid(local) || invalid(domain) || domain.starts_with('.') || domain.ends_with('.') {
            return Err(bad());
        }
        Ok(Mailbox(text.to_string()))
    }

    /// The address as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The bare address (`a@b.example` of `Name <a@b.example>`): what an unsubscribe names.
    pub fn address(&self) -> &str {
        match (self.0.rfind('<'), self.0.ends_with('>')) {
            (Some(start), true) => &self.0[start + 1..self.0.len() - 1],
            _ => &self.0,
        }
    }

    /// The domain of the address (`b.example` of `Name <a@b.example>`).
    pub fn domain(&self) -> &str {
        self.0.rsplit('@').next().unwrap_or("localhost").trim_end_matches('>')
    }
}

impl fmt::Display for Mailbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for Mailbox {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Mailbox::parse(&s)
    }
}

impl From<Mailbox> for String {
    fn from(m: Mailbox) -> String {
        m.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mailboxes_accept_plain_and_named_forms() {
        assert!(Mailbox::parse("a@b.example").is_ok());
        assert!(Mailbox::parse("Reviewers <a@b.example>").is_ok());
        for bad in ["", "ab.example", "a@", "@b", "a b@c.d", "a@b.", "a@b@c"] {
            assert!(Mailbox::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Mailbox::parse("Reviewers <a@b.example>").unwrap().domain(), "b.example");
    }
}
