//! backlog-mirror keeps an exact mirror of one Git repository in another remote.
//!
//! The binary is a thin shell over this library so that tests, the benchmark and future front
//! ends drive the same code the CodeBuild job runs. Each module owns one concern; `mirror` is the
//! only one that knows the order of the steps.

pub mod app;
pub mod auth;
pub mod aws;
pub mod cache;
pub mod cli;
pub mod codecommit;
pub mod config;
pub mod credential_helper;
pub mod error;
pub mod git2_bytes;
pub mod gitcli;
pub mod mirror;
pub mod plan;
pub mod process_group;
pub mod progress;
pub mod push;
pub mod refname;
pub mod remote;
pub mod report;
pub mod retry;
pub mod secret;
pub mod select;
pub mod ssh;
pub mod tcp;
pub mod upload_pack;
pub mod url;
