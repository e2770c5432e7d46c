//! SDK-against-simulator tests over real loopback HTTP.
