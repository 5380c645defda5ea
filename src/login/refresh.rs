//! Keeping a session's access token fresh: refresh when it is within
//! `refresh_before` of expiry, one token call per session however many
//! requests wait (they share its outcome), and failures handled by cause.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Login;
use super::idp::{Failure, Grant};
use crate::error::Error;
use crate::session::{Miss, RefreshState, Session, Tokens};

/// A token this close to expiry is not sent any more.
const MIN_VALIDITY: Duration = Duration::from_secs(2);
/// Backoff after a transient failure: first step and cap.
const BACKOFF_FIRST: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(60);

impl Login {
    /// The session's tokens, refreshed first when due. `forced` is the
    /// generation Azure DevOps just refused: refresh unless a newer one
    /// exists already.
    pub(super) async fn fresh(
        &self,
        session: &Arc<Session>,
        forced: Option<u64>,
        return_to: &str,
    ) -> Result<Tokens, Error> {
        let tokens = session.tokens();
        if !self.due(&tokens, forced) {
            return Ok(tokens);
        }
        let seen = session.attempts();
        let mut state = session.refresh.lock().await;
        let tokens = session.tokens();
        if !self.due(&tokens, forced) {
            // Another request refreshed while this one waited.
            self.metrics.record_refresh("shared");
            return Ok(tokens);
        }
        if session.attempts() != seen {
            // A call ended while we waited without new tokens: share its
            // outcome instead of calling again.
            let failure = state.last_failure.clone();
            return self.after_failure(session, &mut state, tokens, failure, false, return_to);
        }
        if let Some(at) = state.retry_at {
            if Instant::now() < at {
                let failure = state.last_failure.clone();
                return self.after_failure(session, &mut state, tokens, failure, false, return_to);
            }
        }
        let Some(refresh_token) = tokens.refresh_token.clone() else {
            // Nothing to refresh with: use the token while it lasts.
            if tokens.expires_at > Instant::now() + MIN_VALIDITY {
                return Ok(tokens);
            }
            let failure = Some(Failure::Relogin {
                reason: "the access token expired and the provider issued no refresh token \
                         (request the offline_access scope)"
                    .into(),
                claims: None,
            });
            return self.after_failure(session, &mut state, tokens, failure, true, return_to);
        };
        session.note_attempt(&mut state);
        match self.provider.refresh(refresh_token.expose()).await {
            Ok(set) => {
                state.last_failure = None;
                state.retry_at = None;
                state.backoff = Duration::ZERO;
                self.metrics.record_refresh("ok");
                session
                    .set_tokens(&set.access_token, set.expires_in, set.refresh_token)
                    .ok_or_else(|| Error::ProviderFailed {
                        operator: false,
                        retry_after: None,
                        detail: "the provider's access token cannot be sent in a header".into(),
                    })
            }
            Err(e) => {
                let failure = e.classify(Grant::Refresh);
                state.last_failure = Some(failure.clone());
                self.after_failure(session, &mut state, tokens, Some(failure), true, return_to)
            }
        }
    }

    /// Seconds until the next refresh attempt, rounded up so a client that
    /// waits this long finds the backoff over.
    fn retry_after(state: &RefreshState) -> u64 {
        let wait = state
            .retry_at
            .map(|at| at.saturating_duration_since(Instant::now()))
            .unwrap_or(BACKOFF_FIRST);
        wait.as_millis().div_ceil(1000).max(1) as u64
    }

    /// The next backoff step: 1 s, doubling, at most 60 s.
    fn back_off(state: &mut RefreshState) {
        state.backoff = (state.backoff * 2).clamp(BACKOFF_FIRST, BACKOFF_MAX);
        state.retry_at = Some(Instant::now() + state.backoff);
    }

    fn due(&self, tokens: &Tokens, forced: Option<u64>) -> bool {
        match forced {
            Some(generation) => generation == tokens.generation,
            // Short-lived tokens (under twice `refresh_before`) are
            // refreshed at half-life, not on every request.
            None => {
                let margin = self.refresh_before.min(tokens.lifetime / 2);
                tokens.expires_at.saturating_duration_since(Instant::now()) <= margin
            }
        }
    }

    /// What a failed (or skipped) refresh means for this request. `fresh`
    /// is true for the request that made the call, which logs and counts.
    fn after_failure(
        &self,
        session: &Arc<Session>,
        state: &mut RefreshState,
        tokens: Tokens,
        failure: Option<Failure>,
        fresh: bool,
        return_to: &str,
    ) -> Result<Tokens, Error> {
        let still_valid = tokens.expires_at > Instant::now() + MIN_VALIDITY;
        let key = format!("{:?}", session.key);
        match failure {
            Some(Failure::Relogin { reason, claims }) => {
                if fresh {
                    tracing::info!(session = %key, %reason, "refresh refused; the session ends");
                    self.metrics.record_refresh("relogin");
                    self.end_session(&session.key);
                }
                Err(self.needs_login(Miss::Expired, return_to, claims.as_deref()))
            }
            Some(Failure::Operator { reason }) => {
                if fresh {
                    // Back off as well: asking again at once will not fix
                    // the configuration.
                    Self::back_off(state);
                    tracing::error!(
                        session = %key,
                        %reason,
                        retry_in = ?state.backoff,
                        "the provider refused the proxy's own credentials: fix auth.client_id, \
                         the client secret or certificate; sessions are kept"
                    );
                    self.metrics.record_refresh("operator_error");
                }
                if still_valid {
                    return Ok(tokens);
                }
                Err(Error::ProviderFailed {
                    operator: true,
                    retry_after: Some(Self::retry_after(state)),
                    detail: reason,
                })
            }
            Some(Failure::Transient { reason }) => {
                if fresh {
                    Self::back_off(state);
                    tracing::warn!(
                        session = %key,
                        %reason,
                        retry_in = ?state.backoff,
                        "refresh failed; will retry"
                    );
                    self.metrics.record_refresh("transient_error");
                }
                if still_valid {
                    return Ok(tokens);
                }
                Err(Error::ProviderFailed {
                    operator: false,
                    retry_after: Some(Self::retry_after(state)),
                    detail: reason,
                })
            }
            // A previous call succeeded for another generation: nothing to
            // share; use what is there.
            None => Ok(tokens),
        }
    }
}
