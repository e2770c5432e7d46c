//! The daemon's outside world. (Skeleton.)
