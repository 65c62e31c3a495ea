// A real OpenID Provider for the interop suite: panva's oidc-provider (v9) on 127.0.0.1.
//
// Environment:
//   IDP_PORT            port to listen on (127.0.0.1 only)                      [required]
//   IDP_CALLBACK_PORTS  comma-separated ports; each client registers
//                       http://localhost:<port>/auth/callback                   [required]
//   IDP_RESOURCE        resource indicator / backend URL the access tokens are for [required]
//   IDP_ACCESS_TTL      access-token lifetime in seconds                         [3600]
//   IDP_EVENTS_LOG      file to append one JSON line per provider event to       [none]
//   IDP_KEY_FILE        JWK file: the signing key is read from it, or generated and
//                       written to it (keeps the key across restarts)           [none]
//
// State (sessions, grants, refresh tokens) lives in memory: a restart forgets every grant.
//
// Clients: "interop-public" (token_endpoint_auth_method none, PKCE) and
// "interop-confidential" (client_secret_basic, secret "interop-secret").
// Prints "IDP READY <issuer>" on stdout once listening.
import { appendFileSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { generateKeyPairSync } from 'node:crypto';
import Provider from 'oidc-provider';

const port = Number(process.env.IDP_PORT);
const callbackPorts = (process.env.IDP_CALLBACK_PORTS || '').split(',').filter(Boolean);
const resource = process.env.IDP_RESOURCE;
const accessTtl = Number(process.env.IDP_ACCESS_TTL || 3600);
const eventsLog = process.env.IDP_EVENTS_LOG;
if (!port || callbackPorts.length === 0 || !resource) {
  console.error('idp.mjs: IDP_PORT, IDP_CALLBACK_PORTS and IDP_RESOURCE are required');
  process.exit(2);
}

const issuer = `http://127.0.0.1:${port}`;
const redirectUris = callbackPorts.map((p) => `http://localhost:${p}/auth/callback`);
const common = {
  redirect_uris: redirectUris,
  grant_types: ['authorization_code', 'refresh_token'],
  response_types: ['code'],
};

// The signing key; IDP_KEY_FILE keeps it across restarts (a restart otherwise only loses state).
function loadSigningKey() {
  const file = process.env.IDP_KEY_FILE;
  if (file && existsSync(file)) return JSON.parse(readFileSync(file, 'utf8'));
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = { ...privateKey.export({ format: 'jwk' }), kid: 'interop-rs256', alg: 'RS256', use: 'sig' };
  if (file) writeFileSync(file, JSON.stringify(jwk), { mode: 0o600 });
  return jwk;
}
const signingKey = loadSigningKey();

function record(event, data) {
  if (!eventsLog) return;
  try {
    appendFileSync(eventsLog, `${JSON.stringify({ at: new Date().toISOString(), event, ...data })}\n`);
  } catch {
    // debugging aid only
  }
}

const RESOURCE_SCOPE = 'openid profile email offline_access';

const configuration = {
  clients: [
    { client_id: 'interop-public', token_endpoint_auth_method: 'none', ...common },
    {
      client_id: 'interop-confidential',
      client_secret: 'interop-secret',
      token_endpoint_auth_method: 'client_secret_basic',
      ...common,
    },
  ],
  jwks: { keys: [signingKey] },
  cookies: { keys: ['interop-suite-cookie-key'] },
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name'],
  },
  // Any login works (devInteractions): the account id is what was typed as login.
  async findAccount(ctx, id) {
    return {
      accountId: id,
      async claims() {
        return { sub: id, email: `${id}@interop.test`, email_verified: true, name: `Interop ${id}` };
      },
    };
  },
  pkce: { required: () => true },
  features: {
    devInteractions: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => resource,
      useGrantedResource: () => true,
      getResourceServerInfo: () => ({
        scope: RESOURCE_SCOPE,
        audience: 'mcp-backend',
        accessTokenFormat: 'jwt',
        accessTokenTTL: accessTtl,
        jwt: { sign: { alg: 'RS256' } },
      }),
    },
    revocation: { enabled: true },
  },
  // Refresh tokens for every code grant of these clients, whatever the scopes, and rotated on use.
  issueRefreshToken: (ctx, client) => client.grantTypeAllowed('refresh_token'),
  rotateRefreshToken: () => true,
  ttl: {
    AccessToken: () => accessTtl,
    IdToken: 3600,
    RefreshToken: 24 * 3600,
    Grant: 24 * 3600,
    Session: 24 * 3600,
    Interaction: 600,
    AuthorizationCode: 60,
  },
};

const provider = new Provider(issuer, configuration);
provider.proxy = false;

for (const event of [
  'authorization.success',
  'authorization.error',
  'grant.success',
  'grant.error',
  'grant.revoked',
  'refresh_token.consumed',
  'refresh_token.saved',
  'access_token.issued',
  'server_error',
]) {
  provider.on(event, (...args) => {
    const ctx = args.find((a) => a && a.oidc);
    const err = args.find((a) => a instanceof Error);
    record(event, {
      route: ctx?.oidc?.route,
      client: ctx?.oidc?.client?.clientId,
      grant_type: ctx?.oidc?.params?.grant_type,
      error: err ? `${err.name}: ${err.message} ${err.error_description || ''}`.trim() : undefined,
    });
  });
}

const server = provider.listen(port, '127.0.0.1', () => {
  console.log(`IDP READY ${issuer}`);
});
server.on('error', (err) => {
  console.error(`idp.mjs: ${err.message}`);
  process.exit(1);
});
const stop = () => server.close(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
