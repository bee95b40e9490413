//! Discovery: the mirror list's `[discover]` table, and the run that turns what Backlog's API
//! lists into mirrors.
//!
//! Why: a repository added on Backlog but forgotten in the list was never mirrored, and nothing
//! said so. With `[discover]`, every repository of the projects the API key's user belongs to
//! becomes a mirror named `PROJECT/repo`, merged with `[defaults]` as a listed mirror is.
//! - Names: `PROJECT/repo` is what the webhook sends as `--repo` and what a listed mirror's
//!   identity already was, so a repository moves between the list and discovery without a new
//!   cache, and its cache is `<cache-dir>/PROJECT/repo.git`.
//! - Targets: `codecommit-prefix` + repo (as a listed Backlog mirror), or a `target` pattern
//!   with `{project}` and `{repo}`. Two discovered repositories with one target are refused,
//!   both, naming each other (`MirrorList::check_targets`); a listed mirror keeps its target.
//! - The list wins: a `[[mirror]]` of the same name or Backlog identity replaces the discovered
//!   one, which is reported as `listed`.
//! - Vanished: a cache `<cache-dir>/PROJECT/repo.git` that the filters cover but the API no
//!   longer lists is reported, never deleted, and its target is left alone: deleting is a
//!   person's decision. Without a kept cache directory there is nothing to compare with.
//! - With `--repo`, only the named projects' repositories are asked for, not the whole space.
//!
//! The API's failures do not stop the listed mirrors: they are synced, and the run's exit code
//! carries the failure (1), as one mirror's failure would.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use globset::{Glob, GlobSet, GlobSetBuilder};
use serde::Serialize;

use crate::base::error;
use crate::base::text::clip;
use crate::base::url::{RemoteUrl, Scheme};
use crate::settings::mirror_list::{
    self, CODECOMMIT_PREFIX, DISCOVER_ONLY, Layer, Lines, MirrorList, Raw, Setting, Value,
};
use crate::transport::backlog_api::{ApiError, BacklogApi};
use crate::transport::secret_source::SecretSource;

/// Keys of `[discover]` besides the API key's three.
const KEYS: &[&str] = &[
    "api-url",
    "projects",
    "exclude-projects",
    "repositories",
    "exclude-repositories",
    "archived",
    "all-projects",
    "source-url",
    "target",
];

/// Which of the repository's URLs becomes the mirror's source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SourceUrl {
    Ssh,
    Https,
}

/// The `[discover]` table, checked.
#[derive(Debug)]
pub(crate) struct Discover {
    line: usize,
    key: SecretSource,
    /// Which key source to fix, as a person reads it.
    key_named: String,
    api: String,
    projects: Globs,
    exclude_projects: Globs,
    repositories: Globs,
    exclude_repositories: Globs,
    archived: bool,
    all_projects: bool,
    source_url: SourceUrl,
    target: Option<String>,
    region: Option<String>,
    pub(crate) network_timeout: Duration,
    retries: u32,
    cache_dir: PathBuf,
}

/// Glob patterns on a project key or a repository name (`*` any run of characters).
#[derive(Debug)]
struct Globs {
    set: GlobSet,
    empty: bool,
}

impl Globs {
    fn matches(&self, name: &str) -> bool {
        !self.empty && self.set.is_match(name)
    }
}

impl Discover {
    /// The list's `[discover]` table, if it has one, checked against the layers it runs with:
    /// the API key's source from the table or the command line (which wins), the space,
    /// region, timeout and cache directory from `[defaults]` and the command line. Nothing is
    /// asked of the network.
    pub(crate) fn from_list(list: &mut MirrorList) -> anyhow::Result<Option<Discover>> {
        let Some(table) = list.discover.take() else {
            return Ok(None);
        };
        let cmd = mirror_list::sync_command();
        let lines = Lines::new(&list.file, "");
        let (defaults, explicit) = (&list.defaults, &list.explicit);
        let line = table.line;
        let mut keys: BTreeMap<String, Setting> = BTreeMap::new();
        let mut strings: BTreeMap<&str, (String, usize)> = BTreeMap::new();
        let mut lists: BTreeMap<&str, (Vec<String>, usize)> = BTreeMap::new();
        let mut switches: BTreeMap<&str, bool> = BTreeMap::new();
        for (name, value, at) in &table.keys {
            let (name, at) = (name.as_str(), *at);
            let wrong = |what: &str| lines.error_at(at, format!("[discover] key '{name}' {what}"));
            if let Some(known) = DISCOVER_ONLY.iter().find(|k| **k == name) {
                let Raw::Text(text) = value else {
                    return Err(wrong("must be a string"));
                };
                keys.insert(
                    known.to_string(),
                    Setting {
                        layer: Layer::Mirror,
                        value: Value::Values(vec![text.into()]),
                        line: Some(at),
                    },
                );
                continue;
            }
            let Some(known) = KEYS.iter().find(|k| **k == name) else {
                return Err(lines.error_at(
                    at,
                    format!(
                        "unknown key '{name}' in [discover]: its keys are {}, {}",
                        DISCOVER_ONLY.join(", "),
                        KEYS.join(", ")
                    ),
                ));
            };
            match (*known, value) {
                ("archived" | "all-projects", Raw::Switch(b)) => {
                    switches.insert(known, *b);
                }
                ("archived" | "all-projects", _) => return Err(wrong("must be true or false")),
                ("api-url" | "source-url" | "target", Raw::Text(text)) => {
                    strings.insert(known, (text.clone(), at));
                }
                ("api-url" | "source-url" | "target", _) => return Err(wrong("must be a string")),
                (_, Raw::Text(text)) => {
                    lists.insert(known, (vec![text.clone()], at));
                }
                (_, Raw::List(items)) => {
                    lists.insert(known, (items.clone(), at));
                }
                _ => return Err(wrong("must be a string or a list of strings")),
            }
        }
        // The run's settings as any mirror gets them: [defaults], then the table's key source,
        // then the command line.
        let mut chosen = mirror_list::choose(&cmd, &[defaults, &keys, explicit]);
        chosen.remove(CODECOMMIT_PREFIX);
        let base = mirror_list::parse_args(&cmd, &lines, "[discover]", line, &chosen)?;
        let key = SecretSource::given(
            "backlog-api-key",
            base.backlog_api_key_ssm.as_ref(),
            base.backlog_api_key_env.as_ref(),
            base.backlog_api_key_file.as_ref(),
        )
        .ok_or_else(|| {
            lines.error_at(
                line,
                "[discover] needs the Backlog API key: give backlog-api-key-ssm (or -env, -file) \
                 in [discover], or --backlog-api-key-ssm (BACKLOG_MIRROR_BACKLOG_API_KEY_SSM)",
            )
        })?;
        let key_flag = key.flag().trim_start_matches('-').to_string();
        let key_named = match chosen.get(&key_flag).and_then(|s| s.line) {
            Some(at) => format!("[discover] {key_flag} ({}:{at})", lines.file()),
            None => format!(
                "{} (or {})",
                key.flag(),
                format!("BACKLOG_MIRROR_{key_flag}")
                    .to_uppercase()
                    .replace('-', "_")
            ),
        };
        key.check_local()
            .map_err(|e| lines.error_at(line, format!("[discover]: {}", error::one_line(&e))))?;
        let api = match strings.get("api-url") {
            Some((raw, at)) => api_url(raw).map_err(|why| {
                lines.error_at(*at, format!("[discover] key 'api-url' '{raw}' {why}"))
            })?,
            None => space_api(&base).map_err(|why| lines.error_at(line, why))?,
        };
        let source_url = match strings.get("source-url") {
            None => SourceUrl::Ssh,
            Some((v, _)) if v == "ssh" => SourceUrl::Ssh,
            Some((v, _)) if v == "https" => SourceUrl::Https,
            Some((v, at)) => {
                return Err(lines.error_at(
                    *at,
                    format!(
                        "[discover] key 'source-url' is '{}': give \"ssh\" (the repository's \
                         sshUrl) or \"https\" (its httpUrl)",
                        clip(v, 100)
                    ),
                ));
            }
        };
        let target = strings.get("target").cloned();
        match &target {
            Some((pattern, at)) if !pattern.contains("{repo}") => {
                return Err(lines.error_at(
                    *at,
                    "[discover] key 'target' must contain {repo} (and may contain {project}): \
                     each repository needs its own target",
                ));
            }
            None if !defaults.contains_key(CODECOMMIT_PREFIX) => {
                return Err(lines.error_at(
                    line,
                    "[discover] needs a target for each repository it finds: codecommit-prefix \
                     in [defaults] (CodeCommit repository = prefix + repository name), or \
                     target = \"/srv/git/{project}/{repo}.git\" in [discover]",
                ));
            }
            _ => {}
        }
        let globs = |key: &str, default: &[&str]| -> anyhow::Result<Globs> {
            let (patterns, at) = match lists.get(key) {
                Some((patterns, at)) => (patterns.clone(), *at),
                None => (default.iter().map(|p| p.to_string()).collect(), line),
            };
            build_globs(&patterns)
                .map_err(|why| lines.error_at(at, format!("[discover] key '{key}': {why}")))
        };
        Ok(Some(Discover {
            line,
            key,
            key_named,
            api,
            projects: globs("projects", &["*"])?,
            exclude_projects: globs("exclude-projects", &[])?,
            repositories: globs("repositories", &["*"])?,
            exclude_repositories: globs("exclude-repositories", &[])?,
            archived: switches.get("archived").copied().unwrap_or(false),
            all_projects: switches.get("all-projects").copied().unwrap_or(false),
            source_url,
            target: target.map(|(t, _)| t),
            region: base.region.clone().filter(|r| !r.trim().is_empty()),
            network_timeout: base.network_timeout.unwrap_or(Duration::from_secs(120)),
            retries: base.retries.unwrap_or(2),
            cache_dir: match &base.cache_dir {
                Some(dir) => dir.clone(),
                None => crate::settings::config::default_cache_dir()?,
            },
        }))
    }

    fn project_selected(&self, key: &str) -> bool {
        self.projects.matches(key) && !self.exclude_projects.matches(key)
    }

    fn repository_selected(&self, name: &str) -> bool {
        self.repositories.matches(name) && !self.exclude_repositories.matches(name)
    }
}

fn build_globs(patterns: &[String]) -> Result<Globs, String> {
    let mut set = GlobSetBuilder::new();
    for pattern in patterns {
        if pattern.trim().is_empty() {
            return Err("a pattern is empty; give e.g. \"*\" or \"APP_*\"".to_string());
        }
        set.add(Glob::new(pattern).map_err(|e| format!("'{pattern}' is not a pattern: {e}"))?);
    }
    Ok(Globs {
        set: set.build().map_err(|e| e.to_string())?,
        empty: patterns.is_empty(),
    })
}

/// `api-url`: HTTPS, or HTTP to this machine only (the key travels in the query string).
fn api_url(raw: &str) -> Result<String, String> {
    let url = url::Url::parse(raw.trim()).map_err(|e| format!("is not a URL ({e})"))?;
    let loopback = match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        "http" => {
            return Err(
                "is plain HTTP: the API key travels in its query string, so give an \
                        https:// URL"
                    .to_string(),
            );
        }
        _ => return Err("is not an https:// URL".to_string()),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("holds credentials: the API key goes in backlog-api-key-*".to_string());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(
            "has a query or fragment: give the base URL, e.g. https://example.backlog.jp"
                .to_string(),
        );
    }
    Ok(url.as_str().trim_end_matches('/').to_string())
}

/// `https://SPACE.DOMAIN`, from `backlog-space` and `backlog-domain` (or their variables).
fn space_api(base: &crate::settings::flags::SyncArgs) -> Result<String, String> {
    use crate::settings::config::flag_or_env;
    let space = flag_or_env(&base.backlog_space, "BACKLOG_SPACE_KEY").ok_or(
        "[discover] needs the space: backlog-space in [defaults] (or --backlog-space), or \
         api-url in [discover]",
    )?;
    let domain = flag_or_env(&base.backlog_domain, "BACKLOG_DOMAIN_NAME")
        .unwrap_or_else(|| "backlog.jp".to_string());
    if space.is_empty() || !space.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        return Err(format!(
            "backlog-space '{}' is not a Backlog space key (letters, digits and '-')",
            clip(&space, 100)
        ));
    }
    if domain != "backlog.jp" && domain != "backlog.com" {
        return Err(format!(
            "backlog-domain '{}' must be backlog.jp or backlog.com (or give api-url in \
             [discover])",
            clip(&domain, 100)
        ));
    }
    Ok(format!("https://{space}.{domain}"))
}

/// A project key as Backlog makes them (letters, digits, `_`): safe in a URL path and a file
/// name.
fn project_key_ok(key: &str) -> bool {
    !key.is_empty() && key.len() <= 64 && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// What discovery found, for the summary and its JSON.
#[derive(Debug, Default, Serialize)]
pub(crate) struct Discovery {
    /// The API's base URL (never with the key).
    pub(crate) api: String,
    /// `space`: every project was asked; `repo`: only the projects `--repo` names.
    pub(crate) scope: &'static str,
    pub(crate) projects: Vec<ProjectFound>,
    pub(crate) repositories: Vec<RepositoryFound>,
    /// Why discovery failed as a whole or for a project (the first), or null.
    pub(crate) error: Option<String>,
    /// 0, or the exit code its failure adds to the run's.
    pub(crate) exit_code: i32,
}

#[derive(Debug, Serialize)]
pub(crate) struct ProjectFound {
    pub(crate) key: String,
    pub(crate) name: String,
    pub(crate) archived: bool,
    /// `included`, `excluded` (the filters), `archived` (skipped), `unusable` (a key that is
    /// not a project key), `not_found`, `failed` (listing its repositories failed).
    pub(crate) status: &'static str,
    pub(crate) reason: Option<String>,
}

#[derive(Debug, Serialize)]
pub(crate) struct RepositoryFound {
    pub(crate) project: String,
    pub(crate) name: String,
    /// The mirror it is synced as (its own, or the listed one that wins), if any.
    pub(crate) mirror: Option<String>,
    /// `mirrored` (a discovered mirror), `listed` (a `[[mirror]]` of that name or identity
    /// wins), `excluded` (the filters), `unusable` (no usable name or URL), `vanished` (a cache
    /// without a repository on Backlog any more).
    pub(crate) status: &'static str,
    pub(crate) reason: Option<String>,
}

impl Discovery {
    fn fail(&mut self, err: &anyhow::Error) {
        let code = error::exit_code(err);
        if self.error.is_none() {
            self.error = Some(error::one_line(err));
        }
        if error::severity(code) > error::severity(self.exit_code) {
            self.exit_code = code;
        }
    }

    /// The summary's lines about discovery, before the mirrors'.
    pub(crate) fn human(&self) -> Vec<String> {
        let count = |status: &str| {
            self.repositories
                .iter()
                .filter(|r| r.status == status)
                .count()
        };
        let included = self
            .projects
            .iter()
            .filter(|p| p.status == "included")
            .count();
        let mut lines = vec![format!(
            "discovery ({}): {} project{} asked, {} repositories: {} mirrored, {} listed, {} \
             excluded, {} unusable, {} vanished",
            self.api,
            included,
            if included == 1 { "" } else { "s" },
            self.repositories.len() - count("vanished"),
            count("mirrored"),
            count("listed"),
            count("excluded"),
            count("unusable"),
            count("vanished"),
        )];
        for r in &self.repositories {
            if r.status == "vanished" || r.status == "unusable" {
                lines.push(format!(
                    "  {}/{} {}: {}",
                    r.project,
                    r.name,
                    r.status,
                    r.reason.as_deref().unwrap_or("")
                ));
            }
        }
        if let Some(error) = &self.error {
            lines.push(format!(
                "  discovery FAILED (exit {}): {error}",
                self.exit_code
            ));
        }
        lines
    }
}

/// Ask the API what `d` covers and add each repository found to `list` as a discovered mirror;
/// with `wanted` (`--repo`), only the projects those names need. A failure of the API is kept
/// in the answer (the listed mirrors still run); an error is a mistake in the list's settings.
pub(crate) fn run(
    d: &Discover,
    list: &mut MirrorList,
    wanted: &[String],
) -> anyhow::Result<Discovery> {
    let wanted: Vec<&str> = wanted
        .iter()
        .map(|w| w.trim())
        .filter(|w| !w.is_empty())
        .collect();
    let mut found = Discovery {
        api: d.api.clone(),
        scope: if wanted.is_empty() { "space" } else { "repo" },
        ..Discovery::default()
    };
    // Only names no listed mirror answers need the API.
    let asked: Vec<(&str, &str)> = wanted
        .iter()
        .filter(|w| list.listed(w).is_none())
        .filter_map(|w| w.split_once('/'))
        .collect();
    if !wanted.is_empty() && asked.is_empty() {
        return Ok(found);
    }
    let key = match d.key.read(d.region.as_deref()) {
        Ok(key) => key,
        Err(err) => {
            found.fail(&err);
            return Ok(found);
        }
    };
    let http = match crate::transport::http::shared(d.network_timeout) {
        Ok(http) => http,
        Err(err) => {
            found.fail(&err);
            return Ok(found);
        }
    };
    let api = BacklogApi::new(http, &d.api, key, &d.key_named, d.retries);
    // The projects to ask, in order.
    let mut projects: Vec<String> = Vec::new();
    if wanted.is_empty() {
        let listed = match api.projects(d.archived, d.all_projects) {
            Ok(listed) => listed,
            Err(err) => {
                found.fail(&err);
                return Ok(found);
            }
        };
        let mut listed = listed;
        listed.sort_by(|a, b| a.project_key.cmp(&b.project_key));
        for p in listed {
            let (status, reason) = if !project_key_ok(&p.project_key) {
                ("unusable", Some("not a Backlog project key".to_string()))
            } else if !d.project_selected(&p.project_key) {
                ("excluded", None)
            } else if p.archived && !d.archived {
                (
                    "archived",
                    Some("archived; set archived = true to mirror it".to_string()),
                )
            } else {
                projects.push(p.project_key.clone());
                ("included", None)
            };
            found.projects.push(ProjectFound {
                key: clip(&p.project_key, 100),
                name: clip(&p.name, 200),
                archived: p.archived,
                status,
                reason,
            });
        }
    } else {
        for (project, repo) in &asked {
            if projects.iter().any(|p| p == project) {
                continue;
            }
            let selected = project_key_ok(project) && d.project_selected(project);
            if selected && d.repository_selected(repo) {
                projects.push(project.to_string());
            } else if !found
                .repositories
                .iter()
                .any(|r| r.project == *project && r.name == *repo)
            {
                found.repositories.push(RepositoryFound {
                    project: clip(project, 100),
                    name: clip(repo, 200),
                    mirror: None,
                    status: "excluded",
                    reason: Some("[discover]'s filters leave it out".to_string()),
                });
            }
        }
    }
    let mut unknown: BTreeSet<String> = BTreeSet::new();
    for project in &projects {
        let repos = match api.repositories(project) {
            Ok(repos) => repos,
            Err(err) => {
                let not_found = err
                    .downcast_ref::<ApiError>()
                    .is_some_and(|e| matches!(e, ApiError::NotFound { .. }));
                let status = if not_found { "not_found" } else { "failed" };
                // A project --repo names that does not exist is no failure of the API: the
                // name matches nothing, which the selection reports.
                if !(not_found && found.scope == "repo") {
                    found.fail(&err);
                }
                unknown.insert(project.clone());
                match found.projects.iter_mut().find(|p| &p.key == project) {
                    Some(p) => {
                        p.status = status;
                        p.reason = Some(error::one_line(&err));
                    }
                    None => found.projects.push(ProjectFound {
                        key: project.clone(),
                        name: String::new(),
                        archived: false,
                        status,
                        reason: Some(error::one_line(&err)),
                    }),
                }
                continue;
            }
        };
        if found.scope == "repo" && !found.projects.iter().any(|p| &p.key == project) {
            found.projects.push(ProjectFound {
                key: project.clone(),
                name: String::new(),
                archived: false,
                status: "included",
                reason: None,
            });
        }
        let mut repos = repos;
        repos.sort_by(|a, b| a.name.cmp(&b.name));
        for repo in repos {
            if found.scope == "repo" && !asked.contains(&(project.as_str(), repo.name.as_str())) {
                continue;
            }
            let entry = classify(d, list, project, &repo)?;
            found.repositories.push(entry);
        }
    }
    if found.scope == "space" {
        vanished(d, list, &unknown, &mut found);
    }
    Ok(found)
}

/// What becomes of one repository the API listed; a mirror is added for it when it is usable.
fn classify(
    d: &Discover,
    list: &mut MirrorList,
    project: &str,
    repo: &crate::transport::backlog_api::Repository,
) -> anyhow::Result<RepositoryFound> {
    let name = format!("{project}/{}", repo.name);
    let mut entry = RepositoryFound {
        project: project.to_string(),
        name: clip(&repo.name, 200),
        mirror: None,
        status: "mirrored",
        reason: None,
    };
    if !d.repository_selected(&repo.name) {
        entry.status = "excluded";
        return Ok(entry);
    }
    if !mirror_list::valid_name(&name) {
        entry.status = "unusable";
        entry.reason = Some(
            "its name cannot name a mirror (letters, digits, '.', '_', '-'; at most 100 \
             characters with the project): give it a [[mirror]] table of its own"
                .to_string(),
        );
        return Ok(entry);
    }
    if let Some(listed) = list.listed(&name) {
        entry.status = "listed";
        entry.mirror = Some(listed.name.clone());
        entry.reason = Some(format!(
            "the list's mirror '{}' (line {}) wins",
            listed.name,
            listed.line_of("name")
        ));
        return Ok(entry);
    }
    let (field, url) = match d.source_url {
        SourceUrl::Ssh => ("sshUrl", repo.ssh_url.as_deref()),
        SourceUrl::Https => ("httpUrl", repo.http_url.as_deref()),
    };
    let usable = url
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(|u| match RemoteUrl::parse(u) {
            Ok(parsed) if parsed.scheme() == Scheme::Local => {
                Err("is a path on this machine, not a remote".to_string())
            }
            Ok(_) => Ok(u.to_string()),
            Err(why) => Err(why),
        });
    let source = match usable {
        Some(Ok(source)) => source,
        Some(Err(why)) => {
            entry.status = "unusable";
            entry.reason = Some(format!(
                "its {field} '{}' {why}",
                clip(
                    &crate::base::secret::redact_raw(url.unwrap_or_default()),
                    200
                )
            ));
            return Ok(entry);
        }
        None => {
            entry.status = "unusable";
            entry.reason = Some(format!("the API gave no {field}"));
            return Ok(entry);
        }
    };
    let target = d.target.as_ref().map(|pattern| {
        pattern
            .replace("{project}", project)
            .replace("{repo}", &repo.name)
    });
    list.add_discovered(project, &repo.name, &source, target.as_deref(), d.line)?;
    entry.mirror = Some(name);
    Ok(entry)
}

/// Caches of repositories the filters cover that are no longer on Backlog: reported, never
/// deleted. Projects whose listing failed (`unknown`) are not judged.
fn vanished(d: &Discover, list: &MirrorList, unknown: &BTreeSet<String>, found: &mut Discovery) {
    let Ok(projects) = std::fs::read_dir(&d.cache_dir) else {
        return;
    };
    let mut gone = Vec::new();
    for project in projects.flatten() {
        let key = project.file_name().to_string_lossy().into_owned();
        if !project_key_ok(&key) || !d.project_selected(&key) || unknown.contains(&key) {
            continue;
        }
        let Ok(repos) = std::fs::read_dir(project.path()) else {
            continue;
        };
        for repo in repos.flatten() {
            let file = repo.file_name().to_string_lossy().into_owned();
            let Some(name) = file.strip_suffix(".git") else {
                continue;
            };
            let mirror = format!("{key}/{name}");
            // Only what a mirror could have made: anything else planted there is no mirror.
            if !mirror_list::valid_name(&mirror)
                || !repo.path().join("HEAD").is_file()
                || !d.repository_selected(name)
                || list.mirrors.iter().any(|m| m.name == mirror)
            {
                continue;
            }
            gone.push(RepositoryFound {
                project: key.clone(),
                name: name.to_string(),
                mirror: Some(mirror),
                status: "vanished",
                reason: Some(format!(
                    "no longer listed by the API; its cache {} and its target are kept: delete \
                     them when they are no longer wanted",
                    repo.path().display()
                )),
            });
        }
    }
    gone.sort_by(|a, b| (&a.project, &a.name).cmp(&(&b.project, &b.name)));
    for entry in &gone {
        tracing::warn!(
            "discovery: {}/{} {}",
            entry.project,
            entry.name,
            entry.reason.as_deref().unwrap_or_default()
        );
    }
    found.repositories.extend(gone);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_api_url_is_https_or_loopback_http_without_credentials() {
        assert_eq!(
            api_url("https://example.backlog.jp/").unwrap(),
            "https://example.backlog.jp"
        );
        assert_eq!(
            api_url("http://127.0.0.1:8080").unwrap(),
            "http://127.0.0.1:8080"
        );
        assert!(api_url("http://backlog.example.com").is_err());
        assert!(api_url("https://u:p@example.backlog.jp").is_err());
        assert!(api_url("https://example.backlog.jp/?apiKey=x").is_err());
        assert!(api_url("ftp://example").is_err());
    }

    #[test]
    fn patterns_select_and_exclude() {
        let all = build_globs(&["*".to_string()]).unwrap();
        let none = build_globs(&[]).unwrap();
        let archive = build_globs(&["*-archive".to_string()]).unwrap();
        assert!(all.matches("app") && !none.matches("app"));
        assert!(archive.matches("old-archive") && !archive.matches("app"));
        assert!(build_globs(&["".to_string()]).is_err());
        assert!(build_globs(&["a[".to_string()]).is_err());
    }

    #[test]
    fn project_keys_are_letters_digits_and_underscores() {
        assert!(project_key_ok("PROJ_1"));
        for bad in ["", "../x", "A/B", "A B", "A.git", &"A".repeat(65)] {
            assert!(!project_key_ok(bad), "{bad}");
        }
    }
}
