//! Lease arithmetic: how long one send may take, and whether a lease still covers it. A worker
//! that sends past its lease could see a second worker claim the job and send it too, so a send
//! starts only with its longest duration and [`LEASE_MARGIN`] left on the lease (`check-config`
//! requires `workers.lease` to hold that much; the worker extends the lease otherwise). Each kind
//! of job says its longest send (`delivery::Deliver::longest_send`) from these, with its settings.

use std::time::Duration;

/// Longest pacing wait a worker sleeps through; a longer one returns the job to the queue so
/// the worker can serve other channels meanwhile.
pub(crate) const MAX_INLINE_PACING_WAIT: Duration = Duration::from_secs(2);

/// Lease left over when a send at its longest would end: covers the time to record the
/// outcome.
pub(crate) const LEASE_MARGIN: Duration = Duration::from_secs(2);

/// The longest one Slack send may take with `slack.timeout`: the pacing wait a worker sleeps
/// through, then the request.
pub(crate) fn longest_slack_send(timeout: Duration) -> Duration {
    timeout.saturating_add(MAX_INLINE_PACING_WAIT)
}

/// The longest one SMTP send may take with `email.timeout` per command: lettre's timeout covers
/// each socket operation, and the whole exchange (connect, greeting, TLS, authentication,
/// envelope, data) is bounded at four of them.
pub(crate) fn longest_email_send(timeout: Duration) -> Duration {
    timeout.saturating_mul(4)
}

/// Whether a lease of `length`, held for `elapsed` so far, still covers a send of `longest` and
/// the recording of its outcome.
pub(crate) fn covers(length: Duration, elapsed: Duration, longest: Duration) -> bool {
    elapsed.saturating_add(longest).saturating_add(LEASE_MARGIN) <= length
}

/// Whether a send of `longest` starting `now` could end after `deadline`, the first lease end
/// among jobs already delivered and not yet recorded: then they are recorded before it.
pub(crate) fn outlasts<T: std::ops::Add<Duration, Output = T> + PartialOrd>(
    now: T,
    longest: Duration,
    deadline: T,
) -> bool {
    now + longest + LEASE_MARGIN > deadline
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn a_lease_covers_a_send_only_with_the_margin_to_record_it() {
        // 60 s lease, 17 s Slack send (15 s timeout + 2 s pacing), 2 s margin.
        let slack = longest_slack_send(S(15));
        assert_eq!(slack, S(17));
        assert!(covers(S(60), S(0), slack));
        assert!(covers(S(60), S(41), slack), "41 + 17 + 2 = 60 still fits");
        assert!(!covers(S(60), S(42), slack), "42 + 17 + 2 = 61 does not");
        assert!(!covers(S(10), S(0), slack), "a lease shorter than one send covers none");
        assert!(!covers(S(60), Duration::MAX, slack), "no overflow");
    }

    #[test]
    fn delivered_jobs_are_recorded_before_a_send_that_could_outlast_their_lease() {
        let deadline = S(100);
        assert!(!outlasts(S(50), S(17), deadline));
        assert!(
            !outlasts(S(81), S(17), deadline),
            "81 + 17 + 2 = 100 ends at the deadline"
        );
        assert!(outlasts(S(82), S(17), deadline));
    }

    #[test]
    fn an_smtp_exchange_is_bounded_at_four_timeouts() {
        assert_eq!(longest_email_send(S(10)), S(40));
        assert_eq!(longest_email_send(Duration::MAX), Duration::MAX);
    }
}
