//! OpenSSH's sshd on 127.0.0.1, serving git over SSH the way Backlog does.
//!
//! The test binds a listener first and hands every connection to `sshd -i` (inetd mode), so there
//! is no port race and nothing to wait for. sshd runs with its own config and host keys from a
//! temporary directory and lets the current user (root in CI) in with keys the test authorises.

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

pub const SSHD: &str = "/usr/sbin/sshd";

/// A key pair made by ssh-keygen.
#[derive(Debug, Clone)]
pub struct KeyPair {
    pub private_path: PathBuf,
    pub public_line: String,
    pub private_text: String,
}

/// `ssh-keygen` a key: kind `ed25519`, `ecdsa` or `rsa`; format `openssh` or `pem`.
pub fn keygen(
    dir: &Path,
    name: &str,
    kind: &str,
    format: &str,
    passphrase: Option<&str>,
) -> KeyPair {
    std::fs::create_dir_all(dir).expect("key dir");
    let path = dir.join(name);
    let mut cmd = Command::new("ssh-keygen");
    cmd.args([
        "-q",
        "-t",
        kind,
        "-N",
        passphrase.unwrap_or(""),
        "-C",
        name,
        "-f",
    ])
    .arg(&path);
    if kind == "rsa" {
        cmd.args(["-b", "2048"]);
    }
    if format == "pem" {
        cmd.args(["-m", "PEM"]);
    }
    let out = cmd.output().expect("ssh-keygen");
    assert!(
        out.status.success(),
        "ssh-keygen: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    KeyPair {
        private_text: std::fs::read_to_string(&path).expect("private key"),
        public_line: std::fs::read_to_string(path.with_extension("pub"))
            .expect("public key")
            .trim()
            .to_string(),
        private_path: path,
    }
}

/// `SHA256:...` of a public key file or line.
pub fn fingerprint_of(public_key_file: &Path) -> String {
    let out = Command::new("ssh-keygen")
        .arg("-lf")
        .arg(public_key_file)
        .output()
        .expect("ssh-keygen -lf");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .nth(1)
        .expect("fingerprint")
        .to_string()
}

#[derive(Debug, Clone)]
pub struct SshdOptions {
    /// Host key types the server has: any of `ed25519`, `ecdsa`, `rsa`.
    pub host_key_kinds: Vec<&'static str>,
    /// `PubkeyAcceptedAlgorithms`, e.g. to refuse SHA-1 RSA signatures.
    pub pubkey_accepted_algorithms: Option<String>,
    /// `ForceCommand`: what the server runs instead of the command asked for (which the
    /// command finds in `$SSH_ORIGINAL_COMMAND`), to misbehave on purpose.
    pub force_command: Option<String>,
}

impl Default for SshdOptions {
    fn default() -> Self {
        SshdOptions {
            host_key_kinds: vec!["ed25519"],
            pubkey_accepted_algorithms: None,
            force_command: None,
        }
    }
}

pub struct Sshd {
    dir: tempfile::TempDir,
    port: u16,
    stop: Arc<AtomicBool>,
    connections: Arc<AtomicUsize>,
    sent: Arc<AtomicUsize>,
    children: Arc<Mutex<Vec<Child>>>,
    host_keys: Vec<(String, PathBuf)>,
}

impl Sshd {
    pub fn start() -> Sshd {
        Self::start_with(SshdOptions::default())
    }

    pub fn start_with(options: SshdOptions) -> Sshd {
        assert!(
            Path::new(SSHD).exists(),
            "{SSHD} is missing: run ./scripts/test.sh, which installs openssh-server"
        );
        let dir = tempfile::Builder::new()
            .prefix("bm-sshd-")
            .tempdir()
            .expect("tempdir");
        // sshd insists on its privilege separation directory when run as root.
        let _ = std::fs::create_dir_all("/run/sshd");
        let mut host_keys = Vec::new();
        let mut config = String::new();
        for kind in &options.host_key_kinds {
            let key = keygen(dir.path(), &format!("host_{kind}"), kind, "openssh", None);
            config.push_str(&format!("HostKey {}\n", key.private_path.display()));
            host_keys.push((kind.to_string(), key.private_path.with_extension("pub")));
        }
        let authorized = dir.path().join("authorized_keys");
        std::fs::write(&authorized, "").expect("authorized_keys");
        config.push_str(&format!(
            "AuthorizedKeysFile {}\n\
             PermitRootLogin yes\nStrictModes no\nUsePAM no\nPasswordAuthentication no\n\
             KbdInteractiveAuthentication no\nPubkeyAuthentication yes\nPidFile none\n\
             LogLevel VERBOSE\nMaxAuthTries 6\nAcceptEnv GIT_PROTOCOL\n",
            authorized.display()
        ));
        if let Some(algs) = &options.pubkey_accepted_algorithms {
            config.push_str(&format!("PubkeyAcceptedAlgorithms {algs}\n"));
        }
        if let Some(command) = &options.force_command {
            config.push_str(&format!("ForceCommand {command}\n"));
        }
        let config_path = dir.path().join("sshd_config");
        std::fs::write(&config_path, config).expect("sshd_config");
        let check = Command::new(SSHD)
            .arg("-t")
            .arg("-f")
            .arg(&config_path)
            .output()
            .expect("sshd -t");
        assert!(
            check.status.success(),
            "sshd -t: {}",
            String::from_utf8_lossy(&check.stderr)
        );

        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let stop = Arc::new(AtomicBool::new(false));
        let connections = Arc::new(AtomicUsize::new(0));
        let children = Arc::new(Mutex::new(Vec::new()));
        let sent_total = Arc::new(AtomicUsize::new(0));
        let log = dir.path().join("sshd.log");
        {
            let (stop, connections, children) =
                (stop.clone(), connections.clone(), children.clone());
            let sent = sent_total.clone();
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    connections.fetch_add(1, Ordering::SeqCst);
                    // sshd gets one end of a socket pair and the test relays the other end to
                    // the client, counting what the server sends (a source's traffic cost).
                    let Ok((ours, theirs)) = UnixStream::pair() else {
                        continue;
                    };
                    let (Ok(input), Ok(output)) = (theirs.try_clone(), theirs.try_clone()) else {
                        continue;
                    };
                    let mut cmd = Command::new(SSHD);
                    cmd.arg("-i")
                        .arg("-f")
                        .arg(&config_path)
                        .arg("-E")
                        .arg(&log)
                        .stdin(Stdio::from(OwnedFd::from(input)))
                        .stdout(Stdio::from(OwnedFd::from(output)))
                        .stderr(Stdio::null());
                    let Ok(child) = cmd.spawn() else { continue };
                    drop(theirs);
                    let (Ok(mut inbound), Ok(mut to_sshd)) = (stream.try_clone(), ours.try_clone())
                    else {
                        continue;
                    };
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut inbound, &mut to_sshd);
                        let _ = to_sshd.shutdown(std::net::Shutdown::Write);
                    });
                    let sent = sent.clone();
                    let (mut from_sshd, mut outbound) = (ours, stream);
                    std::thread::spawn(move || {
                        let mut buf = vec![0u8; 64 * 1024];
                        while let Ok(n) = std::io::Read::read(&mut from_sshd, &mut buf) {
                            // Counted before the client can see it: once a client has exited,
                            // everything it received is in the count.
                            sent.fetch_add(n, Ordering::SeqCst);
                            if n == 0 || outbound.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                        let _ = outbound.shutdown(std::net::Shutdown::Both);
                    });
                    children
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(child);
                }
            });
        }
        Sshd {
            dir,
            port,
            stop,
            connections,
            sent: sent_total,
            children,
            host_keys,
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Let `public_line` log in.
    pub fn authorize(&self, public_line: &str) {
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(self.dir.path().join("authorized_keys"))
            .expect("authorized_keys");
        writeln!(file, "{public_line}").expect("append");
    }

    /// The user the server lets in: whoever runs the tests.
    pub fn user(&self) -> String {
        std::env::var("USER")
            .ok()
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| {
                let out = Command::new("id").arg("-un").output().expect("id -un");
                String::from_utf8_lossy(&out.stdout).trim().to_string()
            })
    }

    /// `ssh://USER@127.0.0.1:PORT/<absolute path>`.
    pub fn url(&self, path: &Path) -> String {
        format!(
            "ssh://{}@127.0.0.1:{}{}",
            self.user(),
            self.port,
            path.display()
        )
    }

    pub fn host_key_fingerprints(&self) -> Vec<String> {
        self.host_keys
            .iter()
            .map(|(_, p)| fingerprint_of(p))
            .collect()
    }

    /// known_hosts entries for `[127.0.0.1]:PORT`, hashed like `HashKnownHosts yes` if asked.
    pub fn write_known_hosts(&self, path: &Path, hashed: bool) {
        let mut text = String::new();
        for (_, public) in &self.host_keys {
            let key = std::fs::read_to_string(public).expect("host key");
            let mut fields = key.split_whitespace();
            let (kind, blob) = (fields.next().expect("type"), fields.next().expect("blob"));
            text.push_str(&format!("[127.0.0.1]:{} {kind} {blob}\n", self.port));
        }
        std::fs::write(path, text).expect("known_hosts");
        if hashed {
            let out = Command::new("ssh-keygen")
                .arg("-H")
                .arg("-f")
                .arg(path)
                .output()
                .expect("ssh-keygen -H");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let _ = std::fs::remove_file(path.with_extension("old"));
        }
    }

    /// Bytes the server has sent to clients so far (what a source "costs" in traffic).
    #[allow(dead_code)] // the benchmark's traffic figures
    pub fn bytes_sent(&self) -> usize {
        self.sent.load(Ordering::SeqCst)
    }

    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        for child in self
            .children
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter_mut()
        {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
