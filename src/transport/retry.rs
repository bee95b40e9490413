//! Transient network failures: which are worth another attempt, and the pause before it.
//!
//! A connection reset or refused (a server or load balancer restarting), a 5xx from an HTTPS
//! front end, or a timeout often succeed a moment later, and a webhook-driven mirror that gives
//! up on the first one leaves the target stale until the next push. What cannot succeed is never
//! tried again: an authentication refusal (retrying it can lock an account), a host key that does
//! not match, refs the target rejected, the delete guard. The classification is positive and by
//! type: each transport says what kind its failure is where it happens (`IsSpurious`), no message
//! is read here, and a failure of no known kind costs one attempt.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Result;
use tracing::warn;

use crate::base::duration;
use crate::base::net_error::{IsSpurious, NetError};

/// How often a step is tried again, and how long to wait between attempts.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Retry {
    pub(crate) retries: u32,
    pub(crate) first_delay: Duration,
    pub(crate) max_delay: Duration,
}

impl Retry {
    pub(crate) fn new(retries: u32) -> Retry {
        Retry {
            retries,
            first_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(30),
        }
    }

    /// Run `step` until it succeeds, fails for good, or the retries are spent. `what` names the
    /// step in the warning each retry logs. Returns the last result and the retries it took.
    pub(crate) fn run<T>(
        &self,
        what: &str,
        mut step: impl FnMut() -> Result<T>,
    ) -> (Result<T>, u32) {
        let mut retried = 0;
        loop {
            match step() {
                Err(err) if retried < self.retries && is_transient(&err) => {
                    retried += 1;
                    self.pause(what, &err, retried);
                }
                result => return (result, retried),
            }
        }
    }

    /// Log the retry and wait before it: exponential backoff from `first_delay`, at most
    /// `max_delay`, with jitter (half to all of it) so runs that failed together do not retry
    /// together.
    pub(crate) fn pause(&self, what: &str, err: &anyhow::Error, retry: u32) {
        let exponential = self
            .first_delay
            .saturating_mul(1 << (retry - 1).min(16))
            .min(self.max_delay);
        let delay = exponential.mul_f64(0.5 + 0.5 * jitter());
        warn!(
            "{what} failed ({}); retrying in {} (retry {retry} of {})",
            crate::base::error::one_line(err),
            duration::show(Duration::from_millis(delay.as_millis() as u64)),
            self.retries
        );
        std::thread::sleep(delay);
    }
}

/// A number in [0, 1) that differs between processes and calls; enough for jitter.
fn jitter() -> f64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let mut x = u64::from(nanos) ^ (u64::from(std::process::id()) << 32);
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    (x % 1_000_000) as f64 / 1_000_000.0
}

/// Whether `err` is a failure another attempt may not meet: the first typed failure in its
/// chain says (`IsSpurious`). A refusal this tool made itself (`error::Error`: the delete guard,
/// a usage error, rejected refs) never is, nor is a failure of no known kind.
pub(crate) fn is_transient(err: &anyhow::Error) -> bool {
    for cause in err.chain() {
        if cause.downcast_ref::<crate::base::error::Error>().is_some() {
            return false;
        }
        if let Some(verdict) = spurious(cause) {
            return verdict;
        }
    }
    false
}

/// The verdict of one cause, when it is of a kind that has one.
fn spurious(cause: &(dyn std::error::Error + 'static)) -> Option<bool> {
    if let Some(e) = cause.downcast_ref::<NetError>() {
        return Some(e.is_spurious());
    }
    if let Some(e) = cause.downcast_ref::<std::io::Error>() {
        // An I/O error made from one of ours (a stalled read) carries it inside.
        if let Some(inner) = e.get_ref().and_then(|i| i.downcast_ref::<NetError>()) {
            return Some(inner.is_spurious());
        }
        return Some(e.is_spurious());
    }
    if let Some(e) = cause.downcast_ref::<git2::Error>() {
        return Some(e.is_spurious());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    use git2::{ErrorClass, ErrorCode};

    fn git2_error(class: ErrorClass, code: ErrorCode, message: &str) -> anyhow::Error {
        anyhow::Error::new(git2::Error::new(code, class, message)).context("cannot fetch from x")
    }

    fn reset() -> anyhow::Error {
        anyhow::Error::new(std::io::Error::from(std::io::ErrorKind::ConnectionReset))
            .context("cannot read the refs of x")
    }

    #[test]
    fn decides_by_the_kind_of_failure_never_by_its_words() {
        let stalled = NetError::io(
            &std::io::ErrorKind::WouldBlock.into(),
            "git://h/r",
            Duration::from_secs(1),
        );
        let transient = [
            git2_error(ErrorClass::Net, ErrorCode::Timeout, "whatever it says"),
            git2_error(
                ErrorClass::Http,
                ErrorCode::GenericError,
                "unexpected http status code: 503",
            ),
            reset(),
            anyhow::Error::new(std::io::Error::new(std::io::ErrorKind::TimedOut, stalled))
                .context("cannot read"),
            anyhow::Error::new(NetError::HttpStatus {
                status: 502,
                text: "x answered HTTP 502".into(),
            }),
            anyhow::Error::new(NetError::Damaged {
                what: "the source's pack".into(),
            }),
        ];
        for err in &transient {
            assert!(is_transient(err), "{err:#}");
        }
        let permanent = [
            git2_error(ErrorClass::Net, ErrorCode::Auth, "connection reset"),
            anyhow::Error::new(NetError::HttpStatus {
                status: 401,
                text: "x answered HTTP 401, connection reset".into(),
            }),
            anyhow::Error::new(NetError::Protocol("timed out, connection reset".into())),
            // Words alone, however transient they sound, are no kind of failure.
            anyhow::anyhow!("connection reset by peer: timed out (damaged on the way)"),
            crate::base::error::usage("--source: connection refused, oddly"),
            crate::base::error::usage("x").context(NetError::Broken {
                url: "u".into(),
                detail: "reset".into(),
            }),
        ];
        for err in &permanent {
            assert!(!is_transient(err), "{err:#}");
        }
    }

    #[test]
    fn retries_transient_failures_only_and_counts_them() {
        let policy = Retry {
            retries: 2,
            first_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(2),
        };
        let mut calls = 0;
        let (result, retried) = policy.run("step", || {
            calls += 1;
            if calls < 3 {
                return Err(reset());
            }
            Ok(calls)
        });
        assert_eq!((result.unwrap(), retried), (3, 2));
        let mut calls = 0;
        let (result, retried) = policy.run("step", || -> Result<()> {
            calls += 1;
            Err(git2_error(ErrorClass::Http, ErrorCode::Auth, "401"))
        });
        assert!(result.is_err());
        assert_eq!((calls, retried), (1, 0));
        let mut calls = 0;
        let (_, retried) = policy.run("step", || -> Result<()> {
            calls += 1;
            Err(git2_error(ErrorClass::Net, ErrorCode::Timeout, "timed out"))
        });
        assert_eq!((calls, retried), (3, 2));
    }
}
