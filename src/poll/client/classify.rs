//! Classification: one GetFlowExecution result (output or SDK error) into
//! what happened, as `PollOutcome` data. Pure, apart from reading the wall
//! clock for a `Retry-After` date on a response without a `Date` header.
//!
//! Reads the error's `code()`/`message()` and the raw response's status and
//! headers; never the SDK error's `Display` (it only says "service error").
//!
//! `scrub` makes the outcome safe to print (issue 7.9): every text that came
//! from the other end has the credentials in use redacted and is capped in
//! length, since it goes into events at ERROR, for up to a day.

use std::error::Error as StdError;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_bedrockagentruntime::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_bedrockagentruntime::operation::get_flow_execution::{
    GetFlowExecutionError, GetFlowExecutionOutput,
};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::http::Headers;
use aws_smithy_types::date_time::{DateTime, Format};

use crate::poll::outcome::{FailureKind, NodeError, Observation, PollOutcome, Status};

/// What the SDK fills in for a response without `status` (it defaults
/// missing required fields instead of failing).
const STATUS_MISSING: &str = "no value was set";

/// Error codes that mean "slow down", whatever the HTTP status.
const THROTTLING_CODES: &[&str] = &[
    "ThrottlingException",
    "Throttling",
    "ThrottledException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
];

/// Error codes that mean the caller's identity or permissions are wrong:
/// something an operator can fix while the daemon keeps trying.
const ACCESS_CODES: &[&str] = &[
    "AccessDeniedException",
    "UnrecognizedClientException",
    "InvalidSignatureException",
    "ExpiredTokenException",
    "ExpiredToken",
    "MissingAuthenticationTokenException",
    "InvalidClientTokenId",
    "SignatureDoesNotMatch",
    "IncompleteSignature",
];

/// Retry hints longer than this are clamped: executions time out after 24 h,
/// and a bounded hint keeps deadline arithmetic far from overflow.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);

/// Turns one attempt's result into what happened. Pure apart from reading
/// the wall clock for a `Retry-After` HTTP date on a response without a
/// `Date` header.
///
/// - 429 or a throttling code → `Throttled`; `ResourceNotFoundException` →
///   `NotFound`; `ValidationException` → `Invalid`; access and credential
///   codes → `AccessDenied`; other 5xx → `Failed{Server}`, other 4xx →
///   `Failed{Client}`.
/// - A response without a status, or a body that does not parse →
///   `Failed{Unparsable}`. Other missing fields become `None`.
/// - Timeouts → `Failed{Timeout}`; connecting, a connection that broke
///   before or during the response, and requests that could not be built or
///   signed → `Failed{Connection}`.
pub fn classify(
    result: Result<GetFlowExecutionOutput, SdkError<GetFlowExecutionError, HttpResponse>>,
) -> PollOutcome {
    let err = match result {
        Ok(output) => return observe(&output),
        Err(err) => err,
    };
    let (kind, fallback) = match &err {
        SdkError::ServiceError(e) => {
            return classify_service_error(e.err(), e.raw(), SystemTime::now());
        }
        SdkError::TimeoutError(_) => (FailureKind::Timeout, "request timed out"),
        SdkError::DispatchFailure(e) if e.is_timeout() => {
            (FailureKind::Timeout, "request timed out")
        }
        SdkError::DispatchFailure(_) => (FailureKind::Connection, "request failed"),
        // The response started but its body could not be read: the
        // connection broke mid-response.
        SdkError::ResponseError(_) => (FailureKind::Connection, "response broke off"),
        _ => (FailureKind::Connection, "request not sent"),
    };
    failed(kind, None, describe(&err, fallback))
}

fn observe(output: &GetFlowExecutionOutput) -> PollOutcome {
    let raw_status = output.status().as_str();
    if raw_status.is_empty() || raw_status == STATUS_MISSING {
        return failed(
            FailureKind::Unparsable,
            None,
            "response has no status".to_string(),
        );
    }
    let errors = output
        .errors()
        .iter()
        .map(|e| NodeError {
            error: e
                .error()
                .map(|t| t.as_str().to_string())
                .unwrap_or_default(),
            message: e.message().unwrap_or_default().to_string(),
            node: e.node_name().map(str::to_string),
        })
        .collect();
    PollOutcome::Observed(Observation {
        status: Status::parse(raw_status),
        execution_arn: non_empty(output.execution_arn()),
        flow_version: non_empty(output.flow_version()),
        // The SDK puts the epoch in place of a missing `startedAt`.
        started_at: system_time(output.started_at()).filter(|t| *t != UNIX_EPOCH),
        ended_at: output.ended_at().and_then(system_time),
        errors,
    })
}

fn classify_service_error(
    err: &GetFlowExecutionError,
    raw: &HttpResponse,
    now: SystemTime,
) -> PollOutcome {
    let status = raw.status().as_u16();
    // The SDK loses the code when the body is not JSON; the header still has it.
    let code = err
        .code()
        .or_else(|| modeled(err).map(|(code, _)| code))
        .or_else(|| raw.headers().get("x-amzn-errortype").map(sanitize_code))
        .filter(|c| !c.is_empty())
        .map(str::to_string);
    let message = err
        .message()
        .or_else(|| modeled(err).and_then(|(_, message)| message))
        .unwrap_or_default()
        .to_string();
    let retry_after = retry_after(raw.headers(), now);
    if status == 429
        || code
            .as_deref()
            .is_some_and(|c| THROTTLING_CODES.contains(&c))
    {
        return PollOutcome::Throttled { retry_after };
    }
    match code.as_deref() {
        Some("ResourceNotFoundException") => return PollOutcome::NotFound { message },
        Some("ValidationException") => return PollOutcome::Invalid { message },
        Some(c) if ACCESS_CODES.contains(&c) => {
            return PollOutcome::AccessDenied {
                code: c.to_string(),
                message,
            };
        }
        _ => {}
    }
    let kind = match status {
        _ if code.as_deref() == Some("InternalServerException") => FailureKind::Server,
        500..=599 => FailureKind::Server,
        400..=499 => FailureKind::Client,
        // A success status with an error: the body did not parse.
        _ => FailureKind::Unparsable,
    };
    let message = match (message.is_empty(), kind) {
        (false, _) => message,
        (true, FailureKind::Unparsable) => match err.source() {
            Some(cause) => format!("HTTP {status}: response does not parse: {cause}"),
            None => format!("HTTP {status}: response does not parse"),
        },
        (true, _) => format!("HTTP {status}"),
    };
    PollOutcome::Failed {
        kind,
        code,
        message,
        retry_after,
    }
}

/// The server's hint of when to come back: `x-amz-retry-after`
/// (milliseconds) first, else `Retry-After` (seconds or an HTTP date). A
/// date is measured from the response's own `Date` when it has one (so
/// clock skew does not matter), else from `now`. Clamped to a day.
fn retry_after(headers: &Headers, now: SystemTime) -> Option<Duration> {
    let hint = if let Some(ms) = headers
        .get("x-amz-retry-after")
        .and_then(|v| v.trim().parse().ok())
    {
        Duration::from_millis(ms)
    } else {
        let value = headers.get("retry-after")?.trim();
        match value.parse() {
            Ok(secs) => Duration::from_secs(secs),
            Err(_) => {
                let at = http_date(value)?;
                let reference = headers.get("date").and_then(http_date).unwrap_or(now);
                at.duration_since(reference).unwrap_or(Duration::ZERO)
            }
        }
    };
    Some(hint.min(MAX_RETRY_AFTER))
}

fn http_date(value: &str) -> Option<SystemTime> {
    DateTime::from_str(value.trim(), Format::HttpDate)
        .ok()
        .and_then(|d| system_time(&d))
}

fn system_time(t: &DateTime) -> Option<SystemTime> {
    SystemTime::try_from(*t).ok()
}

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

/// The code a modeled error stands for, and its own message: an error
/// built without metadata has neither in `code()` / `message()`.
fn modeled(err: &GetFlowExecutionError) -> Option<(&'static str, Option<&str>)> {
    use GetFlowExecutionError as E;
    match err {
        E::AccessDeniedException(e) => Some(("AccessDeniedException", e.message())),
        E::InternalServerException(e) => Some(("InternalServerException", e.message())),
        E::ResourceNotFoundException(e) => Some(("ResourceNotFoundException", e.message())),
        E::ThrottlingException(e) => Some(("ThrottlingException", e.message())),
        E::ValidationException(e) => Some(("ValidationException", e.message())),
        _ => None,
    }
}

/// The longest service-provided text that goes into an event, in chars
/// (the cut ones end in `…`).
pub const MAX_TEXT_CHARS: usize = 512;

/// What stands in for a secret in printed text.
pub const REDACTED: &str = "[redacted]";

/// Shorter values are not treated as secrets: redacting them would blank
/// out ordinary words (real secret keys and tokens are 40+ chars).
const MIN_SECRET_CHARS: usize = 8;

/// Values that must never be printed: the secret access key, the session
/// token, a bearer token. Each is matched as is and percent-encoded (a
/// canonical request quotes the query string encoded).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Secrets {
    values: Vec<String>,
}

impl Secrets {
    /// Secrets from `values`; empty and short values are skipped.
    pub fn new<S: AsRef<str>>(values: impl IntoIterator<Item = S>) -> Secrets {
        let mut secrets = Secrets::default();
        for value in values {
            let value = value.as_ref();
            if value.chars().count() < MIN_SECRET_CHARS {
                continue;
            }
            for form in [value.to_string(), percent_encode(value)] {
                if !secrets.values.contains(&form) {
                    secrets.values.push(form);
                }
            }
        }
        // Longest first, so a secret containing another is redacted whole.
        secrets.values.sort_by_key(|v| std::cmp::Reverse(v.len()));
        secrets
    }

    /// `self` and `other` together (credentials just replaced: an answer to
    /// a request signed with the old ones may still arrive).
    pub fn and(&self, other: &Secrets) -> Secrets {
        Secrets::new(self.values.iter().chain(&other.values))
    }

    /// `text` with every secret replaced by [`REDACTED`].
    pub fn redact(&self, text: &str) -> String {
        let mut text = text.to_string();
        for secret in &self.values {
            if text.contains(secret.as_str()) {
                text = text.replace(secret.as_str(), REDACTED);
            }
        }
        text
    }

    /// `redact`, then capped at [`MAX_TEXT_CHARS`] (the cut text ends in `…`).
    pub fn printable(&self, text: &str) -> String {
        cap(self.redact(text))
    }
}

/// RFC 3986 percent-encoding of everything but the unreserved characters,
/// as SigV4 encodes a canonical query string.
fn percent_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn cap(text: String) -> String {
    match text.char_indices().nth(MAX_TEXT_CHARS - 1) {
        Some((cut, _)) if text.chars().count() > MAX_TEXT_CHARS => format!("{}…", &text[..cut]),
        _ => text,
    }
}

/// `outcome` safe to print: every text the other end supplied has `secrets`
/// redacted; messages, codes, node names and unknown statuses are also
/// capped. The execution ARN and flow version are redacted only (they are
/// identities, and the API bounds them).
pub fn scrub(outcome: PollOutcome, secrets: &Secrets) -> PollOutcome {
    let text = |s: String| secrets.printable(&s);
    match outcome {
        PollOutcome::Observed(o) => PollOutcome::Observed(Observation {
            status: match o.status {
                Status::Other(raw) => Status::Other(text(raw)),
                known => known,
            },
            execution_arn: o.execution_arn.map(|s| secrets.redact(&s)),
            flow_version: o.flow_version.map(|s| secrets.redact(&s)),
            errors: o
                .errors
                .into_iter()
                .map(|e| NodeError {
                    error: text(e.error),
                    message: text(e.message),
                    node: e.node.map(text),
                })
                .collect(),
            ..o
        }),
        PollOutcome::Throttled { retry_after } => PollOutcome::Throttled { retry_after },
        PollOutcome::Failed {
            kind,
            code,
            message,
            retry_after,
        } => PollOutcome::Failed {
            kind,
            code: code.map(text),
            message: text(message),
            retry_after,
        },
        PollOutcome::NotFound { message } => PollOutcome::NotFound {
            message: text(message),
        },
        PollOutcome::Invalid { message } => PollOutcome::Invalid {
            message: text(message),
        },
        PollOutcome::AccessDenied { code, message } => PollOutcome::AccessDenied {
            code: text(code),
            message: text(message),
        },
    }
}

/// `aws.protocols#ValidationException:http://...` → `ValidationException`,
/// as the SDK does for the code it parses itself.
fn sanitize_code(code: &str) -> &str {
    let code = code.split(':').next().unwrap_or(code);
    code.rsplit('#').next().unwrap_or(code).trim()
}

fn failed(kind: FailureKind, code: Option<String>, message: String) -> PollOutcome {
    PollOutcome::Failed {
        kind,
        code,
        message,
        retry_after: None,
    }
}

/// The causes under an SDK error, joined: its own `Display` is only the
/// category ("dispatch failure"), the causes say what happened.
pub fn describe(err: &dyn StdError, fallback: &str) -> String {
    let mut parts = Vec::new();
    let mut cause = err.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if parts.last() != Some(&text) {
            parts.push(text);
        }
        cause = c.source();
    }
    if parts.is_empty() {
        fallback.to_string()
    } else {
        parts.join(": ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_bedrockagentruntime::types::error::{ThrottlingException, ValidationException};
    use aws_smithy_runtime_api::client::result::ConnectorError;
    use aws_smithy_runtime_api::http::StatusCode;
    use aws_smithy_types::body::SdkBody;
    use aws_smithy_types::error::ErrorMetadata;

    fn response(status: u16, headers: &[(&'static str, &'static str)]) -> HttpResponse {
        let mut r = HttpResponse::new(StatusCode::try_from(status).unwrap(), SdkBody::empty());
        for (name, value) in headers {
            r.headers_mut().insert(*name, *value);
        }
        r
    }

    fn service(err: GetFlowExecutionError, raw: HttpResponse) -> PollOutcome {
        classify(Err(SdkError::service_error(err, raw)))
    }

    fn generic(code: &str, message: &str) -> GetFlowExecutionError {
        GetFlowExecutionError::generic(ErrorMetadata::builder().code(code).message(message).build())
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> Headers {
        let mut h = Headers::new();
        for (name, value) in pairs {
            h.insert(*name, *value);
        }
        h
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn a_throttling_code_is_throttled_whatever_the_status() {
        let err = GetFlowExecutionError::ThrottlingException(
            ThrottlingException::builder().message("slow").build(),
        );
        assert_eq!(
            service(err, response(400, &[])),
            PollOutcome::Throttled { retry_after: None }
        );
    }

    #[test]
    fn a_429_without_any_code_is_throttled() {
        let err = GetFlowExecutionError::generic(ErrorMetadata::builder().build());
        let outcome = service(err, response(429, &[("retry-after", "3")]));
        assert_eq!(
            outcome,
            PollOutcome::Throttled {
                retry_after: Some(secs(3))
            }
        );
    }

    #[test]
    fn credential_codes_are_access_denied_so_the_watch_keeps_trying() {
        for code in [
            "UnrecognizedClientException",
            "InvalidSignatureException",
            "ExpiredTokenException",
            "MissingAuthenticationTokenException",
        ] {
            let outcome = service(generic(code, "fix me"), response(403, &[]));
            assert_eq!(
                outcome,
                PollOutcome::AccessDenied {
                    code: code.into(),
                    message: "fix me".into()
                },
                "{code}"
            );
        }
    }

    #[test]
    fn a_code_only_in_the_header_is_still_recognised() {
        // An HTML body loses the code in the SDK's parser; the header keeps it.
        let err = GetFlowExecutionError::generic(ErrorMetadata::builder().build());
        let raw = response(
            400,
            &[(
                "x-amzn-errortype",
                "ValidationException:http://internal.amazon.com/",
            )],
        );
        assert_eq!(
            service(err, raw),
            PollOutcome::Invalid {
                message: String::new()
            }
        );
    }

    #[test]
    fn an_unknown_4xx_code_is_a_client_failure_carrying_the_code() {
        let outcome = service(generic("ConflictException", "busy"), response(409, &[]));
        assert_eq!(
            outcome,
            PollOutcome::Failed {
                kind: FailureKind::Client,
                code: Some("ConflictException".into()),
                message: "busy".into(),
                retry_after: None
            }
        );
    }

    #[test]
    fn a_404_without_resource_not_found_code_is_not_an_abandoning_not_found() {
        // A wrong endpoint answers 404 too; only the service's code abandons.
        let err = GetFlowExecutionError::generic(ErrorMetadata::builder().build());
        let outcome = service(err, response(404, &[]));
        assert!(
            matches!(
                outcome,
                PollOutcome::Failed {
                    kind: FailureKind::Client,
                    code: None,
                    ..
                }
            ),
            "{outcome:?}"
        );
    }

    #[test]
    fn a_503_keeps_its_retry_after_hint() {
        let err = GetFlowExecutionError::generic(
            ErrorMetadata::builder()
                .code("ServiceUnavailableException")
                .build(),
        );
        let outcome = service(err, response(503, &[("x-amz-retry-after", "1500")]));
        assert_eq!(
            outcome,
            PollOutcome::Failed {
                kind: FailureKind::Server,
                code: Some("ServiceUnavailableException".into()),
                message: "HTTP 503".into(),
                retry_after: Some(Duration::from_millis(1500)),
            }
        );
    }

    #[test]
    fn a_success_status_that_failed_to_parse_is_unparsable() {
        let err = GetFlowExecutionError::unhandled("expected object");
        let outcome = service(err, response(200, &[]));
        match outcome {
            PollOutcome::Failed {
                kind: FailureKind::Unparsable,
                code: None,
                message,
                ..
            } => {
                assert!(message.contains("expected object"), "{message}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn x_amz_retry_after_wins_over_retry_after() {
        let h = headers(&[("retry-after", "9"), ("x-amz-retry-after", "250")]);
        assert_eq!(
            retry_after(&h, UNIX_EPOCH),
            Some(Duration::from_millis(250))
        );
    }

    #[test]
    fn a_retry_after_date_is_measured_from_the_response_date() {
        let h = headers(&[
            ("retry-after", "Wed, 21 Oct 2015 07:28:30 GMT"),
            ("date", "Wed, 21 Oct 2015 07:28:00 GMT"),
        ]);
        // `now` is far off: the server's own clock is the reference.
        assert_eq!(retry_after(&h, UNIX_EPOCH), Some(secs(30)));
    }

    #[test]
    fn a_retry_after_date_without_a_date_header_is_measured_from_now() {
        let h = headers(&[("retry-after", "Wed, 21 Oct 2015 07:28:30 GMT")]);
        let now = SystemTime::try_from(DateTime::from_secs(1_445_412_500)).unwrap(); // 07:28:20
        assert_eq!(retry_after(&h, now), Some(secs(10)));
    }

    #[test]
    fn a_retry_after_in_the_past_means_now_and_garbage_means_no_hint() {
        let past = headers(&[("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT")]);
        assert_eq!(retry_after(&past, SystemTime::now()), Some(Duration::ZERO));
        assert_eq!(
            retry_after(&headers(&[("retry-after", "soon")]), UNIX_EPOCH),
            None
        );
        assert_eq!(
            retry_after(&headers(&[("retry-after", "-5")]), UNIX_EPOCH),
            None
        );
    }

    #[test]
    fn a_huge_retry_after_is_clamped_to_a_day() {
        let h = headers(&[("x-amz-retry-after", "18446744073709551615")]);
        assert_eq!(retry_after(&h, UNIX_EPOCH), Some(MAX_RETRY_AFTER));
    }

    #[test]
    fn a_response_without_status_is_unparsable_and_missing_optional_fields_are_none() {
        let no_status = GetFlowExecutionOutput::builder()
            .status(STATUS_MISSING.into())
            .execution_arn("")
            .started_at(DateTime::from_secs(0))
            .flow_alias_identifier("A")
            .flow_identifier("F")
            .flow_version("")
            .build()
            .unwrap();
        assert!(matches!(
            classify(Ok(no_status.clone())),
            PollOutcome::Failed {
                kind: FailureKind::Unparsable,
                ..
            }
        ));
        let mut running = no_status;
        running.status = "Running".into();
        match classify(Ok(running)) {
            PollOutcome::Observed(o) => {
                assert_eq!(
                    (o.status, o.execution_arn, o.flow_version, o.started_at),
                    (Status::Running, None, None, None)
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn timeouts_and_connection_failures_are_told_apart() {
        let timeout = classify(Err(SdkError::timeout_error("took too long")));
        assert!(
            matches!(
                timeout,
                PollOutcome::Failed {
                    kind: FailureKind::Timeout,
                    ..
                }
            ),
            "{timeout:?}"
        );
        let connect_timeout = classify(Err(SdkError::dispatch_failure(ConnectorError::timeout(
            "connect".into(),
        ))));
        assert!(
            matches!(
                connect_timeout,
                PollOutcome::Failed {
                    kind: FailureKind::Timeout,
                    ..
                }
            ),
            "{connect_timeout:?}"
        );
        let refused = classify(Err(SdkError::dispatch_failure(ConnectorError::io(
            "connection refused".into(),
        ))));
        match refused {
            PollOutcome::Failed {
                kind: FailureKind::Connection,
                message,
                ..
            } => assert!(message.contains("connection refused"), "{message}"),
            other => panic!("{other:?}"),
        }
        let unsigned = classify(Err(SdkError::construction_failure("no credentials")));
        match unsigned {
            PollOutcome::Failed {
                kind: FailureKind::Connection,
                message,
                ..
            } => assert!(message.contains("no credentials"), "{message}"),
            other => panic!("{other:?}"),
        }
    }

    const TOKEN: &str = "MARKERtoken/with+slash=";

    #[test]
    fn a_secret_in_a_message_is_redacted_as_is_and_percent_encoded() {
        let secrets = Secrets::new(["wJalrXUtnFEMI/K7MDENG", TOKEN, "short", ""]);
        let message = format!(
            "signature mismatch: x-amz-security-token:{TOKEN}\nX-Amz-Security-Token={}&k=wJalrXUtnFEMI/K7MDENG short",
            percent_encode(TOKEN)
        );
        let outcome = scrub(
            service(
                generic("InvalidSignatureException", &message),
                response(403, &[]),
            ),
            &secrets,
        );
        let PollOutcome::AccessDenied { message, .. } = outcome else {
            panic!("{outcome:?}");
        };
        assert!(!message.contains("MARKER"), "{message}");
        assert!(!message.contains("wJalrXUtnFEMI"), "{message}");
        assert_eq!(message.matches(REDACTED).count(), 3, "{message}");
        assert!(
            message.ends_with(" short"),
            "short values are no secrets: {message}"
        );
    }

    #[test]
    fn a_long_message_is_capped_with_an_ellipsis() {
        let long = "é".repeat(5000);
        let outcome = scrub(
            service(
                generic("InternalServerException", &long),
                response(500, &[]),
            ),
            &Secrets::default(),
        );
        let PollOutcome::Failed { message, .. } = outcome else {
            panic!("{outcome:?}");
        };
        assert_eq!(message.chars().count(), MAX_TEXT_CHARS);
        assert!(message.ends_with("é…"), "{message}");
        let short = Secrets::default().printable("fine as it is");
        assert_eq!(short, "fine as it is");
        let exact = "x".repeat(MAX_TEXT_CHARS);
        assert_eq!(Secrets::default().printable(&exact), exact);
    }

    #[test]
    fn every_text_of_an_observation_is_scrubbed() {
        let secrets = Secrets::new([TOKEN]);
        let observed = PollOutcome::Observed(Observation {
            status: Status::Other(format!("Odd{TOKEN}")),
            execution_arn: Some(format!("arn:{TOKEN}")),
            flow_version: Some("1".into()),
            started_at: None,
            ended_at: None,
            errors: vec![NodeError {
                error: TOKEN.into(),
                message: format!("node said {TOKEN}"),
                node: Some(TOKEN.into()),
            }],
        });
        let text = format!("{:?}", scrub(observed, &secrets));
        assert!(!text.contains("MARKER"), "{text}");
        let throttled = PollOutcome::Throttled { retry_after: None };
        assert_eq!(scrub(throttled.clone(), &secrets), throttled);
    }

    #[test]
    fn a_validation_exception_carries_its_message() {
        let err = GetFlowExecutionError::ValidationException(
            ValidationException::builder().message("bad id").build(),
        );
        assert_eq!(
            service(err, response(400, &[])),
            PollOutcome::Invalid {
                message: "bad id".into()
            }
        );
    }
}
