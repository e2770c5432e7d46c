//! The identifiers a request names, checked against the Bedrock Agent Runtime
//! API's own patterns. In: one decoded path label (an id or an ARN). Out: the
//! bare id, plus the flow and alias an ARN embeds; `None` when the label
//! breaks the pattern (the server answers 400 ValidationException).
//! The scenario parser uses the same checks on the ids a scenario declares.

/// A flow identifier as the API accepts it: `[0-9a-zA-Z]{10}` or a flow ARN.
pub fn flow(label: &str) -> Option<&str> {
    if let Some(resource) = arn_resource(label) {
        let id = resource.strip_prefix("flow/")?;
        return is_flow_id(id).then_some(id);
    }
    is_flow_id(label).then_some(label)
}

/// An alias identifier: `TSTALIASID`, up to 10 alphanumerics, or an alias ARN.
/// Returns (flow id from the ARN, alias id).
pub fn alias(label: &str) -> Option<(Option<&str>, &str)> {
    if let Some(resource) = arn_resource(label) {
        let (flow, alias) = flow_and_alias(resource)?;
        return Some((Some(flow), alias));
    }
    is_alias_id(label).then_some((None, label))
}

/// An execution identifier: `[a-zA-Z0-9-]{1,36}` or an execution ARN.
/// Returns ((flow id, alias id) from the ARN, execution id).
pub fn execution(label: &str) -> Option<(Option<(&str, &str)>, &str)> {
    if let Some(resource) = arn_resource(label) {
        let (head, id) = resource.rsplit_once("/execution/")?;
        let (flow, alias) = flow_and_alias(head)?;
        return is_execution_id(id).then_some((Some((flow, alias)), id));
    }
    is_execution_id(label).then_some((None, label))
}

/// `[0-9a-zA-Z]{10}`.
pub fn is_flow_id(s: &str) -> bool {
    s.len() == 10 && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// `TSTALIASID` or `[0-9a-zA-Z]{1,10}` (the test alias is itself alphanumeric).
pub fn is_alias_id(s: &str) -> bool {
    (1..=10).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// `[a-zA-Z0-9-]{1,36}`.
pub fn is_execution_id(s: &str) -> bool {
    (1..=36).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// `flow/F/alias/A` with a 10-character flow id and a 10-character alias id.
fn flow_and_alias(resource: &str) -> Option<(&str, &str)> {
    let rest = resource.strip_prefix("flow/")?;
    let (flow, alias) = rest.split_once("/alias/")?;
    (is_flow_id(flow) && alias.len() == 10 && is_alias_id(alias)).then_some((flow, alias))
}

/// The resource part of `arn:aws(-[^:]+)?:bedrock:[a-z0-9-]{1,20}:[0-9]{12}:RESOURCE`.
fn arn_resource(s: &str) -> Option<&str> {
    let mut parts = s.splitn(6, ':');
    let (arn, partition, service, region, account, resource) = (
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
    );
    let partition_ok = partition == "aws"
        || partition
            .strip_prefix("aws-")
            .is_some_and(|rest| !rest.is_empty());
    let region_ok = (1..=20).contains(&region.len())
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    let account_ok = account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit());
    (arn == "arn" && partition_ok && service == "bedrock" && region_ok && account_ok)
        .then_some(resource)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARN: &str = "arn:aws:bedrock:us-east-1:123456789012:flow/FLOW123456/alias/ALIAS12345";

    #[test]
    fn bare_ids_pass_when_they_match_the_api_patterns() {
        assert_eq!(flow("FLOW123456"), Some("FLOW123456"));
        assert_eq!(alias("TSTALIASID"), Some((None, "TSTALIASID")));
        assert_eq!(execution("run-0001"), Some((None, "run-0001")));
    }

    #[test]
    fn arns_yield_the_ids_they_embed() {
        assert_eq!(
            flow("arn:aws:bedrock:us-east-1:123456789012:flow/FLOW123456"),
            Some("FLOW123456")
        );
        assert_eq!(alias(ARN), Some((Some("FLOW123456"), "ALIAS12345")));
        let exec = format!("{ARN}/execution/run-0001");
        assert_eq!(
            execution(&exec),
            Some((Some(("FLOW123456", "ALIAS12345")), "run-0001"))
        );
        let gov = "arn:aws-us-gov:bedrock:us-gov-west-1:123456789012:flow/FLOW123456";
        assert_eq!(flow(gov), Some("FLOW123456"));
    }

    #[test]
    fn ids_breaking_the_patterns_are_refused() {
        for bad in ["FLOW12345", "FLOW1234567", "FLOW_12345", ""] {
            assert_eq!(flow(bad), None, "{bad:?}");
        }
        assert_eq!(alias("ALIAS123456"), None);
        assert_eq!(alias("AL-1"), None);
        assert_eq!(execution(&"a".repeat(37)), None);
        assert_eq!(execution("run_1"), None);
        assert_eq!(
            execution(
                "arn:aws:bedrock:us-east-1:12345:flow/FLOW123456/alias/ALIAS12345/execution/x"
            ),
            None
        );
        assert_eq!(
            flow("arn:aws:s3:us-east-1:123456789012:flow/FLOW123456"),
            None
        );
    }
}
