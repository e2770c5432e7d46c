//! The per-region rate budget: a token bucket with a small burst and an
//! adaptive rate. (Skeleton: the schedule helper fills it in.)
