//! The one integration-test binary: each module covers one area, all share
//! `support` (fake upstream, proxy launchers, clients).

// Tests wait and measure in real time; the proxy under test keeps its own
// Clock (clippy.toml).
#![allow(clippy::disallowed_methods)]

mod support;

mod access;
mod audit;
mod cae;
mod cli;
mod client_tokens;
mod connections;
mod cors;
mod deploy;
mod diagnose;
mod diagnose_clients;
mod diagnose_modes;
mod egress;
mod federation;
mod forwarding;
mod git;
mod groups;
mod hardening;
mod image;
mod lfs;
mod lifecycle;
mod login;
mod monitoring;
mod packages;
mod pats;
mod personal_tokens;
mod provider_codes;
mod provider_shapes;
mod providers;
mod sentinel;
mod service;
mod sessions;
mod store;
mod streaming;
mod surfaces;
mod tenants;
mod tls;
mod websocket;
