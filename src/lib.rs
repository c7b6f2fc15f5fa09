//! Carillon: a self-hosted Amazon Chime SDK meetings service.

// Request code must not panic on what a caller sends: no byte-slicing of strings, no unchecked
// indexing, no unwrap. Tests may.
#![cfg_attr(
    not(test),
    deny(clippy::string_slice, clippy::indexing_slicing, clippy::unwrap_used)
)]

pub mod admin_client;
pub mod admin_listener;
pub mod api;
pub mod auth;
pub mod bus;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod config_file;
pub mod demo;
pub mod domain;
pub mod events;
pub mod http;
pub mod join;
pub mod keys_cli;
pub mod lifecycle;
pub mod media;
pub mod metrics;
pub mod notifications;
pub mod recording;
pub mod server;
pub mod store;
pub mod tls;
pub mod transcription;
pub mod turn;
