//! The validated configuration: `load` reads the main TOML file and every
//! file its `include` globs match, and returns a `Config` or a `ConfigError`
//! naming file, line, column and key. Nothing here talks to AWS: the ids are
//! checked against the API's patterns. The rooms, in the order a load runs:
//! `raw` mirrors the TOML; `settings` checks the settings tables; `include`
//! resolves the include globs to files; `watches` builds the `WatchSet`;
//! `error` says where a problem is.

mod error;
mod flows;
mod ha;
mod include;
pub mod raw;
mod settings;
mod watches;

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};

use crate::watch::WatchSet;
use error::{Source, read};
use raw::RawMain;

pub use error::ConfigError;
pub use flows::{FlowWatch, Since};
pub use ha::{HaBackend, HaSettings};
pub use settings::{
    AwsSettings, HttpSettings, LogFormat, LogSettings, PollSettings, SchedulePolicy, StateSettings,
};

/// One file that was read, for `flowwatch check`'s one line per file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSummary {
    pub path: PathBuf,
    /// `[[watch]]` tables in this file (before dedup).
    pub watches: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The main file, as given.
    pub path: PathBuf,
    pub aws: AwsSettings,
    pub poll: PollSettings,
    pub log: LogSettings,
    pub state: Option<StateSettings>,
    pub http: Option<HttpSettings>,
    /// `[ha]`: absent, nothing changes (issue 12).
    pub ha: Option<HaSettings>,
    /// The `include` globs, made absolute (relative to the main file's folder).
    pub include: Vec<String>,
    /// Every watch of every file, deduplicated.
    pub watches: WatchSet,
    /// The `[[watch_flow]]` tables of the main file (issue 9), one per
    /// (region, flow, alias); discovery adds their executions as watches.
    pub flows: Vec<FlowWatch>,
    /// The main file first, then each included file in sorted order.
    pub files: Vec<FileSummary>,
}

/// Reads and validates the main file and its includes. Nothing is half-read:
/// either every file is valid or the error names the first bad place.
/// A missing or unreadable file is `ConfigError::Read`.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = read(path)?;
    parse_str(&text, path)
}

/// Like `load`, with the main file's text given; `path` names it in errors
/// and anchors relative paths. Included files are still read from disk.
pub fn parse_str(text: &str, path: &Path) -> Result<Config, ConfigError> {
    let main = Source { path, text };
    let raw: RawMain = raw::parse_main(text).map_err(|e| main.raw_error(e))?;
    let folder = include::folder_of(path);

    let aws = settings::aws_settings(&main, &raw.aws)?;
    let poll = settings::poll_settings(&main, &raw.poll)?;
    let log = settings::log_settings(&main, &raw.log)?;
    let state = match &raw.state {
        Some(state) => Some(settings::state_settings(&main, state, &folder)?),
        None => None,
    };
    let http = match &raw.http {
        Some(http) => Some(settings::http_settings(&main, http, &folder)?),
        None => None,
    };
    let ha = match &raw.ha {
        Some(ha) => Some(ha::ha_settings(&main, ha)?),
        None => None,
    };
    let (key, globs) = include::one_include(&main, &raw)?
        .map_or(("include", &[][..]), |(key, g)| {
            (key, g.get_ref().as_slice())
        });
    let include = include::include_globs(&main, key, globs, &folder)?;

    let region = aws.region.as_deref();
    let mut watches = WatchSet::default();
    // One copy of each distinct label set for every watch of every file.
    let mut label_sets = HashSet::new();
    let count = watches::add_watches(&main, &raw.watch, region, &mut label_sets, &mut watches)?;
    let mut files = vec![FileSummary {
        path: path.to_path_buf(),
        watches: count,
    }];
    for file in include::included_files(path, &include)? {
        let text = read(&file)?;
        let source = Source {
            path: &file,
            text: &text,
        };
        let raw = raw::parse_include(&text).map_err(|e| source.raw_error(e))?;
        let count =
            watches::add_watches(&source, &raw.watch, region, &mut label_sets, &mut watches)?;
        files.push(FileSummary {
            path: file,
            watches: count,
        });
    }

    let flows = flows::flow_watches(&main, &raw.watch_flow, region)?;

    // With an include, an empty list is fine: a sidecar's watch folder starts empty.
    // So with [http] (watches may all come over the API, issue 10) and with
    // [[watch_flow]] tables (discovery finds them, issue 9).
    if watches.is_empty() && include.is_empty() && http.is_none() && flows.is_empty() {
        return Err(ConfigError::File {
            file: path.to_path_buf(),
            problem: "no watches: add [[watch]] tables or an include".to_string(),
        });
    }

    Ok(Config {
        path: path.to_path_buf(),
        aws,
        poll,
        log,
        state,
        http,
        ha,
        include,
        watches,
        flows,
        files,
    })
}

impl Config {
    /// Everything but the watch list and the files it came from.
    pub fn settings(&self) -> impl PartialEq + '_ {
        (&self.aws, &self.poll, &self.log, &self.state, &self.http)
    }

    /// `flowwatch check`'s output: one line per file, then a total, e.g.
    /// `ok: 5 watches (1 duplicate merged) in 2 files, regions eu-west-1, us-east-1`.
    /// A watch whose region the AWS default chain will decide counts as `(default)`.
    pub fn summary_lines(&self) -> Vec<String> {
        let mut lines: Vec<String> = self
            .files
            .iter()
            .map(|f| {
                format!(
                    "{}: {}",
                    f.path.display(),
                    count(f.watches, "watch", "watches")
                )
            })
            .collect();
        let mut total = format!("ok: {}", count(self.watches.len(), "watch", "watches"));
        if !self.flows.is_empty() {
            total += &format!(
                " and {} discovered",
                count(self.flows.len(), "flow", "flows")
            );
        }
        let merged = self.watches.merged();
        if merged > 0 {
            total += &format!(" ({} merged)", count(merged, "duplicate", "duplicates"));
        }
        total += &format!(" in {}", count(self.files.len(), "file", "files"));
        let regions: BTreeSet<&str> = self
            .watches
            .iter()
            .map(|(_, w)| w.target.region.as_deref().unwrap_or("(default)"))
            .collect();
        if !regions.is_empty() {
            let word = if regions.len() == 1 {
                "region"
            } else {
                "regions"
            };
            let names: Vec<&str> = regions.into_iter().collect();
            total += &format!(", {word} {}", names.join(", "));
        }
        lines.push(total);
        lines
    }
}

fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// Shared by the tests of every room: a temporary folder with a main file.
#[cfg(test)]
pub(crate) mod fixture {
    use super::*;
    use std::fs;

    pub const ARN: &str = "arn:aws:bedrock:us-east-1:123456789012:flow/FLOW123456/alias/ALIAS12345/execution/run-0001";
    pub const ONE_WATCH: &str =
        "[[watch]]\nflow = \"FLOW123456\"\nalias = \"ALIAS12345\"\nexecution = \"run-0001\"\n";

    /// A temporary folder holding the main file `flowwatch.toml`.
    pub struct Dir {
        pub dir: tempfile::TempDir,
    }

    impl Dir {
        pub fn new() -> Dir {
            Dir {
                dir: tempfile::tempdir().unwrap(),
            }
        }
        pub fn write(&self, name: &str, text: &str) -> PathBuf {
            let path = self.dir.path().join(name);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(&path, text).unwrap();
            path
        }
        pub fn main(&self) -> PathBuf {
            self.dir.path().join("flowwatch.toml")
        }
        pub fn load(&self, text: &str) -> Result<Config, ConfigError> {
            load(&self.write("flowwatch.toml", text))
        }
        /// The error's Display, with the main file's path replaced by `{main}`.
        pub fn error(&self, text: &str) -> String {
            let err = self.load(text).expect_err("config should be refused");
            err.to_string()
                .replace(&self.main().display().to_string(), "{main}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::watch::WatchKey;
    use fixture::*;
    use std::time::Duration;

    #[test]
    fn an_unknown_key_names_file_line_column_and_the_dotted_key() {
        let dir = Dir::new();
        let text = format!("{ONE_WATCH}\n[poll]\nintreval_max = \"5s\"\n");
        assert_eq!(
            dir.error(&text),
            "{main}:7:1: poll.intreval_max: unknown key, expected one of `interval_initial`, \
             `interval_max`, `multiplier`, `jitter`, `rate_limit`, `max_in_flight`, \
             `request_timeout`, `max_watch`, `not_found_grace`, `failure_details`, \
             `failure_details_max_pages`, `discovery_share`, `list_interval`, `schedule`, \
             `include`"
        );
    }

    #[test]
    fn a_value_of_the_wrong_type_says_what_was_expected() {
        let dir = Dir::new();
        let text = format!("[poll]\nmax_in_flight = \"many\"\n{ONE_WATCH}");
        assert_eq!(
            dir.error(&text),
            "{main}:2:17: poll.max_in_flight: invalid type: string \"many\", expected an integer"
        );
    }

    #[test]
    fn a_syntax_error_is_one_line_with_the_key_on_that_line() {
        let dir = Dir::new();
        let text = format!("{ONE_WATCH}[poll]\nmultiplier = \n");
        assert_eq!(
            dir.error(&text),
            "{main}:6:14: poll.multiplier: string values must be quoted, expected literal string"
        );
    }

    #[test]
    fn no_watches_and_no_include_is_refused() {
        let dir = Dir::new();
        let err = dir.load("[poll]\nmultiplier = 2.0\n").unwrap_err();
        assert!(matches!(err, ConfigError::File { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            format!(
                "{}: no watches: add [[watch]] tables or an include",
                dir.main().display()
            )
        );
    }

    #[test]
    fn a_missing_main_file_is_a_read_error() {
        let dir = Dir::new();
        let err = load(&dir.main()).unwrap_err();
        assert!(matches!(err, ConfigError::Read { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            format!("cannot read {}", dir.main().display())
        );
    }

    #[test]
    fn summary_has_a_line_per_file_and_a_total() {
        let dir = Dir::new();
        let included = dir.write(
            "w/x.toml",
            &format!(
                "[[watch]]\nexecution_arn = \"{ARN}\"\n[[watch]]\nexecution_arn = \"{}\"\n",
                ARN.replace("us-east-1", "eu-west-1")
            ),
        );
        let text =
            format!("include = [\"w/*.toml\"]\n{ONE_WATCH}[[watch]]\nexecution_arn = \"{ARN}\"\n");
        let config = dir.load(&text).unwrap();
        assert_eq!(
            config.summary_lines(),
            [
                format!("{}: 2 watches", dir.main().display()),
                format!("{}: 2 watches", included.display()),
                "ok: 3 watches (1 duplicate merged) in 2 files, regions (default), eu-west-1, us-east-1"
                    .to_string(),
            ]
        );
    }

    #[test]
    fn the_example_config_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/example.toml");
        let config = load(&path).unwrap();
        assert_eq!(config.files.len(), 2, "{:?}", config.files);
        assert_eq!(config.watches.len(), 3);
        assert_eq!(config.aws.region.as_deref(), Some("us-east-1"));
        assert_eq!(config.log.format, LogFormat::Json);
        assert_eq!(config.poll.not_found_grace, Duration::from_secs(30));
        assert!(config.state.is_some() && config.http.is_some());
        let included = config
            .watches
            .get(&WatchKey::from_arn(
                "arn:aws:bedrock:us-east-1:123456789012:flow/FLOW123456/alias/TSTALIASID/execution/run-0003",
            ).unwrap())
            .expect("the included watch is keyed by its built arn");
        assert_eq!(included.labels["pipeline"], "nightly");
    }

    /// The contract's configuration block, verbatim.
    const CONTRACT_BLOCK: &str = r#"[aws]
region = "us-east-1"          # default: the standard AWS chain (env, profile, IMDS)
profile = "prod"              # default: the standard chain
endpoint_url = "http://127.0.0.1:4566"   # default: the real regional endpoint

[poll]
interval_initial = "2s"       # first re-poll delay after a poll that saw no change
interval_max = "60s"          # cap of the no-change backoff
multiplier = 2.0
jitter = 0.2                  # randomization factor, 0.0..=1.0
rate_limit = 10.0             # requests/second to one region, all watches together
max_in_flight = 16            # concurrent requests
request_timeout = "10s"       # per attempt
max_watch = "25h"             # abandon a watch after this long (executions time out at 24 h)

[log]
format = "json"               # json | text
level = "info"

[state]
path = "/var/lib/flowwatch/state.json"   # optional; persistence across restarts

[http]
listen = "127.0.0.1:9464"     # optional; GET /healthz, /readyz, /metrics (Prometheus text)

include = ["watches.d/*.toml"]  # optional globs, relative to this file; each holds [[watch]] tables only

[[watch]]
execution_arn = "arn:aws:bedrock:us-east-1:123456789012:flow/FLOW123456/alias/ALIAS12345/execution/run-0001"
labels = { team = "search" } # optional, copied onto every event of this watch

[[watch]]                     # the same execution, by parts
flow = "FLOW123456"           # id or flow ARN
alias = "ALIAS12345"          # id or alias ARN
execution = "run-0001"        # id or execution ARN
region = "eu-west-1"          # optional per-watch region
"#;

    #[test]
    fn the_contract_example_block_is_valid_as_written() {
        let dir = Dir::new();
        dir.write(
            "watches.d/a.toml",
            &format!(
                "[[watch]]\nexecution_arn = \"{}\"\n",
                ARN.replace("run-0001", "run-9")
            ),
        );
        let config = dir.load(CONTRACT_BLOCK).unwrap();
        assert_eq!(config.files.len(), 2);
        assert_eq!(config.watches.len(), 3);
        assert_eq!(config.http.unwrap().listen.port(), 9464);
        assert_eq!(config.poll.max_watch, Duration::from_secs(25 * 3600));
    }
}
