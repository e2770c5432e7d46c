//! Shared test support: the simulator in-process on 127.0.0.1:0, the real
//! `flowwatch` binary against it, and its stdout read back as JSON events.

#![allow(dead_code)] // each test module uses its own part of this

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;

use flowwatch::simulate::{Scenario, Simulator};

/// A simulator serving `scenario` (TOML text) on a free loopback port.
pub async fn simulator(scenario: &str) -> Simulator {
    let scenario = Scenario::parse(scenario).expect("the test's scenario parses");
    Simulator::spawn(scenario, "127.0.0.1:0".parse().unwrap())
        .await
        .expect("the simulator binds a loopback port")
}

/// Fast polling for tests: intervals in milliseconds, on the real clock.
pub fn fast_poll() -> &'static str {
    r#"
[poll]
interval_initial = "20ms"
interval_max = "100ms"
multiplier = 2.0
jitter = 0.0
rate_limit = 200.0
request_timeout = "2s"
not_found_grace = "300ms"
"#
}

/// A config file in a fresh temp dir: `[aws]` aimed at the simulator, the
/// given extra TOML (tables and watches) appended.
pub struct TestConfig {
    pub dir: tempfile::TempDir,
    pub path: PathBuf,
}

impl TestConfig {
    pub fn new(endpoint_url: &str, body: &str) -> TestConfig {
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join("flowwatch.toml");
        let text = format!(
            "[aws]\nregion = \"us-east-1\"\nendpoint_url = \"{endpoint_url}\"\n\n[log]\nformat = \"json\"\nlevel = \"info\"\n{body}"
        );
        std::fs::write(&path, text).expect("write the test config");
        TestConfig { dir, path }
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&path, text).unwrap();
        path
    }
}

/// The real binary with credentials and a region from the environment only
/// (no profile files, no IMDS), as an operator's would be.
pub fn flowwatch(config: &Path, args: &[&str]) -> Command {
    let mut command = flowwatch_without_config(args);
    command.arg("--config").arg(config);
    command
}

/// What a finished run printed.
pub struct Run {
    pub exit_code: i32,
    pub stderr: String,
    pub events: Events,
}

/// Runs `flowwatch run --once` to the end (with a generous safety timeout).
pub async fn run_once(config: &Path) -> Run {
    run_to_end(flowwatch(config, &["run", "--once"])).await
}

pub async fn run_to_end(mut command: Command) -> Run {
    let output = tokio::task::spawn_blocking(move || {
        let child = command.spawn().expect("the flowwatch binary starts");
        wait_with_timeout(child, Duration::from_secs(60))
    })
    .await
    .expect("the waiting thread finishes");
    Run::from(output)
}

fn wait_with_timeout(mut child: std::process::Child, limit: Duration) -> Output {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if child.try_wait().expect("try_wait").is_some() {
            return child.wait_with_output().expect("collect output");
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let output = child.wait_with_output().expect("collect output");
            panic!(
                "flowwatch did not finish within {limit:?}; stdout:\n{}\nstderr:\n{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl From<Output> for Run {
    fn from(output: Output) -> Run {
        Run {
            exit_code: output.status.code().unwrap_or(-1),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            events: Events::parse(&String::from_utf8_lossy(&output.stdout)),
        }
    }
}

/// Event lines, parsed; any line that is not a JSON object fails the test.
#[derive(Debug, Clone)]
pub struct Events(pub Vec<Value>);

impl Events {
    pub fn parse(stdout: &str) -> Events {
        Events(
            stdout
                .lines()
                .filter(|line| !line.trim().is_empty())
                .map(|line| {
                    let value: Value = serde_json::from_str(line)
                        .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
                    assert!(value.is_object(), "not a JSON object: {line}");
                    value
                })
                .collect(),
        )
    }

    /// Every event with this name, in order.
    pub fn named(&self, name: &str) -> Vec<&Value> {
        self.0.iter().filter(|e| e["event"] == name).collect()
    }

    /// The one event with this name matching `pred`; fails if none or several.
    pub fn one(&self, name: &str, pred: impl Fn(&Value) -> bool) -> &Value {
        let found: Vec<&Value> = self.named(name).into_iter().filter(|e| pred(e)).collect();
        assert_eq!(
            found.len(),
            1,
            "expected one {name} matching, got {}: {self}",
            found.len()
        );
        found[0]
    }

    pub fn names(&self) -> Vec<&str> {
        self.0
            .iter()
            .map(|e| e["event"].as_str().unwrap_or("?"))
            .collect()
    }

    /// The transitions of one execution id, as `to` strings, in order.
    pub fn transitions_of(&self, execution: &str) -> Vec<String> {
        self.named("execution.transition")
            .into_iter()
            .filter(|e| e["execution"] == execution)
            .map(|e| e["to"].as_str().unwrap_or("?").to_string())
            .collect()
    }
}

impl std::fmt::Display for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for event in &self.0 {
            writeln!(f, "{event}")?;
        }
        Ok(())
    }
}

#[path = "../../../src/event/capture.rs"]
pub mod capture;
#[cfg(feature = "etcd")]
pub mod etcd;
#[cfg(feature = "kubernetes")]
pub mod kube;
pub mod scripted;

/// The real binary as `flowwatch` builds it, without `--config` (so it falls
/// back to `$FLOWWATCH_CONFIG`), with the same environment-only AWS setup.
pub fn flowwatch_without_config(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_flowwatch"));
    command
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("AWS_ACCESS_KEY_ID", "AKIDFLOWWATCHTEST")
        .env("AWS_SECRET_ACCESS_KEY", "flowwatch-test-secret")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", "/nonexistent/flowwatch-test/config")
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            "/nonexistent/flowwatch-test/credentials",
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// The real binary running as a child (not `--once`): its stdout is read as
/// it comes, so a test can wait for events, signal it, and stop it. Dropping
/// it kills the child, so a failing test leaves no process behind.
pub struct Spawned {
    child: Option<std::process::Child>,
    stdout: Collected,
    stderr: Collected,
}

/// A pipe read to its end on a thread.
struct Collected {
    bytes: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Collected {
    fn start(mut pipe: impl std::io::Read + Send + 'static) -> Collected {
        let bytes = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = std::sync::Arc::clone(&bytes);
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while let Ok(n @ 1..) = pipe.read(&mut buf) {
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Collected {
            bytes,
            reader: Some(reader),
        }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes.lock().unwrap()).into_owned()
    }

    /// Waits for end-of-file (the child has exited).
    fn finish(&mut self) {
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

impl Spawned {
    pub fn start(mut command: Command) -> Spawned {
        let mut child = command.spawn().expect("the flowwatch binary starts");
        let stdout = Collected::start(child.stdout.take().expect("stdout is piped"));
        let stderr = Collected::start(child.stderr.take().expect("stderr is piped"));
        Spawned {
            child: Some(child),
            stdout,
            stderr,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("the child runs").id()
    }

    /// Every complete event line printed so far.
    pub fn events(&self) -> Events {
        let text = self.stdout.text();
        let complete = text.rfind('\n').map_or("", |end| &text[..end]);
        Events::parse(complete)
    }

    pub fn stderr(&self) -> String {
        self.stderr.text()
    }

    /// Sends a signal by name (`HUP`, `TERM`, `KILL`) with kill(1).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .expect("kill(1) runs");
        assert!(status.success(), "kill -{name} failed");
    }

    /// Waits (up to `limit`) until `done` holds for the events so far and
    /// returns them; fails with everything seen when it never does.
    pub async fn wait_for(
        &self,
        what: &str,
        limit: Duration,
        done: impl Fn(&Events) -> bool,
    ) -> Events {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let events = self.events();
            if done(&events) {
                return events;
            }
            if tokio::time::Instant::now() > deadline {
                panic!(
                    "waited {limit:?} for {what}; events:\n{events}\nstderr:\n{}",
                    self.stderr()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits (up to `limit`) for the child to exit on its own (after a
    /// signal, say) and returns what it printed.
    pub async fn wait_exit(mut self, limit: Duration) -> Run {
        let mut child = self.child.take().expect("the child runs");
        let deadline = tokio::time::Instant::now() + limit;
        let status = loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                break status;
            }
            if tokio::time::Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "flowwatch did not exit within {limit:?}; events:\n{}\nstderr:\n{}",
                    self.events(),
                    self.stderr()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        self.stdout.finish();
        self.stderr.finish();
        Run {
            exit_code: status.code().unwrap_or(-1),
            stderr: self.stderr(),
            events: self.events(),
        }
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `[[watch]]` tables for executions `{prefix}1`..`{prefix}{n}` (flow
/// `FLOW123456`, alias `ALIAS12345`), by parts.
pub fn watches_by_parts(prefix: &str, n: usize) -> String {
    (1..=n)
        .map(|i| {
            format!(
                "[[watch]]\nflow = \"FLOW123456\"\nalias = \"ALIAS12345\"\nexecution = \"{prefix}{i}\"\n\n"
            )
        })
        .collect()
}
