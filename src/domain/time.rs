//! Timestamps as the outside world writes them: LangSmith's (RFC 3339, or naive ISO 8601 in
//! UTC), read by intake from webhook bodies and by the LangSmith client from its answers.

use chrono::{DateTime, NaiveDateTime, Utc};

/// Reads LangSmith timestamps: RFC 3339, or naive ISO 8601 taken as UTC.
pub(crate) fn parse_timestamp(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    for format in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, format) {
            return Some(t.and_utc());
        }
    }
    None
}

/// Formats a timestamp as LangSmith does (`2026-08-29T09:15:02.417733+00:00`).
pub(crate) fn format_timestamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_with_and_without_zone_are_read_as_utc() {
        let a = parse_timestamp("2026-08-29T09:15:02.417733+00:00").unwrap();
        let b = parse_timestamp("2026-08-29T09:15:02.417733").unwrap();
        assert_eq!(a, b);
        assert_eq!(format_timestamp(a), "2026-08-29T09:15:02.417733+00:00");
        assert!(parse_timestamp("yesterday").is_none());
    }
}
