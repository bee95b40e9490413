//! Repositories made with the real git CLI, and the oracle that compares them.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::path_str;

fn git_cmd(dir: &Path) -> Command {
    let mut cmd = Command::new("git");
    super::isolate(&mut cmd);
    cmd.current_dir(dir)
        .env("GIT_AUTHOR_NAME", "Test Author")
        .env("GIT_AUTHOR_EMAIL", "author@example.com")
        .env("GIT_AUTHOR_DATE", "1700000000 +0000")
        .env("GIT_COMMITTER_NAME", "Test Committer")
        .env("GIT_COMMITTER_EMAIL", "committer@example.com")
        .env("GIT_COMMITTER_DATE", "1700000000 +0000");
    cmd
}

/// Run git in `dir`; panics with its stderr on failure; returns trimmed stdout.
pub fn git(dir: &Path, args: &[&str]) -> String {
    git_ok(dir, args).unwrap_or_else(|e| panic!("git {args:?} in {}: {e}", dir.display()))
}

pub fn git_ok(dir: &Path, args: &[&str]) -> Result<String, String> {
    let out = git_cmd(dir)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

pub fn init_bare(path: &Path) -> PathBuf {
    std::fs::create_dir_all(path).expect("mkdir");
    git(path, &["init", "-q", "--bare", "-b", "main"]);
    path.to_path_buf()
}

/// A non-bare repository to make history in.
pub struct WorkRepo {
    pub path: PathBuf,
    counter: std::cell::Cell<u32>,
}

impl WorkRepo {
    pub fn init(path: &Path) -> WorkRepo {
        std::fs::create_dir_all(path).expect("mkdir");
        git(path, &["init", "-q", "-b", "main"]);
        WorkRepo {
            path: path.to_path_buf(),
            counter: std::cell::Cell::new(0),
        }
    }

    /// Write `file`, commit it, return the commit id. Each commit gets a distinct date so
    /// history is deterministic yet every commit id differs.
    pub fn commit(&self, file: &str, content: &str, msg: &str) -> String {
        let n = self.counter.get() + 1;
        self.counter.set(n);
        let full = self.path.join(file);
        if let Some(parent) = full.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(&full, content).expect("write");
        git(&self.path, &["add", "-A"]);
        let date = format!("{} +0000", 1_700_000_000 + n * 60);
        let out = git_cmd(&self.path)
            .env("GIT_AUTHOR_DATE", &date)
            .env("GIT_COMMITTER_DATE", &date)
            .args(["commit", "-q", "--allow-empty", "-m", msg])
            .output()
            .expect("git commit");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        git(&self.path, &["rev-parse", "HEAD"])
    }

    pub fn branch(&self, name: &str) {
        git(&self.path, &["branch", "-f", name]);
    }

    pub fn checkout(&self, name: &str) {
        git(&self.path, &["checkout", "-q", name]);
    }

    pub fn tag_light(&self, name: &str) {
        git(&self.path, &["tag", name]);
    }

    pub fn tag_annotated(&self, name: &str, msg: &str) {
        git(&self.path, &["tag", "-a", name, "-m", msg]);
    }

    pub fn note(&self, msg: &str) {
        git(&self.path, &["notes", "add", "-f", "-m", msg]);
    }

    /// Rewrite the tip commit (a force-push when mirrored).
    pub fn amend(&self, msg: &str) -> String {
        let n = self.counter.get() + 1;
        self.counter.set(n);
        let date = format!("{} +0000", 1_700_000_000 + n * 60);
        let out = git_cmd(&self.path)
            .env("GIT_COMMITTER_DATE", &date)
            .args(["commit", "-q", "--amend", "--allow-empty", "-m", msg])
            .output()
            .expect("git commit --amend");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        git(&self.path, &["rev-parse", "HEAD"])
    }

    /// `git push --mirror`: the bare repo's refs become exactly this repo's (less remotes).
    pub fn push_mirror(&self, bare: &Path) {
        git(
            &self.path,
            &[
                "push",
                "-q",
                "--force",
                bare.to_str().expect("utf-8"),
                "+refs/heads/*:refs/heads/*",
                "+refs/tags/*:refs/tags/*",
                "+refs/notes/*:refs/notes/*",
                "--prune",
            ],
        );
    }
}

/// What most tests start from: a source with history and an empty target beside it.
pub struct Pair {
    /// Where the source's history was made: commit there, then `push_mirror` to the source.
    pub work: WorkRepo,
    pub source: PathBuf,
    pub target: PathBuf,
}

impl Pair {
    /// `<dir>/source.git` holding one commit on `main` (`a.txt`) and a branch per name in
    /// `branches` at that commit, made in the work tree `<root>/work`; an empty bare
    /// `<dir>/target.git`.
    pub fn new(root: &Path, dir: &str, branches: &[&str]) -> Pair {
        let work = WorkRepo::init(&root.join("work"));
        work.commit("a.txt", "one", "first");
        for name in branches {
            work.branch(name);
        }
        let source = init_bare(&root.join(dir).join("source.git"));
        work.push_mirror(&source);
        let target = init_bare(&root.join(dir).join("target.git"));
        Pair {
            work,
            source,
            target,
        }
    }
}

/// A new commit on the source's `main`, made in a fresh work tree at `work` from what the source
/// holds (a push to the source, as a developer makes one). Returns the commit.
pub fn push_a_commit(source: &Path, work: &Path, file: &str, message: &str) -> String {
    commit_and_push(
        source,
        work,
        "main",
        (file, message),
        message,
        "refs/heads/main",
    )
}

/// `len` printable characters that do not compress: a change whose pack is as large as it.
pub fn noise(len: usize) -> String {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            char::from(b'!' + ((state >> 33) % 90) as u8)
        })
        .collect()
}

/// A new commit writing `content` to `file` on top of the source's `from` (a ref), pushed to
/// the source as `to`, made in a fresh work tree at `work`. Returns the commit.
pub fn push_a_commit_on(
    source: &Path,
    work: &Path,
    from: &str,
    file: &str,
    content: &str,
    to: &str,
) -> String {
    // The message is not `content`, which may be longer than one argument may be.
    commit_and_push(
        source,
        work,
        from,
        (file, content),
        &format!("write {file}"),
        to,
    )
}

fn commit_and_push(
    source: &Path,
    work: &Path,
    from: &str,
    (file, content): (&str, &str),
    message: &str,
    to: &str,
) -> String {
    let repo = WorkRepo::init(work);
    git(&repo.path, &["fetch", "-q", &path_str(source), from]);
    git(&repo.path, &["checkout", "-q", "-B", "work", "FETCH_HEAD"]);
    let id = repo.commit(file, content, message);
    git(
        &repo.path,
        &["push", "-q", &path_str(source), &format!("work:{to}")],
    );
    id
}

/// Run git in `dir` with `input` on its stdin; panics with its stderr on failure; returns
/// trimmed stdout.
pub fn git_input(dir: &Path, args: &[&str], input: &[u8]) -> String {
    let mut child = git_cmd(dir)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("git {args:?}: {e}"));
    let mut stdin = child.stdin.take().expect("stdin");
    let input = input.to_vec();
    // Fed from a thread: git may answer before it has read everything.
    let feeder = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().expect("git");
    let fed = feeder.join().expect("feeder");
    assert!(
        out.status.success() && fed.is_ok(),
        "git {args:?} in {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The branch `HEAD` names (`refs/heads/...`), whether or not it exists; `None` when `HEAD` is
/// not a symbolic ref.
pub fn head_ref(repo: &Path) -> Option<String> {
    git_ok(repo, &["symbolic-ref", "-q", "HEAD"])
        .ok()
        .filter(|name| !name.is_empty())
}

pub fn update_ref(repo: &Path, name: &str, id: &str) {
    git(repo, &["update-ref", name, id]);
}

pub fn delete_ref(repo: &Path, name: &str) {
    git(repo, &["update-ref", "-d", name]);
}

pub fn pack_refs(repo: &Path) {
    git(repo, &["pack-refs", "--all", "--prune"]);
}

/// Every ref and the object it names: the oracle for "exact mirror".
pub fn refs(repo: &Path) -> BTreeMap<String, String> {
    git(repo, &["for-each-ref", "--format=%(refname) %(objectname)"])
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(n, o)| (n.to_string(), o.to_string()))
        .collect()
}

pub fn assert_mirror(source: &Path, target: &Path) {
    let (want, got) = (refs(source), refs(target));
    if want == got {
        return;
    }
    let mut diff = String::new();
    for (name, id) in &want {
        match got.get(name) {
            None => diff.push_str(&format!("  missing  {name} {id}\n")),
            Some(other) if other != id => {
                diff.push_str(&format!("  differs  {name} want {id} got {other}\n"))
            }
            _ => {}
        }
    }
    for (name, id) in &got {
        if !want.contains_key(name) {
            diff.push_str(&format!("  extra    {name} {id}\n"));
        }
    }
    panic!(
        "{} is not a mirror of {}:\n{diff}",
        target.display(),
        source.display()
    );
}

/// `git fsck` must be clean (dangling objects are fine: they are what a killed push leaves).
/// The bare mirror a sync keeps in `cache_dir` (its only one).
pub fn mirror_in(cache_dir: &Path) -> PathBuf {
    std::fs::read_dir(cache_dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.extension().is_some_and(|e| e == "git")
                && !p
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .expect("a mirror in the cache directory")
}

/// Every object reachable from the repository's refs.
pub fn reachable_objects(repo: &Path) -> usize {
    git(repo, &["rev-list", "--objects", "--all"])
        .lines()
        .count()
}

pub fn fsck(repo: &Path) {
    if let Err(e) = git_ok(repo, &["fsck", "--no-dangling", "--no-progress"]) {
        panic!("git fsck of {} failed:\n{e}", repo.display());
    }
}

/// `git fsck --strict` must be clean: every object well-formed by git's strictest rules, every
/// ref's history complete (dangling objects are fine).
pub fn fsck_strict(repo: &Path) {
    if let Err(e) = git_ok(
        repo,
        &["fsck", "--strict", "--no-dangling", "--no-progress"],
    ) {
        panic!("git fsck --strict of {} failed:\n{e}", repo.display());
    }
}

/// A repository to generate: big enough that transfers take a while, fully deterministic.
#[derive(Debug, Clone)]
pub struct GenSpec {
    pub commits: usize,
    pub files: usize,
    pub blob_bytes: usize,
    pub branches: usize,
    pub packed: bool,
    /// Bytes of new, delta-proof content each commit adds (hex text, about half compressible):
    /// what makes a pack grow with its history, as real repositories' packs do.
    pub fresh_bytes: usize,
}

impl Default for GenSpec {
    fn default() -> Self {
        GenSpec {
            commits: 100,
            files: 20,
            blob_bytes: 1000,
            branches: 2,
            packed: true,
            fresh_bytes: 0,
        }
    }
}

/// Build a bare repository from a `git fast-import` stream: `commits` commits on main, each
/// changing three of `files` files (about `blob_bytes` each, text from a fixed xorshift seed so
/// deltas are realistic) and rewriting one of 64 data files with `fresh_bytes` of new content,
/// `branches` extra branches spread evenly over the history (more branches than commits is
/// fine), and two tags.
pub fn generate_repo(path: &Path, spec: &GenSpec) -> PathBuf {
    let repo = init_bare(path);
    let mut child = git_cmd(&repo)
        .args(["fast-import", "--quiet", "--done"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("git fast-import");
    let mut input = std::io::BufWriter::new(child.stdin.take().expect("stdin"));
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    const WORDS: [&str; 16] = [
        "mirror", "backlog", "commit", "branch", "delta", "object", "review", "deploy", "build",
        "tag", "fetch", "push", "prune", "cache", "lock", "plan",
    ];
    // Directories of about 128 files each keep trees small, as real layouts do.
    let dirs = (spec.files / 128).max(16);
    let lines_per_file = (spec.blob_bytes / 40).max(1);
    let mut files: Vec<Vec<String>> = Vec::with_capacity(spec.files);
    for _ in 0..spec.files.max(1) {
        files.push(
            (0..lines_per_file)
                .map(|_| {
                    (0..6)
                        .map(|_| WORDS[(next() % 16) as usize])
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .collect(),
        );
    }
    for c in 0..spec.commits {
        let changed: Vec<usize> = if c == 0 {
            (0..files.len()).collect()
        } else {
            (0..3).map(|_| (next() as usize) % files.len()).collect()
        };
        writeln!(input, "commit refs/heads/main").unwrap();
        writeln!(input, "mark :{}", c + 1).unwrap();
        writeln!(
            input,
            "committer Gen <gen@example.com> {} +0000",
            1_600_000_000 + c
        )
        .unwrap();
        let msg = format!("generated commit {c}\n");
        write!(input, "data {}\n{msg}", msg.len()).unwrap();
        for f in changed {
            let line = (next() as usize) % files[f].len();
            files[f][line] = format!("{} {c}", WORDS[(next() % 16) as usize]);
            let body = files[f].join("\n") + "\n";
            writeln!(input, "M 100644 inline dir{}/file{f}.txt", f % dirs).unwrap();
            write!(input, "data {}\n{body}\n", body.len()).unwrap();
        }
        if spec.fresh_bytes > 0 {
            let mut body = String::with_capacity(spec.fresh_bytes + 64);
            while body.len() < spec.fresh_bytes {
                body.push_str(&format!("{:016x}\n", next()));
            }
            writeln!(input, "M 100644 inline data/blob{}.txt", c % 64).unwrap();
            write!(input, "data {}\n{body}\n", body.len()).unwrap();
        }
    }
    if spec.commits > 0 {
        for b in 1..=spec.branches {
            let mark = (b * spec.commits / (spec.branches + 1)).clamp(1, spec.commits);
            writeln!(input, "reset refs/heads/branch{b}\nfrom :{mark}\n").unwrap();
        }
    }
    if spec.commits > 0 {
        writeln!(input, "reset refs/tags/light\nfrom :1\n").unwrap();
        let msg = "generated release\n";
        write!(
            input,
            "tag v1.0\nfrom :{}\ntagger Gen <gen@example.com> 1600000000 +0000\ndata {}\n{msg}\n",
            spec.commits,
            msg.len()
        )
        .unwrap();
    }
    writeln!(input, "done").unwrap();
    drop(input);
    let status = child.wait().expect("fast-import");
    assert!(status.success(), "git fast-import failed");
    if spec.packed {
        git(&repo, &["repack", "-a", "-d", "-q"]);
        pack_refs(&repo);
    }
    repo
}

/// A repository shaped like a hosted project's mirror rather than a straight line: a main line,
/// pull-request heads (`refs/pull/N/head`) on side commits that no branch contains, branches of
/// which some carry commits of their own, and tags. This is what makes a mirror's refs expensive:
/// thousands of tips whose objects are not all behind the branches.
#[derive(Debug, Clone)]
pub struct ShapedSpec {
    /// Commits in all: the main line plus the pull requests' and branches' own commits.
    pub commits: usize,
    /// Files in the first commit, in directories of about 128.
    pub files: usize,
    pub blob_bytes: usize,
    /// Bytes of new, delta-proof content each commit writes (as `GenSpec::fresh_bytes`).
    pub fresh_bytes: usize,
    /// `refs/pull/N/head` refs, each on 1-5 commits of its own forked from the main line as it
    /// stood when the pull request was opened (one in ten from an earlier pull request's head:
    /// stacked, so pull requests share commits), opened evenly over the history.
    pub pull_requests: usize,
    /// Branches besides main (`branch1`...): every fifth carries 1-4 commits of its own (a
    /// release branch), the others point into the main line, spread over the history.
    pub branches: usize,
    /// Tags on main-line commits spread over the history, every fifth lightweight, the rest
    /// annotated.
    pub tags: usize,
}

/// What `generate_shaped_repo` made, counted as it went.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShapedCounts {
    pub main_commits: usize,
    pub pull_commits: usize,
    pub branch_commits: usize,
}

/// xorshift64 from a fixed seed: the generators' only source of variety, so output is
/// deterministic.
struct Xorshift(u64);

impl Xorshift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Build a bare repository of `spec`'s shape with one `git fast-import` stream, then repack it
/// (`git repack -a -d`) and pack its refs, as a hosted repository's mirror is. Every commit
/// changes one or two files (a line each) and rewrites one of 64 data files with
/// `fresh_bytes` of new content; committer times grow by a second per commit in the order
/// commits are made, so a pull request's commits are newer than the main-line commit it forks
/// from. The same spec always gives the same object ids.
pub fn generate_shaped_repo(path: &Path, spec: &ShapedSpec) -> (PathBuf, ShapedCounts) {
    const WORDS: [&str; 16] = [
        "mirror", "backlog", "commit", "branch", "delta", "object", "review", "deploy", "build",
        "tag", "fetch", "push", "prune", "cache", "lock", "plan",
    ];
    let repo = init_bare(path);
    let mut rng = Xorshift(0x2545_F491_4F6C_DD1D);
    // Decide every side line's length first, so the main line takes what is left of the budget.
    let pull_lengths: Vec<usize> = (0..spec.pull_requests)
        .map(|_| match rng.below(100) {
            0..60 => 1,
            60..85 => 2,
            85..95 => 3,
            95..98 => 4,
            _ => 5,
        })
        .collect();
    let branch_lengths: Vec<usize> = (1..=spec.branches)
        .map(|b| if b % 5 == 0 { 1 + rng.below(4) } else { 0 })
        .collect();
    let side: usize = pull_lengths.iter().sum::<usize>() + branch_lengths.iter().sum::<usize>();
    let main_commits = spec.commits.saturating_sub(side).max(1);
    let at = |i: usize, n: usize| (i * main_commits / n.max(1)).min(main_commits - 1);

    let mut child = git_cmd(&repo)
        .args(["fast-import", "--quiet", "--done"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("git fast-import");
    let mut out = std::io::BufWriter::new(child.stdin.take().expect("stdin"));
    let dirs = (spec.files / 128).max(16);
    let lines_per_file = (spec.blob_bytes / 40).max(1);
    let sentence = |rng: &mut Xorshift| {
        (0..6)
            .map(|_| WORDS[rng.below(16)])
            .collect::<Vec<_>>()
            .join(" ")
    };
    let mut files: Vec<Vec<String>> = (0..spec.files.max(1))
        .map(|_| (0..lines_per_file).map(|_| sentence(&mut rng)).collect())
        .collect();
    let mut clock = 0usize;
    let mut mark = 0usize;
    let mut counts = ShapedCounts::default();
    // One commit on `refname`: from `from` (a mark) when given, else continuing the ref. Its
    // changes start from the main line's current files; only a main-line commit keeps them.
    let mut commit = |out: &mut dyn Write,
                      rng: &mut Xorshift,
                      files: &mut Vec<Vec<String>>,
                      refname: &str,
                      from: Option<usize>,
                      keep: bool,
                      what: &str|
     -> usize {
        mark += 1;
        clock += 1;
        writeln!(out, "commit {refname}\nmark :{mark}").unwrap();
        writeln!(
            out,
            "committer Gen <gen@example.com> {} +0000",
            1_600_000_000 + clock
        )
        .unwrap();
        let msg = format!("{what}\n");
        write!(out, "data {}\n{msg}", msg.len()).unwrap();
        if let Some(from) = from {
            writeln!(out, "from :{from}").unwrap();
        }
        let changed: Vec<usize> = if clock == 1 {
            (0..files.len()).collect()
        } else {
            (0..1 + usize::from(rng.below(10) < 2))
                .map(|_| rng.below(files.len()))
                .collect()
        };
        for f in changed {
            let mut lines = files[f].clone();
            let line = rng.below(lines.len());
            lines[line] = format!("{} {clock}", sentence(rng));
            let body = lines.join("\n") + "\n";
            writeln!(out, "M 100644 inline dir{}/file{f}.txt", f % dirs).unwrap();
            write!(out, "data {}\n{body}\n", body.len()).unwrap();
            if keep {
                files[f] = lines;
            }
        }
        if spec.fresh_bytes > 0 {
            let mut body = String::with_capacity(spec.fresh_bytes + 64);
            while body.len() < spec.fresh_bytes {
                body.push_str(&format!("{:016x}\n", rng.next()));
            }
            writeln!(out, "M 100644 inline data/blob{}.txt", clock % 64).unwrap();
            write!(out, "data {}\n{body}\n", body.len()).unwrap();
        }
        mark
    };

    let mut main_marks = Vec::with_capacity(main_commits);
    let mut pull_heads: Vec<usize> = Vec::with_capacity(spec.pull_requests);
    let (mut next_pull, mut next_branch) = (0, 0);
    for c in 0..main_commits {
        let m = commit(
            &mut out,
            &mut rng,
            &mut files,
            "refs/heads/main",
            None,
            true,
            &format!("main commit {c}"),
        );
        main_marks.push(m);
        counts.main_commits += 1;
        // Pull requests opened since this commit, on top of it (or stacked on a recent one).
        while next_pull < spec.pull_requests && at(next_pull, spec.pull_requests) <= c {
            let n = next_pull + 1;
            let base = if !pull_heads.is_empty() && rng.below(10) == 0 {
                pull_heads[pull_heads.len() - 1 - rng.below(pull_heads.len().min(20))]
            } else {
                m
            };
            let refname = format!("refs/pull/{n}/head");
            let mut head = base;
            for k in 0..pull_lengths[next_pull] {
                let from = (k == 0).then_some(base);
                head = commit(
                    &mut out,
                    &mut rng,
                    &mut files,
                    &refname,
                    from,
                    false,
                    &format!("pull request {n}, commit {k}"),
                );
                counts.pull_commits += 1;
            }
            pull_heads.push(head);
            next_pull += 1;
        }
        while next_branch < spec.branches && at(next_branch + 1, spec.branches + 1) <= c {
            let b = next_branch + 1;
            let refname = format!("refs/heads/branch{b}");
            if branch_lengths[next_branch] == 0 {
                writeln!(out, "reset {refname}\nfrom :{m}\n").unwrap();
            }
            for k in 0..branch_lengths[next_branch] {
                let from = (k == 0).then_some(m);
                commit(
                    &mut out,
                    &mut rng,
                    &mut files,
                    &refname,
                    from,
                    false,
                    &format!("branch {b}, commit {k}"),
                );
                counts.branch_commits += 1;
            }
            next_branch += 1;
        }
    }
    for t in 1..=spec.tags {
        let target = main_marks[at(t, spec.tags + 1)];
        let name = format!("v{}.{}.0", t / 10, t % 10);
        if t % 5 == 0 {
            writeln!(out, "reset refs/tags/{name}\nfrom :{target}\n").unwrap();
        } else {
            let msg = format!("release {name}\n");
            write!(
                out,
                "tag {name}\nfrom :{target}\ntagger Gen <gen@example.com> {} +0000\ndata {}\n{msg}\n",
                1_600_000_000 + t,
                msg.len()
            )
            .unwrap();
        }
    }
    writeln!(out, "done").unwrap();
    drop(out);
    assert!(
        child.wait().expect("fast-import").success(),
        "git fast-import failed"
    );
    git(&repo, &["repack", "-a", "-d", "-q"]);
    pack_refs(&repo);
    (repo, counts)
}

/// Apply a `git fast-import` stream to a repository (commits on top of what it has).
#[allow(dead_code)] // the benchmark's incremental scenario
pub fn fast_import(repo: &Path, stream: &str) {
    let mut child = git_cmd(repo)
        .args(["fast-import", "--quiet"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("git fast-import");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stream.as_bytes())
        .expect("write the stream");
    assert!(
        child.wait().expect("fast-import").success(),
        "git fast-import failed"
    );
}

/// Install an executable hook in a bare repository.
pub fn install_hook(bare: &Path, name: &str, script: &str) {
    use std::os::unix::fs::PermissionsExt;
    let hooks = bare.join("hooks");
    std::fs::create_dir_all(&hooks).expect("hooks dir");
    let path = hooks.join(name);
    std::fs::write(&path, script).expect("write hook");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

/// A hook that counts its runs by appending a line to a file.
pub struct HookCounter {
    file: PathBuf,
}

impl HookCounter {
    pub fn count(&self) -> usize {
        std::fs::read_to_string(&self.file)
            .map(|t| t.lines().count())
            .unwrap_or(0)
    }
}

pub fn counting_hook(bare: &Path, name: &str) -> HookCounter {
    let file = bare.join(format!("{name}.runs"));
    install_hook(
        bare,
        name,
        &format!(
            "#!/bin/sh\ncat >/dev/null\necho run >> '{}'\n",
            file.display()
        ),
    );
    HookCounter { file }
}

/// A commit of its own (no parent) holding `bytes` of data no compressor shrinks, on `name`.
pub fn incompressible_branch(repo: &Path, name: &str, seed: u64, bytes: usize) {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let data: Vec<u8> = (0..bytes)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    let blob = git_input(repo, &["hash-object", "-w", "--stdin"], &data);
    let tree = git_input(
        repo,
        &["mktree"],
        format!("100644 blob {}\tdata\n", blob.trim()).as_bytes(),
    );
    let commit = git(repo, &["commit-tree", tree.trim(), "-m", name]);
    update_ref(repo, &format!("refs/heads/{name}"), commit.trim());
}
