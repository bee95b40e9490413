//! The two ends of a mirror, each resolved once from the settings: the URL contacted, how it
//! learns who we are, what a git child needs to reach it, and whether git may push there.
//!
//! What a remote is decides several things far apart: the credentials libgit2 answers with, the
//! environment of a `git push`, whether the git CLI may push there at all, the summary's URL.
//! Deciding them here, from one value made in `settings::config`, keeps a new kind of remote (a GitHub App
//! token, a second CodeCommit form) one variant and its match arms, not a change in every module
//! that pushes.

use anyhow::{Context, Result};

use crate::aws::codecommit::{CodeCommit, Signer};
use crate::base::secret::Secret;
use crate::base::url::{RemoteUrl, Scheme};
use crate::transport::secret_source::SecretSource;

/// Which end of the mirror a remote is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
    Source = 0,
    Target = 1,
}

/// A repository the run talks to.
#[derive(Debug, Clone)]
pub(crate) struct Remote {
    pub(crate) end: End,
    /// What is contacted: for CodeCommit, its HTTPS endpoint, whatever form the user wrote.
    pub(crate) url: RemoteUrl,
    pub(crate) access: Access,
}

/// How a remote learns who we are, before any secret is read.
#[derive(Debug, Clone)]
pub(crate) enum Access {
    /// Nothing of ours: credentials written into the URL, an SSH key (shared by both ends),
    /// or none.
    Url,
    /// A password or token for an HTTP(S) remote (`--source-password-*`, `--target-password-*`).
    Password(SecretSource),
    /// CodeCommit: a SigV4 signature from the AWS credential chain, made afresh per connection.
    CodeCommit(CodeCommit),
}

/// How a remote learns who we are, secrets read: what answers libgit2's credential requests.
pub(crate) enum Login {
    Url,
    Password(Secret),
    Signed(Signer),
}

impl Remote {
    pub(crate) fn codecommit(&self) -> Option<&CodeCommit> {
        match &self.access {
            Access::CodeCommit(repo) => Some(repo),
            _ => None,
        }
    }

    /// Why the git CLI cannot push here, if it cannot. git is never handed a credential (it
    /// would sit in its environment or command line for any local user to read), so it can push
    /// only where none is needed, or where git asks our credential helper (CodeCommit); and it
    /// would reach an SSH remote with the machine's ssh, not our key and host key policy.
    pub(crate) fn git_cannot_push(&self) -> Option<&'static str> {
        if self.url.password().is_some() || matches!(self.access, Access::Password(_)) {
            Some("the target needs a password, which git is never given")
        } else if self.url.scheme() == Scheme::Ssh {
            Some(
                "git would push with the machine's ssh, not with --ssh-key-* and the host key policy",
            )
        } else {
            None
        }
    }

    /// The environment a git child needs to reach this remote: for CodeCommit, git asks us
    /// (`backlog-mirror credential-helper`) for each signature, so none passes through a command
    /// line.
    pub(crate) fn git_env(&self) -> Result<Vec<(String, String)>> {
        let Some(repo) = self.codecommit() else {
            return Ok(Vec::new());
        };
        let exe = std::env::current_exe().context("cannot locate our own executable for git")?;
        let exe = exe.display().to_string().replace('\'', "'\\''");
        let config = [
            // The empty value clears any helper configured elsewhere before ours.
            ("credential.helper", String::new()),
            ("credential.helper", format!("!'{exe}' credential-helper")),
            ("credential.useHttpPath", "true".to_string()),
            // git >= 2.46 sends the signature with its first request instead of waiting for a
            // 401 (one round trip less per push); older git ignores the key.
            ("http.proactiveAuth", "basic".to_string()),
        ];
        let mut env = vec![("GIT_CONFIG_COUNT".to_string(), config.len().to_string())];
        for (i, (key, value)) in config.into_iter().enumerate() {
            env.push((format!("GIT_CONFIG_KEY_{i}"), key.to_string()));
            env.push((format!("GIT_CONFIG_VALUE_{i}"), value));
        }
        env.push(("BACKLOG_MIRROR_REGION".to_string(), repo.region.clone()));
        env.push((
            "BACKLOG_MIRROR_CODECOMMIT_ENDPOINT".to_string(),
            self.url.authority(),
        ));
        // The helper signs with the run's AWS credentials, which git children do not inherit.
        env.extend(crate::base::secret::aws_environment());
        Ok(env)
    }

    /// Read the secret this remote needs (Parameter Store in `region`) or set up its signing.
    pub(crate) fn login(&self, region: Option<&str>) -> Result<Login> {
        Ok(match &self.access {
            Access::Url => Login::Url,
            Access::Password(source) => {
                let value = source.read(region)?;
                Login::Password(Secret::new(value.expose().trim().to_string()))
            }
            Access::CodeCommit(repo) => Login::Signed(repo.signer()?),
        })
    }
}
