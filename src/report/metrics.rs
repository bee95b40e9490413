//! Each mirror's outcome as a CloudWatch metric, with no extra API permission: one line in the
//! embedded metric format (EMF) in the build's log, which CloudWatch Logs turns into metrics.
//!
//! Why a log line rather than PutMetricData: the build already ships its output to CloudWatch
//! Logs, so a metric costs neither a permission nor a network call that could fail a sync that
//! succeeded. The format's rule that decides the layout: a log event is an EMF document only if
//! the whole event is one JSON object, so the line is printed alone, never inside a log line
//! (https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html).

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::json;

use crate::report::summary::{Status, Summary};

/// The EMF document for one mirror's run, as one line. `Mirror` is the cache name (the list's
/// `name`, or for a single mirror `--mirror-name` or the name derived from the source URL): it
/// is stable across runs and carries no credential.
///
/// - `Succeeded`: 1 when the run left the target in sync (a dry run changes nothing: 0).
/// - `Rounds`: fetch-and-push rounds.
/// - `RefsChanged`: ref updates the target accepted (created, updated, forced, deleted; 0 for
///   a dry run, whose counts are only planned).
/// - `Seconds`: the run's wall time.
pub(crate) fn emf_line(namespace: &str, mirror: &str, summary: &Summary) -> String {
    let timestamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let succeeded = u8::from(summary.status == Status::InSync);
    let refs_changed = if summary.dry_run {
        0
    } else {
        summary.refs.pushed()
    };
    json!({
        "_aws": {
            "Timestamp": timestamp,
            "CloudWatchMetrics": [{
                "Namespace": namespace,
                "Dimensions": [["Mirror"]],
                "Metrics": [
                    {"Name": "Succeeded", "Unit": "Count"},
                    {"Name": "Rounds", "Unit": "Count"},
                    {"Name": "RefsChanged", "Unit": "Count"},
                    {"Name": "Seconds", "Unit": "Seconds"},
                ],
            }],
        },
        "Mirror": mirror,
        "Succeeded": succeeded,
        "Rounds": summary.rounds,
        "RefsChanged": refs_changed,
        "Seconds": (summary.seconds.total * 1000.0).round() / 1000.0,
    })
    .to_string()
}
