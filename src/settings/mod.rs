//! What a run is asked to do: the command line (every flag with its `BACKLOG_MIRROR_*`
//! variable), a mirror list's keys turned into those flags per mirror, and their validation into
//! one mirror's settings; and the repositories a Backlog space has, found through its API.

pub(crate) mod config;
pub(crate) mod discover;
pub(crate) mod flags;
pub(crate) mod mirror_list;
