//! Ref names as git has them: bytes, not text.
//!
//! Git allows almost any byte in a ref name, so a source may hold names that are not UTF-8
//! (`refs/heads/caf\xe9`), thousands of bytes long, or made to look like something else in a
//! terminal. git2's API speaks `&str` and panics on the first name that is not UTF-8, and libgit2
//! cannot handle names of 1,024 bytes or more at all. So names travel through plans, filters and
//! reports as `String`s in a lossless escaped form (each byte that is not part of valid UTF-8,
//! and the backslash, which git forbids in ref names, written `\xNN`), are turned back into their
//! bytes only where they are handed to git or libgit2, and are printed for people through
//! [`shown`], which also escapes control characters and shortens. A name this tool cannot carry
//! is named by [`unsupported`] and reported, never allowed to stop the other refs.

use std::collections::BTreeMap;
use std::ffi::CString;

/// Escaped ref name -> object id, as a remote advertises them (peeled `^{}` entries dropped) or a
/// repository holds them.
pub(crate) type RefMap = BTreeMap<String, git2::Oid>;

/// The longest name libgit2 handles: its normalisation buffer is 1,024 bytes with the NUL.
pub(crate) const MAX_BYTES: usize = 1023;

/// The longest path component: refs are files (loose refs, in the cache and on a git server),
/// and a file name has at most 255 bytes.
const MAX_COMPONENT_BYTES: usize = 255;

/// The escaped form of a ref name's bytes.
pub(crate) fn escape(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c == '\\' {
                out.push_str("\\x5c");
            } else {
                out.push(c);
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// The bytes an escaped name (or a refspec made of escaped names) stands for.
pub(crate) fn to_bytes(escaped: &str) -> Vec<u8> {
    let bytes = escaped.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && let Some(b) = escaped
                .get(i + 2..i + 4)
                .filter(|_| bytes.get(i + 1) == Some(&b'x'))
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
        {
            out.push(b);
            i += 4;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

/// The escaped name as a C string for libgit2. Names come from C strings or from git, so they
/// hold no NUL; one that somehow does is an error, not a truncated name.
pub(crate) fn to_c_string(escaped: &str) -> Result<CString, git2::Error> {
    CString::new(to_bytes(escaped))
        .map_err(|_| git2::Error::from_str("a ref name contains a NUL byte"))
}

/// How many characters of a name a message shows.
const SHOWN_CHARS: usize = 80;

/// A name for a person to read: escaped as above, control and bidirectional-formatting
/// characters written as `\u{...}` so a name cannot rewrite the terminal or reorder a line,
/// and shortened to its first 80 characters and its length when it is longer.
pub(crate) fn shown(escaped: &str) -> String {
    let mut out = String::new();
    for (count, c) in escaped.chars().enumerate() {
        if count == SHOWN_CHARS {
            out.push_str(&format!("... ({} bytes)", to_bytes(escaped).len()));
            break;
        }
        if moves_the_terminal(c) {
            out.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    out
}

/// Whether printing `c` raw could drive a terminal (C0 and C1 controls, DEL) or reorder the text
/// around it (bidirectional formatting characters).
pub(crate) fn moves_the_terminal(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// Why this tool cannot mirror a ref of this name, or `None` when it can. The rules are git's
/// (`git check-ref-format`: a server that runs git refuses the rest, so pushing them could only
/// fail), libgit2's own check, and libgit2's length limit.
pub(crate) fn unsupported(name: &[u8]) -> Option<String> {
    if name.len() > MAX_BYTES {
        return Some(format!(
            "its name is {} bytes long; libgit2, which keeps the mirror, handles at most {MAX_BYTES}",
            name.len()
        ));
    }
    if let Some(problem) = git_format_problem(name) {
        return Some(format!("not a valid ref name for git: it {problem}"));
    }
    let Ok(c_name) = CString::new(name) else {
        return Some("not a valid ref name: it contains a NUL byte".to_string());
    };
    let mut valid = 0;
    // SAFETY: a valid NUL-terminated string and an int to write to, both live for the call.
    let code = unsafe { libgit2_sys::git_reference_name_is_valid(&mut valid, c_name.as_ptr()) };
    (code < 0 || valid == 0).then(|| "not a valid ref name for libgit2".to_string())
}

/// What `git check-ref-format` would object to, in its own terms.
fn git_format_problem(name: &[u8]) -> Option<&'static str> {
    if name == b"@" {
        return Some("is '@'");
    }
    if name.ends_with(b".") {
        return Some("ends with '.'");
    }
    if name.windows(2).any(|w| w == b"..") {
        return Some("contains '..'");
    }
    if name.windows(2).any(|w| w == b"@{") {
        return Some("contains '@{'");
    }
    if name.iter().any(|&b| b < 0x20 || b == 0x7f) {
        return Some("contains a control character");
    }
    if name.iter().any(|b| b" ~^:?*[\\".contains(b)) {
        return Some("contains a space or one of ~ ^ : ? * [ \\");
    }
    for component in name.split(|&b| b == b'/') {
        if component.len() > MAX_COMPONENT_BYTES {
            return Some("has a path component longer than 255 bytes, which no file name can hold");
        }
        if component.is_empty() {
            return Some("has an empty path component");
        }
        if component.starts_with(b".") {
            return Some("has a path component starting with '.'");
        }
        if component.ends_with(b".lock") {
            return Some("has a path component ending in '.lock'");
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_is_lossless_for_any_bytes() {
        for name in [
            &b"refs/heads/main"[..],
            b"refs/heads/caf\xe9",
            b"refs/heads/caf\xc3\xa9",
            b"refs/heads/a\\x41",
            b"refs/heads/\xff\xfe\\",
            b"refs/heads/\x1b[31mred",
        ] {
            let escaped = escape(name);
            assert_eq!(to_bytes(&escaped), name, "{escaped}");
        }
        assert_eq!(escape(b"refs/heads/caf\xe9"), "refs/heads/caf\\xe9");
        assert_eq!(escape("refs/heads/café".as_bytes()), "refs/heads/café");
        assert_eq!(
            to_bytes("+refs/heads/caf\\xe9:refs/heads/caf\\xe9"),
            b"+refs/heads/caf\xe9:refs/heads/caf\xe9"
        );
    }

    #[test]
    fn shown_names_cannot_drive_a_terminal_and_stay_short() {
        assert_eq!(
            shown(&escape(b"refs/heads/\x1b[31mred\xc2\x9b")),
            "refs/heads/\\u{1b}[31mred\\u{9b}"
        );
        assert_eq!(
            shown("refs/heads/\u{202e}txt.exe"),
            "refs/heads/\\u{202e}txt.exe"
        );
        let long = format!("refs/heads/{}", "x".repeat(4019));
        let short = shown(&long);
        assert!(short.len() < 120, "{short}");
        assert!(short.ends_with("... (4030 bytes)"), "{short}");
    }

    #[test]
    fn unsupported_names_follow_git_and_libgit2() {
        for ok in [
            &b"refs/heads/main"[..],
            b"refs/heads/caf\xe9",
            b"refs/heads/HEAD",
            b"refs/heads/-rf",
            b"refs/heads/a.b",
            b"refs/tags/v1@2",
        ] {
            assert_eq!(unsupported(ok), None, "{}", escape(ok));
        }
        for bad in [
            &b"refs/heads/a..b"[..],
            b"refs/heads/a@{1}",
            b"refs/heads/x.lock",
            b"refs/heads/a b",
            b"refs/heads/tab\there",
            b"refs/heads/.hidden",
            b"refs/heads/end.",
            b"refs/heads//double",
            b"refs/heads/trailing/",
            b"refs/heads/star*",
        ] {
            assert!(unsupported(bad).is_some(), "{}", escape(bad));
        }
        let longest = format!("refs/heads/{}", vec!["y".repeat(200); 5].join("/"));
        let longest = format!("{longest}{}", "z".repeat(MAX_BYTES - longest.len()));
        assert_eq!(unsupported(longest.as_bytes()), None);
        let longer = format!("{longest}z");
        assert!(
            unsupported(longer.as_bytes())
                .unwrap()
                .contains("1024 bytes")
        );
        let wide = format!("refs/heads/{}", "w".repeat(256));
        assert!(unsupported(wide.as_bytes()).unwrap().contains("255 bytes"));
    }
}
