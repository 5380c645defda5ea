//! Keeping a session's access token fresh: refresh when it is within
//! `refresh_before` of expiry, one token call per session however many
//! requests wait (they share its outcome), failures handled by cause, and
//! the user's groups and roles found again with every new token.
//! The [`Refresher`] answers with tokens or a [`Stale`] outcome; what a
//! request is told (sign-in URLs, cookies) is the façade's.

use std::sync::Arc;
use std::time::Duration;

use crate::clock::Clock;

use super::membership::{Denied, Membership};
use super::provider::ProviderClient;
use crate::backoff;
use crate::error::Error;
use crate::gate::{Attempts, Decision, Failure, Gate, Held, Refusal};
use crate::metrics::{ClaimsOutcome, Metrics};
use crate::oauth::idp::Grant;
use crate::session::backend::{StoreError, Update};
use crate::session::{LEASE_TTL, Member, Miss, Reloaded, Session, Sessions, Tokens};

/// Azure DevOps refused a session's token: which generation, and the
/// claims of its claims challenge (CAE) when it sent one.
#[derive(Debug, Clone, Copy)]
pub struct Refused<'a> {
    /// The refused token's generation.
    pub generation: u64,
    /// The decoded claims to ask the provider for.
    pub claims: Option<&'a str>,
}

/// Why a session has no token to send.
#[derive(Debug)]
pub(super) enum Stale {
    /// The user must sign in again (asking for `claims` when a claims
    /// challenge demands them): the refresh token is refused, missing,
    /// or the session ended.
    SignInAgain {
        /// What the sign-in answer tells the user.
        miss: Miss,
        /// The claims a new sign-in must satisfy.
        claims: Option<String>,
    },
    /// The refresh failed in a way a sign-in does not fix (the provider
    /// or the store): the answer as it is.
    Failed(Error),
}

impl From<Error> for Stale {
    fn from(e: Error) -> Self {
        Self::Failed(e)
    }
}

/// A session's tokens kept fresh: one token call per session at a time
/// (and, with a shared store, per session across replicas).
pub(super) struct Refresher {
    provider: Arc<ProviderClient>,
    /// Groups and roles, found again at every refresh, when read.
    membership: Option<Arc<Membership>>,
    store: Arc<Sessions>,
    /// When tokens are refreshed (`auth.refresh_before`,
    /// `auth.forced_refresh_interval`).
    gate: Gate,
    /// How long a token call may take (bounds waiting for another
    /// replica's).
    provider_timeout: Duration,
    metrics: Arc<Metrics>,
}

impl Refresher {
    /// Keeps the tokens of `store`'s sessions, redeeming at `provider`.
    pub(super) fn new(
        (provider, membership): (Arc<ProviderClient>, Option<Arc<Membership>>),
        store: Arc<Sessions>,
        gate: Gate,
        provider_timeout: Duration,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            provider,
            membership,
            store,
            gate,
            provider_timeout,
            metrics,
        }
    }

    /// The session's tokens, refreshed first when due. `forced` names the
    /// generation Azure DevOps just refused (and its claims challenge):
    /// refresh unless a newer one exists already.
    pub(super) async fn fresh(
        &self,
        session: &Arc<Session>,
        forced: Option<Refused<'_>>,
    ) -> Result<Tokens, Stale> {
        let tokens = session.tokens();
        if !self.due(&tokens, forced) {
            return Ok(tokens);
        }
        let seen = session.attempts();
        let mut state = session.refresh.lock().await;
        let tokens = session.tokens();
        let now = self.clock().now();
        let waited = session.attempts() != seen;
        match self
            .gate
            .decide(&held(&tokens), refusal(forced), &mut state, waited, now)
        {
            Decision::Use => {
                // Another request refreshed while this one waited.
                self.metrics
                    .login
                    .refresh(crate::metrics::RefreshOutcome::Shared);
                return Ok(tokens);
            }
            Decision::SignInAgain => {
                // A fresh token was challenged again: only a sign-in can
                // satisfy these claims.
                self.metrics.login.claims(ClaimsOutcome::SignIn);
                return Err(Stale::SignInAgain {
                    miss: Miss::Expired,
                    claims: forced.and_then(|f| f.claims).map(str::to_string),
                });
            }
            Decision::Throttled => {
                self.metrics
                    .login
                    .refresh(crate::metrics::RefreshOutcome::Throttled);
                return Ok(tokens);
            }
            // A call ended while we waited without new tokens, or the
            // backoff runs: its outcome is ours.
            Decision::Share | Decision::BackingOff => {
                let failure = state.last_failure.clone();
                return self.after_failure(session, &mut state, tokens, failure, false);
            }
            Decision::Refresh => {}
        }
        if !self.store.shared() {
            let claims = forced.and_then(|f| f.claims);
            let result = self.redeem(session, &mut state, tokens, claims).await;
            if result.is_ok() {
                // A failed write is retried when the store answers again;
                // the new tokens are in memory meanwhile.
                let _ = self.store.save(session).await;
            }
            return result;
        }
        Box::pin(self.fresh_shared(session, &mut state, forced)).await
    }

    /// Refresh with replicas: re-read the store (another replica may have
    /// refreshed), take the session's lease, re-read once more, and only
    /// then redeem the refresh token, renewing the lease while the call
    /// is in flight. A replica that finds the lease taken waits for the
    /// holder's tokens instead of redeeming the same refresh token.
    async fn fresh_shared(
        &self,
        session: &Arc<Session>,
        state: &mut Attempts,
        forced: Option<Refused<'_>>,
    ) -> Result<Tokens, Stale> {
        let holder = super::provider::random_token();
        // A bound on real waiting (the lease holder's token call), so the
        // system clock, not the proxy's.
        let deadline = crate::clock::real_instant()
            + self.provider_timeout
            + LEASE_TTL
            + Duration::from_secs(1);
        let mut pause = Duration::from_millis(5);
        loop {
            if let Some(done) = self.look_again(session, forced).await {
                return done;
            }
            match self.store.lease(session, &holder).await {
                Ok(true) => break,
                Ok(false) => {}
                Err(e) => return Ok(self.store_down(session, e)?),
            }
            if crate::clock::real_instant() >= deadline {
                let tokens = session.tokens();
                if self.usable(&tokens) {
                    return Ok(tokens);
                }
                return Err(Stale::Failed(Error::ProviderFailed {
                    operator: false,
                    retry_after: Some(1),
                    detail: "another replica is refreshing this session and has not finished"
                        .into(),
                    said: None,
                }));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(100));
        }
        // The holder before us may have finished between our look and
        // the lease.
        if let Some(done) = self.look_again(session, forced).await {
            self.store.release(session, &holder).await;
            return done;
        }
        let claims = forced.and_then(|f| f.claims);
        let result = self.redeem_holding(session, state, (&holder, claims)).await;
        if result.is_ok() {
            match self.store.save(session).await {
                Ok(Update::Gone) => {
                    self.store.release(session, &holder).await;
                    return Err(Stale::SignInAgain {
                        miss: Miss::Unknown,
                        claims: None,
                    });
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(
                    session = ?session.key,
                    error = %e,
                    "refreshed tokens not written to the store; written when it answers again"
                ),
            }
        }
        self.store.release(session, &holder).await;
        result
    }

    /// [`Self::redeem`] while holding the lease, renewing it until the
    /// token call ends.
    async fn redeem_holding(
        &self,
        session: &Arc<Session>,
        state: &mut Attempts,
        (holder, claims): (&str, Option<&str>),
    ) -> Result<Tokens, Stale> {
        let call = self.redeem(session, state, session.tokens(), claims);
        tokio::pin!(call);
        let mut renew =
            tokio::time::interval_at(tokio::time::Instant::now() + LEASE_TTL / 3, LEASE_TTL / 3);
        loop {
            tokio::select! {
                r = &mut call => return r,
                _ = renew.tick() => {
                    if !matches!(self.store.renew(session, holder).await, Ok(true)) {
                        tracing::warn!(
                            session = ?session.key,
                            "lost the refresh lease during a slow token call"
                        );
                    }
                }
            }
        }
    }

    /// Re-reads the session from the shared store: `Some` when that
    /// settles the request (fresh tokens from another replica, a
    /// sign-out, or the store failing).
    async fn look_again(
        &self,
        session: &Arc<Session>,
        forced: Option<Refused<'_>>,
    ) -> Option<Result<Tokens, Stale>> {
        match self.store.reload(session).await {
            Ok(Reloaded::Gone) => {
                self.store.forget(&session.key);
                Some(Err(Stale::SignInAgain {
                    miss: Miss::Unknown,
                    claims: None,
                }))
            }
            Ok(_) => {
                let tokens = session.tokens();
                if self.due(&tokens, forced) {
                    return None;
                }
                self.metrics
                    .login
                    .refresh(crate::metrics::RefreshOutcome::Replica);
                Some(Ok(tokens))
            }
            Err(e) => Some(self.store_down(session, e).map_err(Stale::Failed)),
        }
    }

    /// The store cannot coordinate a refresh: without it two replicas
    /// could redeem the same refresh token, so none does. The current
    /// token serves while valid.
    fn store_down(&self, session: &Session, e: StoreError) -> Result<Tokens, Error> {
        let tokens = session.tokens();
        if self.usable(&tokens) {
            return Ok(tokens);
        }
        Err(Error::StoreUnavailable(e))
    }

    /// One token call with the session's refresh token, asking for
    /// `claims` (a claims challenge) when given.
    async fn redeem(
        &self,
        session: &Arc<Session>,
        state: &mut Attempts,
        tokens: Tokens,
        claims: Option<&str>,
    ) -> Result<Tokens, Stale> {
        let Some(refresh_token) = tokens.refresh_token.clone() else {
            // Nothing to refresh with: use the token while it lasts.
            if self.usable(&tokens) {
                return Ok(tokens);
            }
            let failure = Some(Failure::Relogin {
                reason: "the access token expired and the provider issued no refresh token \
                         (request the offline_access scope)"
                    .into(),
                claims: None,
            });
            return self.after_failure(session, state, tokens, failure, true);
        };
        session.note_attempt(state);
        match self.provider.refresh(refresh_token.expose(), claims).await {
            Ok(set) => {
                let member = match self.member_after(session, &set, &refresh_token).await {
                    Ok(member) => member,
                    Err(denied) => return self.denied(session, state, tokens, denied),
                };
                if claims.is_some() {
                    self.metrics.login.claims(ClaimsOutcome::Refreshed);
                }
                state.succeeded();
                self.metrics
                    .login
                    .refresh(crate::metrics::RefreshOutcome::Ok);
                session
                    .set_tokens(&set.access_token, set.expires_in, set.refresh_token, member)
                    .ok_or_else(|| {
                        Stale::Failed(Error::ProviderFailed {
                            operator: false,
                            retry_after: None,
                            detail: "the provider's access token cannot be sent in a header".into(),
                            said: None,
                        })
                    })
            }
            Err(e) => {
                let mut failure = e.classify(Grant::Refresh);
                if let Some(challenge) = claims {
                    let outcome = match &mut failure {
                        // The sign-in must satisfy the challenge too.
                        Failure::Relogin { claims, .. } => {
                            claims.get_or_insert_with(|| challenge.to_string());
                            ClaimsOutcome::SignIn
                        }
                        _ => ClaimsOutcome::Failed,
                    };
                    self.metrics.login.claims(outcome);
                }
                state.last_failure = Some(failure.clone());
                self.after_failure(session, state, tokens, Some(failure), true)
            }
        }
    }

    /// The user's groups and roles found again after a refresh answered
    /// `set` (`None` when none are read): from the new ID token, which
    /// must name the session's user, and Graph on overage.
    async fn member_after(
        &self,
        session: &Session,
        set: &crate::oauth::idp::TokenSet,
        old_refresh: &crate::config::Secret,
    ) -> Result<Option<Member>, Denied> {
        let Some(membership) = &self.membership else {
            return Ok(None);
        };
        let unverified = |reason: String| {
            Denied::Unverified(Failure::Operator {
                reason: format!("the refreshed ID token: {reason}"),
                said: None,
            })
        };
        let (user, claims) = self
            .provider
            .refreshed_claims(set)
            .await
            .map_err(|e| match e {
                crate::oauth::GrantError::IdToken(
                    crate::oauth::id_token::IdTokenError::Invalid(why),
                ) => unverified(why),
                other => Denied::Unverified(Failure::Transient {
                    reason: format!("the refreshed ID token: {other}"),
                }),
            })?;
        let same = |a: &Option<String>, b: &Option<String>| {
            a.as_deref().map(str::to_ascii_lowercase) == b.as_deref().map(str::to_ascii_lowercase)
        };
        if !same(&user.object_id, &session.user.object_id)
            || !same(&user.tenant, &session.user.tenant)
        {
            return Err(unverified(
                "it names another user than the session's".into(),
            ));
        }
        let rt = set.refresh_token.as_ref().unwrap_or(old_refresh);
        membership.find(&claims, Some(rt.expose())).await.map(Some)
    }

    /// A refresh whose membership check did not admit the user: without
    /// a required group or role the session ends (requests waiting on
    /// this refresh are sent to sign in, where they are refused too);
    /// when it could not be checked, the current token serves while
    /// valid and the check is retried after a backoff.
    fn denied(
        &self,
        session: &Arc<Session>,
        state: &mut Attempts,
        tokens: Tokens,
        denied: Denied,
    ) -> Result<Tokens, Stale> {
        let key = format!("{:?}", session.key);
        match &denied {
            Denied::NotMember(reason) => {
                tracing::info!(session = %key, %reason, "membership lost at refresh; the session ends");
                self.metrics
                    .login
                    .refresh(crate::metrics::RefreshOutcome::NotMember);
                state.last_failure = Some(Failure::Relogin {
                    reason: reason.clone(),
                    claims: None,
                });
                super::end_session(&self.store, session);
                Err(Stale::Failed(denied.into_error()))
            }
            Denied::Unverified(failure) => {
                self.back_off(state);
                let outcome = match failure {
                    Failure::Operator { .. } => crate::metrics::RefreshOutcome::OperatorError,
                    _ => crate::metrics::RefreshOutcome::TransientError,
                };
                self.metrics.login.refresh(outcome);
                tracing::warn!(
                    session = %key,
                    error = ?failure,
                    retry_in = ?state.backoff.step(),
                    "the user's groups could not be checked after a refresh; the refreshed token \
                     is not used"
                );
                state.last_failure = Some(failure.clone());
                if self.usable(&tokens) {
                    return Ok(tokens);
                }
                Err(Stale::Failed(denied.into_error()))
            }
        }
    }

    /// Seconds until the next refresh attempt, rounded up so a client that
    /// waits this long finds the backoff over.
    fn retry_after(&self, state: &Attempts) -> u64 {
        backoff::seconds_until(state.retry_at, self.clock().now())
    }

    /// The next (jittered) backoff step: 1 s, doubling, at most 60 s.
    fn back_off(&self, state: &mut Attempts) {
        state.back_off(self.clock().now());
    }

    /// The time tokens and backoffs are kept by (the session store's).
    fn clock(&self) -> &Clock {
        self.store.clock()
    }

    /// Whether the token can still be sent.
    pub(super) fn usable(&self, tokens: &Tokens) -> bool {
        Gate::usable(tokens.expires_at, self.clock().now())
    }

    /// Whether to refresh: the refused generation is still current, or
    /// the token is near expiry.
    fn due(&self, tokens: &Tokens, forced: Option<Refused<'_>>) -> bool {
        self.gate
            .due(&held(tokens), refusal(forced), self.clock().now())
    }

    /// What a failed (or skipped) refresh means for this request. `fresh`
    /// is true for the request that made the call, which logs and counts.
    fn after_failure(
        &self,
        session: &Arc<Session>,
        state: &mut Attempts,
        tokens: Tokens,
        failure: Option<Failure>,
        fresh: bool,
    ) -> Result<Tokens, Stale> {
        let still_valid = self.usable(&tokens);
        let key = format!("{:?}", session.key);
        match failure {
            Some(Failure::Relogin { reason, claims }) => {
                if fresh {
                    tracing::info!(session = %key, %reason, "refresh refused; the session ends");
                    self.metrics
                        .login
                        .refresh(crate::metrics::RefreshOutcome::Relogin);
                    super::end_session(&self.store, session);
                }
                Err(Stale::SignInAgain {
                    miss: Miss::Expired,
                    claims,
                })
            }
            Some(Failure::Operator { reason, said }) => {
                if fresh {
                    // Back off as well: asking again at once will not fix
                    // the configuration.
                    self.back_off(state);
                    tracing::error!(
                        session = %key,
                        %reason,
                        retry_in = ?state.backoff.step(),
                        "the provider refused the proxy's own credentials: fix auth.client_id, \
                         the client secret or certificate; sessions are kept"
                    );
                    self.metrics
                        .login
                        .refresh(crate::metrics::RefreshOutcome::OperatorError);
                }
                if still_valid {
                    return Ok(tokens);
                }
                Err(Stale::Failed(Error::ProviderFailed {
                    operator: true,
                    retry_after: Some(self.retry_after(state)),
                    detail: reason,
                    said,
                }))
            }
            Some(Failure::Transient { reason }) => {
                if fresh {
                    self.back_off(state);
                    tracing::warn!(
                        session = %key,
                        %reason,
                        retry_in = ?state.backoff.step(),
                        "refresh failed; will retry"
                    );
                    self.metrics
                        .login
                        .refresh(crate::metrics::RefreshOutcome::TransientError);
                }
                if still_valid {
                    return Ok(tokens);
                }
                Err(Stale::Failed(Error::ProviderFailed {
                    operator: false,
                    retry_after: Some(self.retry_after(state)),
                    detail: reason,
                    said: None,
                }))
            }
            // A previous call succeeded for another generation: nothing to
            // share; use what is there.
            None => Ok(tokens),
        }
    }
}

/// A session's tokens as the gate sees them.
fn held(tokens: &Tokens) -> Held {
    Held {
        expires_at: tokens.expires_at,
        lifetime: tokens.lifetime,
        generation: tokens.generation,
    }
}

fn refusal(forced: Option<Refused<'_>>) -> Option<Refusal> {
    forced.map(|f| Refusal {
        generation: f.generation,
        claims: f.claims.is_some(),
    })
}
