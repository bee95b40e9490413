//! What one timed run of the benchmark records, and the names that label it: the part of the
//! bench that the summary reads. It is its own module, free of servers and processes, so that
//! `tests/bench_summary.rs` can compile `summary.rs` against it and check every target's verdict
//! on samples it makes up, which a bench run (`harness = false`, never run by `cargo test`) cannot.

use clap::ValueEnum;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Size {
    Small,
    Medium,
    Pulls,
    Large,
}

impl Size {
    pub fn name(self) -> &'static str {
        match self {
            Size::Small => "small",
            Size::Medium => "medium",
            Size::Pulls => "pulls",
            Size::Large => "large",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tool {
    A,
    B,
    C,
}

impl Tool {
    pub const ALL: [Tool; 3] = [Tool::A, Tool::B, Tool::C];

    pub fn side(self) -> &'static str {
        match self {
            Tool::A => "a",
            Tool::B => "b",
            Tool::C => "c",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    Initial,
    Noop,
    Incremental,
    Stateless,
    LocalPath,
    FileUrl,
}

impl Scenario {
    pub const ALL: [Scenario; 6] = [
        Scenario::Initial,
        Scenario::Noop,
        Scenario::Incremental,
        Scenario::Stateless,
        Scenario::LocalPath,
        Scenario::FileUrl,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Scenario::Initial => "initial mirror",
            Scenario::Noop => "no-op",
            Scenario::Incremental => "incremental",
            Scenario::Stateless => "stateless incr.",
            Scenario::LocalPath => "local path fetch",
            Scenario::FileUrl => "file:// fetch",
        }
    }

    /// First fetches from a repository on disk: no servers, and no article side.
    pub fn is_local(self) -> bool {
        matches!(self, Scenario::LocalPath | Scenario::FileUrl)
    }
}

/// One timed run of one side.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Sample {
    pub dataset: String,
    pub scenario: Scenario,
    pub tool: Tool,
    pub round: usize,
    pub seconds: f64,
    pub peak_rss_kb: u64,
    /// Bytes the source's sshd sent during the run.
    pub source_bytes: u64,
    /// Bytes of requests the target received, and of its answers.
    pub target_in_bytes: u64,
    pub target_out_bytes: u64,
    /// SSH connections the source accepted (ssh-keyscan's too) and HTTP requests the target
    /// answered: the round trips a run costs, which no machine load changes (absent from
    /// results written before they were counted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_connections: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_requests: Option<u64>,
    /// Exit code 0 and the target's refs equal to the source's afterwards (for a local fetch,
    /// the cache's).
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// B's own account of where its time went (its --json summary's `seconds`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phases: Option<serde_json::Value>,
    /// B's own account of what it moved (its --json summary's `transfer`: objects and bytes per
    /// direction, push batches and engines).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transfer: Option<serde_json::Value>,
}
