//! The ways to a remote: HTTP(S), and what they fail with.

pub(crate) mod http;
