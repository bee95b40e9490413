//! backlog-mirror keeps an exact mirror of one Git repository in another remote.
//!
//! The binary is one call into [`main`]; everything else is private to the crate, so rustc sees
//! every item that nothing uses. The modules read top-down: `app` (the edge: logging, secrets,
//! printing) over `cli` (the flags) and `config` (their validation into one mirror's settings),
//! over `mirror`, the only one that knows the order of a sync's steps, over the modules that do
//! each step (`cache`, `plan`, `push`, `libgit2`, `gitcli`...), over the leaves they share
//! (`remote`, `url`, `refname`, `secret`, `error`...). Nothing below `app` imports `cli`.

mod app;
mod auth;
mod aws;
mod cache;
mod cli;
mod codecommit;
mod config;
mod credential_helper;
mod duration;
mod error;
mod git2_bytes;
mod gitcli;
mod libgit2;
mod mirror;
mod plan;
mod process_group;
mod progress;
mod push;
mod refname;
mod remote;
mod report;
mod retry;
mod secret;
mod secret_source;
mod select;
mod ssh;
#[cfg(target_os = "linux")]
mod tcp;
mod transfer;
mod upload_pack;
mod url;

pub use app::main;
