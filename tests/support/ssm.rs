//! Parameter Store on 127.0.0.1: moto's server (PyPI `moto[server]`), started by the test.
//!
//! Started through `moto::MotoServer`, which picks the port and waits until moto answers.

use std::process::{Command, Stdio};

use super::moto::MotoServer;

pub const REGION: &str = "ap-northeast-1";

pub struct Moto {
    server: MotoServer,
}

impl Moto {
    /// Start moto. With `auth_after = Some(n)`, the first `n` requests are free and every later
    /// one is checked against moto's IAM (so a deny policy gives a real AccessDenied).
    pub fn start(auth_after: Option<usize>) -> Moto {
        let server = MotoServer::start(|port| {
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
            cmd
        });
        Moto { server }
    }

    pub fn endpoint(&self) -> String {
        self.server.endpoint()
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
