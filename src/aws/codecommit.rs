//! AWS CodeCommit as a target, signed natively.
//!
//! CodeCommit's Git endpoint takes HTTP basic auth whose password is a SigV4 signature over a
//! pseudo-request (method `GIT`). git-remote-codecommit computes it in Python once per git run;
//! we compute it in the credentials callback of every connection, from the AWS SDK's credential
//! chain, so a long push never presents a stale signature and no Python is needed. One detail
//! differs from ordinary SigV4 and is easy to get wrong: the timestamp in the string to sign has
//! no trailing `Z`; the `Z` appears only in the password, between timestamp and signature.

use std::time::SystemTime;

use anyhow::{Context, Result};
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::base::secret::Secret;

/// A CodeCommit repository as the user named it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Repo {
    pub(crate) name: String,
    /// From the URL; `None` means "the AWS configuration's region".
    pub(crate) region: Option<String>,
    /// `PROFILE@` of the codecommit:// forms.
    pub(crate) profile: Option<String>,
    /// The host of an `https://git-codecommit...` URL, kept as written (FIPS, China).
    pub(crate) host: Option<String>,
}

/// Recognise the CodeCommit spellings: `codecommit::REGION://[PROFILE@]REPO`,
/// `codecommit://[PROFILE@]REPO` and `https://git-codecommit[-fips].REGION.amazonaws.com[.cn]/v1/repos/REPO`.
/// `Ok(None)`: not CodeCommit; `Err`: CodeCommit but malformed.
pub(crate) fn parse(raw: &str) -> Result<Option<Repo>, String> {
    let raw = raw.trim();
    if let Some(rest) = raw.strip_prefix("codecommit::") {
        let Some((region, repo)) = rest.split_once("://") else {
            return Err("must look like codecommit::REGION://[PROFILE@]REPO".to_string());
        };
        return named(Some(region), repo).map(Some);
    }
    if let Some(repo) = raw.strip_prefix("codecommit://") {
        return named(None, repo).map(Some);
    }
    let Some((host, path)) = raw
        .strip_prefix("https://")
        .and_then(|rest| rest.split_once('/'))
    else {
        return Ok(None);
    };
    let host_only = host.rsplit('@').next().unwrap_or(host);
    let Some(region) = region_of_host(host_only) else {
        return Ok(None);
    };
    let Some(name) = path.strip_prefix("v1/repos/") else {
        return Err("a CodeCommit URL's path is /v1/repos/REPO".to_string());
    };
    Ok(Some(Repo {
        name: check_name(name.trim_end_matches('/'))?,
        region: Some(region),
        profile: None,
        host: Some(host_only.to_string()),
    }))
}

fn named(region: Option<&str>, repo: &str) -> Result<Repo, String> {
    let (profile, name) = match repo.split_once('@') {
        Some((profile, name)) => (Some(profile.to_string()), name),
        None => (None, repo),
    };
    if let Some(region) = region
        && !is_region(region)
    {
        return Err(format!(
            "'{region}' is not an AWS region name (e.g. ap-northeast-1)"
        ));
    }
    if profile.as_deref() == Some("") {
        return Err("has an empty profile before '@'".to_string());
    }
    Ok(Repo {
        name: check_name(name)?,
        region: region.map(str::to_string),
        profile,
        host: None,
    })
}

/// CodeCommit repository names: 1-100 of letters, digits, '.', '_' and '-', not ending in .git.
pub(crate) fn check_name(name: &str) -> Result<String, String> {
    let ok = !name.is_empty()
        && name.len() <= 100
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(name.to_string())
    } else {
        Err(format!(
            "'{name}' is not a CodeCommit repository name (1-100 letters, digits, '.', '_', '-')"
        ))
    }
}

pub(crate) fn is_region(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() >= 3
        && parts[0].len() == 2
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric()))
        && parts
            .last()
            .is_some_and(|p| p.chars().all(|c| c.is_ascii_digit()))
}

/// `git-codecommit[-fips].REGION.amazonaws.com[.cn]` -> REGION.
fn region_of_host(host: &str) -> Option<String> {
    let host = host.split(':').next()?;
    let rest = host
        .strip_prefix("git-codecommit-fips.")
        .or_else(|| host.strip_prefix("git-codecommit."))?;
    let region = rest
        .strip_suffix(".amazonaws.com")
        .or_else(|| rest.strip_suffix(".amazonaws.com.cn"))?;
    is_region(region).then(|| region.to_string())
}

/// Whether `host` is one of AWS's own CodeCommit Git endpoints (not an override).
pub(crate) fn is_aws_host(host: &str) -> bool {
    region_of_host(host).is_some()
}

/// Whether `host` is a CodeCommit Git endpoint (or the one `CODE_COMMIT_ENDPOINT` names).
pub(crate) fn is_codecommit_host(host: &str) -> bool {
    region_of_host(host).is_some()
        || ["CODE_COMMIT_ENDPOINT", "BACKLOG_MIRROR_CODECOMMIT_ENDPOINT"]
            .iter()
            .any(|var| std::env::var(var).is_ok_and(|e| endpoint_host(&e) == host))
}

/// The domain CodeCommit uses in `region`.
pub(crate) fn domain(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "amazonaws.com.cn"
    } else {
        "amazonaws.com"
    }
}

/// Normalise an endpoint override (`host`, `host:port` or an https URL) to `host[:port]`.
pub(crate) fn endpoint_host(endpoint: &str) -> String {
    let e = endpoint.trim();
    let e = e.strip_prefix("https://").unwrap_or(e);
    e.trim_end_matches('/').to_string()
}

/// Whether an endpoint override names a host and nothing else: `host`, `host:port`, `[v6]:port`,
/// optionally written as an https URL. Anything more (a path, userinfo) would be signed and
/// contacted as a host name, and printed where a host name is printed.
pub(crate) fn is_endpoint(endpoint: &str) -> bool {
    let host = endpoint_host(endpoint);
    let (name, port) = match host.rsplit_once(':') {
        Some((name, port)) if !name.ends_with(':') && !port.contains(']') => (name, Some(port)),
        _ => (host.as_str(), None),
    };
    let name_ok = match name.strip_prefix('[').and_then(|n| n.strip_suffix(']')) {
        Some(v6) => !v6.is_empty() && v6.chars().all(|c| c.is_ascii_hexdigit() || c == ':'),
        None => {
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-'))
        }
    };
    let port_ok = port.is_none_or(|p| p.parse::<u16>().is_ok_and(|p| p > 0));
    name_ok && port_ok
}

/// The host to talk to: `--codecommit-endpoint`, else `CODE_COMMIT_ENDPOINT` (as
/// git-remote-codecommit), else the host written in the URL, else the region's endpoint.
pub(crate) fn resolve_host(repo: &Repo, region: &str, endpoint: Option<&str>) -> String {
    if let Some(e) = endpoint.filter(|e| !e.trim().is_empty()) {
        return endpoint_host(e);
    }
    if let Ok(e) = std::env::var("CODE_COMMIT_ENDPOINT")
        && !e.trim().is_empty()
    {
        return endpoint_host(&e);
    }
    if let Some(host) = &repo.host {
        return host.clone();
    }
    format!("git-codecommit.{region}.{}", domain(region))
}

/// `/v1/repos/REPO`: the path that is both requested and signed.
fn repo_path(name: &str) -> String {
    format!("/v1/repos/{name}")
}

/// A CodeCommit repository resolved for a run: the region it is in and the host (with port)
/// that is contacted and signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CodeCommit {
    pub(crate) name: String,
    pub(crate) profile: Option<String>,
    pub(crate) region: String,
    pub(crate) host: String,
}

impl CodeCommit {
    /// `repo` in `region`, reached at `endpoint` when given (see [`resolve_host`]).
    pub(crate) fn new(repo: Repo, region: String, endpoint: Option<&str>) -> CodeCommit {
        CodeCommit {
            host: resolve_host(&repo, &region, endpoint),
            name: repo.name,
            profile: repo.profile,
            region,
        }
    }

    /// The HTTPS URL that is contacted.
    pub(crate) fn url(&self) -> String {
        format!("https://{}{}", self.host, repo_path(&self.name))
    }

    /// Signing for this repository, with credentials from the AWS chain (of its profile).
    pub(crate) fn signer(&self) -> Result<Signer> {
        Signer::new(
            Some(&self.region),
            self.profile.as_deref(),
            &self.host,
            &self.name,
        )
    }
}

/// Static credentials at one moment.
pub(crate) struct Credentials<'a> {
    pub(crate) access_key_id: &'a str,
    pub(crate) secret_access_key: &'a str,
    pub(crate) session_token: Option<&'a str>,
}

/// (username, password) for basic auth, exactly as git-remote-codecommit computes them.
pub(crate) fn sign(
    creds: &Credentials<'_>,
    region: &str,
    host: &str,
    path: &str,
    time: SystemTime,
) -> (String, String) {
    let (date, stamp) = timestamp(time);
    let canonical = format!("GIT\n{path}\n\nhost:{host}\n\nhost\n");
    let scope = format!("{date}/{region}/codecommit/aws4_request");
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{stamp}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical.as_bytes()))
    );
    let key = aws_sigv4::sign::v4::generate_signing_key(
        creds.secret_access_key,
        time,
        region,
        "codecommit",
    );
    let signature = aws_sigv4::sign::v4::calculate_signature(key, string_to_sign.as_bytes());
    let username = match creds.session_token {
        Some(token) if !token.is_empty() => format!("{}%{token}", creds.access_key_id),
        _ => creds.access_key_id.to_string(),
    };
    (username, format!("{stamp}Z{signature}"))
}

/// (`YYYYMMDD`, `YYYYMMDDTHHMMSS`) in UTC.
fn timestamp(time: SystemTime) -> (String, String) {
    let t = OffsetDateTime::from(time);
    let date = format!("{:04}{:02}{:02}", t.year(), u8::from(t.month()), t.day());
    let stamp = format!("{date}T{:02}{:02}{:02}", t.hour(), t.minute(), t.second());
    (date, stamp)
}

/// Signs for one repository with credentials from the AWS chain, afresh on every call.
pub(crate) struct Signer {
    provider: SharedCredentialsProvider,
    region: String,
    host: String,
    path: String,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Signer({}{})", self.host, self.path)
    }
}

impl Signer {
    /// Set up signing for the repository `name` at `host`, in `region` (else the AWS
    /// configuration's region), with credentials from the AWS chain of `profile`.
    pub(crate) fn new(
        region: Option<&str>,
        profile: Option<&str>,
        host: &str,
        name: &str,
    ) -> Result<Signer> {
        let config = crate::aws::config::sdk_config(region, profile)?;
        let region = config.region().map(|r| r.to_string()).ok_or_else(|| {
            crate::base::error::usage(format!(
                "the CodeCommit repository '{name}' needs an AWS region: use codecommit::REGION://{name}, --region or AWS_REGION"
            ))
        })?;
        let provider = config.credentials_provider().ok_or_else(|| {
            anyhow::anyhow!("no AWS credentials provider is configured for CodeCommit")
        })?;
        Ok(Signer {
            host: host.to_string(),
            path: repo_path(name),
            region,
            provider,
        })
    }

    /// A fresh (username, password) for one connection.
    pub(crate) fn credentials(&self) -> Result<(String, Secret)> {
        let creds = crate::aws::config::runtime()?
            .block_on(self.provider.provide_credentials())
            .context(
                "no AWS credentials found (env, profile, web identity, container or instance role)",
            )?;
        if let Some(token) = creds.session_token() {
            crate::base::secret::register(token);
        }
        crate::base::secret::register(creds.secret_access_key());
        let (user, password) = sign(
            &Credentials {
                access_key_id: creds.access_key_id(),
                secret_access_key: creds.secret_access_key(),
                session_token: creds.session_token(),
            },
            &self.region,
            &self.host,
            &self.path,
            SystemTime::now(),
        );
        if creds.session_token().is_some() {
            crate::base::secret::register(&user);
        }
        Ok((user, Secret::new(password)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn parses_every_form() {
        let r = parse("codecommit::ap-northeast-1://prof@my-repo")
            .unwrap()
            .unwrap();
        assert_eq!(
            (r.region.as_deref(), r.profile.as_deref(), r.name.as_str()),
            (Some("ap-northeast-1"), Some("prof"), "my-repo")
        );
        let r = parse("codecommit://my-repo").unwrap().unwrap();
        assert_eq!((r.region, r.profile), (None, None));
        let r = parse("https://git-codecommit.cn-north-1.amazonaws.com.cn/v1/repos/app")
            .unwrap()
            .unwrap();
        assert_eq!(r.region.as_deref(), Some("cn-north-1"));
        let r = parse("https://git-codecommit-fips.us-east-1.amazonaws.com/v1/repos/app")
            .unwrap()
            .unwrap();
        assert_eq!(
            r.host.as_deref(),
            Some("git-codecommit-fips.us-east-1.amazonaws.com")
        );
        assert_eq!(parse("https://github.com/a/b.git"), Ok(None));
        assert!(parse("codecommit::nowhere://x").is_err());
        assert!(parse("codecommit://bad/name").is_err());
    }

    #[test]
    fn endpoints_are_hosts_and_ports_only() {
        for good in [
            "git-codecommit.us-east-1.amazonaws.com",
            "127.0.0.1:8443",
            "https://127.0.0.1:8443/",
            "[::1]:8443",
        ] {
            assert!(is_endpoint(good), "{good}");
        }
        for bad in [
            "",
            "https://u:p@host",
            "ftp://host",
            "host/path",
            "host:99999",
            "host:",
            "[::1",
        ] {
            assert!(!is_endpoint(bad), "{bad}");
        }
    }

    #[test]
    fn timestamps_are_utc_calendar_dates() {
        let t = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(timestamp(t), ("20231114".into(), "20231114T221320".into()));
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(timestamp(leap).0, "20000229");
    }

    #[test]
    fn china_regions_use_the_cn_domain() {
        let repo = parse("codecommit::cn-north-1://r").unwrap().unwrap();
        assert_eq!(
            resolve_host(&repo, "cn-north-1", None),
            "git-codecommit.cn-north-1.amazonaws.com.cn"
        );
        assert_eq!(
            resolve_host(&repo, "cn-north-1", Some("https://127.0.0.1:8443/")),
            "127.0.0.1:8443"
        );
    }

    #[test]
    fn password_has_the_z_only_between_stamp_and_signature() {
        let creds = Credentials {
            access_key_id: "AKID",
            secret_access_key: "secret",
            session_token: Some("tok"),
        };
        let t = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let (user, password) = sign(
            &creds,
            "us-east-1",
            "git-codecommit.us-east-1.amazonaws.com",
            "/v1/repos/r",
            t,
        );
        assert_eq!(user, "AKID%tok");
        assert!(password.starts_with("20231114T221320Z"));
        assert_eq!(password.len(), "20231114T221320Z".len() + 64);
    }
}
