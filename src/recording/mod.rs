//! Recording (issue 26): Chime SDK media capture and concatenation pipelines. A capture records
//! a meeting's mixed audio, its cameras and content shares, its events and its data messages
//! into a bucket, in chunks named as AWS names them; a concatenation joins a finished
//! capture's chunks into one file per artifact.
//!
//! - `capture`: the audio recorder (tap → Opus → 5 s MP4 chunks) and its loop;
//! - `video`: each camera and content share, as sent, in 5 s WebM chunks;
//! - `text`: `meeting-events/` and `data-channel/`, JSON lines in 5 s `.txt` chunks;
//! - `concat`: a finished capture's chunks joined into one file;
//! - `mp4`: the MP4 writer and reader for Opus audio;
//! - `pipelines`: the recorders running on this node, and their status in the store;
//! - `sink`: where objects go (the embedded folder sink under the data directory);
//! - `s3`: the S3-compatible sink (`--s3-endpoint`: MinIO, Garage, Ceph, moto, AWS S3);
//! - `webm`: the WebM writer and reader for VP8 video.

pub mod capture;
pub mod concat;
pub mod mp4;
pub mod pipelines;
pub mod s3;
pub mod sink;
pub mod text;
pub mod video;
pub mod webm;
