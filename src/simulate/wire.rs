//! The service's REST-JSON wire format, both ways. In: a request's method,
//! path and query. Out: the `Operation` it names, and `Reply` values (status,
//! headers, JSON body) shaped exactly as aws-sdk-bedrockagentruntime parses
//! them: errors carry `x-amzn-ErrorType` and a `{"message": ...}` body,
//! timestamps are RFC 3339 date-time strings. Pure: no sockets here.

use std::time::{Duration, SystemTime};

use aws_smithy_types::DateTime;
use aws_smithy_types::date_time::Format;

/// What the simulator answered, as counted in `Stats`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Answer {
    /// 200 with a body.
    Ok,
    /// 429 ThrottlingException.
    Throttled,
    /// 404 ResourceNotFoundException.
    NotFound,
    /// 400 ValidationException.
    Validation,
    /// 403 AccessDeniedException.
    AccessDenied,
    /// 500 InternalServerException.
    Internal,
    /// 403 MissingAuthenticationTokenException (no SigV4 `Authorization` header).
    Unauthenticated,
    /// 404 UnknownOperationException (a path or method the API does not have).
    UnknownOperation,
}

impl Answer {
    pub const ALL: [Answer; 8] = [
        Answer::Ok,
        Answer::Throttled,
        Answer::NotFound,
        Answer::Validation,
        Answer::AccessDenied,
        Answer::Internal,
        Answer::Unauthenticated,
        Answer::UnknownOperation,
    ];

    pub fn status(self) -> u16 {
        match self {
            Answer::Ok => 200,
            Answer::Throttled => 429,
            Answer::NotFound | Answer::UnknownOperation => 404,
            Answer::Validation => 400,
            Answer::AccessDenied | Answer::Unauthenticated => 403,
            Answer::Internal => 500,
        }
    }

    /// The error code the SDK matches on; `None` for a success.
    pub fn code(self) -> Option<&'static str> {
        Some(match self {
            Answer::Ok => return None,
            Answer::Throttled => "ThrottlingException",
            Answer::NotFound => "ResourceNotFoundException",
            Answer::Validation => "ValidationException",
            Answer::AccessDenied => "AccessDeniedException",
            Answer::Internal => "InternalServerException",
            Answer::Unauthenticated => "MissingAuthenticationTokenException",
            Answer::UnknownOperation => "UnknownOperationException",
        })
    }
}

/// One HTTP answer, before the server adds `x-amzn-RequestId`.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub answer: Answer,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
}

impl Reply {
    pub fn ok(body: serde_json::Value) -> Reply {
        Reply {
            answer: Answer::Ok,
            headers: vec![("content-type", "application/json".to_owned())],
            body: body.to_string(),
        }
    }

    /// An error as the service sends it. Service errors carry the coral suffix
    /// real AWS adds to `x-amzn-ErrorType` (the SDK strips it at the first `:`).
    pub fn error(answer: Answer, message: impl Into<String>) -> Reply {
        let code = answer.code().unwrap_or("InternalServerException");
        let error_type = match answer {
            Answer::Unauthenticated | Answer::UnknownOperation => code.to_owned(),
            _ => format!("{code}:http://internal.amazon.com/coral/com.amazon.bedrock/"),
        };
        Reply {
            answer,
            headers: vec![
                ("content-type", "application/json".to_owned()),
                ("x-amzn-errortype", error_type),
            ],
            body: serde_json::json!({ "message": message.into() }).to_string(),
        }
    }
}

/// A request the simulator understands; labels are percent-decoded but not yet
/// checked against the API's patterns.
#[derive(Debug, Clone, PartialEq)]
pub enum Operation {
    GetFlowExecution {
        flow: String,
        alias: String,
        execution: String,
    },
    ListFlowExecutions {
        flow: String,
        query: Query,
    },
    ListFlowExecutionEvents {
        flow: String,
        alias: String,
        execution: String,
        query: Query,
    },
}

impl Operation {
    /// The execution label named in the path, for the request log ("" for a listing).
    pub fn execution_label(&self) -> &str {
        match self {
            Operation::GetFlowExecution { execution, .. }
            | Operation::ListFlowExecutionEvents { execution, .. } => execution,
            Operation::ListFlowExecutions { .. } => "",
        }
    }

    /// The API operation's name, for the request log.
    pub fn name(&self) -> &'static str {
        match self {
            Operation::GetFlowExecution { .. } => "GetFlowExecution",
            Operation::ListFlowExecutions { .. } => "ListFlowExecutions",
            Operation::ListFlowExecutionEvents { .. } => "ListFlowExecutionEvents",
        }
    }
}

/// Decoded query parameters, in order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Query(pub Vec<(String, String)>);

impl Query {
    pub fn parse(raw: Option<&str>) -> Query {
        let pairs = raw
            .unwrap_or("")
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (percent_decode(k), percent_decode(v))
            })
            .collect();
        Query(pairs)
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Maps a GET path onto an operation; anything else is `None` (UnknownOperation).
pub fn route(method: &str, path: &str, query: Option<&str>) -> Option<Operation> {
    if method != "GET" {
        return None;
    }
    let segments: Vec<String> = path
        .strip_prefix('/')?
        .split('/')
        .map(percent_decode)
        .collect();
    let s: Vec<&str> = segments.iter().map(String::as_str).collect();
    let owned = |x: &str| x.to_owned();
    match s.as_slice() {
        ["flows", flow, "aliases", alias, "executions", exec] => {
            Some(Operation::GetFlowExecution {
                flow: owned(flow),
                alias: owned(alias),
                execution: owned(exec),
            })
        }
        ["flows", flow, "executions"] => Some(Operation::ListFlowExecutions {
            flow: owned(flow),
            query: Query::parse(query),
        }),
        [
            "flows",
            flow,
            "aliases",
            alias,
            "executions",
            exec,
            "events",
        ] => Some(Operation::ListFlowExecutionEvents {
            flow: owned(flow),
            alias: owned(alias),
            execution: owned(exec),
            query: Query::parse(query),
        }),
        _ => None,
    }
}

/// `%XX` → byte; malformed escapes stay as written; invalid UTF-8 is replaced
/// (such a label then fails the identifier patterns).
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// RFC 3339 date-time (`2025-01-01T00:00:00.123Z`) of `origin + offset`.
pub fn timestamp(origin: SystemTime, offset: Duration) -> String {
    DateTime::from(origin + offset)
        .fmt(Format::DateTime)
        .expect("times near now are within the date-time range")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arn_labels_are_percent_decoded() {
        let op = route(
            "GET",
            "/flows/FLOW123456/aliases/arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Aflow%2FFLOW123456%2Falias%2FALIAS12345/executions/run-1",
            None,
        );
        let Some(Operation::GetFlowExecution { alias, .. }) = op else {
            panic!("not routed: {op:?}");
        };
        assert_eq!(
            alias,
            "arn:aws:bedrock:us-east-1:123456789012:flow/FLOW123456/alias/ALIAS12345"
        );
    }

    #[test]
    fn listing_queries_are_decoded() {
        let op = route(
            "GET",
            "/flows/F/executions",
            Some("maxResults=2&nextToken=a%2Bb"),
        );
        let Some(Operation::ListFlowExecutions { query, .. }) = op else {
            panic!("not routed: {op:?}");
        };
        assert_eq!(query.get("maxResults"), Some("2"));
        assert_eq!(query.get("nextToken"), Some("a+b"));
    }

    #[test]
    fn other_paths_and_methods_are_unknown_operations() {
        assert_eq!(route("POST", "/flows/F/executions", None), None);
        assert_eq!(route("GET", "/flows/F", None), None);
        assert_eq!(route("GET", "", None), None);
    }

    #[test]
    fn malformed_escapes_never_panic() {
        assert_eq!(percent_decode("%"), "%");
        assert_eq!(percent_decode("a%2"), "a%2");
        assert_eq!(percent_decode("%zz%41"), "%zzA");
        assert_eq!(percent_decode("%ff"), "\u{fffd}");
    }
}
