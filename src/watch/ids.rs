//! Parses flow, alias and execution identifiers and ARNs once, against the
//! API's own patterns. In: the strings a watch gives (`execution_arn`, or
//! `flow` + `alias` + `execution` + optional `region`). Out: an `ExecutionRef`
//! that is valid everywhere after, or an `IdError` naming the value and the rule.
//!
//! The patterns are the ones `GetFlowExecution` documents, checked by hand:
//! flow id `[0-9a-zA-Z]{10}`, alias id `[0-9a-zA-Z]{1,10}` (covers
//! `TSTALIASID`), execution id `[a-zA-Z0-9-]{1,36}`, and ARNs
//! `arn:PARTITION:bedrock:REGION:ACCOUNT:flow/F[/alias/A[/execution/E]]`
//! with PARTITION `aws(-[a-z]+)*`, REGION `[a-z0-9-]{1,20}`, ACCOUNT 12 digits.

use std::sync::Arc;

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
    /// Region named by an ARN or by the watch's `region` key. Shared: a config
    /// names few regions for many watches.
    pub region: Option<Arc<str>>,
    /// `arn:PARTITION:bedrock:REGION:ACCOUNT:flow/F/alias/A/execution/E`, when
    /// the config gave it or gave enough (partition, region, account) to build it.
    /// Shared with the watch's key, which is this ARN.
    pub arn: Option<Arc<str>>,
}

/// Why an identifier was refused; the message names the value and the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct IdError(pub String);

/// Which of the by-parts keys an `IdError` is about, so the config can point
/// at that key's line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Flow,
    Alias,
    Execution,
    Region,
}

impl Part {
    /// The watch key this part comes from.
    pub fn key(self) -> &'static str {
        match self {
            Part::Flow => "flow",
            Part::Alias => "alias",
            Part::Execution => "execution",
            Part::Region => "region",
        }
    }
}

/// `arn:PARTITION:bedrock:REGION:ACCOUNT:`: where an ARN says a resource lives.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ArnScope {
    partition: String,
    region: String,
    account: String,
}

/// One of `flow`, `alias`, `execution` after parsing: the id it names, plus
/// what its ARN (if it was one) said about the parents and the scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Named {
    pub id: String,
    /// The flow id an alias or execution ARN names.
    pub flow: Option<String>,
    /// The alias id an execution ARN names.
    pub alias: Option<String>,
    scope: Option<ArnScope>,
}

impl ExecutionRef {
    /// From a full execution ARN.
    pub fn parse_arn(arn: &str) -> Result<ExecutionRef, IdError> {
        let (scope, resource) = parse_scope(arn, "an execution arn")?;
        let (flow, alias, execution) = match split_resource(resource) {
            Some((flow, Some(alias), Some(execution))) => (flow, alias, execution),
            _ => {
                return Err(IdError(format!(
                    "{arn:?} is not an execution arn (arn:aws:bedrock:REGION:ACCOUNT:flow/FLOW/alias/ALIAS/execution/ID)"
                )));
            }
        };
        check_flow_id(flow, arn)?;
        check_alias_id(alias, arn)?;
        check_execution_id(execution, arn)?;
        Ok(ExecutionRef {
            flow: flow.to_string(),
            alias: alias.to_string(),
            execution: execution.to_string(),
            arn: Some(build_arn(&scope, flow, alias, execution).into()),
            region: Some(scope.region.into()),
        })
    }

    /// From the `flow`, `alias`, `execution` keys (each an id or an ARN) and an
    /// optional per-watch region; parts that disagree are an error.
    pub fn parse_parts(
        flow: &str,
        alias: &str,
        execution: &str,
        region: Option<&str>,
    ) -> Result<ExecutionRef, IdError> {
        Self::parse_parts_located(flow, alias, execution, region).map_err(|(_, e)| e)
    }

    /// Like `parse_parts`, and also says which key the error is about: the
    /// malformed one, or the later of two that disagree.
    pub fn parse_parts_located(
        flow: &str,
        alias: &str,
        execution: &str,
        region: Option<&str>,
    ) -> Result<ExecutionRef, (Part, IdError)> {
        let flow = parse_flow(flow).map_err(|e| (Part::Flow, e))?;
        let alias = parse_alias(alias).map_err(|e| (Part::Alias, e))?;
        let execution = parse_execution(execution).map_err(|e| (Part::Execution, e))?;
        if let Some(region) = region {
            check_region(region).map_err(|e| (Part::Region, e))?;
        }

        // Parents named inside an ARN must be the ones the other keys give.
        let parents = [
            (Part::Alias, "flow", &alias.flow, &flow.id),
            (Part::Execution, "flow", &execution.flow, &flow.id),
            (Part::Execution, "alias", &execution.alias, &alias.id),
        ];
        for (part, parent, named, given) in parents {
            if let Some(named) = named
                && named != given
            {
                return Err((
                    part,
                    IdError(format!(
                        "{} arn names {parent} {named} but {parent} is {given}",
                        part.key()
                    )),
                ));
            }
        }

        // Every ARN given must live in the same partition, region and account.
        let mut scope: Option<(Part, &ArnScope)> = None;
        for (part, named) in [
            (Part::Flow, &flow),
            (Part::Alias, &alias),
            (Part::Execution, &execution),
        ] {
            let Some(this) = &named.scope else { continue };
            match scope {
                None => scope = Some((part, this)),
                Some((first_part, first)) => {
                    compare_scopes(first_part, first, part, this).map_err(|e| (part, e))?
                }
            }
        }
        if let (Some(region), Some((part, scope))) = (region, scope)
            && region != scope.region
        {
            return Err((
                Part::Region,
                IdError(format!(
                    "region {region} differs from the {} arn's region {}",
                    part.key(),
                    scope.region
                )),
            ));
        }

        let scope = scope.map(|(_, s)| s);
        Ok(ExecutionRef {
            arn: scope.map(|s| build_arn(s, &flow.id, &alias.id, &execution.id).into()),
            region: scope
                .map(|s| Arc::from(s.region.as_str()))
                .or(region.map(Arc::from)),
            flow: flow.id,
            alias: alias.id,
            execution: execution.id,
        })
    }
}

/// Checks a region name such as `us-east-1` (`[a-z0-9-]{1,20}`).
pub fn check_region(region: &str) -> Result<(), IdError> {
    if is_region(region) {
        Ok(())
    } else {
        Err(IdError(format!(
            "{region:?} is not a region name (1 to 20 lowercase letters, digits or '-')"
        )))
    }
}

fn compare_scopes(
    first_part: Part,
    first: &ArnScope,
    part: Part,
    this: &ArnScope,
) -> Result<(), IdError> {
    let fields = [
        ("partition", &first.partition, &this.partition),
        ("region", &first.region, &this.region),
        ("account", &first.account, &this.account),
    ];
    for (what, a, b) in fields {
        if a != b {
            return Err(IdError(format!(
                "{} arn's {what} {b} differs from the {} arn's {what} {a}",
                part.key(),
                first_part.key()
            )));
        }
    }
    Ok(())
}

fn build_arn(scope: &ArnScope, flow: &str, alias: &str, execution: &str) -> String {
    format!(
        "arn:{}:bedrock:{}:{}:flow/{flow}/alias/{alias}/execution/{execution}",
        scope.partition, scope.region, scope.account
    )
}

/// A `flowIdentifier`: a flow id or a flow ARN.
pub fn parse_flow(s: &str) -> Result<Named, IdError> {
    if !s.starts_with("arn:") {
        return plain_id(
            s,
            is_flow_id,
            "a flow id (10 letters or digits) or flow arn",
        );
    }
    let (scope, resource) = parse_scope(s, "a flow arn")?;
    let Some((flow, None, None)) = split_resource(resource) else {
        return Err(IdError(format!(
            "{s:?} is not a flow arn (arn:aws:bedrock:REGION:ACCOUNT:flow/FLOW)"
        )));
    };
    check_flow_id(flow, s)?;
    Ok(Named {
        id: flow.to_string(),
        flow: None,
        alias: None,
        scope: Some(scope),
    })
}

/// A `flowAliasIdentifier`: an alias id or an alias ARN.
pub fn parse_alias(s: &str) -> Result<Named, IdError> {
    if !s.starts_with("arn:") {
        return plain_id(
            s,
            is_alias_id,
            "an alias id (1 to 10 letters or digits) or alias arn",
        );
    }
    let (scope, resource) = parse_scope(s, "an alias arn")?;
    let Some((flow, Some(alias), None)) = split_resource(resource) else {
        return Err(IdError(format!(
            "{s:?} is not an alias arn (arn:aws:bedrock:REGION:ACCOUNT:flow/FLOW/alias/ALIAS)"
        )));
    };
    check_flow_id(flow, s)?;
    check_alias_id(alias, s)?;
    Ok(Named {
        id: alias.to_string(),
        flow: Some(flow.to_string()),
        alias: None,
        scope: Some(scope),
    })
}

/// An `executionIdentifier`: an execution id or an execution ARN.
pub fn parse_execution(s: &str) -> Result<Named, IdError> {
    if !s.starts_with("arn:") {
        return plain_id(
            s,
            is_execution_id,
            "an execution id (1 to 36 letters, digits or '-') or execution arn",
        );
    }
    let parsed = ExecutionRef::parse_arn(s)?;
    let (scope, _) = parse_scope(s, "an execution arn")?;
    Ok(Named {
        id: parsed.execution,
        flow: Some(parsed.flow),
        alias: Some(parsed.alias),
        scope: Some(scope),
    })
}

/// An id given as itself (not inside an ARN): it names no parents.
fn plain_id(s: &str, valid: fn(&str) -> bool, rule: &str) -> Result<Named, IdError> {
    if !valid(s) {
        return Err(IdError(format!("{s:?} is not {rule}")));
    }
    Ok(Named {
        id: s.to_string(),
        flow: None,
        alias: None,
        scope: None,
    })
}

/// Splits `arn:PARTITION:bedrock:REGION:ACCOUNT:RESOURCE` and checks the
/// scope; returns the scope and the unchecked resource.
fn parse_scope<'a>(arn: &'a str, what: &str) -> Result<(ArnScope, &'a str), IdError> {
    let fields: Vec<&str> = arn.splitn(6, ':').collect();
    let [prefix, partition, service, region, account, resource] = fields[..] else {
        return Err(IdError(format!(
            "{arn:?} is not {what} (arn:PARTITION:bedrock:REGION:ACCOUNT:...)"
        )));
    };
    let bad = |rule: &str| IdError(format!("{arn:?} is not {what}: {rule}"));
    if prefix != "arn" {
        return Err(bad("it must start with arn:"));
    }
    if !is_partition(partition) {
        return Err(bad(
            "the partition must be aws, aws-cn, aws-us-gov or similar",
        ));
    }
    if service != "bedrock" {
        return Err(bad("the service must be bedrock"));
    }
    if !is_region(region) {
        return Err(bad(
            "the region must be 1 to 20 lowercase letters, digits or '-'",
        ));
    }
    if !is_account(account) {
        return Err(bad("the account must be 12 digits"));
    }
    Ok((
        ArnScope {
            partition: partition.to_string(),
            region: region.to_string(),
            account: account.to_string(),
        },
        resource,
    ))
}

/// `flow/F`, `flow/F/alias/A` or `flow/F/alias/A/execution/E`, unchecked ids.
type Resource<'a> = (&'a str, Option<&'a str>, Option<&'a str>);

fn split_resource(resource: &str) -> Option<Resource<'_>> {
    let parts: Vec<&str> = resource.split('/').collect();
    match parts[..] {
        ["flow", flow] => Some((flow, None, None)),
        ["flow", flow, "alias", alias] => Some((flow, Some(alias), None)),
        ["flow", flow, "alias", alias, "execution", execution] => {
            Some((flow, Some(alias), Some(execution)))
        }
        _ => None,
    }
}

fn check_flow_id(flow: &str, arn: &str) -> Result<(), IdError> {
    if is_flow_id(flow) {
        return Ok(());
    }
    Err(IdError(format!(
        "{arn:?}: flow id {flow:?} must be 10 letters or digits"
    )))
}

fn check_alias_id(alias: &str, arn: &str) -> Result<(), IdError> {
    if is_alias_id(alias) {
        return Ok(());
    }
    Err(IdError(format!(
        "{arn:?}: alias id {alias:?} must be 1 to 10 letters or digits"
    )))
}

fn check_execution_id(execution: &str, arn: &str) -> Result<(), IdError> {
    if is_execution_id(execution) {
        return Ok(());
    }
    Err(IdError(format!(
        "{arn:?}: execution id {execution:?} must be 1 to 36 letters, digits or '-'"
    )))
}

fn is_flow_id(s: &str) -> bool {
    s.len() == 10 && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

fn is_alias_id(s: &str) -> bool {
    (1..=10).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// `[a-zA-Z0-9-]{1,36}`.
pub fn is_execution_id(s: &str) -> bool {
    (1..=36).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// `aws(-[a-z]+)*`: aws, aws-cn, aws-us-gov, aws-iso-b, ...
fn is_partition(s: &str) -> bool {
    let mut segments = s.split('-');
    segments.next() == Some("aws")
        && segments.all(|seg| !seg.is_empty() && seg.bytes().all(|b| b.is_ascii_lowercase()))
}

fn is_region(s: &str) -> bool {
    (1..=20).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

fn is_account(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARN: &str = "arn:aws:bedrock:us-east-1:123456789012:flow/FLOW123456/alias/ALIAS12345/execution/run-0001";

    #[test]
    fn an_execution_arn_gives_ids_region_and_itself() {
        let r = ExecutionRef::parse_arn(ARN).unwrap();
        assert_eq!(r.flow, "FLOW123456");
        assert_eq!(r.alias, "ALIAS12345");
        assert_eq!(r.execution, "run-0001");
        assert_eq!(r.region.as_deref(), Some("us-east-1"));
        assert_eq!(r.arn.as_deref(), Some(ARN));
    }

    #[test]
    fn other_partitions_are_accepted() {
        for p in ["aws-cn", "aws-us-gov", "aws-iso-b"] {
            let arn = ARN.replace("arn:aws:", &format!("arn:{p}:"));
            assert!(ExecutionRef::parse_arn(&arn).is_ok(), "{arn}");
        }
        for p in ["aw", "aws-", "aws-US", "gcp", "aws--cn"] {
            let arn = ARN.replace("arn:aws:", &format!("arn:{p}:"));
            let err = ExecutionRef::parse_arn(&arn).unwrap_err();
            assert!(err.0.contains("partition"), "{p}: {err}");
        }
    }

    #[test]
    fn a_short_account_is_refused_with_the_rule() {
        let arn = ARN.replace("123456789012", "12345");
        let err = ExecutionRef::parse_arn(&arn).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("{arn:?} is not an execution arn: the account must be 12 digits")
        );
    }

    #[test]
    fn an_alias_arn_is_not_an_execution_arn() {
        let arn = "arn:aws:bedrock:us-east-1:123456789012:flow/FLOW123456/alias/ALIAS12345";
        let err = ExecutionRef::parse_arn(arn).unwrap_err();
        assert!(
            err.0
                .starts_with(&format!("{arn:?} is not an execution arn")),
            "{err}"
        );
    }

    #[test]
    fn ids_follow_the_api_patterns() {
        assert!(is_flow_id("FLOW123456"));
        assert!(!is_flow_id("FLOW12345"));
        assert!(!is_flow_id("FLOW12345-"));
        assert!(is_alias_id("TSTALIASID"));
        assert!(is_alias_id("A"));
        assert!(!is_alias_id("ALIAS123456"));
        assert!(!is_alias_id(""));
        assert!(is_execution_id("run-0001"));
        assert!(is_execution_id(&"a".repeat(36)));
        assert!(!is_execution_id(&"a".repeat(37)));
        assert!(!is_execution_id("run_1"));
        assert!(is_region("us-gov-west-1"));
        assert!(!is_region("US-EAST-1"));
        assert!(!is_region(&"a".repeat(21)));
    }

    #[test]
    fn parts_without_an_arn_keep_the_watch_region_and_no_arn() {
        let r = ExecutionRef::parse_parts("FLOW123456", "TSTALIASID", "run-1", Some("eu-west-1"))
            .unwrap();
        assert_eq!(r.region.as_deref(), Some("eu-west-1"));
        assert_eq!(r.arn, None);
        assert_eq!(
            (r.flow.as_str(), r.alias.as_str(), r.execution.as_str()),
            ("FLOW123456", "TSTALIASID", "run-1")
        );
    }

    #[test]
    fn a_flow_arn_among_the_parts_builds_the_execution_arn() {
        let r = ExecutionRef::parse_parts(
            "arn:aws:bedrock:us-east-1:123456789012:flow/FLOW123456",
            "ALIAS12345",
            "run-0001",
            None,
        )
        .unwrap();
        assert_eq!(r.arn.as_deref(), Some(ARN));
        assert_eq!(r.region.as_deref(), Some("us-east-1"));
    }

    #[test]
    fn an_alias_arn_naming_another_flow_is_refused_at_the_alias() {
        let (part, err) = ExecutionRef::parse_parts_located(
            "FLOW123456",
            "arn:aws:bedrock:us-east-1:123456789012:flow/OTHER12345/alias/ALIAS12345",
            "run-1",
            None,
        )
        .unwrap_err();
        assert_eq!(part, Part::Alias);
        assert_eq!(
            err.to_string(),
            "alias arn names flow OTHER12345 but flow is FLOW123456"
        );
    }

    #[test]
    fn an_execution_arn_naming_another_alias_is_refused() {
        let (part, err) =
            ExecutionRef::parse_parts_located("FLOW123456", "ALIASOTHER", ARN, None).unwrap_err();
        assert_eq!(part, Part::Execution);
        assert_eq!(
            err.to_string(),
            "execution arn names alias ALIAS12345 but alias is ALIASOTHER"
        );
    }

    #[test]
    fn arns_in_different_regions_are_refused() {
        let (part, err) = ExecutionRef::parse_parts_located(
            "arn:aws:bedrock:us-east-1:123456789012:flow/FLOW123456",
            "arn:aws:bedrock:eu-west-1:123456789012:flow/FLOW123456/alias/ALIAS12345",
            "run-1",
            None,
        )
        .unwrap_err();
        assert_eq!(part, Part::Alias);
        assert_eq!(
            err.to_string(),
            "alias arn's region eu-west-1 differs from the flow arn's region us-east-1"
        );
    }

    #[test]
    fn a_watch_region_that_contradicts_an_arn_is_refused() {
        let (part, err) =
            ExecutionRef::parse_parts_located("FLOW123456", "ALIAS12345", ARN, Some("eu-west-1"))
                .unwrap_err();
        assert_eq!(part, Part::Region);
        assert_eq!(
            err.to_string(),
            "region eu-west-1 differs from the execution arn's region us-east-1"
        );
    }

    #[test]
    fn a_bad_flow_id_names_the_value_and_the_rule() {
        let (part, err) =
            ExecutionRef::parse_parts_located("flow-1", "ALIAS12345", "run-1", None).unwrap_err();
        assert_eq!(part, Part::Flow);
        assert_eq!(
            err.to_string(),
            "\"flow-1\" is not a flow id (10 letters or digits) or flow arn"
        );
    }
}
