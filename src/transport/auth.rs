//! Credentials and host-key checks handed to libgit2 when a remote asks for them (SSH asks
//! `transport::ssh` instead, which uses the same key, policy and messages).
//!
//! libgit2 calls the credentials callback again after every refusal, forever; a wrong key must end
//! in one clear error, not a hung build, so attempts are counted. Credentials are produced inside
//! the callback, per connection, so time-limited ones (CodeCommit signatures) are fresh when the
//! request is finally sent: a large pack is built before the request starts.

use std::cell::Cell;

use git2::{CertificateCheckStatus, Cred, CredentialType, RemoteCallbacks};
use tracing::warn;

use crate::base::secret::Secret;
use crate::base::url::{RemoteUrl, Scheme};
use crate::transport::known_hosts::{HostKeyPolicy, PresentedKey, Verdict};
use crate::transport::remote::{End, Login, Remote};

/// Why credentials for `url` must not answer libgit2's request for `asked`, the URL it is
/// actually talking to: an HTTP(S) server redirected it to another origin (scheme, host, port).
/// Every credential we hold was given for one origin; libgit2 follows the first request's
/// redirect and asks again there, and answering would hand a password or signature to whoever
/// the first server chose. `None` when `asked` is the same origin.
fn elsewhere(url: &RemoteUrl, asked: &str) -> Option<String> {
    if !matches!(url.scheme(), Scheme::Http | Scheme::Https) {
        return None;
    }
    let origin = |text: &str| {
        ::url::Url::parse(text).ok().map(|u| {
            (
                u.scheme().to_ascii_lowercase(),
                u.host_str().map(str::to_ascii_lowercase),
                u.port_or_known_default(),
            )
        })
    };
    let given = origin(url.as_git_url());
    if given.is_some() && given == origin(asked) {
        return None;
    }
    Some(format!(
        "{} redirected to {}, another host; the credentials given for {} are not sent there. \
         If that is where the repository now lives, use that URL",
        url.redacted(),
        crate::base::secret::redact_userinfo(asked),
        url.authority()
    ))
}

/// How many times one connection may ask for credentials before we call it refused.
const MAX_ATTEMPTS: u32 = 3;

/// An SSH private key held in memory.
pub(crate) struct SshKey {
    pub(crate) private: Secret,
    pub(crate) passphrase: Option<Secret>,
}

/// Everything we can offer the two remotes, built once per run from the config.
pub(crate) struct Auth {
    pub(crate) ssh_key: Option<SshKey>,
    /// Use a running ssh-agent when no key was given (a person's laptop).
    pub(crate) ssh_agent: bool,
    pub(crate) host_keys: HostKeyPolicy,
    pub(crate) source: Login,
    pub(crate) target: Login,
    /// Why the last host key of each end was refused: libgit2 replaces a callback's message
    /// with its own generic one, so the real reason is kept here for the error report. By end:
    /// the source's look and the target's listing run at once, on two threads.
    rejection: std::sync::Mutex<[Option<String>; 2]>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("ssh_key", &self.ssh_key.is_some())
            .field("ssh_agent", &self.ssh_agent)
            .field("host_keys", &self.host_keys)
            .finish_non_exhaustive()
    }
}

impl Auth {
    pub(crate) fn new(
        ssh_key: Option<SshKey>,
        ssh_agent: bool,
        host_keys: HostKeyPolicy,
        source: Login,
        target: Login,
    ) -> Auth {
        Auth {
            ssh_key,
            ssh_agent,
            host_keys,
            source,
            target,
            rejection: std::sync::Mutex::new([None, None]),
        }
    }

    fn login(&self, end: End) -> &Login {
        match end {
            End::Source => &self.source,
            End::Target => &self.target,
        }
    }

    /// Install the credentials and host-key callbacks for one connection to `remote`.
    pub(crate) fn install<'a>(&'a self, remote: &'a Remote, callbacks: &mut RemoteCallbacks<'a>) {
        let url = &remote.url;
        let attempts = Cell::new(0u32);
        callbacks.credentials(move |asked, username, allowed| {
            if let Some(why) = elsewhere(url, asked) {
                return Err(git2::Error::from_str(&why));
            }
            attempts.set(attempts.get() + 1);
            if attempts.get() > MAX_ATTEMPTS {
                return Err(git2::Error::from_str(&self.refused(url)));
            }
            self.credentials(remote, username, allowed)
        });
        callbacks.certificate_check(move |cert, host| {
            let Some(hostkey) = cert.as_hostkey() else {
                // TLS: libgit2's own verification against the system's CAs stands.
                return Ok(CertificateCheckStatus::CertificatePassthrough);
            };
            let key_type = hostkey.hostkey_type().map(|t| t.name());
            let presented = PresentedKey {
                host,
                port: url.port(),
                key_type,
                raw: hostkey.hostkey(),
                sha256: hostkey.hash_sha256().map(|h| h.as_slice()),
            };
            match self.host_keys.check(&presented) {
                Verdict::Trusted => Ok(CertificateCheckStatus::CertificateOk),
                Verdict::TrustedOnFirstUse(message) => {
                    warn!("{message}");
                    Ok(CertificateCheckStatus::CertificateOk)
                }
                Verdict::Rejected(message) => {
                    self.reject(remote.end, &message);
                    Err(git2::Error::from_str(&message))
                }
            }
        });
    }

    /// Keep why `end`'s host key was refused, for `explain`.
    pub(crate) fn reject(&self, end: End, message: &str) {
        self.rejection.lock().unwrap_or_else(|e| e.into_inner())[end as usize] =
            Some(message.to_string());
    }

    fn credentials(
        &self,
        remote: &Remote,
        username: Option<&str>,
        allowed: CredentialType,
    ) -> Result<Cred, git2::Error> {
        let url = &remote.url;
        let user = url.user().or(username);
        if url.scheme() == Scheme::Ssh {
            let user = user.unwrap_or("git");
            if allowed.contains(CredentialType::USERNAME) {
                return Cred::username(user);
            }
            if allowed.contains(CredentialType::SSH_KEY)
                || allowed.contains(CredentialType::SSH_MEMORY)
            {
                if let Some(key) = &self.ssh_key {
                    return Cred::ssh_key_from_memory(
                        user,
                        None,
                        key.private.expose(),
                        key.passphrase.as_ref().map(Secret::expose),
                    )
                    .map_err(|e| {
                        git2::Error::from_str(&format!(
                            "the SSH private key cannot be used ({}); check its format and passphrase",
                            e.message()
                        ))
                    });
                }
                if self.ssh_agent {
                    return Cred::ssh_key_from_agent(user);
                }
            }
            return Err(git2::Error::from_str(&format!(
                "{} needs an SSH key: pass --ssh-key-ssm, --ssh-key-env or --ssh-key-file",
                url.redacted()
            )));
        }
        if allowed.contains(CredentialType::USER_PASS_PLAINTEXT) {
            match self.login(remote.end) {
                Login::Signed(signer) => {
                    let (user, password) = signer.credentials().map_err(|e| {
                        git2::Error::from_str(&format!(
                            "cannot sign CodeCommit credentials for {}: {e:#}",
                            url.redacted()
                        ))
                    })?;
                    return Cred::userpass_plaintext(&user, password.expose());
                }
                Login::Password(password) => {
                    return Cred::userpass_plaintext(user.unwrap_or("git"), password.expose());
                }
                Login::Url => {
                    if let Some(password) = url.password() {
                        return Cred::userpass_plaintext(user.unwrap_or(""), password);
                    }
                }
            }
        }
        Err(git2::Error::from_str(&format!(
            "{} asks for credentials and none were given; see the README's Authentication section",
            url.redacted()
        )))
    }

    /// Turn a libgit2 failure on `remote` into the error a person can act on.
    pub(crate) fn explain(&self, remote: &Remote, what: &str, err: git2::Error) -> anyhow::Error {
        let url = &remote.url;
        let rejection =
            self.rejection.lock().unwrap_or_else(|e| e.into_inner())[remote.end as usize].take();
        if let Some(message) = rejection {
            return anyhow::anyhow!("{what} {}: {message}", url.redacted());
        }
        if err.code() == git2::ErrorCode::Auth {
            return anyhow::anyhow!("{what} {}: {}", url.redacted(), self.refused(url));
        }
        if let Some(why) = self.unreadable_key(url, &err) {
            return anyhow::anyhow!("{what} {}: {why}", url.redacted());
        }
        anyhow::Error::new(err).context(format!("{what} {}", url.redacted()))
    }

    /// libssh2 reads the key only when it authenticates, and says "Unsupported private key
    /// format" (OpenSSH format) or "Wrong passphrase or invalid/unrecognized private key file
    /// format" (PEM) for a key it could not decrypt. The key's format was checked before any
    /// connection, so for an encrypted key that means the passphrase.
    fn unreadable_key(&self, url: &RemoteUrl, err: &git2::Error) -> Option<String> {
        let key = self.ssh_key.as_ref()?;
        let message = err.message();
        let unreadable = url.scheme() == Scheme::Ssh
            && err.class() == git2::ErrorClass::Ssh
            && (message.contains("Unable to extract public key from private key")
                || message.contains("Wrong passphrase")
                || message.contains("Unable to initialize private key")
                || message.contains("Unsupported private key format"));
        if !unreadable {
            return None;
        }
        Some(if key.passphrase.is_some() {
            "the SSH key's passphrase (--ssh-passphrase-*) is wrong: libssh2 cannot decrypt the \
             key with it"
                .to_string()
        } else {
            format!(
                "libssh2 cannot read the SSH key (--ssh-key-*): {}; give it in OpenSSH or PEM \
                 format",
                message.rsplit(": ").next().unwrap_or(message)
            )
        })
    }

    pub(crate) fn refused(&self, url: &RemoteUrl) -> String {
        if url.scheme() == Scheme::Ssh {
            format!(
                "{} refused the SSH key for user '{}'; check that its public half is registered \
                 there (Backlog: Personal settings > SSH keys)",
                url.host().unwrap_or("the server"),
                url.user().unwrap_or("git")
            )
        } else {
            format!(
                "{} refused the credentials {MAX_ATTEMPTS} times; check the password, token or \
                 AWS permissions",
                url.redacted()
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_answer_only_their_own_origin() {
        let url = RemoteUrl::parse("https://bob:pw@git.example.com/team/app.git").unwrap();
        for same in [
            "https://git.example.com/team/app.git",
            "https://bob@GIT.example.com:443/team/app.git/info/refs",
            "https://git.example.com/moved/app.git",
        ] {
            assert_eq!(elsewhere(&url, same), None, "{same}");
        }
        for other in [
            "https://evil.example.com/team/app.git",
            "http://git.example.com/team/app.git",
            "https://git.example.com:8443/team/app.git",
            "not a url",
        ] {
            let why = elsewhere(&url, other).expect(other);
            assert!(why.contains("redirected") && !why.contains("pw"), "{why}");
        }
        let ssh = RemoteUrl::parse("git@host:team/app.git").unwrap();
        assert_eq!(elsewhere(&ssh, "ssh://git@host/team/app.git"), None);
    }
}
