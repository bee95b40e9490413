//! CodeCommit's Git endpoint and control plane, and the container credentials endpoint, on
//! 127.0.0.1.
//!
//! CodeCommit is `codecommit_server.py`: git http-backend behind TLS (a test CA made at start)
//! that admits a request only when its password verifies as a CodeCommit SigV4 signature, checked
//! with botocore; on the same port, the API calls `GetRepository`, `CreateRepository` and
//! `UpdateDefaultBranch`, their SigV4 `Authorization` checked with botocore too. It reports its port and CA on its first line, so readiness is read, not
//! polled.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

pub struct CodeCommitServer {
    child: Child,
    pub port: u16,
    pub ca: PathBuf,
    pub log: PathBuf,
}

/// Fixed test credentials: (access key id, secret, session token).
pub type Cred<'a> = (&'a str, &'a str, Option<&'a str>);

impl CodeCommitServer {
    pub fn start(root: &Path, region: &str, creds: &[Cred<'_>], max_ref_updates: usize) -> Self {
        Self::start_denying(root, region, creds, max_ref_updates, &[])
    }

    /// As `start`, answering the API actions in `deny` with AccessDeniedException.
    pub fn start_denying(
        root: &Path,
        region: &str,
        creds: &[Cred<'_>],
        max_ref_updates: usize,
        deny: &[&str],
    ) -> Self {
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/support/codecommit_server.py"
        );
        let log = root.join("codecommit-requests.log");
        let mut cmd = Command::new("python3");
        cmd.arg(script)
            .arg("--root")
            .arg(root)
            .args([
                "--region",
                region,
                "--max-ref-updates",
                &max_ref_updates.to_string(),
            ])
            .arg("--log")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for action in deny {
            cmd.args(["--deny", action]);
        }
        for (id, secret, token) in creds {
            match token {
                Some(t) => cmd.args(["--cred", &format!("{id}:{secret}:{t}")]),
                None => cmd.args(["--cred", &format!("{id}:{secret}")]),
            };
        }
        let mut child = cmd.spawn().expect("start codecommit_server.py");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read READY line");
        let mut fields = line.split_whitespace();
        assert_eq!(
            fields.next(),
            Some("READY"),
            "codecommit_server.py did not start (botocore missing? run ./scripts/test.sh)"
        );
        let port = fields.next().and_then(|p| p.parse().ok()).expect("port");
        let ca = PathBuf::from(fields.next().expect("ca path"));
        CodeCommitServer {
            child,
            port,
            ca,
            log,
        }
    }

    /// The value for `CODE_COMMIT_ENDPOINT` / `--codecommit-endpoint`.
    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// What points a client at this server: git-remote-codecommit and backlog-mirror through
    /// `CODE_COMMIT_ENDPOINT`, OpenSSL (libgit2) and git through the test CA.
    pub fn client_env(&self) -> [(&'static str, String); 3] {
        let ca = self.ca.display().to_string();
        [
            ("CODE_COMMIT_ENDPOINT", self.endpoint()),
            ("SSL_CERT_FILE", ca.clone()),
            ("GIT_SSL_CAINFO", ca),
        ]
    }

    /// What points the AWS SDK's CodeCommit client (the control plane) at this server, besides
    /// the test CA of `client_env`.
    pub fn api_env(&self) -> [(&'static str, String); 1] {
        [(
            "AWS_ENDPOINT_URL_CODECOMMIT",
            format!("https://127.0.0.1:{}", self.port),
        )]
    }

    /// The control-plane calls the server answered, in order: (action, request JSON).
    pub fn api_calls(&self) -> Vec<(String, serde_json::Value)> {
        self.requests()
            .into_iter()
            .filter_map(|r| Some((r["action"].as_str()?.to_string(), r["request"].clone())))
            .collect()
    }

    /// Log lines (JSON) of requests the server answered, with their status.
    pub fn requests(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

impl Drop for CodeCommitServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The ECS/CodeBuild container credentials endpoint: answers every GET with fixed temporary
/// credentials, as `AWS_CONTAINER_CREDENTIALS_FULL_URI` expects.
pub struct ContainerCredentials {
    pub url: String,
    hits: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl ContainerCredentials {
    pub fn start(id: &str, secret: &str, token: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!(
            "http://127.0.0.1:{}/creds",
            listener.local_addr().expect("addr").port()
        );
        let body = serde_json::json!({
            "AccessKeyId": id,
            "SecretAccessKey": secret,
            "Token": token,
            "Expiration": "2099-01-01T00:00:00Z",
        })
        .to_string();
        let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = hits.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let mut stream = stream;
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf);
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        ContainerCredentials { url, hits }
    }

    pub fn hits(&self) -> usize {
        self.hits.load(std::sync::atomic::Ordering::SeqCst)
    }
}
