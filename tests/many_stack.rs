//! One stack per Backlog space: the mirror list it pins, the CodeCommit prefix its build role is
//! held to, builds side by side, a schedule that syncs every mirror, and per-mirror freshness
//! alarms built on the metrics the binary prints (MANY-CONTRACT.md).
//!
//! What is and is not covered here. The alarm definitions are checked against what the contract
//! says the binary prints and against the documented limits of Metrics Insights alarms, validated
//! with botocore's model of PutMetricAlarm (the API's own shape), and put into moto's CloudWatch,
//! which stores them; nothing here can evaluate a Metrics Insights query or an alarm, so whether
//! CloudWatch turns a failing mirror into an alert is left to the first real deployment (the
//! README's verification step). cfn-lint and checkov run over the whole template in
//! tests/cloudformation.rs; tests/deploy_mirror_list.rs deploys the alarms through moto.

use crate::support::stack;

use std::collections::BTreeMap;

use serde_json::{Value, json};
use stack::Stack;

/// The build role reaches CodeCommit only under the prefix: create, read, pull, push and the
/// default branch, no more (no delete, no other repository).
#[test]
fn the_build_role_may_create_and_push_only_under_the_codecommit_prefix() {
    let t = stack::template();
    let s = Stack::new(&t, &[("CodeCommitRepositoryPrefix", "backlog-")]);
    let codecommit: Vec<Value> = s
        .statements("BuildRole")
        .into_iter()
        .filter(|st| st.to_string().contains("codecommit:"))
        .collect();
    assert_eq!(
        codecommit,
        vec![json!({
            "Sid": "MirrorRepositories",
            "Effect": "Allow",
            "Action": [
                "codecommit:CreateRepository",
                "codecommit:GetRepository",
                "codecommit:GitPull",
                "codecommit:GitPush",
                "codecommit:UpdateDefaultBranch"
            ],
            "Resource": "arn:aws:codecommit:ap-northeast-1:123456789012:backlog-*"
        })]
    );
    let p = &t["Parameters"]["CodeCommitRepositoryPrefix"];
    assert_eq!(
        p["Default"], "",
        "the contract: empty allows any repository"
    );
    assert_eq!(p["AllowedPattern"], "^[0-9A-Za-z._-]{0,99}$");
    // The list, like the binary, is read from the stack's bucket and nowhere else.
    let s3: Vec<Value> = s
        .statements("BuildRole")
        .into_iter()
        .filter(|st| st.to_string().contains("s3:"))
        .collect();
    assert_eq!(
        s3,
        vec![
            json!({"Sid": "BinaryAndMirrorList", "Effect": "Allow", "Action": "s3:GetObject",
                    "Resource": ["<ArtifactBucket.Arn>/bin/*", "<ArtifactBucket.Arn>/config/*"]})
        ]
    );
}

/// The project runs the list the stack pins, several builds at once, each syncing SyncJobs
/// mirrors at once; nothing in its environment or the buildspec's names one repository any more
/// (a leftover BACKLOG_PROJECT_KEY would feed every mirror's defaults).
#[test]
fn the_project_runs_the_pinned_list_in_parallel_builds() {
    let t = stack::template();
    let sha = "c".repeat(64);
    let s = Stack::new(
        &t,
        &[
            ("MirrorListSha256", &sha),
            ("BuildConcurrency", "5"),
            ("SyncJobs", "6"),
        ],
    );
    let project = s.properties("MirrorProject");
    assert_eq!(project["ConcurrentBuildLimit"], "5");
    let env = s.build_env();
    assert_eq!(env["MIRROR_LIST_SHA256"], sha);
    assert_eq!(env["MIRROR_LIST_BUCKET"], "<ArtifactBucket>");
    assert_eq!(env["BACKLOG_MIRROR_JOBS"], "6");
    let defaults = Stack::new(&t, &[]);
    assert_eq!(
        defaults.properties("MirrorProject")["ConcurrentBuildLimit"],
        "3"
    );
    assert_eq!(defaults.build_env()["BACKLOG_MIRROR_JOBS"], "4");
    // The binary prints its metrics under the namespace the alarms query, one per stack.
    assert_eq!(
        defaults.build_env()["BACKLOG_MIRROR_METRICS_NAMESPACE"],
        NAMESPACE
    );
    let other = Stack::new(&t, &[("ProjectName", "mirrors-b")]);
    assert_eq!(
        other.build_env()["BACKLOG_MIRROR_METRICS_NAMESPACE"],
        "BacklogMirror/mirrors-b"
    );

    let spec: BTreeMap<String, String> =
        serde_json::from_value(stack::buildspec()["env"]["variables"].clone()).expect("variables");
    for name in env.keys().chain(spec.keys()) {
        assert!(
            !matches!(
                name.as_str(),
                "BACKLOG_SPACE_KEY"
                    | "BACKLOG_DOMAIN_NAME"
                    | "BACKLOG_PROJECT_KEY"
                    | "BACKLOG_REPOSITORY_NAME"
                    | "CODECOMMIT_REPOSITORY_NAME"
                    | "BACKLOG_MIRROR_SOURCE"
                    | "BACKLOG_MIRROR_TARGET"
                    | "BACKLOG_MIRROR_REPO"
            ),
            "{name} would name one repository for every build"
        );
    }
    assert_eq!(spec["BACKLOG_MIRROR_METRICS"], "emf");
    assert_eq!(
        spec["BACKLOG_MIRROR_CONFIG"],
        "/tmp/backlog-mirror-list/mirrors.toml"
    );

    // The list is fetched and checked before the binary is: its copy, its check, then the move
    // to where BACKLOG_MIRROR_CONFIG points, all in install, ahead of the build phase.
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/buildspec.yml")).unwrap();
    let at = |needle: &str| {
        text.find(needle)
            .unwrap_or_else(|| panic!("the buildspec lacks {needle}"))
    };
    let copy = at("s3://$MIRROR_LIST_BUCKET/config/$MIRROR_LIST_SHA256/mirrors.toml");
    let check = at(
        r#"echo "$MIRROR_LIST_SHA256  $BACKLOG_MIRROR_CONFIG.download" | sha256sum --check --strict -"#,
    );
    let place = at(r#"mv "$BACKLOG_MIRROR_CONFIG.download" "$BACKLOG_MIRROR_CONFIG""#);
    let build = at("  build:\n");
    assert!(copy < check && check < place && place < build);
}

/// The hourly schedule starts the project with no input, so no BACKLOG_MIRROR_REPO: every mirror.
#[test]
fn the_schedule_syncs_every_mirror() {
    let t = stack::template();
    let s = Stack::new(&t, &[]);
    let rule = s.properties("SafetyNetSchedule");
    assert_eq!(rule["ScheduleExpression"], "rate(1 hour)");
    let target = rule["Targets"][0].as_object().unwrap();
    let keys: Vec<&str> = target.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        ["Arn", "Id", "RoleArn"],
        "the scheduled build must carry no input"
    );
}

/// What the binary prints per mirror (MANY-CONTRACT.md, "Metrics"), as CloudWatch's embedded
/// metric format specifies it: the metadata the alarms' queries must match.
/// The stack names its namespace after the project (BACKLOG_MIRROR_METRICS_NAMESPACE) so two
/// stacks in one account and region keep their mirrors apart; the default project name here.
const NAMESPACE: &str = "BacklogMirror/backlog-mirror";
const DIMENSION: &str = "Mirror";
const METRICS: [&str; 4] = ["Succeeded", "Rounds", "RefsChanged", "Seconds"];

/// (logical id, evaluated properties) of the alarms a stack with these parameters creates.
fn alarms(values: &[(&str, &str)]) -> Vec<(String, Value)> {
    let t = stack::template();
    let s = Stack::new(&t, values);
    t["Resources"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, r)| r["Type"] == "AWS::CloudWatch::Alarm")
        .filter(|(name, _)| s.exists(name))
        .map(|(name, _)| (name.clone(), s.properties(name)))
        .collect()
}

const ALERTS: (&str, &str) = ("AlertEmail", "ops@example.com");

#[test]
fn freshness_alarms_watch_each_mirror_within_what_metrics_insights_evaluates() {
    assert!(alarms(&[]).is_empty(), "alarms without anyone to tell");
    let without_schedule = alarms(&[ALERTS, ("ScheduleExpression", "")]);
    let names: Vec<&str> = without_schedule.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["MirrorFailingAlarm", "MirrorStaleAlarm"],
        "without the schedule a silent hour is normal"
    );

    let t = stack::template();
    assert_eq!(t["Parameters"]["StaleAfterHours"]["Default"], 3);
    assert_eq!(t["Parameters"]["StaleAfterHours"]["MaxValue"], 3);
    for hours in ["1", "2", "3"] {
        let all: BTreeMap<String, Value> = alarms(&[ALERTS, ("StaleAfterHours", hours)])
            .into_iter()
            .collect();
        assert_eq!(all.len(), 3);
        for (name, a) in &all {
            let query = &a["Metrics"][0];
            assert_eq!(a["Metrics"].as_array().unwrap().len(), 1, "{name}");
            let expression = query["Expression"].as_str().unwrap();
            let period: u64 = query["Period"].as_u64().unwrap();
            let evaluation: u64 = a["EvaluationPeriods"]
                .to_string()
                .trim_matches('"')
                .parse()
                .unwrap();
            let datapoints: u64 = a["DatapointsToAlarm"]
                .to_string()
                .trim_matches('"')
                .parse()
                .unwrap();
            // "Only the latest 3 hours of data can be used for evaluating the alarm's conditions".
            assert!(
                period * evaluation <= 3 * 3600,
                "{name} looks back past 3 hours"
            );
            assert_eq!(datapoints, evaluation, "{name}: every period must breach");
            assert_eq!(query["ReturnData"], true);
            assert!(
                expression.contains(&format!("FROM SCHEMA(\"{NAMESPACE}\", {DIMENSION})")),
                "{name} queries something the binary does not print: {expression}"
            );
            assert!(expression.contains("(Succeeded)"), "{expression}");
            assert!(METRICS.iter().any(|m| expression.contains(m)));
            assert_eq!(a["AlarmActions"], json!(["<AlertTopic>"]));
            assert_eq!(a["ActionsEnabled"], true);
            assert_eq!(a["ComparisonOperator"], "LessThanThreshold");
            assert_eq!(a["Threshold"], 1);
            // The topic's policy admits this stack's alarms by name.
            let alarm_name = a["AlarmName"].as_str().unwrap();
            assert!(
                alarm_name.starts_with("backlog-mirror-mirror"),
                "{alarm_name}"
            );
        }
        let failing = &all["MirrorFailingAlarm"];
        assert_eq!(
            failing["Metrics"][0]["Expression"],
            "SELECT MIN(Succeeded) FROM SCHEMA(\"BacklogMirror/backlog-mirror\", Mirror) GROUP BY Mirror ORDER BY MIN() ASC"
        );
        assert_eq!(failing["TreatMissingData"], "notBreaching");
        let stale = &all["MirrorStaleAlarm"];
        assert_eq!(
            stale["Metrics"][0]["Expression"],
            "SELECT MAX(Succeeded) FROM SCHEMA(\"BacklogMirror/backlog-mirror\", Mirror) GROUP BY Mirror ORDER BY MAX() ASC"
        );
        assert_eq!(stale["Metrics"][0]["Period"], 3600);
        assert_eq!(
            stale["EvaluationPeriods"], hours,
            "StaleAfterHours hourly periods"
        );
        assert_eq!(stale["TreatMissingData"], "notBreaching");
        let silent = &all["MirrorsSilentAlarm"];
        assert_eq!(
            silent["Metrics"][0]["Expression"],
            "SELECT COUNT(Succeeded) FROM SCHEMA(\"BacklogMirror/backlog-mirror\", Mirror)",
            "one series over every mirror: missing means no sync at all"
        );
        assert_eq!(silent["TreatMissingData"], "breaching");
        assert_eq!(silent["EvaluationPeriods"], 3);
        // Per mirror: GROUP BY and ORDER BY make each mirror a contributor.
        for a in [failing, stale] {
            let e = a["Metrics"][0]["Expression"].as_str().unwrap();
            assert!(e.contains(&format!("GROUP BY {DIMENSION} ORDER BY")), "{e}");
        }
    }
    let policy = Stack::new(&t, &[ALERTS]).properties("AlertTopicPolicy");
    let admitted = &policy["PolicyDocument"]["Statement"][1];
    assert_eq!(
        admitted["Principal"],
        json!({"Service": "cloudwatch.amazonaws.com"})
    );
    assert_eq!(
        admitted["Condition"]["ArnLike"]["aws:SourceArn"],
        "arn:aws:cloudwatch:ap-northeast-1:123456789012:alarm:backlog-mirror-mirror*"
    );
}

/// Each alarm, as CloudFormation would pass it to PutMetricAlarm, is a valid request for
/// CloudWatch's API model (botocore's), and moto's CloudWatch takes it and gives it back with its
/// query intact. Neither evaluates the query.
#[test]
fn the_alarms_are_valid_put_metric_alarm_requests_and_moto_stores_them() {
    let all = alarms(&[ALERTS, ("StaleAfterHours", "2")]);
    let requests: Vec<Value> = all
        .iter()
        .map(|(_, a)| {
            let mut r = a.clone();
            let o = r.as_object_mut().unwrap();
            for key in ["EvaluationPeriods", "DatapointsToAlarm"] {
                let n: u64 = o[key].to_string().trim_matches('"').parse().unwrap();
                o.insert(key.to_string(), json!(n));
            }
            o.insert(
                "AlarmActions".into(),
                json!(["arn:aws:sns:ap-northeast-1:123456789012:backlog-mirror-failures"]),
            );
            r
        })
        .collect();
    let moto = crate::support::ssm::Moto::start(None);
    let script = format!(
        "import botocore.validate\n\
         cw = boto3.client('cloudwatch', **kw)\n\
         shape = cw.meta.service_model.operation_model('PutMetricAlarm').input_shape\n\
         requests = json.loads({requests:?})\n\
         for r in requests:\n\
         \x20   report = botocore.validate.ParamValidator().validate(r, shape)\n\
         \x20   assert not report.has_errors(), report.generate_report()\n\
         \x20   cw.put_metric_alarm(**r)\n\
         got = cw.describe_alarms()['MetricAlarms']\n\
         print(json.dumps({{a['AlarmName']: [a['Metrics'][0]['Expression'], a['EvaluationPeriods'], a['TreatMissingData']] for a in got}}))",
        requests = Value::Array(requests.clone()).to_string(),
    );
    let stored: Value = serde_json::from_str(&moto.boto(&script)).unwrap();
    for r in &requests {
        let name = r["AlarmName"].as_str().unwrap();
        assert_eq!(
            stored[name],
            json!([
                r["Metrics"][0]["Expression"],
                r["EvaluationPeriods"],
                r["TreatMissingData"]
            ]),
            "{name}"
        );
    }
}

/// The deploy command creates a stack from the template as its body, which CloudFormation takes
/// up to 51,200 bytes (a larger one needs a bucket, which a first create does not have yet).
#[test]
fn the_rendered_template_fits_a_first_create() {
    let text = std::fs::read_to_string(stack::TEMPLATE).unwrap();
    let rendered = stack::render(&text, &"s".repeat(48), "203.0.113.0/24", "backlog-mirror");
    eprintln!("rendered template: {} of 51,200 bytes", rendered.len());
    assert!(rendered.len() <= 51_200, "{} bytes", rendered.len());
}
