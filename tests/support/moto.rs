//! moto's server on 127.0.0.1 for tests that deploy the real CloudFormation template, started
//! through `moto_cfn.py`, which fixes what moto's CloudFormation engine gets wrong for that
//! template (see the script's docstring) and records the resource types moto does not model.
//! The AWS CLI v2 talks to it as it would to AWS, through `--endpoint-url`.
//!
//! `MotoServer` starts moto for this and for `ssm.rs`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const REGION: &str = "ap-northeast-1";

const LAUNCHER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/moto_cfn.py");

/// A moto server process on 127.0.0.1, however launched: the port is picked by binding port 0
/// and releasing it (moto needs it on its command line), readiness is a real HTTP answer polled
/// with a deadline, and a launch that lost its port to another process is tried again.
pub struct MotoServer {
    child: Child,
    port: u16,
}

impl MotoServer {
    /// Start the server `launch` makes for a port (stdin, stdout and stderr as it sets them).
    pub fn start(mut launch: impl FnMut(u16) -> Command) -> MotoServer {
        let probe = Command::new("python3")
            .args(["-c", "import moto.server"])
            .output()
            .expect("python3");
        assert!(
            probe.status.success(),
            "moto[server] is missing: run ./scripts/test.sh, which installs it"
        );
        for _ in 0..3 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("free port")
                .port();
            let child = launch(port).spawn().expect("start moto");
            let mut server = MotoServer { child, port };
            if server.wait_ready() {
                return server;
            }
        }
        panic!("moto_server did not start on 127.0.0.1");
    }

    fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) {
                let _ = s.write_all(b"GET /moto-api/ HTTP/1.0\r\n\r\n");
                let mut buf = [0u8; 12];
                if s.read(&mut buf).unwrap_or(0) > 0 && buf.starts_with(b"HTTP/") {
                    return true;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct MotoCfn {
    server: MotoServer,
    log: PathBuf,
}

impl MotoCfn {
    /// Start the server; its stderr goes to `<dir>/moto.log`.
    pub fn start(dir: &Path) -> MotoCfn {
        let log = dir.join("moto.log");
        let server = MotoServer::start(|port| {
            let mut cmd = Command::new("python3");
            cmd.args([LAUNCHER, "-H", "127.0.0.1", "-p", &port.to_string()])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).expect("moto log"));
            cmd
        });
        MotoCfn { server, log }
    }

    pub fn endpoint(&self) -> String {
        self.server.endpoint()
    }

    /// The resource types moto does not model, which the stacks so far created as placeholders.
    pub fn placeholders(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.strip_prefix("moto_cfn: placeholder "))
            .map(str::to_string)
            .collect()
    }

    /// Credentials and settings for an AWS CLI pointed at this server (the endpoint itself is
    /// passed as `--endpoint-url`, which every AWS CLI v2 honours).
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing".into()),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
            ("AWS_PAGER", String::new()),
        ]
    }
}

/// The AWS CLI v2: `aws` if that is a v2, else Debian's `/usr/bin/aws` (the `awscli` package),
/// which a Python environment's v1 `aws` may shadow on PATH.
pub fn aws_cli_v2() -> String {
    for candidate in ["aws", "/usr/bin/aws"] {
        let version = Command::new(candidate)
            .arg("--version")
            .stdin(Stdio::null())
            .output();
        if let Ok(out) = version {
            let text = String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr);
            if out.status.success() && text.starts_with("aws-cli/2.") {
                return candidate.to_string();
            }
        }
    }
    panic!("the AWS CLI v2 is missing: run ./scripts/test.sh, which installs it (Debian: awscli)");
}
