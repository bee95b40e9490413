//! What a run says it did: the summary (human and JSON) and CloudWatch metrics.

pub(crate) mod metrics;
pub(crate) mod summary;
