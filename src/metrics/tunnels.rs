//! Upgraded connections (WebSockets): how many are open, the bytes they
//! carry each way, how they ended, and upgrades refused at the cap.

use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};

use super::family::{Counters, labels};

labels! {
    /// Why a tunnel ended.
    pub enum TunnelEnd {
        /// Both sides closed.
        Closed = "closed",
        /// No byte either way for `listen.tunnel_idle_timeout`.
        Idle = "idle",
        /// The proxy shut down.
        Shutdown = "shutdown",
        /// A read or write failed.
        Error = "error",
        /// The credential it was opened with ended (expired, revoked,
        /// signed out).
        CredentialEnded = "credential_ended",
    }
}

/// The tunnels' families.
pub struct Tunnels {
    /// Tunnels open now.
    pub open: IntGauge,
    /// Bytes from clients to Azure DevOps.
    pub up: IntCounter,
    /// Bytes from Azure DevOps to clients.
    pub down: IntCounter,
    /// Upgrades refused because `listen.max_tunnels` were open.
    pub refused: IntCounter,
    ended: Counters<TunnelEnd>,
}

// === impl Tunnels ===

impl Tunnels {
    /// Registers the tunnel families into `registry`.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let open = IntGauge::new(
            "ado_proxy_tunnels_open",
            "Upgraded connections (WebSockets) open now.",
        )?;
        let bytes = IntCounterVec::new(
            Opts::new(
                "ado_proxy_tunnel_bytes_total",
                "Bytes carried by tunnels, by direction (up: client to Azure DevOps, down: back).",
            ),
            &["direction"],
        )?;
        let refused = IntCounter::new(
            "ado_proxy_tunnels_refused_total",
            "Upgrades answered 503 because listen.max_tunnels tunnels were open.",
        )?;
        registry.register(Box::new(open.clone()))?;
        registry.register(Box::new(bytes.clone()))?;
        registry.register(Box::new(refused.clone()))?;
        Ok(Self {
            open,
            up: bytes.with_label_values(&["up"]),
            down: bytes.with_label_values(&["down"]),
            refused,
            ended: Counters::register(
                registry,
                "ado_proxy_tunnels_ended_total",
                "Tunnels ended, by reason (closed, idle, shutdown, error).",
                "reason",
            )?,
        })
    }

    /// Counts a tunnel that ended.
    pub fn ended(&self, why: TunnelEnd) {
        self.ended.inc(why);
    }
}
