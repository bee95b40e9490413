//! One stack per Backlog space: the mirror list it pins, the CodeCommit prefix its build role is
//! held to, builds side by side, a schedule that syncs every mirror, alarms on the metrics
//! CodeBuild publishes for the project, and, opted in, per-mirror alarms on the metrics the
//! binary prints (MANY-CONTRACT.md); what monitoring costs.
//!
//! What is and is not covered here. The alarm definitions are checked against the metrics
//! CodeBuild documents, against what the contract says the binary prints and against the
//! documented limits of Metrics Insights alarms, validated with botocore's model of
//! PutMetricAlarm (the API's own shape), and put into moto's CloudWatch, which stores them and
//! answers for their series; nothing here evaluates an alarm (tests/cloudformation.rs runs the
//! documented evaluation over a timeline), so that CloudWatch alerts is left to the first real
//! deployment (`scripts/deploy.sh --verify`, tests/deploy.rs). cfn-lint and checkov run over the
//! whole template in tests/cloudformation.rs; tests/deploy_mirror_list.rs deploys the alarms
//! through moto.

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
    assert!(
        p.get("Default").is_none(),
        "a stack must choose its prefix; '' (every repository) only when given"
    );
    assert_eq!(p["AllowedPattern"], "^[0-9A-Za-z._-]{0,99}$");
    let every = Stack::new(&t, &[("CodeCommitRepositoryPrefix", "")]);
    assert!(
        every
            .statements("BuildRole")
            .iter()
            .any(|st| st["Resource"] == "arn:aws:codecommit:ap-northeast-1:123456789012:*")
    );
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
    // No custom metric unless the stack asks for it (MirrorMetrics), the buildspec alone neither.
    assert_eq!(spec["BACKLOG_MIRROR_METRICS"], "none");
    assert_eq!(defaults.build_env()["BACKLOG_MIRROR_METRICS"], "none");
    assert_eq!(
        Stack::new(&t, &[("MirrorMetrics", "emf")]).build_env()["BACKLOG_MIRROR_METRICS"],
        "emf"
    );
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

/// The schedule starts the project with no input, so no BACKLOG_MIRROR_REPO: every mirror.
#[test]
fn the_schedule_syncs_every_mirror() {
    let t = stack::template();
    let s = Stack::new(&t, &[]);
    let rule = s.properties("SafetyNetSchedule");
    let target = rule["Targets"][0].as_object().unwrap();
    for input in ["Input", "InputPath", "InputTransformer"] {
        assert!(
            !target.contains_key(input),
            "the scheduled build must carry no input: {target:?}"
        );
    }
    assert_eq!(target["Arn"], "<MirrorProject.Arn>");
}

/// Backlog does not retry a webhook, so a push refused with 429 or 502 waits for the next
/// scheduled build of every mirror: one is due within 10 minutes of any moment, and a refused
/// scheduled start may be retried only until the next one is due. (A higher default
/// BuildConcurrency would refuse less, but bounds nothing: docs/deploy.md has the figures.)
#[test]
fn a_refused_webhook_is_picked_up_by_a_scheduled_build_within_10_minutes() {
    let t = stack::template();
    let s = Stack::new(&t, &[]);
    let rule = s.properties("SafetyNetSchedule");
    let expression = rule["ScheduleExpression"].as_str().unwrap();
    let minutes: u64 = expression
        .strip_prefix("rate(")
        .and_then(|r| r.strip_suffix(" minutes)"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("not rate(N minutes): {expression}"));
    assert!(minutes <= 10, "{expression}");
    let retry = &rule["Targets"][0]["RetryPolicy"];
    assert!(
        retry["MaximumEventAgeInSeconds"].as_u64().unwrap() < minutes * 60,
        "{retry}"
    );
}

/// What the binary prints per mirror with MirrorMetrics emf (MANY-CONTRACT.md, "Metrics"), as
/// CloudWatch's embedded metric format specifies it: the metadata the per-mirror alarm's query
/// must match. The stack names its namespace after the project (BACKLOG_MIRROR_METRICS_NAMESPACE)
/// so two stacks in one account and region keep their mirrors apart; the default project here.
const NAMESPACE: &str = "BacklogMirror/backlog-mirror";
const DIMENSION: &str = "Mirror";
const METRICS: [&str; 4] = ["Succeeded", "Rounds", "RefsChanged", "Seconds"];

/// (logical id, evaluated properties) of the alarms a stack with these parameters creates.
fn alarms(values: &[(&str, &str)]) -> Vec<(String, Value)> {
    let t = stack::template();
    let s = Stack::new(&t, values).with_physical("MirrorProject", "backlog-mirror");
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
const EMF: (&str, &str) = ("MirrorMetrics", "emf");

/// What CodeBuild publishes for every project, free (user guide, "Monitoring AWS CodeBuild":
/// namespace AWS/CodeBuild, dimension ProjectName, statistic Sum).
const CODEBUILD_METRICS: [&str; 3] = ["Builds", "FailedBuilds", "SucceededBuilds"];

/// Failure and silence alarms rest on CodeBuild's own metrics for the project, which exist
/// whatever the build prints; nothing else is needed for them (no EMF, no custom metric). moto
/// stores each alarm (botocore's PutMetricAlarm model accepts it) and, given the datapoint
/// CodeBuild publishes, the alarm's own statistic over its own series finds it.
#[test]
fn failure_and_silence_alarms_read_the_metrics_codebuild_publishes_for_the_project() {
    assert!(alarms(&[]).is_empty(), "alarms without anyone to tell");
    let all: BTreeMap<String, Value> = alarms(&[ALERTS]).into_iter().collect();
    assert_eq!(
        all.keys().collect::<Vec<_>>(),
        ["MirrorFailingAlarm", "MirrorsSilentAlarm"],
        "without MirrorMetrics emf, no alarm reads a metric the build prints"
    );
    let without_schedule: Vec<String> = alarms(&[ALERTS, ("ScheduleExpression", "")])
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(
        without_schedule,
        ["MirrorFailingAlarm"],
        "without the schedule a silent hour is normal"
    );
    for (name, metric) in [
        ("MirrorFailingAlarm", "FailedBuilds"),
        ("MirrorsSilentAlarm", "Builds"),
    ] {
        let a = &all[name];
        assert!(CODEBUILD_METRICS.contains(&metric));
        assert_eq!(a["Namespace"], "AWS/CodeBuild", "{name}");
        assert_eq!(a["MetricName"], metric, "{name}");
        assert_eq!(
            a["Dimensions"],
            json!([{"Name": "ProjectName", "Value": "backlog-mirror"}]),
            "{name} must name the project (Ref of a CodeBuild project is its name)"
        );
        assert_eq!(a["Statistic"], "Sum", "{name}");
        assert!(
            a.get("Metrics").is_none(),
            "{name} is a Metrics Insights alarm"
        );
    }
    assert_eq!(
        all["MirrorFailingAlarm"]["ComparisonOperator"],
        "GreaterThanOrEqualToThreshold"
    );
    assert_eq!(
        all["MirrorFailingAlarm"]["TreatMissingData"],
        "notBreaching"
    );
    let silent = &all["MirrorsSilentAlarm"];
    assert_eq!(silent["TreatMissingData"], "breaching");
    assert_eq!(
        (
            &silent["Period"],
            &silent["EvaluationPeriods"],
            &silent["DatapointsToAlarm"]
        ),
        (&json!(3600), &json!(3), &json!(3)),
        "3 of 3 hours, so the hour in progress cannot alarm alone"
    );

    let requests = put_metric_alarm_requests(&all);
    let moto = crate::support::ssm::Moto::start(None);
    let script = format!(
        "import botocore.validate, datetime\n\
         cw = boto3.client('cloudwatch', **kw)\n\
         shape = cw.meta.service_model.operation_model('PutMetricAlarm').input_shape\n\
         now = datetime.datetime.now(datetime.timezone.utc)\n\
         for r in json.loads({requests:?}):\n\
         \x20   report = botocore.validate.ParamValidator().validate(r, shape)\n\
         \x20   assert not report.has_errors(), report.generate_report()\n\
         \x20   cw.put_metric_alarm(**r)\n\
         dims = [{{'Name': 'ProjectName', 'Value': 'backlog-mirror'}}]\n\
         for m in {metrics:?}:\n\
         \x20   cw.put_metric_data(Namespace='AWS/CodeBuild', MetricData=[{{'MetricName': m, 'Dimensions': dims, 'Value': 1, 'Unit': 'Count'}}])\n\
         found = {{}}\n\
         for a in cw.describe_alarms()['MetricAlarms']:\n\
         \x20   got = cw.get_metric_statistics(Namespace=a['Namespace'], MetricName=a['MetricName'], Dimensions=a['Dimensions'], Statistics=[a['Statistic']], Period=a['Period'], StartTime=now - datetime.timedelta(hours=1), EndTime=now + datetime.timedelta(hours=1))\n\
         \x20   watchers = cw.describe_alarms_for_metric(Namespace=a['Namespace'], MetricName=a['MetricName'], Dimensions=a['Dimensions'])['MetricAlarms']\n\
         \x20   found[a['AlarmName']] = [len(got['Datapoints']), [w['AlarmName'] for w in watchers]]\n\
         print(json.dumps(found))",
        requests = Value::Array(requests).to_string(),
        metrics = CODEBUILD_METRICS,
    );
    let found: Value = serde_json::from_str(&moto.boto(&script)).unwrap();
    assert_eq!(
        found,
        json!({
            "backlog-mirror-mirror-failing": [1, ["backlog-mirror-mirror-failing"]],
            "backlog-mirror-mirrors-silent": [1, ["backlog-mirror-mirrors-silent"]],
        })
    );
}

/// Each alarm as CloudFormation passes it to PutMetricAlarm (numbers as numbers, the topic as an
/// ARN).
fn put_metric_alarm_requests(all: &BTreeMap<String, Value>) -> Vec<Value> {
    all.values()
        .map(|a| {
            let mut r = a.clone();
            let o = r.as_object_mut().unwrap();
            for key in ["EvaluationPeriods", "DatapointsToAlarm", "Period"] {
                if let Some(v) = o.get(key) {
                    let n: u64 = v.to_string().trim_matches('"').parse().unwrap();
                    o.insert(key.to_string(), json!(n));
                }
            }
            let topic = json!(["arn:aws:sns:ap-northeast-1:123456789012:backlog-mirror-failures"]);
            o.insert("AlarmActions".into(), topic.clone());
            o.insert("OKActions".into(), topic);
            r
        })
        .collect()
}

/// With MirrorMetrics emf the binary prints its per-mirror metrics, and with alerts a Metrics
/// Insights alarm watches each mirror within what such an alarm evaluates (its latest 3 hours,
/// "Limits that apply to alarms based on Metrics Insights queries"), validated and stored like
/// the others. Nothing here evaluates its query: docs/deploy.md and `--verify` say how the first
/// deployment checks that CloudWatch extracts the metrics at all.
#[test]
fn with_mirror_metrics_a_stale_alarm_watches_each_mirror_within_3_hours() {
    let t = stack::template();
    assert_eq!(t["Parameters"]["MirrorMetrics"]["Default"], "none");
    assert_eq!(t["Parameters"]["StaleAfterHours"]["Default"], 3);
    assert_eq!(t["Parameters"]["StaleAfterHours"]["MaxValue"], 3);
    for hours in ["1", "2", "3"] {
        let all: BTreeMap<String, Value> = alarms(&[ALERTS, EMF, ("StaleAfterHours", hours)])
            .into_iter()
            .collect();
        assert_eq!(all.len(), 3);
        let stale = &all["MirrorStaleAlarm"];
        let query = &stale["Metrics"][0];
        assert_eq!(stale["Metrics"].as_array().unwrap().len(), 1);
        let expression = query["Expression"].as_str().unwrap();
        assert_eq!(
            expression,
            format!(
                "SELECT MAX(Succeeded) FROM SCHEMA(\"{NAMESPACE}\", {DIMENSION}) GROUP BY {DIMENSION} ORDER BY MAX() ASC"
            )
        );
        assert!(METRICS.iter().any(|m| expression.contains(m)));
        let period = query["Period"].as_u64().unwrap();
        let evaluation: u64 = stale["EvaluationPeriods"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(evaluation.to_string(), hours);
        assert!(period * evaluation <= 3 * 3600, "looks back past 3 hours");
        assert_eq!(stale["DatapointsToAlarm"], stale["EvaluationPeriods"]);
        assert_eq!(stale["TreatMissingData"], "notBreaching");
        assert_eq!(query["ReturnData"], true);
    }
    let all: BTreeMap<String, Value> = alarms(&[ALERTS, EMF, ("StaleAfterHours", "2")])
        .into_iter()
        .collect();
    let requests = put_metric_alarm_requests(&all);
    let moto = crate::support::ssm::Moto::start(None);
    let script = format!(
        "import botocore.validate\n\
         cw = boto3.client('cloudwatch', **kw)\n\
         shape = cw.meta.service_model.operation_model('PutMetricAlarm').input_shape\n\
         for r in json.loads({requests:?}):\n\
         \x20   report = botocore.validate.ParamValidator().validate(r, shape)\n\
         \x20   assert not report.has_errors(), report.generate_report()\n\
         \x20   cw.put_metric_alarm(**r)\n\
         a = cw.describe_alarms(AlarmNames=['backlog-mirror-mirror-stale'])['MetricAlarms'][0]\n\
         print(json.dumps([a['Metrics'][0]['Expression'], a['EvaluationPeriods']]))",
        requests = Value::Array(requests).to_string(),
    );
    let stored: Value = serde_json::from_str(&moto.boto(&script)).unwrap();
    assert_eq!(
        stored,
        json!([all["MirrorStaleAlarm"]["Metrics"][0]["Expression"], 2])
    );
}

/// CloudWatch's prices (us-east-1; "Amazon CloudWatch pricing", as read for docs/deploy.md): a
/// custom metric USD 0.30 a month (the first 10,000), an alarm USD 0.10 a month per metric it
/// reads, a Metrics Insights alarm reading one per mirror; AWS/ metrics are free.
fn monthly_monitoring_usd(values: &[(&str, &str)], mirrors: u32) -> f64 {
    let t = stack::template();
    let s = Stack::new(&t, values);
    // The project's environment wins over the buildspec's default.
    let spec: BTreeMap<String, String> =
        serde_json::from_value(stack::buildspec()["env"]["variables"].clone()).unwrap();
    let printed = s
        .build_env()
        .get("BACKLOG_MIRROR_METRICS")
        .cloned()
        .unwrap_or_else(|| spec["BACKLOG_MIRROR_METRICS"].clone());
    let custom = if printed == "emf" {
        METRICS.len() as f64 * f64::from(mirrors)
    } else {
        0.0
    };
    let alarm_metrics: f64 = alarms(values)
        .iter()
        .map(|(_, a)| {
            if a.get("Metrics").is_some() {
                f64::from(mirrors)
            } else {
                1.0
            }
        })
        .sum();
    custom * 0.30 + alarm_metrics * 0.10
}

/// The standing cost of monitoring 20 mirrors stays under USD 2 a month, alerts on or off; the
/// per-mirror metrics are the team's choice, at their price (docs/deploy.md, the cost table).
#[test]
fn monitoring_20_mirrors_stands_under_2_usd_a_month() {
    let with_alerts = monthly_monitoring_usd(&[ALERTS], 20);
    let without = monthly_monitoring_usd(&[], 20);
    eprintln!(
        "monitoring 20 mirrors: USD {with_alerts:.2} a month with alerts, {without:.2} without"
    );
    assert!(with_alerts < 2.0, "USD {with_alerts:.2} a month");
    assert_eq!(without, 0.0, "metrics nobody reads");
    let opted_in = monthly_monitoring_usd(&[ALERTS, EMF], 20);
    assert!(
        (opted_in - (20.0 * 4.0 * 0.30 + 0.20 + 20.0 * 0.10)).abs() < 1e-9,
        "USD {opted_in:.2}"
    );
}

/// One namespace per stack, `BacklogMirror/<ProjectName>`, in the project's environment, the
/// per-mirror alarm's query, and every statement of docs/deploy.md.
#[test]
fn the_docs_and_the_stack_agree_on_one_metrics_namespace_per_stack() {
    let t = stack::template();
    for project in ["backlog-mirror", "mirrors-b"] {
        let s = Stack::new(&t, &[("ProjectName", project), ALERTS, EMF]);
        let namespace = format!("BacklogMirror/{project}");
        assert_eq!(s.build_env()["BACKLOG_MIRROR_METRICS_NAMESPACE"], namespace);
        assert!(
            s.properties("MirrorStaleAlarm")["Metrics"][0]["Expression"]
                .as_str()
                .unwrap()
                .contains(&format!("SCHEMA(\"{namespace}\", Mirror)"))
        );
    }
    let docs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/deploy.md"))
        .expect("docs/deploy.md");
    let named: Vec<&str> = docs
        .match_indices("BacklogMirror/")
        .map(|(at, _)| {
            docs[at..]
                .split(|c: char| c.is_whitespace() || "`\"',;)".contains(c))
                .next()
                .unwrap()
        })
        .collect();
    assert!(!named.is_empty(), "docs/deploy.md names no namespace");
    for n in named {
        assert!(
            n == "BacklogMirror/<ProjectName>" || n == NAMESPACE,
            "docs/deploy.md names {n}, not the stack's BacklogMirror/<ProjectName>"
        );
    }
    assert!(
        !docs.contains("same namespace"),
        "docs/deploy.md says two stacks share a namespace"
    );
}
