//! ado-auth-proxy: an authenticating reverse proxy for Azure DevOps.
//!
//! See ARCHITECTURE.md for the map of modules and the path of a request.

mod access;
mod admin;
pub mod answer;
pub mod app;
mod assertion;
mod backoff;
mod body;
mod budget;
mod challenge;
pub mod clock;
pub mod config;
mod connection;
mod cookies;
pub mod diagnose;
mod egress;
mod endpoint;
mod error;
pub mod gate;
mod host;
pub mod identity;
pub mod logging;
mod login;
pub mod metrics;
pub mod oauth;
mod organization;
mod page;
mod path_glob;
mod proxy;
mod request;
pub mod seal;
mod serve;
pub mod session;
mod startup;
mod tls;
