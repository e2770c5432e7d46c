//! The one loop. (Skeleton.)
