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

use crate::harness::{dest, require_tool, Env};

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

/// moto's S3 server (scripts/install-test-deps installs it, pinned, in a venv of its own): the
/// one here with bucket versioning and object lock. It does not check signatures.
pub struct MotoServer {
    pub port: u16,
    child: Child,
}

const MOTO: &str = "/var/cache/litevault-tools/moto/bin";

impl MotoServer {
    pub fn start() -> MotoServer {
        let bin = Path::new(MOTO).join("moto_server");
        assert!(
            bin.is_file(),
            "{} is missing: run scripts/test (scripts/install-test-deps installs moto)",
            bin.display()
        );
        let port = free_port();
        let mut child = Command::new(bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting moto_server");
        wait_for_port(port, &mut child, "moto_server");
        MotoServer { port, child }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Run `script` (Python, with `s3` a boto3 client of this server) in moto's venv.
    pub fn boto3(&self, script: &str) -> String {
        let program = format!(
            "import boto3, json\ns3 = boto3.client('s3', endpoint_url='{}', aws_access_key_id='k', aws_secret_access_key='s', region_name='us-east-1')\n{script}",
            self.endpoint()
        );
        let out = Command::new(Path::new(MOTO).join("python"))
            .arg("-c")
            .arg(&program)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "boto3 failed:\n{program}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A bucket with object lock and a default retention of `days` in governance mode (which
    /// turns versioning on): what is deleted stays as an older version for that long.
    pub fn locked_bucket(&self, bucket: &str, days: u32) {
        self.boto3(&format!(
            "s3.create_bucket(Bucket='{bucket}', ObjectLockEnabledForBucket=True)\n\
             s3.put_object_lock_configuration(Bucket='{bucket}', ObjectLockConfiguration={{'ObjectLockEnabled': 'Enabled', 'Rule': {{'DefaultRetention': {{'Mode': 'GOVERNANCE', 'Days': {days}}}}}}})"
        ));
    }

    /// Every version of every object under `prefix`: (key, is the current one, is a delete marker).
    pub fn versions(&self, bucket: &str, prefix: &str) -> Vec<(String, bool, bool)> {
        let text = self.boto3(&format!(
            "r = s3.list_object_versions(Bucket='{bucket}', Prefix='{prefix}')\n\
             out = [(v['Key'], v['IsLatest'], False) for v in r.get('Versions', [])]\n\
             out += [(m['Key'], m['IsLatest'], True) for m in r.get('DeleteMarkers', [])]\n\
             print(json.dumps(out))"
        ));
        serde_json::from_str(&text).unwrap()
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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

/// An environment whose one destination, `name`, is the prefix `backups` of bucket `bkt` at
/// `endpoint` (an S3 server, or a proxy in front of one), with the test credentials.
pub fn env_on_s3(name: &str, endpoint: &str) -> Env {
    let mut env = Env::new();
    env.destinations = vec![dest(
        name,
        &format!("s3://bkt/backups?endpoint={endpoint}&region=us-east-1"),
    )];
    env.vars = vec![
        ("AWS_ACCESS_KEY_ID".into(), S3_ACCESS_KEY.into()),
        ("AWS_SECRET_ACCESS_KEY".into(), S3_SECRET_KEY.into()),
    ];
    env
}
