//! The refresh lease of a session in the store: with replicas, only its
//! holder redeems the session's refresh token (see `login::refresh`).

use super::super::Session;
use super::super::backend::{Key, Namespace, StoreError};
use super::{LEASE_TTL, Sessions};
use crate::metrics::StoreOp;

impl Sessions {
    /// Takes the refresh lease of `session` for `holder`.
    pub async fn lease(&self, session: &Session, holder: &str) -> Result<bool, StoreError> {
        let key = Key::new(Namespace::Lease, session.store_key);
        self.op(StoreOp::Lease, self.backend.lease(key, holder, LEASE_TTL))
            .await
    }

    /// Keeps the lease while a slow token call is in flight.
    pub async fn renew(&self, session: &Session, holder: &str) -> Result<bool, StoreError> {
        let key = Key::new(Namespace::Lease, session.store_key);
        self.op(StoreOp::Lease, self.backend.renew(key, holder, LEASE_TTL))
            .await
    }

    /// Gives the lease up.
    pub async fn release(&self, session: &Session, holder: &str) {
        let key = Key::new(Namespace::Lease, session.store_key);
        // An error leaves it to expire.
        let _ = self
            .op(StoreOp::Lease, self.backend.release(key, holder))
            .await;
    }
}
