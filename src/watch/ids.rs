//! Parses flow, alias and execution identifiers and ARNs once, against the
//! API's own patterns. A parsed `ExecutionRef` is valid everywhere after.
//! (Skeleton: the config helper fills this in.)

/// An execution as the API names it: the three ids to send on the wire, plus
/// what an ARN told us (region, and the full execution ARN when known).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ExecutionRef {
    /// Flow id: 10 alphanumerics.
    pub flow: String,
    /// Alias id: alphanumerics or `TSTALIASID`.
    pub alias: String,
    /// Execution id: `[a-zA-Z0-9-]{1,36}`.
    pub execution: String,
    /// Region named by an ARN or by the watch's `region` key.
    pub region: Option<String>,
    /// `arn:PARTITION:bedrock:REGION:ACCOUNT:flow/F/alias/A/execution/E`, when
    /// the config gave it or gave enough (partition, region, account) to build it.
    pub arn: Option<String>,
}

/// Why an identifier was refused; the message names the value and the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct IdError(pub String);

impl ExecutionRef {
    /// From a full execution ARN.
    pub fn parse_arn(arn: &str) -> Result<ExecutionRef, IdError> {
        let _ = arn;
        todo!("config helper")
    }

    /// From the `flow`, `alias`, `execution` keys (each an id or an ARN) and an
    /// optional per-watch region; parts that disagree are an error.
    pub fn parse_parts(
        flow: &str,
        alias: &str,
        execution: &str,
        region: Option<&str>,
    ) -> Result<ExecutionRef, IdError> {
        let _ = (flow, alias, execution, region);
        todo!("config helper")
    }
}
