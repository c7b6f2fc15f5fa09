//! Who is calling: SigV4 verification and the key lookup behind it.

pub mod keys;
pub mod sigv4;
