// A real OpenID Provider for the interop suite: panva's oidc-provider (v9) on 127.0.0.1.
//
// Environment:
//   IDP_PORT            port to listen on (127.0.0.1 only)                      [required]
//   IDP_CALLBACK_PORTS  comma-separated ports; each client registers
//                       http://localhost:<port>/auth/callback                   [required]
//   IDP_RESOURCE        resource indicator / backend URL the access tokens are for, with
//                       aud "mcp-backend"; any indicator is accepted [required unless IDP_RESOURCES]
//   IDP_RESOURCES       comma-separated resource servers (RFC 8707) instead: an access token
//                       for one has aud = that indicator, an unknown one is invalid_target, and
//                       no resource asked for means none (an opaque, userinfo-only token) [none]
//   IDP_ACCESS_TTL      access-token lifetime in seconds                         [3600]
//   IDP_EVENTS_LOG      file to append one JSON line per provider event to       [none]
//   IDP_KEY_FILE        JWK file: the signing key is read from it, or generated and
//                       written to it (keeps the key across restarts)           [none]
//   IDP_DEVICE_INTERVAL seconds: announced as `interval` in device authorization responses
//                       (oidc-provider 9 sends none) and enforced: a device-code poll sooner
//                       than that after the previous one gets `slow_down`               [none]
//   IDP_CLIENT_JWKS     JWK file with the public key of the private_key_jwt client      [none]
//   IDP_REGISTRATION    1: open dynamic client registration (RFC 7591) at /reg, as a public
//                       MCP server's authorization server offers it                  [off]
//
// State (sessions, grants, refresh tokens) lives in memory: a restart forgets every grant.
//
// Clients: "interop-public" (token_endpoint_auth_method none, PKCE) and
// "interop-confidential" (client_secret_basic, secret "interop-secret"), authorization code;
// "interop-device" (none; RFC 8628 device code) and "interop-device-hasty" (the same, but held to
// an interval 1 s longer than the one it is told, as a provider under load might); "interop-cc-secret"
// (client_secret_basic, secret "interop-secret") and, with IDP_CLIENT_JWKS, "interop-cc-jwt"
// (private_key_jwt, RS256), client credentials.
// Prints "IDP READY <issuer>" on stdout once listening.
import { appendFileSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { generateKeyPairSync } from 'node:crypto';
import Provider, { errors } from 'oidc-provider';

const port = Number(process.env.IDP_PORT);
const callbackPorts = (process.env.IDP_CALLBACK_PORTS || '').split(',').filter(Boolean);
const resource = process.env.IDP_RESOURCE;
const resourceServers = (process.env.IDP_RESOURCES || '').split(',').filter(Boolean);
const accessTtl = Number(process.env.IDP_ACCESS_TTL || 3600);
const eventsLog = process.env.IDP_EVENTS_LOG;
const deviceInterval = Number(process.env.IDP_DEVICE_INTERVAL || 0);
const clientJwks = process.env.IDP_CLIENT_JWKS;
const registration = process.env.IDP_REGISTRATION === '1';
if (!port || callbackPorts.length === 0 || !(resource || resourceServers.length)) {
  console.error('idp.mjs: IDP_PORT, IDP_CALLBACK_PORTS and IDP_RESOURCE (or IDP_RESOURCES) are required');
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

// `mcp:tools`: the scope a public MCP server publishes (backend.py --scope), granted when asked for.
const RESOURCE_SCOPE = 'openid profile email offline_access mcp:tools';
const DEVICE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code';
const device = { grant_types: [DEVICE_GRANT, 'refresh_token'], response_types: [], redirect_uris: [] };
const service = { grant_types: ['client_credentials'], response_types: [], redirect_uris: [] };

// Legacy (IDP_RESOURCE): one backend, every indicator accepted, aud "mcp-backend".
// Strict (IDP_RESOURCES): several resource servers, each token's aud is its own indicator.
const resourceIndicators = resourceServers.length
  ? {
      enabled: true,
      defaultResource: (ctx, client, oneOf) => (oneOf ? oneOf[0] : undefined),
      useGrantedResource: () => true,
      getResourceServerInfo: (ctx, indicator) => {
        if (!resourceServers.includes(indicator)) throw new errors.InvalidTarget();
        return {
          scope: RESOURCE_SCOPE,
          audience: indicator,
          accessTokenFormat: 'jwt',
          accessTokenTTL: accessTtl,
          jwt: { sign: { alg: 'RS256' } },
        };
      },
    }
  : {
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
    };

const configuration = {
  clients: [
    { client_id: 'interop-public', token_endpoint_auth_method: 'none', ...common },
    {
      client_id: 'interop-confidential',
      client_secret: 'interop-secret',
      token_endpoint_auth_method: 'client_secret_basic',
      ...common,
    },
    { client_id: 'interop-device', token_endpoint_auth_method: 'none', ...device },
    { client_id: 'interop-device-hasty', token_endpoint_auth_method: 'none', ...device },
    {
      client_id: 'interop-cc-secret',
      client_secret: 'interop-secret',
      token_endpoint_auth_method: 'client_secret_basic',
      ...service,
    },
    ...(clientJwks
      ? [{
          client_id: 'interop-cc-jwt',
          token_endpoint_auth_method: 'private_key_jwt',
          token_endpoint_auth_signing_alg: 'RS256',
          jwks: JSON.parse(readFileSync(clientJwks, 'utf8')),
          ...service,
        }]
      : []),
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
    resourceIndicators,
    revocation: { enabled: true },
    deviceFlow: { enabled: true },
    clientCredentials: { enabled: true },
    registration: { enabled: registration },
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
    DeviceCode: 600,
  },
};

const provider = new Provider(issuer, configuration);
provider.proxy = false;

// One "request" event per request to these endpoints, as answered (after the middleware below),
// with what the scenarios check: time, client authentication, the resource indicators and scope
// as sent, outcome.
const RECORDED_ROUTES = new Set(['authorization', 'token', 'device_authorization', 'code_verification', 'revocation', 'registration']);
provider.use(async (ctx, next) => {
  await next();
  const route = ctx.oidc?.route;
  if (!RECORDED_ROUTES.has(route)) return;
  const params = ctx.oidc.params || {};
  // What the client sent, before the provider fills in defaults (a default resource, say).
  const sent = (ctx.method === 'POST' ? ctx.oidc.body : ctx.query) || {};
  const body = ctx.body && typeof ctx.body === 'object' ? ctx.body : {};
  record('request', {
    route,
    method: ctx.method,
    status: ctx.status,
    ms: Date.now(),
    client: ctx.oidc.client?.clientId || sent.client_id,
    grant_type: sent.grant_type,
    resource: sent.resource,
    scope: sent.scope,
    // How the client authenticated: its registered method, and what the request carried.
    client_auth: ctx.oidc.client?.clientAuthMethod,
    basic_auth: /^basic /i.test(ctx.headers.authorization || ''),
    client_assertion_type: sent.client_assertion_type,
    token_type_hint: sent.token_type_hint,
    error: body.error,
    error_description: body.error_description,
    interval: route === 'device_authorization' ? body.interval : undefined,
    user_code: route === 'device_authorization' ? body.user_code : undefined,
  });
});

// RFC 8628 extras oidc-provider 9 lacks: `interval` in the device authorization response, and
// `slow_down` for a device code polled again within the interval enforced (measured from the
// previous poll's answer): the one announced, one second more for "interop-device-hasty".
const lastPoll = new Map();
if (deviceInterval > 0) {
  provider.use(async (ctx, next) => {
    await next();
    const route = ctx.oidc?.route;
    if (route === 'device_authorization' && ctx.status === 200 && ctx.body) {
      ctx.body = { ...ctx.body, interval: deviceInterval };
    }
    if (route === 'token' && ctx.oidc.params?.grant_type === DEVICE_GRANT && ctx.status === 400
        && ctx.body?.error === 'authorization_pending') {
      const enforced = deviceInterval + (ctx.oidc.client?.clientId === 'interop-device-hasty' ? 1 : 0);
      const key = ctx.oidc.params.device_code;
      const now = Date.now();
      const last = lastPoll.get(key);
      lastPoll.set(key, now);
      if (last && now - last < enforced * 1000) {
        ctx.body = { error: 'slow_down', error_description: `polled again after ${now - last} ms` };
      }
    }
  });
}

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
