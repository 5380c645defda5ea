//! Mode `service`'s device-code identity in the session store: one
//! sealed record under a fixed id, written by `ado-auth-proxy login` (or
//! a browser sign-in) and read by the refresher.

use std::time::Duration;

use super::Sessions;
use super::backend::{Key, Namespace, StoreError};
use super::record::{self, StoredService, Unreadable};
use crate::metrics::StoreOp;

/// The fixed id the device-code service identity is stored under.
const SERVICE_ID: &str = "ado-auth-proxy service identity";
/// How long the service identity is kept unused: Entra's refresh tokens
/// expire after 90 days of inactivity.
const SERVICE_TTL: Duration = Duration::from_secs(90 * 24 * 3600);

// === impl Sessions ===

impl Sessions {
    /// Stores the device-code service identity.
    pub async fn put_service(&self, rec: &StoredService) -> Result<(), StoreError> {
        let key = Key::new(Namespace::Service, self.store_key(SERVICE_ID));
        let json = serde_json::to_vec(rec).unwrap_or_default();
        let sealed = self.seal_for(&key, &json);
        self.op(StoreOp::Put, self.backend().put(key, sealed, SERVICE_TTL))
            .await
    }

    /// The device-code service identity, if someone signed it in.
    pub async fn get_service(&self) -> Result<Option<StoredService>, StoreError> {
        for hash in self.sealer_keys(SERVICE_ID) {
            let key = Key::new(Namespace::Service, hash);
            let Some(raw) = self.op(StoreOp::Get, self.backend().get(key)).await? else {
                continue;
            };
            match self
                .sealer()
                .open(&key.to_bytes(), &raw)
                .map_err(Unreadable::from)
                .and_then(|json| record::decode::<StoredService>(&json))
            {
                Ok(rec) => return Ok(Some(rec)),
                Err(why) => {
                    self.metrics().store.unreadable(why);
                    tracing::warn!(
                        reason = why.as_str(),
                        "the stored service identity cannot be used; run `ado-auth-proxy login` again"
                    );
                }
            }
        }
        Ok(None)
    }
}
