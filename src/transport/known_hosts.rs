//! SSH: private keys as people paste them, and host keys checked by us, not by chance.
//!
//! libssh2 parses keys strictly (exact header lines, short line reads), while keys reach us through
//! Parameter Store consoles and YAML that turn newlines into spaces or CRLF. We rebuild the key's
//! canonical text before handing it over. Host keys are verified in libgit2's certificate callback
//! against one explicit policy, so a build never trusts whichever host answers first unless told
//! to (`--accept-new-host-key`, logged as a warning).

use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use hmac::{Hmac, Mac};
use sha1::Sha1;

/// Rebuild a PEM or OpenSSH private key's text from whatever a paste did to it: CRLF, leading
/// indentation, newlines turned into spaces, a missing final newline.
pub(crate) fn normalize_private_key(raw: &str) -> Result<String, String> {
    let text = raw.replace("\r\n", "\n").replace('\r', "\n");
    let text = text.trim();
    let begin_at = text
        .find("-----BEGIN ")
        .ok_or("the key has no '-----BEGIN ... PRIVATE KEY-----' line")?;
    let after_begin = &text[begin_at + "-----BEGIN ".len()..];
    let label_end = after_begin
        .find("-----")
        .ok_or("the key's BEGIN line is not closed with '-----'")?;
    let label = after_begin[..label_end].trim().to_string();
    if !label.ends_with("PRIVATE KEY") {
        return Err(format!(
            "'{label}' is not a private key; give the private half (BEGIN ... PRIVATE KEY)"
        ));
    }
    let footer = format!("-----END {label}-----");
    let body_and_rest = &after_begin[label_end + 5..];
    let end_at = body_and_rest
        .find(&footer)
        .ok_or_else(|| format!("the key has no '{footer}' line; was it cut short?"))?;
    let body = &body_and_rest[..end_at];

    // Legacy encrypted PEM keys carry "Proc-Type:" and "DEK-Info:" headers before the base64.
    let mut tokens: Vec<&str> = body.split_whitespace().collect();
    let mut headers = Vec::new();
    while tokens.len() >= 2 && tokens[0].ends_with(':') {
        headers.push(format!("{} {}", tokens[0], tokens[1]));
        tokens.drain(..2);
    }
    let base64_body: String = tokens.concat();
    if base64_body.is_empty() {
        return Err("the key has no body between its BEGIN and END lines".into());
    }
    if !base64_body
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='))
    {
        return Err("the key's body is not base64; was it altered when pasted?".into());
    }
    let width = if label == "OPENSSH PRIVATE KEY" {
        70
    } else {
        64
    };
    let mut out = format!("-----BEGIN {label}-----\n");
    for header in &headers {
        out.push_str(header);
        out.push('\n');
    }
    if !headers.is_empty() {
        out.push('\n');
    }
    for chunk in base64_body.as_bytes().chunks(width) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&footer);
    out.push('\n');
    Ok(out)
}

/// Whether a normalised key is encrypted (so a passphrase is needed).
pub(crate) fn key_is_encrypted(key: &str) -> bool {
    if key.contains("Proc-Type: 4,ENCRYPTED") || key.contains("BEGIN ENCRYPTED PRIVATE KEY") {
        return true;
    }
    if key.contains("BEGIN OPENSSH PRIVATE KEY") {
        let body: String = key
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect::<Vec<_>>()
            .concat();
        if let Ok(bytes) = STANDARD.decode(body) {
            // "openssh-key-v1\0" then a length-prefixed cipher name; "none" means plain.
            let rest = bytes.get(15..).unwrap_or(&[]);
            if rest.len() >= 4 {
                let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
                return rest.get(4..4 + len) != Some(b"none".as_slice());
            }
        }
    }
    false
}

/// `SHA256:<base64 without padding>`, as `ssh-keygen -l` prints it.
pub(crate) fn fingerprint(sha256: &[u8]) -> String {
    format!("SHA256:{}", STANDARD_NO_PAD.encode(sha256))
}

/// Normalise a fingerprint the user typed: `SHA256:` prefix required, padding optional.
pub(crate) fn parse_fingerprint(raw: &str) -> Result<String, String> {
    let raw = raw.trim();
    let body = raw.strip_prefix("SHA256:").ok_or_else(|| {
        format!(
            "--host-key-fingerprint '{raw}' must start with 'SHA256:' (as printed by ssh-keygen -lf)"
        )
    })?;
    let body = body.trim_end_matches('=');
    match STANDARD_NO_PAD.decode(body) {
        Ok(bytes) if bytes.len() == 32 => Ok(format!("SHA256:{body}")),
        _ => Err(format!(
            "--host-key-fingerprint '{raw}' is not a SHA256 fingerprint (43 base64 characters after 'SHA256:')"
        )),
    }
}

/// How to decide whether a server's host key is the right one.
#[derive(Debug, Clone)]
pub(crate) enum HostKeyPolicy {
    /// Accept only keys listed for the host in this OpenSSH known_hosts file.
    KnownHosts(PathBuf),
    /// Accept only keys with one of these fingerprints.
    Fingerprints(Vec<String>),
    /// Trust on first use: accept any key unless `known_hosts` (if given and present) lists
    /// different keys for the host.
    AcceptNew(Option<PathBuf>),
    /// No policy could be set up: refuse every SSH host, with advice.
    Refuse,
}

/// A key as the server presented it.
pub(crate) struct PresentedKey<'a> {
    pub(crate) host: &'a str,
    pub(crate) port: Option<u16>,
    pub(crate) key_type: Option<&'a str>,
    pub(crate) raw: Option<&'a [u8]>,
    pub(crate) sha256: Option<&'a [u8]>,
}

/// The verdict on a presented key.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    Trusted,
    TrustedOnFirstUse(String),
    Rejected(String),
}

impl HostKeyPolicy {
    pub(crate) fn check(&self, key: &PresentedKey<'_>) -> Verdict {
        let Some(sha256) = key.sha256 else {
            return Verdict::Rejected(format!(
                "{} sent no host key fingerprint to check",
                key.host
            ));
        };
        let seen = fingerprint(sha256);
        let shown_host = match key.port {
            Some(port) if port != 22 => format!("[{}]:{port}", key.host),
            _ => key.host.to_string(),
        };
        match self {
            HostKeyPolicy::Fingerprints(allowed) => {
                if allowed.contains(&seen) {
                    Verdict::Trusted
                } else {
                    Verdict::Rejected(format!(
                        "host key of {shown_host} is {seen}, which is not among --host-key-fingerprint; \
                         refusing to connect (if the host's key really changed, update the fingerprint)"
                    ))
                }
            }
            HostKeyPolicy::KnownHosts(path) => match lookup(path, key) {
                Ok(Lookup::Match) => Verdict::Trusted,
                Ok(Lookup::Mismatch) => Verdict::Rejected(format!(
                    "host key of {shown_host} is {seen}, which does not match its entry in {}; \
                     refusing to connect (possible man-in-the-middle, or the key changed)",
                    path.display()
                )),
                Ok(Lookup::Revoked) => Verdict::Rejected(revoked(&shown_host, &seen, path)),
                Ok(Lookup::Unknown) => Verdict::Rejected(format!(
                    "{shown_host} is not in {} (its key is {seen}); add it, or pin it with \
                     --host-key-fingerprint {seen} after checking it with the host's owner",
                    path.display()
                )),
                Err(e) => Verdict::Rejected(e),
            },
            HostKeyPolicy::AcceptNew(known) => {
                if let Some(path) = known
                    && path.exists()
                {
                    match lookup(path, key) {
                        Ok(Lookup::Mismatch) => {
                            return Verdict::Rejected(format!(
                                "host key of {shown_host} is {seen}, which does not match its \
                                 entry in {}; refusing to connect even with --accept-new-host-key",
                                path.display()
                            ));
                        }
                        Ok(Lookup::Revoked) => {
                            return Verdict::Rejected(revoked(&shown_host, &seen, path));
                        }
                        _ => {}
                    }
                }
                Verdict::TrustedOnFirstUse(format!(
                    "trusting {shown_host}'s host key {seen} on first use (--accept-new-host-key); \
                     pin it with --host-key-fingerprint {seen}"
                ))
            }
            HostKeyPolicy::Refuse => Verdict::Rejected(format!(
                "no known_hosts file and no --host-key-fingerprint to check {shown_host}'s key \
                 {seen}; pass --known-hosts, --host-key-fingerprint or --accept-new-host-key"
            )),
        }
    }
}

/// The refusal of a key a known_hosts file revokes.
fn revoked(shown_host: &str, seen: &str, path: &Path) -> String {
    format!(
        "host key of {shown_host} is {seen}, which {} marks @revoked; refusing to connect \
         (the key must never be accepted again: ask the host's owner for its new key)",
        path.display()
    )
}

enum Lookup {
    Match,
    Mismatch,
    /// A `@revoked` line for the host holds this very key.
    Revoked,
    Unknown,
}

/// Look `key` up in a known_hosts file: plain and hashed host entries, `[host]:port` forms,
/// comma-separated patterns, `*`/`?` wildcards and `!` negations, `@revoked` markers.
fn lookup(path: &Path, key: &PresentedKey<'_>) -> Result<Lookup, String> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        format!(
            "cannot read known_hosts file {}: {}",
            path.display(),
            crate::base::error::io_reason(&e)
        )
    })?;
    let names: Vec<String> = match key.port {
        Some(port) if port != 22 => vec![format!("[{}]:{port}", key.host)],
        _ => vec![key.host.to_string()],
    };
    let presented = key.raw.map(|raw| STANDARD.encode(raw));
    let mut listed = false;
    let mut matched = false;
    // Every line is read before a verdict: a revoked key is refused wherever its `@revoked` line
    // stands, even after a plain line that lists the same key (OpenSSH's "REVOKED HOST KEY").
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fields = line.split_whitespace();
        let mut first = fields.next().unwrap_or("");
        let mut marker = None;
        if first.starts_with('@') {
            marker = Some(first);
            first = fields.next().unwrap_or("");
        }
        let (Some(key_type), Some(blob)) = (fields.next(), fields.next()) else {
            continue;
        };
        if marker == Some("@cert-authority") || !host_matches(first, &names) {
            continue;
        }
        if marker == Some("@revoked") {
            // The blob names its own type: the same blob is the same key, whatever the line's
            // type field says.
            if presented.as_deref() == Some(blob) {
                return Ok(Lookup::Revoked);
            }
            continue;
        }
        listed = true;
        matched |= presented.as_deref() == Some(blob) && key.key_type.is_none_or(|t| t == key_type);
    }
    Ok(match (matched, listed) {
        (true, _) => Lookup::Match,
        (false, true) => Lookup::Mismatch,
        (false, false) => Lookup::Unknown,
    })
}

fn host_matches(field: &str, names: &[String]) -> bool {
    if let Some(hashed) = field.strip_prefix("|1|") {
        let Some((salt, hash)) = hashed.split_once('|') else {
            return false;
        };
        let (Ok(salt), Ok(hash)) = (STANDARD.decode(salt), STANDARD.decode(hash)) else {
            return false;
        };
        return names.iter().any(|name| {
            Hmac::<Sha1>::new_from_slice(&salt)
                .map(|mut mac| {
                    mac.update(name.as_bytes());
                    mac.verify_slice(&hash).is_ok()
                })
                .unwrap_or(false)
        });
    }
    let mut matched = false;
    for pattern in field.split(',') {
        let (negated, pattern) = match pattern.strip_prefix('!') {
            Some(p) => (true, p),
            None => (false, pattern),
        };
        if names.iter().any(|n| wildcard(pattern, n)) {
            if negated {
                return false;
            }
            matched = true;
        }
    }
    matched
}

/// OpenSSH's host patterns: `*` and `?`, case-insensitive; every other character is itself
/// (`[host]:port` is a name, not a character class), so globset is given them escaped.
fn wildcard(pattern: &str, text: &str) -> bool {
    let mut glob = String::with_capacity(pattern.len());
    for c in pattern.chars() {
        match c {
            '[' | ']' | '{' | '}' => {
                glob.push('[');
                glob.push(c);
                glob.push(']');
            }
            _ => glob.push(c),
        }
    }
    globset::GlobBuilder::new(&glob)
        .case_insensitive(true)
        .literal_separator(false)
        .backslash_escape(false)
        .build()
        .is_ok_and(|glob| glob.compile_matcher().is_match(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "-----BEGIN OPENSSH PRIVATE KEY-----\n\
b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n\
QyNTUxOQAAACDn4m0sJc0Kx9VUjzmB0bmRsS6ZfdGU0XzK8sDhA4lyJwAAAJhNa1qmTWta\n\
-----END OPENSSH PRIVATE KEY-----\n";

    #[test]
    fn normalizes_pasted_keys() {
        let crlf = KEY.replace('\n', "\r\n");
        let spaced = KEY.trim().replace('\n', " ");
        let indented = KEY
            .lines()
            .map(|l| format!("    {l}"))
            .collect::<Vec<_>>()
            .join("\n");
        for variant in [
            KEY.to_string(),
            crlf,
            spaced,
            indented,
            KEY.trim().to_string(),
        ] {
            assert_eq!(normalize_private_key(&variant).unwrap(), KEY, "{variant:?}");
        }
    }

    #[test]
    fn keeps_pem_encryption_headers() {
        let pem = "-----BEGIN RSA PRIVATE KEY----- Proc-Type: 4,ENCRYPTED DEK-Info: AES-128-CBC,00112233445566778899AABBCCDDEEFF  QUJDRA== -----END RSA PRIVATE KEY-----";
        let norm = normalize_private_key(pem).unwrap();
        assert_eq!(
            norm,
            "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00112233445566778899AABBCCDDEEFF\n\nQUJDRA==\n-----END RSA PRIVATE KEY-----\n"
        );
        assert!(key_is_encrypted(&norm));
        assert!(!key_is_encrypted(KEY));
    }

    #[test]
    fn rejects_non_keys() {
        assert!(normalize_private_key("ssh-ed25519 AAAA user@host").is_err());
        assert!(
            normalize_private_key("-----BEGIN PUBLIC KEY-----\nAA\n-----END PUBLIC KEY-----")
                .is_err()
        );
        assert!(normalize_private_key("-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA").is_err());
    }

    #[test]
    fn fingerprints_parse_and_print() {
        let fp = fingerprint(&[7u8; 32]);
        assert_eq!(parse_fingerprint(&fp).unwrap(), fp);
        assert_eq!(parse_fingerprint(&format!("{fp}=")).unwrap(), fp);
        assert!(parse_fingerprint("MD5:aa:bb").is_err());
        assert!(parse_fingerprint("SHA256:short").is_err());
    }

    #[test]
    fn known_hosts_plain_hashed_and_ported() {
        let dir = tempfile::tempdir().unwrap();
        let raw = b"hostkey-bytes";
        let blob = STANDARD.encode(raw);
        let salt = b"0123456789abcdef0123";
        let mut mac = Hmac::<Sha1>::new_from_slice(salt).unwrap();
        mac.update(b"[127.0.0.1]:2222");
        let hashed = format!(
            "|1|{}|{}",
            STANDARD.encode(salt),
            STANDARD.encode(mac.finalize().into_bytes())
        );
        let file = dir.path().join("known_hosts");
        std::fs::write(
            &file,
            format!(
                "# comment\nexample.com,other ssh-ed25519 {blob}\n{hashed} ssh-ed25519 {blob}\nchanged.example ssh-ed25519 AAAA\n"
            ),
        )
        .unwrap();
        let policy = HostKeyPolicy::KnownHosts(file);
        let sha = [1u8; 32];
        let key = |host, port| PresentedKey {
            host,
            port,
            key_type: Some("ssh-ed25519"),
            raw: Some(raw),
            sha256: Some(&sha),
        };
        assert_eq!(policy.check(&key("example.com", None)), Verdict::Trusted);
        assert_eq!(
            policy.check(&key("127.0.0.1", Some(2222))),
            Verdict::Trusted
        );
        assert!(
            matches!(policy.check(&key("changed.example", None)), Verdict::Rejected(m) if m.contains("does not match"))
        );
        assert!(
            matches!(policy.check(&key("unknown.example", None)), Verdict::Rejected(m) if m.contains("is not in"))
        );
    }

    #[test]
    fn a_revoked_key_loses_to_no_line() {
        let dir = tempfile::tempdir().unwrap();
        let raw = b"hostkey-bytes";
        let blob = STANDARD.encode(raw);
        let sha = [1u8; 32];
        let key = PresentedKey {
            host: "example.com",
            port: None,
            key_type: Some("ssh-ed25519"),
            raw: Some(raw),
            sha256: Some(&sha),
        };
        let file = dir.path().join("known_hosts");
        let plain = format!("example.com ssh-ed25519 {blob}\n");
        let revoked = format!("@revoked * ssh-rsa {blob}\n");
        for text in [format!("{plain}{revoked}"), format!("{revoked}{plain}")] {
            std::fs::write(&file, &text).unwrap();
            for policy in [
                HostKeyPolicy::KnownHosts(file.clone()),
                HostKeyPolicy::AcceptNew(Some(file.clone())),
            ] {
                assert!(
                    matches!(policy.check(&key), Verdict::Rejected(m) if m.contains("@revoked")),
                    "{text}"
                );
            }
        }
        std::fs::write(&file, &plain).unwrap();
        assert_eq!(
            HostKeyPolicy::KnownHosts(file).check(&key),
            Verdict::Trusted
        );
    }

    #[test]
    fn host_patterns_are_opensshs() {
        for (pattern, host, matches) in [
            ("*.example.com", "git.EXAMPLE.com", true),
            ("git?.example.com", "git1.example.com", true),
            ("git?.example.com", "git.example.com", false),
            ("[127.0.0.1]:2222", "[127.0.0.1]:2222", true),
            ("[127.0.0.1]:2222", "1", false),
            ("[*]:2222", "[10.0.0.1]:2222", true),
            ("{a,b}.example", "a.example", false),
            ("a\\b", "a\\b", true),
            ("*", "anything", true),
        ] {
            assert_eq!(wildcard(pattern, host), matches, "{pattern} {host}");
        }
        // A pattern of many stars against a long name that does not match: a backtracking
        // matcher takes exponential time here.
        let stars = "*a".repeat(30);
        assert!(!wildcard(&stars, &"a".repeat(29)));
    }

    #[test]
    fn fingerprint_policy_names_what_it_saw() {
        let sha = [9u8; 32];
        let policy = HostKeyPolicy::Fingerprints(vec![fingerprint(&[1u8; 32])]);
        let key = PresentedKey {
            host: "h",
            port: None,
            key_type: None,
            raw: None,
            sha256: Some(&sha),
        };
        match policy.check(&key) {
            Verdict::Rejected(m) => assert!(m.contains(&fingerprint(&sha)) && m.contains('h')),
            other => panic!("{other:?}"),
        }
    }
}
