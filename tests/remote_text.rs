//! What a hostile server says reaches the user escaped, on one line, bounded, and without any
//! credential of the run in any form it may be echoed in (plain, base64, percent-encoded). The
//! server here is the hostile remote itself: a listener on 127.0.0.1 that answers every request
//! with the bytes a test gives it, whatever was asked.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::process::Command;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};

use crate::support::*;

/// Answers every HTTP request on 127.0.0.1 with `answer`, then closes the connection.
struct Hostile {
    origin: String,
}

impl Hostile {
    fn start(answer: Vec<u8>) -> Hostile {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let origin = format!("http://{}", listener.local_addr().expect("addr"));
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let Ok(clone) = stream.try_clone() else {
                    continue;
                };
                let mut reader = BufReader::new(clone);
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line.trim() != "" {
                    line.clear();
                }
                let _ = stream.write_all(&answer);
            }
        });
        Hostile { origin }
    }

    /// An HTTP answer with `status` and `body`.
    fn answering(status: &str, body: &[u8]) -> Hostile {
        let mut answer = format!(
            "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n",
            body.len()
        )
        .into_bytes();
        answer.extend_from_slice(body);
        Hostile::start(answer)
    }

    fn url(&self, user: Option<&str>) -> String {
        let origin = match user {
            Some(user) => self.origin.replace("http://", &format!("http://{user}@")),
            None => self.origin.clone(),
        };
        format!("{origin}/team/app.git")
    }
}

/// A body made to take over a terminal and forge a line of ours: colours, a window title (OSC),
/// a bell, a line of our summary after a newline, a carriage return, NULs, a C1 control (CSI),
/// a right-to-left override and a Unicode line separator.
const FORGED: &[u8] =
    b"\x1b[31mboom\x1b[0m\x07\x1b]0;pwned\x07\nbacklog-mirror: in sync: 0 created\r\n\
    \x00\x00\xc2\x9b2J \xe2\x80\xaeevil\xe2\x80\xa8backlog-mirror: in sync";

/// Whether `c` could drive a terminal, break a line or reorder text when printed raw.
fn unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
                | '\u{2028}' | '\u{2029}'
        )
}

/// Everything `out` printed is safe to show: no raw control character on stderr but the line
/// ends, no forged line, one error line (in JSON too, with no newline in it), of bounded length.
fn assert_shown_safely(case: &str, out: &Run) {
    assert_eq!(out.code, 1, "{case}: {}", out.stderr);
    let bad: Vec<char> = out
        .stderr
        .chars()
        .filter(|&c| c != '\n' && unsafe_char(c))
        .collect();
    assert!(
        bad.is_empty(),
        "{case}: raw {bad:?} on stderr:\n{}",
        out.stderr
    );
    assert!(
        !out.stderr
            .lines()
            .any(|l| l.starts_with("backlog-mirror: in sync")),
        "{case}: a forged line:\n{}",
        out.stderr
    );
    let error = out.only_error();
    assert!(error.len() < 1000, "{case}: {error}");
    let json = out.json();
    let field = json["error"].as_str().expect("error is a string");
    let bad: Vec<char> = field.chars().filter(|&c| unsafe_char(c)).collect();
    assert!(
        bad.is_empty(),
        "{case}: {bad:?} in the JSON error: {field:?}"
    );
    assert!(field.len() < 1000, "{case}: {field}");
}

#[test]
fn what_a_server_says_is_escaped_on_one_line_and_bounded() {
    let sb = Sandbox::new();
    let Pair { source, target, .. } = sb.pair("srv", &[]);
    let (src, tgt) = (path_str(&source), path_str(&target));
    let long: Vec<u8> = FORGED.iter().copied().cycle().take(100_000).collect();
    let mut upgrade = b"HTTP/1.1 101 Switching Protocols\r\n\r\n".to_vec();
    upgrade.extend_from_slice(&[0; 64]);
    upgrade.extend_from_slice(b"\r\n\r\n");
    let servers = [
        (
            "500",
            Hostile::answering("500 Internal Server Error", FORGED),
        ),
        ("long 500", Hostile::answering("500 Oops", &long)),
        (
            "status line",
            Hostile::start([FORGED, b"\r\n\r\n"].concat()),
        ),
        ("101 and NULs", Hostile::start(upgrade)),
    ];
    for (name, server) in &servers {
        let out = run(sb
            .sync(&src, &server.url(None))
            .args(["--json", "--retries", "1"]));
        assert_shown_safely(&format!("target: {name}"), &out);
        assert!(refs(&target).is_empty());
        let out = run(sb
            .sync(&server.url(None), &tgt)
            .args(["--json", "--retries", "1"]));
        assert_shown_safely(&format!("source: {name}"), &out);
        assert!(refs(&target).is_empty());
    }
}

/// A target's hook that refuses a ref in words made to take over the terminal: the ref's reason
/// in the human summary and in the JSON is escaped and one line, as the error is.
#[test]
fn a_hooks_refusal_is_escaped_in_the_summary_and_the_json() {
    let sb = Sandbox::new();
    let Pair { source, target, .. } = sb.pair("srv", &[]);
    let words = String::from_utf8_lossy(FORGED).replace('\'', "");
    install_hook(
        &target,
        "pre-receive",
        &format!("#!/bin/sh\ncat >/dev/null\nprintf '%s\\n' '{words}' >&2\nexit 1\n"),
    );
    let out = run(sb
        .sync(&path_str(&source), &path_str(&target))
        .arg("--json"));
    assert_shown_safely("hook", &out);
    let json = out.json();
    let reasons: Vec<&str> = json["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .filter_map(|c| c["reason"].as_str())
        .collect();
    assert!(!reasons.is_empty(), "no reason: {json}");
    for reason in reasons {
        let bad: Vec<char> = reason.chars().filter(|&c| unsafe_char(c)).collect();
        assert!(bad.is_empty(), "{bad:?} in a reason: {reason:?}");
        assert!(
            reason.contains("boom"),
            "the hook's words are gone: {reason}"
        );
    }
    assert!(refs(&target).is_empty());
}

/// `text` with every byte but ASCII letters and digits percent-encoded, hex written by `hex`.
fn percent_encoded(text: &str, hex: fn(u8) -> String) -> String {
    text.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' => (b as char).to_string(),
            _ => hex(b),
        })
        .collect()
}

/// Every form of `password` (and of `bob:password`) a server may echo: base64 in both alphabets,
/// padded or not, alone, after one or two other bytes (the three ways it can sit in a longer
/// encoding) and as the `user:password` of a `Basic` header; percent-encoded; JSON-escaped.
fn echoed_forms(password: &str) -> Vec<String> {
    let mut forms = Vec::new();
    for plain in [
        format!("bob:{password}"),
        password.to_string(),
        format!("x{password}"),
        format!("xy{password}"),
        format!("token={password};"),
    ] {
        for engine in [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD] {
            forms.push(engine.encode(plain.as_bytes()));
        }
    }
    for hex in [|b: u8| format!("%{b:02X}"), |b: u8| format!("%{b:02x}")] {
        forms.push(percent_encoded(password, hex));
    }
    let json = serde_json::to_string(password).unwrap();
    forms.push(json[1..json.len() - 1].to_string());
    forms
}

/// A server that echoes the credentials it was sent, in any encoding, in its refusal: the
/// refusal is shown, the credentials in none of their forms, whichever route brought them (a
/// password variable, userinfo in the URL, userinfo in BACKLOG_MIRROR_TARGET).
#[test]
fn credentials_echoed_back_encoded_are_scrubbed() {
    let sb = Sandbox::new();
    let Pair { source, target, .. } = sb.pair("srv", &[]);
    let (src, tgt) = (path_str(&source), path_str(&target));
    let password = format!("{CANARY}/p@s\"s w+rd?");
    let forms = echoed_forms(&password);
    let encoded = percent_encoded(&password, |b| format!("%{b:02X}"));
    for form in &forms {
        let body = format!("token {form} rejected");
        let server = Hostile::answering("401 Unauthorized", body.as_bytes());
        let with_userinfo = server.url(Some(&format!("bob:{encoded}")));
        let routes: Vec<(&str, Command)> = vec![
            ("target, password variable", {
                let mut cmd = sb.sync(&src, &server.url(Some("bob")));
                cmd.args(["--target-password-env", "TOKEN"]);
                cmd
            }),
            ("target, userinfo", sb.sync(&src, &with_userinfo)),
            ("target, BACKLOG_MIRROR_TARGET", {
                let mut cmd = bin();
                cmd.env("HOME", sb.home())
                    .env("BACKLOG_MIRROR_TARGET", &with_userinfo)
                    .args(["sync", "--source", &src, "--cache-dir"])
                    .arg(sb.cache_dir());
                cmd
            }),
            ("source, password variable", {
                let mut cmd = sb.sync(&server.url(Some("bob")), &tgt);
                cmd.args(["--source-password-env", "TOKEN"]);
                cmd
            }),
        ];
        for (route, mut cmd) in routes {
            let out = run(cmd.env("TOKEN", &password).arg("--json"));
            assert_eq!(out.code, 1, "{route} {form}: {}", out.stderr);
            assert_no_secret(&out, &[form.as_str()]);
            if route.starts_with("target") {
                let error = out.only_error();
                assert!(
                    error.contains("token <redacted> rejected"),
                    "{route} {form}: {error}"
                );
            }
        }
    }
    assert!(refs(&target).is_empty());
}
