//! Remote locations as the user wrote them, classified once.
//!
//! Git accepts a zoo of spellings (paths, `file://`, `git://`, smart HTTP, `ssh://` and the
//! scp-like `user@host:path`). Classifying them up front lets us reject a typo before any network
//! traffic, print every URL without its userinfo, and derive a stable cache name.

use std::fmt;
use std::path::{Path, PathBuf};

/// How a remote is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scheme {
    /// A path on this machine, written as a path or as `file://`.
    Local,
    Git,
    Http,
    Https,
    Ssh,
}

impl Scheme {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Scheme::Local => "local",
            Scheme::Git => "git",
            Scheme::Http => "http",
            Scheme::Https => "https",
            Scheme::Ssh => "ssh",
        }
    }
}

#[derive(Clone, PartialEq, Eq)]
pub(crate) struct RemoteUrl {
    scheme: Scheme,
    /// What libgit2 and git are handed.
    url: String,
    /// The same without password (and without the user for HTTP), safe to print.
    display: String,
    host: Option<String>,
    port: Option<u16>,
    user: Option<String>,
    password: Option<String>,
    path: String,
}

/// Never print the password, not even in `{:?}` of a config.
impl fmt::Debug for RemoteUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RemoteUrl({})", self.display)
    }
}

impl fmt::Display for RemoteUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.display)
    }
}

impl RemoteUrl {
    /// Parse a remote as git would understand it. The error is a short reason; the caller adds
    /// which flag it came from.
    pub(crate) fn parse(raw: &str) -> Result<RemoteUrl, String> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Err("is empty".into());
        }
        if raw.chars().any(|c| c.is_control()) {
            return Err("contains control characters".into());
        }
        if let Some((scheme, _)) = raw.split_once("://") {
            return Self::parse_url(raw, scheme);
        }
        if let Some(scp) = Self::parse_scp(raw)? {
            return Ok(scp);
        }
        Ok(Self::local(PathBuf::from(raw)))
    }

    fn local(path: PathBuf) -> RemoteUrl {
        let shown = path.display().to_string();
        RemoteUrl {
            scheme: Scheme::Local,
            url: file_url(&path),
            display: shown.clone(),
            host: None,
            port: None,
            user: None,
            password: None,
            path: shown,
        }
    }

    fn parse_url(raw: &str, scheme: &str) -> Result<RemoteUrl, String> {
        let scheme_kind = match scheme.to_ascii_lowercase().as_str() {
            "file" => Scheme::Local,
            "git" => Scheme::Git,
            "http" => Scheme::Http,
            "https" => Scheme::Https,
            "ssh" | "git+ssh" | "ssh+git" => Scheme::Ssh,
            other => {
                // Echo the scheme only when it is one: otherwise it may be a password.
                let named = if !other.is_empty()
                    && other
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
                {
                    format!(" '{other}://'")
                } else {
                    String::new()
                };
                return Err(format!(
                    "has an unsupported scheme{named}; use a path, file://, git://, http://, \
                     https://, ssh:// or user@host:path"
                ));
            }
        };
        let parsed = ::url::Url::parse(raw).map_err(|e| format!("is not a valid URL ({e})"))?;
        if scheme_kind == Scheme::Local {
            let path = parsed
                .to_file_path()
                .map_err(|()| "is a file:// URL without an absolute local path".to_string())?;
            return Ok(Self::local(path));
        }
        let host = parsed
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| "has no host name".to_string())?
            .to_string();
        let path = parsed.path().to_string();
        if path.is_empty() || path == "/" {
            return Err("has no repository path after the host".into());
        }
        let user = Some(parsed.username())
            .filter(|u| !u.is_empty())
            .map(percent_decode);
        if let Some(encoded) = parsed.password() {
            crate::base::secret::register(encoded);
        }
        let password = parsed.password().map(percent_decode);
        let mut shown = parsed.clone();
        // A user name in an SSH URL is part of the address (Backlog's is the space key); in HTTP
        // it is half a credential, so it goes with the password.
        let _ = shown.set_password(None);
        if scheme_kind != Scheme::Ssh {
            let _ = shown.set_username("");
        }
        let mut url = parsed.to_string();
        if scheme_kind == Scheme::Ssh && (url.starts_with("git+ssh") || url.starts_with("ssh+git"))
        {
            url = format!("ssh{}", &url[url.find("://").unwrap_or(0)..]);
        }
        Ok(RemoteUrl {
            scheme: scheme_kind,
            url,
            display: shown.to_string(),
            host: Some(host),
            port: parsed.port(),
            user,
            password,
            path,
        })
    }

    /// `[user@]host:path`, which git treats as SSH when the part before the first colon has no
    /// slash. Returns `Ok(None)` when `raw` is not of that shape.
    fn parse_scp(raw: &str) -> Result<Option<RemoteUrl>, String> {
        let Some((before, path)) = raw.split_once(':') else {
            return Ok(None);
        };
        if before.contains('/') || before.is_empty() {
            return Ok(None);
        }
        // A Windows drive letter or an existing local file name with a colon stays a path.
        if before.len() == 1 || Path::new(raw).exists() {
            return Ok(None);
        }
        // `user:password@host:path` is an SSH address of the host `user` to git; what it
        // carries is a password someone meant for HTTPS, and it must not reach a log.
        if path
            .split_once('@')
            .is_some_and(|(secret, _)| !secret.contains('/'))
            && !before.contains('@')
        {
            return Err(
                "looks like user:password@host, which git reads as an SSH host 'user'; SSH \
                 addresses carry no password: use an https:// URL with --source-password-* or \
                 --target-password-*, or an SSH key"
                    .into(),
            );
        }
        let (user, host) = match before.rsplit_once('@') {
            Some((user, host)) => (Some(user.to_string()), host.to_string()),
            None => (None, before.to_string()),
        };
        if host.is_empty() {
            return Err("has an empty host name before ':'".into());
        }
        if user.as_deref() == Some("") {
            return Err("has an empty user name before '@'".into());
        }
        if path.is_empty() {
            return Err("has no repository path after ':'".into());
        }
        if !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '[' | ']'))
        {
            return Err(format!("has an invalid host name '{host}'"));
        }
        Ok(Some(RemoteUrl {
            scheme: Scheme::Ssh,
            url: raw.to_string(),
            display: raw.to_string(),
            host: Some(host),
            port: None,
            user,
            password: None,
            path: path.to_string(),
        }))
    }

    pub(crate) fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// The URL for libgit2 or git, credentials included if the user wrote them.
    pub(crate) fn as_git_url(&self) -> &str {
        &self.url
    }

    /// The URL with credentials removed: the only form that may be printed.
    pub(crate) fn redacted(&self) -> &str {
        &self.display
    }

    pub(crate) fn host(&self) -> Option<&str> {
        self.host.as_deref()
    }

    /// `host[:port]`, as git names a host in its credential requests.
    pub(crate) fn authority(&self) -> String {
        match (self.host(), self.port) {
            (Some(host), Some(port)) => format!("{host}:{port}"),
            (Some(host), None) => host.to_string(),
            (None, _) => String::new(),
        }
    }

    pub(crate) fn port(&self) -> Option<u16> {
        self.port
    }

    pub(crate) fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    pub(crate) fn password(&self) -> Option<&str> {
        self.password.as_deref()
    }

    pub(crate) fn local_path(&self) -> Option<&Path> {
        (self.scheme == Scheme::Local).then(|| Path::new(&self.path))
    }

    /// The URL without any userinfo, for handing to a git process that gets its credentials by
    /// other means than its command line.
    pub(crate) fn without_credentials(&self) -> String {
        match ::url::Url::parse(&self.url) {
            Ok(mut u) if self.scheme != Scheme::Ssh && self.scheme != Scheme::Local => {
                let _ = u.set_password(None);
                let _ = u.set_username("");
                u.to_string()
            }
            _ => self.url.clone(),
        }
    }

    /// This remote's place: one string for every spelling of one repository, to tell two
    /// mirrors pushing into the same target (or a source that is its own target). Userinfo is
    /// not part of it; scheme and host are compared without case, default ports dropped, `http`
    /// and `https` taken for one server, `localhost`, `127.0.0.1` and `[::1]` for one host, the
    /// path percent-decoded with `.`, `..`, repeated and trailing slashes and a `.git` suffix
    /// resolved away (git daemon and most hosts serve `x` and `x.git` as one); an scp-like path
    /// is relative to the home directory as `ssh://host/~/path` is. A local path is the git
    /// directory it opens (`wt` and `wt/.git` are one), canonicalised.
    pub(crate) fn place(&self) -> String {
        let Some(host) = &self.host else {
            let path = Path::new(&self.path);
            let opened = git2::Repository::open_ext(
                path,
                git2::RepositoryOpenFlags::NO_SEARCH,
                std::iter::empty::<&std::ffi::OsStr>(),
            );
            let dir = opened.map_or_else(|_| path.to_path_buf(), |repo| repo.path().to_path_buf());
            return format!("file://{}", resolved_path(&dir).display());
        };
        let (scheme, default_port) = match self.scheme {
            Scheme::Http | Scheme::Https => {
                ("http", if self.scheme == Scheme::Http { 80 } else { 443 })
            }
            Scheme::Git => ("git", 9418),
            Scheme::Ssh | Scheme::Local => ("ssh", 22),
        };
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let host = match bare.parse::<std::net::IpAddr>() {
            Ok(ip) if ip.is_loopback() => "localhost".to_string(),
            Ok(std::net::IpAddr::V6(ip)) => format!("[{ip}]"),
            Ok(ip) => ip.to_string(),
            Err(_) => host,
        };
        let port = match self.port.filter(|p| *p != default_port) {
            Some(port) => format!(":{port}"),
            None => String::new(),
        };
        let decoded = percent_decode(&self.path);
        // `host:path` and `ssh://host/~/path` both start at the home directory.
        let home = self.scheme == Scheme::Ssh
            && (!self.url.contains("://") && !decoded.starts_with('/')
                || decoded.starts_with("/~"));
        let mut parts: Vec<&str> = Vec::new();
        for part in decoded.split('/') {
            match part {
                "" | "." => {}
                ".." => {
                    parts.pop();
                }
                _ => parts.push(part),
            }
        }
        if home && !parts.first().is_some_and(|p| p.starts_with('~')) {
            parts.insert(0, "~");
        }
        if parts.last() == Some(&".git") && parts.len() > 1 {
            parts.pop();
        }
        let last = parts.pop().unwrap_or_default();
        let last = last
            .strip_suffix(".git")
            .filter(|l| !l.is_empty())
            .unwrap_or(last);
        parts.push(last);
        format!("{scheme}://{host}{port}/{}", parts.join("/"))
    }

    /// A stable, file-name-safe name for this remote's cache entry: the repository's base name
    /// (readable in `ls`) plus a hash of the whole location (so two `app.git` from different hosts
    /// never share a cache).
    pub(crate) fn mirror_name(&self) -> String {
        let base = self
            .path
            .trim_end_matches('/')
            .rsplit(['/', '\\', ':'])
            .next()
            .unwrap_or("")
            .trim_end_matches(".git");
        let mut safe: String = base
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                    c
                } else {
                    '_'
                }
            })
            .take(64)
            .collect();
        safe = safe.trim_start_matches('.').to_string();
        if safe.is_empty() {
            safe.push_str("repo");
        }
        let identity = match self.scheme {
            Scheme::Local => std::fs::canonicalize(&self.path)
                .map(|p| p.display().to_string())
                .unwrap_or_else(|_| self.path.clone()),
            _ => self.display.clone(),
        };
        format!("{safe}-{:08x}", fnv1a(identity.as_bytes()) as u32)
    }
}

/// A local path as a `file://` URL, for libgit2: libgit2 reads any location with a `:` in it as
/// an SSH address (`host:path`), even an existing directory such as `/srv/a:b.git` or
/// `name::x`, while a `file://` URL (percent-encoded) is only ever a path.
fn file_url(path: &Path) -> String {
    std::path::absolute(path)
        .ok()
        .and_then(|p| ::url::Url::from_file_path(p).ok())
        .map_or_else(|| path.display().to_string(), |u| u.to_string())
}

/// `path` as one place on this machine: absolute, its longest existing part canonicalised
/// (symbolic links, `.`, `..`), the rest with `.` and `..` resolved as written. Two spellings of
/// one directory, existing or yet to be made, give the same path.
pub(crate) fn resolved_path(path: &Path) -> PathBuf {
    use std::path::Component;
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let parts: Vec<Component<'_>> = absolute.components().collect();
    for kept in (1..=parts.len()).rev() {
        let head: PathBuf = parts[..kept].iter().collect();
        let Ok(mut out) = head.canonicalize() else {
            continue;
        };
        for part in &parts[kept..] {
            match part {
                Component::ParentDir => {
                    out.pop();
                }
                Component::Normal(name) => out.push(name),
                _ => {}
            }
        }
        return out;
    }
    absolute
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, b| {
        (hash ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_every_form() {
        let cases = [
            ("/srv/repo.git", Scheme::Local),
            ("relative/repo", Scheme::Local),
            ("file:///srv/repo.git", Scheme::Local),
            ("git://127.0.0.1:9418/repo.git", Scheme::Git),
            ("http://127.0.0.1:8080/repo.git", Scheme::Http),
            ("https://example.com/repo.git", Scheme::Https),
            ("ssh://git@example.com:2222/repo.git", Scheme::Ssh),
            ("space@space.git.backlog.jp:/PROJ/repo.git", Scheme::Ssh),
            ("example.com:repo.git", Scheme::Ssh),
        ];
        for (raw, scheme) in cases {
            let url = RemoteUrl::parse(raw).unwrap_or_else(|e| panic!("{raw}: {e}"));
            assert_eq!(url.scheme(), scheme, "{raw}");
        }
    }

    #[test]
    fn scp_form_keeps_user_and_path() {
        let url = RemoteUrl::parse("key@key.git.backlog.com:/PROJ/app.git").unwrap();
        assert_eq!(url.user(), Some("key"));
        assert_eq!(url.host(), Some("key.git.backlog.com"));
        assert!(
            url.mirror_name().starts_with("app-"),
            "{}",
            url.mirror_name()
        );
    }

    #[test]
    fn rejects_malformed() {
        for raw in [
            "",
            "   ",
            "ftp://example.com/repo",
            "http:///repo",
            "https://example.com",
            "https://example.com/",
            "git://:9418/x",
            "@host:path",
            "host:",
            "a\nb",
        ] {
            assert!(RemoteUrl::parse(raw).is_err(), "{raw:?} should be rejected");
        }
    }

    #[test]
    fn redacts_http_userinfo_everywhere_it_prints() {
        let url = RemoteUrl::parse("https://bob:s3cr%40t@example.com/r.git").unwrap();
        assert_eq!(url.password(), Some("s3cr@t"));
        assert_eq!(url.user(), Some("bob"));
        for shown in [
            url.redacted().to_string(),
            url.to_string(),
            format!("{url:?}"),
            url.without_credentials(),
        ] {
            assert!(!shown.contains("s3cr"), "{shown}");
            assert!(!shown.contains("bob"), "{shown}");
        }
        assert!(url.as_git_url().contains("bob"));
    }

    #[test]
    fn every_spelling_of_one_repository_has_one_place() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        git2::Repository::init_bare(root.join("bare.git")).unwrap();
        git2::Repository::init(root.join("wt")).unwrap();
        std::os::unix::fs::symlink(root.join("bare.git"), root.join("link.git")).unwrap();
        let r = root.display();
        let same: &[(&str, String)] = &[
            ("trailing slash", "http://h/dup.git/".into()),
            ("no .git", "http://h/dup".into()),
            ("https", "https://h/dup.git".into()),
            ("default port", "http://h:80/dup.git".into()),
            ("scheme and host case", "HTTP://H/dup.git".into()),
            ("userinfo", "http://bob:pw@h/dup.git".into()),
            ("percent-encoding", "http://h/%64up.git".into()),
            ("dot segments", "http://h/x/../dup.git".into()),
            ("repeated slashes", "http://h//dup.git".into()),
            ("x/.git", "http://h/dup/.git".into()),
            ("host's trailing dot", "http://h./dup.git".into()),
        ];
        let base = RemoteUrl::parse("http://h/dup.git").unwrap().place();
        for (label, raw) in same {
            let place = RemoteUrl::parse(raw).unwrap().place();
            assert_eq!(place, base, "{label}: {raw}");
        }
        let groups: &[&[String]] = &[
            &[
                "http://localhost:8080/x.git".into(),
                "http://127.0.0.1:8080/x".into(),
                "http://[::1]:8080/x.git/".into(),
                "http://[0:0:0:0:0:0:0:1]:8080/x.git".into(),
            ],
            &[
                "git://Example.COM/x.git".into(),
                "git://example.com:9418/x".into(),
            ],
            &[
                "ssh://git@host/~/app.git".into(),
                "git@host:app.git".into(),
                "other@host:app".into(),
                "ssh://host:22/~/app".into(),
            ],
            &[
                "ssh://git@host/srv/app.git".into(),
                "host:/srv/app.git".into(),
                "ssh+git://host/srv/app".into(),
            ],
            &[
                format!("{r}/bare.git"),
                format!("{r}/bare.git/"),
                format!("file://{r}/bare.git"),
                format!("{r}/wt/../bare.git"),
                format!("{r}/link.git"),
            ],
            &[format!("{r}/wt"), format!("{r}/wt/.git")],
            &[format!("{r}/new/x.git"), format!("{r}/new/./x.git/")],
        ];
        let mut seen = Vec::new();
        for group in groups {
            let places: Vec<String> = group
                .iter()
                .map(|raw| RemoteUrl::parse(raw).unwrap().place())
                .collect();
            assert!(
                places.iter().all(|p| *p == places[0]),
                "{group:?}: {places:?}"
            );
            assert!(
                !seen.contains(&places[0]),
                "{group:?} is another group's place"
            );
            seen.push(places[0].clone());
        }
        let distinct = [
            "http://h/dup.git",
            "http://h:8080/dup.git",
            "http://h/Dup.git",
            "http://h/other/dup.git",
            "http://other/dup.git",
            "git://h/dup.git",
            "ssh://h/dup.git",
            "ssh://h/~/dup.git",
            "http://127.0.0.2/dup.git",
        ];
        let places: Vec<String> = distinct
            .iter()
            .map(|raw| RemoteUrl::parse(raw).unwrap().place())
            .collect();
        for (i, place) in places.iter().enumerate() {
            assert!(!places[..i].contains(place), "{}: {place}", distinct[i]);
        }
    }

    #[test]
    fn mirror_name_is_stable_safe_and_distinct() {
        let a = RemoteUrl::parse("git@host-a:/PROJ/app.git").unwrap();
        let b = RemoteUrl::parse("git@host-b:/PROJ/app.git").unwrap();
        assert_eq!(a.mirror_name(), a.clone().mirror_name());
        assert_ne!(a.mirror_name(), b.mirror_name());
        assert!(a.mirror_name().starts_with("app-"));
        let odd = RemoteUrl::parse("https://h/x/../we ird%20name.git").unwrap();
        let name = odd.mirror_name();
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)),
            "{name}"
        );
        assert!(!name.starts_with('.'));
    }
}
