//! Errors a caller branches on.
//!
//! The exit code is part of the interface: a buildspec or a CI job decides what to do from it
//! alone (retry a lock timeout, page someone on a delete-guard refusal). Everything else is an
//! `anyhow` chain with context added where it happened; this type marks the few outcomes that need
//! their own code so `main` can map them without parsing messages.

/// Exit codes, as documented in `--help` and the README.
pub(crate) mod exit {
    pub(crate) const OK: i32 = 0;
    pub(crate) const FAILED: i32 = 1;
    pub(crate) const USAGE: i32 = 2;
    pub(crate) const DELETE_GUARD: i32 = 3;
    pub(crate) const LOCKED: i32 = 4;
}

/// Exit codes from least to most severe: a run of several parts (a list's mirrors, its
/// discovery) exits with the most severe of theirs. 4 (another sync holds the mirror, and will
/// bring it up to date) is the mildest failure; 2 (settings that failed a check made when
/// their turn came, e.g. a secret) needs an edit but risks nothing; 1 (a target is left behind
/// its source) is what the mirror exists to prevent; 3 (the delete guard stopped a mass
/// delete) may be an accident at the source and needs a person before anything else.
pub(crate) const SEVERITY: [i32; 5] = [
    exit::OK,
    exit::LOCKED,
    exit::USAGE,
    exit::FAILED,
    exit::DELETE_GUARD,
];

/// Where `code` stands in [`SEVERITY`] (an unknown code above them all).
pub(crate) fn severity(code: i32) -> usize {
    SEVERITY
        .iter()
        .position(|c| *c == code)
        .unwrap_or(SEVERITY.len())
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    /// Bad flag, value or environment: one line naming it and what to do.
    #[error("{0}")]
    Usage(String),
    /// The delete guard refused the plan of round `round`; what earlier rounds pushed
    /// (`pushed` ref updates) stays on the target.
    #[error("{refusal}; {}", done_before(*.round, *.pushed))]
    DeleteGuard {
        refusal: Refusal,
        round: u32,
        pushed: usize,
    },
    /// Another run holds the cache lock and did not release it in time.
    #[error(
        "cache {path} is locked by another sync and was not released within {waited}; \
         wait for it or raise --lock-timeout"
    )]
    Locked { path: String, waited: String },
    /// The target refused some ref updates; the others landed.
    #[error("{} ref(s) rejected by the target: {}", .0.len(), format_rejected(.0))]
    Rejected(Vec<RefProblem>),
    /// The source has refs this tool cannot carry; every other ref was mirrored.
    #[error(
        "{} ref(s) of the source cannot be mirrored and were left out (every other ref is \
         mirrored): {}",
        .0.len(),
        format_rejected(.0)
    )]
    Unmirrorable(Vec<RefProblem>),
}

/// Why the delete guard refused a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    SourceEmpty,
    TooManyDeletes { planned: usize, limit: usize },
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::SourceEmpty => write!(
                f,
                "delete guard: the source lists no refs at all, so mirroring it would delete \
                 every ref of the target; check the source URL and credentials, or pass \
                 --allow-mass-delete to delete them (the branch the target's HEAD names stays: \
                 no Git server deletes its current branch for a push)"
            ),
            Refusal::TooManyDeletes { planned, limit } => write!(
                f,
                "delete guard: the plan deletes {planned} refs on the target, more than \
                 --max-delete {limit}; check the source, or raise --max-delete or pass \
                 --allow-mass-delete if this is intended"
            ),
        }
    }
}

/// A ref that could not be mirrored, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RefProblem {
    /// Escaped (`refname::escape`).
    pub(crate) name: String,
    pub(crate) reason: String,
}

/// What a refused run had done to the target before the refusal.
fn done_before(round: u32, pushed: usize) -> String {
    match (round, pushed) {
        (_, 0) => "the target is untouched".to_string(),
        (2, _) => format!(
            "round 1 of this run had already pushed {pushed} ref update(s), which stay on the \
             target"
        ),
        (3.., _) => format!(
            "rounds 1 to {} of this run had already pushed {pushed} ref update(s), which stay on \
             the target",
            round - 1
        ),
        _ => {
            format!("this run had already pushed {pushed} ref update(s), which stay on the target")
        }
    }
}

fn format_rejected(refs: &[RefProblem]) -> String {
    const SHOWN: usize = 5;
    let mut parts: Vec<String> = refs
        .iter()
        .take(SHOWN)
        .map(|problem| {
            format!(
                "{} ({})",
                crate::base::refname::shown(&problem.name),
                crate::base::text::clip(&problem.reason, MAX_REASON_CHARS)
            )
        })
        .collect();
    if refs.len() > SHOWN {
        parts.push(format!("and {} more", refs.len() - SHOWN));
    }
    parts.join(", ")
}

/// How much of a reason (a target's message, a libgit2 error) one ref's entry shows.
pub(crate) const MAX_REASON_CHARS: usize = 160;

/// The longest error line printed: five refused refs with their reasons fit well within it.
const MAX_LINE_CHARS: usize = 4000;

/// An error's one line as printed: its chain, secrets and userinfo scrubbed, every character
/// that could drive the terminal or break the line escaped (whatever a server or library put in
/// the chain), then any single word of more than 200 characters (a ref name, a path, a server's
/// message quoting one) cut to its start and its length, and the whole line to
/// [`MAX_LINE_CHARS`], so that no line runs to kilobytes. Scrubbing comes first: a cut could
/// leave half a password that no longer looks like one, and an escape could split one.
pub(crate) fn one_line(err: &anyhow::Error) -> String {
    const LONGEST_WORD: usize = 200;
    let line = crate::base::text::escape(&crate::base::secret::scrub(&format!("{err:#}")))
        .split(' ')
        .map(|word| match word.char_indices().nth(LONGEST_WORD) {
            Some(_) => format!(
                "{}... ({} characters)",
                word.chars().take(120).collect::<String>(),
                word.chars().count()
            ),
            None => word.to_string(),
        })
        .collect::<Vec<_>>()
        .join(" ");
    match line.char_indices().nth(MAX_LINE_CHARS) {
        Some((cut, _)) => format!("{}... ({} characters)", &line[..cut], line.chars().count()),
        None => line,
    }
}

impl Error {
    pub(crate) fn exit_code(&self) -> i32 {
        match self {
            Error::Usage(_) => exit::USAGE,
            Error::DeleteGuard { .. } => exit::DELETE_GUARD,
            Error::Locked { .. } => exit::LOCKED,
            Error::Rejected(_) | Error::Unmirrorable(_) => exit::FAILED,
        }
    }
}

/// Shorthand for a usage error as an `anyhow::Error`.
pub(crate) fn usage(msg: impl Into<String>) -> anyhow::Error {
    Error::Usage(msg.into()).into()
}

/// The exit code for any error: the first typed [`Error`] in the chain decides, else 1.
pub(crate) fn exit_code(err: &anyhow::Error) -> i32 {
    err.chain()
        .find_map(|cause| cause.downcast_ref::<Error>())
        .map_or(exit::FAILED, Error::exit_code)
}

/// An I/O error's reason without the "(os error 13)" noise.
pub(crate) fn io_reason(err: &std::io::Error) -> String {
    let text = err.to_string();
    match text.find(" (os error") {
        Some(cut) => text[..cut].to_lowercase(),
        None => text,
    }
}

/// An error and its sources on one line, for errors from libraries that hide the useful part in
/// `source()`.
pub(crate) fn chain_line(err: &dyn std::error::Error) -> String {
    let mut parts = vec![err.to_string()];
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = cause.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_cuts_long_words_after_scrubbing() {
        let long = format!("refs/heads/{}", "x".repeat(4019));
        let password = "p".repeat(300);
        let err = anyhow::anyhow!("cannot update {long}")
            .context(format!("cannot reach https://bob:{password}@h/x.git"));
        let line = one_line(&err);
        assert!(line.len() < 400, "{line}");
        assert!(line.contains("... (4030 characters)"), "{line}");
        assert!(line.contains("https://<redacted>@h/x.git"), "{line}");
        assert!(!line.contains("ppppp"), "{line}");
    }

    #[test]
    fn one_line_escapes_whatever_the_chain_holds_and_stays_bounded() {
        let err = anyhow::anyhow!("server said \x1b]0;pwned\x07\nbacklog-mirror: in sync")
            .context("listing the target failed");
        let line = one_line(&err);
        assert!(!line.chars().any(char::is_control), "{line:?}");
        assert!(
            line.contains("\\u{1b}]0;pwned\\u{7}\\nbacklog-mirror"),
            "{line}"
        );
        let words = vec!["word"; 5000].join(" ");
        let line = one_line(&anyhow::anyhow!("{words}"));
        assert!(line.chars().count() < MAX_LINE_CHARS + 30, "{}", line.len());
        assert!(line.ends_with("... (24999 characters)"), "{line}");
    }

    #[test]
    fn a_refusal_says_what_was_pushed_before_it() {
        let text = |round, pushed| {
            Error::DeleteGuard {
                refusal: Refusal::SourceEmpty,
                round,
                pushed,
            }
            .to_string()
        };
        assert!(text(1, 0).ends_with("; the target is untouched"));
        assert!(text(3, 0).ends_with("; the target is untouched"));
        assert!(text(2, 53).contains("round 1 of this run had already pushed 53 ref update(s)"));
        assert!(text(4, 7).contains("rounds 1 to 3 of this run had already pushed 7"));
        assert!(text(1, 2).contains("this run had already pushed 2 ref update(s)"));
    }
}
