//! The benchmark behind the README's figures: `backlog-mirror sync` (B) against the reference
//! article's build phase as shell (A, `article.sh`), side by side in one run.
//!
//! Figures only compare when both sides meet the same servers, repositories and machine state, so
//! A and B take turns, round after round, against one OpenSSH sshd standing in for Backlog and one
//! CodeCommit stand-in (git http-backend behind TLS that checks every SigV4 signature and refuses
//! pushes of more than 4,000 ref updates, as CodeCommit does). Both are the test suite's own
//! servers, included from `tests/support`, so what is measured is what is tested. Traffic is
//! counted at the servers, not reported by the clients. Peak memory is the largest resident set of
//! any process of a run (wait4's ru_maxrss covers reaped descendants).
//!
//! Run through `bench/run.sh`, which installs what this needs; see the README's "Benchmark".

#[path = "../tests/support/mod.rs"]
mod support;

mod chart;
mod summary;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use clap::{Parser, ValueEnum};
use serde::{Deserialize, Serialize};

use support::codecommit::{CodeCommitServer, ContainerCredentials};
use support::{GenSpec, KeyPair, Sandbox, Sshd};

const REGION: &str = "ap-northeast-1";
const AKID: &str = "ASIABENCHBUILDROLE01";
const SECRET: &str = "bench/secret/EXAMPLEKEY";
const TOKEN: &str = "bench-session-token";
/// Bumped whenever the generator's output changes, so cached repositories are remade.
const GENERATOR_VERSION: u32 = 1;

#[derive(Parser, Debug)]
#[command(about = "backlog-mirror against the article's shell steps, on the same local servers")]
struct Args {
    /// Small repository only, 3 rounds: a smoke run of the whole bench in a minute or two.
    #[arg(long)]
    quick: bool,
    /// Repository sizes to run.
    #[arg(long, value_enum, value_delimiter = ',', default_values = ["small", "medium", "large"])]
    sizes: Vec<Size>,
    /// Ref counts to run each size with.
    #[arg(long, value_delimiter = ',', default_values = ["10", "10000"])]
    refs: Vec<usize>,
    /// Rounds of A then B (B then A on even rounds) per scenario.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Where results.json and results.png go (default: bench/, or target/bench/quick with --quick).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Keep the datasets of the results.json already in the output directory that this run does
    /// not repeat (to add the large repository in a run of its own).
    #[arg(long)]
    merge: bool,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Size {
    Small,
    Medium,
    Large,
}

impl Size {
    fn spec(self, refs: usize) -> GenSpec {
        // main, tag v1.0 and tag light are three of the refs; the rest are branches.
        let branches = refs.saturating_sub(3);
        let (commits, files, fresh_bytes) = match self {
            Size::Small => (1_000, 500, 2_000),
            Size::Medium => (20_000, 5_000, 6_000),
            Size::Large => (100_000, 30_000, 15_000),
        };
        GenSpec {
            commits,
            files,
            blob_bytes: 2_000,
            branches,
            packed: true,
            fresh_bytes,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tool {
    A,
    B,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scenario {
    Initial,
    Noop,
    Incremental,
    Stateless,
}

impl Scenario {
    pub const ALL: [Scenario; 4] = [
        Scenario::Initial,
        Scenario::Noop,
        Scenario::Incremental,
        Scenario::Stateless,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Scenario::Initial => "initial mirror",
            Scenario::Noop => "no-op",
            Scenario::Incremental => "incremental",
            Scenario::Stateless => "stateless incr.",
        }
    }
}

/// One timed run of A or B.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Sample {
    pub dataset: String,
    pub scenario: Scenario,
    pub tool: Tool,
    pub round: usize,
    pub seconds: f64,
    pub peak_rss_kb: u64,
    /// Bytes the source's sshd sent during the run.
    pub source_bytes: u64,
    /// Bytes of requests the target received, and of its answers.
    pub target_in_bytes: u64,
    pub target_out_bytes: u64,
    /// Exit code 0 and the target's refs equal to the source's afterwards.
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// B's own account of where its time went (its --json summary's `seconds`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phases: Option<serde_json::Value>,
}

fn main() {
    let mut args = Args::parse();
    if args.quick {
        args.sizes = vec![Size::Small];
        args.rounds = args.rounds.min(3);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = args.out.clone().unwrap_or_else(|| {
        if args.quick {
            root.join("target/bench/quick")
        } else {
            root.join("bench")
        }
    });
    std::fs::create_dir_all(&out).expect("create the output directory");
    let machine = summary::Machine::read();
    println!("{}", machine.describe());

    let mut datasets = Vec::new();
    let mut samples = Vec::new();
    for &size in &args.sizes {
        for &refs in &args.refs {
            let dataset = Dataset::prepare(root, size, refs);
            println!(
                "\n== {}: {} commits, {} files, {} refs, {:.0} MiB packed; {} rounds",
                dataset.name,
                dataset.spec.commits,
                dataset.spec.files,
                dataset.ref_count,
                dataset.pack_bytes as f64 / (1 << 20) as f64,
                args.rounds
            );
            samples.extend(run_dataset(&dataset, args.rounds));
            datasets.push(dataset.info());
        }
    }
    let json = out.join("results.json");
    if args.merge {
        merge_previous(&json, &mut datasets, &mut samples);
    }
    datasets.sort_by_key(|d| (d.size, d.refs));
    let report = summary::Report::new(machine, args.rounds, datasets, samples);
    print!("{}", report.table());
    std::fs::write(
        &json,
        serde_json::to_string_pretty(&report).expect("serialise"),
    )
    .expect("write results.json");
    let png = out.join("results.png");
    match chart::draw(&png, &report) {
        Ok(()) => println!("wrote {} and {}", json.display(), png.display()),
        Err(e) => println!("wrote {}; no chart: {e}", json.display()),
    }
}

/// Add the datasets (and their samples) of an earlier results.json that this run did not repeat.
fn merge_previous(
    json: &Path,
    datasets: &mut Vec<summary::DatasetInfo>,
    samples: &mut Vec<Sample>,
) {
    #[derive(Deserialize)]
    struct Previous {
        datasets: Vec<summary::DatasetInfo>,
        samples: Vec<Sample>,
    }
    let Ok(text) = std::fs::read_to_string(json) else {
        return;
    };
    let previous: Previous = match serde_json::from_str(&text) {
        Ok(previous) => previous,
        Err(e) => panic!("--merge: cannot read {}: {e}", json.display()),
    };
    for dataset in previous.datasets {
        if datasets.iter().all(|d| d.name != dataset.name) {
            println!("kept {} from {}", dataset.name, json.display());
            samples.extend(
                previous
                    .samples
                    .iter()
                    .filter(|s| s.dataset == dataset.name)
                    .cloned(),
            );
            datasets.push(dataset);
        }
    }
}

/// A generated repository, cached under `target/bench/` across runs.
struct Dataset {
    name: String,
    size: Size,
    spec: GenSpec,
    path: PathBuf,
    ref_count: usize,
    pack_bytes: u64,
}

impl Dataset {
    fn prepare(root: &Path, size: Size, refs: usize) -> Dataset {
        let spec = size.spec(refs);
        let name = format!(
            "{}-{refs}refs",
            match size {
                Size::Small => "small",
                Size::Medium => "medium",
                Size::Large => "large",
            }
        );
        let cache = root.join("target/bench");
        let path = cache.join(format!("{name}-v{GENERATOR_VERSION}.git"));
        if !path.join("packed-refs").exists() {
            println!(
                "generating {} (once; kept in target/bench/)",
                path.display()
            );
            let partial = cache.join(format!("{name}.partial"));
            let _ = std::fs::remove_dir_all(&partial);
            let _ = std::fs::remove_dir_all(&path);
            support::generate_repo(&partial, &spec);
            std::fs::rename(&partial, &path).expect("move the generated repository into place");
        }
        let ref_count = support::refs(&path).len();
        let pack_bytes = dir_bytes(&path.join("objects/pack"));
        Dataset {
            name,
            size,
            spec,
            path,
            ref_count,
            pack_bytes,
        }
    }

    fn info(&self) -> summary::DatasetInfo {
        summary::DatasetInfo {
            name: self.name.clone(),
            size: self.size,
            commits: self.spec.commits,
            files: self.spec.files,
            refs: self.ref_count,
            pack_bytes: self.pack_bytes,
        }
    }
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// The replica of the deployment one dataset runs against: the source behind sshd, a target
/// repository per side behind the CodeCommit stand-in, a cache directory and a home per side.
struct Rig {
    sb: Sandbox,
    name: String,
    source: PathBuf,
    key: KeyPair,
    sshd: Sshd,
    codecommit: CodeCommitServer,
    credentials: ContainerCredentials,
    mutations: usize,
}

impl Rig {
    fn new(dataset: &Dataset) -> Rig {
        let sb = Sandbox::new();
        let source = sb.join("srv/source.git");
        std::fs::create_dir_all(sb.join("srv")).expect("srv");
        // A hard-linked copy: the source changes during the run, the cached original must not.
        support::git(
            sb.path(),
            &[
                "clone",
                "--quiet",
                "--mirror",
                &support::path_str(&dataset.path),
                &support::path_str(&source),
            ],
        );
        let sshd = Sshd::start();
        let key = support::keygen(&sb.join("keys"), "deploy", "ed25519", "openssh", None);
        sshd.authorize(&key.public_line);
        let cc_root = sb.join("codecommit");
        std::fs::create_dir_all(&cc_root).expect("codecommit root");
        let codecommit =
            CodeCommitServer::start(&cc_root, REGION, &[(AKID, SECRET, Some(TOKEN))], 4000);
        let credentials = ContainerCredentials::start(AKID, SECRET, TOKEN);
        Rig {
            sb,
            name: dataset.name.clone(),
            source,
            key,
            sshd,
            codecommit,
            credentials,
            mutations: 0,
        }
    }

    fn side(tool: Tool) -> &'static str {
        match tool {
            Tool::A => "a",
            Tool::B => "b",
        }
    }

    fn target(&self, tool: Tool) -> PathBuf {
        self.sb
            .join("codecommit")
            .join(format!("bench-{}", Self::side(tool)))
    }

    fn cache(&self, tool: Tool) -> PathBuf {
        self.sb.join(&format!("cache-{}", Self::side(tool)))
    }

    fn reset_target(&self, tool: Tool) {
        let target = self.target(tool);
        let _ = std::fs::remove_dir_all(&target);
        support::init_bare(&target);
    }

    fn drop_cache(&self, tool: Tool) {
        let cache = self.cache(tool);
        let _ = std::fs::remove_dir_all(&cache);
        std::fs::create_dir_all(&cache).expect("cache dir");
    }

    /// A fresh home per run, as every CodeBuild build starts in a new container.
    fn fresh_home(&self, tool: Tool) -> PathBuf {
        let home = self.sb.join(&format!("home-{}", Self::side(tool)));
        let _ = std::fs::remove_dir_all(&home);
        std::fs::create_dir_all(&home).expect("home");
        home
    }

    fn common_env(&self, cmd: &mut Command, tool: Tool) {
        cmd.env("HOME", self.fresh_home(tool))
            .env("SSH_KEY", &self.key.private_text)
            .envs(self.codecommit.client_env())
            .env("AWS_CONTAINER_CREDENTIALS_FULL_URI", &self.credentials.url)
            .env("AWS_REGION", REGION)
            .env("AWS_EC2_METADATA_DISABLED", "true");
    }

    fn command(&self, tool: Tool) -> Command {
        let source_url = self.sshd.url(&self.source);
        let codecommit_url = format!("codecommit::{REGION}://bench-{}", Self::side(tool));
        match tool {
            Tool::A => {
                let mut cmd = Command::new("bash");
                support::isolate(&mut cmd);
                self.common_env(&mut cmd, tool);
                cmd.arg(concat!(env!("CARGO_MANIFEST_DIR"), "/bench/article.sh"))
                    .env("SOURCE_URL", &source_url)
                    .env("SOURCE_HOST", "127.0.0.1")
                    .env("SOURCE_PORT", self.sshd.port().to_string())
                    .env("CACHE_DIR", self.cache(tool))
                    .env("REPO_NAME", "app")
                    .env("CODECOMMIT_URL", &codecommit_url);
                cmd
            }
            Tool::B => {
                let mut cmd = support::bin();
                self.common_env(&mut cmd, tool);
                cmd.args(["sync", "-q", "--json", "--source", &source_url])
                    .args(["--ssh-key-env", "SSH_KEY"]);
                for fingerprint in self.sshd.host_key_fingerprints() {
                    cmd.args(["--host-key-fingerprint", &fingerprint]);
                }
                cmd.args(["--target", &codecommit_url])
                    .args(["--codecommit-endpoint", &self.codecommit.endpoint()])
                    .arg("--cache-dir")
                    .arg(self.cache(tool))
                    .args(["--mirror-name", "app"]);
                cmd
            }
        }
    }

    /// (request bytes, answer bytes) the target has logged so far.
    fn target_bytes(&self) -> (u64, u64) {
        self.codecommit.requests().iter().fold((0, 0), |(i, o), r| {
            (
                i + r["request_bytes"].as_u64().unwrap_or(0),
                o + r["response_bytes"].as_u64().unwrap_or(0),
            )
        })
    }

    fn run(&self, scenario: Scenario, tool: Tool, round: usize) -> Sample {
        let mut cmd = self.command(tool);
        let source_before = self.sshd.bytes_sent();
        let (in_before, out_before) = self.target_bytes();
        let measured = measure(&mut cmd);
        let source_bytes = (self.sshd.bytes_sent() - source_before) as u64;
        let (in_after, out_after) = self.target_bytes();
        let exact = support::refs(&self.source) == support::refs(&self.target(tool));
        let error = if measured.code != 0 {
            Some(last_line(&measured.stderr))
        } else if !exact {
            Some("the target is not an exact mirror afterwards".to_string())
        } else {
            None
        };
        Sample {
            dataset: self.name.clone(),
            scenario,
            tool,
            round,
            seconds: measured.seconds,
            peak_rss_kb: measured.peak_rss_kb,
            source_bytes,
            target_in_bytes: in_after - in_before,
            target_out_bytes: out_after - out_before,
            ok: error.is_none(),
            error,
            phases: serde_json::from_str::<serde_json::Value>(&measured.stdout)
                .ok()
                .map(|summary| summary["seconds"].clone()),
        }
    }

    /// The source moves as a team's push does: 10 commits on main, a new branch, a deleted one.
    fn change_source(&mut self) {
        let m = self.mutations;
        self.mutations += 1;
        let main = support::git(&self.source, &["rev-parse", "refs/heads/main"]);
        let mut stream = String::new();
        for i in 0..10 {
            let body = format!("round {m}, commit {i}\n");
            let msg = format!("bench change {m}.{i}\n");
            stream.push_str(&format!(
                "commit refs/heads/main\ncommitter Bench <bench@example.com> {} +0000\ndata {}\n{msg}",
                1_700_000_000 + m * 10 + i,
                msg.len()
            ));
            if i == 0 {
                stream.push_str(&format!("from {main}\n"));
            }
            stream.push_str(&format!(
                "M 100644 inline bench/change-{i}.txt\ndata {}\n{body}\n",
                body.len()
            ));
        }
        support::fast_import(&self.source, &stream);
        support::update_ref(
            &self.source,
            &format!("refs/heads/bench-{m}"),
            "refs/heads/main",
        );
        let gone = if m == 0 {
            "refs/heads/branch1".to_string()
        } else {
            format!("refs/heads/bench-{}", m - 1)
        };
        support::delete_ref(&self.source, &gone);
    }

    /// Give a side's target an exact copy of the source without the stand-in's 4,000-update
    /// limit, so that after A's initial mirror fails on 10,000 refs its later scenarios still
    /// measure a steady state.
    fn fill_target(&self, tool: Tool) {
        support::git(
            &self.source,
            &[
                "push",
                "--quiet",
                "--mirror",
                &support::path_str(&self.target(tool)),
            ],
        );
    }
}

fn last_line(text: &str) -> String {
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("no message")
        .chars()
        .take(200)
        .collect()
}

fn run_dataset(dataset: &Dataset, rounds: usize) -> Vec<Sample> {
    let mut rig = Rig::new(dataset);
    let mut samples = Vec::new();
    let mut record = |rig: &Rig, scenario: Scenario, order: [Tool; 2], round: usize| {
        let mut ok = [true; 2];
        for tool in order {
            let sample = rig.run(scenario, tool, round);
            println!(
                "  round {round} {:<16} {:?}: {:>8.3} s {:>7} MiB  src {:>10} B  tgt {:>10} B{}{}",
                scenario.label(),
                tool,
                sample.seconds,
                sample.peak_rss_kb / 1024,
                sample.source_bytes,
                sample.target_in_bytes,
                sample
                    .error
                    .as_ref()
                    .map(|e| format!("  FAILED: {e}"))
                    .unwrap_or_default(),
                sample
                    .phases
                    .as_ref()
                    .map(|p| format!("  {p}"))
                    .unwrap_or_default()
            );
            ok[tool as usize] = sample.ok;
            samples.push(sample);
        }
        ok
    };
    for round in 1..=rounds {
        let order = if round % 2 == 1 {
            [Tool::A, Tool::B]
        } else {
            [Tool::B, Tool::A]
        };
        for tool in order {
            rig.reset_target(tool);
            rig.drop_cache(tool);
        }
        let ok = record(&rig, Scenario::Initial, order, round);
        for tool in order {
            if !ok[tool as usize] {
                rig.fill_target(tool);
            }
        }
        record(&rig, Scenario::Noop, order, round);
        rig.change_source();
        record(&rig, Scenario::Incremental, order, round);
        rig.change_source();
        for tool in order {
            rig.drop_cache(tool);
        }
        record(&rig, Scenario::Stateless, order, round);
    }
    samples
}

struct Measured {
    seconds: f64,
    peak_rss_kb: u64,
    code: i32,
    stdout: String,
    stderr: String,
}

/// Run `cmd` to the end: wall time, and the peak resident set of it and every descendant it
/// waited for, which for A covers git, ssh and git-remote-codecommit.
///
/// The peak comes from GNU time, not from our own wait4: a child inherits the resident-set high
/// water mark of the process it was spawned from (Linux keeps it across exec), so anything we
/// spawn directly would report at least our own size, and the bench grows to hundreds of MiB
/// while it generates a large repository. time's child starts from time's few hundred KiB.
fn measure(cmd: &mut Command) -> Measured {
    let usage = tempfile::NamedTempFile::new().expect("a file for GNU time");
    let mut timed = Command::new(GNU_TIME);
    timed
        .args(["--quiet", "-f", "%M", "-o"])
        .arg(usage.path())
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (key, value) in cmd.get_envs() {
        match value {
            Some(value) => timed.env(key, value),
            None => timed.env_remove(key),
        };
    }
    if let Some(dir) = cmd.get_current_dir() {
        timed.current_dir(dir);
    }
    let start = Instant::now();
    let out = timed
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?} under {GNU_TIME}: {e}"));
    let seconds = start.elapsed().as_secs_f64();
    let peak_rss_kb = std::fs::read_to_string(usage.path())
        .ok()
        .and_then(|text| text.trim().lines().last()?.trim().parse().ok())
        .unwrap_or(0);
    Measured {
        seconds,
        peak_rss_kb,
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

const GNU_TIME: &str = "/usr/bin/time";
