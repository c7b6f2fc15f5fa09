//! Who is calling and what they may do: SigV4 verification, the key ring with each key's
//! account and permissions, and per-key throttling.

pub mod credentials;
pub mod keys;
pub mod sigv4;
pub mod throttle;
