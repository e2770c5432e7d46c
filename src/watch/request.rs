//! A watch as the HTTP API is given it (issue 10): `{"execution_arn": ..}` or
//! `{"flow", "alias", "execution", "region"}`, with optional `labels`. In: the
//! request's JSON (or the copy saved in `[state]`). Out: a `Watch` with
//! `source = "api"`, through the same id rules as a `[[watch]]` table, or a
//! `FieldError` naming the field at fault.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::Watch;
use super::ids::{ExecutionRef, check_region};

/// The `source` of every watch added over the API.
pub const API_SOURCE: &str = "api";

/// The body of `POST /v1/watches`, and what `[state]` keeps of an API watch.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatchRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flow: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// Why a request names no valid watch: the field, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct FieldError {
    pub field: String,
    pub problem: String,
}

fn refuse(field: &str, problem: impl Into<String>) -> FieldError {
    FieldError {
        field: field.to_string(),
        problem: problem.into(),
    }
}

impl WatchRequest {
    /// Parses a request body; malformed JSON or an unknown key is an error
    /// about the field serde names (or `body`).
    pub fn from_json(bytes: &[u8]) -> Result<WatchRequest, FieldError> {
        serde_json::from_slice(bytes).map_err(|e| {
            let text = e.to_string();
            let field = text
                .strip_prefix("unknown field `")
                .and_then(|rest| rest.split('`').next())
                .unwrap_or("body");
            refuse(field, text.clone())
        })
    }

    /// The watch, by the rules a `[[watch]]` table follows; its region is
    /// `default_region` when it names none.
    pub fn watch(&self, default_region: Option<&str>) -> Result<Watch, FieldError> {
        let parts = (&self.flow, &self.alias, &self.execution);
        let mut target = match (&self.execution_arn, parts) {
            (Some(arn), (None, None, None)) => {
                let target =
                    ExecutionRef::parse_arn(arn).map_err(|e| refuse("execution_arn", e.0))?;
                if let Some(region) = &self.region {
                    check_region(region).map_err(|e| refuse("region", e.0))?;
                    if target.region.as_deref() != Some(region.as_str()) {
                        return Err(refuse(
                            "region",
                            format!(
                                "region {region} differs from the execution arn's region {}",
                                target.region.as_deref().unwrap_or("-")
                            ),
                        ));
                    }
                }
                target
            }
            (None, (Some(flow), Some(alias), Some(execution))) => {
                ExecutionRef::parse_parts_located(flow, alias, execution, self.region.as_deref())
                    .map_err(|(part, e)| refuse(part.key(), e.0))?
            }
            (Some(_), _) => {
                return Err(refuse(
                    "execution_arn",
                    "give either execution_arn or flow, alias and execution, not both",
                ));
            }
            (None, (flow, alias, execution)) => {
                let missing: Vec<&str> =
                    [("flow", flow), ("alias", alias), ("execution", execution)]
                        .into_iter()
                        .filter(|(_, v)| v.is_none())
                        .map(|(name, _)| name)
                        .collect();
                if missing.len() == 3 {
                    return Err(refuse(
                        "execution_arn",
                        "missing execution_arn, or flow, alias and execution",
                    ));
                }
                return Err(refuse(
                    missing[0],
                    format!(
                        "missing {} (give flow, alias and execution, or execution_arn)",
                        missing.join(" and ")
                    ),
                ));
            }
        };
        if target.region.is_none() {
            let region = default_region.ok_or_else(|| {
                refuse(
                    "region",
                    "no region: give one, or an execution_arn (the daemon has no default region)",
                )
            })?;
            target.region = Some(Arc::from(region));
        }
        if self.labels.keys().any(String::is_empty) {
            return Err(refuse("labels", "a label name must not be empty"));
        }
        Ok(Watch {
            target,
            labels: Arc::new(self.labels.clone()),
            source: Arc::from(Path::new(API_SOURCE)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARN: &str = "arn:aws:bedrock:us-east-1:123456789012:flow/FLOW123456/alias/ALIAS12345/execution/run-0001";

    fn field(body: &str) -> String {
        WatchRequest::from_json(body.as_bytes())
            .and_then(|r| r.watch(Some("us-east-1")))
            .unwrap_err()
            .field
    }

    #[test]
    fn an_arn_and_its_parts_name_one_watch() {
        let by_arn = WatchRequest::from_json(format!("{{\"execution_arn\":\"{ARN}\"}}").as_bytes())
            .unwrap()
            .watch(None)
            .unwrap();
        let body = r#"{"flow":"FLOW123456","alias":"ALIAS12345","execution":"run-0001","labels":{"team":"a"}}"#;
        let by_parts = WatchRequest::from_json(body.as_bytes())
            .unwrap()
            .watch(Some("us-east-1"))
            .unwrap();
        assert_eq!(by_arn.key(), by_parts.key());
        assert_eq!(&*by_parts.source, Path::new("api"));
        assert_eq!(by_parts.labels["team"], "a");
    }

    #[test]
    fn each_bad_input_names_its_field() {
        assert_eq!(field(r#"{"execution_arn":"arn:nope"}"#), "execution_arn");
        assert_eq!(
            field(r#"{"flow":"short","alias":"A","execution":"e"}"#),
            "flow"
        );
        assert_eq!(field(r#"{"flow":"FLOW123456","alias":"A"}"#), "execution");
        assert_eq!(
            field(r#"{"flow":"FLOW123456","alias":"A","execution":"e","region":"NO"}"#),
            "region"
        );
        assert_eq!(
            field(r#"{"execution_arn":"x","flow":"FLOW123456"}"#),
            "execution_arn"
        );
        assert_eq!(field(r#"{"executionArn":"x"}"#), "executionArn");
        assert_eq!(field(r#"{}"#), "execution_arn");
        assert_eq!(field(r#"not json"#), "body");
        let empty_label = format!("{{\"execution_arn\":\"{ARN}\",\"labels\":{{\"\":\"x\"}}}}");
        assert_eq!(field(&empty_label), "labels");
    }
}
