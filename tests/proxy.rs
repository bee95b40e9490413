//! Proxies, as git reads them from the environment: `http_proxy` for http:// URLs,
//! `HTTPS_PROXY` for https:// (a `CONNECT` tunnel), `NO_PROXY` for hosts reached directly; for
//! our HTTP client, libgit2's and the AWS SDK's alike. The proxy is a real Squid on loopback, and
//! the hosts the runs talk to resolve only inside it, so a run that did not go through the proxy
//! cannot reach them.

use crate::support::codecommit::CodeCommitServer;
use crate::support::proxy::{Squid, proxy_only};
use crate::support::*;

const AKID: &str = "AKIDPROXYTEST";
const SECRET: &str = "canary-7f3a9c1e5b/proxy/SECRET";
const REGION: &str = "ap-northeast-1";

/// `url` (a server on 127.0.0.1) with a host only the proxy resolves.
fn behind(url: &str, name: &str) -> String {
    url.replacen("127.0.0.1", &proxy_only(name), 1)
}

fn proxied(mut cmd: std::process::Command, vars: &[(&str, &str)]) -> Run {
    for (k, v) in vars {
        cmd.env(k, v);
    }
    run(&mut cmd)
}

#[test]
fn smart_http_goes_through_http_proxy_for_every_engine_and_fails_without_it() {
    let sb = Sandbox::new();
    let pair = sb.pair("srv", &["topic"]);
    let server = HttpGit::start(&sb.join("srv"));
    let squid = Squid::start(&["git"]);
    let source = behind(&server.url("source.git"), "git");
    let target = behind(&server.url("target.git"), "git");
    let via = [("http_proxy", squid.url())];
    let via: Vec<(&str, &str)> = via.iter().map(|(k, v)| (*k, v.as_str())).collect();

    // Without the proxy the host does not even resolve: one clear line, nothing changed.
    let direct = run(&mut sb.sync(&source, &target));
    assert_eq!(direct.code, 1, "{}", direct.stderr);
    assert!(
        direct.only_error().contains("proxy-only.test"),
        "{}",
        direct.stderr
    );
    assert!(refs(&pair.target).is_empty());

    // First mirror (the cache is empty: libgit2 fetches), then a change (our own client
    // fetches and pushes), then a push through libgit2 and one through git.
    let first = proxied(sb.sync(&source, &target), &via);
    assert_eq!(first.code, 0, "{}", first.stderr);
    assert_mirror(&pair.source, &pair.target);
    // libgit2 (1.9) sends a plain-HTTP request meant for a proxy to the origin: its engine is
    // left out here, and takes an https:// remote's proxy (`CONNECT`) below.
    for (round, engine) in ["auto", "wire", "git"].iter().enumerate() {
        push_a_commit(&pair.source, &sb.join(&format!("w{round}")), "f", engine);
        let mut cmd = sb.sync(&source, &target);
        cmd.args(["--push-engine", engine]);
        let out = proxied(cmd, &via);
        assert_eq!(out.code, 0, "--push-engine {engine}: {}", out.stderr);
        assert_mirror(&pair.source, &pair.target);
    }
    let asked = squid.requests();
    for path in [
        "/source.git/info/refs?service=git-upload-pack",
        "/source.git/git-upload-pack",
        "/target.git/info/refs?service=git-receive-pack",
        "/target.git/git-receive-pack",
    ] {
        assert!(
            asked
                .iter()
                .any(|r| r.contains(&proxy_only("git")) && r.contains(path)),
            "the proxy never saw {path}: {asked:#?}"
        );
    }
}

#[test]
fn no_proxy_hosts_are_reached_directly() {
    let sb = Sandbox::new();
    let pair = sb.pair("srv", &[]);
    let server = HttpGit::start(&sb.join("srv"));
    let squid = Squid::start(&["git"]);
    let source = behind(&server.url("source.git"), "git");
    // The target on 127.0.0.1, which NO_PROXY exempts (in either case, as curl reads it).
    let target = server.url("target.git");
    for no_proxy in ["NO_PROXY", "no_proxy"] {
        let out = proxied(
            sb.sync(&source, &target),
            &[
                ("HTTP_PROXY", &squid.url()),
                (no_proxy, "localhost,127.0.0.1"),
            ],
        );
        assert_eq!(out.code, 0, "{no_proxy}: {}", out.stderr);
        assert_mirror(&pair.source, &pair.target);
        push_a_commit(&pair.source, &sb.join(no_proxy), "f", no_proxy);
    }
    let asked = squid.requests();
    assert!(
        asked.iter().any(|r| r.contains("/source.git/")),
        "the source went direct: {asked:#?}"
    );
    assert!(
        !asked.iter().any(|r| r.contains("target.git")),
        "the target went through the proxy: {asked:#?}"
    );
}

#[test]
fn https_and_the_aws_sdk_go_through_a_connect_tunnel() {
    let sb = Sandbox::new();
    let pair = sb.pair("src", &["dev"]);
    let root = sb.join("codecommit");
    std::fs::create_dir_all(&root).unwrap();
    let server = CodeCommitServer::start(&root, REGION, &[(AKID, SECRET, None)], 0);
    let squid = Squid::start(&["codecommit"]);
    let endpoint = format!("{}:{}", proxy_only("codecommit"), server.port);
    let ca = server.ca.display().to_string();
    let sync = |extra: &[&str]| {
        let mut cmd = bin();
        cmd.env("HOME", sb.home())
            .env("SSL_CERT_FILE", &ca)
            .env("GIT_SSL_CAINFO", &ca)
            .env("CODE_COMMIT_ENDPOINT", &endpoint)
            .env("AWS_ENDPOINT_URL_CODECOMMIT", format!("https://{endpoint}"))
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_ACCESS_KEY_ID", AKID)
            .env("AWS_SECRET_ACCESS_KEY", SECRET)
            .env("HTTPS_PROXY", squid.url())
            .args(["sync", "--source"])
            .arg(&pair.source)
            .args([
                "--target",
                &format!("codecommit::{REGION}://team-app"),
                "--cache-dir",
            ])
            .arg(sb.cache_dir())
            .args(extra);
        run(&mut cmd)
    };
    // The repository does not exist: the SDK creates it (CreateRepository), then the push.
    let out = sync(&["--create-target"]);
    assert_eq!(out.code, 0, "{}\n{:#?}", out.stderr, squid.requests());
    assert_no_secret(&out, &[SECRET]);
    assert_mirror(&pair.source, &root.join("team-app"));
    let calls: Vec<String> = server.api_calls().into_iter().map(|(a, _)| a).collect();
    assert!(calls.contains(&"CreateRepository".to_string()), "{calls:?}");
    let asked = squid.requests();
    let tunnels = asked
        .iter()
        .filter(|r| r.starts_with("CONNECT") && r.contains(&endpoint))
        .count();
    assert!(
        tunnels >= 2,
        "no CONNECT tunnel for the SDK and git: {asked:#?}"
    );
    assert!(
        !asked.iter().any(|r| r.contains(SECRET)),
        "a secret in the proxy's log"
    );
}
