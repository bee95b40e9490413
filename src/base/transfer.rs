//! What a transfer reports, whichever engine ran it.
//!
//! libgit2 and the git CLI push differently (callbacks against porcelain output and stderr) but a
//! caller must not care which one ran: a push "succeeds" even when the target rejected half the
//! refs, so both hand back the same per-ref outcomes, counts and the target's own words.

use std::collections::HashMap;

/// Objects and bytes moved by one transfer.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub(crate) struct TransferStats {
    pub(crate) objects: usize,
    pub(crate) bytes: usize,
}

impl TransferStats {
    pub(crate) fn add(&mut self, other: TransferStats) {
        self.objects += other.objects;
        self.bytes += other.bytes;
    }
}

/// What the target said about one ref update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RefOutcome {
    Accepted,
    /// Refused, with the target's reason.
    Rejected(String),
}

/// receive-pack's status for each ref of a push whose pack it could not take (`ng <ref>
/// unpacker error`).
pub(crate) const UNPACKER_ERROR: &str = "unpacker error";

/// What one push reported.
#[derive(Debug, Default)]
pub(crate) struct PushOutcome {
    /// Each ref the target reported on, by escaped name (`refname::escape`). A ref of the push
    /// missing here got no answer.
    pub(crate) refs: HashMap<String, RefOutcome>,
    pub(crate) stats: TransferStats,
    /// The target's own messages (hooks, errors), its progress lines removed.
    pub(crate) remote_lines: Vec<String>,
    /// Why the target could not take the pack at all (receive-pack's `unpack <reason>`): no ref
    /// of the push was updated, whatever each ref's line says. Set where the engine reads the
    /// report, so that no caller has to recognise the words.
    pub(crate) unpack_error: Option<String>,
}

/// The lines of a remote's sideband text (or of git's `remote: ` lines) that are messages, not
/// progress: a hook's words, an unpacker's error, one per refused ref. Each is kept short, and
/// at most the last `KEPT` (a server that talks without end cannot fill memory).
pub(crate) fn remote_messages(text: &str) -> Vec<String> {
    const PROGRESS: [&str; 9] = [
        "Resolving deltas",
        "Counting objects",
        "Compressing objects",
        "Enumerating objects",
        "Writing objects",
        "Receiving objects",
        "Unpacking objects",
        "Total ",
        "Processing",
    ];
    const KEPT: usize = 10_000;
    const LONGEST: usize = 300;
    let mut lines: Vec<String> = text
        .split(['\r', '\n'])
        .map(|l| l.strip_prefix("remote:").unwrap_or(l).trim())
        .filter(|l| !l.is_empty() && !PROGRESS.iter().any(|p| l.starts_with(p)))
        .map(|l| match l.char_indices().nth(LONGEST) {
            Some((cut, _)) => format!("{}...", &l[..cut]),
            None => l.to_string(),
        })
        .collect();
    lines.dedup();
    let skip = lines.len().saturating_sub(KEPT);
    lines.split_off(skip)
}

/// The last few of a remote's message lines, for an error about the whole push.
pub(crate) fn last_words(lines: &[String]) -> String {
    lines[lines.len().saturating_sub(5)..].join("; ")
}
