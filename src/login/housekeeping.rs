//! Session housekeeping for mode `user`: ended sessions and abandoned
//! sign-ins forgotten periodically, and the store asked whether it
//! answers (for `/readyz`).

use std::sync::Arc;
use std::time::Duration;

use super::Login;

/// How often ended sessions and abandoned sign-ins are forgotten.
const SWEEP_INTERVAL: Duration = Duration::from_secs(60);
/// How often the session store is asked whether it answers.
const STORE_CHECK_INTERVAL: Duration = Duration::from_secs(2);

/// Session housekeeping until `stop`: sweeps ended sessions and expired
/// store entries, and tells `store_up` whether the store answers (for
/// `/readyz`; the check writes back what the store missed when it answers
/// again).
pub async fn housekeeping(
    login: Arc<Login>,
    store_up: Arc<dyn Fn(bool) + Send + Sync>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut sweep =
        tokio::time::interval_at(tokio::time::Instant::now() + SWEEP_INTERVAL, SWEEP_INTERVAL);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut check = tokio::time::interval(STORE_CHECK_INTERVAL);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let sweep_now = tokio::select! {
            _ = sweep.tick() => true,
            _ = check.tick() => false,
            // Shutdown, or the server is gone.
            r = stop.wait_for(|s| *s) => {
                drop(r);
                return;
            }
        };
        if sweep_now {
            login.sweep().await;
        } else {
            store_up(login.sessions().check().await);
        }
    }
}
