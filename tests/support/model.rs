//! A seeded model of a hosted repository's life, for the differential suite: a bare source
//! repository built and changed round by round through the real git CLI with the edits a mirror
//! meets (commits, merges, force-moves, deletions and recreations, tags of every kind, tag
//! chains, pull-request heads on side commits, notes, a new default branch, gc, a source that
//! empties). Every choice comes from one small PRNG and every date is fixed, so a seed always
//! gives the same object ids: a failure a seed finds is replayed by that seed.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::{git, git_input, head_ref, init_bare, refs};

/// splitmix64: tiny, fast, and the same on every platform.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    pub fn percent(&mut self, p: usize) -> bool {
        self.below(100) < p
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// One kind of change to the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Edit {
    /// 1-3 commits on a branch (a fast-forward).
    Commit,
    /// A merge (sometimes an octopus) on a branch, of another tip or an old commit.
    Merge,
    /// A branch made at an old commit, sometimes with a commit of its own, sometimes under a
    /// name deleted earlier.
    BranchFromOld,
    /// A branch force-moved back, to an ancestor or another older commit.
    ForceOlder,
    /// A branch force-moved to unrelated history (a new root) or a pull request's head.
    ForceUnrelated,
    /// A branch deleted (the default branch moves elsewhere first, as a host does).
    DeleteBranch,
    /// A ref deleted earlier comes back at the very id it had.
    Resurrect,
    /// A ref that moved (or appeared, or went) in the last round goes back to where it was.
    MoveBack,
    LightTag,
    AnnotatedTag,
    /// An annotated tag of an annotated tag (a tag chain).
    TagOfTag,
    /// A tag, light or annotated, on a tree or a blob.
    TagOfObject,
    /// A tag moved to another commit (light, or a new annotated tag of the same name).
    MoveTag,
    DeleteTag,
    /// `refs/pull/N/head` on 1-3 side commits that no branch holds.
    PullHead,
    /// A pull request's head gets a commit, or is rebased onto another base (forced).
    UpdatePull,
    DeletePull,
    /// A note (`refs/notes/commits`) on a commit.
    Note,
    DeleteNotes,
    /// `HEAD` names another branch (the default branch changes).
    HeadChange,
    /// `git gc --prune=now`: unreachable objects (tips force-moved away) are gone for good.
    Gc,
    /// More than half the refs deleted at once (what the delete guard is for).
    MassDelete,
    /// Every ref deleted: the source lists nothing.
    Wipe,
    /// A round that changes nothing.
    Nothing,
}

impl Edit {
    pub const ALL: [Edit; 24] = [
        Edit::Commit,
        Edit::Merge,
        Edit::BranchFromOld,
        Edit::ForceOlder,
        Edit::ForceUnrelated,
        Edit::DeleteBranch,
        Edit::Resurrect,
        Edit::MoveBack,
        Edit::LightTag,
        Edit::AnnotatedTag,
        Edit::TagOfTag,
        Edit::TagOfObject,
        Edit::MoveTag,
        Edit::DeleteTag,
        Edit::PullHead,
        Edit::UpdatePull,
        Edit::DeletePull,
        Edit::Note,
        Edit::DeleteNotes,
        Edit::HeadChange,
        Edit::Gc,
        Edit::MassDelete,
        Edit::Wipe,
        Edit::Nothing,
    ];

    /// How often a round picks this edit, relative to the others (`Nothing` is decided per
    /// round, not picked).
    fn weight(self) -> usize {
        match self {
            Edit::Commit => 20,
            Edit::Merge | Edit::PullHead => 5,
            Edit::BranchFromOld => 6,
            Edit::ForceOlder | Edit::DeleteBranch | Edit::LightTag | Edit::AnnotatedTag => 4,
            Edit::ForceUnrelated
            | Edit::Resurrect
            | Edit::MoveBack
            | Edit::DeleteTag
            | Edit::UpdatePull
            | Edit::DeletePull
            | Edit::Note
            | Edit::HeadChange
            | Edit::TagOfTag
            | Edit::TagOfObject => 3,
            Edit::MoveTag | Edit::Gc | Edit::MassDelete => 2,
            Edit::DeleteNotes | Edit::Wipe => 1,
            Edit::Nothing => 0,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ModelOptions {
    /// Commits on `main` at the start; 0 starts with an empty source (no refs at all).
    pub commits: usize,
    /// Refs besides `main` at the start: branches, tags and pull-request heads at old commits.
    pub extra_refs: usize,
    /// At most this many edits a round (at least one, unless the round does nothing).
    pub max_edits: usize,
    /// Whether a round may delete every ref.
    pub wipe: bool,
}

impl Default for ModelOptions {
    fn default() -> Self {
        ModelOptions {
            commits: 12,
            extra_refs: 8,
            max_edits: 4,
            wipe: true,
        }
    }
}

impl ModelOptions {
    /// A size drawn from `seed`: from a couple of commits and no other ref to 40 commits and 30
    /// refs, with up to 6 edits a round, so many seeds cover small and larger sources alike.
    pub fn drawn(seed: u64) -> ModelOptions {
        let mut rng = Rng::new(seed ^ 0x5EED_0F51_2300);
        ModelOptions {
            commits: 2 + rng.below(39),
            extra_refs: rng.below(31),
            max_edits: 2 + rng.below(5),
            wipe: true,
        }
    }
}

/// Where a new commit's parent comes from: an object id, or a commit made earlier in the same
/// `fast-import` stream (its index).
#[derive(Debug, Clone)]
enum Parent {
    Id(String),
    New(usize),
}

/// The source repository and what the model knows it holds. `refs()` is the truth the
/// repository is made to match at the end of every round (checked).
pub struct Model {
    repo: PathBuf,
    marks: PathBuf,
    rng: Rng,
    options: ModelOptions,
    refs: BTreeMap<String, String>,
    head: String,
    /// Every commit made on a line of history (not notes commits) still in the repository, in
    /// the order they were made.
    commits: Vec<String>,
    /// Annotated tag objects still in the repository.
    tag_objects: Vec<String>,
    /// The type of every object the model made or named, while it exists.
    types: BTreeMap<String, &'static str>,
    /// The last id of every ref ever deleted.
    graveyard: BTreeMap<String, String>,
    /// The refs as the previous round left them.
    last_round: BTreeMap<String, String>,
    /// The contents the next commits write, line by line: each commit changes a line or two, so
    /// versions of a file delta against each other as real files do.
    files: Vec<Vec<String>>,
    clock: u64,
    serial: usize,
    counts: BTreeMap<Edit, usize>,
}

const TMP_REF: &str = "refs/model/tmp";

impl Model {
    /// A bare source at `repo` (created here) with the history `options` and `seed` give.
    pub fn new(repo: &Path, seed: u64, options: ModelOptions) -> Model {
        init_bare(repo);
        let mut rng = Rng::new(seed);
        let files = (0..10)
            .map(|_| {
                let lines = 8 + rng.below(40);
                (0..lines).map(|_| sentence(&mut rng)).collect()
            })
            .collect();
        let mut model = Model {
            repo: repo.to_path_buf(),
            marks: repo.with_extension("marks"),
            rng,
            options,
            refs: BTreeMap::new(),
            head: "refs/heads/main".into(),
            commits: Vec::new(),
            tag_objects: Vec::new(),
            types: BTreeMap::new(),
            graveyard: BTreeMap::new(),
            last_round: BTreeMap::new(),
            files,
            clock: 0,
            serial: 0,
            counts: BTreeMap::new(),
        };
        model.initial_history();
        model.write_refs();
        model.last_round = model.refs.clone();
        model
    }

    pub fn repo(&self) -> &Path {
        &self.repo
    }

    /// Every ref of the source and the object it names.
    pub fn refs(&self) -> &BTreeMap<String, String> {
        &self.refs
    }

    /// The branch the source's `HEAD` names (it may not exist, once the source was emptied).
    pub fn head(&self) -> &str {
        &self.head
    }

    /// How many times each edit was made by `round` so far.
    pub fn counts(&self) -> &BTreeMap<Edit, usize> {
        &self.counts
    }

    /// One round of random edits, written to the repository. Returns what was done, one line
    /// an edit.
    pub fn round(&mut self) -> Vec<String> {
        let before = self.refs.clone();
        let mut log = Vec::new();
        if self.refs.is_empty() {
            log.push(self.rebirth());
        } else if self.rng.percent(8) {
            *self.counts.entry(Edit::Nothing).or_default() += 1;
            log.push("nothing".to_string());
        } else {
            let wanted = 1 + self.rng.below(self.options.max_edits.max(1));
            let mut attempts = 0;
            while log.len() < wanted && attempts < 200 {
                attempts += 1;
                let edit = self.choose();
                if let Some(done) = self.try_edit(edit) {
                    *self.counts.entry(edit).or_default() += 1;
                    log.push(done);
                }
                if self.refs.is_empty() {
                    break;
                }
            }
        }
        self.finish_round(before);
        log
    }

    /// A round of exactly these edits, in order (panics when one cannot be made: the test asked
    /// for a history this one is not).
    pub fn round_of(&mut self, edits: &[Edit]) -> Vec<String> {
        let before = self.refs.clone();
        let mut log = Vec::new();
        if self.refs.is_empty() {
            log.push(self.rebirth());
        }
        for &edit in edits {
            let done = self
                .try_edit(edit)
                .unwrap_or_else(|| panic!("{edit:?} cannot be made on {:?}", self.refs));
            *self.counts.entry(edit).or_default() += 1;
            log.push(done);
        }
        self.finish_round(before);
        log
    }

    fn finish_round(&mut self, before: BTreeMap<String, String>) {
        self.write_refs();
        self.last_round = before;
    }

    fn choose(&mut self) -> Edit {
        let kinds: Vec<Edit> = Edit::ALL
            .into_iter()
            .filter(|&e| e != Edit::Wipe || self.options.wipe)
            .collect();
        let total: usize = kinds.iter().map(|e| e.weight()).sum();
        let mut at = self.rng.below(total);
        for kind in kinds {
            if at < kind.weight() {
                return kind;
            }
            at -= kind.weight();
        }
        Edit::Commit
    }

    fn initial_history(&mut self) {
        if self.options.commits == 0 {
            return;
        }
        let messages = (0..self.options.commits).map(|i| format!("main {i}"));
        let specs = chain(None, messages);
        let ids = self.make_commits(&specs);
        self.refs.insert(
            "refs/heads/main".into(),
            ids.last().expect("a commit").clone(),
        );
        // A few pull requests with side commits of their own; the other refs at old commits.
        let side = (self.options.extra_refs / 4).min(3);
        let specs: Vec<(Vec<Parent>, String)> = (0..side)
            .map(|i| {
                let base = self.random_commit();
                (vec![Parent::Id(base)], format!("pull side {i}"))
            })
            .collect();
        for id in self.make_commits(&specs) {
            let name = format!("refs/pull/{}/head", self.fresh());
            self.refs.insert(name, id);
        }
        for _ in side..self.options.extra_refs {
            let at = self.random_commit();
            let n = self.fresh();
            match self.rng.below(5) {
                0 | 1 => {
                    self.refs.insert(format!("refs/heads/b{n}"), at);
                }
                2 => {
                    self.refs.insert(format!("refs/tags/l{n}"), at);
                }
                3 => {
                    let name = format!("v{n}");
                    let tag = self.mktag(&at, &name);
                    self.refs.insert(format!("refs/tags/{name}"), tag);
                }
                _ => {
                    self.refs.insert(format!("refs/pull/{n}/head"), at);
                }
            }
        }
    }

    /// After the source was emptied (or started empty): `main` again, on new history or at an
    /// old commit, and `HEAD` naming it.
    fn rebirth(&mut self) -> String {
        *self.counts.entry(Edit::Commit).or_default() += 1;
        self.head = "refs/heads/main".into();
        if !self.commits.is_empty() && self.rng.percent(50) {
            let at = self.random_commit();
            self.refs.insert("refs/heads/main".into(), at.clone());
            format!("main again, at the old commit {at}")
        } else {
            let ids = self.make_commits(&[(vec![], "a new start".into())]);
            self.refs.insert("refs/heads/main".into(), ids[0].clone());
            format!("main again, on a new root {}", ids[0])
        }
    }

    fn fresh(&mut self) -> usize {
        self.serial += 1;
        self.serial
    }

    fn names(&self, prefix: &str) -> Vec<String> {
        self.refs
            .keys()
            .filter(|n| n.starts_with(prefix))
            .cloned()
            .collect()
    }

    fn random_commit(&mut self) -> String {
        let i = self.rng.below(self.commits.len());
        self.commits[i].clone()
    }

    fn alive(&self, id: &str) -> bool {
        self.types.contains_key(id)
    }

    /// A name under `prefix` for a new ref: now and then one that was deleted earlier.
    fn new_name(&mut self, prefix: &str, make: impl Fn(usize) -> String) -> String {
        let dead: Vec<String> = self
            .graveyard
            .keys()
            .filter(|n| n.starts_with(prefix) && !self.refs.contains_key(*n))
            .cloned()
            .collect();
        if !dead.is_empty() && self.rng.percent(25) {
            return self.rng.pick(&dead).clone();
        }
        let n = self.fresh();
        make(n)
    }

    fn delete(&mut self, name: &str) {
        if let Some(id) = self.refs.remove(name) {
            self.graveyard.insert(name.to_string(), id);
        }
    }

    /// Make `edit` if the source allows it; what was done, or `None`.
    fn try_edit(&mut self, edit: Edit) -> Option<String> {
        let branches = self.names("refs/heads/");
        let tags = self.names("refs/tags/");
        let pulls = self.names("refs/pull/");
        let needs_commits = !matches!(
            edit,
            Edit::DeleteBranch
                | Edit::DeleteTag
                | Edit::DeletePull
                | Edit::DeleteNotes
                | Edit::HeadChange
                | Edit::Gc
                | Edit::Wipe
                | Edit::Nothing
                | Edit::MassDelete
                | Edit::MoveBack
                | Edit::Resurrect
        );
        if needs_commits && (self.commits.is_empty() || branches.is_empty()) {
            return None;
        }
        match edit {
            Edit::Commit => {
                let branch = self.rng.pick(&branches).clone();
                let n = 1 + self.rng.below(3);
                let messages = (0..n).map(|_| format!("work on {branch}"));
                let specs = chain(Some(&self.refs[&branch]), messages);
                let ids = self.make_commits(&specs);
                let tip = ids.last().expect("commits").clone();
                self.refs.insert(branch.clone(), tip.clone());
                Some(format!("{n} commit(s) on {branch}, now {tip}"))
            }
            Edit::Merge => {
                let branch = self.rng.pick(&branches).clone();
                let tip = self.refs[&branch].clone();
                let mut others: Vec<String> = branches
                    .iter()
                    .chain(pulls.iter())
                    .map(|n| self.refs[n].clone())
                    .filter(|id| *id != tip && self.types.get(id) == Some(&"commit"))
                    .collect();
                others.push(self.random_commit());
                let mut parents = vec![Parent::Id(tip.clone())];
                let arms = if self.rng.percent(20) { 2 } else { 1 };
                let mut picked = BTreeSet::new();
                for _ in 0..arms {
                    let other = self.rng.pick(&others).clone();
                    if other != tip && picked.insert(other.clone()) {
                        parents.push(Parent::Id(other));
                    }
                }
                if parents.len() < 2 {
                    return None;
                }
                let arms = parents.len() - 1;
                let id = self.make_commits(&[(parents, format!("merge into {branch}"))])[0].clone();
                self.refs.insert(branch.clone(), id.clone());
                Some(format!("merge of {arms} into {branch}, now {id}"))
            }
            Edit::BranchFromOld => {
                let base = self.random_commit();
                let name = self.new_name("refs/heads/", |n| match n % 3 {
                    0 => format!("refs/heads/b{n}"),
                    1 => format!("refs/heads/team/b{n}"),
                    _ => format!("refs/heads/release-{n}"),
                });
                let id = if self.rng.percent(50) {
                    self.make_commits(&[(vec![Parent::Id(base.clone())], format!("start {name}"))])
                        [0]
                    .clone()
                } else {
                    base.clone()
                };
                self.refs.insert(name.clone(), id.clone());
                Some(format!("{name} made from {base}, at {id}"))
            }
            Edit::ForceOlder => {
                let branch = self.rng.pick(&branches).clone();
                let tip = self.refs[&branch].clone();
                let to = if self.rng.percent(60) {
                    let ancestors: Vec<String> =
                        git(&self.repo, &["rev-list", "--max-count=30", &tip])
                            .lines()
                            .skip(1)
                            .map(str::to_string)
                            .collect();
                    if ancestors.is_empty() {
                        return None;
                    }
                    self.rng.pick(&ancestors).clone()
                } else {
                    self.random_commit()
                };
                if to == tip {
                    return None;
                }
                self.refs.insert(branch.clone(), to.clone());
                Some(format!("{branch} forced back from {tip} to {to}"))
            }
            Edit::ForceUnrelated => {
                let branch = self.rng.pick(&branches).clone();
                let tip = self.refs[&branch].clone();
                let heads: Vec<String> = pulls
                    .iter()
                    .map(|n| self.refs[n].clone())
                    .filter(|id| *id != tip)
                    .collect();
                let to = if !heads.is_empty() && self.rng.percent(50) {
                    self.rng.pick(&heads).clone()
                } else {
                    let n = 1 + self.rng.below(2);
                    let messages = (0..n).map(|_| format!("unrelated history for {branch}"));
                    let specs = chain(None, messages);
                    self.make_commits(&specs).last().expect("commits").clone()
                };
                self.refs.insert(branch.clone(), to.clone());
                Some(format!("{branch} forced from {tip} to unrelated {to}"))
            }
            Edit::DeleteBranch => {
                if branches.len() < 2 {
                    return None;
                }
                let branch = self.rng.pick(&branches).clone();
                let mut done = String::new();
                if branch == self.head {
                    let others: Vec<&String> = branches.iter().filter(|b| **b != branch).collect();
                    self.head = (*self.rng.pick(&others)).clone();
                    done = format!("HEAD moved to {} first; ", self.head);
                }
                self.delete(&branch);
                Some(format!("{done}{branch} deleted"))
            }
            Edit::Resurrect => {
                let dead: Vec<(String, String)> = self
                    .graveyard
                    .iter()
                    .filter(|(n, id)| !self.refs.contains_key(*n) && self.alive(id))
                    .map(|(n, id)| (n.clone(), id.clone()))
                    .collect();
                if dead.is_empty() {
                    return None;
                }
                let (name, id) = self.rng.pick(&dead).clone();
                self.refs.insert(name.clone(), id.clone());
                Some(format!("{name} recreated at its old id {id}"))
            }
            Edit::MoveBack => {
                let names: BTreeSet<&String> =
                    self.refs.keys().chain(self.last_round.keys()).collect();
                let moved: Vec<String> = names
                    .into_iter()
                    .filter(|n| self.refs.get(*n) != self.last_round.get(*n))
                    .filter(|n| self.last_round.get(*n).is_none_or(|id| self.alive(id)))
                    // The default branch stays: deleting it is DeleteBranch's business.
                    .filter(|n| **n != self.head || self.last_round.contains_key(*n))
                    .cloned()
                    .collect();
                if moved.is_empty() {
                    return None;
                }
                let name = self.rng.pick(&moved).clone();
                match self.last_round.get(&name).cloned() {
                    Some(id) => {
                        self.refs.insert(name.clone(), id.clone());
                        Some(format!("{name} back to {id}, where it was a round ago"))
                    }
                    None => {
                        self.delete(&name);
                        if self.names("refs/heads/").is_empty() {
                            // It was the only branch: keep it after all.
                            let id = self.graveyard[&name].clone();
                            self.refs.insert(name, id);
                            return None;
                        }
                        Some(format!(
                            "{name} deleted again: it did not exist a round ago"
                        ))
                    }
                }
            }
            Edit::LightTag => {
                let at = self.random_commit();
                let name = self.new_name("refs/tags/l", |n| format!("refs/tags/l{n}"));
                self.refs.insert(name.clone(), at.clone());
                Some(format!("light tag {name} at {at}"))
            }
            Edit::AnnotatedTag => {
                let at = self.random_commit();
                let name = self.new_name("refs/tags/v", |n| format!("refs/tags/v{n}"));
                let short = name.trim_start_matches("refs/tags/").to_string();
                let tag = self.mktag(&at, &short);
                self.refs.insert(name.clone(), tag.clone());
                Some(format!("annotated tag {name} ({tag}) of {at}"))
            }
            Edit::TagOfTag => {
                let inner: Vec<String> = self
                    .tag_objects
                    .iter()
                    .filter(|id| self.alive(id))
                    .cloned()
                    .collect();
                if inner.is_empty() {
                    return None;
                }
                // Mostly the newest tag, so chains grow deep.
                let of = if self.rng.percent(60) {
                    inner.last().expect("a tag").clone()
                } else {
                    self.rng.pick(&inner).clone()
                };
                let n = self.fresh();
                let tag = self.mktag(&of, &format!("chain{n}"));
                let name = format!("refs/tags/chain{n}");
                self.refs.insert(name.clone(), tag.clone());
                Some(format!("tag {name} ({tag}) of the tag {of}"))
            }
            Edit::TagOfObject => {
                let at = self.random_commit();
                let object = if self.rng.percent(50) {
                    let tree = git(&self.repo, &["rev-parse", &format!("{at}^{{tree}}")]);
                    self.types.insert(tree.clone(), "tree");
                    tree
                } else {
                    let listing = git(&self.repo, &["ls-tree", "-r", &at]);
                    let blobs: Vec<String> = listing
                        .lines()
                        .filter_map(|l| l.split_whitespace().nth(2).map(str::to_string))
                        .collect();
                    if blobs.is_empty() {
                        return None;
                    }
                    let blob = self.rng.pick(&blobs).clone();
                    self.types.insert(blob.clone(), "blob");
                    blob
                };
                let n = self.fresh();
                let name = format!("refs/tags/obj{n}");
                let kind = self.types[&object];
                let id = if self.rng.percent(50) {
                    self.mktag(&object, &format!("obj{n}"))
                } else {
                    object.clone()
                };
                self.refs.insert(name.clone(), id.clone());
                Some(format!("tag {name} ({id}) on the {kind} {object}"))
            }
            Edit::MoveTag => {
                if tags.is_empty() {
                    return None;
                }
                let name = self.rng.pick(&tags).clone();
                let at = self.random_commit();
                let id = if self.rng.percent(50) {
                    at.clone()
                } else {
                    self.mktag(&at, name.trim_start_matches("refs/tags/"))
                };
                let old = self
                    .refs
                    .insert(name.clone(), id.clone())
                    .unwrap_or_default();
                Some(format!("tag {name} moved from {old} to {id} (of {at})"))
            }
            Edit::DeleteTag | Edit::DeletePull => {
                let names = if edit == Edit::DeleteTag { tags } else { pulls };
                if names.is_empty() {
                    return None;
                }
                let name = self.rng.pick(&names).clone();
                self.delete(&name);
                Some(format!("{name} deleted"))
            }
            Edit::PullHead => {
                let base = self.random_commit();
                let name = self.new_name("refs/pull/", |n| format!("refs/pull/{n}/head"));
                let tip = self.side_commits(&base, &name);
                self.refs.insert(name.clone(), tip.clone());
                Some(format!("{name} on side commits from {base}, at {tip}"))
            }
            Edit::UpdatePull => {
                let heads: Vec<String> = pulls
                    .into_iter()
                    .filter(|n| self.types.get(&self.refs[n]) == Some(&"commit"))
                    .collect();
                if heads.is_empty() {
                    return None;
                }
                let name = self.rng.pick(&heads).clone();
                let old = self.refs[&name].clone();
                let (base, how) = if self.rng.percent(60) {
                    (old.clone(), "pushed to")
                } else {
                    (self.random_commit(), "rebased")
                };
                let tip = self.side_commits(&base, &name);
                self.refs.insert(name.clone(), tip.clone());
                Some(format!("{name} {how}: {old} -> {tip}"))
            }
            Edit::Note => {
                let on = self.random_commit();
                let notes = self.refs.get("refs/notes/commits").cloned();
                let id = self.note(notes.as_deref(), &on);
                self.refs.insert("refs/notes/commits".into(), id.clone());
                Some(format!("note on {on}: refs/notes/commits at {id}"))
            }
            Edit::DeleteNotes => {
                if !self.refs.contains_key("refs/notes/commits") {
                    return None;
                }
                self.delete("refs/notes/commits");
                Some("refs/notes/commits deleted".into())
            }
            Edit::HeadChange => {
                let others: Vec<String> =
                    branches.into_iter().filter(|b| *b != self.head).collect();
                if others.is_empty() || !self.refs.contains_key(&self.head) {
                    return None;
                }
                let from = std::mem::replace(&mut self.head, self.rng.pick(&others).clone());
                Some(format!("HEAD moved from {from} to {}", self.head))
            }
            Edit::Gc => {
                self.write_refs();
                git(&self.repo, &["gc", "-q", "--prune=now"]);
                let before = self.types.len();
                self.forget_pruned();
                Some(format!(
                    "gc --prune=now: {} object(s) the model knew are gone",
                    before - self.types.len()
                ))
            }
            Edit::MassDelete => {
                let all: Vec<String> = self.refs.keys().cloned().collect();
                let count = all.len() / 2 + 1;
                let mut deleted = Vec::new();
                for _ in 0..all.len() * 4 {
                    if deleted.len() == count {
                        break;
                    }
                    let name = self.rng.pick(&all).clone();
                    if name == self.head || !self.refs.contains_key(&name) {
                        continue;
                    }
                    self.delete(&name);
                    deleted.push(name);
                }
                if deleted.is_empty() {
                    return None;
                }
                Some(format!(
                    "{} of {} refs deleted at once: {}",
                    deleted.len(),
                    all.len(),
                    deleted.join(" ")
                ))
            }
            Edit::Wipe => {
                let all: Vec<String> = self.refs.keys().cloned().collect();
                for name in &all {
                    self.delete(name);
                }
                Some(format!("every ref deleted ({})", all.len()))
            }
            Edit::Nothing => Some("nothing".into()),
        }
    }

    /// 1-3 commits on top of `base` for the pull request `name`; the last one.
    fn side_commits(&mut self, base: &str, name: &str) -> String {
        let n = 1 + self.rng.below(3);
        let specs = chain(Some(base), (0..n).map(|_| format!("review for {name}")));
        self.make_commits(&specs).last().expect("commits").clone()
    }

    fn tick(&mut self) -> u64 {
        self.clock += 1;
        1_700_000_000 + self.clock * 60
    }

    /// Make commits with one `git fast-import` stream: each gets its parents and changes a line
    /// or two of one or two files (a root commit writes them fresh). Returns their ids.
    fn make_commits(&mut self, specs: &[(Vec<Parent>, String)]) -> Vec<String> {
        let mut stream = String::new();
        for (i, (parents, message)) in specs.iter().enumerate() {
            let time = self.tick();
            if parents.is_empty() {
                writeln!(stream, "reset {TMP_REF}").unwrap();
            }
            let message = format!("{message} ({})\n", self.clock);
            write!(
                stream,
                "commit {TMP_REF}\nmark :{}\n\
                 author Model Author <author@example.com> {time} +0000\n\
                 committer Model Committer <committer@example.com> {time} +0000\n\
                 data {}\n{message}",
                i + 1,
                message.len()
            )
            .unwrap();
            for (k, parent) in parents.iter().enumerate() {
                let word = if k == 0 { "from" } else { "merge" };
                match parent {
                    Parent::Id(id) => writeln!(stream, "{word} {id}").unwrap(),
                    Parent::New(j) => writeln!(stream, "{word} :{}", j + 1).unwrap(),
                }
            }
            for _ in 0..1 + usize::from(self.rng.percent(30)) {
                let f = self.rng.below(self.files.len());
                let line = self.rng.below(self.files[f].len());
                self.files[f][line] = sentence(&mut self.rng);
                if self.rng.percent(20) {
                    let at = self.rng.below(self.files[f].len());
                    let extra = sentence(&mut self.rng);
                    self.files[f].insert(at, extra);
                }
                let body = self.files[f].join("\n") + "\n";
                writeln!(stream, "M 100644 inline dir{}/file{f}.txt", f % 3).unwrap();
                write!(stream, "data {}\n{body}\n", body.len()).unwrap();
            }
            stream.push('\n');
        }
        let ids = self.fast_import(&stream, specs.len());
        for id in &ids {
            self.types.insert(id.clone(), "commit");
            self.commits.push(id.clone());
        }
        ids
    }

    /// A notes commit on top of `notes` (the current `refs/notes/commits`) adding a note to
    /// `on`.
    fn note(&mut self, notes: Option<&str>, on: &str) -> String {
        let time = self.tick();
        let text = format!("reviewed at {}\n", self.clock);
        let mut stream = String::new();
        if notes.is_none() {
            writeln!(stream, "reset {TMP_REF}").unwrap();
        }
        write!(
            stream,
            "commit {TMP_REF}\nmark :1\n\
             committer Model Committer <committer@example.com> {time} +0000\n\
             data 6\nnotes\n"
        )
        .unwrap();
        if let Some(notes) = notes {
            writeln!(stream, "from {notes}").unwrap();
        }
        write!(stream, "N inline {on}\ndata {}\n{text}\n", text.len()).unwrap();
        let id = self.fast_import(&stream, 1).remove(0);
        self.types.insert(id.clone(), "commit");
        id
    }

    /// Run one fast-import stream of `count` marked commits; their ids in mark order.
    fn fast_import(&self, stream: &str, count: usize) -> Vec<String> {
        let marks = format!("--export-marks={}", self.marks.display());
        let input = format!("{stream}done\n");
        git_input(
            &self.repo,
            &["fast-import", "--quiet", "--force", "--done", &marks],
            input.as_bytes(),
        );
        let text = std::fs::read_to_string(&self.marks).expect("fast-import marks");
        let mut ids = vec![String::new(); count];
        for line in text.lines() {
            let (mark, id) = line.split_once(' ').expect("a mark line");
            let n: usize = mark.trim_start_matches(':').parse().expect("a mark");
            ids[n - 1] = id.to_string();
        }
        assert!(ids.iter().all(|id| !id.is_empty()), "marks: {text}");
        ids
    }

    /// An annotated tag object named `name` of `object` (whose type the model knows).
    fn mktag(&mut self, object: &str, name: &str) -> String {
        let time = self.tick();
        let kind = self.types[object];
        let text = format!(
            "object {object}\ntype {kind}\ntag {name}\n\
             tagger Model Tagger <tagger@example.com> {time} +0000\n\nrelease {name}\n"
        );
        let id = git_input(&self.repo, &["mktag"], text.as_bytes());
        self.types.insert(id.clone(), "tag");
        self.tag_objects.push(id.clone());
        id
    }

    /// After gc: forget every object the repository no longer has.
    fn forget_pruned(&mut self) {
        let known: Vec<String> = self.types.keys().cloned().collect();
        let input = known.join("\n") + "\n";
        let answer = git_input(&self.repo, &["cat-file", "--batch-check"], input.as_bytes());
        let gone: BTreeSet<String> = answer
            .lines()
            .filter(|l| l.ends_with(" missing"))
            .filter_map(|l| l.split_whitespace().next().map(str::to_string))
            .collect();
        self.types.retain(|id, _| !gone.contains(id));
        self.commits.retain(|id| !gone.contains(id));
        self.tag_objects.retain(|id| !gone.contains(id));
    }

    /// Make the repository's refs and `HEAD` exactly the model's, in one transaction.
    fn write_refs(&mut self) {
        let actual = refs(&self.repo);
        let mut commands = String::new();
        for (name, id) in &self.refs {
            if actual.get(name) != Some(id) {
                writeln!(commands, "update {name} {id}").unwrap();
            }
        }
        for name in actual.keys() {
            if !self.refs.contains_key(name) {
                writeln!(commands, "delete {name}").unwrap();
            }
        }
        if !commands.is_empty() {
            git_input(&self.repo, &["update-ref", "--stdin"], commands.as_bytes());
        }
        if head_ref(&self.repo).as_deref() != Some(self.head.as_str()) {
            git(&self.repo, &["symbolic-ref", "HEAD", &self.head]);
        }
        assert_eq!(
            refs(&self.repo),
            self.refs,
            "the source is not what the model made"
        );
    }
}

/// A line of commits, one a message, the first on `base` (or a root commit).
fn chain(base: Option<&str>, messages: impl Iterator<Item = String>) -> Vec<(Vec<Parent>, String)> {
    messages
        .enumerate()
        .map(|(i, message)| {
            let parents = match (i, base) {
                (0, None) => vec![],
                (0, Some(base)) => vec![Parent::Id(base.to_string())],
                _ => vec![Parent::New(i - 1)],
            };
            (parents, message)
        })
        .collect()
}

fn sentence(rng: &mut Rng) -> String {
    const WORDS: [&str; 16] = [
        "mirror", "backlog", "commit", "branch", "delta", "object", "review", "deploy", "build",
        "tag", "fetch", "push", "prune", "cache", "lock", "plan",
    ];
    (0..6)
        .map(|_| WORDS[rng.below(WORDS.len())])
        .collect::<Vec<_>>()
        .join(" ")
}
