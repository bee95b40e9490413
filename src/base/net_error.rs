//! What can go wrong talking to a remote, as the callers that branch on it need it.
//!
//! The retry policy (`transport::retry`) asks an error whether another attempt may succeed; it never reads
//! a message. Each transport turns what its library or peer said into one of these kinds where
//! the failure happens, so rewording a message cannot change what is retried.

use std::time::Duration;

/// Whether a failure may pass if the same step is tried again (a connection reset, a 5xx, a
/// timeout), as opposed to one that cannot (credentials refused, a host key that does not match,
/// a peer that does not speak the protocol).
pub(crate) trait IsSpurious {
    fn is_spurious(&self) -> bool;
}

/// A failure of the way to a remote, or of what the remote answered.
#[derive(Debug, thiserror::Error)]
pub(crate) enum NetError {
    /// The host name did not resolve. `temporary` when the resolver said so (EAI_AGAIN).
    #[error("cannot resolve the host of {url}: {detail}")]
    Resolve {
        url: String,
        detail: String,
        temporary: bool,
    },
    /// No connection could be made (refused, unreachable, no answer in time).
    #[error("failed to connect to {url}: {detail}")]
    Connect { url: String, detail: String },
    /// The remote sent or took nothing for `timeout`, or too little for too long.
    #[error(
        "{url} {doing} for {} (--network-timeout): {why}",
        crate::base::duration::show(*timeout)
    )]
    Stalled {
        url: String,
        /// What did not happen, as a verb phrase: "sent nothing", "moved no data".
        doing: &'static str,
        timeout: Duration,
        why: &'static str,
    },
    /// The connection broke mid-conversation (reset, closed early, a pipe broken).
    #[error("the connection to {url} broke: {detail}")]
    Broken { url: String, detail: String },
    /// An HTTP answer that is not a success; `text` says it for a person (code, meaning, what the
    /// server said, escaped).
    #[error("{text}")]
    HttpStatus { status: u16, text: String },
    /// The server redirected; the redirect is not followed (credentials are given for one origin,
    /// and a push body cannot be sent twice).
    #[error("{text}")]
    Redirected { text: String },
    /// TLS could not be set up: a certificate not trusted or not for this host, no roots.
    #[error("TLS with {url} failed: {detail}")]
    Tls { url: String, detail: String },
    /// A pack whose checksum did not hold: bytes damaged on the way.
    #[error("{what} does not match its checksum (damaged on the way)")]
    Damaged { what: String },
    /// The peer said something this tool does not understand, or refused the request outright.
    #[error("{0}")]
    Protocol(String),
    /// A git child (`git push`) failed; whether another attempt may pass was read from git's
    /// own words where it ran (`engine::git_cli`), the one place a child's text is all there is.
    #[error("{text}")]
    Git { text: String, spurious: bool },
}

impl IsSpurious for NetError {
    fn is_spurious(&self) -> bool {
        match self {
            NetError::Resolve { temporary, .. } => *temporary,
            NetError::Connect { .. }
            | NetError::Stalled { .. }
            | NetError::Broken { .. }
            | NetError::Damaged { .. } => true,
            // 408 Request Timeout and 429 Too Many Requests ask for another try; 5xx are the
            // server's or a proxy's trouble.
            NetError::HttpStatus { status, .. } => matches!(status, 408 | 429 | 500..=599),
            NetError::Redirected { .. } | NetError::Tls { .. } | NetError::Protocol(_) => false,
            NetError::Git { spurious, .. } => *spurious,
        }
    }
}

impl IsSpurious for std::io::Error {
    /// The connection broke or stalled: the kinds a reset, a cut cable or a silent peer give.
    fn is_spurious(&self) -> bool {
        use std::io::ErrorKind::*;
        matches!(
            self.kind(),
            ConnectionReset
                | ConnectionAborted
                | ConnectionRefused
                | NotConnected
                | BrokenPipe
                | UnexpectedEof
                | TimedOut
                | WouldBlock
                | Interrupted
                | HostUnreachable
                | NetworkUnreachable
                | NetworkDown
        )
    }
}

impl IsSpurious for git2::Error {
    /// libgit2 says what failed by class and code: credentials and certificates (host keys
    /// included) never pass on a retry; a timeout or a connection cut short may. Its HTTP
    /// transport gives a status only in its message, read here as the library's interface.
    fn is_spurious(&self) -> bool {
        use git2::{ErrorClass, ErrorCode};
        match self.code() {
            ErrorCode::Auth | ErrorCode::Certificate => return false,
            ErrorCode::Timeout => return true,
            ErrorCode::Eof => return matches!(self.class(), ErrorClass::Net | ErrorClass::Ssh),
            _ => {}
        }
        match self.class() {
            ErrorClass::Http => match libgit2_http_status(self.message()) {
                Some(status) => matches!(status, 408 | 429 | 500..=599),
                None => true,
            },
            ErrorClass::Net | ErrorClass::Os => libgit2_http_status(self.message())
                .is_none_or(|status| matches!(status, 408 | 429 | 500..=599)),
            _ => false,
        }
    }
}

/// The status in libgit2's "unexpected http status code: 503".
fn libgit2_http_status(message: &str) -> Option<u16> {
    let (_, rest) = message.split_once("status code: ")?;
    rest.get(..3)?.parse().ok()
}

impl NetError {
    /// An I/O failure on a connection to `url`, in the kind a caller branches on: a read or
    /// write that timed out is a stall, anything else a broken connection.
    pub(crate) fn io(err: &std::io::Error, url: &str, timeout: Duration) -> NetError {
        use std::io::ErrorKind::*;
        match err.kind() {
            WouldBlock | TimedOut => NetError::Stalled {
                url: url.to_string(),
                doing: "sent or took nothing",
                timeout,
                why: "the connection stalled",
            },
            _ => NetError::Broken {
                url: url.to_string(),
                detail: err.to_string(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn says_what_another_attempt_may_fix() {
        let status = |status| NetError::HttpStatus {
            status,
            text: String::new(),
        };
        for spurious in [
            status(500),
            status(502),
            status(503),
            status(429),
            status(408),
        ] {
            assert!(spurious.is_spurious(), "{spurious:?}");
        }
        for lasting in [status(401), status(403), status(404), status(400)] {
            assert!(!lasting.is_spurious(), "{lasting:?}");
        }
        let timed_out = std::io::Error::from(std::io::ErrorKind::WouldBlock);
        let stall = NetError::io(&timed_out, "git://h/r", Duration::from_secs(2));
        assert!(stall.is_spurious());
        assert!(stall.to_string().contains("--network-timeout"), "{stall}");
        assert!(!stall.to_string().contains("temporarily"), "{stall}");
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert!(NetError::io(&reset, "u", Duration::from_secs(1)).is_spurious());
        assert!(!NetError::Protocol("x".into()).is_spurious());
        let resolve = |temporary| NetError::Resolve {
            url: "u".into(),
            detail: "d".into(),
            temporary,
        };
        assert!(resolve(true).is_spurious() && !resolve(false).is_spurious());
    }

    #[test]
    fn reads_libgit2_by_class_and_code() {
        use git2::{ErrorClass, ErrorCode};
        let e = |code, class, message: &str| git2::Error::new(code, class, message);
        for spurious in [
            e(ErrorCode::GenericError, ErrorClass::Net, "connection reset"),
            e(ErrorCode::Timeout, ErrorClass::Ssh, "timed out"),
            e(ErrorCode::Eof, ErrorClass::Ssh, "banner"),
            e(
                ErrorCode::GenericError,
                ErrorClass::Http,
                "unexpected http status code: 503",
            ),
            e(
                ErrorCode::GenericError,
                ErrorClass::Http,
                "failed to send request",
            ),
        ] {
            assert!(spurious.is_spurious(), "{spurious}");
        }
        for lasting in [
            e(ErrorCode::Auth, ErrorClass::Net, "authentication required"),
            e(ErrorCode::Certificate, ErrorClass::Ssh, "host key mismatch"),
            e(
                ErrorCode::GenericError,
                ErrorClass::Http,
                "unexpected http status code: 404",
            ),
            e(ErrorCode::GenericError, ErrorClass::Odb, "connection reset"),
            e(
                ErrorCode::GenericError,
                ErrorClass::Ssh,
                "unable to read the key",
            ),
        ] {
            assert!(!lasting.is_spurious(), "{lasting}");
        }
    }
}
