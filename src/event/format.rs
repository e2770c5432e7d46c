//! The formatter: flat JSON lines or readable text. (Skeleton.)
