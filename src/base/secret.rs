//! Secret values and the guarantee that none of them is ever printed.
//!
//! Keys, passphrases, passwords and signatures pass through libgit2, the AWS SDK and our own error
//! chains, any of which may echo what it was given. Wrapping them in [`Secret`] keeps them out of
//! `Debug` and `Display`; registering them lets the log writer and the final error line scrub any
//! copy that slipped into a message by another route. The registry holds only values we were
//! handed, never patterns, so scrubbing cannot eat ordinary text.

use std::fmt;
use std::io::{self, Write};
use std::sync::{Mutex, OnceLock};

use zeroize::Zeroize;

/// A secret string: redacted when formatted, wiped from memory when dropped.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Secret(String);

impl Secret {
    /// Wrap and register `value` so that any printed copy of it is scrubbed.
    pub(crate) fn new(value: String) -> Secret {
        register(&value);
        Secret(value)
    }

    pub(crate) fn expose(&self) -> &str {
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

/// Base64 runs that only a registered secret makes: each found run is scrubbed whole, with the
/// base64 characters around it (see [`base64_runs`]).
fn base64_registry() -> &'static Mutex<Vec<Base64Run>> {
    static REGISTRY: OnceLock<Mutex<Vec<Base64Run>>> = OnceLock::new();
    REGISTRY.get_or_init(|| Mutex::new(Vec::new()))
}

/// A run of base64 characters a secret's bytes alone decide, and the alphabet it is written in.
#[derive(PartialEq, Eq)]
struct Base64Run {
    text: String,
    url_safe: bool,
}

/// Remember `value` (and each of its lines, for multi-line keys) as something never to print,
/// in each form a server or library may echo it in: percent-encoded, JSON-escaped, and base64
/// (standard and URL-safe, padded or not, alone or inside a longer encoding such as the
/// `user:password` of a `Basic` header). Values shorter than 6 characters are not registered:
/// scrubbing them would mangle ordinary text and they are not secrets worth the name.
pub(crate) fn register(value: &str) {
    let value = value.trim();
    {
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
        if value.len() >= 6 {
            for form in encoded_forms(value) {
                add(&form);
            }
        }
        // Longest first, so a value containing another is replaced whole.
        list.sort_by_key(|v| std::cmp::Reverse(v.len()));
    }
    if value.len() >= 6 {
        let mut runs = base64_registry().lock().unwrap_or_else(|e| e.into_inner());
        for run in base64_runs(value.as_bytes()) {
            if !runs.contains(&run) {
                runs.push(run);
            }
        }
    }
}

/// `value` percent-encoded (every byte but letters and digits, or only those a URL's userinfo
/// must encode; hex in either case) and JSON-escaped, where that differs from `value`.
fn encoded_forms(value: &str) -> Vec<String> {
    use percent_encoding::{AsciiSet, CONTROLS, NON_ALPHANUMERIC, utf8_percent_encode};
    const USERINFO: &AsciiSet = &CONTROLS
        .add(b' ')
        .add(b'"')
        .add(b'#')
        .add(b'%')
        .add(b'/')
        .add(b':')
        .add(b';')
        .add(b'<')
        .add(b'=')
        .add(b'>')
        .add(b'?')
        .add(b'@')
        .add(b'[')
        .add(b'\\')
        .add(b']')
        .add(b'^')
        .add(b'`')
        .add(b'{')
        .add(b'|')
        .add(b'}');
    let mut forms = Vec::new();
    for set in [NON_ALPHANUMERIC, USERINFO] {
        let upper = utf8_percent_encode(value, set).to_string();
        let lower = lower_hex_escapes(&upper);
        forms.extend([upper, lower]);
    }
    if let Ok(json) = serde_json::to_string(value) {
        forms.push(json[1..json.len() - 1].to_string());
    }
    forms.retain(|f| f != value);
    forms
}

/// `%2F` written `%2f`.
fn lower_hex_escapes(encoded: &str) -> String {
    let mut out = String::with_capacity(encoded.len());
    let mut hex_left = 0;
    for c in encoded.chars() {
        if hex_left > 0 {
            out.push(c.to_ascii_lowercase());
            hex_left -= 1;
        } else {
            out.push(c);
            if c == '%' {
                hex_left = 2;
            }
        }
    }
    out
}

/// The base64 characters that `bytes` alone decide, wherever they stand in a longer encoding:
/// for each of the three offsets the bytes can start at in a 3-byte group, the characters that
/// carry no bit of what comes before or after them, in the standard and the URL-safe alphabet.
/// A `Basic` header's `user:password` holds the password at one of these offsets; so does any
/// token that embeds it.
fn base64_runs(bytes: &[u8]) -> Vec<Base64Run> {
    use base64::Engine as _;
    use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
    let mut runs = Vec::new();
    for offset in 0..3 {
        let mut padded = vec![0u8; offset];
        padded.extend_from_slice(bytes);
        // Characters wholly inside the secret's bits: from the first after the offset's bits
        // to the last that ends before the secret does.
        let first = (offset * 8).div_ceil(6);
        let last = padded.len() * 8 / 6;
        for (engine, url_safe) in [(STANDARD_NO_PAD, false), (URL_SAFE_NO_PAD, true)] {
            let encoded = engine.encode(&padded);
            if let Some(text) = encoded.get(first..last).filter(|t| t.len() >= 6) {
                let run = Base64Run {
                    text: text.to_string(),
                    url_safe,
                };
                if !runs.contains(&run) {
                    runs.push(run);
                }
            }
        }
    }
    runs
}

/// Whether `c` belongs to a base64 encoding in the given alphabet (padding included).
fn is_base64(c: u8, url_safe: bool) -> bool {
    c.is_ascii_alphanumeric()
        || c == b'='
        || if url_safe {
            c == b'-' || c == b'_'
        } else {
            c == b'+' || c == b'/'
        }
}

/// `text` with each base64 encoding that holds a registered secret replaced whole.
fn scrub_base64(mut text: String) -> String {
    let runs = base64_registry().lock().unwrap_or_else(|e| e.into_inner());
    for run in runs.iter() {
        let mut from = 0;
        while let Some(found) = text[from..].find(&run.text) {
            let at = from + found;
            let bytes = text.as_bytes();
            let start = bytes[..at]
                .iter()
                .rposition(|&c| !is_base64(c, run.url_safe))
                .map_or(0, |p| p + 1);
            let end = bytes[at..]
                .iter()
                .position(|&c| !is_base64(c, run.url_safe))
                .map_or(bytes.len(), |p| at + p);
            text.replace_range(start..end, "<redacted>");
            from = start + "<redacted>".len();
        }
    }
    text
}

/// Raw input values that may hold userinfo, each with its printable form.
fn inputs() -> &'static Mutex<Vec<(String, String)>> {
    static INPUTS: OnceLock<Mutex<Vec<(String, String)>>> = OnceLock::new();
    INPUTS.get_or_init(|| Mutex::new(Vec::new()))
}

/// Remember a value the user gave (a flag's value, an environment variable) that may hold a
/// user name and password, so that wherever it is echoed (our messages, clap's, a library's) it
/// is printed without them, whether or not it parses as a URL.
pub(crate) fn register_input(raw: &str) {
    let raw = raw.trim();
    let shown = redact_raw(raw);
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
pub(crate) fn register_inputs(args: impl IntoIterator<Item = std::ffi::OsString>) {
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

/// Whether this program reads the environment variable `name` as a setting (its own, or
/// git-remote-codecommit's).
fn ours(name: &str) -> bool {
    ["BACKLOG_", "CODECOMMIT_", "CODE_COMMIT_"]
        .iter()
        .any(|p| name.starts_with(p))
}

/// Names of the environment variables that hold a secret: those the `--*-env` flags name.
fn secret_variables() -> &'static Mutex<Vec<std::ffi::OsString>> {
    static NAMES: OnceLock<Mutex<Vec<std::ffi::OsString>>> = OnceLock::new();
    NAMES.get_or_init(|| Mutex::new(Vec::new()))
}

/// Remember that the environment variable `name` holds a secret, so no child inherits it.
pub(crate) fn register_variable(name: &str) {
    let mut names = secret_variables().lock().unwrap_or_else(|e| e.into_inner());
    if !names.iter().any(|known| known == name) {
        names.push(name.into());
    }
}

/// Whether a child process (git, and through it a local target's hooks) may inherit the
/// environment variable `name=value`. Not a variable a `--*-env` flag names, nor one of our own
/// settings (a URL there may carry a password), nor an AWS one (keys, session tokens, the
/// container credentials endpoint: git needs none, and the CodeCommit credential helper is given
/// them explicitly), nor any whose value holds a secret the run registered, whatever its name.
pub(crate) fn child_may_inherit(name: &std::ffi::OsStr, value: &std::ffi::OsStr) -> bool {
    let shown = name.to_string_lossy();
    if ours(&shown) || shown.starts_with("AWS_") {
        return false;
    }
    if secret_variables()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .any(|known| known == name)
    {
        return false;
    }
    !holds_secret(&value.to_string_lossy())
}

/// The `AWS_*` variables of this process: what our CodeCommit credential helper, run by git,
/// needs to sign (see [`child_may_inherit`]).
pub(crate) fn aws_environment() -> Vec<(String, String)> {
    std::env::vars()
        .filter(|(name, _)| name.starts_with("AWS_"))
        .collect()
}

/// Whether `text` holds a registered secret or input with userinfo, in any registered form.
fn holds_secret(text: &str) -> bool {
    inputs()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .any(|(raw, _)| text.contains(raw.as_str()))
        || registry()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .any(|secret| text.contains(secret.as_str()))
        || base64_registry()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .any(|run| text.contains(&run.text))
}

/// `text` with every registered secret replaced by `<redacted>`, every registered input that may
/// hold userinfo by its redacted form, and the userinfo of every URL in it removed.
pub(crate) fn scrub(text: &str) -> String {
    let mut out = text.to_string();
    for (raw, shown) in inputs().lock().unwrap_or_else(|e| e.into_inner()).iter() {
        if out.contains(raw.as_str()) {
            out = out.replace(raw.as_str(), shown);
        }
    }
    {
        let list = registry().lock().unwrap_or_else(|e| e.into_inner());
        for secret in list.iter() {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), "<redacted>");
            }
        }
    }
    out = scrub_base64(out);
    redact_userinfo(&out).into_owned()
}

/// A writer that scrubs each write and escapes what could drive the terminal or break the line:
/// the log output's last line of defence. Each write is one log event, one line: its final
/// newline stays, and so do the colour sequences the log formatter writes itself (it escapes the
/// ESC of any it is given to print).
pub(crate) struct ScrubbingWriter<W: Write>(pub W);

impl<W: Write> Write for ScrubbingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let text = scrub(&String::from_utf8_lossy(buf));
        let (line, end) = match text.strip_suffix('\n') {
            Some(line) => (line, "\n"),
            None => (text.as_str(), ""),
        };
        let mut out = String::with_capacity(text.len());
        let mut rest = line;
        while let Some(at) = rest.find('\x1b') {
            out.push_str(&crate::base::text::escape(&rest[..at]));
            let colour = rest[at + 1..]
                .strip_prefix('[')
                .and_then(|r| {
                    r.find(|c: char| !(c.is_ascii_digit() || c == ';'))
                        .map(|n| (r, n))
                })
                .filter(|(r, n)| r[*n..].starts_with('m'))
                .map(|(_, n)| n + 3);
            let taken = colour.unwrap_or(1);
            match colour {
                Some(_) => out.push_str(&rest[at..at + taken]),
                None => out.push_str(&crate::base::text::escape(&rest[at..at + taken])),
            }
            rest = &rest[at + taken..];
        }
        out.push_str(&crate::base::text::escape(rest));
        out.push_str(end);
        self.0.write_all(out.as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

/// Schemes whose user name is part of the address, not half a credential.
fn keeps_user(scheme: &str) -> bool {
    matches!(
        scheme.to_ascii_lowercase().as_str(),
        "ssh" | "git+ssh" | "ssh+git"
    )
}

/// What replaces the userinfo of `scheme://userinfo@`: nothing of it for HTTP and the rest, only
/// the password for SSH, whose user is part of the address.
fn redacted_userinfo(scheme: &str, userinfo: &str) -> String {
    if !keeps_user(scheme) {
        return "<redacted>".to_string();
    }
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{user}:<redacted>"),
        None => userinfo.to_string(),
    }
}

/// `raw`, a value given for a URL, safe to print whether or not it parses: everything between
/// `://` and the last `@` is userinfo as far as printing goes (a password may hold `/`, `?`, `#`
/// or `@` when it was not percent-encoded, which is exactly when parsing fails), and so is
/// everything before the last `@` of a scheme-less value with a `:` before it
/// (`user:password@host:path`).
pub(crate) fn redact_raw(raw: &str) -> String {
    let raw = raw.trim();
    if let Some(pos) = raw.find("://") {
        let (head, tail) = raw.split_at(pos + 3);
        return match tail.rfind('@') {
            Some(at) => format!(
                "{head}{}@{}",
                redacted_userinfo(&head[..pos], &tail[..at]),
                &tail[at + 1..]
            ),
            None => raw.to_string(),
        };
    }
    match raw.rfind('@') {
        Some(at) if raw[..at].contains(':') => format!("<redacted>@{}", &raw[at + 1..]),
        _ => raw.to_string(),
    }
}

/// `text` with the userinfo of every `scheme://userinfo@host` in it redacted: the last line of
/// defence for messages from libraries and servers that echo a URL, and for passwords too short
/// or too oddly encoded to be recognised by value. A URL ends at white space or a quote. When a
/// `:` comes before the URL's last `@`, everything up to that `@` may be a password (one with a
/// `/` or `@` in it, not percent-encoded) and goes; otherwise the userinfo is what comes before
/// the last `@` of the authority. A URL with both a port and an `@` in its path loses its host
/// in print: the price of never printing a password.
pub(crate) fn redact_userinfo(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.contains("://") {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find("://") {
        let (before, after) = rest.split_at(pos + 3);
        out.push_str(before);
        let scheme_part = &before[..pos];
        let scheme_start = scheme_part
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
            .map_or(0, |i| i + 1);
        let scheme = &scheme_part[scheme_start..];
        let span_end = after
            .find(|c: char| c.is_whitespace() || matches!(c, '\'' | '"' | '<' | '>' | '`'))
            .unwrap_or(after.len());
        let span = &after[..span_end];
        let authority = &span[..span.find(['/', '?', '#']).unwrap_or(span.len())];
        let cut = match span.rfind('@') {
            Some(at) if span[..at].contains(':') => Some(at),
            _ => authority.rfind('@'),
        };
        rest = match cut {
            Some(at) => {
                out.push_str(&redacted_userinfo(scheme, &span[..at]));
                out.push('@');
                &after[at + 1..]
            }
            None => after,
        };
    }
    out.push_str(rest);
    std::borrow::Cow::Owned(out)
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
    fn encoded_copies_of_a_secret_are_scrubbed_whole() {
        use base64::Engine as _;
        use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
        let secret = "b64/unit?secret~9";
        register(secret);
        for prefix in ["", "u", "us", "user:", "Basic x:"] {
            let plain = format!("{prefix}{secret}");
            for encoded in [STANDARD.encode(&plain), URL_SAFE_NO_PAD.encode(&plain)] {
                let text = format!("token {encoded} rejected, ({encoded})");
                assert_eq!(
                    scrub(&text),
                    "token <redacted> rejected, (<redacted>)",
                    "{plain}"
                );
            }
        }
        for encoded in [
            "b64%2Funit%3Fsecret%7E9",
            "b64%2funit%3fsecret%7e9",
            "b64%2Funit%3Fsecret~9",
        ] {
            assert_eq!(
                scrub(&format!("at {encoded}.")),
                "at <redacted>.",
                "{encoded}"
            );
        }
        // Text that merely looks like base64 stays.
        assert_eq!(
            scrub("token QUJDREVGR0hJSktM ok"),
            "token QUJDREVGR0hJSktM ok"
        );
    }

    #[test]
    fn children_inherit_no_secret_by_name_prefix_or_value() {
        use std::ffi::OsStr;
        register("inherit-canary-value");
        register_variable("MY_TOKEN_VARIABLE");
        let may = |name: &str, value: &str| child_may_inherit(OsStr::new(name), OsStr::new(value));
        assert!(may("PATH", "/usr/bin:/bin"));
        assert!(may("HTTPS_PROXY", "http://proxy:3128"));
        assert!(!may("MY_TOKEN_VARIABLE", "x"));
        assert!(!may("COPY", "prefix-inherit-canary-value-suffix"));
        assert!(!may("AWS_SESSION_TOKEN", "t"));
        assert!(!may("AWS_REGION", "eu-west-3"));
        assert!(!may("BACKLOG_MIRROR_TARGET", "/srv/t.git"));
        assert!(!may("CODECOMMIT_REPOSITORY_NAME", "app"));
    }

    #[test]
    fn writer_scrubs() {
        register("writer-canary-123");
        let mut out = Vec::new();
        write!(ScrubbingWriter(&mut out), "x writer-canary-123 y").unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "x <redacted> y");
    }

    #[test]
    fn writer_escapes_all_but_its_own_colours_and_line_end() {
        let mut out = Vec::new();
        ScrubbingWriter(&mut out)
            .write_all(b"\x1b[2m WARN\x1b[0m said \x1b]0;t\x07\r\nforged\x1b[1;31\n")
            .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "\x1b[2m WARN\x1b[0m said \\u{1b}]0;t\\u{7}\\r\\nforged\\u{1b}[1;31\n"
        );
    }

    #[test]
    fn raw_values_lose_everything_that_may_be_userinfo() {
        for (raw, shown) in [
            (
                "https://bob:pw/9f3e@git.example.com/team/app.git",
                "https://<redacted>@git.example.com/team/app.git",
            ),
            ("https://bob:p@w@h:99999/x", "https://<redacted>@h:99999/x"),
            ("https://bob:pw@[::1/x", "https://<redacted>@[::1/x"),
            ("ssh://git:pw@h/x", "ssh://git:<redacted>@h/x"),
            ("ssh://git@h/x", "ssh://git@h/x"),
            ("bob:pw@host:team/app.git", "<redacted>@host:team/app.git"),
            ("git@host:team/app.git", "git@host:team/app.git"),
            ("https://host/app.git", "https://host/app.git"),
            ("/srv/app.git", "/srv/app.git"),
        ] {
            assert_eq!(redact_raw(raw), shown, "{raw}");
        }
    }

    #[test]
    fn free_text_loses_the_userinfo_of_every_url_in_it() {
        for (text, shown) in [
            (
                "cannot reach 'https://bob:pw@h/x' or http://u@h2:80/y, try again",
                "cannot reach 'https://<redacted>@h/x' or http://<redacted>@h2:80/y, try again",
            ),
            (
                "bad https://bob:pw/9f3e@git.example.com/a.git here",
                "bad https://<redacted>@git.example.com/a.git here",
            ),
            (
                "ssh://git:pw@h/x and ssh://git@h/y",
                "ssh://git:<redacted>@h/x and ssh://git@h/y",
            ),
            ("https://h/a@b is a path", "https://h/a@b is a path"),
            ("https://u@h/a@b", "https://<redacted>@h/a@b"),
            (
                "https://ftp//bob:pw@git.example.com/x",
                "https://<redacted>@git.example.com/x",
            ),
            (
                "no urls here: user@host:path",
                "no urls here: user@host:path",
            ),
            ("ends with https://", "ends with https://"),
        ] {
            assert_eq!(redact_userinfo(text), shown, "{text}");
        }
    }
}
