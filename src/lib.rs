//! Carillon: a self-hosted Amazon Chime SDK meetings service.

pub mod admin_client;
pub mod api;
pub mod auth;
pub mod clock;
pub mod config;
pub mod demo;
pub mod domain;
pub mod events;
pub mod join;
pub mod keys_cli;
pub mod server;
pub mod store;
