//! Pure rules of the service: IDs, tokens, ARNs, validation, capability rules and quotas.
//! Nothing here does I/O, so every rule is unit-tested directly.

pub mod arn;
pub mod capabilities;
pub mod civil;
pub mod digest;
pub mod id;
pub mod ids;
pub mod meeting_events;
pub mod regions;
pub mod tokens;
pub mod validate;
