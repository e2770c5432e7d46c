//! A real etcd (Debian's `etcd-server`) for the `[ha]` tests: started on free
//! loopback ports with a temporary data directory, killed when dropped.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct Etcd {
    child: Child,
    /// `http://127.0.0.1:PORT`, for `[ha] endpoints`.
    pub endpoint: String,
    _data: tempfile::TempDir,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

impl Etcd {
    /// Starts etcd and returns once it answers requests. Without an `etcd`
    /// on PATH the test is skipped with a note (a fresh machine passes
    /// `cargo test`), except under CI, where .ci/run installs it and a
    /// missing etcd is a failure.
    pub async fn start() -> Option<Etcd> {
        if Command::new("etcd").arg("--version").output().is_err() {
            assert!(
                std::env::var_os("CI").is_none(),
                "etcd is missing under CI (.ci/run installs etcd-server)"
            );
            eprintln!("skipped: no etcd on PATH (apt-get install etcd-server)");
            return None;
        }
        let data = tempfile::tempdir().expect("a temp dir for etcd");
        let client = format!("http://127.0.0.1:{}", free_port());
        let peer = format!("http://127.0.0.1:{}", free_port());
        let child = Command::new("etcd")
            .args(["--name", "flowwatch-test"])
            .arg("--data-dir")
            .arg(data.path())
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("flowwatch-test={peer}")])
            .args(["--logger", "zap", "--log-level", "error"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("etcd starts (apt-get install etcd-server; .ci/run does)");
        let etcd = Etcd {
            child,
            endpoint: client,
            _data: data,
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let ready = async {
                let mut c = etcd_client::Client::connect([&etcd.endpoint], None).await?;
                c.get("probe", None).await
            };
            if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(2), ready).await {
                return Some(etcd);
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "etcd did not answer on {} within 30s",
                etcd.endpoint
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
