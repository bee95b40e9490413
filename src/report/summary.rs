//! What a run says about itself: a short human summary on stderr and, with `--json`, the same
//! facts as one JSON object on stdout for scripts.
//!
//! The summary is filled in as the run goes, so a failed run still reports how far it got. Only
//! redacted URLs ever enter it.

use std::io::Write;

use serde::Serialize;

use crate::base::error::RefProblem;
use crate::base::progress::human_bytes;
use crate::base::transfer::TransferStats;
use crate::engine::plan::{Action, Change};
use crate::engine::push::Pushed;

pub(crate) const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Status {
    InSync,
    DryRun,
    Failed,
    Refused,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum RefResult {
    Ok,
    Rejected,
    Planned,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct ChangeReport {
    #[serde(rename = "ref")]
    pub(crate) name: String,
    pub(crate) action: Action,
    pub(crate) old: Option<String>,
    pub(crate) new: Option<String>,
    pub(crate) result: RefResult,
    pub(crate) reason: Option<String>,
}

impl ChangeReport {
    pub(crate) fn new(change: &Change, result: RefResult, reason: Option<String>) -> ChangeReport {
        ChangeReport {
            name: change.name.clone(),
            action: change.action,
            old: change.old.map(|o| o.to_string()),
            new: change.new.map(|o| o.to_string()),
            result,
            // A target's words: escaped, one line, bounded, in the JSON as in the human summary.
            reason: reason
                .map(|r| crate::base::text::clip(&r, crate::base::error::MAX_REASON_CHARS)),
        }
    }
}

#[derive(Debug, Default, Clone, Serialize)]
pub(crate) struct RefCounts {
    pub(crate) created: usize,
    pub(crate) updated: usize,
    pub(crate) forced: usize,
    pub(crate) deleted: usize,
    pub(crate) unchanged: usize,
    pub(crate) rejected: usize,
}

impl RefCounts {
    /// Ref updates the target accepted.
    pub(crate) fn pushed(&self) -> usize {
        self.created + self.updated + self.forced + self.deleted
    }
}

#[derive(Debug, Default, Clone, Serialize)]
pub(crate) struct PushStats {
    pub(crate) objects: usize,
    pub(crate) bytes: usize,
    pub(crate) engine: Option<&'static str>,
    pub(crate) batches: usize,
    /// Pushes the target did not take whole, sent again in two halves.
    pub(crate) halved: u32,
}

#[derive(Debug, Default, Clone, Serialize)]
pub(crate) struct Transfer {
    pub(crate) seed: TransferStats,
    pub(crate) fetch: FetchStats,
    pub(crate) push: PushStats,
}

/// What the fetches from the source brought, and whose client fetched last: `wire` (our own,
/// see `engine::fetch`) or `libgit2`.
#[derive(Debug, Default, Clone, Serialize)]
pub(crate) struct FetchStats {
    pub(crate) objects: usize,
    pub(crate) bytes: usize,
    pub(crate) engine: Option<&'static str>,
}

impl FetchStats {
    pub(crate) fn add(&mut self, stats: TransferStats, engine: &'static str) {
        self.objects += stats.objects;
        self.bytes += stats.bytes;
        self.engine = Some(engine);
    }
}

#[derive(Debug, Default, Clone, Serialize)]
pub(crate) struct Seconds {
    pub(crate) lock: f64,
    pub(crate) seed: f64,
    pub(crate) fetch: f64,
    pub(crate) plan: f64,
    pub(crate) push: f64,
    pub(crate) total: f64,
}

/// What the stateless relay did (see `relay`), when a run with no cache tried it.
#[derive(Debug, Default, Clone, Serialize)]
pub(crate) struct RelayReport {
    /// The run mirrored straight from the source's upload-pack into the target, no cache.
    pub(crate) relayed: bool,
    /// Why the run went the cache's way instead (or after a part was relayed), when it did.
    pub(crate) fallback: Option<String>,
    /// A first mirror: the relayed pack was also kept as the new cache.
    pub(crate) cached: bool,
    /// Objects and bytes of the packs relayed (their headers' counts, the bytes streamed).
    pub(crate) objects: usize,
    pub(crate) bytes: usize,
    /// Wall time of the relay: listings, plan, pushes and the catch-up look.
    pub(crate) seconds: f64,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Summary {
    pub(crate) schema: u32,
    pub(crate) status: Status,
    pub(crate) exit_code: i32,
    pub(crate) error: Option<String>,
    pub(crate) source: String,
    pub(crate) target: String,
    pub(crate) cache: String,
    pub(crate) dry_run: bool,
    pub(crate) rounds: u32,
    /// Network steps tried again after a transient failure.
    pub(crate) retries: u32,
    pub(crate) seeded: bool,
    pub(crate) refs: RefCounts,
    pub(crate) changes: Vec<ChangeReport>,
    pub(crate) transfer: Transfer,
    pub(crate) seconds: Seconds,
    /// Plans made again because a ref had moved on the target since the plan's listing (its
    /// lease broke: another sync of the same mirror, or an earlier push landing late).
    pub(crate) lease_retries: u32,
    /// The default branch: the source's, the target's after the run, and whether it moved; null
    /// when the run did not get as far as in sync.
    pub(crate) default_branch: Option<DefaultBranchReport>,
    /// Pushed refs whose commit uses Git LFS (`filter=lfs` in its root `.gitattributes`): the
    /// target holds their pointers, not their content.
    pub(crate) lfs_refs: usize,
    /// The stateless relay, when the run tried it (no cache on disk).
    pub(crate) relay: Option<RelayReport>,
}

impl Summary {
    pub(crate) fn new(source: &str, target: &str, cache: &str, dry_run: bool) -> Summary {
        Summary {
            schema: SCHEMA_VERSION,
            status: Status::Failed,
            exit_code: 1,
            error: None,
            source: source.to_string(),
            target: target.to_string(),
            cache: cache.to_string(),
            dry_run,
            rounds: 0,
            retries: 0,
            seeded: false,
            refs: RefCounts::default(),
            changes: Vec::new(),
            transfer: Transfer::default(),
            seconds: Seconds::default(),
            lease_retries: 0,
            default_branch: None,
            lfs_refs: 0,
            relay: None,
        }
    }

    /// Record one ref's outcome and count it.
    pub(crate) fn record(&mut self, change: &Change, result: RefResult, reason: Option<String>) {
        // A dry run counts what it plans: its status says nothing was applied.
        if result == RefResult::Rejected {
            self.refs.rejected += 1;
        } else {
            let counter = match change.action {
                Action::Create => &mut self.refs.created,
                Action::FastForward => &mut self.refs.updated,
                Action::Force => &mut self.refs.forced,
                Action::Delete => &mut self.refs.deleted,
            };
            *counter += 1;
        }
        self.changes.push(ChangeReport::new(change, result, reason));
    }

    /// Take what a push did: the engines, batches and bytes, the retries, each ref's result.
    pub(crate) fn record_push(&mut self, pushed: &Pushed) {
        if pushed.engine.is_some() {
            self.transfer.push.engine = pushed.engine;
        }
        self.transfer.push.batches += pushed.batches;
        self.transfer.push.halved += pushed.halved;
        self.transfer.push.objects += pushed.stats.objects;
        self.transfer.push.bytes += pushed.stats.bytes;
        self.retries += pushed.retries;
        for (change, reason) in &pushed.results {
            match reason {
                None => self.record(change, RefResult::Ok, None),
                Some(why) => self.record(change, RefResult::Rejected, Some(why.clone())),
            }
        }
    }

    /// Take back the rejections of `refs`: they are planned again (or turned out moot).
    pub(crate) fn forget_rejected(&mut self, refs: &[RefProblem]) {
        let before = self.changes.len();
        self.changes
            .retain(|c| c.result != RefResult::Rejected || !refs.iter().any(|r| r.name == c.name));
        self.refs.rejected -= before - self.changes.len();
    }

    pub(crate) fn to_json(&self) -> String {
        let mut out = Vec::new();
        let mut serializer = serde_json::Serializer::with_formatter(&mut out, TerminalSafe);
        match self.serialize(&mut serializer) {
            Ok(()) => String::from_utf8_lossy(&out).into_owned(),
            Err(e) => {
                format!("{{\"schema\":{SCHEMA_VERSION},\"error\":\"cannot encode summary: {e}\"}}")
            }
        }
    }

    /// The human summary: one line per changed ref, then the totals.
    pub(crate) fn write_human(&self, out: &mut dyn Write) -> std::io::Result<()> {
        for change in &self.changes {
            let mark = match (change.result, change.action) {
                (RefResult::Rejected, _) => '!',
                (_, Action::Create) => '+',
                (_, Action::FastForward) => ' ',
                (_, Action::Force) => '~',
                (_, Action::Delete) => '-',
            };
            let ids = match (&change.old, &change.new) {
                (Some(old), Some(new)) => format!("{}..{}", short(old), short(new)),
                (None, Some(new)) => short(new).to_string(),
                (Some(old), None) => format!("was {}", short(old)),
                (None, None) => String::new(),
            };
            let verb = change.action.verb();
            let planned = if change.result == RefResult::Planned {
                " (planned)"
            } else {
                ""
            };
            write!(
                out,
                " {mark} {:<40} {verb}{planned} {ids}",
                crate::base::refname::shown(&change.name)
            )?;
            match &change.reason {
                Some(reason) => writeln!(out, ": rejected: {reason}")?,
                None => writeln!(out)?,
            }
        }
        let r = &self.refs;
        let head = match self.status {
            Status::InSync => "in sync".to_string(),
            Status::DryRun => "dry run, target untouched".to_string(),
            Status::Refused if r.pushed() == 0 => "refused, target untouched".to_string(),
            Status::Refused => format!(
                "refused after earlier rounds pushed {} ref update(s)",
                r.pushed()
            ),
            Status::Failed => "FAILED".to_string(),
        };
        let planned = self
            .changes
            .iter()
            .filter(|c| c.result == RefResult::Planned)
            .count();
        let planned = if planned > 0 {
            format!(", {planned} planned")
        } else {
            String::new()
        };
        let retries = match self.retries {
            0 => String::new(),
            1 => ", 1 retry".to_string(),
            n => format!(", {n} retries"),
        };
        writeln!(
            out,
            "backlog-mirror: {head}: {} created, {} updated, {} forced, {} deleted, {} unchanged, \
             {} rejected{planned} ({} round{}{retries})",
            r.created,
            r.updated,
            r.forced,
            r.deleted,
            r.unchanged,
            r.rejected,
            self.rounds,
            if self.rounds == 1 { "" } else { "s" }
        )?;
        let t = &self.transfer;
        let engine = t
            .push
            .engine
            .map(|e| format!(" via {e}"))
            .unwrap_or_default();
        writeln!(
            out,
            "  received {} objects ({}) from the source{}, sent {} objects ({}) to the target{engine}",
            t.fetch.objects,
            human_bytes(t.fetch.bytes as u64),
            if self.seeded {
                format!(
                    " after seeding {} objects ({}) from the target",
                    t.seed.objects,
                    human_bytes(t.seed.bytes as u64)
                )
            } else {
                String::new()
            },
            t.push.objects,
            human_bytes(t.push.bytes as u64),
        )?;
        if let Some(relay) = &self.relay {
            match (&relay.fallback, relay.relayed) {
                (None, true) => writeln!(
                    out,
                    "  relayed {} objects ({}) from the source to the target, {}",
                    relay.objects,
                    human_bytes(relay.bytes as u64),
                    if relay.cached {
                        "and kept them as the cache"
                    } else {
                        "no cache"
                    }
                )?,
                (Some(why), _) => writeln!(
                    out,
                    "  relay: used the cache instead: {}",
                    crate::base::text::escape(why)
                )?,
                (None, false) => {}
            }
        }
        let s = &self.seconds;
        writeln!(
            out,
            "  seconds: lock {:.2}, seed {:.2}, fetch {:.2}, plan {:.2}, push {:.2}, total {:.2}",
            s.lock, s.seed, s.fetch, s.plan, s.push, s.total
        )
    }
}

/// JSON whose strings carry control and bidirectional-formatting characters (C1 controls, which
/// serde_json leaves raw, and U+202E and its kin) as `\uXXXX` escapes: the same strings to a
/// JSON reader, and nothing that can drive or reorder a terminal that shows the raw text. Ref
/// names are what brings such characters in.
struct TerminalSafe;

impl serde_json::ser::Formatter for TerminalSafe {
    fn write_string_fragment<W>(&mut self, writer: &mut W, fragment: &str) -> std::io::Result<()>
    where
        W: ?Sized + Write,
    {
        let mut start = 0;
        for (at, c) in fragment.char_indices() {
            if crate::base::refname::moves_the_terminal(c) {
                writer.write_all(&fragment.as_bytes()[start..at])?;
                write!(writer, "\\u{:04x}", u32::from(c))?;
                start = at + c.len_utf8();
            }
        }
        writer.write_all(&fragment.as_bytes()[start..])
    }
}

fn short(id: &str) -> &str {
    id.get(..10).unwrap_or(id)
}

/// The `--json` object of a run over a mirror list.
pub(crate) const LIST_SCHEMA_VERSION: u32 = 2;

/// One mirror of a list run: its schema-1 summary, named.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Named {
    pub(crate) name: String,
    #[serde(flatten)]
    pub(crate) summary: Summary,
}

/// A run over a mirror list.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ListSummary {
    pub(crate) schema: u32,
    pub(crate) status: Status,
    pub(crate) exit_code: i32,
    pub(crate) mirrors: Vec<Named>,
    /// What the list's `[discover]` found (its own JSON), when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) discovery: Option<serde_json::Value>,
    /// Discovery's lines for the human summary, before the mirrors'.
    #[serde(skip)]
    discovery_lines: Vec<String>,
}

use crate::base::error::severity;

impl ListSummary {
    pub(crate) fn new(mirrors: Vec<Named>) -> ListSummary {
        let worst = mirrors
            .iter()
            .max_by_key(|m| severity(m.summary.exit_code))
            .map(|m| &m.summary);
        let exit_code = worst.map_or(crate::base::error::exit::OK, |s| s.exit_code);
        let status = match worst {
            Some(s) if s.exit_code != crate::base::error::exit::OK => s.status,
            _ if mirrors.iter().any(|m| m.summary.status == Status::DryRun) => Status::DryRun,
            _ => Status::InSync,
        };
        ListSummary {
            schema: LIST_SCHEMA_VERSION,
            status,
            exit_code,
            mirrors,
            discovery: None,
            discovery_lines: Vec::new(),
        }
    }

    /// Add what discovery found: its JSON, its lines, and its exit code, which counts as one
    /// more mirror's would.
    pub(crate) fn with_discovery(
        mut self,
        json: serde_json::Value,
        lines: Vec<String>,
        exit_code: i32,
    ) -> ListSummary {
        if severity(exit_code) > severity(self.exit_code) {
            self.exit_code = exit_code;
            self.status = Status::Failed;
        }
        self.discovery = Some(json);
        self.discovery_lines = lines;
        self
    }

    pub(crate) fn to_json(&self) -> String {
        let mut out = Vec::new();
        let mut serializer = serde_json::Serializer::with_formatter(&mut out, TerminalSafe);
        match self.serialize(&mut serializer) {
            Ok(()) => String::from_utf8_lossy(&out).into_owned(),
            Err(e) => format!(
                "{{\"schema\":{LIST_SCHEMA_VERSION},\"error\":\"cannot encode summary: {e}\"}}"
            ),
        }
    }

    /// One line per mirror, then the total.
    pub(crate) fn write_human(&self, out: &mut dyn Write, seconds: f64) -> std::io::Result<()> {
        let width = self
            .mirrors
            .iter()
            .map(|m| m.name.len())
            .max()
            .unwrap_or(0)
            .min(40);
        for line in &self.discovery_lines {
            writeln!(out, "{line}")?;
        }
        for Named { name, summary: s } in &self.mirrors {
            let r = &s.refs;
            let head = match s.status {
                Status::InSync => "in sync".to_string(),
                Status::DryRun => "dry run".to_string(),
                Status::Refused => format!("REFUSED (exit {})", s.exit_code),
                Status::Failed => format!("FAILED (exit {})", s.exit_code),
            };
            write!(
                out,
                "  {name:<width$}  {head}: {} created, {} updated, {} forced, {} deleted, {} \
                 rejected ({} round{}, {:.2} s)",
                r.created,
                r.updated,
                r.forced,
                r.deleted,
                r.rejected,
                s.rounds,
                if s.rounds == 1 { "" } else { "s" },
                s.seconds.total
            )?;
            match &s.error {
                Some(error) => writeln!(out, ": {error}")?,
                None => writeln!(out)?,
            }
        }
        let count = |status: Status| {
            self.mirrors
                .iter()
                .filter(|m| m.summary.status == status)
                .count()
        };
        let mut parts = vec![format!("{} in sync", count(Status::InSync))];
        for (status, word) in [
            (Status::DryRun, "dry run"),
            (Status::Failed, "failed"),
            (Status::Refused, "refused"),
        ] {
            if count(status) > 0 {
                parts.push(format!("{} {word}", count(status)));
            }
        }
        writeln!(
            out,
            "backlog-mirror: {} mirror{}: {}; exit {} ({seconds:.2} s)",
            self.mirrors.len(),
            if self.mirrors.len() == 1 { "" } else { "s" },
            parts.join(", "),
            self.exit_code
        )
    }
}

/// What the summary says about the default branch.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct DefaultBranchReport {
    /// The branch the source's `HEAD` names.
    pub(crate) source: Option<String>,
    /// The target's default branch after the run, when known.
    pub(crate) target: Option<String>,
    /// Whether this run moved it.
    pub(crate) changed: bool,
    /// Why it could not follow the source, when it could not.
    pub(crate) warning: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(name: &str, code: i32, status: Status) -> Named {
        let mut summary = Summary::new("s", "t", "c", status == Status::DryRun);
        summary.exit_code = code;
        summary.status = status;
        Named {
            name: name.to_string(),
            summary,
        }
    }

    #[test]
    fn a_list_takes_its_most_severe_code_and_that_mirrors_status() {
        let run = |mirrors: Vec<Named>| {
            let s = ListSummary::new(mirrors);
            (s.exit_code, s.status)
        };
        use Status::*;
        assert_eq!(run(vec![]), (0, InSync));
        assert_eq!(
            run(vec![named("a", 0, InSync), named("b", 0, DryRun)]),
            (0, DryRun)
        );
        assert_eq!(
            run(vec![named("a", 4, Failed), named("b", 2, Failed)]),
            (2, Failed)
        );
        assert_eq!(
            run(vec![named("a", 1, Failed), named("b", 2, Failed)]),
            (1, Failed)
        );
        assert_eq!(
            run(vec![named("a", 3, Refused), named("b", 1, Failed)]),
            (3, Refused)
        );
        assert_eq!(
            run(vec![named("a", 0, InSync), named("b", 4, Failed)]),
            (4, Failed)
        );
        let json: serde_json::Value =
            serde_json::from_str(&ListSummary::new(vec![named("x/y", 0, InSync)]).to_json())
                .unwrap();
        assert_eq!(json["schema"], 2);
        assert_eq!(json["mirrors"][0]["name"], "x/y");
        assert_eq!(json["mirrors"][0]["schema"], 1);
    }
}
