//! The static binary that ships (built by `scripts/dist.sh`), tested as shipped: named by
//! `BACKLOG_MIRROR_DIST_BINARY` (`scripts/test.sh` builds the x86_64 one and sets it). It must be
//! static and stripped, name its version and commit, mirror a repository, and do TLS as CodeBuild
//! needs: with its OpenSSL compiled in, it can only trust what git2's certificate probe points it
//! at, so the tests prove the probe finds Amazon Linux 2023's and Debian's CA bundles (in a private
//! mount namespace, where the test's CA is put at those paths), that SSL_CERT_FILE works, and that
//! a server whose CA is not trusted is refused.
//!
//! A binary for another architecture (the aarch64 one) runs under `qemu-aarch64` (Debian's
//! qemu-user), so the same tests check it where qemu is installed.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::codecommit::CodeCommitServer;
use crate::support::*;

const ENV: &str = "BACKLOG_MIRROR_DIST_BINARY";
const REGION: &str = "us-east-1";
const AKID: &str = "AKIAEXAMPLEDISTTEST1";
const SECRET: &str = "canary-7f3a9c1e5b/dist/EXAMPLEKEY";
const AARCH64: &str = "aarch64-unknown-linux-musl";

/// The binary under test and, for a foreign architecture, the emulator that runs it.
struct Dist {
    path: PathBuf,
    elf: Elf,
    runner: Option<PathBuf>,
}

impl Dist {
    fn from_env() -> Dist {
        let path = std::env::var_os(ENV).map(PathBuf::from).unwrap_or_else(|| {
            panic!(
                "{ENV} is not set. Build the static binary with \
                 `scripts/dist.sh --target x86_64-unknown-linux-musl`, then run \
                 `{ENV}=$PWD/target/dist/backlog-mirror-x86_64-unknown-linux-musl cargo test --test dist`, \
                 or run ./scripts/test.sh, which does both"
            )
        });
        assert!(
            path.is_absolute(),
            "{ENV}={} must be an absolute path",
            path.display()
        );
        Dist::at(path)
    }

    fn at(path: PathBuf) -> Dist {
        let bytes = std::fs::read(&path).unwrap_or_else(|e| {
            panic!("cannot read {} ({e}): run scripts/dist.sh", path.display())
        });
        let elf = Elf::parse(&bytes);
        let runner = (elf.arch() != std::env::consts::ARCH).then(|| {
            let qemu = format!("qemu-{}", elf.arch());
            which(&qemu).unwrap_or_else(|| {
                panic!(
                    "{} is a {} binary: running it here needs {qemu} (apt-get install qemu-user)",
                    path.display(),
                    elf.arch()
                )
            })
        });
        Dist { path, elf, runner }
    }

    /// The command line that runs the binary: `[qemu-ARCH] BINARY`.
    fn argv(&self) -> Vec<OsString> {
        self.runner
            .iter()
            .chain([&self.path])
            .map(|p| p.clone().into_os_string())
            .collect()
    }

    /// The binary with the suite's clean environment, and no CA location of the developer's.
    fn cmd(&self) -> Command {
        let argv = self.argv();
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..]);
        clean(&mut cmd);
        cmd
    }
}

fn clean(cmd: &mut Command) {
    isolate(cmd);
    cmd.env_remove("SSL_CERT_FILE").env_remove("SSL_CERT_DIR");
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// What the tests read from an ELF file's headers (64-bit little-endian: both shipped targets).
#[derive(Debug)]
struct Elf {
    machine: u16,
    /// A PT_INTERP program header: the file asks for a dynamic loader.
    interpreter: bool,
    /// DT_NEEDED entries: shared libraries it must load.
    needed: usize,
    sections: Vec<String>,
}

const EM_X86_64: u16 = 62;
const EM_AARCH64: u16 = 183;

impl Elf {
    fn parse(b: &[u8]) -> Elf {
        assert!(b.len() >= 64 && b[..4] == *b"\x7fELF", "not an ELF file");
        assert_eq!((b[4], b[5]), (2, 1), "not a 64-bit little-endian ELF file");
        let u16_at = |o: usize| u16::from_le_bytes(b[o..o + 2].try_into().unwrap());
        let u32_at = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap());
        let u64_at = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap()) as usize;
        let (phoff, phentsize, phnum) = (u64_at(32), u16_at(54) as usize, u16_at(56) as usize);
        let (shoff, shentsize, shnum) = (u64_at(40), u16_at(58) as usize, u16_at(60) as usize);
        let mut interpreter = false;
        let mut needed = 0;
        for ph in (0..phnum).map(|i| phoff + i * phentsize) {
            match u32_at(ph) {
                3 => interpreter = true,
                2 => {
                    let (start, size) = (u64_at(ph + 8), u64_at(ph + 32));
                    for entry in (start..start + size).step_by(16) {
                        match u64_at(entry) {
                            0 => break,
                            1 => needed += 1,
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        let section = |i: usize| shoff + i * shentsize;
        let names_at = u64_at(section(u16_at(62) as usize) + 24);
        let sections = (0..shnum)
            .map(|i| {
                let start = names_at + u32_at(section(i)) as usize;
                let end = start + b[start..].iter().position(|&c| c == 0).unwrap();
                String::from_utf8_lossy(&b[start..end]).into_owned()
            })
            .collect();
        Elf {
            machine: u16_at(18),
            interpreter,
            needed,
            sections,
        }
    }

    fn arch(&self) -> &'static str {
        match self.machine {
            EM_X86_64 => "x86_64",
            EM_AARCH64 => "aarch64",
            other => panic!("unexpected ELF machine {other}"),
        }
    }

    fn stripped(&self) -> bool {
        !self
            .sections
            .iter()
            .any(|s| s == ".symtab" || s.starts_with(".debug_"))
    }
}

/// Static, stripped, for the architecture its name says, and its `.sha256` file verifies with
/// `sha256sum -c` from the directory it sits in, as the README and the deploy command use it.
fn assert_shippable(dist: &Dist) {
    let path = &dist.path;
    let name = path.file_name().unwrap().to_str().unwrap();
    let target = name
        .strip_prefix("backlog-mirror-")
        .unwrap_or_else(|| panic!("{name}: not named backlog-mirror-<target>"));
    assert!(
        target.starts_with(&format!("{}-", dist.elf.arch())),
        "{name} is a {} binary",
        dist.elf.arch()
    );
    assert!(
        !dist.elf.interpreter,
        "{name} names a program interpreter: not static"
    );
    assert_eq!(
        dist.elf.needed, 0,
        "{name} needs shared libraries: not static"
    );
    assert!(dist.elf.stripped(), "{name} is not stripped");
    let check = Command::new("sha256sum")
        .args(["-c", &format!("{name}.sha256")])
        .current_dir(path.parent().unwrap())
        .output()
        .expect("sha256sum");
    assert!(
        check.status.success(),
        "sha256sum -c {name}.sha256 failed: {}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
}

#[test]
fn the_binary_is_static_stripped_and_checksummed() {
    assert_shippable(&Dist::from_env());
}

/// The reader above would pass anything if it could not see a dynamic binary: the host build
/// (glibc, unstripped debug) must show the loader, its libraries and its symbol table.
#[test]
fn the_elf_reader_sees_what_makes_a_binary_dynamic() {
    let host = std::fs::read(env!("CARGO_BIN_EXE_backlog-mirror")).unwrap();
    let elf = Elf::parse(&host);
    assert!(elf.interpreter, "{elf:?}");
    assert!(elf.needed > 0, "{elf:?}");
    assert!(!elf.stripped(), "{elf:?}");
    assert_eq!(elf.arch(), std::env::consts::ARCH);
}

/// `backlog-mirror 0.1.0 (abc123def456)` for this checkout's HEAD, `-dirty` when the sources the
/// binary is built from differ from it, `unknown` outside a checkout.
fn expected_version() -> String {
    let dir = env!("CARGO_MANIFEST_DIR");
    let git = |args: &[&str]| {
        let out = Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .env_remove("GIT_DIR")
            .output()
            .expect("git");
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    let commit = match git(&["rev-parse", "--verify", "HEAD^{commit}"]) {
        Some(head) => {
            let dirty = git(&[
                "--no-optional-locks",
                "status",
                "--porcelain",
                "--",
                "src",
                "build.rs",
                "Cargo.toml",
                "Cargo.lock",
            ])
            .is_some_and(|s| !s.is_empty());
            format!("{}{}", &head[..12], if dirty { "-dirty" } else { "" })
        }
        None => "unknown".to_string(),
    };
    format!("backlog-mirror {} ({commit})", env!("CARGO_PKG_VERSION"))
}

#[test]
fn version_names_the_crate_version_and_this_checkouts_commit() {
    let dist = Dist::from_env();
    let out = run(dist.cmd().arg("--version"));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        out.stdout.trim(),
        expected_version(),
        "{} was built from other sources: rebuild it with scripts/dist.sh",
        dist.path.display()
    );
}

#[test]
fn it_mirrors_a_local_repository() {
    let dist = Dist::from_env();
    let sb = Sandbox::new();
    let source = generate_repo(&sb.join("source.git"), &GenSpec::default());
    let target = init_bare(&sb.join("target.git"));
    let mut cmd = dist.cmd();
    cmd.env("HOME", sb.home())
        .args(["sync", "--source"])
        .arg(&source)
        .arg("--target")
        .arg(&target)
        .arg("--cache-dir")
        .arg(sb.cache_dir());
    let out = run(&mut cmd);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains("in sync"), "{}", out.stderr);
    assert_mirror(&source, &target);
    fsck(&target);
}

/// A source repository, a CodeCommit stand-in (TLS with its own CA, SigV4) with an empty `app`.
struct Tls {
    sb: Sandbox,
    source: PathBuf,
    root: PathBuf,
    server: CodeCommitServer,
}

fn tls() -> Tls {
    let sb = Sandbox::new();
    let source = generate_repo(
        &sb.join("source.git"),
        &GenSpec {
            commits: 20,
            ..GenSpec::default()
        },
    );
    let root = sb.join("codecommit");
    init_bare(&root.join("app"));
    let server = CodeCommitServer::start(&root, REGION, &[(AKID, SECRET, None)], 0);
    Tls {
        sb,
        source,
        root,
        server,
    }
}

impl Tls {
    /// `sync` to `codecommit::REGION://app` through libgit2 (OpenSSL compiled in), never git's
    /// CLI (its own TLS library would prove nothing here), with `env` added.
    fn sync(&self, cmd: Command, env: &[(&str, &OsString)]) -> Run {
        self.sync_with("libgit2", cmd, env)
    }

    /// As `sync`, pushing with `engine` (`wire`: our own client, TLS through rustls with the
    /// roots the same probe finds).
    fn sync_with(&self, engine: &str, mut cmd: Command, env: &[(&str, &OsString)]) -> Run {
        cmd.env("HOME", self.sb.home())
            .env("CODE_COMMIT_ENDPOINT", self.server.endpoint())
            .env("AWS_ACCESS_KEY_ID", AKID)
            .env("AWS_SECRET_ACCESS_KEY", SECRET)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .args(["sync", "--push-engine", engine, "--json", "--source"])
            .arg(&self.source)
            .args(["--target", &format!("codecommit::{REGION}://app")])
            .arg("--cache-dir")
            .arg(self.sb.cache_dir());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = run(&mut cmd);
        assert_no_secret(&out, &[SECRET]);
        out
    }

    fn target(&self) -> PathBuf {
        self.root.join("app")
    }

    fn assert_refused(&self, out: &Run, why: &str) {
        assert_eq!(out.code, 1, "{why}: {}", out.stderr);
        let error = out.only_error();
        // libgit2's words, or this tool's own client's (which lists the target first).
        assert!(
            error.contains("SSL certificate is invalid")
                || (error.contains("TLS with") && error.contains("certificate"))
                || error.contains("no trusted TLS root certificates found"),
            "{why}: {error}"
        );
        assert!(refs(&self.target()).is_empty(), "{why}: the target changed");
        assert!(
            self.server.requests().is_empty(),
            "{why}: a request got past the TLS handshake: {:?}",
            self.server.requests()
        );
    }
}

#[test]
fn https_trusts_the_ca_named_by_ssl_cert_file() {
    let dist = Dist::from_env();
    let fx = tls();
    let out = fx.sync(
        dist.cmd(),
        &[("SSL_CERT_FILE", &fx.server.ca.clone().into())],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_mirror(&fx.source, &fx.target());
}

#[test]
fn https_refuses_a_server_whose_ca_is_not_trusted() {
    let dist = Dist::from_env();
    let fx = tls();
    // The machine's own CA bundle, found by the probe: real CAs, not the test's.
    let out = fx.sync(dist.cmd(), &[]);
    fx.assert_refused(&out, "system CAs only");
    // A CA file that exists but holds another CA.
    let other = other_ca(&fx.sb);
    let out = fx.sync(dist.cmd(), &[("SSL_CERT_FILE", &other.into_os_string())]);
    fx.assert_refused(&out, "another CA in SSL_CERT_FILE");
}

/// Where the CA bundle lives on the images the binary runs on; `None` for a link target means a
/// file with the CA, otherwise a symbolic link to that path.
type Layout = &'static [(&'static str, Option<&'static str>)];

/// Amazon Linux 2023 (CodeBuild's standard images), as its ca-certificates package lays it out.
const AMAZON_LINUX_2023: Layout = &[
    ("pki/ca-trust/extracted/pem/tls-ca-bundle.pem", None),
    (
        "pki/tls/certs/ca-bundle.crt",
        Some("/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem"),
    ),
    (
        "pki/tls/cert.pem",
        Some("/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem"),
    ),
    ("ssl/certs", Some("/etc/pki/tls/certs")),
];
/// Only the RHEL-family path `/etc/pki/tls/certs/ca-bundle.crt`, which Amazon Linux 2 has too.
const PKI_TLS_ONLY: Layout = &[("pki/tls/certs/ca-bundle.crt", None)];
/// Debian and Ubuntu (ca-certificates). With the openssl package, /usr/lib/ssl links here too.
const DEBIAN: Layout = &[("ssl/certs/ca-certificates.crt", None)];

/// Directories outside /etc where the probe looks (openssl-probe's list) and a host keeps its
/// own CAs; hidden so the binary can only find what the layout under test puts in /etc.
const HOST_CA_DIRS: [&str; 9] = [
    "/var/ssl",
    "/usr/share/ssl",
    "/usr/local/ssl",
    "/usr/local/openssl",
    "/usr/local/etc/openssl",
    "/usr/local/share",
    "/usr/lib/ssl",
    "/usr/ssl",
    "/opt/etc/ssl",
];

/// The binary in a private mount namespace whose /etc holds only `layout` (with `ca` at each
/// file) and where the host's other CA directories are empty.
fn with_etc(dist: &Dist, sb: &Sandbox, name: &str, layout: Layout, ca: &Path) -> Command {
    let etc = sb.join(&format!("etc-{name}"));
    let empty = sb.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    std::fs::create_dir_all(&etc).unwrap();
    for (path, link) in layout {
        let at = etc.join(path);
        std::fs::create_dir_all(at.parent().unwrap()).unwrap();
        match link {
            None => {
                std::fs::copy(ca, &at).unwrap();
            }
            Some(to) => std::os::unix::fs::symlink(to, &at).unwrap(),
        }
    }
    let mut script = String::from("set -e; mount --bind \"$ETC\" /etc; ");
    for dir in HOST_CA_DIRS.iter().filter(|d| Path::new(d).is_dir()) {
        script.push_str(&format!("mount --bind \"$EMPTY\" {dir}; "));
    }
    script.push_str("exec \"$@\"");
    let mut cmd = Command::new("unshare");
    // root (CI) needs only a mount namespace; anyone else maps to root in a user namespace.
    if !is_root() {
        cmd.arg("--map-root-user");
    }
    cmd.args([
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        &script,
        "sh",
    ])
    .args(dist.argv())
    .env("ETC", &etc)
    .env("EMPTY", &empty);
    clean(&mut cmd);
    cmd
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

#[test]
fn https_finds_the_ca_bundle_where_amazon_linux_and_debian_keep_it() {
    let dist = Dist::from_env();
    let probe = Command::new("unshare")
        .args(if is_root() {
            &[][..]
        } else {
            &["--map-root-user"][..]
        })
        .args(["--mount", "true"])
        .output()
        .expect("unshare (util-linux)");
    assert!(
        probe.status.success(),
        "cannot make a mount namespace ({}): run as root, or allow unprivileged user namespaces \
         (Ubuntu: sysctl kernel.apparmor_restrict_unprivileged_userns=0)",
        String::from_utf8_lossy(&probe.stderr).trim()
    );
    for (name, layout) in [
        ("amazon-linux-2023", AMAZON_LINUX_2023),
        ("pki-tls-only", PKI_TLS_ONLY),
        ("debian", DEBIAN),
    ] {
        for engine in ["libgit2", "wire"] {
            let fx = tls();
            let cmd = with_etc(&dist, &fx.sb, name, layout, &fx.server.ca);
            let out = fx.sync_with(engine, cmd, &[]);
            assert_eq!(out.code, 0, "{name}, {engine}: {}", out.stderr);
            assert_mirror(&fx.source, &fx.target());
            // Our own client's first mirror relays the source's pack (through the same TLS).
            let pushed = if engine == "wire" { "relay" } else { engine };
            assert_eq!(out.json()["transfer"]["push"]["engine"], pushed, "{name}");
        }
    }
    // The same namespace with no CA anywhere: the successes above came from the layouts.
    let fx = tls();
    let cmd = with_etc(&dist, &fx.sb, "none", &[], &fx.server.ca);
    let out = fx.sync(cmd, &[]);
    fx.assert_refused(&out, "no CA bundle anywhere");
}

/// The aarch64 binary (the default architecture on AWS) when scripts/dist.sh built it here; CI
/// builds only x86_64. Run under qemu-aarch64 when that is installed.
#[test]
fn the_aarch64_binary_when_built_is_static_and_runs() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/dist")
        .join(format!("backlog-mirror-{AARCH64}"));
    if !path.exists() {
        eprintln!(
            "{} not built: `scripts/dist.sh --target {AARCH64}`",
            path.display()
        );
        return;
    }
    let bytes = std::fs::read(&path).unwrap();
    let elf = Elf::parse(&bytes);
    assert_eq!(elf.machine, EM_AARCH64, "{} is not AArch64", path.display());
    if std::env::consts::ARCH != "aarch64" && which("qemu-aarch64").is_none() {
        let dist = Dist {
            path,
            elf,
            runner: None,
        };
        assert_shippable(&dist);
        eprintln!("qemu-aarch64 not installed: the aarch64 binary was checked but not run");
        return;
    }
    let dist = Dist::at(path);
    assert_shippable(&dist);
    let out = run(dist.cmd().arg("--version"));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let want = format!("backlog-mirror {} (", env!("CARGO_PKG_VERSION"));
    assert!(out.stdout.starts_with(&want), "{}", out.stdout);
}

/// A CA of its own (openssl CLI) that signed nothing the tests serve.
fn other_ca(sb: &Sandbox) -> PathBuf {
    let (cert, key) = (sb.join("other-ca.crt"), sb.join("other-ca.key"));
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args([
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=not the test CA",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl (installed by scripts/install-deps.sh)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    cert
}
