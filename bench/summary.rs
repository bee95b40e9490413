//! From samples to the figures the README quotes: medians and spreads per dataset, scenario and
//! side, B's ratios to the article's steps (A) and to plain git (C), and each target of the
//! benchmark issues checked against them.

use std::fmt::Write as _;
use std::process::Command;

use serde::{Deserialize, Serialize};

use crate::samples::{Sample, Scenario, Size, Tool};

/// What the figures were measured on.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub memory_gib: f64,
    pub kernel: String,
    pub git: String,
    pub openssh: String,
    pub date: String,
}

impl Machine {
    pub fn read() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .map(|l| l.trim_start_matches([' ', '\t', ':']).to_string())
            .unwrap_or_else(|| "unknown".to_string());
        let memory_kb: f64 = std::fs::read_to_string("/proc/meminfo")
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|l| l.split_whitespace().next()?.parse().ok())
            .unwrap_or(0.0);
        let output = |program: &str, args: &[&str]| {
            Command::new(program)
                .args(args)
                .output()
                .map(|o| {
                    let text = if o.stdout.is_empty() {
                        o.stderr
                    } else {
                        o.stdout
                    };
                    String::from_utf8_lossy(&text).trim().to_string()
                })
                .unwrap_or_else(|_| "unknown".to_string())
        };
        Machine {
            cpu,
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            memory_gib: memory_kb / (1024.0 * 1024.0),
            kernel: output("uname", &["-r"]),
            git: output("git", &["--version"]),
            openssh: output("ssh", &["-V"]),
            date: output("date", &["-u", "+%Y-%m-%d"]),
        }
    }

    pub fn describe(&self) -> String {
        format!(
            "machine: {}, {} cores, {:.0} GiB, Linux {}; {}; {}; {}",
            self.cpu, self.cores, self.memory_gib, self.kernel, self.git, self.openssh, self.date
        )
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DatasetInfo {
    pub name: String,
    pub size: Size,
    pub commits: usize,
    pub files: usize,
    pub refs: usize,
    /// Objects in the repository's pack (absent from results written before it was counted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub objects: Option<u64>,
    pub pack_bytes: u64,
}

/// The figures of one side in one scenario of one dataset, over its rounds.
#[derive(Debug, Clone, Serialize)]
pub struct Figures {
    pub runs: usize,
    pub failed: usize,
    pub seconds_median: f64,
    pub seconds_min: f64,
    pub seconds_max: f64,
    pub peak_rss_mib_max: f64,
    pub source_bytes_median: u64,
    pub target_in_bytes_median: u64,
    pub target_out_bytes_median: u64,
    pub source_connections_median: Option<u64>,
    pub target_requests_median: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
}

impl Figures {
    fn of(samples: &[&Sample]) -> Option<Figures> {
        if samples.is_empty() {
            return None;
        }
        let mut seconds: Vec<f64> = samples.iter().map(|s| s.seconds).collect();
        seconds.sort_by(f64::total_cmp);
        let median_u64 = |f: fn(&Sample) -> u64| {
            let mut v: Vec<u64> = samples.iter().map(|s| f(s)).collect();
            v.sort_unstable();
            v[v.len() / 2]
        };
        Some(Figures {
            runs: samples.len(),
            failed: samples.iter().filter(|s| !s.ok).count(),
            seconds_median: median(&seconds),
            seconds_min: seconds[0],
            seconds_max: seconds[seconds.len() - 1],
            peak_rss_mib_max: samples.iter().map(|s| s.peak_rss_kb).max().unwrap_or(0) as f64
                / 1024.0,
            source_bytes_median: median_u64(|s| s.source_bytes),
            target_in_bytes_median: median_u64(|s| s.target_in_bytes),
            target_out_bytes_median: median_u64(|s| s.target_out_bytes),
            source_connections_median: median_of(
                samples.iter().filter_map(|s| s.source_connections),
            ),
            target_requests_median: median_of(samples.iter().filter_map(|s| s.target_requests)),
            first_error: samples.iter().find_map(|s| s.error.clone()),
        })
    }
}

/// The median of the values there are, if any.
fn median_of(values: impl Iterator<Item = u64>) -> Option<u64> {
    let mut v: Vec<u64> = values.collect();
    v.sort_unstable();
    v.get(v.len() / 2).copied()
}

fn median(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub dataset: String,
    pub scenario: Scenario,
    pub a: Option<Figures>,
    pub b: Option<Figures>,
    pub c: Option<Figures>,
    /// B's median seconds over A's, when both sides succeeded every run.
    pub time_ratio: Option<f64>,
    pub memory_ratio: Option<f64>,
    /// B over plain git (C): median seconds, peak memory, and bytes the target received.
    pub time_ratio_c: Option<f64>,
    pub memory_ratio_c: Option<f64>,
    pub target_bytes_ratio_c: Option<f64>,
}

impl Row {
    pub fn figures(&self, tool: Tool) -> Option<&Figures> {
        match tool {
            Tool::A => self.a.as_ref(),
            Tool::B => self.b.as_ref(),
            Tool::C => self.c.as_ref(),
        }
    }
}

/// One target of a benchmark issue, checked.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    /// Which list the target comes from: "plain git" (against plain git), or "article" (the
    /// first benchmark's, against the article's steps).
    pub list: String,
    pub dataset: String,
    pub what: String,
    pub goal: String,
    pub measured: String,
    pub met: Option<bool>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub machine: Machine,
    pub rounds: usize,
    pub datasets: Vec<DatasetInfo>,
    pub rows: Vec<Row>,
    pub targets: Vec<Target>,
    pub samples: Vec<Sample>,
}

/// `b / a` when both sides succeeded every run and `a` is not zero.
fn ratio(a: Option<&Figures>, b: Option<&Figures>, pick: fn(&Figures) -> f64) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if a.failed == 0 && b.failed == 0 && pick(a) > 0.0 => {
            Some(pick(b) / pick(a))
        }
        _ => None,
    }
}

impl Report {
    pub fn new(
        machine: Machine,
        rounds: usize,
        datasets: Vec<DatasetInfo>,
        samples: Vec<Sample>,
    ) -> Report {
        let mut rows = Vec::new();
        for dataset in &datasets {
            for scenario in Scenario::ALL {
                let pick = |tool: Tool| -> Vec<&Sample> {
                    samples
                        .iter()
                        .filter(|s| {
                            s.dataset == dataset.name && s.scenario == scenario && s.tool == tool
                        })
                        .collect()
                };
                let (a, b, c) = (
                    Figures::of(&pick(Tool::A)),
                    Figures::of(&pick(Tool::B)),
                    Figures::of(&pick(Tool::C)),
                );
                if a.is_none() && b.is_none() && c.is_none() {
                    continue;
                }
                let seconds = |f: &Figures| f.seconds_median;
                let memory = |f: &Figures| f.peak_rss_mib_max;
                let bytes = |f: &Figures| f.target_in_bytes_median as f64;
                rows.push(Row {
                    dataset: dataset.name.clone(),
                    scenario,
                    time_ratio: ratio(a.as_ref(), b.as_ref(), seconds),
                    memory_ratio: ratio(a.as_ref(), b.as_ref(), memory),
                    time_ratio_c: ratio(c.as_ref(), b.as_ref(), seconds),
                    memory_ratio_c: ratio(c.as_ref(), b.as_ref(), memory),
                    target_bytes_ratio_c: ratio(c.as_ref(), b.as_ref(), bytes),
                    a,
                    b,
                    c,
                });
            }
        }
        let mut targets = article_targets(&datasets, &rows);
        targets.extend(plain_git_targets(&datasets, &rows));
        Report {
            machine,
            rounds,
            datasets,
            rows,
            targets,
            samples,
        }
    }

    fn row(&self, dataset: &str, scenario: Scenario) -> Option<&Row> {
        self.rows
            .iter()
            .find(|r| r.dataset == dataset && r.scenario == scenario)
    }

    /// The table printed at the end and pasted into the README.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "\n{}", self.machine.describe());
        let _ = writeln!(
            out,
            "A = the article's shell steps, B = backlog-mirror sync, C = plain git (clone/fetch + \
             push --mirror, no ref-update limit); medians of {} rounds, [min-max]; memory is the \
             peak of the largest process; bytes counted at the servers.\n",
            self.rounds
        );
        let _ = writeln!(
            out,
            "| dataset | scenario | A seconds | B seconds | C seconds | B/A | B/C | A MiB | B MiB | C MiB | source bytes A | source bytes B | source bytes C | target bytes A | target bytes B | target bytes C |"
        );
        let _ = writeln!(
            out,
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
        );
        for dataset in &self.datasets {
            for scenario in Scenario::ALL {
                let Some(row) = self.row(&dataset.name, scenario) else {
                    continue;
                };
                let secs = |f: Option<&Figures>| match f {
                    Some(f) if f.failed == f.runs => format!("failed ({} runs)", f.runs),
                    Some(f) => format!(
                        "{:.2} [{:.2}-{:.2}]{}",
                        f.seconds_median,
                        f.seconds_min,
                        f.seconds_max,
                        if f.failed > 0 {
                            format!(", {} failed", f.failed)
                        } else {
                            String::new()
                        }
                    ),
                    None => "-".to_string(),
                };
                let mib = |f: Option<&Figures>| {
                    f.map_or("-".to_string(), |f| format!("{:.0}", f.peak_rss_mib_max))
                };
                let bytes = |f: Option<&Figures>, pick: fn(&Figures) -> u64| {
                    f.map_or("-".to_string(), |f| human_bytes(pick(f)))
                };
                let r = |v: Option<f64>| v.map_or("-".to_string(), |r| format!("{r:.2}"));
                let sides = Tool::ALL.map(|t| row.figures(t));
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                    dataset.name,
                    scenario.label(),
                    secs(sides[0]),
                    secs(sides[1]),
                    secs(sides[2]),
                    r(row.time_ratio),
                    r(row.time_ratio_c),
                    mib(sides[0]),
                    mib(sides[1]),
                    mib(sides[2]),
                    bytes(sides[0], |f| f.source_bytes_median),
                    bytes(sides[1], |f| f.source_bytes_median),
                    bytes(sides[2], |f| f.source_bytes_median),
                    bytes(sides[0], |f| f.target_in_bytes_median),
                    bytes(sides[1], |f| f.target_in_bytes_median),
                    bytes(sides[2], |f| f.target_in_bytes_median),
                );
            }
        }
        let _ = writeln!(
            out,
            "\nRound trips (medians; connections to the source's sshd, requests the target answered):\n"
        );
        let _ = writeln!(
            out,
            "| dataset | scenario | source connections A / B / C | target requests A / B / C |"
        );
        let _ = writeln!(out, "|---|---|---|---|");
        for row in &self.rows {
            let count = |pick: fn(&Figures) -> Option<u64>| {
                Tool::ALL
                    .map(|t| {
                        row.figures(t)
                            .and_then(pick)
                            .map_or("-".to_string(), |n| n.to_string())
                    })
                    .join(" / ")
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} |",
                row.dataset,
                row.scenario.label(),
                count(|f| f.source_connections_median),
                count(|f| f.target_requests_median)
            );
        }
        let failures: Vec<String> = self
            .rows
            .iter()
            .flat_map(|r| {
                Tool::ALL.into_iter().filter_map(move |tool| {
                    let f = r.figures(tool)?;
                    Some(format!(
                        "{} {} {tool:?}: {}",
                        r.dataset,
                        r.scenario.label(),
                        f.first_error.as_ref()?
                    ))
                })
            })
            .collect();
        if !failures.is_empty() {
            let _ = writeln!(out, "\nfailures (first of each row):");
            for f in failures {
                let _ = writeln!(out, "- {f}");
            }
        }
        let _ = writeln!(out, "\ntargets:");
        for t in &self.targets {
            let _ = writeln!(
                out,
                "- [{}] ({}) {} {}: {} (goal {})",
                match t.met {
                    Some(true) => "met",
                    Some(false) => "MISSED",
                    None => "n/a",
                },
                t.list,
                t.dataset,
                t.what,
                t.measured,
                t.goal
            );
        }
        out
    }
}

fn human_bytes(n: u64) -> String {
    let n = n as f64;
    if n >= 1024.0 * 1024.0 * 1024.0 {
        format!("{:.2} GiB", n / (1024.0 * 1024.0 * 1024.0))
    } else if n >= 1024.0 * 1024.0 {
        format!("{:.1} MiB", n / (1024.0 * 1024.0))
    } else if n >= 1024.0 {
        format!("{:.0} KiB", n / 1024.0)
    } else {
        format!("{n:.0} B")
    }
}

fn find<'r>(rows: &'r [Row], name: &str, scenario: Scenario) -> Option<&'r Row> {
    rows.iter()
        .find(|r| r.dataset == name && r.scenario == scenario)
}

/// Where a figure must stay for its target to hold.
#[derive(Debug, Clone, Copy)]
enum Limit {
    /// `value <= n`: a ratio on its limit meets it.
    AtMost(f64),
    /// `value < n`: "under 150 MiB" is missed on 150 MiB.
    Under(f64),
}

impl Limit {
    fn holds(self, value: f64) -> bool {
        match self {
            Limit::AtMost(n) => value <= n,
            Limit::Under(n) => value < n,
        }
    }
}

/// A target that holds when `value` is within `limit`; no value (a side failed or did not run)
/// is neither met nor missed.
fn check(
    list: &str,
    dataset: &str,
    what: &str,
    goal: String,
    value: Option<f64>,
    limit: Limit,
    shown: impl Fn(f64) -> String,
) -> Target {
    Target {
        list: list.to_string(),
        dataset: dataset.to_string(),
        what: what.to_string(),
        goal,
        measured: value.map_or_else(
            || "not measured: a side failed or did not run".to_string(),
            shown,
        ),
        met: value.map(|v| limit.holds(v)),
    }
}

/// The first benchmark's targets, against the article's steps (A).
fn article_targets(datasets: &[DatasetInfo], rows: &[Row]) -> Vec<Target> {
    let ratio_target = |name: &str, scenario: Scenario, limit: f64, what: &str| {
        check(
            "article",
            name,
            what,
            format!("B/A <= {limit}"),
            find(rows, name, scenario).and_then(|r| r.time_ratio),
            Limit::AtMost(limit),
            |v| format!("B/A = {v:.2}"),
        )
    };
    let mut out = Vec::new();
    for d in datasets {
        let name = d.name.as_str();
        out.push(ratio_target(name, Scenario::Noop, 0.25, "no-op sync time"));
        out.push(ratio_target(
            name,
            Scenario::Incremental,
            0.5,
            "incremental sync time",
        ));
        let b_bytes = |s: Scenario| {
            find(rows, name, s)
                .and_then(|r| r.b.as_ref())
                .map(|f| f.source_bytes_median)
        };
        let (stateless, warm) = (b_bytes(Scenario::Stateless), b_bytes(Scenario::Incremental));
        let traffic = match (stateless, warm) {
            (Some(s), Some(w)) if w > 0 => Some((s, w)),
            _ => None,
        };
        out.push(Target {
            list: "article".to_string(),
            dataset: name.to_string(),
            what: "stateless source traffic".to_string(),
            goal: "<= 1.1x a warm-cache sync's".to_string(),
            measured: traffic.map_or("not measured".to_string(), |(s, w)| {
                format!(
                    "{} vs {} ({:.2}x)",
                    human_bytes(s),
                    human_bytes(w),
                    s as f64 / w as f64
                )
            }),
            met: traffic.map(|(s, w)| s as f64 <= 1.1 * w as f64),
        });
        let initial = find(rows, name, Scenario::Initial);
        let both = initial.and_then(|r| r.time_ratio.zip(r.memory_ratio));
        out.push(Target {
            list: "article".to_string(),
            dataset: name.to_string(),
            what: "initial mirror".to_string(),
            goal: "time B/A <= 1.0, peak memory B/A <= 1.5".to_string(),
            measured: both.map_or(
                "no ratio: a side failed or did not run".to_string(),
                |(t, m)| format!("time {t:.2}, memory {m:.2}"),
            ),
            met: both.map(|(t, m)| t <= 1.0 && m <= 1.5),
        });
        if d.refs >= 10_000 {
            let noop = find(rows, name, Scenario::Noop).and_then(|r| r.b.as_ref());
            out.push(Target {
                list: "article".to_string(),
                dataset: name.to_string(),
                what: "10,000-ref no-op sync".to_string(),
                goal: "under 2 s".to_string(),
                measured: noop.map_or("not measured".to_string(), |f| {
                    format!("{:.2} s", f.seconds_median)
                }),
                met: noop.map(|f| f.failed == 0 && f.seconds_median < 2.0),
            });
        }
    }
    out
}

/// The targets against plain git: B against C, with CodeCommit's 4,000-update limit on B only.
fn plain_git_targets(datasets: &[DatasetInfo], rows: &[Row]) -> Vec<Target> {
    const LIST: &str = "plain git";
    let mut out = Vec::new();
    for d in datasets {
        let name = d.name.as_str();
        let row = |s: Scenario| find(rows, name, s);
        let ratio_c = |s: Scenario, pick: fn(&Row) -> Option<f64>| row(s).and_then(pick);
        let times = |v: f64| format!("B/C = {v:.2}");
        out.push(check(
            LIST,
            name,
            "initial mirror time",
            "B/C <= 1.0".into(),
            ratio_c(Scenario::Initial, |r| r.time_ratio_c),
            Limit::AtMost(1.0),
            times,
        ));
        out.push(check(
            LIST,
            name,
            "initial mirror bytes sent to the target",
            "B/C <= 1.02 (no object sent twice)".into(),
            ratio_c(Scenario::Initial, |r| r.target_bytes_ratio_c),
            Limit::AtMost(1.02),
            times,
        ));
        out.push(check(
            LIST,
            name,
            "initial mirror peak memory",
            "B/C <= 1.5".into(),
            ratio_c(Scenario::Initial, |r| r.memory_ratio_c),
            Limit::AtMost(1.5),
            times,
        ));
        out.push(check(
            LIST,
            name,
            "incremental sync time",
            "B/C <= 0.8".into(),
            ratio_c(Scenario::Incremental, |r| r.time_ratio_c),
            Limit::AtMost(0.8),
            times,
        ));
        out.push(check(
            LIST,
            name,
            "no-op sync time",
            "B/C <= 0.5".into(),
            ratio_c(Scenario::Noop, |r| r.time_ratio_c),
            Limit::AtMost(0.5),
            times,
        ));
        for (scenario, what) in [
            (Scenario::LocalPath, "local path first fetch"),
            (Scenario::FileUrl, "file:// first fetch"),
        ] {
            out.push(check(
                LIST,
                name,
                what,
                "B/C <= 1.1 (C: git clone --mirror --no-local)".into(),
                ratio_c(scenario, |r| r.time_ratio_c),
                Limit::AtMost(1.1),
                times,
            ));
        }
        if d.refs >= 10_000 {
            // The same repository with 10 refs, as the grid generates it.
            let few = datasets
                .iter()
                .find(|o| o.size == d.size && o.refs < 100)
                .and_then(|o| find(rows, &o.name, Scenario::Initial))
                .and_then(|r| r.b.as_ref());
            let many = row(Scenario::Initial).and_then(|r| r.b.as_ref());
            let value = match (many, few) {
                (Some(m), Some(f)) if m.failed == 0 && f.failed == 0 => {
                    Some(m.seconds_median / f.seconds_median)
                }
                _ => None,
            };
            out.push(check(
                LIST,
                name,
                "initial mirror against the 10-ref repository",
                "B(10,000 refs) / B(10 refs) <= 1.2".into(),
                value,
                Limit::AtMost(1.2),
                |v| format!("{v:.2}x"),
            ));
        }
        let b = |s: Scenario| row(s).and_then(|r| r.b.as_ref()).filter(|f| f.failed == 0);
        let stateless = b(Scenario::Stateless);
        let value = stateless
            .zip(b(Scenario::Incremental))
            .map(|(s, w)| s.seconds_median / w.seconds_median);
        out.push(check(
            LIST,
            name,
            "stateless incremental time against a warm cache's",
            "<= 1.2x (held on large)".into(),
            value,
            Limit::AtMost(1.2),
            |v| format!("{v:.2}x"),
        ));
        out.push(check(
            LIST,
            name,
            "stateless incremental peak memory",
            "< 150 MiB (held on large)".into(),
            stateless.map(|f| f.peak_rss_mib_max),
            Limit::Under(150.0),
            |v| format!("{v:.0} MiB"),
        ));
    }
    out
}
