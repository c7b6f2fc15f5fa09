//! One suite run against every store backend.
