//! Passwords and tokens for HTTP(S) remotes, from env, file or the URL itself: they work, and no
//! copy of them shows in logs, errors or the JSON summary.

use crate::support::*;

fn served(
    sb: &Sandbox,
    user: &str,
    password: &str,
) -> (std::path::PathBuf, std::path::PathBuf, HttpGit) {
    let Pair { source, target, .. } = sb.pair("srv", &["topic"]);
    let http = HttpGit::start_with(
        &sb.join("srv"),
        HttpOptions {
            basic_auth: Some((user.to_string(), password.to_string())),
            ..HttpOptions::default()
        },
    );
    (source, target, http)
}

fn sync(sb: &Sandbox, source: &str, target: &str, extra: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd = sb.sync(source, target);
    cmd.args(["--json", "-vv"]).args(extra);
    for (k, v) in env {
        cmd.env(k, v);
    }
    run(&mut cmd)
}

#[test]
fn passwords_from_env_and_file_work_and_never_print() {
    let sb = Sandbox::new();
    let (source, target, http) = served(&sb, "mirror", CANARY);
    let file = sb.join("token");
    std::fs::write(&file, format!("{CANARY}\n")).unwrap();
    let src = http.url("source.git").replace("http://", "http://mirror@");
    let tgt = http.url("target.git").replace("http://", "http://mirror@");
    let out = sync(
        &sb,
        &src,
        &tgt,
        &[
            "--source-password-env",
            "SRC_TOKEN",
            "--target-password-file",
            file.to_str().unwrap(),
        ],
        &[("SRC_TOKEN", CANARY)],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_mirror(&source, &target);
    assert_no_secret(&out, &[]);
}

#[test]
fn credentials_in_the_url_work_and_are_redacted_everywhere() {
    let sb = Sandbox::new();
    let (source, target, http) = served(&sb, "mirror", CANARY);
    let with_creds = |repo: &str| {
        http.url(repo)
            .replace("http://", &format!("http://mirror:{CANARY}@"))
    };
    let out = sync(
        &sb,
        &with_creds("source.git"),
        &with_creds("target.git"),
        &[],
        &[],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_mirror(&source, &target);
    assert_no_secret(&out, &[]);
    let report = out.json();
    assert_eq!(report["source"], http.url("source.git"));
    // git would need the password handed to it: auto keeps this push in-process, through our
    // own receive-pack client (a first mirror relays the source's pack through it).
    assert_eq!(report["transfer"]["push"]["engine"], "relay");
}

#[test]
fn a_wrong_token_is_one_clear_error_without_the_token() {
    let sb = Sandbox::new();
    let (_source, target, http) = served(&sb, "mirror", "the-right-one");
    let src = http.url("source.git").replace("http://", "http://mirror@");
    let tgt = http.url("target.git").replace("http://", "http://mirror@");
    let out = sync(
        &sb,
        &src,
        &tgt,
        &[
            "--source-password-env",
            "SRC_TOKEN",
            "--target-password-env",
            "TGT_TOKEN",
        ],
        &[("SRC_TOKEN", CANARY), ("TGT_TOKEN", "the-right-one")],
    );
    assert_eq!(out.code, 1, "{}", out.stderr);
    let error = out.only_error();
    assert!(error.contains("refused the credentials"), "{}", error);
    assert_no_secret(&out, &[]);
    assert!(refs(&target).is_empty());
}
