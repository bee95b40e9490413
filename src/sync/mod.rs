//! The order of a sync: lock, look, plan, guard, push, look again; the relay, the target's
//! default branch, Git LFS objects.

pub(crate) mod default_branch;
pub(crate) mod lfs;
pub(crate) mod run;
