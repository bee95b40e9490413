//! Backlog's REST API (v2), the two calls discovery needs: the projects the API key's user
//! belongs to, and one project's Git repositories.
//!
//! Why a client of our own: two GET requests with a key in the query string do not justify a
//! crate, and going through `transport::http` gives them the proxies, TLS roots and timeouts
//! every other request of a run has. What each behaviour rests on, in Nulab's developer
//! documentation (developer.nulab.com/docs/backlog/...):
//! - `api/2/get-project-list`: `GET /api/v2/projects`; `archived` unset lists every project,
//!   `false` the unarchived ones, `true` the archived ones; `all` (administrators only) lists the
//!   projects the user has not joined too. No paging parameter is documented, so one answer is
//!   the whole list.
//! - `api/2/get-list-of-git-repositories`: `GET /api/v2/projects/:projectIdOrKey/git/repositories`,
//!   an array of `id`, `name`, `httpUrl`, `sshUrl` (and more); no query parameter and no paging
//!   is documented either.
//! - `error-response`: errors are `{"errors":[{"message","code","moreInfo"}]}`; code 6 is
//!   "no resource", 11 an authentication error, 13 too many requests. It does not say which HTTP
//!   status goes with which code, so this client branches on the status alone and shows the
//!   messages.
//! - `rate-limit`: a request over the per-minute limit gets 429; every answer carries
//!   `X-RateLimit-Limit`, `X-RateLimit-Remaining` and `X-RateLimit-Reset` (UTC epoch seconds).
//!   The Japanese page advises waiting a minute after a 429, or until `X-RateLimit-Reset`; this
//!   client waits until the reset (at most [`MAX_RATE_WAIT`], a window's length), and fails
//!   typed when the reset is further away or the limit persists.
//! - The key goes in the `apiKey` query parameter (as the documentation's examples do), so the
//!   request's URL is never shown: messages name the API's base URL and path only, and the key
//!   is a registered secret, scrubbed from every output in any encoding.
//!
//! The documentation is silent on a 401 for a bad key (the status is what the service answers)
//! and on answer sizes; an answer is read up to [`MAX_ANSWER`] bytes and refused beyond.

use std::io::Read;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Result;
use http::Method;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::base::net_error::NetError;
use crate::base::secret::Secret;
use crate::base::text::clip;
use crate::transport::http::{Http, Request};
use crate::transport::retry::Retry;

/// The most of one answer read: a project list of thousands, or a project of thousands of
/// repositories, is well under it.
pub(crate) const MAX_ANSWER: u64 = 8 << 20;

/// The longest wait for a rate limit to reset: the limit is counted per minute.
pub(crate) const MAX_RATE_WAIT: Duration = Duration::from_secs(60);

/// How many 429 answers one request waits out before it fails.
const RATE_WAITS: u32 = 3;

/// A project, as the project list gives it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Project {
    pub(crate) project_key: String,
    pub(crate) name: String,
    #[serde(default)]
    pub(crate) archived: bool,
}

/// A Git repository of a project.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Repository {
    pub(crate) name: String,
    #[serde(default)]
    pub(crate) http_url: Option<String>,
    #[serde(default)]
    pub(crate) ssh_url: Option<String>,
}

/// What the API refused, as a caller branches on it (no message is read).
#[derive(Debug, thiserror::Error)]
pub(crate) enum ApiError {
    /// 401 or 403: the key is wrong, revoked, or its user may not do this.
    #[error(
        "{shown} refused the Backlog API key (HTTP {status}{said}); fix the key that {flag} \
         names: an API key of a user of this space (Backlog: Personal settings > API)"
    )]
    Refused {
        shown: String,
        status: u16,
        said: String,
        flag: String,
    },
    /// 429 beyond what this client waits for.
    #[error(
        "{shown} kept answering HTTP 429 (rate limit): {why}; run again later, or leave the \
         API alone for a minute"
    )]
    RateLimited { shown: String, why: String },
    /// 404: the project does not exist, or the key's user cannot see it.
    #[error("{shown} answered HTTP 404{said}")]
    NotFound { shown: String, said: String },
    /// An answer that is not what the documentation describes: too large, not JSON.
    #[error("{0}")]
    Unreadable(String),
}

/// The API of one space, with its key.
pub(crate) struct BacklogApi<'a> {
    http: &'a Http,
    /// `https://SPACE.backlog.jp` or an on-premises base, without a trailing slash.
    base: String,
    key: Secret,
    /// The flag (or list key) the key came from, for messages.
    flag: String,
    retry: Retry,
}

impl<'a> BacklogApi<'a> {
    pub(crate) fn new(http: &'a Http, base: &str, key: Secret, flag: &str, retries: u32) -> Self {
        BacklogApi {
            http,
            base: base.trim_end_matches('/').to_string(),
            key,
            flag: flag.to_string(),
            retry: Retry::new(retries),
        }
    }

    /// `GET /api/v2/projects`: unarchived projects only unless `archived`; every project of the
    /// space, joined or not, when `all` (administrators only).
    pub(crate) fn projects(&self, archived: bool, all: bool) -> Result<Vec<Project>> {
        let mut query = Vec::new();
        if !archived {
            query.push(("archived", "false"));
        }
        if all {
            query.push(("all", "true"));
        }
        self.get("/api/v2/projects", &query)
    }

    /// `GET /api/v2/projects/:key/git/repositories`. `project` is checked by the caller
    /// (letters, digits, `_`), so it needs no escaping.
    pub(crate) fn repositories(&self, project: &str) -> Result<Vec<Repository>> {
        self.get(&format!("/api/v2/projects/{project}/git/repositories"), &[])
    }

    fn get<T: DeserializeOwned>(&self, path: &str, query: &[(&str, &str)]) -> Result<T> {
        let shown = format!("{}{path}", self.base);
        let mut uri = format!(
            "{shown}?apiKey={}",
            percent_encoding::utf8_percent_encode(
                self.key.expose().trim(),
                percent_encoding::NON_ALPHANUMERIC
            )
        );
        for (name, value) in query {
            uri.push_str(&format!("&{name}={value}"));
        }
        let (answer, _) = self.retry.run("asking the Backlog API", || {
            let mut waits = 0;
            loop {
                let uri: http::Uri = uri.parse().map_err(|_| {
                    crate::base::error::usage(format!(
                        "the Backlog API URL {shown} is not a valid URL; check api-url in \
                         [discover]"
                    ))
                })?;
                let request = Request {
                    method: Method::GET,
                    uri,
                    headers: vec![(
                        http::header::ACCEPT,
                        http::HeaderValue::from_static("application/json"),
                    )],
                    shown: shown.clone(),
                };
                let response = self.http.send(request, None)?;
                if response.status == 429 {
                    let wait = rate_wait(&response.headers, SystemTime::now());
                    match wait {
                        Ok(wait) if waits < RATE_WAITS => {
                            waits += 1;
                            tracing::warn!(
                                "{shown} answered HTTP 429 (rate limit); waiting {} for \
                                 X-RateLimit-Reset, then asking again",
                                crate::base::duration::show(wait)
                            );
                            std::thread::sleep(wait);
                            continue;
                        }
                        Ok(_) => {
                            return Err(ApiError::RateLimited {
                                shown: shown.clone(),
                                why: format!("still limited after {RATE_WAITS} waits"),
                            }
                            .into());
                        }
                        Err(why) => {
                            return Err(ApiError::RateLimited {
                                shown: shown.clone(),
                                why,
                            }
                            .into());
                        }
                    }
                }
                return self.read(response, &shown);
            }
        });
        answer
    }

    fn read<T: DeserializeOwned>(
        &self,
        response: crate::transport::http::Response,
        shown: &str,
    ) -> Result<T> {
        let status = response.status;
        let mut body = Vec::new();
        let mut reader = response.body;
        (&mut reader)
            .take(MAX_ANSWER + 1)
            .read_to_end(&mut body)
            .map_err(|e| match e.into_inner() {
                Some(inner) => match inner.downcast::<NetError>() {
                    Ok(net) => anyhow::Error::new(*net),
                    Err(other) => anyhow::anyhow!("reading the answer of {shown} failed: {other}"),
                },
                None => anyhow::anyhow!("reading the answer of {shown} failed"),
            })?;
        if body.len() as u64 > MAX_ANSWER {
            return Err(ApiError::Unreadable(format!(
                "{shown} answered more than {} MiB (HTTP {status}), more than any project or \
                 repository list; check api-url in [discover]",
                MAX_ANSWER >> 20
            ))
            .into());
        }
        if status != 200 {
            let said = said(&body);
            return Err(match status {
                401 | 403 => ApiError::Refused {
                    shown: shown.to_string(),
                    status,
                    said,
                    flag: self.flag.clone(),
                }
                .into(),
                404 => ApiError::NotFound {
                    shown: shown.to_string(),
                    said,
                }
                .into(),
                _ => anyhow::Error::new(NetError::HttpStatus {
                    status,
                    text: format!("{shown} answered HTTP {status}{said}"),
                }),
            });
        }
        serde_json::from_slice(&body).map_err(|e| {
            ApiError::Unreadable(format!(
                "{shown} answered something that is not the documented JSON ({}): {}",
                clip(&e.to_string(), 120),
                clip(&String::from_utf8_lossy(&body[..body.len().min(200)]), 120)
            ))
            .into()
        })
    }
}

/// What an error answer says, for a message: the documented `errors[].message` (with their
/// codes), else the start of the body; escaped and bounded either way.
fn said(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct Errors {
        errors: Vec<Said>,
    }
    #[derive(Deserialize)]
    struct Said {
        #[serde(default)]
        message: String,
        #[serde(default)]
        code: Option<i64>,
    }
    let text = match serde_json::from_slice::<Errors>(body) {
        Ok(errors) => errors
            .errors
            .iter()
            .take(3)
            .map(|e| match e.code {
                Some(code) => format!("{} (code {code})", e.message),
                None => e.message.clone(),
            })
            .collect::<Vec<_>>()
            .join("; "),
        Err(_) => String::from_utf8_lossy(&body[..body.len().min(400)]).into_owned(),
    };
    let text = clip(&text, 200);
    if text.is_empty() {
        String::new()
    } else {
        format!(": {text}")
    }
}

/// How long to wait after a 429: until `X-RateLimit-Reset` (epoch seconds), at least a second;
/// without a readable reset, the minute the documentation advises. A reset further away than
/// [`MAX_RATE_WAIT`] is not waited for.
fn rate_wait(headers: &http::HeaderMap, now: SystemTime) -> Result<Duration, String> {
    let Some(reset) = headers
        .get("x-ratelimit-reset")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
    else {
        return Ok(MAX_RATE_WAIT);
    };
    let now = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let wait = Duration::from_secs(reset).saturating_sub(now);
    if wait > MAX_RATE_WAIT {
        return Err(format!(
            "X-RateLimit-Reset is {} s away, more than the {} s this run waits",
            wait.as_secs(),
            MAX_RATE_WAIT.as_secs()
        ));
    }
    Ok(wait.max(Duration::from_secs(1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reset(value: &str) -> http::HeaderMap {
        let mut headers = http::HeaderMap::new();
        headers.insert("X-RateLimit-Reset", value.parse().unwrap());
        headers
    }

    #[test]
    fn a_rate_limit_is_waited_out_until_its_reset_within_a_minute() {
        let now = UNIX_EPOCH + Duration::from_secs(1_605_484_800);
        assert_eq!(
            rate_wait(&reset("1605484830"), now),
            Ok(Duration::from_secs(30))
        );
        // A reset already past (clocks differ) still waits a second, not zero.
        assert_eq!(
            rate_wait(&reset("1605484700"), now),
            Ok(Duration::from_secs(1))
        );
        assert!(rate_wait(&reset("1605488400"), now).is_err());
        assert_eq!(rate_wait(&http::HeaderMap::new(), now), Ok(MAX_RATE_WAIT));
        assert_eq!(rate_wait(&reset("soon"), now), Ok(MAX_RATE_WAIT));
    }

    #[test]
    fn an_error_answer_is_shown_escaped_and_bounded() {
        let body = br#"{"errors":[{"message":"Authentication failure.\u001b[31m","code":11,"moreInfo":""}]}"#;
        assert_eq!(said(body), ": Authentication failure.\\u{1b}[31m (code 11)");
        let long = "x".repeat(5000);
        assert!(said(long.as_bytes()).len() < 260);
        assert_eq!(said(b""), "");
    }

    #[test]
    fn projects_and_repositories_read_the_documented_fields() {
        let projects: Vec<Project> = serde_json::from_str(
            r#"[{"id":1,"projectKey":"TEST","name":"test","chartEnabled":false,"archived":true}]"#,
        )
        .unwrap();
        assert_eq!(
            (projects[0].project_key.as_str(), projects[0].archived),
            ("TEST", true)
        );
        let repos: Vec<Repository> = serde_json::from_str(
            r#"[{"id":1,"projectId":151,"name":"app","httpUrl":"https://xx.backlog.jp/git/BLG/app.git","sshUrl":"xx@xx.git.backlog.jp:/BLG/app.git","hookUrl":null}]"#,
        )
        .unwrap();
        assert_eq!(
            repos[0].ssh_url.as_deref(),
            Some("xx@xx.git.backlog.jp:/BLG/app.git")
        );
    }
}
