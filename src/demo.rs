//! `flowwatch demo`. (Skeleton.)
