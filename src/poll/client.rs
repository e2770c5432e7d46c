//! The SDK call: one GetFlowExecution attempt per `fetch`, with the SDK's own
//! retries off, classified into a `PollOutcome`. (Skeleton: the poll helper
//! fills it in.)

use std::future::Future;
use std::sync::Arc;

use super::outcome::PollOutcome;

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
#[derive(Clone)]
pub struct SdkFetcher {}
