//! The SDK call: one GetFlowExecution attempt per `fetch`, with the SDK's own
//! retries off, classified into a `PollOutcome`.
//!
//! In: a `Target` (region and plain ids). Out: a `PollOutcome`, never an
//! error: every failure the service or the network can produce is data here
//! (contract: "the daemon owns retries", so every attempt is one request).
//! `classify` (in classify.rs) is the pure half and holds every rule of the
//! mapping; wire_tests.rs runs both halves against a loopback server. Every
//! outcome leaves through `scrub`, with the credentials in use as secrets
//! (issue 7.9: an error message can quote the session token).

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use crate::lock::lock;
use std::time::{Duration, SystemTime};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_sdk_bedrockagentruntime::Client;
use aws_smithy_runtime_api::client::auth::AuthSchemeId;
use aws_smithy_types::retry::RetryConfig;
use aws_smithy_types::timeout::TimeoutConfig;

use super::outcome::PollOutcome;
use crate::config::AwsSettings;

mod classify;
#[cfg(test)]
mod wire_tests;

pub use classify::{MAX_TEXT_CHARS, REDACTED, Secrets, classify, describe, scrub};

/// What one request needs: the ids to send and the region to send them to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Target {
    pub region: Arc<str>,
    pub flow: Arc<str>,
    pub alias: Arc<str>,
    pub execution: Arc<str>,
}

/// Makes one attempt. The daemon is generic over this so its loop can be
/// tested on a paused clock with a scripted fetcher; the real one is
/// `SdkFetcher`.
pub trait Fetch: Clone + Send + Sync + 'static {
    fn fetch(&self, target: &Target) -> impl Future<Output = PollOutcome> + Send;
}

/// The real client: one SDK client per region, created on first use.
/// Cloning is cheap; clones share the clients.
#[derive(Clone)]
pub struct SdkFetcher {
    inner: Arc<Inner>,
}

struct Inner {
    shared: SdkConfig,
    timeouts: TimeoutConfig,
    /// Set when the caller overrode the credentials: those must be used even
    /// if the environment offers a Bedrock bearer token.
    pin_sigv4: bool,
    clients: Mutex<HashMap<Arc<str>, Client>>,
    /// The secrets of the credentials in use, resolved on the first answer
    /// and again when they expire. Async: resolving may ask IMDS or STS,
    /// and concurrent first answers should wait for one resolution.
    secrets: tokio::sync::Mutex<Option<KnownSecrets>>,
}

/// Secrets resolved from the credentials provider, and until when they hold.
struct KnownSecrets {
    /// The current credentials' secrets (with the previous ones', if any).
    secrets: Arc<Secrets>,
    /// The current ones alone, to carry over to the next resolution.
    current: Secrets,
    /// Resolve again from here on; `None`: credentials that never expire.
    refresh_at: Option<SystemTime>,
}

/// Credentials are looked at again this long before they expire (the SDK
/// refreshes its own cached identity around then too).
const SECRETS_REFRESH_EARLY: Duration = Duration::from_secs(300);
/// After failing to resolve credentials, try again after this long.
const SECRETS_RETRY: Duration = Duration::from_secs(60);

const SIGV4: AuthSchemeId = AuthSchemeId::new("sigv4");

impl SdkFetcher {
    /// Loads the shared AWS config once (standard chain: env, profile, IMDS)
    /// with the optional region/profile/endpoint_url of `[aws]`.
    /// `credentials`: an override (the demo passes static ones); with one,
    /// requests are always SigV4-signed with it, even when
    /// `AWS_BEARER_TOKEN_BEDROCK` is set.
    ///
    /// `request_timeout` bounds each attempt (connecting included).
    pub async fn new(
        aws: &AwsSettings,
        request_timeout: Duration,
        credentials: Option<SharedCredentialsProvider>,
    ) -> SdkFetcher {
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(request_timeout)
            .operation_attempt_timeout(request_timeout)
            .build();
        // An explicit retry config also keeps aws-config from reading
        // AWS_MAX_ATTEMPTS / AWS_RETRY_MODE / AWS_NEW_RETRIES_2026 at all; it
        // panics on some values of them (e.g. AWS_MAX_ATTEMPTS=0).
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .retry_config(RetryConfig::disabled())
            .timeout_config(timeouts.clone());
        if let Some(region) = &aws.region {
            loader = loader.region(Region::new(region.clone()));
        }
        if let Some(profile) = &aws.profile {
            loader = loader.profile_name(profile);
        }
        if let Some(url) = &aws.endpoint_url {
            loader = loader.endpoint_url(url);
        }
        let pin_sigv4 = credentials.is_some();
        if let Some(credentials) = credentials {
            loader = loader.credentials_provider(credentials);
        }
        SdkFetcher {
            inner: Arc::new(Inner {
                shared: loader.load().await,
                timeouts,
                pin_sigv4,
                clients: Mutex::new(HashMap::new()),
                secrets: tokio::sync::Mutex::new(None),
            }),
        }
    }

    /// The region the standard chain resolved, for watches that name none.
    pub fn default_region(&self) -> Option<String> {
        self.inner.shared.region().map(|r| r.to_string())
    }

    /// The client for `region`, built on first use. An empty region means the
    /// shared config's.
    pub(super) fn client(&self, region: &Arc<str>) -> Client {
        let mut clients = lock(&self.inner.clients);
        if let Some(client) = clients.get(region) {
            return client.clone();
        }
        let mut builder = aws_sdk_bedrockagentruntime::config::Builder::from(&self.inner.shared)
            .behavior_version(BehaviorVersion::latest())
            .timeout_config(self.inner.timeouts.clone());
        if !region.is_empty() {
            builder = builder.region(Region::new(region.to_string()));
        }
        if self.inner.pin_sigv4 {
            builder = builder.auth_scheme_preference([SIGV4]);
        }
        // Last, after everything taken from the shared config: the daemon owns
        // retries (contract), so one `fetch` is exactly one request whatever
        // the environment or profile says.
        let config = builder.retry_config(RetryConfig::disabled()).build();
        let client = Client::from_conf(config);
        clients.insert(region.clone(), client.clone());
        client
    }

    /// The secrets to redact from what the service says: the secret access
    /// key and session token of the credentials in use, and a Bedrock bearer
    /// token from the environment. Cached until the credentials expire.
    async fn secrets(&self) -> Arc<Secrets> {
        let mut known = self.inner.secrets.lock().await;
        let now = SystemTime::now();
        if let Some(k) = known.as_ref()
            && k.refresh_at.is_none_or(|at| now < at)
        {
            return Arc::clone(&k.secrets);
        }
        let credentials = match self.inner.shared.credentials_provider() {
            Some(provider) => provider.provide_credentials().await.ok(),
            None => None,
        };
        let bearer = std::env::var("AWS_BEARER_TOKEN_BEDROCK").ok();
        let current = Secrets::new(
            credentials
                .iter()
                .flat_map(|c| [Some(c.secret_access_key()), c.session_token()])
                .flatten()
                .chain(bearer.as_deref()),
        );
        let refresh_at = match &credentials {
            Some(c) => c
                .expiry()
                .map(|at| at.checked_sub(SECRETS_REFRESH_EARLY).unwrap_or(at)),
            None => Some(now + SECRETS_RETRY),
        };
        let secrets = match known.take() {
            Some(previous) => Arc::new(current.and(&previous.current)),
            None => Arc::new(current.clone()),
        };
        *known = Some(KnownSecrets {
            secrets: Arc::clone(&secrets),
            current,
            refresh_at,
        });
        secrets
    }
}

impl Fetch for SdkFetcher {
    fn fetch(&self, target: &Target) -> impl Future<Output = PollOutcome> + Send {
        let request = self
            .client(&target.region)
            .get_flow_execution()
            .flow_identifier(&*target.flow)
            .flow_alias_identifier(&*target.alias)
            .execution_identifier(&*target.execution);
        let fetcher = self.clone();
        async move {
            let outcome = classify(request.send().await);
            scrub(outcome, &*fetcher.secrets().await)
        }
    }
}
