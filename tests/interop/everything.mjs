// Runs @modelcontextprotocol/server-everything in streamableHttp mode on 127.0.0.1 only.
//
// Its streamableHttp transport calls express's app.listen(PORT) with no host, i.e. every
// interface, and has no host option (dist/transports/streamableHttp.js). So before loading it,
// net.Server.prototype.listen is wrapped to add host 127.0.0.1 to a port-only listen call.
// Environment: PORT (as the server itself reads it), EVERYTHING_REQUIRE_HEADER (below).
import http from 'node:http';
import net from 'node:net';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import path from 'node:path';

const originalListen = net.Server.prototype.listen;
net.Server.prototype.listen = function listenOnLoopback(...args) {
  if (typeof args[0] === 'number' || (typeof args[0] === 'string' && /^\d+$/.test(args[0]))) {
    const port = Number(args[0]);
    const rest = args.slice(1);
    if (typeof rest[0] === 'string') rest.shift(); // an explicit host is replaced too
    return originalListen.call(this, port, '127.0.0.1', ...rest);
  }
  if (args[0] && typeof args[0] === 'object' && !Array.isArray(args[0]) && 'port' in args[0]) {
    return originalListen.call(this, { ...args[0], host: '127.0.0.1' }, ...args.slice(1));
  }
  return originalListen.apply(this, args);
};

// EVERYTHING_REQUIRE_HEADER="name: value": requests without that header get 403, so a gateway
// backend with static `headers:` proves they are sent on every request. express's app.listen
// calls http.createServer(app) at listen time, so wrapping createServer sees every request.
const required = process.env.EVERYTHING_REQUIRE_HEADER;
if (required) {
  const [name, ...rest] = required.split(':');
  const want = rest.join(':').trim();
  const originalCreate = http.createServer;
  http.createServer = function createGuardedServer(...args) {
    const i = args.findIndex((a) => typeof a === 'function');
    const handler = args[i];
    args[i] = (req, res) => {
      if (req.headers[name.trim().toLowerCase()] !== want) {
        console.log(`rejected ${req.method} ${req.url}: no ${name.trim()} header`);
        res.writeHead(403, { 'content-type': 'text/plain' }).end(`missing ${name.trim()}\n`);
        return;
      }
      handler(req, res);
    };
    return originalCreate.apply(this, args);
  };
}

// A listen() call that reaches the server proves the bind; report the real address.
const require = createRequire(import.meta.url);
const pkg = require.resolve('@modelcontextprotocol/server-everything/package.json');
const entry = path.join(path.dirname(pkg), 'dist', 'transports', 'streamableHttp.js');
await import(pathToFileURL(entry).href);
