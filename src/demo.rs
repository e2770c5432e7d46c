//! `flowwatch demo`: the simulator on a free loopback port and the daemon
//! against it, with the bundled watch list and scenario (`config/demo/`).
//! Streams the events, then prints a one-screen summary. Needs no AWS
//! account: static demo credentials sign requests the simulator accepts.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Instant;

use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;

mod api;

use crate::config;
use crate::event::text::TextStyle;
use crate::run::{self, StartOptions};
use crate::simulate::{Answer, Scenario, Simulator};

const DEMO_CONFIG: &str = include_str!("../config/demo/flowwatch.toml");
const DEMO_SCENARIO: &str = include_str!("../config/demo/scenario.toml");

pub async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let started = Instant::now();
    let scenario = Scenario::parse(DEMO_SCENARIO)?;
    let listen: SocketAddr = "127.0.0.1:0".parse().expect("a valid literal address");
    let simulator = Simulator::spawn(scenario, listen).await?;

    let mut config = config::parse_str(DEMO_CONFIG, Path::new("config/demo/flowwatch.toml"))?;
    config.aws.endpoint_url = Some(simulator.endpoint_url());
    // The waiter API on a free loopback port: one execution is added over
    // it, and followed over the event stream (issue 10.4).
    let http = config::HttpSettings::on(free_loopback_port()?);
    let api_client = tokio::spawn(api::follow(http.listen));
    config.http = Some(http);
    // Brief text lines: the summary below names each execution fully, and
    // a line fits 100 columns (issue 10.3).
    crate::event::init_styled(&config.log, TextStyle::for_stdout().brief())?;
    eprintln!(
        "flowwatch demo on {}: {} watches, 1 more over the API, {} flow to discover\n",
        simulator.endpoint_url(),
        config.watches.len(),
        config.flows.len()
    );

    let mut options = StartOptions::new(true);
    options.credentials = Some(SharedCredentialsProvider::new(Credentials::new(
        "AKIDFLOWWATCHDEMO",
        "flowwatch-demo-secret",
        None,
        None,
        "flowwatch-demo",
    )));
    options.live_reload = false;
    let report = run::start(config, options).await?;
    // The API watch ended before the daemon did (`--once`): so has its client.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), api_client).await;
    let stats = simulator.stats();
    simulator.shutdown().await;

    eprintln!(
        "\nflowwatch demo: done in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    eprintln!("  {:<24} {:<28} {:>5}", "execution", "result", "polls");
    for watch in &report.watches {
        eprintln!(
            "  {:<24} {:<28} {:>5}",
            watch.execution, watch.result, watch.polls
        );
    }
    // A discovered watch leaves memory once it ended (issue 9), so it is
    // not in the table: its lines above say `source=discovery`.
    let list_pages = stats
        .log
        .iter()
        .filter(|r| r.operation == "ListFlowExecutions")
        .count();
    eprintln!(
        "  discovery: {list_pages} ListFlowExecutions pages; found executions are above (source=discovery)"
    );
    eprintln!(
        "  simulator: {} requests, {} throttled (429), {} server errors (5xx)",
        stats.total(),
        stats.count(Answer::Throttled),
        stats.count(Answer::Internal)
    );
    Ok(())
}

/// A loopback address with a port free a moment ago (the daemon binds it).
fn free_loopback_port() -> std::io::Result<SocketAddr> {
    std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()
}
