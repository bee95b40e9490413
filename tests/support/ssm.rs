//! Parameter Store on 127.0.0.1: moto's server (PyPI `moto[server]`), started by the test.
//!
//! moto needs its port on the command line, so one is picked by binding port 0 and releasing it;
//! readiness is a real HTTP answer, polled with a deadline.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const REGION: &str = "ap-northeast-1";

pub struct Moto {
    child: Child,
    port: u16,
}

impl Moto {
    /// Start moto. With `auth_after = Some(n)`, the first `n` requests are free and every later
    /// one is checked against moto's IAM (so a deny policy gives a real AccessDenied).
    pub fn start(auth_after: Option<usize>) -> Moto {
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
            let mut cmd = Command::new("python3");
            cmd.args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
            if let Some(n) = auth_after {
                cmd.env("INITIAL_NO_AUTH_ACTION_COUNT", n.to_string());
            }
            let child = cmd.spawn().expect("start moto");
            let mut moto = Moto { child, port };
            if moto.wait_ready() {
                return moto;
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

    /// What our binary needs to talk to this server with the given credentials.
    pub fn env(&self, key_id: &str, secret: &str) -> Vec<(String, String)> {
        vec![
            ("AWS_ENDPOINT_URL_SSM".into(), self.endpoint()),
            ("AWS_ACCESS_KEY_ID".into(), key_id.into()),
            ("AWS_SECRET_ACCESS_KEY".into(), secret.into()),
            ("AWS_REGION".into(), REGION.into()),
            ("AWS_EC2_METADATA_DISABLED".into(), "true".into()),
        ]
    }

    /// Run a boto3 snippet against this server (`ssm` and `iam` clients are defined) and return
    /// what it prints.
    pub fn boto(&self, code: &str) -> String {
        let script = format!(
            "import boto3, json\n\
             kw = dict(endpoint_url='{ep}', region_name='{REGION}', aws_access_key_id='testing', aws_secret_access_key='testing')\n\
             ssm = boto3.client('ssm', **kw)\n\
             iam = boto3.client('iam', **kw)\n{code}\n",
            ep = self.endpoint()
        );
        let out = Command::new("python3")
            .args(["-c", &script])
            .output()
            .expect("python3");
        assert!(
            out.status.success(),
            "boto3 against moto failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    pub fn put_secure_string(&self, name: &str, value: &str) {
        let value = serde_json::to_string(value).expect("json");
        self.boto(&format!(
            "ssm.put_parameter(Name='{name}', Value={value}, Type='SecureString', Overwrite=True)"
        ));
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
