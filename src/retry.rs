//! The one retry policy: which failures are worth another try ([`Retryable`], implemented by
//! each adapter's error: LangSmith, Slack, SMTP, the store) and how long to wait before it
//! ([`exponential`], with [`jittered`] for waits many callers take at once). The claim loop's
//! wait on a failing store, the accept loop's, the LangSmith client's retries, backfill's and
//! the queue's all use these formulas. Depends on nothing else in the crate (its tests check
//! each adapter's errors against it).

use std::time::Duration;

/// A failure that says whether a later try may succeed, and how long the other side asked to be
/// left alone. The worker decides by these methods, never by the error's text.
pub trait Retryable {
    /// Whether trying again later may succeed.
    fn is_retryable(&self) -> bool;
    /// The wait the other side asked for (`Retry-After`), if any.
    fn retry_after(&self) -> Option<Duration> {
        None
    }
}

/// The longest wait a `Retry-After` is taken for. A server asking for more (an error, or a hostile
/// endpoint) is retried after this long: an hour keeps its wish in spirit, and an unbounded wait
/// would overflow the clocks it is added to (`Instant + Duration` and `DateTime + Duration`
/// panic past their range).
pub(crate) const LONGEST_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// A `Retry-After` header's value in seconds (`"120"`, `"1.5"`), at most
/// [`LONGEST_RETRY_AFTER`]; `None` for anything else (an HTTP date, a negative or non-finite
/// number).
pub(crate) fn parse_retry_after(value: &str) -> Option<Duration> {
    value
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(|s| Duration::from_secs_f64(s.min(LONGEST_RETRY_AFTER.as_secs_f64())))
}

/// `after` at most [`LONGEST_RETRY_AFTER`], for waits that did not come through
/// [`parse_retry_after`].
pub(crate) fn capped(after: Duration) -> Duration {
    after.min(LONGEST_RETRY_AFTER)
}

/// The wait before try `attempt + 1` after `attempt` failures (counted from 1): `base`, doubling,
/// at most `max`. Saturates instead of overflowing.
pub(crate) fn exponential(base: Duration, attempt: u32, max: Duration) -> Duration {
    base.saturating_mul(1u32 << attempt.saturating_sub(1).min(16)).min(max)
}

/// [`exponential`] without a cap, with full jitter: a random wait in [w/2, w] where
/// w = base·2^(attempt-1), so callers failing together do not retry together.
pub(crate) fn jittered(base: Duration, attempt: u32) -> Duration {
    let exp = exponential(base, attempt, Duration::MAX);
    let half = exp / 2;
    half + Duration::from_millis(fastrand::u64(0..=half.as_millis() as u64))
}

/// Who retries a failed call to another system.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RetriedBy {
    /// The job queue: a delivery's call is tried once per attempt of its job, and the job
    /// retries (backed off, `workers.max_attempts` in all). Retrying inside the call as well
    /// would multiply the two: 5 client tries × 8 job attempts = 40 token requests for one
    /// message, where the queue's 8 are the bound.
    Queue,
    /// The caller itself, with a person waiting and no queue behind it (commands, `preview`,
    /// backfill): up to the client's `langsmith.max_attempts` tries.
    Client,
}

/// The tries one call makes when `by` retries it, with the client allowed `client_attempts`.
/// A message therefore costs at most `workers.max_attempts` token requests (one per attempt of
/// its job; a digest's tokens are minted once for all its recipients).
pub(crate) fn tries_per_call(by: RetriedBy, client_attempts: u32) -> u32 {
    match by {
        RetriedBy::Queue => 1,
        RetriedBy::Client => client_attempts.max(1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_retry_after_past_an_hour_is_read_as_an_hour_and_never_overflows_a_clock() {
        for huge in ["1e30", "18446744073709551615", "99999999999999", "1.7e308"] {
            assert_eq!(parse_retry_after(huge), Some(LONGEST_RETRY_AFTER), "{huge}");
        }
        assert_eq!(parse_retry_after("1.5"), Some(Duration::from_millis(1500)));
        for bad in ["inf", "NaN", "-1", "Wed, 21 Oct 2026 07:28:00 GMT", ""] {
            assert_eq!(parse_retry_after(bad), None, "{bad}");
        }
        assert_eq!(capped(Duration::MAX), LONGEST_RETRY_AFTER);
        // What the callers do with it must not panic.
        let _ = std::time::Instant::now() + capped(Duration::MAX);
        let _ = chrono::Utc::now() + chrono::Duration::from_std(capped(Duration::MAX)).unwrap();
    }

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn exponential_doubles_from_its_base_up_to_its_cap() {
        let waits: Vec<u64> = (1..=8)
            .map(|n| exponential(MS(100), n, MS(5000)).as_millis() as u64)
            .collect();
        assert_eq!(waits, [100, 200, 400, 800, 1600, 3200, 5000, 5000]);
        assert_eq!(exponential(MS(100), 0, MS(5000)), MS(100), "attempt 0 waits the base");
        assert_eq!(exponential(MS(100), u32::MAX, MS(5000)), MS(5000), "no overflow");
        assert_eq!(exponential(Duration::MAX, 3, Duration::MAX), Duration::MAX, "saturates");
    }

    #[test]
    fn jittered_waits_stay_between_half_and_all_of_the_exponential() {
        let base = MS(100);
        for attempt in 1..8 {
            let top = base * (1 << (attempt - 1));
            for _ in 0..50 {
                let d = jittered(base, attempt);
                assert!(d >= top / 2 && d <= top, "{attempt}: {d:?}");
            }
        }
    }

    #[test]
    fn a_queued_call_is_tried_once_so_a_message_costs_at_most_its_jobs_attempts() {
        assert_eq!(
            tries_per_call(RetriedBy::Queue, 5),
            1,
            "the queue retries, not the call"
        );
        assert_eq!(tries_per_call(RetriedBy::Client, 5), 5);
        assert_eq!(tries_per_call(RetriedBy::Client, 0), 1, "at least the one try");
    }

    /// An error of each adapter answers the policy's questions.
    #[test]
    fn each_adapters_errors_say_whether_to_retry() {
        use crate::email::deliver::EmailError;
        use crate::langsmith::LangSmithError;
        use crate::slack::deliver::SlackError;
        let cases: Vec<(Box<dyn Retryable>, bool)> = vec![
            (Box::new(LangSmithError::Timeout(MS(1))), true),
            (
                Box::new(LangSmithError::Status {
                    status: 503,
                    detail: String::new(),
                    retry_after: Some(MS(7)),
                }),
                true,
            ),
            (
                Box::new(LangSmithError::Auth {
                    status: 401,
                    hint: String::new(),
                }),
                false,
            ),
            (Box::new(EmailError::Transient("421".into())), true),
            (Box::new(EmailError::Permanent("550".into())), false),
            (
                Box::new(SlackError::RateLimited {
                    retry_after: Some(MS(9)),
                }),
                true,
            ),
            (Box::new(crate::store::StoreError::Corrupt("x".into())), true),
        ];
        for (i, (error, retry)) in cases.iter().enumerate() {
            assert_eq!(error.is_retryable(), *retry, "case {i}");
        }
        assert_eq!(cases[1].0.retry_after(), Some(MS(7)));
        assert_eq!(cases[5].0.retry_after(), Some(MS(9)));
        assert_eq!(cases[0].0.retry_after(), None);
    }
}
