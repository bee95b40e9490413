//! The benchmark behind docs/benchmark.md's figures: `backlog-mirror sync` (B) against the reference
//! article's build phase as shell (A, `article.sh`) and against plain git (C, `gitcli.sh`: `git
//! clone --mirror` or `git fetch --prune`, then `git push --mirror`), side by side in one run.
//!
//! Figures only compare when every side meets the same servers, repositories and machine state,
//! so the sides take turns, round after round, against one OpenSSH sshd standing in for Backlog and
//! CodeCommit stand-ins (git http-backend behind TLS that checks every SigV4 signature). A and B
//! push to one that refuses pushes of more than 4,000 ref updates, as CodeCommit does; C pushes to
//! one without that limit, because it is the floor B is held to, not a deployment that works.
//! They are the test suite's own servers, included from `tests/support`, so what is measured is
//! what is tested. Traffic is counted at the servers, not reported by the clients. Peak memory is
//! the largest resident set of any process of a run (GNU time; see `measure`).
//!
//! Two scenarios have no server at all: the first fetch from a local path and from a `file://`
//! URL (B's `sync --dry-run` into an empty cache, against `git clone --mirror --no-local`), what a
//! person trying the tool against a repository on disk meets first.
//!
//! Run through `bench/run.sh`, which installs what this needs; see docs/benchmark.md.

// The benchmark uses part of the suite's support; the rest is dead code here.
#[allow(dead_code, unused_imports)]
#[path = "../tests/support/mod.rs"]
mod support;

mod chart;
mod samples;
mod summary;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use clap::Parser;
use serde::Deserialize;

use samples::{Sample, Scenario, Size, Tool};
use support::codecommit::{CodeCommitServer, ContainerCredentials};
use support::{GenSpec, KeyPair, Sandbox, ShapedSpec, Sshd};

const REGION: &str = "ap-northeast-1";
const AKID: &str = "ASIABENCHBUILDROLE01";
const SECRET: &str = "bench/secret/EXAMPLEKEY";
const TOKEN: &str = "bench-session-token";
/// Bumped whenever the generator's output changes, so cached repositories are remade.
const GENERATOR_VERSION: u32 = 2;

#[derive(Parser, Debug)]
#[command(
    about = "backlog-mirror against the article's shell steps and plain git, on the same local servers"
)]
struct Args {
    /// Small repository only, 3 rounds: a smoke run of the whole bench in a minute or two.
    #[arg(long)]
    quick: bool,
    /// Repositories to run: small, medium and large are straight histories (each with every
    /// `--refs` count); pulls is the hosted-project shape (about 7,000 refs, most of them
    /// pull-request heads on side commits).
    #[arg(long, value_enum, value_delimiter = ',', default_values = ["small", "medium", "pulls", "large"])]
    sizes: Vec<Size>,
    /// Ref counts to run each straight history with.
    #[arg(long, value_delimiter = ',', default_values = ["10", "10000"])]
    refs: Vec<usize>,
    /// Scenarios to record. A later scenario still runs the steps it builds on (the initial
    /// mirror before a no-op), unrecorded.
    #[arg(long, value_enum, value_delimiter = ',', default_values = ["initial", "noop", "incremental", "stateless", "local-path", "file-url"])]
    scenarios: Vec<Scenario>,
    /// Sides to run: a (the article's shell steps), b (backlog-mirror), c (plain git).
    #[arg(long, value_enum, value_delimiter = ',', default_values = ["a", "b", "c"])]
    sides: Vec<Tool>,
    /// Rounds per scenario; the sides' order rotates from round to round.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Where results.json and results.png go (default: bench/, or target/bench/quick with --quick).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Keep the datasets of the results.json already in the output directory that this run does
    /// not repeat (to add the large repository in a run of its own).
    #[arg(long)]
    merge: bool,
    /// Generate the datasets that are not cached yet, print what they hold, and stop.
    #[arg(long)]
    prepare_only: bool,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

/// What a dataset is generated from.
#[derive(Debug, Clone)]
enum Shape {
    Line(GenSpec),
    Pulls(ShapedSpec),
}

impl Size {
    fn shape(self, refs: usize) -> Shape {
        if self == Size::Pulls {
            // A real history of this shape: about 25k commits, 162k objects, 85 MiB
            // packed, 7,007 refs of which 6,736 pull-request heads. Here: main plus 149
            // branches, 120 tags and 6,730 pull requests make 7,000 refs.
            return Shape::Pulls(ShapedSpec {
                commits: 25_000,
                files: 3_000,
                blob_bytes: 2_000,
                fresh_bytes: 3_750,
                pull_requests: 6_730,
                branches: 149,
                tags: 120,
            });
        }
        // main, tag v1.0 and tag light are three of the refs; the rest are branches.
        let branches = refs.saturating_sub(3);
        let (commits, files, fresh_bytes) = match self {
            Size::Small => (1_000, 500, 2_000),
            Size::Medium => (20_000, 5_000, 6_000),
            _ => (100_000, 30_000, 15_000),
        };
        Shape::Line(GenSpec {
            commits,
            files,
            blob_bytes: 2_000,
            branches,
            packed: true,
            fresh_bytes,
        })
    }

    /// The ref counts this size runs with: the shaped repository has its own.
    fn ref_counts(self, asked: &[usize]) -> Vec<usize> {
        if self == Size::Pulls {
            vec![7_000]
        } else {
            asked.to_vec()
        }
    }
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
    let machine = summary::Machine::read();
    println!("{}", machine.describe());

    let mut datasets = Vec::new();
    let mut samples = Vec::new();
    for &size in &args.sizes {
        for refs in size.ref_counts(&args.refs) {
            let dataset = Dataset::prepare(root, size, refs);
            println!(
                "\n== {}: {} commits, {} files, {} refs, {} objects, {:.0} MiB packed ({})",
                dataset.name,
                dataset.commits,
                dataset.files,
                dataset.ref_count,
                dataset.objects,
                dataset.pack_bytes as f64 / (1 << 20) as f64,
                dataset.path.display()
            );
            if args.prepare_only {
                continue;
            }
            samples.extend(run_dataset(&dataset, &args));
            datasets.push(dataset.info());
        }
    }
    if args.prepare_only {
        return;
    }
    std::fs::create_dir_all(&out).expect("create the output directory");
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
    commits: usize,
    files: usize,
    path: PathBuf,
    ref_count: usize,
    objects: u64,
    pack_bytes: u64,
}

impl Dataset {
    fn prepare(root: &Path, size: Size, refs: usize) -> Dataset {
        let shape = size.shape(refs);
        let name = format!("{}-{refs}refs", size.name());
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
            match &shape {
                Shape::Line(spec) => {
                    support::generate_repo(&partial, spec);
                }
                Shape::Pulls(spec) => {
                    support::generate_shaped_repo(&partial, spec);
                }
            }
            std::fs::rename(&partial, &path).expect("move the generated repository into place");
        }
        let (commits, files) = match &shape {
            Shape::Line(spec) => (spec.commits, spec.files),
            Shape::Pulls(spec) => (spec.commits, spec.files),
        };
        let ref_count = support::refs(&path).len();
        let objects = support::git(&path, &["count-objects", "-v"])
            .lines()
            .find_map(|l| l.strip_prefix("in-pack: "))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0);
        let pack_bytes = dir_bytes(&path.join("objects/pack"));
        Dataset {
            name,
            size,
            commits,
            files,
            path,
            ref_count,
            objects,
            pack_bytes,
        }
    }

    fn info(&self) -> summary::DatasetInfo {
        summary::DatasetInfo {
            name: self.name.clone(),
            size: self.size,
            commits: self.commits,
            files: self.files,
            refs: self.ref_count,
            objects: Some(self.objects),
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
/// repository per side behind a CodeCommit stand-in (C's without the ref-update limit), a cache
/// directory and a home per side.
struct Rig {
    sb: Sandbox,
    name: String,
    source: PathBuf,
    key: KeyPair,
    known_hosts: PathBuf,
    sshd: Sshd,
    codecommit: CodeCommitServer,
    /// Plain git's target: the same stand-in with no limit on ref updates per push.
    codecommit_c: CodeCommitServer,
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
        let known_hosts = sb.join("keys/known_hosts");
        sshd.write_known_hosts(&known_hosts, false);
        let credentials = ContainerCredentials::start(AKID, SECRET, TOKEN);
        let start = |dir: &str, limit: usize| {
            let root = sb.join(dir);
            std::fs::create_dir_all(&root).expect("codecommit root");
            CodeCommitServer::start(&root, REGION, &[(AKID, SECRET, Some(TOKEN))], limit)
        };
        let codecommit = start("codecommit", 4000);
        let codecommit_c = start("codecommit-c", 0);
        Rig {
            name: dataset.name.clone(),
            source,
            key,
            known_hosts,
            sshd,
            codecommit,
            codecommit_c,
            credentials,
            mutations: 0,
            sb,
        }
    }

    fn server(&self, tool: Tool) -> &CodeCommitServer {
        match tool {
            Tool::C => &self.codecommit_c,
            Tool::A | Tool::B => &self.codecommit,
        }
    }

    fn target(&self, tool: Tool) -> PathBuf {
        let root = match tool {
            Tool::C => "codecommit-c",
            Tool::A | Tool::B => "codecommit",
        };
        self.sb.join(root).join(format!("bench-{}", tool.side()))
    }

    fn cache(&self, tool: Tool) -> PathBuf {
        self.sb.join(&format!("cache-{}", tool.side()))
    }

    /// Where a local-source scenario's side keeps its cache (B) or clone (C).
    fn local_cache(&self, tool: Tool) -> PathBuf {
        self.sb.join(&format!("local-{}", tool.side()))
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
        let home = self.sb.join(&format!("home-{}", tool.side()));
        let _ = std::fs::remove_dir_all(&home);
        std::fs::create_dir_all(&home).expect("home");
        home
    }

    fn common_env(&self, cmd: &mut Command, tool: Tool) {
        cmd.env("HOME", self.fresh_home(tool))
            .env("SSH_KEY", &self.key.private_text)
            .envs(self.server(tool).client_env())
            .env("AWS_CONTAINER_CREDENTIALS_FULL_URI", &self.credentials.url)
            .env("AWS_REGION", REGION)
            .env("AWS_EC2_METADATA_DISABLED", "true");
    }

    fn command(&self, tool: Tool) -> Command {
        let source_url = self.sshd.url(&self.source);
        let codecommit_url = format!("codecommit::{REGION}://bench-{}", tool.side());
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
            Tool::C => {
                let mut cmd = Command::new("bash");
                support::isolate(&mut cmd);
                self.common_env(&mut cmd, tool);
                let ssh = format!(
                    "ssh -F /dev/null -o BatchMode=yes -o IdentitiesOnly=yes -i {} -o UserKnownHostsFile={}",
                    self.key.private_path.display(),
                    self.known_hosts.display()
                );
                cmd.arg(concat!(env!("CARGO_MANIFEST_DIR"), "/bench/gitcli.sh"))
                    .env("GIT_SSH_COMMAND", ssh)
                    .env("SOURCE_URL", &source_url)
                    .env("CACHE_DIR", self.cache(tool))
                    .env("REPO_NAME", "app")
                    .env(
                        "TARGET_URL",
                        format!(
                            "https://{}/v1/repos/bench-{}",
                            self.codecommit_c.endpoint(),
                            tool.side()
                        ),
                    )
                    .env("CREDENTIAL_HELPER", env!("CARGO_BIN_EXE_backlog-mirror"));
                cmd
            }
        }
    }

    /// (request bytes, answer bytes) a side's target has logged so far.
    fn target_bytes(&self, tool: Tool) -> (u64, u64) {
        self.server(tool)
            .requests()
            .iter()
            .fold((0, 0), |(i, o), r| {
                (
                    i + r["request_bytes"].as_u64().unwrap_or(0),
                    o + r["response_bytes"].as_u64().unwrap_or(0),
                )
            })
    }

    fn run(&self, scenario: Scenario, tool: Tool, round: usize) -> Sample {
        if scenario.is_local() {
            return self.run_local(scenario, tool, round);
        }
        let mut cmd = self.command(tool);
        let source_before = self.sshd.bytes_sent();
        let connections_before = self.sshd.connections();
        let requests_before = self.server(tool).requests().len();
        let (in_before, out_before) = self.target_bytes(tool);
        let measured = measure(&mut cmd);
        let source_bytes = (self.sshd.bytes_sent() - source_before) as u64;
        let (in_after, out_after) = self.target_bytes(tool);
        let exact = support::refs(&self.source) == support::refs(&self.target(tool));
        let mut sample = measured.sample(self, scenario, tool, round, exact);
        sample.source_bytes = source_bytes;
        sample.target_in_bytes = in_after - in_before;
        sample.target_out_bytes = out_after - out_before;
        sample.source_connections = Some((self.sshd.connections() - connections_before) as u64);
        sample.target_requests =
            Some((self.server(tool).requests().len() - requests_before) as u64);
        sample
    }

    /// A first fetch from the source on disk, by path or `file://` URL: B syncs with
    /// `--dry-run` into an empty cache against an empty target (so all it does is list both and
    /// fetch), C runs `git clone --mirror --no-local` (git's upload-pack, as `file://` gets).
    fn run_local(&self, scenario: Scenario, tool: Tool, round: usize) -> Sample {
        let source = match scenario {
            Scenario::FileUrl => format!("file://{}", self.source.display()),
            _ => support::path_str(&self.source),
        };
        let dir = self.local_cache(tool);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("local cache dir");
        let (mut cmd, cache) = match tool {
            Tool::B => {
                let empty = self.sb.join("local-empty-target.git");
                if !empty.exists() {
                    support::init_bare(&empty);
                }
                let mut cmd = support::bin();
                cmd.env("HOME", self.fresh_home(tool))
                    .args(["sync", "-q", "--json", "--dry-run", "--source", &source])
                    .arg("--target")
                    .arg(&empty)
                    .arg("--cache-dir")
                    .arg(&dir)
                    .args(["--mirror-name", "app"]);
                (cmd, dir.join("app.git"))
            }
            Tool::A | Tool::C => {
                let mut cmd = Command::new("git");
                support::isolate(&mut cmd);
                cmd.env("HOME", self.fresh_home(tool))
                    .args(["clone", "--quiet", "--mirror", "--no-local", &source])
                    .arg(dir.join("app.git"));
                (cmd, dir.join("app.git"))
            }
        };
        let measured = measure(&mut cmd);
        let exact = measured.code == 0 && support::refs(&self.source) == support::refs(&cache);
        let sample = measured.sample(self, scenario, tool, round, exact);
        let _ = std::fs::remove_dir_all(&dir);
        sample
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

/// The order the sides take in `round`: rotated each round, so no side always runs first (on a
/// cold page cache) or last.
fn order(sides: &[Tool], round: usize) -> Vec<Tool> {
    let mut order = sides.to_vec();
    if !order.is_empty() {
        let shift = (round - 1) % order.len();
        order.rotate_left(shift);
    }
    order
}

fn run_dataset(dataset: &Dataset, args: &Args) -> Vec<Sample> {
    let mut rig = Rig::new(dataset);
    let mut samples = Vec::new();
    let wants = |s: Scenario| args.scenarios.contains(&s);
    let mut record = |rig: &Rig, scenario: Scenario, order: &[Tool], round: usize, keep: bool| {
        let mut failed = Vec::new();
        for &tool in order {
            let sample = rig.run(scenario, tool, round);
            println!(
                "  round {round} {:<16} {:?}: {:>8.3} s {:>7} MiB  src {:>10} B {} conn  tgt {:>10} B {} req{}{}{}",
                scenario.label(),
                tool,
                sample.seconds,
                sample.peak_rss_kb / 1024,
                sample.source_bytes,
                sample.source_connections.unwrap_or(0),
                sample.target_in_bytes,
                sample.target_requests.unwrap_or(0),
                if keep { "" } else { "  (setup, not recorded)" },
                sample
                    .error
                    .as_ref()
                    .map(|e| format!("  FAILED: {e}"))
                    .unwrap_or_default(),
                [&sample.phases, &sample.transfer]
                    .iter()
                    .filter_map(|v| v.as_ref().map(|v| format!("  {v}")))
                    .collect::<String>()
            );
            if !sample.ok {
                failed.push(tool);
            }
            if keep {
                samples.push(sample);
            }
        }
        failed
    };
    let chain = [
        Scenario::Initial,
        Scenario::Noop,
        Scenario::Incremental,
        Scenario::Stateless,
    ]
    .into_iter()
    .any(wants);
    for round in 1..=args.rounds {
        let order = order(&args.sides, round);
        let local: Vec<Tool> = order.iter().copied().filter(|&t| t != Tool::A).collect();
        for scenario in [Scenario::LocalPath, Scenario::FileUrl] {
            if wants(scenario) {
                record(&rig, scenario, &local, round, true);
            }
        }
        if !chain {
            continue;
        }
        for &tool in &order {
            rig.reset_target(tool);
            rig.drop_cache(tool);
        }
        let failed = record(
            &rig,
            Scenario::Initial,
            &order,
            round,
            wants(Scenario::Initial),
        );
        for tool in failed {
            rig.fill_target(tool);
        }
        if wants(Scenario::Noop) {
            record(&rig, Scenario::Noop, &order, round, true);
        }
        if wants(Scenario::Incremental) {
            rig.change_source();
            record(&rig, Scenario::Incremental, &order, round, true);
        }
        if wants(Scenario::Stateless) {
            rig.change_source();
            for &tool in &order {
                rig.drop_cache(tool);
            }
            record(&rig, Scenario::Stateless, &order, round, true);
        }
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

impl Measured {
    /// The sample this run makes, traffic left at zero for the caller to count. `exact`: the
    /// refs that should mirror the source's do.
    fn sample(
        &self,
        rig: &Rig,
        scenario: Scenario,
        tool: Tool,
        round: usize,
        exact: bool,
    ) -> Sample {
        let error = if self.code != 0 {
            Some(last_line(&self.stderr))
        } else if !exact {
            Some("the result is not an exact mirror of the source".to_string())
        } else {
            None
        };
        let summary = serde_json::from_str::<serde_json::Value>(&self.stdout).ok();
        Sample {
            dataset: rig.name.clone(),
            scenario,
            tool,
            round,
            seconds: self.seconds,
            peak_rss_kb: self.peak_rss_kb,
            source_bytes: 0,
            target_in_bytes: 0,
            target_out_bytes: 0,
            source_connections: Some(0),
            target_requests: Some(0),
            ok: error.is_none(),
            error,
            phases: summary.as_ref().map(|s| s["seconds"].clone()),
            transfer: summary.as_ref().map(|s| s["transfer"].clone()),
        }
    }
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
