//! `flowwatch wait EXECUTION_ARN...` (issue 10): the waiter the AWS CLI
//! lacks for flow executions. In: execution ARNs, a timeout, and where to
//! reach the service (flags, else `AWS_REGION` / `AWS_ENDPOINT_URL`). Out:
//! transitions as they happen, and a verdict for the exit code.
//!
//! Directly, it builds a config in memory and runs the daemon with `--once`:
//! the same scheduler, budget, backoff and retry rules. With `--via URL` it
//! asks a running daemon's `/v1` API instead (adding each watch, then long
//! polls), so many waiters cost the service nothing extra.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use crate::config::{self, ConfigError, LogFormat};
use crate::daemon::{DaemonError, Verdict};
use crate::run::{self, StartOptions};
use crate::watch::ExecutionRef;

/// What `flowwatch wait` was asked.
pub struct WaitArgs {
    pub arns: Vec<String>,
    pub timeout: Option<Duration>,
    pub region: Option<String>,
    pub endpoint_url: Option<String>,
    pub format: LogFormat,
    pub via: Option<String>,
}

/// How the wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Every execution `Succeeded`.
    Succeeded,
    /// One ended otherwise, was abandoned, or the timeout passed.
    NotSucceeded,
}

#[derive(Debug, thiserror::Error)]
pub enum WaitError {
    /// Bad arguments: exit 2.
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Daemon(#[from] DaemonError),
    #[error("{url}: {problem}")]
    Via { url: String, problem: String },
}

/// The config `wait` runs on: one `[[watch]]` per ARN, no file behind it.
pub fn config_text(args: &WaitArgs) -> Result<String, WaitError> {
    if args.arns.is_empty() {
        return Err(WaitError::Usage("give at least one execution arn".into()));
    }
    for arn in &args.arns {
        ExecutionRef::parse_arn(arn).map_err(|e| WaitError::Usage(e.0))?;
    }
    let quote = |s: &str| toml::Value::String(s.to_string()).to_string();
    let mut text = String::from("[aws]\n");
    // Without a flag or AWS_REGION, the first ARN's region: each watch
    // polls its ARN's region anyway, and the standard chain would probe IMDS.
    let first_region = ExecutionRef::parse_arn(&args.arns[0])
        .ok()
        .and_then(|target| target.region.map(|r| r.to_string()));
    let region = args
        .region
        .clone()
        .or_else(|| env("AWS_REGION"))
        .or(first_region);
    if let Some(region) = region {
        text.push_str(&format!("region = {}\n", quote(&region)));
    }
    let endpoint = args
        .endpoint_url
        .clone()
        .or_else(|| env("AWS_ENDPOINT_URL"));
    if let Some(url) = endpoint {
        text.push_str(&format!("endpoint_url = {}\n", quote(&url)));
    }
    let format = match args.format {
        LogFormat::Json => "json",
        LogFormat::Text => "text",
    };
    text.push_str(&format!("[log]\nformat = \"{format}\"\n"));
    for arn in &args.arns {
        text.push_str(&format!("[[watch]]\nexecution_arn = {}\n", quote(arn)));
    }
    Ok(text)
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// Loads the in-memory config (for `init`'s log settings too).
pub fn config(args: &WaitArgs) -> Result<config::Config, WaitError> {
    let text = config_text(args)?;
    config::parse_str(&text, Path::new("flowwatch-wait")).map_err(|e| match e {
        ConfigError::Invalid { problem, key, .. } => WaitError::Usage(format!("{key}: {problem}")),
        other => WaitError::Config(other),
    })
}

/// Waits directly: the daemon with `--once` on `config`, stopped at the timeout.
pub async fn direct(
    config: config::Config,
    timeout: Option<Duration>,
) -> Result<Outcome, WaitError> {
    let mut options = StartOptions::new(true);
    options.live_reload = false;
    let shutdown = options.shutdown.clone();
    let timed_out = CancellationToken::new();
    if let Some(timeout) = timeout {
        let (shutdown, timed_out) = (shutdown.clone(), timed_out.clone());
        tokio::spawn(async move {
            tokio::time::sleep(timeout).await;
            timed_out.cancel();
            shutdown.cancel();
        });
    }
    let report = run::start(config, options).await?;
    Ok(
        if report.verdict == Verdict::SomeFailed || timed_out.is_cancelled() {
            Outcome::NotSucceeded
        } else {
            Outcome::Succeeded
        },
    )
}

/// Waits through a running daemon's API at `url` (`http://HOST:PORT`).
/// `FLOWWATCH_TOKEN`, when set, is sent as the bearer token.
pub async fn via(url: &str, args: &WaitArgs) -> Result<Outcome, WaitError> {
    for arn in &args.arns {
        ExecutionRef::parse_arn(arn).map_err(|e| WaitError::Usage(e.0))?;
    }
    let authority = url
        .strip_prefix("http://")
        .map(|rest| rest.trim_end_matches('/'))
        .filter(|rest| !rest.is_empty() && !rest.contains('/'))
        .ok_or_else(|| WaitError::Usage(format!("--via must be http://HOST:PORT, not {url:?}")))?
        .to_string();
    let client = Via {
        authority,
        url: url.to_string(),
        token: env("FLOWWATCH_TOKEN"),
        format: args.format,
    };
    let waits = args.arns.iter().map(|arn| client.wait_one(arn));
    let all = futures_util::future::try_join_all(waits);
    let ended = match args.timeout {
        Some(timeout) => match tokio::time::timeout(timeout, all).await {
            Ok(ended) => ended?,
            Err(_) => return Ok(Outcome::NotSucceeded),
        },
        None => all.await?,
    };
    Ok(if ended.iter().all(|succeeded| *succeeded) {
        Outcome::Succeeded
    } else {
        Outcome::NotSucceeded
    })
}

struct Via {
    authority: String,
    url: String,
    token: Option<String>,
    format: LogFormat,
}

impl Via {
    fn failed(&self, problem: impl Into<String>) -> WaitError {
        WaitError::Via {
            url: self.url.clone(),
            problem: problem.into(),
        }
    }

    /// One request; the status and the JSON body.
    async fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> Result<(u16, Value), WaitError> {
        let mut stream = tokio::net::TcpStream::connect(&self.authority)
            .await
            .map_err(|e| self.failed(format!("cannot connect: {e}")))?;
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
            self.authority
        );
        if let Some(token) = &self.token {
            head.push_str(&format!("Authorization: Bearer {token}\r\n"));
        }
        let body = body.unwrap_or("");
        head.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ));
        stream
            .write_all(head.as_bytes())
            .await
            .map_err(|e| self.failed(format!("cannot send: {e}")))?;
        let mut raw = Vec::new();
        stream
            .read_to_end(&mut raw)
            .await
            .map_err(|e| self.failed(format!("cannot read the answer: {e}")))?;
        let raw = String::from_utf8_lossy(&raw);
        let (head, body) = raw
            .split_once("\r\n\r\n")
            .ok_or_else(|| self.failed("not an http answer"))?;
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| self.failed("not an http answer"))?;
        let json = serde_json::from_str(body.trim()).unwrap_or(Value::Null);
        Ok((status, json))
    }

    /// Adds the watch if needed, then long polls until it ends; true when
    /// it `Succeeded`.
    async fn wait_one(&self, arn: &str) -> Result<bool, WaitError> {
        let body = serde_json::json!({ "execution_arn": arn }).to_string();
        let (status, answer) = self.request("POST", "/v1/watches", Some(&body)).await?;
        if status != 200 && status != 201 {
            return Err(self.failed(format!("adding {arn}: {status} {answer}")));
        }
        let path = format!("/v1/watches/{}", encode(arn));
        let mut view = answer;
        let mut shown: Option<String> = None;
        loop {
            let status = view["status"].as_str().map(str::to_string);
            if status.is_some() && status != shown {
                self.show(arn, shown.as_deref(), &view);
                shown = status;
            }
            if !view["ended"].is_null() {
                return Ok(view["ended"] == "succeeded");
            }
            let since = shown
                .as_deref()
                .map(|s| format!("&since={s}"))
                .unwrap_or_default();
            let (code, answer) = self
                .request("GET", &format!("{path}?wait=30s{since}"), None)
                .await?;
            if code != 200 {
                return Err(self.failed(format!("watching {arn}: {code} {answer}")));
            }
            view = answer;
        }
    }

    fn show(&self, arn: &str, from: Option<&str>, view: &Value) {
        match self.format {
            LogFormat::Json => println!("{view}"),
            LogFormat::Text => {
                let name = arn.rsplit('/').next().unwrap_or(arn);
                let to = view["status"].as_str().unwrap_or("-");
                match from {
                    Some(from) => println!("{name}  {from} → {to}"),
                    None => println!("{name}  {to}"),
                }
            }
        }
    }
}

/// Percent-encodes everything but unreserved characters.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARN: &str = "arn:aws:bedrock:us-east-1:123456789012:flow/FLOW123456/alias/ALIAS12345/execution/run-0001";

    fn args(arns: &[&str]) -> WaitArgs {
        WaitArgs {
            arns: arns.iter().map(|a| a.to_string()).collect(),
            timeout: None,
            region: Some("eu-west-1".into()),
            endpoint_url: Some("http://127.0.0.1:1".into()),
            format: LogFormat::Text,
            via: None,
        }
    }

    #[test]
    fn the_in_memory_config_watches_each_arn_with_the_flags() {
        let config = config(&args(&[ARN])).unwrap();
        assert_eq!(config.watches.len(), 1);
        assert_eq!(config.aws.region.as_deref(), Some("eu-west-1"));
        assert_eq!(
            config.aws.endpoint_url.as_deref(),
            Some("http://127.0.0.1:1")
        );
        assert_eq!(config.log.format, LogFormat::Text);
    }

    #[test]
    fn a_bad_arn_is_a_usage_error() {
        assert!(matches!(config(&args(&["nope"])), Err(WaitError::Usage(_))));
        assert!(matches!(config(&args(&[])), Err(WaitError::Usage(_))));
    }

    #[test]
    fn an_arn_encodes_into_one_path_segment() {
        assert_eq!(encode("arn:a/b"), "arn%3Aa%2Fb");
    }
}
