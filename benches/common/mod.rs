//! What the benchmarks share: generated scenarios and watch lists, the
//! simulator as a separate process, a bare SDK client, process CPU and RSS
//! from /proc, and the command line. Each bench uses its own part.

#![allow(dead_code)]

pub mod heap;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_sdk_bedrockagentruntime::Client;
use aws_sdk_bedrockagentruntime::config::{BehaviorVersion, Region};
use aws_smithy_types::retry::RetryConfig;
use aws_smithy_types::timeout::TimeoutConfig;

use std::sync::Arc;

use flowwatch::daemon::Edges;
use flowwatch::service::http::Health;
use flowwatch::service::metrics::Metrics;
use flowwatch::service::notify::Notifier;
use flowwatch::simulate::Scenario;
use flowwatch::state::Snapshot;

pub const FLOW: &str = "FLOWBENCH1";
pub const ALIAS: &str = "ALIASBENCH";

/// A scenario of `count` executions that stay `Running` for the whole bench
/// (they end 40 days in), with an optional server quota.
pub fn running_scenario(count: usize, quota: Option<f64>) -> String {
    running_scenario_with(count, quota, "")
}

/// `running_scenario` with more top-level lines (e.g. `quota_schedule`).
pub fn running_scenario_with(count: usize, quota: Option<f64>, more: &str) -> String {
    let quota = quota.map_or(String::new(), |q| format!("quota = {q:?}\n{more}"));
    format!(
        "seed = 1\n{quota}\n[[generate]]\ncount = {count}\nid_prefix = \"bench-\"\nflow = \"{FLOW}\"\nalias = \"{ALIAS}\"\nend_between = [\"40d\", \"41d\"]\n"
    )
}

/// The execution ids a scenario from `running_scenario` serves, in order.
pub fn execution_ids(scenario: &Scenario) -> Vec<String> {
    (0..scenario.len())
        .map(|i| scenario.nth(i).expect("index below len").id().into_owned())
        .collect()
}

/// The execution ARNs a scenario serves, in order.
pub fn execution_arns(scenario: &Scenario) -> Vec<String> {
    (0..scenario.len())
        .map(|i| scenario.execution_arn(&scenario.nth(i).expect("index below len")))
        .collect()
}

/// A flowwatch config: `[aws]` aimed at `endpoint`, the given `[poll]` lines,
/// events at info, and one `[[watch]]` per ARN (with `labels` when given).
pub fn config_text(endpoint: &str, poll: &str, arns: &[String], labels: Option<&str>) -> String {
    let mut text = format!(
        "[aws]\nregion = \"us-east-1\"\nendpoint_url = \"{endpoint}\"\n\n[poll]\n{poll}\n\n[log]\nformat = \"json\"\nlevel = \"info\"\n"
    );
    for arn in arns {
        text.push_str("\n[[watch]]\nexecution_arn = \"");
        text.push_str(arn);
        text.push_str("\"\n");
        if let Some(labels) = labels {
            text.push_str("labels = ");
            text.push_str(labels);
            text.push('\n');
        }
    }
    text
}

/// Sends every contract event to `io::sink` through the real formatter, so
/// formatting is paid for but printing does not dominate.
pub fn events_to_sink() {
    let settings = flowwatch::config::LogSettings::default();
    tracing::subscriber::set_global_default(flowwatch::event::subscriber(&settings, std::io::sink))
        .expect("the bench installs the subscriber once");
}

pub fn credentials() -> SharedCredentialsProvider {
    SharedCredentialsProvider::new(Credentials::new(
        "AKIDFLOWWATCHBENCH",
        "flowwatch-bench-secret",
        None,
        None,
        "bench",
    ))
}

/// A bare SDK client for `endpoint` with the daemon's timeouts and the given
/// retry mode. The SDK keeps adaptive-mode and retry-quota state per process,
/// keyed by service and region: give each baseline run its own `region`.
pub fn sdk_client(endpoint: &str, region: &str, retry: RetryConfig) -> Client {
    let timeouts = TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(10))
        .operation_attempt_timeout(Duration::from_secs(10))
        .build();
    let config = aws_sdk_bedrockagentruntime::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(region.to_string()))
        .endpoint_url(endpoint)
        .credentials_provider(credentials())
        .timeout_config(timeouts)
        .retry_config(retry)
        .build();
    Client::from_conf(config)
}

/// `flowwatch simulate` in its own process, so its CPU is not the bench's.
/// Killed on drop.
pub struct SimProcess {
    child: Child,
    pub endpoint: String,
    _dir: tempfile::TempDir,
}

impl SimProcess {
    pub fn spawn(scenario: &str) -> SimProcess {
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join("scenario.toml");
        std::fs::write(&path, scenario).expect("write the scenario");
        // Cargo builds the binary targets for benches and names them here.
        let mut child = Command::new(env!("CARGO_BIN_EXE_flowwatch"))
            .args(["simulate", "--listen", "127.0.0.1:0", "--scenario"])
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start flowwatch simulate");
        let stderr = child.stderr.take().expect("stderr is piped");
        let mut lines = BufReader::new(stderr).lines();
        let endpoint = loop {
            match lines.next() {
                Some(Ok(line)) => {
                    if let Some(url) = line.strip_prefix("simulator listening on ") {
                        break url.to_string();
                    }
                }
                _ => {
                    let _ = child.kill();
                    panic!("flowwatch simulate ended before it listened");
                }
            }
        };
        // Keep draining stderr so the simulator never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        SimProcess {
            child,
            endpoint,
            _dir: dir,
        }
    }

    /// The simulator process's CPU time so far.
    pub fn cpu(&self) -> Duration {
        cpu_of(&format!("/proc/{}/stat", self.child.id()))
    }
}

impl Drop for SimProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// User + system CPU time of this process, all threads (exited ones too).
/// /proc ticks are 1/100 s (USER_HZ on Linux), so runs of seconds keep the
/// error under 1 %.
pub fn process_cpu() -> Duration {
    cpu_of("/proc/self/stat")
}

fn cpu_of(stat: &str) -> Duration {
    let text = std::fs::read_to_string(stat).expect("/proc/PID/stat is readable");
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &text[text.rfind(')').expect("stat has a command name") + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15; `rest` starts at field 3.
    let ticks: u64 =
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    Duration::from_millis(ticks * 10)
}

/// `(VmRSS, VmHWM)` of this process in bytes.
pub fn rss() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// `--name VALUE` from the command line (cargo adds `--bench`, ignored), else
/// the environment variable `NAME` in upper case, else `default`.
pub fn arg<T: std::str::FromStr>(name: &str, default: T) -> T {
    let args: Vec<String> = std::env::args().collect();
    let flag = format!("--{name}");
    let from_args = args
        .iter()
        .position(|a| *a == flag)
        .and_then(|i| args.get(i + 1))
        .cloned();
    let from_env = || std::env::var(name.to_uppercase().replace('-', "_")).ok();
    match from_args.or_else(from_env) {
        Some(text) => text
            .parse()
            .unwrap_or_else(|_| panic!("--{name}: cannot parse {text:?}")),
        None => default,
    }
}

/// A comma-separated list argument, as `arg`.
pub fn list_arg(name: &str, default: &str) -> Vec<f64> {
    arg::<String>(name, default.to_string())
        .split(',')
        .map(|v| {
            v.trim()
                .parse()
                .unwrap_or_else(|_| panic!("--{name}: {v:?}"))
        })
        .collect()
}

/// A daemon's edges for a bench: no state, no file watching, no sd_notify,
/// fresh metrics (pass your own to read them).
pub fn edges(metrics: Arc<Metrics>) -> Edges {
    Edges {
        default_region: None,
        state: None,
        restored: Snapshot::default(),
        metrics,
        health: Arc::new(Health::new()),
        notifier: Notifier::disabled(),
        files: None,
        once: false,
    }
}
