//! Transient network failures: which are worth another attempt, and the pause before it.
//!
//! A connection reset or refused (a server or load balancer restarting), a 5xx from an HTTPS
//! front end, or a timeout often succeed a moment later, and a webhook-driven mirror that gives
//! up on the first one leaves the target stale until the next push. What cannot succeed is never
//! tried again: an authentication refusal (retrying it can lock an account), a host key that does
//! not match, refs the target rejected, the delete guard. The classification is positive: only
//! failures recognised as transient are retried, so an unknown failure costs one attempt.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Result;
use git2::{ErrorClass, ErrorCode};
use tracing::warn;

use crate::duration;

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
            one_line(err),
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

fn one_line(err: &anyhow::Error) -> String {
    format!("{err:#}").replace('\n', " ")
}

/// Failures that a later attempt cannot fix, whatever else the message says.
const NEVER: &[&str] = &[
    "authentication",
    "credentials",
    "password",
    "username",
    "host key",
    "permission denied",
    "status code: 40",
    "returned error: 40",
    "http 40",
    "not found",
    "does not appear to be a git repository",
    "no such repository",
];

/// Failures of the network or of an overloaded server.
const TRANSIENT: &[&str] = &[
    "connection reset",
    "connection refused",
    "connection was reset",
    "broken pipe",
    "timed out",
    "hung up unexpectedly",
    "unexpected disconnect",
    "early eof",
    "unexpected eof",
    "status code: 5",
    "returned error: 5",
    "http 5",
    "rpc failed",
    "could not read from socket",
    "could not write to socket",
    "failed getting banner",
    "unable to exchange encryption keys",
    "failed to connect",
    "unable to connect",
    "network is unreachable",
    "no route to host",
    "temporary failure in name resolution",
    "moved no data",
    "connection closed",
    "unexpected end of file",
    "invalid eof state",
    "could not read from remote repository",
    // A pack whose checksum did not hold (`relay::PackCheck`): bytes damaged on the way.
    "damaged on the way",
];

/// Whether `err` is a failure another attempt may not meet.
pub(crate) fn is_transient(err: &anyhow::Error) -> bool {
    if err
        .chain()
        .any(|c| c.downcast_ref::<crate::error::Error>().is_some())
    {
        return false;
    }
    let text = format!("{err:#}").to_lowercase();
    if NEVER.iter().any(|p| text.contains(p)) {
        return false;
    }
    if err
        .chain()
        .any(|c| c.downcast_ref::<crate::gitcli::Stalled>().is_some())
    {
        return true;
    }
    if let Some(e) = err.chain().find_map(|c| c.downcast_ref::<git2::Error>()) {
        match e.code() {
            ErrorCode::Auth | ErrorCode::Certificate => return false,
            ErrorCode::Timeout => return true,
            // The connection ended mid-answer (libgit2's "could not read from remote
            // repository" on a cut stream).
            ErrorCode::Eof if matches!(e.class(), ErrorClass::Net | ErrorClass::Ssh) => {
                return true;
            }
            _ => {}
        }
        if !matches!(
            e.class(),
            ErrorClass::Net | ErrorClass::Ssh | ErrorClass::Http | ErrorClass::Ssl | ErrorClass::Os
        ) {
            return false;
        }
    }
    TRANSIENT.iter().any(|p| text.contains(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn git2_error(class: ErrorClass, code: ErrorCode, message: &str) -> anyhow::Error {
        anyhow::Error::new(git2::Error::new(code, class, message)).context("cannot fetch from x")
    }

    #[test]
    fn classifies_what_is_worth_another_attempt() {
        let transient = [
            git2_error(
                ErrorClass::Net,
                ErrorCode::GenericError,
                "connection reset by peer",
            ),
            git2_error(
                ErrorClass::Net,
                ErrorCode::Timeout,
                "could not read from socket: timed out",
            ),
            git2_error(
                ErrorClass::Http,
                ErrorCode::GenericError,
                "unexpected http status code: 503",
            ),
            anyhow::anyhow!("git push to x failed: fatal: the remote end hung up unexpectedly"),
            anyhow::anyhow!("git push to x failed: error: RPC failed; HTTP 502 curl 22"),
            anyhow::anyhow!("the source's pack does not match its checksum (damaged on the way)"),
        ];
        for err in &transient {
            assert!(is_transient(err), "{err:#}");
        }
        let permanent = [
            git2_error(ErrorClass::Net, ErrorCode::Auth, "authentication required"),
            git2_error(
                ErrorClass::Http,
                ErrorCode::GenericError,
                "unexpected http status code: 404",
            ),
            git2_error(
                ErrorClass::Odb,
                ErrorCode::GenericError,
                "object not found - connection reset",
            ),
            anyhow::anyhow!("cannot connect to ssh://h/r: the host key of h does not match"),
            anyhow::anyhow!("git push to x failed: fatal: Authentication failed for 'x'"),
            anyhow::anyhow!("something nobody has seen before"),
            crate::error::usage("--source: connection refused, oddly"),
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
                anyhow::bail!("connection reset by peer")
            }
            Ok(calls)
        });
        assert_eq!((result.unwrap(), retried), (3, 2));
        let mut calls = 0;
        let (result, retried) = policy.run("step", || -> Result<()> {
            calls += 1;
            anyhow::bail!("authentication failed")
        });
        assert!(result.is_err());
        assert_eq!((calls, retried), (1, 0));
        let mut calls = 0;
        let (_, retried) = policy.run("step", || -> Result<()> {
            calls += 1;
            anyhow::bail!("timed out")
        });
        assert_eq!((calls, retried), (3, 2));
    }
}
