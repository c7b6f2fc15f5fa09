//! Recording (issue 26): Chime SDK media capture pipelines. A capture records a meeting's mixed
//! audio from its media tap into a bucket, in chunks named as AWS names them.
//!
//! - `capture`: the recorder (tap → Opus → 5 s MP4 chunks) and its loop;
//! - `mp4`: the MP4 writer for Opus audio;
//! - `pipelines`: the recorders running on this node, and their status in the store;
//! - `sink`: where objects go (the embedded folder sink under the data directory).

pub mod capture;
pub mod mp4;
pub mod pipelines;
pub mod sink;
