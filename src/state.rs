//! Last-seen statuses on disk, across restarts. (Skeleton.)
