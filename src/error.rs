//! Errors a caller branches on.
//!
//! The exit code is part of the interface: a buildspec or a CI job decides what to do from it
//! alone (retry a lock timeout, page someone on a delete-guard refusal). Everything else is an
//! `anyhow` chain with context added where it happened; this type marks the few outcomes that need
//! their own code so `main` can map them without parsing messages.

use crate::plan::Refusal;

/// Exit codes, as documented in `--help` and the README.
pub(crate) mod exit {
    pub(crate) const OK: i32 = 0;
    pub(crate) const FAILED: i32 = 1;
    pub(crate) const USAGE: i32 = 2;
    pub(crate) const DELETE_GUARD: i32 = 3;
    pub(crate) const LOCKED: i32 = 4;
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
                crate::refname::shown(&problem.name),
                clip(&problem.reason, MAX_REASON_CHARS)
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

/// `text` from outside (what a server, git or a hook said, a value quoted back) as it may be
/// shown: trimmed, every character that could drive a terminal, break the line or reorder it
/// escaped ([`escape`]), and cut to at most `max` characters, then marked with the length of the
/// whole. A remote cannot forge a line of ours, set a terminal's title or colours, or fill a log.
pub(crate) fn clip(text: &str, max: usize) -> String {
    let text = text.trim();
    let mut out = String::new();
    let mut shown = 0;
    for c in text.chars() {
        let piece = escape_char(c);
        let width = piece.as_deref().map_or(1, |p| p.chars().count());
        if shown + width > max {
            return format!("{out}... ({} characters)", text.chars().count());
        }
        shown += width;
        match piece {
            Some(p) => out.push_str(&p),
            None => out.push(c),
        }
    }
    out
}

/// Whether printing `c` raw could drive a terminal (C0 and C1 controls, DEL), end or break the
/// line (CR, LF, the Unicode line and paragraph separators), or reorder or hide the text around
/// it (bidirectional and zero-width formatting characters).
fn unsafe_to_show(c: char) -> bool {
    crate::refname::moves_the_terminal(c)
        || matches!(
            c,
            '\u{61c}'
                | '\u{200b}'..='\u{200d}'
                | '\u{2028}'
                | '\u{2029}'
                | '\u{2060}'..='\u{2064}'
                | '\u{206a}'..='\u{206f}'
                | '\u{feff}'
        )
}

/// How `c` is written when it is not safe to show raw (`\n`, `\r`, `\t`, else `\u{1b}`).
fn escape_char(c: char) -> Option<String> {
    if !unsafe_to_show(c) {
        return None;
    }
    Some(match c {
        '\n' => "\\n".to_string(),
        '\r' => "\\r".to_string(),
        '\t' => "\\t".to_string(),
        _ => format!("\\u{{{:x}}}", u32::from(c)),
    })
}

/// `text` with every character that is not safe to show raw escaped: the last line of defence
/// for whatever reaches the final error line, the JSON summary or the log, from whichever party.
pub(crate) fn escape(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(unsafe_to_show) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match escape_char(c) {
            Some(p) => out.push_str(&p),
            None => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
}

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
    let line = escape(&crate::secret::scrub(&format!("{err:#}")))
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
    fn what_is_clipped_cannot_drive_a_terminal_or_break_the_line() {
        let said =
            "\x1b[31mred\x07\x1b]0;title\x07\nbacklog-mirror: in sync\r\0\u{9b}\u{202e}\u{2028}ok";
        assert_eq!(
            clip(said, 1000),
            "\\u{1b}[31mred\\u{7}\\u{1b}]0;title\\u{7}\\nbacklog-mirror: in sync\\r\\u{0}\\u{9b}\\u{202e}\\u{2028}ok"
        );
        assert_eq!(clip("  plain words\n", 1000), "plain words");
        // Cut by what is shown, never inside an escape, and marked with the whole length.
        assert_eq!(clip("ab\0cd", 5), "ab... (5 characters)");
        assert_eq!(clip("ab\0cd", 7), "ab\\u{0}... (5 characters)");
        let long = "x".repeat(10_000);
        assert_eq!(clip(&long, 3), "xxx... (10000 characters)");
        assert_eq!(escape("a\tb"), "a\\tb");
        assert!(matches!(
            escape("plain"),
            std::borrow::Cow::Borrowed("plain")
        ));
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
