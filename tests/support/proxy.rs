//! A real forward proxy on 127.0.0.1: Squid, started by the test with its own configuration.
//!
//! Names under `proxy-only.test` resolve only inside the proxy (Squid's `hosts_file`), to
//! 127.0.0.1: a client that reaches such a host went through the proxy, and one that does not use
//! the proxy cannot resolve it. Squid asks no DNS server but 127.0.0.1, so nothing leaves the
//! machine. Readiness is read from Squid's own "Accepting HTTP Socket connections" line.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

/// A host name only the proxy resolves.
pub fn proxy_only(name: &str) -> String {
    format!("{name}.proxy-only.test")
}

pub struct Squid {
    child: Child,
    dir: tempfile::TempDir,
    pub port: u16,
}

impl Squid {
    /// Start Squid, mapping each of `names` (see `proxy_only`) to 127.0.0.1.
    pub fn start(names: &[&str]) -> Squid {
        let dir = tempfile::Builder::new()
            .prefix("bm-squid-")
            .tempdir()
            .expect("tempdir");
        // Squid drops to its own user: it must be able to write its logs here.
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o777),
        )
        .expect("chmod");
        let hosts: String = names
            .iter()
            .map(|n| format!("127.0.0.1 {}\n", proxy_only(n)))
            .collect();
        std::fs::write(dir.path().join("hosts"), hosts).expect("hosts");
        // A port taken by someone else between bind and Squid's start makes Squid exit: try
        // another, a few times.
        for _ in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port();
            if let Some(child) = try_start(dir.path(), port) {
                return Squid { child, dir, port };
            }
        }
        panic!("squid did not start (is it installed? run ./scripts/install-deps.sh)");
    }

    /// `http://127.0.0.1:PORT`, as `http_proxy` and friends take it.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The requests the proxy served, one line each (method, URL or `host:port` for CONNECT).
    pub fn requests(&self) -> Vec<String> {
        let log = std::fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default();
        log.lines()
            .filter_map(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                Some(format!("{} {}", fields.get(5)?, fields.get(6)?))
            })
            .collect()
    }
}

fn try_start(dir: &std::path::Path, port: u16) -> Option<Child> {
    let path = |name: &str| -> PathBuf { dir.join(name) };
    let config = format!(
        "http_port 127.0.0.1:{port}\n\
         pid_filename {pid}\n\
         access_log stdio:{access}\n\
         cache_log {cache}\n\
         cache_store_log none\n\
         cache deny all\n\
         strip_query_terms off\n\
         hosts_file {hosts}\n\
         dns_nameservers 127.0.0.1\n\
         pinger_enable off\n\
         http_access allow all\n\
         coredump_dir {dir}\n\
         shutdown_lifetime 0 seconds\n",
        pid = path("squid.pid").display(),
        access = path("access.log").display(),
        cache = path("cache.log").display(),
        hosts = path("hosts").display(),
        dir = dir.display(),
    );
    std::fs::write(path("squid.conf"), config).expect("squid.conf");
    let squid = ["/usr/sbin/squid", "/usr/local/sbin/squid"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .unwrap_or("squid");
    let mut child = Command::new(squid)
        .args(["-N", "-d", "1", "-f"])
        .arg(path("squid.conf"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .ok()?;
    let stderr = child.stderr.take()?;
    let mut lines = BufReader::new(stderr).lines();
    for line in lines.by_ref() {
        let Ok(line) = line else { break };
        if line.contains("Accepting HTTP Socket connections") {
            // Keep draining Squid's stderr so it never blocks on a full pipe.
            std::thread::spawn(move || for _ in lines {});
            return Some(child);
        }
        if line.contains("FATAL") || line.contains("Terminated abnormally") {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

impl Drop for Squid {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
