//! What moves objects and refs: the cache (a bare mirror), the plan of ref changes, the fetch
//! into the cache, the push engines (git, libgit2, our own receive-pack client), the packs they
//! send and the stateless relay's.

pub(crate) mod cache;
pub(crate) mod fetch;
pub(crate) mod git_cli;
pub(crate) mod libgit2;
pub(crate) mod libgit2_push;
pub(crate) mod pack;
pub(crate) mod plan;
pub(crate) mod push;
pub(crate) mod receive_pack;
pub(crate) mod ref_filter;
pub(crate) mod relay;
pub(crate) mod upload_pack;
