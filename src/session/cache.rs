//! The in-memory store: a `dashmap` keyed by session key. No shard guard
//! ever leaves this file, so none is held across an `.await`.

use std::sync::Arc;

use dashmap::DashMap;

use super::{Session, SessionKey, SessionStore};

/// Sessions in process memory; a restart forgets them.
#[derive(Default)]
pub struct MemoryStore {
    map: DashMap<SessionKey, Arc<Session>>,
}

impl SessionStore for MemoryStore {
    fn get(&self, key: &SessionKey) -> Option<Arc<Session>> {
        self.map.get(key).map(|e| e.value().clone())
    }

    fn put(&self, session: Arc<Session>) {
        self.map.insert(session.key, session);
    }

    fn remove(&self, key: &SessionKey) {
        self.map.remove(key);
    }

    fn len(&self) -> usize {
        self.map.len()
    }

    fn purge(&self, expired: &dyn Fn(&Session) -> bool) {
        self.map.retain(|_, s| !expired(s));
    }
}
