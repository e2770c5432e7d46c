//! The TOML as written: serde structs with spans, unknown keys rejected.
//! (Skeleton: the config helper fills it in.)
