//! Waiters at scale (issue 10): 1,000 long polls
//! (`GET /v1/watches/{id}?wait=5m&since=Running`) and 1,000 event-stream
//! clients (`GET /v1/events`) open at once against the daemon (`run::start`
//! with `[http]`, in this process) watching executions on `flowwatch
//! simulate` (another process). Every execution is `Running` from the start
//! and `Succeeded` at its own offset, 25 s to 40 s in, after every client is
//! connected.
//!
//!     cargo bench --bench waiter [-- --executions 200 --long-polls 1000 --streams 1000]
//!
//! Latency: from a transition's emission to a client having read it.
//! Emission is the moment the formatter writes the event's JSON line to the
//! daemon's standard output (here a writer that notes the time); the stream
//! gets the same line a few microseconds before, in the same call, so a
//! stream client can read it "before" it was emitted (a small negative
//! figure, reported as it is). The clients run in a child process (this
//! binary again, `--role streams|long-polls`) and note the system clock when
//! a read completes the line or the answer: one clock, microseconds apart.
//!
//! Memory: the live heap of this process (the counting allocator of
//! `common::heap`) and its RSS, before and after each group of clients
//! connected, divided by their number. The clients' own memory is in the
//! child process and not counted.
//!
//! File descriptors: every client is a socket on both ends; the bench raises
//! its soft `RLIMIT_NOFILE` to the hard limit (children inherit it) and
//! stops with a message when that is still too low (`ulimit -Hn`).

mod common;
#[path = "common/waiters.rs"]
mod waiters;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write as _};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::mpsc::{Receiver, channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use flowwatch::run::{self, StartOptions};
use flowwatch::simulate::Scenario;

use common::heap::{Heap, heap};
use common::{ALIAS, FLOW, SimProcess, arg, config_text, credentials, execution_arns, rss};

#[global_allocator]
static ALLOCATOR: common::heap::Counting = common::heap::Counting;
use waiters::{Sample, now_ns};

const POLL: &str =
    "interval_initial = \"200ms\"\ninterval_max = \"1s\"\nrate_limit = 1000.0\nmax_in_flight = 64";

/// Transitions as the daemon wrote them: (execution id, to) → when.
static EMITTED: Mutex<Option<HashMap<(String, String), u64>>> = Mutex::new(None);

/// The daemon's standard output: notes when each transition's line is
/// written, and drops the lines.
#[derive(Default)]
struct Stdout {
    at: Option<u64>,
    line: Vec<u8>,
}

impl std::io::Write for Stdout {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.at.get_or_insert_with(now_ns);
        self.line.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for Stdout {
    fn drop(&mut self) {
        let (Some(at), Ok(text)) = (self.at, std::str::from_utf8(&self.line)) else {
            return;
        };
        if !text.contains("\"execution.transition\"") {
            return;
        }
        let event: serde_json::Value = serde_json::from_str(text).expect("a JSON line");
        let key = (
            event["execution"].as_str().unwrap_or("?").to_string(),
            event["to"].as_str().unwrap_or("?").to_string(),
        );
        let mut emitted = EMITTED.lock().expect("not poisoned");
        emitted.get_or_insert_with(HashMap::new).insert(key, at);
    }
}

fn emitted_count() -> usize {
    EMITTED
        .lock()
        .expect("not poisoned")
        .as_ref()
        .map_or(0, HashMap::len)
}

fn main() {
    let needed = raise_fd_limit();
    match arg::<String>("role", String::new()).as_str() {
        "streams" | "long-polls" => return waiters::client_main(),
        _ => {}
    }
    let executions: usize = arg("executions", 200);
    let long_polls: usize = arg("long-polls", 1000);
    let streams: usize = arg("streams", 1000);
    assert!(
        needed >= (long_polls + streams) as u64 + 512,
        "RLIMIT_NOFILE {needed} is too low for {} clients: raise the hard limit (ulimit -Hn)",
        long_polls + streams
    );
    let settings = flowwatch::config::LogSettings::default();
    tracing::subscriber::set_global_default(flowwatch::event::subscriber(
        &settings,
        Stdout::default as fn() -> Stdout,
    ))
    .expect("the bench installs the subscriber once");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");

    let scenario_text = format!(
        "seed = 1\n\n[[generate]]\ncount = {executions}\nid_prefix = \"wait-\"\nflow = \"{FLOW}\"\nalias = \"{ALIAS}\"\nflow_version = \"1\"\ntimeline = [{{ at = \"0s\", status = \"Running\" }}]\nend_status = \"Succeeded\"\nend_between = [\"25s\", \"40s\"]\n"
    );
    let arns = execution_arns(&Scenario::parse(&scenario_text).expect("the scenario parses"));
    let sim = SimProcess::spawn(&scenario_text);
    let started = Instant::now();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port();
    let addr = format!("127.0.0.1:{port}");
    let text = format!(
        "{}\n[http]\nlisten = \"{addr}\"\nmax_long_polls = {long_polls}\nmax_sse_clients = {streams}\nevents_buffer = 65536\n",
        config_text(&sim.endpoint, POLL, &arns, None)
    );
    let config = flowwatch::config::parse_str(&text, Path::new("/etc/flowwatch/flowwatch.toml"))
        .expect("the generated config is valid");
    let shutdown = CancellationToken::new();
    let mut options = StartOptions::new(false);
    options.credentials = Some(credentials());
    options.live_reload = false;
    options.shutdown = shutdown.clone();
    let daemon = runtime.spawn(run::start(config, options));

    println!(
        "waiter: {executions} executions, {long_polls} long polls and {streams} event-stream clients (machine: {} cores)",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    while emitted_count() < executions {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "first polls too slow"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let quiet = settled();

    let stream_clients = Clients::spawn("streams", streams, &addr, executions, &[]);
    stream_clients.wait_ready();
    let with_streams = settled();

    let targets: Vec<String> = (0..long_polls)
        .map(|i| arns[i % arns.len()].clone())
        .collect();
    let poll_clients = Clients::spawn("long-polls", long_polls, &addr, executions, &targets);
    poll_clients.wait_ready();
    let with_polls = settled();
    assert!(
        started.elapsed() < Duration::from_secs(24),
        "the clients connected too slowly: executions end from 25 s on"
    );

    println!("\nmemory (this process: the daemon and its listener)");
    println!(
        "  {:<28} {:>10} {:>10} {:>8} {:>10}",
        "", "heap req.", "malloc", "allocs", "RSS"
    );
    memory_row("per event-stream client", quiet, with_streams, streams);
    memory_row(
        "per pending long poll",
        with_streams,
        with_polls,
        long_polls,
    );

    let stream_samples = stream_clients.finish();
    let poll_samples = poll_clients.finish();
    shutdown.cancel();
    let _ = runtime.block_on(daemon);
    let emitted = EMITTED
        .lock()
        .expect("not poisoned")
        .take()
        .unwrap_or_default();

    println!("\nlatency: transition line written to stdout → client has read it");
    println!(
        "  {:<14} {:>8} {:>9} {:>9} {:>9} {:>9}",
        "", "samples", "p50", "p99", "max", "min"
    );
    latency_row("long poll", &poll_samples, &emitted, long_polls);
    latency_row(
        "event stream",
        &stream_samples,
        &emitted,
        streams * executions,
    );
    println!("  simulator process CPU: {:.2} s", sim.cpu().as_secs_f64());
}

/// Heap and RSS once the daemon is quiet again (in-flight polls come and
/// go, so the median of five looks 100 ms apart).
fn settled() -> (Heap, u64) {
    std::thread::sleep(Duration::from_secs(2));
    let mut looks: Vec<(Heap, u64)> = (0..5)
        .map(|_| {
            std::thread::sleep(Duration::from_millis(100));
            (heap(), rss().0)
        })
        .collect();
    looks.sort_by_key(|(h, _)| h.bytes);
    looks[2]
}

fn memory_row(name: &str, from: (Heap, u64), to: (Heap, u64), count: usize) {
    let per = |a: usize, b: usize| (b as f64 - a as f64) / count as f64;
    println!(
        "  {name:<28} {:>8.0} B {:>8.0} B {:>8.1} {:>8.1} KiB",
        per(from.0.bytes, to.0.bytes),
        per(from.0.chunks, to.0.chunks),
        per(from.0.count, to.0.count),
        (to.1 as f64 - from.1 as f64) / count as f64 / 1024.0,
    );
}

fn latency_row(
    name: &str,
    samples: &[Sample],
    emitted: &HashMap<(String, String), u64>,
    expected: usize,
) {
    let mut micros: Vec<i64> = samples
        .iter()
        .filter_map(|s| {
            let at = emitted.get(&(s.execution.clone(), s.to.clone()))?;
            Some((s.at as i64 - *at as i64) / 1000)
        })
        .collect();
    micros.sort_unstable();
    let n = micros.len();
    if n == 0 {
        println!("  {name:<14} no samples (expected {expected})");
        return;
    }
    let pick = |q: usize| micros[(n * q / 100).min(n - 1)];
    let ms = |us: i64| format!("{:.2} ms", us as f64 / 1000.0);
    println!(
        "  {name:<14} {n:>8} {:>9} {:>9} {:>9} {:>9}{}",
        ms(pick(50)),
        ms(pick(99)),
        ms(micros[n - 1]),
        ms(micros[0]),
        if n == expected {
            String::new()
        } else {
            format!("  (expected {expected})")
        }
    );
}

/// A child process of clients, and the thread reading what it reports.
struct Clients {
    child: Child,
    ready: Receiver<()>,
    reader: JoinHandle<Vec<Sample>>,
}

impl Clients {
    fn spawn(role: &str, count: usize, addr: &str, expect: usize, arns: &[String]) -> Clients {
        let mut child = Command::new(std::env::current_exe().expect("this bench's path"))
            .args([
                "--role",
                role,
                "--count",
                &count.to_string(),
                "--addr",
                addr,
            ])
            .args(["--expect", &expect.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the client process");
        let mut stdin = child.stdin.take().expect("stdin is piped");
        for arn in arns {
            writeln!(stdin, "{arn}").expect("hand the client its ARNs");
        }
        drop(stdin);
        let stdout = child.stdout.take().expect("stdout is piped");
        let (ready_tx, ready) = channel();
        let role = role.to_string();
        let reader = std::thread::spawn(move || {
            let mut samples = Vec::new();
            for line in BufReader::new(stdout).lines() {
                let line = line.expect("the client's report is text");
                if line == "ready" {
                    let _ = ready_tx.send(());
                } else if let Some(sample) = Sample::parse(&line) {
                    samples.push(sample);
                } else {
                    println!("  {role}: {line}");
                }
            }
            samples
        });
        Clients {
            child,
            ready,
            reader,
        }
    }

    fn wait_ready(&self) {
        self.ready
            .recv_timeout(Duration::from_secs(20))
            .expect("every client connected within 20 s");
    }

    fn finish(mut self) -> Vec<Sample> {
        let status = self.child.wait().expect("the client process ends");
        assert!(status.success(), "the client process failed: {status}");
        self.reader.join().expect("the reader thread ends")
    }
}

/// Raises the soft open-files limit to the hard one; returns the new soft
/// limit.
fn raise_fd_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid, writable rlimit for the call.
    let got = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    assert_eq!(got, 0, "getrlimit(RLIMIT_NOFILE)");
    if limit.rlim_cur < limit.rlim_max {
        limit.rlim_cur = limit.rlim_max;
        // SAFETY: `limit` is a valid rlimit; raising soft to hard is allowed.
        let set = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) };
        assert_eq!(set, 0, "setrlimit(RLIMIT_NOFILE)");
    }
    limit.rlim_cur
}
