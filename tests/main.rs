//! The integration suite, as one test binary: each module is one concern (its file names it),
//! all of them drive the real binary against real servers, and all share `support`, compiled
//! once. One module's tests run with `cargo test --test main -- ssh::`, one test with its path
//! (`cargo test --test main -- safety::two_syncs_at_once_on_one_cache_both_end_exact`).

mod support;

mod apigateway;
mod bad_input;
mod buildspec_run;
mod cloudformation;
mod codecommit_e2e;
mod codecommit_signature;
mod create_target;
mod default_branch;
mod deploy;
mod deploy_mirror_list;
mod differential;
mod discover;
mod dist;
mod faults;
mod generator;
mod hostile_refs;
mod https_passwords;
mod interrupted;
mod leases;
mod lfs;
mod many_stack;
mod metrics;
mod mirror_exactness;
mod mirror_list;
mod proxy;
mod relay;
mod remote_text;
mod reports;
mod routing;
mod safety;
mod security;
mod ssh;
mod ssm;
mod target_rules;
mod transports;
mod warm_fetch;
mod wire_push;
