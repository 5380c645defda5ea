// A real OpenID provider (the certified `oidc-provider` package) for the
// integration tests. Prints {"issuer": ...} on its first stdout line.
//
// - one confidential client `proxy` (secret `proxy-secret`) whose loopback
//   redirect URI may use any port (RFC 8252 §7.3, application_type native);
// - PKCE required; refresh tokens issued and rotated;
// - access tokens are JWTs for Azure DevOps' resource id, signed with the
//   provider's keys, valid ACCESS_TTL seconds (default 5), so a fake Azure
//   DevOps can verify them against /jwks;
// - GET /_stats counts grants, so tests can assert how many refreshes ran.
import http from 'node:http';
import Provider from 'oidc-provider';

const ttl = Number(process.env.ACCESS_TTL || 5);
const server = http.createServer();
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const issuer = `http://127.0.0.1:${server.address().port}`;
const stats = { authorization_code: 0, refresh_token: 0, refresh_errors: 0 };

const provider = new Provider(issuer, {
  clients: [{
    client_id: 'proxy',
    client_secret: 'proxy-secret',
    application_type: 'native',
    redirect_uris: ['http://127.0.0.1/.auth/callback'],
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_post',
  }],
  pkce: { required: () => true },
  features: {
    devInteractions: { enabled: true },
    rpInitiatedLogout: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => 'urn:azure-devops',
      useGrantedResource: () => true,
      getResourceServerInfo: () => ({
        scope: 'vso.code',
        audience: '499b84ac-1321-427f-aa17-267ca6975798',
        accessTokenFormat: 'jwt',
        accessTokenTTL: ttl,
      }),
    },
  },
  ttl: { AccessToken: ttl },
  rotateRefreshToken: true,
  issueRefreshToken: () => true,
  scopes: ['openid', 'offline_access', 'profile', 'email', 'vso.code'],
  claims: { email: ['email', 'email_verified'], profile: ['name', 'preferred_username'] },
  // "unverified-bob" claims bob's address, which the provider did not
  // verify (an account anyone could register with any address);
  // "silent-bob" claims it and says nothing about verification (no
  // email_verified claim at all).
  findAccount: (ctx, id) => {
    const prefix = ['unverified-', 'silent-'].find((p) => id.startsWith(p));
    const name = prefix ? id.slice(prefix.length) : id;
    const claims = {
      sub: id,
      email: `${name}@example.com`,
      name: `User ${id}`,
      preferred_username: `${name}@example.com`,
    };
    if (prefix !== 'silent-') claims.email_verified = !prefix;
    return { accountId: id, claims: () => claims };
  },
});
provider.on('grant.success', (ctx) => {
  const grant = ctx.oidc.params.grant_type;
  if (grant in stats) stats[grant] += 1;
});
provider.on('grant.error', (ctx) => {
  if (ctx.oidc.params.grant_type === 'refresh_token') stats.refresh_errors += 1;
});
const callback = provider.callback();
server.on('request', (req, res) => {
  if (req.url === '/_stats') {
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify(stats));
    return;
  }
  callback(req, res);
});
console.log(JSON.stringify({ issuer }));
