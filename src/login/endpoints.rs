//! The `/.auth/` endpoints, each handed to the component that owns it.
//! They are answered here and never forwarded.

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use super::Login;
use super::answers::html;
use crate::body::ProxyBody;
use crate::endpoint::Endpoint;
use crate::error::{Error, LoginError, Refusal};
use crate::request::{ClientKind, RequestCtx};

impl Login {
    /// Serves one `/.auth/...` request.
    pub async fn handle(
        &self,
        req: Request<Incoming>,
        ctx: &RequestCtx,
    ) -> Result<Response<ProxyBody>, Error> {
        let method = req.method().clone();
        let Some(endpoint) = ctx.own.clone() else {
            return Err(Refusal::ReservedPath.into());
        };
        let allowed: &[Method] = match &endpoint {
            Endpoint::Tokens(id) => {
                return Box::pin(self.tokens_endpoint(req, ctx, id.as_deref())).await;
            }
            Endpoint::Pats(id) => {
                return Box::pin(self.pats_endpoint(req, ctx, id.as_deref())).await;
            }
            Endpoint::Login | Endpoint::Me => &[Method::GET],
            Endpoint::Callback => &[Method::GET, Method::POST],
            // GET only asks for confirmation: a link or an image from
            // another site must not sign anyone out.
            Endpoint::Logout if ctx.client == ClientKind::Browser => &[Method::GET, Method::POST],
            Endpoint::Logout => &[Method::POST],
            Endpoint::Reserved => return Err(Refusal::ReservedPath.into()),
        };
        if !allowed.contains(&method) {
            return Err(Error::from(LoginError::MethodNotAllowed {
                allowed: allowed
                    .iter()
                    .map(|m| m.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            }));
        }
        match endpoint {
            Endpoint::Login => self.sign_in.start(&req).await,
            Endpoint::Callback => self.sign_in.callback(req).await,
            Endpoint::Logout if method == Method::GET => Ok(self.sign_in.confirm_logout()),
            Endpoint::Logout => self.sign_in.logout(&req, ctx).await,
            _ => self.sign_in.me(&req).await,
        }
    }

    /// `/.auth/tokens` and `/.auth/tokens/{id}`: the signed-in browser's
    /// personal proxy tokens.
    async fn tokens_endpoint(
        &self,
        req: Request<Incoming>,
        ctx: &RequestCtx,
        id: Option<&str>,
    ) -> Result<Response<ProxyBody>, Error> {
        let Some(personal) = &self.personal else {
            return Err(Refusal::ReservedPath.into());
        };
        let session = self
            .sign_in
            .browser_session(&req, ctx, "/.auth/tokens")
            .await?;
        personal.answer(req, ctx, id, &session).await
    }

    /// `/.auth/pats` and `/.auth/pats/{authorizationId}`: the signed-in
    /// Entra user's Azure DevOps PATs, asked with their token of the
    /// organization's directory.
    async fn pats_endpoint(
        &self,
        req: Request<Incoming>,
        ctx: &RequestCtx,
        id: Option<&str>,
    ) -> Result<Response<ProxyBody>, Error> {
        let session = self
            .sign_in
            .browser_session(&req, ctx, ctx.path_and_query())
            .await?;
        let Some(api) = &self.pats else {
            return Ok(html(StatusCode::NOT_FOUND, super::pats::not_entra_page()));
        };
        let asked = api.read(req, ctx, id).await?;
        let bearer = match asked.org() {
            Some(org) => Some(self.bearer_of(&session, org, "/.auth/pats").await?),
            None => None,
        };
        api.answer(asked, bearer).await
    }
}
