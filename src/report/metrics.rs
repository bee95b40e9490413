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

/// `--metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum MetricsFormat {
    /// One embedded-metric-format JSON line per mirror.
    Emf,
    /// No metrics.
    None,
}

/// `--metrics-namespace`: what CloudWatch accepts as a namespace (1 to 255 printable ASCII
/// characters, no leading ':'), and not `AWS/...`, which is reserved for AWS's own services.
pub(crate) fn parse_namespace(raw: &str) -> Result<String, String> {
    let printable = raw.chars().all(|c| c.is_ascii_graphic() || c == ' ');
    if raw.is_empty() || raw.len() > 255 || !printable || raw.starts_with(':') {
        return Err(format!(
            "'{raw}' is not a CloudWatch namespace: give 1 to 255 printable ASCII characters, \
             e.g. BacklogMirror/prod"
        ));
    }
    if raw.starts_with("AWS/") {
        return Err(format!(
            "'{raw}' starts with AWS/, which CloudWatch keeps for AWS services"
        ));
    }
    Ok(raw.to_string())
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_cloudwatch_refuses_are_refused() {
        assert!(parse_namespace("BacklogMirror/prod-1").is_ok());
        assert!(parse_namespace("").is_err());
        assert!(parse_namespace(":x").is_err());
        assert!(parse_namespace("AWS/CodeBuild").is_err());
        assert!(parse_namespace("a\nb").is_err());
        assert!(parse_namespace(&"n".repeat(256)).is_err());
    }
}
