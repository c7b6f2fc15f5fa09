//! Recording (issue 26): Chime SDK media capture and concatenation pipelines. A capture records
//! a meeting's mixed audio from its media tap into a bucket, in chunks named as AWS names them;
//! a concatenation joins a finished capture's chunks into one file.
//!
//! - `capture`: the recorder (tap → Opus → 5 s MP4 chunks) and its loop;
//! - `concat`: a finished capture's chunks joined into one file;
//! - `mp4`: the MP4 writer and reader for Opus audio;
//! - `pipelines`: the recorders running on this node, and their status in the store;
//! - `sink`: where objects go (the embedded folder sink under the data directory).

pub mod capture;
pub mod concat;
pub mod mp4;
pub mod pipelines;
pub mod sink;
