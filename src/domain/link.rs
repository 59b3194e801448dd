//! Checks on destinations that can come from a run's payload: Slack channels (a run may pick its
//! channel through `channel_from`) and run links (a generic event may carry any `run_url`).

/// Longest channel id or name accepted.
const MAX_CHANNEL: usize = 80;

/// Checks a Slack channel id (`C0123456789`) or name (`#support`), configured or taken from a
/// run: at most 80 characters, no whitespace, no control or format characters.
pub(crate) fn check_channel(channel: &str) -> Result<(), String> {
    let bad = channel.is_empty()
        || channel.chars().count() > MAX_CHANNEL
        || channel
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || is_invisible_format(c));
    if bad {
        Err(format!(
            "{:?} is not a channel (expected an id like \"C0123456789\" or a name like \"#support\")",
            super::truncate_for_message(channel)
        ))
    } else {
        Ok(())
    }
}

/// Zero-width and bidirectional formatting characters, which make a text read as another.
pub(crate) fn is_invisible_format(c: char) -> bool {
    matches!(c, '\u{061C}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}')
}

/// A host name as an operator writes it (`langsmith.example.com`), in the form URLs carry it
/// (lowercase, international names in punycode); `None` for anything else (a URL, a port).
pub(crate) fn link_host(text: &str) -> Option<String> {
    let text = text.trim();
    if text.is_empty() || text.contains(['/', ':', '@', '?', '#']) {
        return None;
    }
    match url::Host::parse(text).ok()? {
        url::Host::Domain(d) => Some(d),
        url::Host::Ipv4(ip) => Some(ip.to_string()),
        url::Host::Ipv6(_) => None,
    }
}

/// The hosts whose links are labelled "Open in LangSmith": the LangSmith UI's and those an
/// operator lists in `links.allowed_hosts`.
#[derive(Debug, Clone, Default)]
pub struct TrustedHosts(Vec<String>);

impl TrustedHosts {
    /// The UI's host and `allowed`.
    pub fn new(ui_url: &url::Url, allowed: &[String]) -> Self {
        let mut hosts: Vec<String> = ui_url.host_str().map(str::to_ascii_lowercase).into_iter().collect();
        hosts.extend(allowed.iter().cloned());
        TrustedHosts(hosts)
    }

    /// Whether `url` is an http(s) link on one of the hosts.
    pub fn trusts(&self, url: &str) -> bool {
        url::Url::parse(url).is_ok_and(|u| {
            matches!(u.scheme(), "http" | "https") && u.host_str().is_some_and(|h| self.0.iter().any(|t| t == h))
        })
    }
}

/// The text of a run link: "Open in LangSmith" for a trusted one, otherwise "Open run (host)",
/// so a reader sees where an untrusted link leads before following it.
pub(crate) fn run_link_label(url: &url::Url, trusted: bool) -> String {
    if trusted {
        "Open in LangSmith".to_string()
    } else {
        format!("Open run ({})", url.host_str().unwrap_or("unknown host"))
    }
}

/// A run's URL when it may be linked at all: an absolute http(s) URL with a host, no control
/// characters, and never a feedback-token endpoint (a fetch of it would record feedback). The
/// Slack renderer applies the same rule inside its link syntax; the Teams card uses this.
pub(crate) fn linkable_run_url(raw: &str) -> Option<url::Url> {
    let url = url::Url::parse(raw.trim()).ok()?;
    let ok = matches!(url.scheme(), "http" | "https")
        && url.host_str().is_some_and(|h| !h.is_empty())
        && !url.path().contains("/feedback/tokens")
        && !url.as_str().chars().any(char::is_control);
    ok.then_some(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_from_runs_pass_the_same_check_as_configured_ones() {
        for good in ["C0123456789", "#support", "support-bot", "G01ABCDEF"] {
            assert!(check_channel(good).is_ok(), "{good}");
        }
        let long = "C".repeat(81);
        for bad in [
            "",
            "C01\n2030-01-01T00:00:00Z INFO forged",
            "C01 x",
            "\u{1b}[2J",
            &long,
            "C01\u{202E}x",
        ] {
            let e = check_channel(bad).unwrap_err();
            assert!(e.contains("is not a channel"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn only_the_ui_host_and_listed_hosts_are_trusted() {
        let ui = url::Url::parse("https://smith.langchain.com").unwrap();
        let hosts = TrustedHosts::new(&ui, &[link_host("LangSmith.Example.com").unwrap()]);
        assert!(hosts.trusts("https://smith.langchain.com/o/1/projects/p/2/r/3"));
        assert!(hosts.trusts("https://langsmith.example.com/r/3"));
        for bad in [
            "https://evil.example/phish",
            "https://smith.langchain.com.evil.example/",
            "https://evil.example/?u=https://smith.langchain.com",
            "javascript:alert(1)",
            "not a url",
        ] {
            assert!(!hosts.trusts(bad), "{bad}");
        }
        let evil = url::Url::parse("https://evil.example/phish").unwrap();
        assert_eq!(run_link_label(&evil, false), "Open run (evil.example)");
        assert_eq!(run_link_label(&evil, true), "Open in LangSmith");
    }

    #[test]
    fn hosts_are_written_as_urls_carry_them() {
        assert_eq!(link_host(" Smith.Example.COM ").as_deref(), Some("smith.example.com"));
        assert_eq!(link_host("bücher.example").as_deref(), Some("xn--bcher-kva.example"));
        for bad in ["https://x.example", "x.example:443", "", "a b", "user@x.example"] {
            assert_eq!(link_host(bad), None, "{bad}");
        }
    }
}
