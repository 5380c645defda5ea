//! The checks a request passes before anything is prepared for Azure
//! DevOps: its origin and caller, then `[access]`.

use std::net::SocketAddr;

use http::{Request, Response, header};
use hyper::body::Incoming;

use super::{Inner, cors, origin, policy};
use crate::access::AccessRecord;
use crate::body::ProxyBody;
use crate::error::{Error, Refusal};
use crate::identity::Credential;

impl Inner {
    /// The origin and caller checks; a CORS preflight is answered here
    /// (`Some`), and a CORS caller's origin noted for the answer.
    pub(super) fn admit(
        &self,
        req: &mut Request<Incoming>,
        remote: SocketAddr,
        record: &mut AccessRecord,
    ) -> Result<Option<Response<ProxyBody>>, Error> {
        match self.origins.admit(req)? {
            // Complete as it is: not decorated again on the way out.
            origin::Admission::Preflight(origin) => {
                return Ok(Some(cors::preflight(&origin, req.headers())));
            }
            origin::Admission::Cors(origin) => record.ctx_mut().cors = Some(origin),
            origin::Admission::Admitted => {}
        }
        if let Some(callers) = &self.callers {
            let secret = callers.admit(remote.ip(), req.headers_mut())?;
            if let Some(a) = record.audit_mut() {
                a.caller_secret = secret;
            }
        }
        if let (Some(policy), Some(crate::endpoint::Endpoint::Pats(_))) =
            (&self.policy, &record.ctx().own)
        {
            policy.own_pats(req.method()).map_err(|refused| {
                self.metrics.requests.access_refused(&refused.rule);
                Error::from(Refusal::Access {
                    rule: refused.rule,
                    why: refused.why,
                    read_only: refused.read_only,
                })
            })?;
        }
        Ok(None)
    }

    /// `[access]`'s verdict on `req`, sent with `credential`; a refusal
    /// is counted by rule and logged.
    pub(super) fn admit_access(
        &self,
        policy: &policy::Policy,
        req: &Request<Incoming>,
        credential: &Credential,
    ) -> Result<Option<String>, (String, Error)> {
        let user = match credential {
            Credential::User(u) => Some(Some(policy::Who {
                user: &u.session.user,
                member: &u.member,
            })),
            Credential::Client(_) => Some(None),
            _ => None,
        };
        let refuse = |refused: policy::Refused| {
            self.metrics.requests.access_refused(&refused.rule);
            tracing::info!(rule = %refused.rule, why = %refused.why, "refused by [access]");
            let rule = refused.rule.clone();
            let e = Error::from(Refusal::Access {
                rule: refused.rule,
                why: refused.why,
                read_only: refused.read_only,
            });
            (rule, e)
        };
        let method = policy::effective_method(req.method(), req.headers()).map_err(refuse)?;
        let asked = policy::Asked {
            method: &method,
            path: req.uri().path(),
            query: req.uri().query(),
            user,
            upgrade: req.headers().contains_key(header::UPGRADE)
                || req.method() == http::Method::CONNECT,
        };
        policy
            .decide(&asked)
            .map(|r| r.map(str::to_string))
            .map_err(refuse)
    }
}
