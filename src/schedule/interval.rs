//! Delays between polls of one watch; the only user of the `backoff` crate.
//! (Skeleton: the schedule helper fills it in.)
