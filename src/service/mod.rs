//! The daemon's outside world. (Skeleton.)
pub mod files; // config and include files: unprompted change detection
