//! Differential, model-based tests: git is the oracle. A seeded model (`support::model`) makes a
//! source's history and changes it round by round the ways a hosted repository changes; after
//! every round the real binary syncs, and the target must then hold exactly the source's refs
//! (`git for-each-ref`), pass `git fsck --strict`, follow the source's `HEAD` where it can, and the
//! JSON summary must name exactly the refs that changed on the target, each with its old and new
//! id. Every transport (local path, `file://`, `git://`, smart HTTP, SSH, the CodeCommit stand-in)
//! runs as source and as target, through every path a run can take (warm cache, stateless relay,
//! seeded cache, no seed) and every push engine, with the summary checked to say the run took the
//! path the combination is for.
//!
//! A failure starts with its seed, round, transports and path, and the command that replays it.
//! `BACKLOG_MIRROR_DIFF_SEED=N` replays one seed, `BACKLOG_MIRROR_DIFF_SEEDS=N` runs N seeds per
//! combination (from `BACKLOG_MIRROR_DIFF_SEED_BASE`, default 1), `BACKLOG_MIRROR_DIFF_ROUNDS=R`
//! sets the rounds, `BACKLOG_MIRROR_DIFF_ONLY=NAME` keeps one combination, and
//! `BACKLOG_MIRROR_DIFF_STATS=FILE` appends one line per history run (what `scripts/soak.sh`
//! counts). See docs/testing.md.

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

use crate::support::codecommit::CodeCommitServer;
use crate::support::model::{Edit, Model, ModelOptions};
use crate::support::*;

const REGION: &str = "us-east-1";
const AKID: &str = "AKIAEXAMPLEDIFFTEST1";
const SECRET: &str = "canary-7f3a9c1e5b/differential/EXAMPLEKEY";
/// A sync that has not ended by then hung: it is killed and reported.
const SYNC_LIMIT: Duration = Duration::from_secs(120);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Transport {
    Local,
    File,
    Git,
    Http,
    Ssh,
    CodeCommit,
}

use Transport::*;

impl Transport {
    fn name(self) -> &'static str {
        match self {
            Local => "local",
            File => "file",
            Git => "git",
            Http => "http",
            Ssh => "ssh",
            CodeCommit => "codecommit",
        }
    }

    /// Whether a sync moves this target's default branch itself (a local `HEAD`, CodeCommit's
    /// `UpdateDefaultBranch`); Git servers' cannot be moved through Git.
    fn default_managed(self) -> bool {
        matches!(self, Local | File | CodeCommit)
    }
}

/// The path a run takes through the product.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Way {
    /// One cache kept across rounds: the warm fetch.
    Warm,
    /// A fresh, empty cache every round and a non-empty target: the stateless relay.
    Relay,
    /// A fresh, empty cache every round with the relay declined: the cache seeded from the target.
    Seed,
    /// A fresh, empty cache every round with `--no-seed`: everything fetched from the source.
    NoSeed,
}

impl Way {
    fn name(self) -> &'static str {
        match self {
            Way::Warm => "warm",
            Way::Relay => "relay",
            Way::Seed => "seed",
            Way::NoSeed => "no-seed",
        }
    }
}

/// One combination of the matrix.
#[derive(Clone, Debug)]
struct Combo {
    source: Transport,
    target: Transport,
    way: Way,
    engine: &'static str,
    /// Escape hatches: `BACKLOG_MIRROR_LIBGIT2_FETCH`, `BACKLOG_MIRROR_LIBGIT2_SSH`.
    libgit2_fetch: bool,
    libgit2_ssh: bool,
    /// More `sync` arguments (`--batch-size 2`: many batches a run).
    args: &'static [&'static str],
    /// Seeds a default run gives it.
    seeds: usize,
    /// Seeds every default run gives it besides: histories that found a bug once.
    regressions: &'static [u64],
    rounds: usize,
    /// The source's size, or `None` to draw it from each seed.
    options: Option<ModelOptions>,
    /// The edits of each round, when the rounds are written out rather than drawn.
    script: Option<Vec<Vec<Edit>>>,
}

fn combo(source: Transport, target: Transport, way: Way, engine: &'static str) -> Combo {
    Combo {
        source,
        target,
        way,
        engine,
        libgit2_fetch: false,
        libgit2_ssh: false,
        args: &[],
        seeds: 2,
        regressions: &[],
        rounds: 4,
        options: None,
        script: None,
    }
}

impl Combo {
    fn libgit2_fetch(mut self) -> Combo {
        self.libgit2_fetch = true;
        self
    }

    fn args(mut self, args: &'static [&'static str]) -> Combo {
        self.args = args;
        self
    }

    fn libgit2_ssh(mut self) -> Combo {
        self.libgit2_ssh = true;
        self
    }

    fn seeds(mut self, seeds: usize) -> Combo {
        self.seeds = seeds;
        self
    }

    fn regressions(mut self, seeds: &'static [u64]) -> Combo {
        self.regressions = seeds;
        self
    }

    fn rounds(mut self, rounds: usize) -> Combo {
        self.rounds = rounds;
        self
    }

    /// Rounds of exactly these edits (the seed still picks what they act on).
    fn script(mut self, rounds: &[&[Edit]]) -> Combo {
        self.rounds = rounds.len();
        self.script = Some(rounds.iter().map(|r| r.to_vec()).collect());
        self
    }

    fn options(mut self, options: ModelOptions) -> Combo {
        self.options = Some(options);
        self
    }

    fn name(&self) -> String {
        let mut name = format!(
            "{}-{}-{}-{}",
            self.source.name(),
            self.target.name(),
            self.way.name(),
            self.engine
        );
        if self.libgit2_fetch {
            name.push_str("-libgit2fetch");
        }
        if self.libgit2_ssh {
            name.push_str("-libgit2ssh");
        }
        for arg in self.args {
            name.push_str(&format!("-{}", arg.trim_start_matches('-')));
        }
        name
    }

    /// What the header of a failure says of the combination.
    fn describe(&self) -> String {
        let mut text = format!(
            "{} -> {}, path {}, --push-engine {}",
            self.source.name(),
            self.target.name(),
            self.way.name(),
            self.engine
        );
        if self.libgit2_fetch {
            text.push_str(", BACKLOG_MIRROR_LIBGIT2_FETCH=1");
        }
        if self.libgit2_ssh {
            text.push_str(", BACKLOG_MIRROR_LIBGIT2_SSH=1");
        }
        if !self.args.is_empty() {
            text.push_str(&format!(", {}", self.args.join(" ")));
        }
        text
    }

    fn uses(&self, transport: Transport) -> bool {
        self.source == transport || self.target == transport
    }

    /// The client that fetches into a warm cache.
    fn fetch_engine(&self) -> &'static str {
        if self.libgit2_fetch || (self.source == Ssh && self.libgit2_ssh) {
            "libgit2"
        } else {
            "wire"
        }
    }

    /// The engine the summary names for a push through the cache.
    fn push_engines(&self) -> &'static [&'static str] {
        match (self.target, self.engine) {
            (Local | File, _) => &["git"],
            (Ssh, _) => &["libgit2"],
            (_, "git") => &["git", "git+libgit2"],
            (_, "libgit2") => &["libgit2"],
            _ => &["wire"],
        }
    }
}

/// What the environment asks of a run.
struct Settings {
    seed: Option<u64>,
    seeds: Option<usize>,
    base: u64,
    rounds: Option<usize>,
    only: Option<String>,
    stats: Option<PathBuf>,
}

impl Settings {
    fn from_env() -> Settings {
        let number = |key: &str| {
            std::env::var(key).ok().map(|v| {
                v.trim()
                    .parse::<u64>()
                    .unwrap_or_else(|_| panic!("{key}={v} is not a number"))
            })
        };
        Settings {
            seed: number("BACKLOG_MIRROR_DIFF_SEED"),
            seeds: number("BACKLOG_MIRROR_DIFF_SEEDS").map(|n| n as usize),
            base: number("BACKLOG_MIRROR_DIFF_SEED_BASE").unwrap_or(1),
            rounds: number("BACKLOG_MIRROR_DIFF_ROUNDS").map(|n| n as usize),
            only: std::env::var("BACKLOG_MIRROR_DIFF_ONLY")
                .ok()
                .filter(|v| !v.is_empty()),
            stats: std::env::var_os("BACKLOG_MIRROR_DIFF_STATS").map(PathBuf::from),
        }
    }

    /// The seeds `combo` runs: the one asked for, N from the base, or its own default few
    /// (different for every combination, so the matrix covers more histories).
    fn seeds(&self, combo: &Combo) -> Vec<u64> {
        if let Some(seed) = self.seed {
            return vec![seed];
        }
        if let Some(n) = self.seeds {
            return (self.base..self.base + n as u64).collect();
        }
        let start = fnv(&combo.name()) % 1_000_000 * 100;
        (start..start + combo.seeds as u64)
            .chain(combo.regressions.iter().copied())
            .collect()
    }

    fn rounds(&self, combo: &Combo) -> usize {
        self.rounds.unwrap_or(combo.rounds)
    }

    fn selects(&self, combo: &Combo) -> bool {
        self.only.as_deref().is_none_or(|only| only == combo.name())
    }
}

fn fnv(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The servers a group of combinations shares, started when first needed, and the keys and
/// credentials that reach them.
struct World {
    sb: Sandbox,
    daemon: OnceLock<GitDaemon>,
    http: OnceLock<HttpGit>,
    sshd: OnceLock<(Sshd, PathBuf, PathBuf)>,
    codecommit: OnceLock<CodeCommitServer>,
}

impl World {
    fn new() -> World {
        World {
            sb: Sandbox::new(),
            daemon: OnceLock::new(),
            http: OnceLock::new(),
            sshd: OnceLock::new(),
            codecommit: OnceLock::new(),
        }
    }

    /// Where repositories served by git daemon, HTTP and sshd live.
    fn srv(&self) -> PathBuf {
        self.sb.join("srv")
    }

    fn codecommit_root(&self) -> PathBuf {
        self.sb.join("codecommit")
    }

    fn sshd(&self) -> &(Sshd, PathBuf, PathBuf) {
        self.sshd.get_or_init(|| {
            let sshd = Sshd::start();
            let key = keygen(&self.sb.join("keys"), "client", "ed25519", "openssh", None);
            sshd.authorize(&key.public_line);
            let known = self.sb.join("known_hosts");
            sshd.write_known_hosts(&known, false);
            (sshd, key.private_path, known)
        })
    }

    fn codecommit(&self) -> &CodeCommitServer {
        self.codecommit.get_or_init(|| {
            std::fs::create_dir_all(self.codecommit_root()).expect("codecommit root");
            CodeCommitServer::start(&self.codecommit_root(), REGION, &[(AKID, SECRET, None)], 0)
        })
    }

    /// Where a repository of `name` lives when reached over `transport`.
    fn repo_path(&self, transport: Transport, name: &str) -> PathBuf {
        match transport {
            CodeCommit => self.codecommit_root().join(name),
            _ => self.srv().join(format!("{name}.git")),
        }
    }

    /// The URL `backlog-mirror` is given for the repository at `path`.
    fn url(&self, transport: Transport, path: &Path) -> String {
        let relative = || {
            path.strip_prefix(self.srv())
                .expect("served from srv")
                .display()
                .to_string()
        };
        match transport {
            Local => path_str(path),
            File => format!("file://{}", path_str(path)),
            Git => self
                .daemon
                .get_or_init(|| GitDaemon::start(&self.srv()))
                .url(&relative()),
            Http => self
                .http
                .get_or_init(|| HttpGit::start(&self.srv()))
                .url(&relative()),
            Ssh => self.sshd().0.url(path),
            CodeCommit => {
                self.codecommit();
                let name = path.file_name().expect("a name").to_string_lossy();
                format!("codecommit::{REGION}://{name}")
            }
        }
    }
}

/// Run every combination for its seeds; panic with every failure, each starting with its seed,
/// round, transports, path and the command that replays it.
fn run_matrix(test: &str, combos: &[Combo]) {
    let settings = Settings::from_env();
    let world = World::new();
    std::fs::create_dir_all(world.srv()).expect("srv");
    let mut failures = Vec::new();
    let (mut histories, mut syncs) = (0, 0);
    for (index, combo) in combos.iter().enumerate() {
        if !settings.selects(combo) {
            continue;
        }
        for seed in settings.seeds(combo) {
            let rounds = settings.rounds(combo);
            let trial = Trial::new(&world, combo, index, seed);
            let result = catch_unwind(AssertUnwindSafe(|| trial.run(rounds)));
            histories += 1;
            syncs += trial.syncs.get();
            let failed = result.is_err();
            if let Err(payload) = result {
                failures.push(trial.failure(test, &settings, &*payload));
            }
            trial.clean_up();
            if let Some(stats) = &settings.stats {
                let line = format!(
                    "{} {seed} {} {} {}\n",
                    combo.name(),
                    rounds,
                    trial.syncs.get(),
                    if failed { "FAIL" } else { "ok" }
                );
                let _ = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(stats)
                    .and_then(|mut f| f.write_all(line.as_bytes()));
            }
        }
    }
    assert!(
        histories > 0 || settings.only.is_some(),
        "no combination ran: the matrix is empty"
    );
    if !failures.is_empty() {
        panic!(
            "{}\n\n{} of {histories} histories failed ({syncs} syncs)",
            failures.join("\n\n"),
            failures.len()
        );
    }
}

/// One history of one combination: a seed's source, its target, and the rounds run so far.
struct Trial<'a> {
    world: &'a World,
    combo: &'a Combo,
    seed: u64,
    id: String,
    source: PathBuf,
    target: PathBuf,
    round: Cell<usize>,
    syncs: Cell<usize>,
    /// What the current round did, for a failure's message.
    log: std::cell::RefCell<Vec<String>>,
    /// The last run's stderr and summary, for a failure's message.
    last_run: std::cell::RefCell<String>,
}

impl<'a> Trial<'a> {
    fn new(world: &'a World, combo: &'a Combo, index: usize, seed: u64) -> Trial<'a> {
        let id = format!("c{index}-s{seed}");
        Trial {
            world,
            combo,
            seed,
            source: world.srv().join(format!("{id}-source.git")),
            target: world.repo_path(combo.target, &format!("{id}-target")),
            id,
            round: Cell::new(0),
            syncs: Cell::new(0),
            log: Default::default(),
            last_run: Default::default(),
        }
    }

    fn run(&self, rounds: usize) {
        let options =
            (self.combo.options.clone()).unwrap_or_else(|| ModelOptions::drawn(self.seed));
        let mut model = Model::new(&self.source, self.seed, options);
        init_bare(&self.target);
        let source_url = self.world.url(self.combo.source, &self.source);
        let target_url = self.world.url(self.combo.target, &self.target);
        let mut previous: Option<BTreeMap<String, String>> = None;
        for round in 0..=rounds {
            self.round.set(round);
            let scripted = self
                .combo
                .script
                .as_ref()
                .and_then(|s| s.get(round.wrapping_sub(1)));
            let log = match (round, scripted) {
                (0, _) => vec!["the history as the seed makes it".to_string()],
                (_, Some(edits)) => model.round_of(edits),
                (_, None) => model.round(),
            };
            *self.log.borrow_mut() = log;
            self.sync_round(&model, &source_url, &target_url, previous.as_ref());
            previous = Some(model.refs().clone());
        }
    }

    fn sync_round(
        &self,
        model: &Model,
        source_url: &str,
        target_url: &str,
        previous: Option<&BTreeMap<String, String>>,
    ) {
        let expected = model.refs();
        self.default_by_hand(model);
        let before = refs(&self.target);
        let target_head = head_ref(&self.target);
        let mut out = self.sync(source_url, target_url, false);
        let refusal = guard(expected, &before);
        if let Some(refusal) = refusal {
            assert_eq!(
                out.code, 3,
                "the delete guard should have refused ({refusal}), exit 3"
            );
            let json = out.json();
            assert_eq!(json["status"], "refused", "{json}");
            let error = json["error"].as_str().unwrap_or_default();
            assert!(
                error.contains(refusal),
                "the refusal should say '{refusal}': {error}"
            );
            assert_eq!(
                refs(&self.target),
                before,
                "a refused run changed the target"
            );
            if expected.is_empty() {
                // The refusal is the answer: no target can be emptied (its default branch
                // cannot be deleted), see `an_emptied_source_empties_a_local_target`.
                return;
            }
            out = self.sync(source_url, target_url, true);
        }
        assert_eq!(out.code, 0, "the sync failed");
        let after = refs(&self.target);
        assert_mirror(&self.source, &self.target);
        assert_eq!(&after, expected, "the target is not the model's source");
        fsck_strict(&self.target);
        let json = out.json();
        self.check_summary(&json, &before, &after);
        self.check_default_branch(&json, model);
        // A refused run already fetched what the run after it pushed.
        let previous = previous.filter(|_| refusal.is_none());
        self.check_path(&json, &before, target_head.as_deref(), expected, previous);
    }

    /// A Git server refuses to delete its current branch and no sync can move it: when the
    /// source deleted the branch the target's `HEAD` names, the target's default is set to the
    /// source's by hand first, as an administrator would (the README says so).
    fn default_by_hand(&self, model: &Model) {
        if self.combo.target.default_managed() {
            return;
        }
        let Some(head) = head_ref(&self.target) else {
            return;
        };
        let on_target = refs(&self.target);
        if on_target.contains_key(&head)
            && !model.refs().contains_key(&head)
            && model.refs().contains_key(model.head())
        {
            git(&self.target, &["symbolic-ref", "HEAD", model.head()]);
            self.log.borrow_mut().push(format!(
                "(the target's default set by hand from {head} to {})",
                model.head()
            ));
        }
    }

    /// `backlog-mirror sync --json` for this round: its cache, engine and credentials.
    fn sync(&self, source_url: &str, target_url: &str, allow_mass_delete: bool) -> Run {
        let combo = self.combo;
        let attempt = self.syncs.get();
        let cache = match combo.way {
            Way::Warm => self.world.sb.join(&format!("cache-{}", self.id)),
            _ => self.world.sb.join(&format!("cache-{}-{attempt}", self.id)),
        };
        let mut cmd = match std::env::var_os("BACKLOG_MIRROR_DIFF_BINARY") {
            // Another build of the product (a release build, an older commit's).
            Some(path) => {
                let mut cmd = Command::new(path);
                isolate(&mut cmd);
                cmd
            }
            None => bin(),
        };
        cmd.env("HOME", self.world.sb.home())
            .args([
                "sync", "--json", "--source", source_url, "--target", target_url,
            ])
            .arg("--cache-dir")
            .arg(&cache)
            .args(["--network-timeout", "30s", "--push-engine", combo.engine]);
        if combo.way == Way::NoSeed {
            cmd.arg("--no-seed");
        }
        if allow_mass_delete {
            cmd.arg("--allow-mass-delete");
        }
        if combo.uses(Ssh) {
            let (_, key, known) = self.world.sshd();
            cmd.arg("--ssh-key-file")
                .arg(key)
                .arg("--known-hosts")
                .arg(known);
        }
        if combo.uses(CodeCommit) {
            let server = self.world.codecommit();
            cmd.envs(server.client_env())
                .envs(server.api_env())
                .env("AWS_EC2_METADATA_DISABLED", "true")
                .env("AWS_ACCESS_KEY_ID", AKID)
                .env("AWS_SECRET_ACCESS_KEY", SECRET);
        }
        if combo.libgit2_fetch {
            cmd.env("BACKLOG_MIRROR_LIBGIT2_FETCH", "1");
        }
        cmd.args(combo.args);
        if combo.libgit2_ssh {
            cmd.env("BACKLOG_MIRROR_LIBGIT2_SSH", "1");
        }
        let out = run_bounded(&mut cmd, SYNC_LIMIT);
        self.syncs.set(attempt + 1);
        *self.last_run.borrow_mut() = format!(
            "sync{}: exit {}\nstdout: {}\nstderr:\n{}",
            if allow_mass_delete {
                " --allow-mass-delete"
            } else {
                ""
            },
            out.code,
            out.stdout.trim(),
            tail(&out.stderr, 60)
        );
        assert_no_secret(&out, &[SECRET]);
        out
    }

    /// The summary names exactly the refs that changed on the target, each with its old and new
    /// id and an action that fits them, and counts them right.
    fn check_summary(
        &self,
        json: &Value,
        before: &BTreeMap<String, String>,
        after: &BTreeMap<String, String>,
    ) {
        assert_eq!(json["status"], "in_sync", "{json}");
        assert_eq!(json["exit_code"], 0, "{json}");
        let changed: BTreeSet<(String, Option<String>, Option<String>)> = before
            .keys()
            .chain(after.keys())
            .filter(|n| before.get(*n) != after.get(*n))
            .map(|n| (n.clone(), before.get(n).cloned(), after.get(n).cloned()))
            .collect();
        let changes = json["changes"].as_array().expect("changes");
        let id = |v: &Value| v.as_str().map(str::to_string);
        let reported: BTreeSet<(String, Option<String>, Option<String>)> = changes
            .iter()
            .map(|c| {
                (
                    c["ref"].as_str().expect("ref").to_string(),
                    id(&c["old"]),
                    id(&c["new"]),
                )
            })
            .collect();
        assert_eq!(
            reported, changed,
            "the summary's changes are not what changed on the target"
        );
        assert_eq!(
            reported.len(),
            changes.len(),
            "a change reported twice: {json}"
        );
        let relayed = json["relay"]["relayed"] == true;
        let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
        for change in changes {
            assert_eq!(change["result"], "ok", "{change}");
            let action = change["action"].as_str().expect("action");
            *counts.entry(action).or_default() += 1;
            let (old, new) = (id(&change["old"]), id(&change["new"]));
            match action {
                "create" => assert!(old.is_none() && new.is_some(), "{change}"),
                "delete" => assert!(old.is_some() && new.is_none(), "{change}"),
                "fast_forward" | "force" => {
                    let (old, new) = (old.expect("old"), new.expect("new"));
                    let descends = is_commit(&self.target, &old)
                        && is_commit(&self.target, &new)
                        && git_ok(&self.target, &["merge-base", "--is-ancestor", &old, &new])
                            .is_ok();
                    if action == "fast_forward" {
                        assert!(descends, "not a fast-forward: {change}");
                    } else if !relayed {
                        // The relay holds no objects: it reports every update as forced.
                        assert!(!descends, "a fast-forward reported as forced: {change}");
                    }
                }
                other => panic!("unknown action {other}: {change}"),
            }
        }
        let refs = &json["refs"];
        for (field, action) in [
            ("created", "create"),
            ("updated", "fast_forward"),
            ("forced", "force"),
            ("deleted", "delete"),
        ] {
            assert_eq!(
                refs[field].as_u64(),
                Some(counts.get(action).copied().unwrap_or(0)),
                "refs.{field}: {json}"
            );
        }
        assert_eq!(refs["rejected"], 0, "{json}");
        let unchanged = after
            .iter()
            .filter(|(n, id)| before.get(*n) == Some(id))
            .count();
        assert_eq!(refs["unchanged"].as_u64(), Some(unchanged as u64), "{json}");
    }

    /// The target's default branch follows the source's `HEAD` where a sync can move it, and
    /// the summary warns where it cannot and they differ.
    fn check_default_branch(&self, json: &Value, model: &Model) {
        if !model.refs().contains_key(model.head()) {
            return;
        }
        let report = &json["default_branch"];
        assert_eq!(report["source"], model.head(), "{json}");
        let target_head = head_ref(&self.target);
        if self.combo.target.default_managed() {
            assert_eq!(
                target_head.as_deref(),
                Some(model.head()),
                "the target's HEAD did not follow the source's"
            );
            assert_eq!(report["target"], model.head(), "{json}");
            assert_eq!(report["warning"], Value::Null, "{json}");
        } else if let Some(head) = target_head.filter(|h| refs(&self.target).contains_key(h)) {
            assert_eq!(
                report["warning"].is_null(),
                head == model.head(),
                "target HEAD {head}, source HEAD {}: {json}",
                model.head()
            );
        }
    }

    /// The run took the path this combination is for.
    fn check_path(
        &self,
        json: &Value,
        before: &BTreeMap<String, String>,
        target_head: Option<&str>,
        expected: &BTreeMap<String, String>,
        previous: Option<&BTreeMap<String, String>>,
    ) {
        let combo = self.combo;
        let relay = &json["relay"];
        let relayed = relay["relayed"] == true;
        let pushed = json["changes"].as_array().is_some_and(|c| !c.is_empty());
        let push_engine = json["transfer"]["push"]["engine"].as_str();
        match combo.way {
            Way::Warm => {
                assert_eq!(json["seeded"], false, "{json}");
                assert!(relay.is_null() || self.round.get() == 0, "{json}");
                let fetch_engine = json["transfer"]["fetch"]["engine"].as_str();
                if let Some(previous) = previous.filter(|p| *p != expected)
                    && !expected.is_empty()
                    && !previous.is_empty()
                {
                    assert_eq!(
                        fetch_engine,
                        Some(combo.fetch_engine()),
                        "the warm fetch went through the wrong client: {json}"
                    );
                }
                let cache = PathBuf::from(json["cache"].as_str().expect("cache"));
                assert_eq!(&refs(&cache), expected, "the cache is not the source");
                fsck_strict(&cache);
            }
            Way::Relay if before.is_empty() => {
                // A first mirror relays in one push and keeps the pack as the new cache; a plan
                // in batches fills the cache first.
                if relayed && !expected.is_empty() {
                    assert_eq!(relay["cached"], true, "{json}");
                    let cache = PathBuf::from(json["cache"].as_str().expect("cache"));
                    assert_eq!(&refs(&cache), expected, "the kept cache is not the source");
                    fsck_strict(&cache);
                } else if !relayed && !expected.is_empty() {
                    let why = relay["fallback"].as_str().unwrap_or_default();
                    assert!(
                        why.contains("in batches"),
                        "a first mirror not relayed: {json}"
                    );
                }
            }
            Way::Relay => {
                let deletes_default = target_head
                    .is_some_and(|h| before.contains_key(h) && !expected.contains_key(h));
                if deletes_default {
                    assert!(!relayed, "{json}");
                } else {
                    assert!(relayed, "the run did not relay: {json}");
                    assert_eq!(json["seeded"], false, "{json}");
                    if pushed {
                        assert_eq!(push_engine, Some("relay"), "{json}");
                    }
                }
            }
            Way::Seed => {
                assert!(!relayed, "{json}");
                if !before.is_empty() {
                    assert_eq!(json["seeded"], true, "the cache was not seeded: {json}");
                }
            }
            Way::NoSeed => {
                assert!(relay.is_null(), "{json}");
                assert_eq!(json["seeded"], false, "{json}");
            }
        }
        if pushed && !relayed {
            let engine = push_engine.unwrap_or("none");
            assert!(
                combo.push_engines().contains(&engine),
                "pushed through {engine}, not {:?}: {json}",
                combo.push_engines()
            );
        }
    }

    /// The message of a failed history: the seed, the round, the combination and the command
    /// that replays it first, then what failed and what the round did.
    fn failure(
        &self,
        test: &str,
        settings: &Settings,
        payload: &(dyn std::any::Any + Send),
    ) -> String {
        let what = payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "(a panic without a message)".into());
        let rounds = settings
            .rounds
            .map(|r| format!("BACKLOG_MIRROR_DIFF_ROUNDS={r} "))
            .unwrap_or_default();
        format!(
            "seed {}, round {}, {}: replay with\n  BACKLOG_MIRROR_DIFF_SEED={} {rounds}BACKLOG_MIRROR_DIFF_ONLY={} \
             cargo test --test main -- differential::{test} --exact\n{what}\n\
             round {} did: {}\nlast run: {}",
            self.seed,
            self.round.get(),
            self.combo.describe(),
            self.seed,
            self.combo.name(),
            self.round.get(),
            self.log.borrow().join("; "),
            self.last_run.borrow()
        )
    }

    /// Remove this history's repositories and caches (a soak runs thousands).
    fn clean_up(&self) {
        let _ = std::fs::remove_dir_all(&self.source);
        let _ = std::fs::remove_file(self.source.with_extension("marks"));
        let _ = std::fs::remove_dir_all(&self.target);
        if let Ok(entries) = std::fs::read_dir(self.world.sb.path()) {
            let prefix = format!("cache-{}", self.id);
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name == prefix || name.starts_with(&format!("{prefix}-")) {
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
        }
    }
}

fn is_commit(repo: &Path, id: &str) -> bool {
    git_ok(repo, &["cat-file", "-t", id]).is_ok_and(|t| t == "commit")
}

/// What the delete guard must say about a plan from `source` onto `target`, if it must refuse.
fn guard(
    source: &BTreeMap<String, String>,
    target: &BTreeMap<String, String>,
) -> Option<&'static str> {
    if source.is_empty() {
        // An empty source onto an empty target is in sync: there is nothing to delete.
        return (!target.is_empty()).then_some("the source lists no refs at all");
    }
    let deletes = target.keys().filter(|n| !source.contains_key(*n)).count();
    (deletes > (target.len() / 2).max(10)).then_some("more than --max-delete")
}

/// The last `lines` lines of `text`.
fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Run `cmd` to the end, or kill it after `limit` (a hang is a failure to report, not a suite
/// that never ends).
fn run_bounded(cmd: &mut Command, limit: Duration) -> Run {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    let pid = child.id().to_string();
    let (done, finished) = mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        let timed_out = finished.recv_timeout(limit) == Err(mpsc::RecvTimeoutError::Timeout);
        if timed_out {
            let _ = Command::new("kill").args(["-KILL", &pid]).status();
        }
        timed_out
    });
    let out = child.wait_with_output().expect("wait for the sync");
    let _ = done.send(());
    let hung = watchdog.join().unwrap_or(false);
    let mut stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if hung {
        stderr.push_str(&format!("\n(killed: still running after {limit:?})"));
    }
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr,
    }
}

// The matrix. Each test is one group, so the groups run side by side; within one, combinations
// share their servers.

/// The cheap ones, more seeds: local paths and file:// both ways, through a warm cache and
/// through seeding (a local target never relays).
#[test]
fn local_paths() {
    run_matrix(
        "local_paths",
        &[
            // Seeds 6 and 31 make upload-pack send several ACKs before its pack (the warm fetch
            // and the relay failed on them before 3b743de).
            combo(Local, Local, Way::Warm, "auto")
                .seeds(3)
                .regressions(&[6, 31]),
            combo(File, Local, Way::Warm, "auto").seeds(3),
            combo(Local, File, Way::Warm, "auto").seeds(3),
            combo(Local, Local, Way::Warm, "auto")
                .libgit2_fetch()
                .seeds(3),
            combo(File, File, Way::Seed, "auto").seeds(3),
            combo(Local, Local, Way::NoSeed, "auto").seeds(2),
            // A local target is always pushed through git's receive-pack, whatever the flag.
            combo(Local, Local, Way::Warm, "libgit2").seeds(2),
        ],
    );
}

/// git:// and smart HTTP sources into a warm cache, through our upload-pack client and through
/// libgit2's.
#[test]
fn network_sources_warm() {
    run_matrix(
        "network_sources_warm",
        &[
            combo(Git, Local, Way::Warm, "auto"),
            combo(Http, Local, Way::Warm, "auto"),
            combo(Git, Local, Way::Warm, "auto").libgit2_fetch(),
            combo(Http, Local, Way::Warm, "auto").libgit2_fetch(),
        ],
    );
}

/// git:// and smart HTTP targets from a warm cache, with every push engine.
#[test]
fn network_targets_warm() {
    run_matrix(
        "network_targets_warm",
        &[
            combo(Local, Git, Way::Warm, "auto"),
            combo(Local, Git, Way::Warm, "git"),
            combo(Local, Git, Way::Warm, "libgit2"),
            combo(Local, Http, Way::Warm, "auto"),
            combo(Local, Http, Way::Warm, "git"),
            combo(Local, Http, Way::Warm, "libgit2"),
            combo(Git, Http, Way::Warm, "wire"),
            combo(Local, Http, Way::Warm, "auto").args(&["--batch-size", "2"]),
            combo(Local, Git, Way::Warm, "git").args(&["--batch-size", "3"]),
        ],
    );
}

/// The stateless relay from every source transport into git:// and HTTP targets.
#[test]
fn relay() {
    run_matrix(
        "relay",
        &[
            combo(Local, Git, Way::Relay, "auto").regressions(&[6, 31]),
            combo(File, Http, Way::Relay, "auto"),
            combo(Git, Git, Way::Relay, "auto"),
            combo(Http, Http, Way::Relay, "auto"),
            combo(Http, Git, Way::Relay, "wire"),
            combo(Git, Http, Way::Relay, "auto"),
            combo(Http, Git, Way::Relay, "auto").args(&["--batch-size", "2"]),
        ],
    );
}

/// Runs that start from an empty cache the relay does not serve: seeded from the target (a
/// local target, an engine the relay does not use), or with --no-seed fetched whole.
#[test]
fn seeded() {
    run_matrix(
        "seeded",
        &[
            combo(Git, Local, Way::Seed, "auto"),
            combo(Http, Http, Way::Seed, "git"),
            combo(Git, Git, Way::Seed, "libgit2"),
            combo(Local, Http, Way::NoSeed, "auto"),
        ],
    );
}

/// SSH as source (our transport and libgit2's) and as target, warm, relayed and seeded.
#[test]
fn ssh() {
    run_matrix(
        "ssh",
        &[
            combo(Ssh, Local, Way::Warm, "auto"),
            combo(Ssh, Local, Way::Warm, "auto").libgit2_ssh(),
            combo(Ssh, Local, Way::Warm, "auto").libgit2_fetch(),
            combo(Local, Ssh, Way::Warm, "auto"),
            combo(Ssh, Git, Way::Relay, "auto"),
            combo(Ssh, Http, Way::Seed, "auto").libgit2_ssh(),
            combo(Local, Ssh, Way::Seed, "libgit2"),
        ],
    );
}

/// The CodeCommit stand-in as target: warm with every engine, relayed, seeded.
#[test]
fn codecommit() {
    run_matrix(
        "codecommit",
        &[
            combo(Local, CodeCommit, Way::Warm, "auto"),
            combo(Local, CodeCommit, Way::Warm, "git"),
            combo(Local, CodeCommit, Way::Warm, "libgit2"),
            combo(Git, CodeCommit, Way::Relay, "auto"),
            combo(Http, CodeCommit, Way::Seed, "libgit2"),
        ],
    );
}

// The generator itself.

/// The same seed makes the same source, object for object; another seed another.
#[test]
fn the_model_is_deterministic() {
    let sb = Sandbox::new();
    let options = ModelOptions::default();
    let mut one = Model::new(&sb.join("one.git"), 42, options.clone());
    let mut two = Model::new(&sb.join("two.git"), 42, options.clone());
    let mut other = Model::new(&sb.join("other.git"), 43, options);
    assert_eq!(refs(one.repo()), refs(two.repo()));
    assert_ne!(refs(one.repo()), refs(other.repo()));
    for round in 1..=8 {
        let (a, b) = (one.round(), two.round());
        other.round();
        assert_eq!(a, b, "round {round} made different edits");
        assert_eq!(refs(one.repo()), refs(two.repo()), "round {round}");
        assert_eq!(one.refs(), &refs(one.repo()), "round {round}");
        assert_eq!(head_ref(one.repo()), head_ref(two.repo()), "round {round}");
    }
}

/// Every kind of edit happens across a few seeds, and each leaves a source git finds whole.
#[test]
fn every_edit_kind_occurs() {
    let sb = Sandbox::new();
    let mut counts: BTreeMap<Edit, usize> = BTreeMap::new();
    for seed in 1..=4 {
        let mut model = Model::new(
            &sb.join(&format!("s{seed}.git")),
            seed,
            ModelOptions::default(),
        );
        for _ in 0..30 {
            model.round();
        }
        fsck_strict(model.repo());
        for (edit, n) in model.counts() {
            *counts.entry(*edit).or_default() += n;
        }
    }
    let missing: Vec<Edit> = Edit::ALL
        .into_iter()
        .filter(|e| !counts.contains_key(e))
        .collect();
    assert!(
        missing.is_empty(),
        "never made: {missing:?} (made: {counts:?})"
    );
}

// Trying to break it: histories written to hurt, on the cheapest combination of each path.

fn on_every_path(options: ModelOptions, script: &[&[Edit]]) -> Vec<Combo> {
    [
        combo(Local, Local, Way::Warm, "auto"),
        combo(Git, Http, Way::Relay, "auto"),
        combo(Git, Local, Way::Seed, "auto"),
        combo(Local, CodeCommit, Way::Warm, "auto"),
    ]
    .into_iter()
    .map(|c| {
        let c = c.seeds(1).options(options.clone());
        if script.is_empty() {
            c
        } else {
            c.script(script)
        }
    })
    .collect()
}

/// Hundreds of refs: branches, tags and pull-request heads at old commits.
#[test]
fn many_refs() {
    let options = ModelOptions {
        commits: 40,
        extra_refs: 400,
        max_edits: 6,
        wipe: false,
    };
    let combos: Vec<Combo> = on_every_path(options, &[])
        .into_iter()
        .map(|c| c.rounds(3))
        .collect();
    run_matrix("many_refs", &combos);
}

/// Tags of tags of tags, tags on trees and blobs, tags moved and deleted under a chain.
#[test]
fn tag_chains() {
    use Edit::*;
    let script: &[&[Edit]] = &[
        &[AnnotatedTag, TagOfTag, TagOfTag, TagOfTag, TagOfTag],
        &[TagOfTag, TagOfObject, TagOfObject, MoveTag],
        &[DeleteTag, TagOfTag, TagOfObject],
    ];
    run_matrix(
        "tag_chains",
        &on_every_path(ModelOptions::default(), script),
    );
}

/// A ref that moves and moves back, round after round (A, B, A, B).
#[test]
fn a_ref_moving_back_and_forth() {
    use Edit::*;
    let script: &[&[Edit]] = &[
        &[ForceOlder, UpdatePull],
        &[MoveBack, MoveBack],
        &[MoveBack, MoveBack],
        &[MoveBack],
    ];
    run_matrix(
        "a_ref_moving_back_and_forth",
        &on_every_path(ModelOptions::default(), script),
    );
}

/// Refs deleted in one round and back at the very same id in the next.
#[test]
fn refs_deleted_and_recreated_at_the_same_id() {
    use Edit::*;
    let script: &[&[Edit]] = &[
        &[DeleteBranch, DeleteTag, DeletePull],
        &[Resurrect, Resurrect, Resurrect],
        &[DeleteBranch],
        &[Resurrect],
    ];
    run_matrix(
        "refs_deleted_and_recreated_at_the_same_id",
        &on_every_path(ModelOptions::default(), script),
    );
}

/// Tips force-moved away and pruned from the source: the target's and the cache's tips are
/// haves the source no longer knows.
#[test]
fn tips_pruned_from_the_source() {
    use Edit::*;
    let script: &[&[Edit]] = &[
        &[ForceUnrelated, DeletePull, Gc],
        &[ForceOlder, Gc, Commit],
        &[ForceUnrelated, Gc],
    ];
    run_matrix(
        "tips_pruned_from_the_source",
        &on_every_path(ModelOptions::default(), script),
    );
}

/// A source that starts with no refs at all (an empty target is then in sync), then history
/// comes.
#[test]
fn an_empty_source() {
    let options = ModelOptions {
        commits: 0,
        extra_refs: 0,
        ..ModelOptions::default()
    };
    run_matrix("an_empty_source", &on_every_path(options, &[]));
}

/// A source whose refs all go (refused by the delete guard), come back, and go again; and more
/// than half of them deleted at once (refused, then allowed).
#[test]
fn a_source_that_becomes_empty() {
    use Edit::*;
    let options = ModelOptions {
        extra_refs: 30,
        ..ModelOptions::default()
    };
    let script: &[&[Edit]] = &[
        &[MassDelete],
        &[Commit, Wipe],
        &[Commit, PullHead],
        &[Wipe],
        &[BranchFromOld],
    ];
    run_matrix(
        "a_source_that_becomes_empty",
        &on_every_path(options, script),
    );
}

/// With every ref deleted at the source, the delete guard refuses; `--allow-mass-delete` then
/// deletes every ref of the target but the branch its `HEAD` names, which no Git server deletes
/// for a push (the source has no branch left to move `HEAD` to first), and the run says so:
/// exit 1 naming that branch, as the guard's message warns.
#[test]
fn an_emptied_source_leaves_the_targets_current_branch_and_says_so() {
    let sb = Sandbox::new();
    let pair = sb.pair("srv", &["topic", "other"]);
    let (source, target) = (path_str(&pair.source), path_str(&pair.target));
    let first = run(&mut sb.sync(&source, &target));
    assert_eq!(first.code, 0, "{}", first.stderr);
    for name in refs(&pair.source).keys() {
        delete_ref(&pair.source, name);
    }
    let refused = run(&mut sb.sync(&source, &target));
    assert_eq!(refused.code, 3, "{}", refused.stderr);
    assert!(
        refused
            .only_error()
            .contains("the branch the target's HEAD names stays"),
        "{}",
        refused.stderr
    );
    assert_eq!(
        refs(&pair.target).len(),
        3,
        "a refused run changed the target"
    );
    let out = run(sb.sync(&source, &target).arg("--allow-mass-delete"));
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.only_error().contains("refs/heads/main") && out.only_error().contains("current branch"),
        "{}",
        out.stderr
    );
    let left: Vec<String> = refs(&pair.target).into_keys().collect();
    assert_eq!(left, ["refs/heads/main"], "every other ref is deleted");
}
