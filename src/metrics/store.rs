//! The session store: whether it answers, failed operations, records
//! that could not be used, and lookups of sessions this process lacked.

use prometheus::{IntCounter, IntGauge, Registry};

use super::family::{Counters, labels};

labels! {
    /// A session store operation.
    pub enum StoreOp {
        /// Read a record.
        Get = "get",
        /// Write a record.
        Put = "put",
        /// Check-and-write a record.
        Update = "update",
        /// Delete a record.
        Remove = "remove",
        /// Take or release a refresh lease.
        Lease = "lease",
        /// Sweep expired records.
        Purge = "purge",
        /// Health check.
        Ping = "ping",
    }
}

labels! {
    /// Why a stored record was not used.
    pub enum Unreadable {
        /// Not sealed or not of a known layout.
        Format = "format",
        /// Sealed under a key no longer configured.
        UnknownKey = "unknown_key",
        /// Fails authentication (tampered or moved).
        Tampered = "tampered",
        /// Opens, but is not a record this build understands.
        Corrupt = "corrupt",
        /// Written by a newer build.
        FutureVersion = "future_version",
    }
}

labels! {
    /// How a lookup of a session this process did not hold ended.
    pub enum LoadOutcome {
        /// Found.
        Loaded = "loaded",
        /// Found under the previous key and moved to the current one.
        Migrated = "migrated",
        /// Not there.
        Absent = "absent",
        /// Answered from memory without a store read: an id found absent
        /// moments ago, or a session known to have ended.
        Remembered = "remembered",
    }
}

/// The session store's health.
pub struct Store {
    /// 1 while the session store answers, 0 while it does not.
    pub up: IntGauge,
    /// Times the store was found to have lost its data (Redis's epoch
    /// changed: restarted empty, flushed, failed over to an empty copy).
    pub data_losses: IntCounter,
    errors: Counters<StoreOp>,
    unreadable: Counters<Unreadable>,
    loads: Counters<LoadOutcome>,
}

// === impl Store ===

impl Store {
    /// Registers the store families into `registry`.
    /// Drops the 0 series of a proxy without a session store.
    pub fn trim(&self) {
        self.errors.clear();
        self.unreadable.clear();
        self.loads.clear();
    }

    /// Registers the session-store families into `registry`.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let up = IntGauge::new(
            "ado_proxy_session_store_up",
            "1 while the session store answers, 0 while it is unreachable.",
        )?;
        registry.register(Box::new(up.clone()))?;
        let data_losses = IntCounter::new(
            "ado_proxy_session_store_data_losses_total",
            "Times the shared session store was found to have lost its data; sign-outs were put \
             back first, then cached sessions.",
        )?;
        registry.register(Box::new(data_losses.clone()))?;
        Ok(Self {
            up,
            data_losses,
            errors: Counters::register(
                registry,
                "ado_proxy_session_store_errors_total",
                "Failed session store operations, by operation.",
                "op",
            )?,
            unreadable: Counters::register(
                registry,
                "ado_proxy_session_records_unreadable_total",
                "Stored records treated as absent, by reason (format, unknown_key, tampered, \
                 corrupt, future_version).",
                "reason",
            )?,
            loads: Counters::register(
                registry,
                "ado_proxy_session_loads_total",
                "Sessions looked up because this process did not hold them, by outcome (loaded, \
                 migrated to the current key, absent, remembered: answered from memory).",
                "outcome",
            )?,
        })
    }

    /// Counts a failed store operation.
    pub fn failed(&self, op: StoreOp) {
        self.errors.inc(op);
    }

    /// Counts a stored record that could not be used.
    pub fn unreadable(&self, why: Unreadable) {
        self.unreadable.inc(why);
    }

    /// Counts a lookup in the store.
    pub fn loaded(&self, outcome: LoadOutcome) {
        self.loads.inc(outcome);
    }
}
