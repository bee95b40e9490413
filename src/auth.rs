//! Credentials handed to libgit2 when a remote asks for them.
//!
//! libgit2 calls the credentials callback again after every refusal, forever; a wrong password
//! must end in one clear error, not a hung build. Credentials are produced inside the callback,
//! per connection, so anything time-limited is fresh when the request is finally sent (a large
//! pack is built before the request starts).

use std::cell::Cell;

use git2::{Cred, CredentialType, RemoteCallbacks};

use crate::url::RemoteUrl;

/// How many times one connection may ask for credentials before we call it refused.
const MAX_ATTEMPTS: u32 = 3;

/// What we can offer a remote. Built once per run from the config.
#[derive(Default)]
pub struct Auth {}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Auth { .. }")
    }
}

impl Auth {
    /// Install the credentials callback for one connection to `url`.
    pub fn install<'a>(&'a self, url: &'a RemoteUrl, callbacks: &mut RemoteCallbacks<'a>) {
        let attempts = Cell::new(0u32);
        callbacks.credentials(move |_url, username, allowed| {
            attempts.set(attempts.get() + 1);
            if attempts.get() > MAX_ATTEMPTS {
                return Err(git2::Error::from_str(&format!(
                    "authentication to {} failed {MAX_ATTEMPTS} times; check the credentials",
                    url.redacted()
                )));
            }
            if allowed.contains(CredentialType::USER_PASS_PLAINTEXT)
                && let Some(password) = url.password()
            {
                let user = url.user().or(username).unwrap_or("");
                return Cred::userpass_plaintext(user, password);
            }
            Err(git2::Error::from_str(&format!(
                "{} asks for credentials and none were given; see the README's Authentication section",
                url.redacted()
            )))
        });
    }
}
