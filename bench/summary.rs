//! From samples to the figures the README quotes: medians and spreads per dataset, scenario and
//! side, the B/A ratios, and each target of the benchmark issue checked against them.

use std::fmt::Write as _;
use std::process::Command;

use serde::{Deserialize, Serialize};

use crate::{Sample, Scenario, Size, Tool};

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
            first_error: samples.iter().find_map(|s| s.error.clone()),
        })
    }
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
    /// B's median seconds over A's, when both sides succeeded every run.
    pub time_ratio: Option<f64>,
    pub memory_ratio: Option<f64>,
}

/// One target of the benchmark issue, checked.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
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
                let (a, b) = (Figures::of(&pick(Tool::A)), Figures::of(&pick(Tool::B)));
                let both_ok = |a: &Figures, b: &Figures| a.failed == 0 && b.failed == 0;
                let (time_ratio, memory_ratio) = match (&a, &b) {
                    (Some(a), Some(b)) if both_ok(a, b) => (
                        Some(b.seconds_median / a.seconds_median),
                        Some(b.peak_rss_mib_max / a.peak_rss_mib_max),
                    ),
                    _ => (None, None),
                };
                rows.push(Row {
                    dataset: dataset.name.clone(),
                    scenario,
                    a,
                    b,
                    time_ratio,
                    memory_ratio,
                });
            }
        }
        let targets = targets(&datasets, &rows);
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
            "A = the article's shell steps, B = backlog-mirror sync; medians of {} rounds, [min-max]; \
             memory is the peak of the largest process; bytes counted at the servers.\n",
            self.rounds
        );
        let _ = writeln!(
            out,
            "| dataset | scenario | A seconds | B seconds | B/A | A MiB | B MiB | source bytes A | source bytes B | target bytes A | target bytes B |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|---|");
        for dataset in &self.datasets {
            for scenario in Scenario::ALL {
                let Some(row) = self.row(&dataset.name, scenario) else {
                    continue;
                };
                let secs = |f: &Option<Figures>| match f {
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
                let mib = |f: &Option<Figures>| {
                    f.as_ref()
                        .map_or("-".to_string(), |f| format!("{:.0}", f.peak_rss_mib_max))
                };
                let bytes = |f: &Option<Figures>, pick: fn(&Figures) -> u64| {
                    f.as_ref().map_or("-".to_string(), |f| human_bytes(pick(f)))
                };
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                    dataset.name,
                    scenario.label(),
                    secs(&row.a),
                    secs(&row.b),
                    row.time_ratio
                        .map_or("-".to_string(), |r| format!("{r:.2}")),
                    mib(&row.a),
                    mib(&row.b),
                    bytes(&row.a, |f| f.source_bytes_median),
                    bytes(&row.b, |f| f.source_bytes_median),
                    bytes(&row.a, |f| f.target_in_bytes_median),
                    bytes(&row.b, |f| f.target_in_bytes_median),
                );
            }
        }
        let failures: Vec<String> = self
            .rows
            .iter()
            .flat_map(|r| {
                [("A", &r.a), ("B", &r.b)]
                    .into_iter()
                    .filter_map(move |(side, f)| {
                        let f = f.as_ref()?;
                        Some(format!(
                            "{} {} {side}: {}",
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
                "- [{}] {} {}: {} (goal {})",
                match t.met {
                    Some(true) => "met",
                    Some(false) => "MISSED",
                    None => "n/a",
                },
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

fn targets(datasets: &[DatasetInfo], rows: &[Row]) -> Vec<Target> {
    let row = |name: &str, scenario: Scenario| {
        rows.iter()
            .find(|r| r.dataset == name && r.scenario == scenario)
    };
    let ratio_target = |name: &str, scenario: Scenario, limit: f64, what: &str| {
        let r = row(name, scenario);
        let ratio = r.and_then(|r| r.time_ratio);
        Target {
            dataset: name.to_string(),
            what: what.to_string(),
            goal: format!("B/A <= {limit}"),
            measured: ratio.map_or_else(
                || "no ratio: a side failed".to_string(),
                |v| format!("B/A = {v:.2}"),
            ),
            met: ratio.map(|v| v <= limit),
        }
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
            row(name, s)
                .and_then(|r| r.b.as_ref())
                .map(|f| f.source_bytes_median)
        };
        let (stateless, warm) = (b_bytes(Scenario::Stateless), b_bytes(Scenario::Incremental));
        out.push(Target {
            dataset: name.to_string(),
            what: "stateless source traffic".to_string(),
            goal: "<= 1.1x a warm-cache sync's".to_string(),
            measured: match (stateless, warm) {
                (Some(s), Some(w)) if w > 0 => format!(
                    "{} vs {} ({:.2}x)",
                    human_bytes(s),
                    human_bytes(w),
                    s as f64 / w as f64
                ),
                _ => "not measured".to_string(),
            },
            met: match (stateless, warm) {
                (Some(s), Some(w)) if w > 0 => Some(s as f64 <= 1.1 * w as f64),
                _ => None,
            },
        });
        let initial = row(name, Scenario::Initial);
        out.push(Target {
            dataset: name.to_string(),
            what: "initial mirror".to_string(),
            goal: "time B/A <= 1.0, peak memory B/A <= 1.5".to_string(),
            measured: match initial.and_then(|r| r.time_ratio.zip(r.memory_ratio)) {
                Some((t, m)) => format!("time {t:.2}, memory {m:.2}"),
                None => "no ratio: a side failed".to_string(),
            },
            met: initial
                .and_then(|r| r.time_ratio.zip(r.memory_ratio))
                .map(|(t, m)| t <= 1.0 && m <= 1.5),
        });
        if d.refs >= 10_000 {
            let noop = row(name, Scenario::Noop).and_then(|r| r.b.as_ref());
            out.push(Target {
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
