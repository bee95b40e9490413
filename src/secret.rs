//! Secret values and the guarantee that none of them is ever printed.
//!
//! Keys, passphrases, passwords and signatures pass through libgit2, the AWS SDK and our own error
//! chains, any of which may echo what it was given. Wrapping them in [`Secret`] keeps them out of
//! `Debug` and `Display`; registering them lets the log writer and the final error line scrub any
//! copy that slipped into a message by another route. The registry holds only values we were
//! handed, never patterns, so scrubbing cannot eat ordinary text.

use std::fmt;
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

use zeroize::Zeroize;

/// A secret string: redacted when formatted, wiped from memory when dropped.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wrap and register `value` so that any printed copy of it is scrubbed.
    pub fn new(value: String) -> Secret {
        register(&value);
        Secret(value)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

fn registry() -> &'static Mutex<Vec<String>> {
    static REGISTRY: OnceLock<Mutex<Vec<String>>> = OnceLock::new();
    REGISTRY.get_or_init(|| Mutex::new(Vec::new()))
}

/// Remember `value` (and each of its lines, for multi-line keys) as something never to print.
/// Values shorter than 6 characters are not registered: scrubbing them would mangle ordinary text
/// and they are not secrets worth the name.
pub fn register(value: &str) {
    let mut list = registry().lock().unwrap_or_else(|e| e.into_inner());
    let mut add = |v: &str| {
        let v = v.trim();
        if v.len() >= 6 && !list.iter().any(|known| known == v) {
            list.push(v.to_string());
        }
    };
    add(value);
    for line in value.lines() {
        if !line.starts_with("-----") {
            add(line);
        }
    }
    // Longest first, so a value containing another is replaced whole.
    list.sort_by_key(|v| std::cmp::Reverse(v.len()));
}

/// Raw input values that may hold userinfo, each with its printable form.
fn inputs() -> &'static Mutex<Vec<(String, String)>> {
    static INPUTS: OnceLock<Mutex<Vec<(String, String)>>> = OnceLock::new();
    INPUTS.get_or_init(|| Mutex::new(Vec::new()))
}

/// Remember a value the user gave (a flag's value, an environment variable) that may hold a
/// user name and password, so that wherever it is echoed (our messages, clap's, a library's) it
/// is printed without them, whether or not it parses as a URL.
pub fn register_input(raw: &str) {
    let raw = raw.trim();
    let shown = crate::url::redact_raw(raw);
    if shown == raw {
        return;
    }
    let mut list = inputs().lock().unwrap_or_else(|e| e.into_inner());
    if !list.iter().any(|(known, _)| known == raw) {
        list.push((raw.to_string(), shown));
        list.sort_by_key(|(v, _)| std::cmp::Reverse(v.len()));
    }
}

/// Register every command-line argument, and the value of every environment variable this
/// program reads, as a possible carrier of userinfo (see [`register_input`]). Call first thing,
/// before anything can print.
pub fn register_inputs(args: impl IntoIterator<Item = std::ffi::OsString>) {
    let ours = |name: &str| {
        ["BACKLOG_", "CODECOMMIT_", "CODE_COMMIT_"]
            .iter()
            .any(|p| name.starts_with(p))
    };
    let env = std::env::vars_os()
        .filter(|(k, _)| ours(&k.to_string_lossy()))
        .map(|(_, v)| v);
    for value in args.into_iter().chain(env) {
        let value = value.to_string_lossy();
        register_input(&value);
        if let Some((_, after)) = value.split_once('=').filter(|_| value.starts_with("--")) {
            register_input(after);
        }
    }
}

/// `text` with every registered secret replaced by `<redacted>`, every registered input that may
/// hold userinfo by its redacted form, and the userinfo of every URL in it removed.
pub fn scrub(text: &str) -> String {
    let mut out = text.to_string();
    for (raw, shown) in inputs().lock().unwrap_or_else(|e| e.into_inner()).iter() {
        if out.contains(raw.as_str()) {
            out = out.replace(raw.as_str(), shown);
        }
    }
    let list = registry().lock().unwrap_or_else(|e| e.into_inner());
    for secret in list.iter() {
        if out.contains(secret.as_str()) {
            out = out.replace(secret.as_str(), "<redacted>");
        }
    }
    crate::url::redact_userinfo(&out).into_owned()
}

/// A writer that scrubs each write: the log output's last line of defence.
pub struct ScrubbingWriter<W: Write>(pub W);

impl<W: Write> Write for ScrubbingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        self.0.write_all(scrub(&text).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

/// Where a secret comes from: exactly one of `--<what>-ssm`, `--<what>-env`, `--<what>-file`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    Ssm { flag: String, name: String },
    Env { flag: String, var: String },
    File { flag: String, path: PathBuf },
}

impl SecretSource {
    /// Pick the one source given for `what` (e.g. "ssh-key"); two or more is a usage error.
    pub fn pick(
        what: &str,
        ssm: Option<&String>,
        env: Option<&String>,
        file: Option<&PathBuf>,
    ) -> anyhow::Result<Option<SecretSource>> {
        let mut given = Vec::new();
        if let Some(name) = ssm {
            given.push(SecretSource::Ssm {
                flag: format!("--{what}-ssm"),
                name: name.trim().to_string(),
            });
        }
        if let Some(var) = env {
            given.push(SecretSource::Env {
                flag: format!("--{what}-env"),
                var: var.trim().to_string(),
            });
        }
        if let Some(path) = file {
            given.push(SecretSource::File {
                flag: format!("--{what}-file"),
                path: path.clone(),
            });
        }
        if given.len() > 1 {
            return Err(crate::error::usage(format!(
                "give only one of --{what}-ssm, --{what}-env and --{what}-file"
            )));
        }
        Ok(given.pop())
    }

    pub fn flag(&self) -> &str {
        match self {
            SecretSource::Ssm { flag, .. }
            | SecretSource::Env { flag, .. }
            | SecretSource::File { flag, .. } => flag,
        }
    }

    /// Checks that need no network: the variable is set, the file is readable.
    pub fn check_local(&self) -> anyhow::Result<()> {
        use crate::error::usage;
        match self {
            SecretSource::Ssm { flag, name } if name.is_empty() => Err(usage(format!(
                "{flag} is empty; give a parameter name such as /backlog/ssh-key"
            ))),
            SecretSource::Env { flag, var } => match std::env::var(var) {
                Ok(value) if !value.trim().is_empty() => Ok(()),
                Ok(_) => Err(usage(format!("{flag} {var}: the variable is empty"))),
                Err(_) => Err(usage(format!(
                    "{flag} {var}: the variable is not set (or not UTF-8); set it or pick another source"
                ))),
            },
            SecretSource::File { flag, path } => match std::fs::metadata(path) {
                Ok(meta) if meta.is_file() => Ok(()),
                Ok(_) => Err(usage(format!("{flag} '{}' is not a file", path.display()))),
                Err(e) => Err(usage(format!(
                    "{flag} '{}' cannot be read ({})",
                    path.display(),
                    crate::error::io_reason(&e)
                ))),
            },
            SecretSource::Ssm { .. } => Ok(()),
        }
    }

    /// Read the secret (Parameter Store is asked only here).
    pub fn read(&self, region: Option<&str>) -> anyhow::Result<Secret> {
        use anyhow::Context;
        self.check_local()?;
        let value = match self {
            SecretSource::Ssm { flag, name } => {
                return crate::aws::get_parameter(flag, name, region);
            }
            SecretSource::Env { var, .. } => std::env::var(var).unwrap_or_default(),
            SecretSource::File { flag, path } => std::fs::read_to_string(path)
                .with_context(|| format!("{flag} '{}' cannot be read", path.display()))?,
        };
        Ok(Secret::new(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_never_formats() {
        let s = Secret::new("hunter2-canary-value".into());
        assert_eq!(format!("{s}"), "<redacted>");
        assert!(!format!("{s:?}").contains("hunter2"));
        assert_eq!(s.expose(), "hunter2-canary-value");
    }

    #[test]
    fn scrubs_registered_values_and_key_lines() {
        register("-----BEGIN KEY-----\nAAAAlinetwo-secret\nBBBBlinethree\n-----END KEY-----\n");
        register("tok3n-canary");
        let text = "failed: tok3n-canary and AAAAlinetwo-secret; -----BEGIN KEY-----";
        let clean = scrub(text);
        assert!(!clean.contains("tok3n"), "{clean}");
        assert!(!clean.contains("AAAAlinetwo"), "{clean}");
        assert!(clean.contains("-----BEGIN KEY-----"));
    }

    #[test]
    fn registered_inputs_and_any_url_lose_their_userinfo() {
        register_input("bob:short@host:team/app.git");
        let clean = scrub("invalid value 'bob:short@host:team/app.git' and https://u:pw@h/x");
        assert_eq!(
            clean,
            "invalid value '<redacted>@host:team/app.git' and https://<redacted>@h/x"
        );
    }

    #[test]
    fn writer_scrubs() {
        register("writer-canary-123");
        let mut out = Vec::new();
        write!(ScrubbingWriter(&mut out), "x writer-canary-123 y").unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "x <redacted> y");
    }
}
