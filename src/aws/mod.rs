//! AWS: one SDK configuration per region and profile, Parameter Store, CodeCommit's SigV4
//! passwords, its control plane, and the credential helper git runs for CodeCommit.

pub(crate) mod codecommit;
pub(crate) mod config;
pub(crate) mod control_plane;
pub(crate) mod credential_helper;
