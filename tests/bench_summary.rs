//! The bench's verdicts on the targets against plain git (`bench/summary.rs`), checked on samples made up
//! here. The bench is a `harness = false` target that `cargo test` never runs, and a real run
//! takes hours on a quiet machine, so without this its met/missed lines were only read by eye.
//! Pure logic, no binary to drive: the summary and the sample types it reads are compiled in as
//! modules, the way `bench/mirror.rs` includes them.
//!
//! Limits are checked on their boundary: a figure exactly on a `<=` limit meets it, one step over
//! misses it, and the one strict limit (stateless peak memory `< 150 MiB`) is missed on 150 MiB.
//! Figures are chosen so every ratio is a quotient of exact integers, which rounds to the same
//! double as the limit's literal (102 / 100 == 1.02).

// The bench's own labels (`Size::name`, `Tool::side`, `Scenario::is_local`) go unused here.
#[allow(dead_code)]
#[path = "../bench/samples.rs"]
mod samples;
// `Machine::read` (the host the bench measures on) goes unused here.
#[allow(dead_code)]
#[path = "../bench/summary.rs"]
mod summary;

use samples::{Sample, Scenario, Size, Tool};
use summary::{DatasetInfo, Machine, Report};

const PLAIN_GIT: &str = "plain git";
const INITIAL_TIME: &str = "initial mirror time";
const INITIAL_BYTES: &str = "initial mirror bytes sent to the target";
const INITIAL_MEMORY: &str = "initial mirror peak memory";
const INCREMENTAL: &str = "incremental sync time";
const NOOP: &str = "no-op sync time";
const LOCAL_PATH: &str = "local path first fetch";
const FILE_URL: &str = "file:// first fetch";
const STATELESS_TIME: &str = "stateless incremental time against a warm cache's";
const STATELESS_MEMORY: &str = "stateless incremental peak memory";
const AGAINST_10_REFS: &str = "initial mirror against the 10-ref repository";

/// The targets against plain git on every dataset; a 10,000-ref dataset has `AGAINST_10_REFS` as well.
const EVERY_DATASET: [&str; 9] = [
    INITIAL_TIME,
    INITIAL_BYTES,
    INITIAL_MEMORY,
    INCREMENTAL,
    NOOP,
    LOCAL_PATH,
    FILE_URL,
    STATELESS_TIME,
    STATELESS_MEMORY,
];

const MIB_KB: u64 = 1024;

fn machine() -> Machine {
    Machine {
        cpu: "test".into(),
        cores: 2,
        memory_gib: 8.0,
        kernel: "test".into(),
        git: "git version test".into(),
        openssh: "OpenSSH test".into(),
        date: "2026-01-01".into(),
    }
}

fn dataset(name: &str, size: Size, refs: usize) -> DatasetInfo {
    DatasetInfo {
        name: name.into(),
        size,
        commits: 1_000,
        files: 500,
        refs,
        objects: Some(3_000),
        pack_bytes: 4 << 20,
    }
}

/// One successful run of `tool` in `scenario` on `dataset`.
fn run(dataset: &str, scenario: Scenario, tool: Tool, seconds: f64, peak_mib: u64) -> Sample {
    Sample {
        dataset: dataset.into(),
        scenario,
        tool,
        round: 1,
        seconds,
        peak_rss_kb: peak_mib * MIB_KB,
        source_bytes: 1_000_000,
        target_in_bytes: 100_000,
        target_out_bytes: 1_000,
        source_connections: Some(1),
        target_requests: Some(2),
        ok: true,
        error: None,
        phases: None,
        transfer: None,
    }
}

/// One round of every scenario on `name` in which B is comfortably inside every limit of issue
/// 12: half of git's initial time, bytes and memory, a tenth of its no-op, and so on. C's figures
/// are round numbers (100 s, 100 MiB, 100,000 bytes) so that B's figure on a limit is the limit
/// times 100.
fn comfortable(name: &str) -> Vec<Sample> {
    use Scenario::*;
    use Tool::{B, C};
    let mut samples = vec![
        run(name, Initial, C, 100.0, 100),
        run(name, Initial, B, 50.0, 50),
        run(name, Noop, C, 100.0, 20),
        run(name, Noop, B, 10.0, 20),
        run(name, Incremental, C, 100.0, 20),
        run(name, Incremental, B, 40.0, 20),
        run(name, Stateless, C, 100.0, 500),
        run(name, Stateless, B, 40.0, 50),
        run(name, LocalPath, C, 100.0, 100),
        run(name, LocalPath, B, 50.0, 100),
        run(name, FileUrl, C, 100.0, 100),
        run(name, FileUrl, B, 50.0, 100),
    ];
    for s in &mut samples {
        if s.scenario == Initial && s.tool == B {
            s.target_in_bytes = 50_000;
        }
    }
    samples
}

fn report(datasets: Vec<DatasetInfo>, samples: Vec<Sample>) -> Report {
    Report::new(machine(), 1, datasets, samples)
}

fn small(samples: Vec<Sample>) -> Report {
    report(vec![dataset("small-10refs", Size::Small, 10)], samples)
}

/// The plain-git verdict on `what` for `dataset`; the report must hold it exactly once.
fn verdict(report: &Report, dataset: &str, what: &str) -> Option<bool> {
    let found: Vec<_> = report
        .targets
        .iter()
        .filter(|t| t.list == PLAIN_GIT && t.dataset == dataset && t.what == what)
        .collect();
    assert_eq!(found.len(), 1, "{dataset} {what}: {found:?}");
    found[0].met
}

fn measured(report: &Report, dataset: &str, what: &str) -> String {
    report
        .targets
        .iter()
        .find(|t| t.list == PLAIN_GIT && t.dataset == dataset && t.what == what)
        .map(|t| t.measured.clone())
        .unwrap_or_else(|| panic!("no target {what} on {dataset}"))
}

/// Every issue-12 verdict on `dataset` but those in `except`.
fn others<'r>(report: &'r Report, dataset: &str, except: &[&str]) -> Vec<(&'r str, Option<bool>)> {
    report
        .targets
        .iter()
        .filter(|t| {
            t.list == PLAIN_GIT && t.dataset == dataset && !except.contains(&t.what.as_str())
        })
        .map(|t| (t.what.as_str(), t.met))
        .collect()
}

fn b_run(samples: &mut [Sample], scenario: Scenario) -> &mut Sample {
    samples
        .iter_mut()
        .find(|s| s.scenario == scenario && s.tool == Tool::B)
        .expect("B ran the scenario")
}

/// Which of B's figures a target reads, and the smallest step of it.
#[derive(Clone, Copy, Debug)]
enum Figure {
    Seconds,
    TargetBytes,
    PeakRssKb,
}

impl Figure {
    fn set(self, sample: &mut Sample, value: f64) {
        match self {
            Figure::Seconds => sample.seconds = value,
            Figure::TargetBytes => sample.target_in_bytes = value as u64,
            Figure::PeakRssKb => sample.peak_rss_kb = value as u64,
        }
    }

    fn step(self) -> f64 {
        match self {
            Figure::Seconds => 0.001,
            Figure::TargetBytes | Figure::PeakRssKb => 1.0,
        }
    }
}

struct Limit {
    what: &'static str,
    scenario: Scenario,
    figure: Figure,
    /// B's figure exactly on the limit, the others' figures being `comfortable`'s.
    on_limit: f64,
    /// `<` rather than `<=`.
    strict: bool,
}

/// The limits against plain git, as B's figure on each against `comfortable`'s others.
fn limits() -> [Limit; 9] {
    use Figure::*;
    use Scenario::*;
    let at_most = |what, scenario, figure, on_limit| Limit {
        what,
        scenario,
        figure,
        on_limit,
        strict: false,
    };
    [
        // <= 1.0x git's 100 s.
        at_most(INITIAL_TIME, Initial, Seconds, 100.0),
        // <= 1.02x git's 100,000 bytes: no object sent twice.
        at_most(INITIAL_BYTES, Initial, TargetBytes, 102_000.0),
        // <= 1.5x git's 100 MiB.
        at_most(INITIAL_MEMORY, Initial, PeakRssKb, 150.0 * 1024.0),
        // <= 0.8x git's 100 s.
        at_most(INCREMENTAL, Incremental, Seconds, 80.0),
        // <= 0.5x git's 100 s.
        at_most(NOOP, Noop, Seconds, 50.0),
        // <= 1.1x git clone --mirror --no-local's 100 s.
        at_most(LOCAL_PATH, LocalPath, Seconds, 110.0),
        at_most(FILE_URL, FileUrl, Seconds, 110.0),
        // <= 1.2x B's own warm incremental, 40 s.
        at_most(STATELESS_TIME, Stateless, Seconds, 48.0),
        // < 150 MiB, whatever git uses.
        Limit {
            what: STATELESS_MEMORY,
            scenario: Stateless,
            figure: PeakRssKb,
            on_limit: 150.0 * 1024.0,
            strict: true,
        },
    ]
}

#[test]
fn each_target_is_met_under_and_on_its_limit_and_missed_over_it() {
    let comfortable_report = small(comfortable("small-10refs"));
    for what in EVERY_DATASET {
        assert_eq!(
            verdict(&comfortable_report, "small-10refs", what),
            Some(true),
            "{what} with every figure comfortably inside its limit"
        );
    }
    for limit in limits() {
        let step = limit.figure.step();
        for (place, value, met) in [
            ("one step under", limit.on_limit - step, true),
            ("exactly on", limit.on_limit, !limit.strict),
            ("one step over", limit.on_limit + step, false),
        ] {
            let mut samples = comfortable("small-10refs");
            limit.figure.set(b_run(&mut samples, limit.scenario), value);
            let report = small(samples);
            assert_eq!(
                verdict(&report, "small-10refs", limit.what),
                Some(met),
                "{} with B's {:?} {place} its limit ({value}): {}",
                limit.what,
                limit.figure,
                measured(&report, "small-10refs", limit.what)
            );
            for (other, verdict) in others(&report, "small-10refs", &[limit.what]) {
                assert_eq!(
                    verdict,
                    Some(true),
                    "{other}, when only {} moved {place} its limit",
                    limit.what
                );
            }
        }
    }
}

#[test]
fn each_verdict_names_its_figure_and_goal() {
    let mut samples = comfortable("small-10refs");
    b_run(&mut samples, Scenario::Noop).seconds = 51.0;
    b_run(&mut samples, Scenario::Stateless).peak_rss_kb = 150 * MIB_KB;
    let report = small(samples);
    let expected = [
        (INITIAL_TIME, "B/C = 0.50", "B/C <= 1.0"),
        (
            INITIAL_BYTES,
            "B/C = 0.50",
            "B/C <= 1.02 (no object sent twice)",
        ),
        (INITIAL_MEMORY, "B/C = 0.50", "B/C <= 1.5"),
        (INCREMENTAL, "B/C = 0.40", "B/C <= 0.8"),
        (NOOP, "B/C = 0.51", "B/C <= 0.5"),
        (
            LOCAL_PATH,
            "B/C = 0.50",
            "B/C <= 1.1 (C: git clone --mirror --no-local)",
        ),
        (
            FILE_URL,
            "B/C = 0.50",
            "B/C <= 1.1 (C: git clone --mirror --no-local)",
        ),
        (STATELESS_TIME, "1.00x", "<= 1.2x (held on large)"),
        (STATELESS_MEMORY, "150 MiB", "< 150 MiB (held on large)"),
    ];
    for (what, figure, goal) in expected {
        let target = report
            .targets
            .iter()
            .find(|t| t.list == PLAIN_GIT && t.what == what)
            .unwrap_or_else(|| panic!("no target {what}"));
        assert_eq!(
            (target.measured.as_str(), target.goal.as_str()),
            (figure, goal),
            "{what}"
        );
    }
}

#[test]
fn verdicts_read_the_median_round_for_time_and_the_worst_round_for_memory() {
    let name = "small-10refs";
    let mut samples = comfortable(name);
    // Incremental rounds of B: 70, 80 and 200 s against git's 100 s, a median of 0.8x.
    for (round, seconds) in [(2, 70.0), (3, 200.0)] {
        let mut extra = run(name, Scenario::Incremental, Tool::B, seconds, 20);
        extra.round = round;
        samples.push(extra);
    }
    b_run(&mut samples, Scenario::Incremental).seconds = 80.0;
    // One initial round of B at 1.5x git's memory and one just over it.
    let mut worst = run(name, Scenario::Initial, Tool::B, 50.0, 0);
    worst.peak_rss_kb = 150 * MIB_KB + 1;
    worst.target_in_bytes = 50_000;
    worst.round = 2;
    samples.push(worst);
    let report = small(samples.clone());
    assert_eq!(verdict(&report, name, INCREMENTAL), Some(true));
    assert_eq!(verdict(&report, name, INITIAL_MEMORY), Some(false));

    // Its median round one step over: missed.
    b_run(&mut samples, Scenario::Incremental).seconds = 80.001;
    assert_eq!(verdict(&small(samples), name, INCREMENTAL), Some(false));

    // Of an even number of rounds, the mean of the middle two: 60 and 100 s make 80 s, met;
    // 60 and 100.002 s make 80.001 s, missed (neither middle round alone decides).
    for (second, met) in [(100.0, true), (100.002, false)] {
        let mut samples = comfortable(name);
        b_run(&mut samples, Scenario::Incremental).seconds = 60.0;
        let mut other = run(name, Scenario::Incremental, Tool::B, second, 20);
        other.round = 2;
        samples.push(other);
        assert_eq!(
            verdict(&small(samples), name, INCREMENTAL),
            Some(met),
            "B's incremental rounds 60 and {second} s against git's 100 s"
        );
    }
}

#[test]
fn a_10000_ref_dataset_is_held_to_its_own_10_ref_twin() {
    // Listed so that the first 10-ref dataset of the list is never the right twin.
    let datasets = vec![
        dataset("large-10refs", Size::Large, 10),
        dataset("small-10refs", Size::Small, 10),
        dataset("small-10000refs", Size::Small, 10_000),
        dataset("pulls-7000refs", Size::Pulls, 7_000),
        dataset("medium-10000refs", Size::Medium, 10_000),
        dataset("large-10000refs", Size::Large, 10_000),
    ];
    let mut samples = Vec::new();
    // B's initial mirror: large 100 s with 10 refs, 120 s with 10,000 (1.2x, met; 12x against
    // small's); small 10 s and 12.001 s (just over 1.2x; 0.12x against large's).
    for (name, seconds) in [
        ("large-10refs", 100.0),
        ("small-10refs", 10.0),
        ("small-10000refs", 12.001),
        ("pulls-7000refs", 1.0),
        ("medium-10000refs", 1.0),
        ("large-10000refs", 120.0),
    ] {
        let mut runs = comfortable(name);
        b_run(&mut runs, Scenario::Initial).seconds = seconds;
        samples.extend(runs);
    }
    let report = report(datasets, samples);

    assert_eq!(
        verdict(&report, "large-10000refs", AGAINST_10_REFS),
        Some(true)
    );
    assert_eq!(
        measured(&report, "large-10000refs", AGAINST_10_REFS),
        "1.20x"
    );
    assert_eq!(
        verdict(&report, "small-10000refs", AGAINST_10_REFS),
        Some(false)
    );
    assert_eq!(
        measured(&report, "small-10000refs", AGAINST_10_REFS),
        "1.20x"
    );
    // medium has no 10-ref twin in this run: not judged.
    assert_eq!(verdict(&report, "medium-10000refs", AGAINST_10_REFS), None);
    assert_eq!(
        measured(&report, "medium-10000refs", AGAINST_10_REFS),
        "not measured: a side failed or did not run"
    );
    // Under 10,000 refs there is no such target.
    for name in ["large-10refs", "small-10refs", "pulls-7000refs"] {
        assert!(
            report
                .targets
                .iter()
                .all(|t| !(t.dataset == name && t.what == AGAINST_10_REFS)),
            "{name} has no 10-ref twin target"
        );
    }
}

#[test]
fn a_failed_10_ref_twin_leaves_the_10000_ref_target_unjudged() {
    let datasets = vec![
        dataset("large-10refs", Size::Large, 10),
        dataset("large-10000refs", Size::Large, 10_000),
    ];
    let mut samples = comfortable("large-10000refs");
    let mut twin = comfortable("large-10refs");
    let failed = b_run(&mut twin, Scenario::Initial);
    failed.ok = false;
    failed.error = Some("push refused".into());
    samples.extend(twin);
    let report = report(datasets, samples);
    assert_eq!(verdict(&report, "large-10000refs", AGAINST_10_REFS), None);
}

#[test]
fn stateless_memory_on_large_is_held_under_150_mib_whatever_git_uses() {
    let name = "large-10000refs";
    let datasets = vec![dataset(name, Size::Large, 10_000)];
    for (peak_kb, git_mib, met) in [
        (150 * MIB_KB - 1, 10, true),
        (150 * MIB_KB, 1_000, false),
        (400 * MIB_KB, 4_000, false),
    ] {
        let mut samples = comfortable(name);
        b_run(&mut samples, Scenario::Stateless).peak_rss_kb = peak_kb;
        for s in samples.iter_mut().filter(|s| s.tool == Tool::C) {
            s.peak_rss_kb = git_mib * MIB_KB;
        }
        let report = report(datasets.clone(), samples);
        assert_eq!(
            verdict(&report, name, STATELESS_MEMORY),
            Some(met),
            "B at {peak_kb} KiB, git at {git_mib} MiB"
        );
    }
    // Git's stateless side plays no part: absent, B is still judged.
    let mut samples = comfortable(name);
    samples.retain(|s| !(s.scenario == Scenario::Stateless && s.tool == Tool::C));
    let report = report(datasets, samples);
    assert_eq!(verdict(&report, name, STATELESS_MEMORY), Some(true));
    assert_eq!(verdict(&report, name, STATELESS_TIME), Some(true));
}

#[test]
fn a_failed_side_leaves_the_targets_it_feeds_unjudged() {
    use Scenario::*;
    let cases: [(Scenario, Tool, &[&str]); 8] = [
        (
            Initial,
            Tool::B,
            &[INITIAL_TIME, INITIAL_BYTES, INITIAL_MEMORY],
        ),
        (
            Initial,
            Tool::C,
            &[INITIAL_TIME, INITIAL_BYTES, INITIAL_MEMORY],
        ),
        (Noop, Tool::C, &[NOOP]),
        // The warm incremental is also the stateless one's baseline.
        (Incremental, Tool::B, &[INCREMENTAL, STATELESS_TIME]),
        (Incremental, Tool::C, &[INCREMENTAL]),
        (Stateless, Tool::B, &[STATELESS_TIME, STATELESS_MEMORY]),
        (LocalPath, Tool::C, &[LOCAL_PATH]),
        (FileUrl, Tool::B, &[FILE_URL]),
    ];
    for (scenario, tool, unjudged) in cases {
        let mut samples = comfortable("small-10refs");
        // One failed round among good ones is enough.
        let mut failed = run("small-10refs", scenario, tool, 1.0, 1);
        failed.round = 2;
        failed.ok = false;
        failed.error = Some("exit 1".into());
        samples.push(failed);
        let report = small(samples);
        for &what in unjudged {
            assert_eq!(
                verdict(&report, "small-10refs", what),
                None,
                "{what} with {tool:?} failing {scenario:?}"
            );
            assert_eq!(
                measured(&report, "small-10refs", what),
                "not measured: a side failed or did not run"
            );
        }
        for (what, verdict) in others(&report, "small-10refs", unjudged) {
            assert_eq!(
                verdict,
                Some(true),
                "{what} with {tool:?} failing {scenario:?}"
            );
        }
    }
}

#[test]
fn a_side_or_scenario_that_did_not_run_leaves_its_targets_unjudged() {
    use Scenario::*;
    let cases: [(Scenario, Option<Tool>, &[&str]); 5] = [
        (LocalPath, None, &[LOCAL_PATH]),
        (
            Initial,
            Some(Tool::C),
            &[INITIAL_TIME, INITIAL_BYTES, INITIAL_MEMORY],
        ),
        (Noop, Some(Tool::B), &[NOOP]),
        (Incremental, None, &[INCREMENTAL, STATELESS_TIME]),
        (
            Stateless,
            Some(Tool::B),
            &[STATELESS_TIME, STATELESS_MEMORY],
        ),
    ];
    for (scenario, tool, unjudged) in cases {
        let mut samples = comfortable("small-10refs");
        samples.retain(|s| !(s.scenario == scenario && tool.is_none_or(|t| s.tool == t)));
        let report = small(samples);
        for &what in unjudged {
            assert_eq!(
                verdict(&report, "small-10refs", what),
                None,
                "{what} without {tool:?} in {scenario:?}"
            );
        }
        for (what, verdict) in others(&report, "small-10refs", unjudged) {
            assert_eq!(
                verdict,
                Some(true),
                "{what} without {tool:?} in {scenario:?}"
            );
        }
    }
}

#[test]
fn results_json_and_the_printed_summary_hold_each_verdict() {
    let mut samples = comfortable("small-10refs");
    b_run(&mut samples, Scenario::Noop).seconds = 51.0;
    samples.retain(|s| s.scenario != Scenario::FileUrl);
    let report = small(samples);

    let json = serde_json::to_value(&report).expect("serialise");
    let targets = json["targets"].as_array().expect("a targets array");
    let against_git: Vec<_> = targets.iter().filter(|t| t["list"] == PLAIN_GIT).collect();
    assert_eq!(against_git.len(), EVERY_DATASET.len(), "{against_git:#?}");
    for target in &against_git {
        for key in ["dataset", "what", "goal", "measured"] {
            assert!(target[key].is_string(), "{key} in {target}");
        }
        let expected = match target["what"].as_str() {
            Some(NOOP) => serde_json::json!(false),
            Some(FILE_URL) => serde_json::Value::Null,
            _ => serde_json::json!(true),
        };
        let met = target
            .get("met")
            .unwrap_or_else(|| panic!("no met in {target}"));
        assert_eq!(met, &expected, "{target}");
    }
    // The samples go along, so a summary can be made again from the file.
    assert_eq!(
        json["samples"].as_array().map(Vec::len),
        Some(report.samples.len())
    );

    let table = report.table();
    for line in [
        "- [met] (plain git) small-10refs initial mirror time: B/C = 0.50 (goal B/C <= 1.0)",
        "- [MISSED] (plain git) small-10refs no-op sync time: B/C = 0.51 (goal B/C <= 0.5)",
        "- [n/a] (plain git) small-10refs file:// first fetch: not measured: a side failed or did \
         not run (goal B/C <= 1.1 (C: git clone --mirror --no-local))",
        "- [met] (plain git) small-10refs stateless incremental peak memory: 50 MiB (goal < 150 \
         MiB (held on large))",
    ] {
        assert!(
            table.lines().any(|l| l == line),
            "no line {line:?} in\n{table}"
        );
    }
}
