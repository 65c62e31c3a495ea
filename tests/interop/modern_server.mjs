// A modern-only MCP backend for the interop suite: the official TypeScript SDK v2
// (@modelcontextprotocol/server 2.4) serving ONLY protocol revision 2026-07-28 (the stateless one:
// no initialize, `server/discover`, a per-request `_meta` envelope carrying
// io.modelcontextprotocol/protocolVersion, MRTR `input_required` results, `subscriptions/listen`)
// over Streamable HTTP at http://127.0.0.1:$PORT/mcp (127.0.0.1 only).
//
// Environment: PORT  port to listen on (127.0.0.1 only)  [required]
//
// SDK APIs used (all from @modelcontextprotocol/server):
//   createMcpHandler(factory, { legacy: 'reject' })  the SDK's HTTP entry: calls the factory once per
//       request for a fresh McpServer. `legacy: 'reject'` makes it modern-only: a 2025-era
//       (envelope-less) request such as `initialize` is answered with JSON-RPC error -32022
//       (unsupported protocol version) whose data.supported lists "2026-07-28"; nothing 2025-era
//       is served. handler.notify.toolsChanged() publishes notifications/tools/list_changed to
//       every open subscriptions/listen stream (the handler's in-memory event bus and listen
//       router own those SSE streams); handler.close() ends them gracefully.
//   McpServer + registerTool, with input schemas from fromJsonSchema (so no zod import).
//   inputRequired({ inputRequests: { name: inputRequired.elicit({...}) } })  the MRTR return value;
//       inputResponse(ctx.mcpReq.inputResponses, 'name') reads the client's retried answer.
//   hostHeaderValidationResponse / originValidationResponse with the localhost allowlists: the
//       DNS-rebinding guard the SDK says to put in front of a bare handler.
// The handler is web-standard (fetch(Request) -> Response). The SDK's Node adapter,
// toNodeHandler, is a separate package (@modelcontextprotocol/node 2.1.x, which pulls in hono and
// @hono/node-server), so serve() below bridges node:http to handler.fetch instead: the request
// body is streamed in, the response (JSON, or SSE for listen streams) streamed out, and a client
// disconnect aborts the Request's signal, which the SDK uses to tear the exchange down.
//
// Tools:
//   echo {text}  returns text as text content.
//   ask          first call: an `input_required` result with an elicitation/create request
//                (key "name", message "Your name?", string property `answer`); the client's retry
//                carrying inputResponses.name gets text "hello <answer>". A declined or cancelled
//                elicitation gets an isError result "no answer (<action>)".
//   grow         adds tool grown_N (N = 1, 2, ...; it echoes "grown_N") and publishes
//                tools/list_changed, which 2026-07-28 clients receive on subscriptions/listen.
// Capabilities: tools { listChanged: true }.
// State (the grown tools) is process-wide: every per-request McpServer registers them.
// Prints "MODERN READY http://127.0.0.1:PORT/mcp" on stdout once listening; exits 0 on SIGTERM.
import http from 'node:http';
import { Readable } from 'node:stream';
import {
  McpServer,
  createMcpHandler,
  fromJsonSchema,
  hostHeaderValidationResponse,
  inputRequired,
  inputResponse,
  localhostAllowedHostnames,
  localhostAllowedOrigins,
  originValidationResponse,
} from '@modelcontextprotocol/server';

const port = Number(process.env.PORT);
if (!port) {
  console.error('modern_server.mjs: PORT is required');
  process.exit(2);
}

let grown = 0; // tools grown_1 .. grown_<grown> exist

const text = (t) => ({ content: [{ type: 'text', text: t }] });

function buildServer() {
  const server = new McpServer(
    { name: 'interop-modern', version: '1.0.0' },
    { capabilities: { tools: { listChanged: true } } },
  );
  server.registerTool(
    'echo',
    {
      description: 'Returns its text argument',
      inputSchema: fromJsonSchema({
        type: 'object',
        properties: { text: { type: 'string' } },
        required: ['text'],
      }),
    },
    async ({ text: t }) => text(t),
  );
  server.registerTool(
    'ask',
    { description: 'Asks the client for a name (MRTR input_required + elicitation), then greets it' },
    async (ctx) => {
      const reply = inputResponse(ctx.mcpReq.inputResponses, 'name');
      if (reply.kind === 'elicit') {
        if (reply.action === 'accept' && typeof reply.content?.answer === 'string') {
          return text(`hello ${reply.content.answer}`);
        }
        if (reply.action !== 'accept') return { ...text(`no answer (${reply.action})`), isError: true };
      }
      return inputRequired({
        inputRequests: {
          name: inputRequired.elicit({
            message: 'Your name?',
            requestedSchema: {
              type: 'object',
              properties: { answer: { type: 'string' } },
              required: ['answer'],
            },
          }),
        },
      });
    },
  );
  server.registerTool(
    'grow',
    { description: 'Adds a tool grown_N and notifies tools/list_changed' },
    async () => {
      grown += 1;
      const name = `grown_${grown}`;
      handler.notify.toolsChanged();
      return text(`added ${name}`);
    },
  );
  for (let n = 1; n <= grown; n += 1) {
    const name = `grown_${n}`;
    server.registerTool(name, { description: `Grown by grow call ${n}` }, async () => text(name));
  }
  return server;
}

const handler = createMcpHandler(buildServer, {
  legacy: 'reject',
  onerror: (error) => console.error(`modern_server: ${error.message}`),
});

// node:http -> web Request -> handler.fetch -> node:http response (streamed: SSE stays open).
async function serve(req, res) {
  const url = new URL(req.url, `http://${req.headers.host || `127.0.0.1:${port}`}`);
  if (url.pathname !== '/mcp') {
    res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
    return;
  }
  const aborter = new AbortController();
  res.on('close', () => {
    if (!res.writableFinished) aborter.abort(); // the client went away mid-response
  });
  const headers = new Headers();
  for (let i = 0; i < req.rawHeaders.length; i += 2) headers.append(req.rawHeaders[i], req.rawHeaders[i + 1]);
  const hasBody = req.method !== 'GET' && req.method !== 'HEAD';
  const request = new Request(url, {
    method: req.method,
    headers,
    body: hasBody ? Readable.toWeb(req) : undefined,
    duplex: hasBody ? 'half' : undefined,
    signal: aborter.signal,
  });
  const response =
    hostHeaderValidationResponse(request, localhostAllowedHostnames()) ??
    originValidationResponse(request, localhostAllowedOrigins()) ??
    (await handler.fetch(request));
  const outHeaders = {};
  response.headers.forEach((value, name) => {
    outHeaders[name] = name === 'set-cookie' ? response.headers.getSetCookie() : value;
  });
  res.writeHead(response.status, outHeaders);
  res.flushHeaders();
  if (!response.body) {
    res.end();
    return;
  }
  const reader = response.body.getReader();
  aborter.signal.addEventListener('abort', () => reader.cancel().catch(() => {}), { once: true });
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      res.write(value);
    }
  } catch {
    // stream cancelled because the client disconnected
  }
  res.end();
}

const httpServer = http.createServer((req, res) => {
  serve(req, res).catch((error) => {
    console.error(`modern_server: ${error.stack || error}`);
    if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
    res.end();
  });
});

httpServer.listen(port, '127.0.0.1', () => {
  const { port: bound } = httpServer.address();
  console.log(`MODERN READY http://127.0.0.1:${bound}/mcp`);
});

// SIGTERM: end listen streams gracefully (empty subscriptions/listen result), close in-flight
// exchanges, stop accepting connections, exit 0.
process.on('SIGTERM', async () => {
  await handler.close().catch(() => {});
  httpServer.close(() => process.exit(0));
  httpServer.closeIdleConnections();
  setTimeout(() => {
    httpServer.closeAllConnections();
    process.exit(0);
  }, 2000).unref();
});
