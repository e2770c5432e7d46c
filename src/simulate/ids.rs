//! The identifiers a request names, checked with the same API patterns the
//! config uses (`watch::ids`). In: one decoded path label (an id or an ARN).
//! Out: the bare id, plus the flow and alias an ARN embeds; `None` when the
//! label breaks the pattern (the server answers 400 ValidationException).

use crate::watch::ids;

pub use ids::is_execution_id;

/// A flow identifier: `[0-9a-zA-Z]{10}` or a flow ARN.
pub fn flow(label: &str) -> Option<String> {
    ids::parse_flow(label).ok().map(|named| named.id)
}

/// An alias identifier, or an alias ARN: (flow id from the ARN, alias id).
pub fn alias(label: &str) -> Option<(Option<String>, String)> {
    ids::parse_alias(label)
        .ok()
        .map(|named| (named.flow, named.id))
}

/// An execution identifier, or an execution ARN: ((flow id, alias id) from
/// the ARN, execution id).
pub fn execution(label: &str) -> Option<(Option<(String, String)>, String)> {
    ids::parse_execution(label)
        .ok()
        .map(|named| (named.flow.zip(named.alias), named.id))
}
