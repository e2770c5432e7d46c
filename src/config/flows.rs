//! `[[watch_flow]]` tables (issue 9): flows whose executions discovery
//! watches. In: the main file's raw tables. Out: validated `FlowWatch`es,
//! one per (region, flow, alias), or a `ConfigError` at the offending value.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use toml::Spanned;

use super::error::{ConfigError, Source};
use super::raw::RawWatchFlow;
use crate::watch::Labels;
use crate::watch::ids::{check_region, parse_alias, parse_flow};

/// One `[[watch_flow]]` table.
#[derive(Debug, Clone, PartialEq)]
pub struct FlowWatch {
    /// The flow id (an ARN given is reduced to its id).
    pub flow: String,
    /// Only this alias's executions; `None`: every alias.
    pub alias: Option<String>,
    /// `None`: `[aws] region`, else the default chain's.
    pub region: Option<String>,
    pub since: Since,
    pub labels: Arc<Labels>,
    /// The file it is in (discovered watches have `source = "discovery"`).
    pub source: Arc<Path>,
}

/// `since`: only executions created after this are discovered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Since {
    /// The default: when the daemon started.
    DaemonStart,
    /// A duration before the daemon started (`"1h"`).
    Ago(Duration),
    /// An instant (RFC 3339).
    At(SystemTime),
}

impl Since {
    /// The instant, for a daemon started at `started`.
    pub fn resolve(self, started: SystemTime) -> SystemTime {
        match self {
            Since::DaemonStart => started,
            Since::Ago(ago) => started.checked_sub(ago).unwrap_or(SystemTime::UNIX_EPOCH),
            Since::At(at) => at,
        }
    }
}

impl FlowWatch {
    /// The table's identity: region (empty for the default), flow, alias
    /// (`*` for every alias). Two tables with one identity are an error; a
    /// reload compares tables by it.
    pub fn key(&self) -> String {
        format!(
            "{}/{}/{}",
            self.region.as_deref().unwrap_or(""),
            self.flow,
            self.alias.as_deref().unwrap_or("*")
        )
    }
}

pub(super) fn flow_watches(
    src: &Source<'_>,
    raw: &[Spanned<RawWatchFlow>],
    default_region: Option<&str>,
) -> Result<Vec<FlowWatch>, ConfigError> {
    let file: Arc<Path> = Arc::from(src.path);
    let mut flows: Vec<FlowWatch> = Vec::new();
    for (index, table) in raw.iter().enumerate() {
        let key = |name: &str| format!("watch_flow[{index}].{name}");
        let w = table.get_ref();
        let Some(flow_value) = &w.flow else {
            return Err(src.invalid(
                table.span(),
                &format!("watch_flow[{index}]"),
                "missing flow (a flow id or flow arn)",
            ));
        };
        let flow = parse_flow(flow_value.get_ref())
            .map_err(|e| src.invalid(flow_value.span(), &key("flow"), e.0))?;
        let alias = match &w.alias {
            None => None,
            Some(value) => {
                let alias = parse_alias(value.get_ref())
                    .map_err(|e| src.invalid(value.span(), &key("alias"), e.0))?;
                if alias.flow.as_deref().is_some_and(|f| f != flow.id) {
                    return Err(src.invalid(
                        value.span(),
                        &key("alias"),
                        format!("the alias arn names another flow than {}", flow.id),
                    ));
                }
                Some(alias.id)
            }
        };
        let region = match &w.region {
            None => default_region.map(str::to_string),
            Some(value) => {
                check_region(value.get_ref())
                    .map_err(|e| src.invalid(value.span(), &key("region"), e.0))?;
                Some(value.get_ref().clone())
            }
        };
        let since = match &w.since {
            None => Since::DaemonStart,
            Some(value) => parse_since(value.get_ref())
                .map_err(|problem| src.invalid(value.span(), &key("since"), problem))?,
        };
        let labels = super::watches::labels(src, w.labels.as_ref(), &key("labels"))?;
        let found = FlowWatch {
            flow: flow.id,
            alias,
            region,
            since,
            labels: Arc::new(labels),
            source: file.clone(),
        };
        if flows.iter().any(|f| f.key() == found.key()) {
            return Err(src.invalid(
                table.span(),
                &format!("watch_flow[{index}]"),
                format!("the flow {} is listed twice", found.key()),
            ));
        }
        flows.push(found);
    }
    Ok(flows)
}

/// `"1h"` (a duration ago) or an RFC 3339 instant.
fn parse_since(text: &str) -> Result<Since, String> {
    let text = text.trim();
    if let Ok(ago) = humantime::parse_duration(text) {
        return Ok(Since::Ago(ago));
    }
    humantime::parse_rfc3339_weak(text)
        .map(Since::At)
        .map_err(|_| {
            format!(
                "must be a duration ago such as \"1h\" or an RFC 3339 time such as \"2026-11-25T10:00:00Z\", not {text:?}"
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::fixture::*;

    const FLOW: &str = "[[watch_flow]]\nflow = \"FLOW123456\"\n";

    #[test]
    fn a_config_whose_only_watches_are_flow_tables_is_valid() {
        let dir = Dir::new();
        let config = dir
            .load(&format!(
                "[aws]\nregion = \"eu-west-1\"\n{FLOW}alias = \"ALIAS12345\"\nsince = \"1h\"\nlabels = {{ team = \"search\" }}\n"
            ))
            .unwrap();
        assert!(config.watches.is_empty());
        let [flow] = config.flows.as_slice() else {
            panic!("{:?}", config.flows);
        };
        assert_eq!(flow.flow, "FLOW123456");
        assert_eq!(flow.alias.as_deref(), Some("ALIAS12345"));
        assert_eq!(flow.region.as_deref(), Some("eu-west-1"));
        assert_eq!(flow.since, Since::Ago(Duration::from_secs(3600)));
        assert_eq!(flow.labels["team"], "search");
        assert!(
            config
                .summary_lines()
                .last()
                .unwrap()
                .contains("1 flow discovered")
        );
    }

    #[test]
    fn flow_and_alias_arns_are_reduced_to_ids_and_since_takes_rfc_3339() {
        let dir = Dir::new();
        let config = dir
            .load(
                "[[watch_flow]]\nflow = \"arn:aws:bedrock:us-east-1:123456789012:flow/FLOW123456\"\n\
                 alias = \"arn:aws:bedrock:us-east-1:123456789012:flow/FLOW123456/alias/ALIAS12345\"\n\
                 since = \"2026-11-25T10:00:00Z\"\n",
            )
            .unwrap();
        let flow = &config.flows[0];
        assert_eq!(
            (flow.flow.as_str(), flow.alias.as_deref()),
            ("FLOW123456", Some("ALIAS12345"))
        );
        assert_eq!(
            flow.since,
            Since::At(humantime::parse_rfc3339("2026-11-25T10:00:00Z").unwrap())
        );
        assert_eq!(
            flow.since.resolve(SystemTime::now()),
            humantime::parse_rfc3339("2026-11-25T10:00:00Z").unwrap()
        );
    }

    #[test]
    fn bad_flow_tables_name_the_table_and_key() {
        let dir = Dir::new();
        assert!(
            dir.error("[[watch_flow]]\nflow = \"short\"\n")
                .starts_with("{main}:2:8: watch_flow[0].flow: "),
            "{}",
            dir.error("[[watch_flow]]\nflow = \"short\"\n")
        );
        assert_eq!(
            dir.error(&format!("{FLOW}since = \"yesterday\"\n")),
            "{main}:3:9: watch_flow[0].since: must be a duration ago such as \"1h\" or an RFC 3339 time such as \"2026-11-25T10:00:00Z\", not \"yesterday\""
        );
        assert!(
            dir.error(&format!("{FLOW}regoin = \"x\"\n")).contains(
                ".regoin: unknown key, expected one of `flow`, `alias`, `region`, `since`, `labels`"
            ),
            "{}",
            dir.error(&format!("{FLOW}regoin = \"x\"\n"))
        );
        assert!(
            dir.error(&format!("{FLOW}{FLOW}"))
                .contains("watch_flow[1]: the flow /FLOW123456/* is listed twice"),
            "{}",
            dir.error(&format!("{FLOW}{FLOW}"))
        );
        assert!(
            dir.error("[[watch_flow]]\nalias = \"ALIAS12345\"\n")
                .contains("watch_flow[0]: missing flow")
        );
    }
}
