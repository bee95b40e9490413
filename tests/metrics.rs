//! `--metrics emf`: one CloudWatch embedded-metric-format line per mirror, alone on its line, on
//! stdout (on stderr with --json), whose structure is what CloudWatch Logs extracts metrics from
//! and whose values are those of the JSON summary.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::support::*;

/// The document's structure, as the EMF specification requires it, with our metrics; returns
/// its values by metric name.
fn check_emf(line: &str, namespace: &str, mirror: &str) -> Value {
    let doc: Value =
        serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    let aws = &doc["_aws"];
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let ts = aws["Timestamp"].as_i64().expect("Timestamp in ms");
    assert!(
        (now - ts).abs() < 600_000,
        "Timestamp {ts} is not now ({now})"
    );
    let directives = aws["CloudWatchMetrics"]
        .as_array()
        .expect("CloudWatchMetrics");
    assert_eq!(directives.len(), 1, "{line}");
    let d = &directives[0];
    assert_eq!(d["Namespace"], namespace);
    assert_eq!(d["Dimensions"], serde_json::json!([["Mirror"]]));
    let metrics: Vec<(String, String)> = d["Metrics"]
        .as_array()
        .expect("Metrics")
        .iter()
        .map(|m| {
            (
                m["Name"].as_str().expect("Name").to_string(),
                m["Unit"].as_str().expect("Unit").to_string(),
            )
        })
        .collect();
    let want = [
        ("Succeeded", "Count"),
        ("Rounds", "Count"),
        ("RefsChanged", "Count"),
        ("Seconds", "Seconds"),
    ];
    assert_eq!(
        metrics,
        want.map(|(n, u)| (n.to_string(), u.to_string())).to_vec(),
        "{line}"
    );
    // Every dimension and metric is a member of the root (the spec's target members).
    assert_eq!(doc["Mirror"], mirror, "{line}");
    for (name, _) in want {
        assert!(doc[name].is_number(), "{name} is not a number: {line}");
    }
    doc
}

/// The metric values a run's schema-1 summary implies.
fn assert_matches(doc: &Value, summary: &Value) {
    let refs = &summary["refs"];
    let changed: u64 = ["created", "updated", "forced", "deleted"]
        .iter()
        .map(|k| refs[k].as_u64().expect("count"))
        .sum();
    let ok = summary["status"] == "in_sync";
    assert_eq!(doc["Succeeded"], u64::from(ok), "{doc} vs {summary}");
    assert_eq!(doc["Rounds"], summary["rounds"], "{doc} vs {summary}");
    assert_eq!(doc["RefsChanged"], changed, "{doc} vs {summary}");
    let seconds = summary["seconds"]["total"].as_f64().expect("seconds");
    let emf = doc["Seconds"].as_f64().expect("Seconds");
    assert!((seconds - emf).abs() < 0.001, "{emf} vs {seconds}");
}

#[test]
fn a_list_with_json_prints_one_line_per_mirror_on_stderr_matching_the_summary() {
    let sb = Sandbox::new();
    let ok = sb.pair("ok", &["feature"]);
    let list = sb.join("mirrors.toml");
    std::fs::write(
        &list,
        format!(
            "[[mirror]]\nname = \"PROJ/ok\"\nsource = \"{}\"\ntarget = \"{}\"\n\n\
             [[mirror]]\nname = \"down\"\nsource = \"git://127.0.0.1:1/x.git\"\ntarget = \"{}\"\nretries = 0\n",
            path_str(&ok.source),
            path_str(&ok.target),
            path_str(&init_bare(&sb.join("down/target.git"))),
        ),
    )
    .unwrap();
    let run = run(bin()
        .env("HOME", sb.home())
        .args(["sync", "--json", "--metrics", "emf", "--config"])
        .arg(&list)
        .arg("--cache-dir")
        .arg(sb.cache_dir())
        .env("BACKLOG_MIRROR_METRICS_NAMESPACE", "BacklogMirror/test"));
    assert_eq!(run.code, 1, "{}", run.stderr);
    let json = run.json();
    let lines: Vec<&str> = run.stderr.lines().filter(|l| l.starts_with('{')).collect();
    assert_eq!(lines.len(), 2, "{}", run.stderr);
    for summary in json["mirrors"].as_array().unwrap() {
        let name = summary["name"].as_str().unwrap();
        let line = lines
            .iter()
            .find(|l| l.contains(&format!("\"Mirror\":\"{name}\"")))
            .unwrap_or_else(|| panic!("no line for {name}"));
        let doc = check_emf(line, "BacklogMirror/test", name);
        assert_matches(&doc, summary);
    }
    let ok_doc: Value =
        serde_json::from_str(lines.iter().find(|l| l.contains("PROJ/ok")).unwrap()).unwrap();
    assert_eq!(
        (ok_doc["Succeeded"].as_u64(), ok_doc["RefsChanged"].as_u64()),
        (Some(1), Some(2))
    );
}

#[test]
fn a_single_mirror_prints_its_line_alone_on_stdout_named_for_its_cache() {
    let sb = Sandbox::new();
    let pair = sb.pair("one", &[]);
    let first = run(sb
        .sync(&path_str(&pair.source), &path_str(&pair.target))
        .env("BACKLOG_MIRROR_METRICS", "emf"));
    assert_eq!(first.code, 0, "{}", first.stderr);
    let lines: Vec<&str> = first.stdout.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "stdout is the metric line alone: {}",
        first.stdout
    );
    // The cache's name (derived from the source URL when --mirror-name is not given).
    let cache: Vec<String> = std::fs::read_dir(sb.cache_dir())
        .unwrap()
        .filter_map(|e| {
            e.ok()?
                .file_name()
                .to_str()?
                .strip_suffix(".git")
                .map(str::to_string)
        })
        .collect();
    assert_eq!(cache.len(), 1, "{cache:?}");
    let doc = check_emf(lines[0], "BacklogMirror", &cache[0]);
    assert_eq!(
        (doc["Succeeded"].as_u64(), doc["RefsChanged"].as_u64()),
        (Some(1), Some(1))
    );

    let with_json = run(sb
        .sync(&path_str(&pair.source), &path_str(&pair.target))
        .args(["--json", "--metrics", "emf", "--mirror-name", "named"]));
    let summary = with_json.json();
    let line = with_json
        .stderr
        .lines()
        .find(|l| l.starts_with('{'))
        .expect("EMF on stderr");
    let doc = check_emf(line, "BacklogMirror", "named");
    assert_matches(&doc, &summary);

    let none = run(&mut sb.sync(&path_str(&pair.source), &path_str(&pair.target)));
    assert_eq!(none.stdout, "", "no metrics unless asked");
    let bad = run(sb
        .sync(&path_str(&pair.source), &path_str(&pair.target))
        .args(["--metrics", "emf", "--metrics-namespace", "AWS/CodeBuild"]));
    assert_eq!(bad.code, 2);
    assert!(
        bad.only_error().contains("--metrics-namespace"),
        "{}",
        bad.stderr
    );
}
