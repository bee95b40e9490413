//! What every layer shares and that knows no other: errors and exit codes, secrets and their
//! scrubbing, URLs, ref names, durations, child processes, the async runtime, progress, and
//! the counts of what a transfer moved.

pub(crate) mod duration;
pub(crate) mod error;
pub(crate) mod git;
pub(crate) mod hatch;
pub(crate) mod net_error;
pub(crate) mod process_group;
pub(crate) mod progress;
pub(crate) mod refname;
pub(crate) mod runtime;
pub(crate) mod secret;
pub(crate) mod text;
pub(crate) mod transfer;
pub(crate) mod url;
