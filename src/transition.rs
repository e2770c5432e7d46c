//! Transition detection: the last status seen plus a new observation gives
//! a `Change`. Pure; the daemon owns the per-watch last status.
