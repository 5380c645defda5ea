//! ado-auth-proxy: an authenticating reverse proxy for Azure DevOps.
//!
//! See ARCHITECTURE.md for the map of modules and the path of a request.

pub mod access;
pub mod admin;
pub mod answer;
pub mod app;
pub mod assertion;
pub mod backoff;
pub mod body;
pub mod config;
pub mod connection;
pub mod cookies;
pub mod diagnose;
pub mod error;
pub mod host;
pub mod identity;
pub mod logging;
pub mod login;
pub mod metrics;
pub mod oauth;
pub mod page;
pub mod proxy;
pub mod request;
pub mod seal;
pub mod session;
pub mod tls;
