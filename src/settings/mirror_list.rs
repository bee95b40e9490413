//! The mirror list: a TOML file of `[[mirror]]` tables over a `[defaults]` table, each key one of
//! `sync`'s flags by its long name.
//!
//! Why keys are turned into a command line rather than deserialized into a struct of their own:
//! each mirror's settings are assembled as arguments and parsed by the very clap definition of
//! `sync`'s flags (`SyncArgs`). So every flag is a key, with the same value syntax, range checks
//! and exclusions, the day it is added, and no key has code of its own; a second definition
//! would drift from the flags the first time one was added to only one of them.
//!
//! Three layers, each above the one before: `[defaults]`, the mirror's own keys, and what the
//! command line or a `BACKLOG_MIRROR_*` variable gave explicitly (clap's value source tells it
//! from a default). A flag of a higher layer also removes the flags of lower layers that it
//! excludes (a mirror's `source` drops the `backlog-*` keys of `[defaults]`), using the same
//! exclusions clap enforces. Everything here is checked before any mirror runs: a bad list is
//! exit 2 naming the file, the line and the key, and nothing is fetched or created.
//!
//! A `[discover]` table (`settings::discover`) adds the repositories Backlog's API lists: each
//! becomes a mirror named `PROJECT/repo`, merged exactly as a listed one whose own layer is its
//! `source` (and `target`, when `[discover]` gives a pattern), so `[defaults]` and the command
//! line apply to it unchanged.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::Path;

use clap::parser::ValueSource;
use clap::{ArgAction, ArgMatches, Args, Command, FromArgMatches};
use toml::de::{DeTable, DeValue};

use crate::base::error::usage;
use crate::settings::flags::SyncArgs;
use crate::transport::remote::Remote;

/// Keys that describe one run of the program, not a mirror: refused in the file.
const PER_RUN: &[&str] = &[
    "config",
    "repo",
    "jobs",
    "json",
    "quiet",
    "verbose",
    "progress",
    "metrics",
    "metrics-namespace",
    "mirror-name",
];

/// Flags that belong in `[discover]`, not in `[defaults]` or a mirror.
pub(super) const DISCOVER_ONLY: &[&str] = &[
    "backlog-api-key-ssm",
    "backlog-api-key-env",
    "backlog-api-key-file",
];

/// Keys of the file that are not flags.
const NAME: &str = "name";
pub(super) const CODECOMMIT_PREFIX: &str = "codecommit-prefix";

/// One mirror of the list, its flags merged and parsed.
#[derive(Debug)]
pub(crate) struct Listed {
    pub(crate) name: String,
    /// `PROJECT/repo` when the source is on Backlog.
    pub(crate) identity: Option<String>,
    pub(crate) args: SyncArgs,
    /// Found by `[discover]`, not written in the list.
    pub(crate) discovered: bool,
    /// Line of each key the file gave this mirror (its own or from `[defaults]`).
    key_lines: BTreeMap<String, usize>,
    /// Line of its `name`.
    line: usize,
}

#[derive(Debug)]
pub(crate) struct MirrorList {
    /// The file as given, for messages.
    pub(crate) file: String,
    pub(crate) mirrors: Vec<Listed>,
    /// The flags naming one repository that the command line or environment gave.
    explicit_repository: Vec<String>,
    /// The `[discover]` table as written; `settings::discover` checks and takes it.
    pub(crate) discover: Option<DiscoverTable>,
    /// Whether the list has a `[discover]` table.
    discovers: bool,
    /// The layers a discovered mirror is merged with (and discovery's own settings).
    pub(super) defaults: BTreeMap<String, Setting>,
    pub(super) explicit: BTreeMap<String, Setting>,
}

/// The `[discover]` table's keys, each with its value and line, unchecked: what they mean is
/// `settings::discover`'s.
#[derive(Debug)]
pub(crate) struct DiscoverTable {
    pub(super) line: usize,
    pub(super) keys: Vec<(String, Raw, usize)>,
}

/// A value of `[discover]`.
#[derive(Debug, Clone)]
pub(super) enum Raw {
    Switch(bool),
    Text(String),
    List(Vec<String>),
    /// Anything else (a number, a table, a list of non-strings).
    Other,
}

impl DiscoverTable {
    fn new(table: &DeTable<'_>, line: usize, lines: &Lines<'_>) -> DiscoverTable {
        let keys = table
            .iter()
            .map(|(key, value)| {
                let raw = match value.get_ref() {
                    DeValue::Boolean(b) => Raw::Switch(*b),
                    DeValue::String(text) => Raw::Text(text.to_string()),
                    DeValue::Array(items) => items
                        .iter()
                        .map(|v| match v.get_ref() {
                            DeValue::String(text) => Some(text.to_string()),
                            _ => None,
                        })
                        .collect::<Option<Vec<_>>>()
                        .map_or(Raw::Other, Raw::List),
                    _ => Raw::Other,
                };
                (key.get_ref().to_string(), raw, lines.line(key.span().start))
            })
            .collect();
        DiscoverTable { line, keys }
    }
}

/// Flags that name one repository: given on the command line (or by a left-over
/// `BACKLOG_MIRROR_TARGET` in a buildspec) they would point every mirror at the same one.
const ONE_REPOSITORY: &[&str] = &[
    "source",
    "target",
    "codecommit-repo",
    "backlog-project",
    "backlog-repo",
];

/// Where a layer's value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Layer {
    Defaults,
    Mirror,
    Explicit,
}

#[derive(Debug, Clone)]
pub(super) enum Value {
    Flag(bool),
    Values(Vec<OsString>),
}

#[derive(Debug, Clone)]
pub(super) struct Setting {
    pub(super) layer: Layer,
    pub(super) value: Value,
    /// Where the file gave it (none for the command line).
    pub(super) line: Option<usize>,
}

/// `sync`'s flags, as clap knows them (the same definition the command line is parsed with),
/// without their variables: those were read with the command line, into the explicit layer.
pub(super) fn sync_command() -> Command {
    let mut cmd = SyncArgs::augment_args(Command::new("sync"))
        .no_binary_name(true)
        .mut_args(|arg| arg.env(None));
    cmd.build();
    cmd
}

/// Read and check the list at `path`; `explicit` is `sync`'s matches from the command line.
pub(crate) fn load(path: &Path, explicit: &ArgMatches) -> anyhow::Result<MirrorList> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        usage(format!(
            "--config '{file}' cannot be read ({}); give the mirror list's path",
            crate::base::error::io_reason(&e)
        ))
    })?;
    let lines = Lines::new(&file, &text);
    // toml's own messages quote the line they are about, which may hold a password: only its
    // message and position are shown.
    let root = DeTable::parse(&text).map_err(|e| {
        lines.error(
            e.span().map_or(0, |s| s.start),
            e.message().trim_end_matches('\n').replace('\n', "; "),
        )
    })?;
    register_inputs(root.get_ref());
    let cmd = sync_command();
    let explicit = explicit_layer(&cmd, explicit);
    if explicit.contains_key("mirror-name") {
        return Err(usage(
            "--mirror-name (or BACKLOG_MIRROR_MIRROR_NAME) does not apply with --config: each \
             mirror's cache is named by its 'name' in the list",
        ));
    }

    let mut defaults = None;
    let mut tables = None;
    let mut discover = None;
    for (key, value) in root.get_ref() {
        match (key.get_ref().as_ref(), value.get_ref()) {
            ("defaults", DeValue::Table(table)) => defaults = Some(table),
            ("mirror", DeValue::Array(array)) => tables = Some(array),
            ("discover", DeValue::Table(table)) => {
                discover = Some((table, lines.line(key.span().start)));
            }
            ("discover", _) => {
                return Err(lines.error(
                    key.span().start,
                    "'discover' must be a table: write [discover]",
                ));
            }
            ("defaults", _) => {
                return Err(lines.error(
                    key.span().start,
                    "'defaults' must be a table: write [defaults]",
                ));
            }
            ("mirror", _) => {
                return Err(lines.error(
                    key.span().start,
                    "'mirror' must be an array of tables: write [[mirror]] before each mirror",
                ));
            }
            (other, _) => {
                return Err(lines.error(
                    key.span().start,
                    format!(
                        "unknown key '{other}': the list has [defaults], [discover] and \
                         [[mirror]] tables"
                    ),
                ));
            }
        }
    }
    let empty = DeTable::default();
    let defaults = layer(&cmd, &lines, defaults.unwrap_or(&empty), Layer::Defaults)?;
    let discover = discover.map(|(table, line)| DiscoverTable::new(table, line, &lines));
    let no_tables = Vec::new();
    let tables = match tables.filter(|a| !a.is_empty()) {
        Some(tables) => tables.iter().collect(),
        None if discover.is_some() => no_tables,
        None => {
            return Err(usage(format!(
                "{file}: no [[mirror]] table; add one per repository (name, source, target), \
                 or a [discover] table"
            )));
        }
    };
    let mut mirrors: Vec<Listed> = Vec::new();
    for item in tables {
        let DeValue::Table(table) = item.get_ref() else {
            return Err(lines.error(
                item.span().start,
                "each 'mirror' must be a [[mirror]] table",
            ));
        };
        let start = table_start(table).unwrap_or(item.span().start);
        let (name, line) = mirror_name(&lines, table, start)?;
        if let Some(first) = mirrors.iter().find(|m| m.name == name) {
            return Err(lines.error_at(
                line,
                format!(
                    "key 'name': '{name}' is already the name of the mirror at line {}; names must be unique",
                    first.line
                ),
            ));
        }
        let own = layer(&cmd, &lines, table, Layer::Mirror)?;
        let listed = merge(&cmd, &lines, name, line, &defaults, &own, &explicit, None)?;
        mirrors.push(listed);
    }
    let explicit_repository = ONE_REPOSITORY
        .iter()
        .filter(|k| explicit.contains_key(**k))
        .map(|k| k.to_string())
        .collect();
    Ok(MirrorList {
        file,
        mirrors,
        explicit_repository,
        discovers: discover.is_some(),
        discover,
        defaults,
        explicit,
    })
}

/// Every string of the file may be a URL with a password in it: registered before anything is
/// printed, so that no message repeats it.
fn register_inputs(table: &DeTable<'_>) {
    fn walk(value: &DeValue<'_>) {
        match value {
            DeValue::String(s) => crate::base::secret::register_input(s),
            DeValue::Array(items) => items.iter().for_each(|v| walk(v.get_ref())),
            DeValue::Table(table) => table.values().for_each(|v| walk(v.get_ref())),
            _ => {}
        }
    }
    table.values().for_each(|v| walk(v.get_ref()));
}

/// Where a table's first key is.
pub(super) fn table_start(table: &DeTable<'_>) -> Option<usize> {
    table.keys().map(|k| k.span().start).min()
}

fn mirror_name(
    lines: &Lines<'_>,
    table: &DeTable<'_>,
    at: usize,
) -> anyhow::Result<(String, usize)> {
    let Some((key, value)) = table.iter().find(|(k, _)| k.get_ref() == NAME) else {
        return Err(lines.error(
            at,
            "a [[mirror]] has no key 'name'; give each mirror a unique name, e.g. name = \"PROJ/app\"",
        ));
    };
    let line = lines.line(key.span().start);
    let DeValue::String(name) = value.get_ref() else {
        return Err(lines.error_at(
            line,
            "key 'name' must be a string, e.g. name = \"PROJ/app\"",
        ));
    };
    if !valid_name(name) {
        return Err(lines.error_at(
            line,
            format!(
                "key 'name': '{name}' is not a mirror name: letters, digits, '.', '_' and '-', \
                 starting with a letter or digit, with at most one '/' (PROJECT/repo) and no \
                 '.git' before it, at most 100 characters"
            ),
        ));
    }
    Ok((name.to_string(), line))
}

/// `[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?`, at most 100 characters: it names
/// the cache directory (`<cache-dir>/<name>.git`), so no `..`, no absolute path, no hidden file.
/// A project part ending in `.git` is refused too: `a.git/b` would keep its cache inside the
/// bare mirror of a mirror named `a` (`a.git/b.git`), which then refuses to open a directory it
/// did not make.
pub(crate) fn valid_name(name: &str) -> bool {
    let segment = |s: &str| {
        s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    };
    let nests = name
        .split_once('/')
        .is_some_and(|(project, _)| project.ends_with(".git"));
    name.len() <= 100 && name.split('/').count() <= 2 && name.split('/').all(segment) && !nests
}

/// A table's keys as flag settings, each checked: a flag of `sync`, not a per-run one, of the
/// type its flag takes.
pub(super) fn layer(
    cmd: &Command,
    lines: &Lines<'_>,
    table: &DeTable<'_>,
    which: Layer,
) -> anyhow::Result<BTreeMap<String, Setting>> {
    let mut out = BTreeMap::new();
    for (key, value) in table {
        let key_name: &str = key.get_ref();
        let line = lines.line(key.span().start);
        if key_name == NAME && which == Layer::Mirror {
            continue;
        }
        if key_name == CODECOMMIT_PREFIX {
            let DeValue::String(prefix) = value.get_ref() else {
                return Err(lines.error_at(line, "key 'codecommit-prefix' must be a string"));
            };
            out.insert(
                CODECOMMIT_PREFIX.to_string(),
                Setting {
                    layer: which,
                    value: Value::Values(vec![OsString::from(prefix.as_ref())]),
                    line: Some(line),
                },
            );
            continue;
        }
        if DISCOVER_ONLY.contains(&key_name) && which != Layer::Explicit {
            return Err(lines.error_at(
                line,
                format!(
                    "key '{key_name}' belongs in the [discover] table (or give --{key_name} on \
                     the command line): it is the key of the run's discovery, not of a mirror"
                ),
            ));
        }
        if PER_RUN.contains(&key_name) {
            return Err(lines.error_at(
                line,
                format!(
                    "key '{key_name}' is set per run, not per mirror; give --{key_name} (or its \
                     BACKLOG_MIRROR_ variable) on the command line{}",
                    if key_name == "mirror-name" {
                        " (in a list, the cache is named by 'name')"
                    } else {
                        ""
                    }
                ),
            ));
        }
        let Some(arg) = cmd
            .get_arguments()
            .find(|a| a.get_long() == Some(key_name) && is_setting(a))
        else {
            let hint = if key_name == NAME {
                "; 'name' belongs in a [[mirror]] table"
            } else {
                ""
            };
            return Err(lines.error_at(
                line,
                format!(
                    "unknown key '{key_name}': keys are the long names of 'backlog-mirror sync' \
                     flags (see --help){hint}"
                ),
            ));
        };
        let wrong =
            |expected: &str| lines.error_at(line, format!("key '{key_name}' must be {expected}"));
        let value = match (arg.get_action(), value.get_ref()) {
            (ArgAction::SetTrue, DeValue::Boolean(b)) => Value::Flag(*b),
            (ArgAction::SetTrue, _) => return Err(wrong("true or false")),
            (ArgAction::Append, DeValue::Array(items)) => Value::Values(
                items
                    .iter()
                    .map(|v| scalar(v.get_ref()).ok_or_else(|| wrong("a list of strings")))
                    .collect::<anyhow::Result<_>>()?,
            ),
            (ArgAction::Append, v) => Value::Values(vec![
                scalar(v).ok_or_else(|| wrong("a string or a list of strings"))?,
            ]),
            (_, v) => Value::Values(vec![
                scalar(v).ok_or_else(|| wrong("a string or a number"))?,
            ]),
        };
        out.insert(
            key_name.to_string(),
            Setting {
                layer: which,
                value,
                line: Some(line),
            },
        );
    }
    Ok(out)
}

/// A flag that sets something (`--help` is clap's own).
fn is_setting(arg: &clap::Arg) -> bool {
    !matches!(
        arg.get_action(),
        ArgAction::Help | ArgAction::HelpShort | ArgAction::HelpLong | ArgAction::Version
    )
}

/// A string or a whole number, as a flag's value.
fn scalar(value: &DeValue<'_>) -> Option<OsString> {
    match value {
        DeValue::String(s) => Some(OsString::from(s.as_ref())),
        DeValue::Integer(i) => {
            let digits = i.as_str().replace('_', "");
            i64::from_str_radix(&digits, i.radix())
                .ok()
                .map(|n| OsString::from(n.to_string()))
        }
        _ => None,
    }
}

/// What the command line and the environment gave explicitly, by long name.
///
/// A flag given in both the list and the environment takes the environment's value, as the
/// contract says: a deployment overrides its list without editing it.
pub(super) fn explicit_layer(cmd: &Command, matches: &ArgMatches) -> BTreeMap<String, Setting> {
    let mut out = BTreeMap::new();
    for arg in cmd.get_arguments() {
        let (Some(long), id) = (arg.get_long(), arg.get_id().as_str()) else {
            continue;
        };
        match matches.value_source(id) {
            Some(ValueSource::CommandLine) => {}
            // An empty variable is a placeholder (a buildspec's `VAR: ""`): with a list it is
            // no value at all, and the list's key (or the flag's default) applies.
            Some(ValueSource::EnvVariable)
                if matches
                    .get_raw(id)
                    .is_some_and(|mut raw| !raw.all(|v| v.is_empty())) => {}
            _ => continue,
        }
        let value = match arg.get_action() {
            ArgAction::SetTrue => Value::Flag(matches.get_flag(id)),
            _ => Value::Values(
                matches
                    .get_raw(id)
                    .map(|raw| raw.map(OsString::from).collect())
                    .unwrap_or_default(),
            ),
        };
        out.insert(
            long.to_string(),
            Setting {
                layer: Layer::Explicit,
                value,
                line: None,
            },
        );
    }
    out
}

/// Whether clap refuses flags `a` and `b` together (a conflict either way, or one group).
fn excludes(cmd: &Command, a: &str, b: &str) -> bool {
    let find = |long: &str| cmd.get_arguments().find(|x| x.get_long() == Some(long));
    let (Some(arg_a), Some(arg_b)) = (find(a), find(b)) else {
        return false;
    };
    let conflicts = |x: &clap::Arg, y: &clap::Arg| {
        cmd.get_arg_conflicts_with(x)
            .iter()
            .any(|c| c.get_id() == y.get_id())
    };
    // clap's derive puts every field in a group named after the struct, which excludes nothing.
    let one_group = cmd.get_groups().any(|g| {
        let ids: Vec<_> = g.get_args().collect();
        !g.clone().is_multiple() && ids.contains(&arg_a.get_id()) && ids.contains(&arg_b.get_id())
    });
    conflicts(arg_a, arg_b) || conflicts(arg_b, arg_a) || one_group
}

/// The settings the layers give, each above the ones before: a key of a higher layer replaces
/// the lower layers' keys it excludes.
pub(super) fn choose(
    cmd: &Command,
    layers: &[&BTreeMap<String, Setting>],
) -> BTreeMap<String, Setting> {
    let mut chosen: BTreeMap<String, Setting> = BTreeMap::new();
    for layer in layers {
        for (key, setting) in *layer {
            chosen.retain(|k, s| s.layer == setting.layer || !excludes(cmd, k, key));
            chosen.insert(key.clone(), setting.clone());
        }
    }
    chosen
}

/// Line of each chosen key the file gave.
pub(super) fn key_lines(chosen: &BTreeMap<String, Setting>) -> BTreeMap<String, usize> {
    chosen
        .iter()
        .filter_map(|(k, s)| s.line.map(|l| (k.clone(), l)))
        .collect()
}

/// The mirror's flags from the three layers, parsed by `sync`'s own definition. `identity` is
/// the mirror's Backlog `PROJECT/repo` when known otherwise than by its keys (a discovered one).
#[allow(clippy::too_many_arguments)]
fn merge(
    cmd: &Command,
    lines: &Lines<'_>,
    name: String,
    line: usize,
    defaults: &BTreeMap<String, Setting>,
    own: &BTreeMap<String, Setting>,
    explicit: &BTreeMap<String, Setting>,
    identity: Option<String>,
) -> anyhow::Result<Listed> {
    let mut chosen = choose(cmd, &[defaults, own, explicit]);
    let key_lines = key_lines(&chosen);
    let string = |key: &str| match chosen.get(key).map(|s| &s.value) {
        Some(Value::Values(v)) => v.first().map(|s| s.to_string_lossy().into_owned()),
        _ => None,
    };
    let identity = identity.or_else(
        || match (string("backlog-project"), string("backlog-repo")) {
            (Some(project), Some(repo)) => {
                Some(format!("{project}/{}", repo.trim_end_matches(".git")))
            }
            _ => string("source").as_deref().and_then(backlog_identity),
        },
    );
    if !chosen.contains_key("target")
        && !chosen.contains_key("codecommit-repo")
        && let Some(prefix) = chosen.get(CODECOMMIT_PREFIX).cloned()
        && let Some(repo) = identity.as_ref().and_then(|i| i.split('/').nth(1))
    {
        let Value::Values(prefix_value) = &prefix.value else {
            unreachable!("codecommit-prefix is read as a value")
        };
        let mut full = prefix_value.first().cloned().unwrap_or_default();
        full.push(repo);
        chosen.insert(
            "codecommit-repo".to_string(),
            Setting {
                value: Value::Values(vec![full]),
                ..prefix
            },
        );
    }
    chosen.remove(CODECOMMIT_PREFIX);
    if !chosen.contains_key("source") && !chosen.contains_key("backlog-repo") {
        return Err(lines.error_at(
            line,
            format!(
                "mirror '{name}' has no key 'source': give 'source', or 'backlog-project' and \
                 'backlog-repo' (with 'backlog-space' here or in [defaults])"
            ),
        ));
    }
    if !chosen.contains_key("target") && !chosen.contains_key("codecommit-repo") {
        return Err(lines.error_at(
            line,
            format!(
                "mirror '{name}' has no key 'target': give 'target' or 'codecommit-repo', or \
                 'codecommit-prefix' with a Backlog source"
            ),
        ));
    }
    let args = parse_args(cmd, lines, &format!("mirror '{name}'"), line, &chosen)?;
    Ok(Listed {
        name,
        identity,
        args,
        discovered: false,
        key_lines,
        line,
    })
}

/// `chosen` as `sync`'s flags, parsed by clap; an error names `what` and the key at fault.
pub(super) fn parse_args(
    cmd: &Command,
    lines: &Lines<'_>,
    what: &str,
    line: usize,
    chosen: &BTreeMap<String, Setting>,
) -> anyhow::Result<SyncArgs> {
    let key_lines = key_lines(chosen);
    let here = |key: &str| key_lines.get(key).copied().unwrap_or(line);
    let mut argv: Vec<OsString> = Vec::new();
    for (key, setting) in chosen {
        match &setting.value {
            Value::Flag(true) => argv.push(format!("--{key}").into()),
            Value::Flag(false) => {}
            Value::Values(values) => {
                for value in values {
                    let mut arg = OsString::from(format!("--{key}="));
                    arg.push(value);
                    argv.push(arg);
                }
            }
        }
    }
    let parsed = cmd
        .clone()
        .try_get_matches_from(argv)
        .and_then(|m| SyncArgs::from_arg_matches(&m));
    parsed.map_err(|err| {
        let text = err.render().to_string();
        let first = text.lines().next().unwrap_or("invalid value");
        let first = first.strip_prefix("error: ").unwrap_or(first);
        let key = named_key(first, &key_lines);
        match key {
            Some(key) => lines.error_at(here(&key), format!("{what}, key '{key}': {first}")),
            None => lines.error_at(line, format!("{what}: {first}")),
        }
    })
}

/// The first `--flag` a message names that the file gave, as its key.
fn named_key(message: &str, key_lines: &BTreeMap<String, usize>) -> Option<String> {
    message
        .split("--")
        .skip(1)
        .map(|rest| {
            rest.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
                .next()
                .unwrap_or_default()
        })
        .find(|key| key_lines.contains_key(*key))
        .map(str::to_string)
}

/// `PROJECT/repo` of a Backlog Git URL (`SPACE@SPACE.git.backlog.jp:/PROJECT/repo.git`,
/// `https://SPACE.backlog.com/git/PROJECT/repo.git`), or none for any other host.
fn backlog_identity(url: &str) -> Option<String> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    let cut = rest.find([':', '/'])?;
    let host = rest[..cut].to_ascii_lowercase();
    let on_backlog = ["backlog.jp", "backlog.com", "backlogtool.com"]
        .iter()
        .any(|d| host.ends_with(&format!(".{d}")));
    if !on_backlog {
        return None;
    }
    let path = rest[cut..].trim_start_matches(':');
    let path = path.split_once('/').map_or(path, |(port_or_empty, p)| {
        if port_or_empty.chars().all(|c| c.is_ascii_digit()) {
            p
        } else {
            path
        }
    });
    let mut parts = path.split('/').filter(|s| !s.is_empty()).rev();
    let repo = parts.next()?.trim_end_matches(".git");
    let project = parts.next()?;
    Some(format!("{project}/{repo}"))
}

impl MirrorList {
    /// The listed mirror named `wanted` (by name or Backlog `PROJECT/repo`), if any.
    pub(crate) fn listed(&self, wanted: &str) -> Option<&Listed> {
        self.mirrors.iter().find(|m| !m.discovered && m.is(wanted))
    }

    /// Add the discovered repository `project`/`repo` as a mirror of that name, whose own layer
    /// is `source` (and `target`, when given), merged with `[defaults]` and the command line
    /// exactly as a listed mirror. `line` is the `[discover]` table's.
    pub(crate) fn add_discovered(
        &mut self,
        project: &str,
        repo: &str,
        source: &str,
        target: Option<&str>,
        line: usize,
    ) -> anyhow::Result<()> {
        let cmd = sync_command();
        let lines = Lines::new(&self.file, "");
        let setting = |value: &str| Setting {
            layer: Layer::Mirror,
            value: Value::Values(vec![OsString::from(value)]),
            line: Some(line),
        };
        let mut own = BTreeMap::from([("source".to_string(), setting(source))]);
        if let Some(target) = target {
            own.insert("target".to_string(), setting(target));
        }
        let name = format!("{project}/{repo}");
        let mut listed = merge(
            &cmd,
            &lines,
            name.clone(),
            line,
            &self.defaults,
            &own,
            &self.explicit,
            Some(name),
        )?;
        listed.discovered = true;
        self.mirrors.push(listed);
        Ok(())
    }

    /// The mirrors `--repo` names (by name or Backlog `PROJECT/repo`); every one when none is
    /// named. A name that matches nothing is a usage error: a webhook for a repository missing
    /// from the list must not sync something else.
    pub(crate) fn select(&self, names: &[String]) -> anyhow::Result<Vec<&Listed>> {
        let names: Vec<&str> = names
            .iter()
            .map(|n| n.trim())
            .filter(|n| !n.is_empty())
            .collect();
        let selected = self.matching(&names)?;
        if selected.len() > 1
            && let Some(key) = self.explicit_repository.first()
        {
            return Err(usage(format!(
                "--{key} (or BACKLOG_MIRROR_{}) names one repository, but {} mirrors of {} would \
                 all use it; give it in the list, or select one mirror with --repo",
                key.to_uppercase().replace('-', "_"),
                selected.len(),
                self.file
            )));
        }
        Ok(selected)
    }

    fn matching(&self, names: &[&str]) -> anyhow::Result<Vec<&Listed>> {
        if names.is_empty() {
            return Ok(self.mirrors.iter().collect());
        }
        for wanted in names {
            if !self.mirrors.iter().any(|m| m.is(wanted)) {
                let known: Vec<&str> = self
                    .mirrors
                    .iter()
                    .take(10)
                    .map(|m| m.name.as_str())
                    .collect();
                let more = if self.mirrors.len() > 10 { ", ..." } else { "" };
                let discovery = if self.discovers {
                    ", and [discover] found no such repository on Backlog (or its filters leave \
                     it out)"
                } else {
                    ""
                };
                return Err(usage(format!(
                    "{}: --repo '{}' matches no mirror's name or Backlog PROJECT/repo (the list has {}{more}{discovery}); add it to the list or fix the name",
                    self.file,
                    crate::base::text::clip(wanted, 200),
                    known.join(", ")
                )));
            }
        }
        Ok(self
            .mirrors
            .iter()
            .filter(|m| names.iter().any(|n| m.is(n)))
            .collect())
    }
}

impl MirrorList {
    /// Two mirrors pushing into one target would delete each other's refs, round after round,
    /// and the target would end as whichever ran last: refused, however the two spell it
    /// (`RemoteUrl::place`; a CodeCommit repository is its name in its region). `targets` are
    /// the `selected` mirrors' targets, in order.
    ///
    /// Two listed mirrors are a mistake in the file: the run is refused. A discovered mirror is
    /// refused alone (its entry says why, exit 2), so that a repository added on Backlog cannot
    /// stop every other mirror: a listed mirror keeps its target, and two discovered mirrors
    /// with one target are both refused, since neither has a better claim. The answer holds one
    /// refusal (or none) per selected mirror.
    pub(crate) fn check_targets(
        &self,
        selected: &[&Listed],
        targets: &[&Remote],
    ) -> anyhow::Result<Vec<Option<String>>> {
        let mut refused: Vec<Option<String>> = vec![None; selected.len()];
        // Each target's place once (a local path is opened to find it): the pairs below are
        // many, the targets few.
        let places: Vec<String> = targets.iter().map(|t| t.url.place()).collect();
        let targets: Vec<(&Remote, &str)> = targets
            .iter()
            .zip(&places)
            .map(|(t, p)| (*t, p.as_str()))
            .collect();
        let shown = |listed: &Listed| {
            if listed.discovered {
                format!("mirror '{}' (discovered)", listed.name)
            } else {
                format!("mirror '{}' (line {})", listed.name, listed.line)
            }
        };
        for (i, (listed, target)) in selected.iter().zip(&targets).enumerate() {
            if !listed.discovered {
                continue;
            }
            for (j, (other, other_target)) in selected.iter().zip(&targets).enumerate() {
                if i == j || !one_target(*target, *other_target) {
                    continue;
                }
                let what_to_do = "give one of them a [[mirror]] table with its own target (or \
                                  codecommit-repo), or leave one out with exclude-repositories in \
                                  [discover]";
                let why = if other.discovered {
                    format!(
                        "{} has the same target as {}: {}; neither is synced: {what_to_do}",
                        shown(listed),
                        shown(other),
                        target.0.url.redacted()
                    )
                } else {
                    format!(
                        "{} has the same target as the listed {}: {}; it is not synced (the list \
                         wins): {what_to_do}",
                        shown(listed),
                        shown(other),
                        target.0.url.redacted()
                    )
                };
                refused[i] = Some(why);
                break;
            }
        }
        self.check_listed_targets(selected, &targets)?;
        Ok(refused)
    }

    fn check_listed_targets(
        &self,
        selected: &[&Listed],
        targets: &[(&Remote, &str)],
    ) -> anyhow::Result<()> {
        let key = |listed: &Listed| {
            if listed.args.target.is_some() {
                "target"
            } else {
                "codecommit-repo"
            }
        };
        for (i, (listed, target)) in selected.iter().zip(targets).enumerate() {
            if listed.discovered {
                continue;
            }
            let earlier = selected[..i].iter().zip(targets);
            let Some((other, other_target)) = earlier
                .into_iter()
                .find(|(o, t)| !o.discovered && one_target(**t, *target))
            else {
                continue;
            };
            return Err(usage(format!(
                "{}:{}: mirror '{}', key '{}': {} is the same target as mirror '{}' (line {}: {}); \
                 each mirror needs its own target",
                self.file,
                listed.line_of(key(listed)),
                listed.name,
                key(listed),
                target.0.url.redacted(),
                other.name,
                other.line_of(key(other)),
                other_target.0.url.redacted()
            )));
        }
        Ok(())
    }
}

/// Whether two targets are one repository: one CodeCommit repository name in one region
/// (unless two different AWS profiles name it: two accounts), or one place however written
/// (each remote comes with its `RemoteUrl::place`).
fn one_target((a, a_place): (&Remote, &str), (b, b_place): (&Remote, &str)) -> bool {
    match (a.codecommit(), b.codecommit()) {
        (Some(x), Some(y)) => {
            x.name == y.name
                && x.region == y.region
                && (x.profile.is_none() || y.profile.is_none() || x.profile == y.profile)
        }
        _ => a_place == b_place,
    }
}

impl Listed {
    fn is(&self, wanted: &str) -> bool {
        self.name == wanted || self.identity.as_deref() == Some(wanted)
    }

    /// A problem with this mirror's settings found after the list was read (a value `settings::config`
    /// refused), placed at the key whose flag the message names, else at the mirror's name.
    pub(crate) fn locate(&self, file: &str, err: anyhow::Error) -> anyhow::Error {
        let message = crate::base::error::one_line(&err);
        let at = named_key(&message, &self.key_lines);
        let (line, what) = match &at {
            Some(key) => (
                self.key_lines[key],
                format!("mirror '{}', key '{key}'", self.name),
            ),
            None => (self.line, format!("mirror '{}'", self.name)),
        };
        let code = crate::base::error::exit_code(&err);
        let located = format!("{file}:{line}: {what}: {message}");
        if code == crate::base::error::exit::USAGE {
            usage(located)
        } else {
            anyhow::anyhow!(located)
        }
    }

    /// Line of `key` when the file gave it to this mirror, else of its name.
    pub(crate) fn line_of(&self, key: &str) -> usize {
        self.key_lines.get(key).copied().unwrap_or(self.line)
    }
}

/// Byte offsets to `FILE:LINE` messages (`error_at` needs no text).
pub(super) struct Lines<'a> {
    file: &'a str,
    text: &'a str,
}

impl<'a> Lines<'a> {
    pub(super) fn new(file: &'a str, text: &'a str) -> Self {
        Lines { file, text }
    }

    pub(super) fn file(&self) -> &str {
        self.file
    }

    pub(super) fn line(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text.as_bytes()[..end]
            .iter()
            .filter(|b| **b == b'\n')
            .count()
            + 1
    }

    pub(super) fn error(&self, offset: usize, message: impl std::fmt::Display) -> anyhow::Error {
        self.error_at(self.line(offset), message)
    }

    pub(super) fn error_at(&self, line: usize, message: impl std::fmt::Display) -> anyhow::Error {
        usage(format!("{}:{line}: {message}", self.file))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_safe_paths() {
        for ok in ["PROJ/app", "a", "a.b-c_d", "A1/b.git"] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in [
            "", "/a", "a/", "../a", "a/../b", ".a", "a/.b", "a/b/c", "a b", "a\\b", "a.git/b",
        ] {
            assert!(!valid_name(bad), "{bad}");
        }
        assert!(!valid_name(&"a".repeat(101)));
    }

    #[test]
    fn backlog_urls_give_project_and_repo() {
        for url in [
            "space@space.git.backlog.jp:/PROJ/app.git",
            "ssh://space@space.git.backlog.com/PROJ/app.git",
            "https://u:p@space.backlog.jp/git/PROJ/app.git",
            "https://space.backlog.com/git/PROJ/app",
        ] {
            assert_eq!(backlog_identity(url).as_deref(), Some("PROJ/app"), "{url}");
        }
        assert_eq!(backlog_identity("https://github.com/PROJ/app.git"), None);
        assert_eq!(backlog_identity("/srv/PROJ/app.git"), None);
    }

    #[test]
    fn exclusions_come_from_clap() {
        let cmd = sync_command();
        assert!(excludes(&cmd, "source", "backlog-space"));
        assert!(excludes(&cmd, "backlog-repo", "source"));
        assert!(excludes(&cmd, "ssh-key-env", "ssh-key-file"));
        assert!(excludes(&cmd, "codecommit-repo", "target"));
        assert!(!excludes(&cmd, "source", "target"));
    }
}
