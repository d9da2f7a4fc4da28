//! Real servers on 127.0.0.1, started and stopped by the tests: an S3 server that checks SigV4
//! signatures (s3s-fs) and an OpenSSH sshd with its own config, host key and authorized key.
//! A missing server binary fails the test with what to install; nothing is skipped.

use std::fs;
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::harness::require_tool;

pub const S3_ACCESS_KEY: &str = "litevault-test-key";
pub const S3_SECRET_KEY: &str = "litevault-test-secret-0123456789";

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_for_port(port: u16, child: &mut Child, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("{what} exited at start: {status}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{what} did not listen on 127.0.0.1:{port} within 15s");
}

fn s3s_fs_binary() -> PathBuf {
    if let Ok(p) = std::env::var("LITEVAULT_S3S_FS") {
        return PathBuf::from(p);
    }
    let cached = Path::new("/var/cache/litevault-tools/bin/s3s-fs");
    if cached.is_file() {
        return cached.to_path_buf();
    }
    require_tool("s3s-fs")
}

/// An s3s-fs server; each bucket is a folder under `root`.
pub struct S3Server {
    pub port: u16,
    child: Child,
}

impl S3Server {
    pub fn start(root: &Path, buckets: &[&str]) -> S3Server {
        for b in buckets {
            fs::create_dir_all(root.join(b)).unwrap();
        }
        let port = free_port();
        let mut child = Command::new(s3s_fs_binary())
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", S3_ACCESS_KEY, "--secret-key", S3_SECRET_KEY])
            .arg(root)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting s3s-fs (scripts/install-test-deps installs it)");
        wait_for_port(port, &mut child, "s3s-fs");
        S3Server { port, child }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Edits of the ssh client's known_hosts are serialised: tests run in parallel.
static KNOWN_HOSTS: Mutex<()> = Mutex::new(());

/// The known_hosts file of the tests' ssh client (see `harness::ssh_client`), never the
/// user's own.
pub fn known_hosts_path() -> PathBuf {
    crate::harness::ssh_client().1.clone()
}

fn uid() -> u32 {
    use std::os::unix::fs::MetadataExt;
    fs::metadata("/proc/self").unwrap().uid()
}

/// A private sshd on 127.0.0.1 for the current user, with a fresh host key and client key.
pub struct SshServer {
    pub port: u16,
    pub dir: PathBuf,
    pub client_key: PathBuf,
    pub user: String,
    host_line: Option<String>,
    child: Child,
}

impl SshServer {
    pub fn start(dir: &Path) -> SshServer {
        SshServer::start_with(dir, "internal-sftp")
    }

    /// An sshd whose SFTP subsystem is `subsystem` (e.g. `internal-sftp -P remove,rmdir`, an
    /// account that cannot delete).
    pub fn start_with(dir: &Path, subsystem: &str) -> SshServer {
        let sshd = Path::new("/usr/sbin/sshd");
        assert!(
            sshd.is_file(),
            "sshd is not installed; run scripts/install-test-deps (openssh-server)"
        );
        let keygen = require_tool("ssh-keygen");
        fs::create_dir_all(dir).unwrap();
        // sshd insists on its privilege-separation folder.
        fs::create_dir_all("/run/sshd").unwrap();
        for (name, comment) in [("host_key", "host"), ("client_key", "client")] {
            let out = Command::new(&keygen)
                .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
                .arg(dir.join(name))
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "ssh-keygen: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        fs::copy(dir.join("client_key.pub"), dir.join("authorized_keys")).unwrap();
        let port = free_port();
        let user = whoami();
        let config = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {dir}/host_key\nAuthorizedKeysFile {dir}/authorized_keys\n\
             PidFile {dir}/sshd.pid\nUsePAM no\nStrictModes no\nPasswordAuthentication no\n\
             KbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\nAllowUsers {user}\n\
             Subsystem sftp {subsystem}\nLogLevel ERROR\n",
            dir = dir.display()
        );
        fs::write(dir.join("sshd_config"), config).unwrap();
        let mut child = Command::new(sshd)
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(dir.join("sshd_config"))
            .stdout(Stdio::null())
            .stderr(fs::File::create(dir.join("sshd.log")).unwrap())
            .spawn()
            .unwrap();
        wait_for_port(port, &mut child, "sshd");
        SshServer {
            port,
            dir: dir.to_path_buf(),
            client_key: dir.join("client_key"),
            user,
            host_line: None,
            child,
        }
    }

    /// Make the ssh client trust this server's host key, as `ssh-keyscan >> known_hosts` would.
    pub fn trust(&mut self) {
        let key = fs::read_to_string(self.dir.join("host_key.pub")).unwrap();
        let mut fields = key.split_whitespace();
        let line = format!(
            "[127.0.0.1]:{} {} {}",
            self.port,
            fields.next().unwrap(),
            fields.next().unwrap()
        );
        let _guard = KNOWN_HOSTS.lock().unwrap_or_else(|e| e.into_inner());
        let path = known_hosts_path();
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        let mut f = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap();
        writeln!(f, "{line}").unwrap();
        self.host_line = Some(line);
    }

    /// Forget this server in known_hosts, hashed entries (what accept-new adds) included.
    fn untrust(&mut self) {
        let _guard = KNOWN_HOSTS.lock().unwrap_or_else(|e| e.into_inner());
        let path = known_hosts_path();
        if path.exists() {
            let _ = Command::new("ssh-keygen")
                .arg("-R")
                .arg(format!("[127.0.0.1]:{}", self.port))
                .arg("-f")
                .arg(&path)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            let _ = fs::remove_file(path.with_extension("old"));
        }
        self.host_line = None;
    }

    pub fn url(&self, path: &Path) -> String {
        format!(
            "sftp://{}@127.0.0.1:{}{}",
            self.user,
            self.port,
            path.display()
        )
    }

    pub fn stop(&mut self) {
        // Per-connection children start sessions of their own; end them first, so that ssh
        // clients still connected (a killed run's master) see the connection close and exit.
        let _ = Command::new("pkill")
            .arg("-TERM")
            .arg("-P")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for SshServer {
    fn drop(&mut self) {
        self.stop();
        self.untrust();
    }
}

fn whoami() -> String {
    let uid = uid();
    fs::read_to_string("/etc/passwd")
        .unwrap()
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() > 2 && f[2].parse::<u32>().ok() == Some(uid)).then(|| f[0].to_string())
        })
        .unwrap()
}

/// This server's host key trusted in known_hosts at another port of 127.0.0.1 too (a proxy in
/// front of it), until dropped.
pub struct HostKeyAlias {
    port: u16,
}

impl SshServer {
    /// Trust this server's host key when reached through 127.0.0.1:`port`.
    pub fn trust_at(&self, port: u16) -> HostKeyAlias {
        let key = fs::read_to_string(self.dir.join("host_key.pub")).unwrap();
        let mut fields = key.split_whitespace();
        let line = format!(
            "[127.0.0.1]:{port} {} {}",
            fields.next().unwrap(),
            fields.next().unwrap()
        );
        let _guard = KNOWN_HOSTS.lock().unwrap_or_else(|e| e.into_inner());
        let path = known_hosts_path();
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        let mut f = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap();
        writeln!(f, "{line}").unwrap();
        HostKeyAlias { port }
    }
}

impl Drop for HostKeyAlias {
    fn drop(&mut self) {
        let _guard = KNOWN_HOSTS.lock().unwrap_or_else(|e| e.into_inner());
        let path = known_hosts_path();
        if path.exists() {
            let _ = Command::new("ssh-keygen")
                .arg("-R")
                .arg(format!("[127.0.0.1]:{}", self.port))
                .arg("-f")
                .arg(&path)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            let _ = fs::remove_file(path.with_extension("old"));
        }
    }
}
