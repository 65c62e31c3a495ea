// The server that the conformance suite's 2026-07-28 server scenarios expect, for the
// conformance_server_2026 scenario (../conformance_suite.py).
//
// The suite (@modelcontextprotocol/conformance 0.2.0-alpha) drives a server by fixed names: the
// tools test_simple_text, test_image_content, ..., test_input_required_result_*, the resources
// test://static-text, ..., the prompts test_simple_prompt, ... Its own reference servers live in
// its repository and in the SDKs' (none is published as a package), so this file is the suite's
// fixture written against the official TypeScript SDK v2 (@modelcontextprotocol/server 2.4, from
// ../node_modules), following the "Server Implementation Requirements" each scenario describes.
// It serves protocol revision 2026-07-28 only (`legacy: 'reject'`), so the proxy in front of it
// must discover it (server/discover) rather than initialize it.
//
// Usage:
//   node fixture2026.mjs http PORT   Streamable HTTP at http://127.0.0.1:PORT/mcp (createMcpHandler,
//                                    DNS-rebinding guard in front); prints "FIXTURE READY <url>"
//   node fixture2026.mjs stdio       the same server over stdio (serveStdio), for the bridge-only
//                                    control run; prints "FIXTURE READY stdio" on stderr
//
// State that must outlive one request (the modern path builds a server per request) is
// process-wide: the requestState key. List changes are published on the handler's event bus
// (HTTP) or as list_changed notifications of the pinned instance (stdio), both of which the SDK
// delivers to open subscriptions/listen streams.
import http from 'node:http';
import { randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';
// The SDK of the suite's own package.json (../node_modules, 2.4.0), by path: a bare import from this
// directory would find the older @modelcontextprotocol/server that supergateway brings along here.
const sdk = (file) => new URL(`../node_modules/@modelcontextprotocol/server/dist/${file}`, import.meta.url);
const {
  CLIENT_CAPABILITIES_META_KEY,
  McpServer,
  ProtocolError,
  ProtocolErrorCode,
  ResourceTemplate,
  acceptedContent,
  createMcpHandler,
  createRequestStateCodec,
  fromJsonSchema,
  hostHeaderValidationResponse,
  inputRequired,
  localhostAllowedHostnames,
  localhostAllowedOrigins,
  originValidationResponse,
} = await import(sdk('index.mjs'));
const { serveStdio } = await import(sdk('stdio.mjs'));

const mode = process.argv[2];
if (mode !== 'http' && mode !== 'stdio') {
  console.error('usage: fixture2026.mjs http PORT | stdio');
  process.exit(2);
}

// A 1x1 PNG and a minimal WAV, as the content scenarios ask for.
const PNG = 'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==';
const WAV = 'UklGRiYAAABXQVZFZm10IBAAAAABAAEAQB8AAAB9AAACABAAZGF0YQIAAAA=';

const codec = createRequestStateCodec({ key: crypto.getRandomValues(new Uint8Array(32)) });
const noArgs = fromJsonSchema({ type: 'object', properties: {} });
const text = (t) => ({ type: 'text', text: t });
const result = (...content) => ({ content });
const ask = (message, field, type = 'string') =>
  inputRequired.elicit({
    message,
    requestedSchema: { type: 'object', properties: { [field]: { type } }, required: [field] },
  });
const sample = (prompt, maxTokens) =>
  inputRequired.createMessage({ messages: [{ role: 'user', content: text(prompt) }], maxTokens });
const sampledText = (response) => (typeof response?.content?.text === 'string' ? response.content.text : undefined);

let handler; // the HTTP entry, in http mode

// Tools whose answer is fixed: name -> [description, content].
const FIXED_TOOLS = {
  test_simple_text: ['Answers with one text block', [text('This is a simple text response for testing.')]],
  test_image_content: ['Answers with an image', [{ type: 'image', data: PNG, mimeType: 'image/png' }]],
  test_audio_content: ['Answers with audio', [{ type: 'audio', data: WAV, mimeType: 'audio/wav' }]],
  test_embedded_resource: ['Answers with an embedded resource', [
    { type: 'resource', resource: { uri: 'test://embedded-resource', mimeType: 'text/plain', text: 'This is an embedded resource content.' } },
  ]],
  test_multiple_content_types: ['Answers with text, an image and a resource', [
    text('Multiple content types test:'),
    { type: 'image', data: PNG, mimeType: 'image/png' },
    { type: 'resource', resource: { uri: 'test://mixed-content-resource', mimeType: 'application/json', text: '{"test":"data","value":123}' } },
  ]],
  test_streaming_elicitation: ['SEP-2575: a plain answer, no request on the response stream', [text('result frames only')]],
};

function buildServer() {
  const server = new McpServer(
    { name: 'interop-conformance-fixture-2026', version: '1.0.0' },
    {
      capabilities: {
        tools: { listChanged: true },
        resources: { subscribe: true, listChanged: true },
        prompts: { listChanged: true },
        completions: {},
      },
      requestState: { verify: codec.verify },
    },
  );
  const tool = (name, description, callback, inputSchema = noArgs) =>
    server.registerTool(name, { description, inputSchema }, callback);

  for (const [name, [description, content]] of Object.entries(FIXED_TOOLS)) {
    tool(name, description, async () => result(...content));
  }
  tool('test_error_handling', 'Always fails', async () => {
    throw new Error('This tool intentionally returns an error for testing');
  });
  tool('test_tool_with_progress', 'Reports progress 0, 50, 100 when given a progress token', async (_args, ctx) => {
    const token = ctx.mcpReq._meta?.progressToken;
    if (token !== undefined) {
      for (const progress of [0, 50, 100]) {
        await ctx.mcpReq.notify({ method: 'notifications/progress', params: { progressToken: token, progress, total: 100 } });
        await new Promise((resolve) => setTimeout(resolve, 30));
      }
    }
    return result(text(`progress token ${token ?? 'none'}`));
  });
  tool('test_logging_tool', 'SEP-2575: logs through the request (only when _meta asks for a log level)', async (_args, ctx) => {
    await ctx.mcpReq.log('info', 'test_logging_tool ran');
    return result(text('logged'));
  });
  tool('test_missing_capability', 'SEP-2575: needs the client\'s sampling capability', async (_args, ctx) => {
    if (ctx.mcpReq.inputResponses?.answer === undefined) {
      return inputRequired({ inputRequests: { answer: sample('Say pong', 16) } });
    }
    return result(text('sampled'));
  });
  tool('test_x_mcp_header', 'SEP-2243: region is mirrored into Mcp-Param-Region', async (args) => result(text(`region=${args.region ?? '<none>'}`)),
    fromJsonSchema({
      type: 'object',
      properties: {
        region: { type: 'string', 'x-mcp-header': 'Region' },
        level: { type: 'integer' },
      },
    }));
  tool('json_schema_2020_12_tool', 'SEP-1613/SEP-2106: a JSON Schema 2020-12 input schema', async (args) => result(text(JSON.stringify(args))),
    fromJsonSchema({
      $schema: 'https://json-schema.org/draft/2020-12/schema',
      type: 'object',
      $defs: {
        address: { $anchor: 'addressDef', type: 'object', properties: { street: { type: 'string' }, city: { type: 'string' } } },
      },
      properties: {
        name: { type: 'string' },
        address: { $ref: '#/$defs/address' },
        contactMethod: { type: 'string', enum: ['phone', 'email'] },
        phone: { type: 'string' },
        email: { type: 'string' },
      },
      allOf: [{ anyOf: [{ required: ['phone'] }, { required: ['email'] }] }],
      if: { properties: { contactMethod: { const: 'phone' } }, required: ['contactMethod'] },
      then: { required: ['phone'] },
      else: { required: ['email'] },
      additionalProperties: false,
    }));
  tool('test_trigger_tool_change', 'Publishes tools/list_changed', async () => {
    if (handler) handler.notify.toolsChanged();
    else server.sendToolListChanged();
    return result(text('tools changed'));
  });
  tool('test_trigger_prompt_change', 'Publishes prompts/list_changed', async () => {
    if (handler) handler.notify.promptsChanged();
    else server.sendPromptListChanged();
    return result(text('prompts changed'));
  });

  // Multi-round-trip (SEP-2322) tools: input_required until the retry carries the answers.
  tool('test_input_required_result_elicitation', 'MRTR: asks for a name', async (_args, ctx) => {
    const name = acceptedContent(ctx.mcpReq.inputResponses, 'user_name')?.name;
    if (typeof name === 'string') return result(text(`Hello, ${name}!`));
    return inputRequired({ inputRequests: { user_name: ask('What is your name?', 'name') } });
  });
  tool('test_input_required_result_sampling', 'MRTR: asks for a completion', async (_args, ctx) => {
    const answer = ctx.mcpReq.inputResponses?.capital_question;
    if (answer !== undefined) return result(text(`Sampling response: ${sampledText(answer) ?? JSON.stringify(answer)}`));
    return inputRequired({ inputRequests: { capital_question: sample('What is the capital of France?', 100) } });
  });
  tool('test_input_required_result_list_roots', 'MRTR: asks for the roots', async (_args, ctx) => {
    const roots = ctx.mcpReq.inputResponses?.client_roots?.roots;
    if (Array.isArray(roots)) return result(text(`roots: ${roots.map((r) => r?.uri).join(', ')}`));
    return inputRequired({ inputRequests: { client_roots: inputRequired.listRoots() } });
  });
  tool('test_input_required_result_request_state', 'MRTR: a confirmation with signed requestState', async (_args, ctx) => {
    if (acceptedContent(ctx.mcpReq.inputResponses, 'confirm') === undefined) {
      return inputRequired({
        inputRequests: { confirm: ask('Please confirm', 'ok', 'boolean') },
        requestState: await codec.mint({ tool: 'request_state', nonce: randomUUID() }),
      });
    }
    if (ctx.mcpReq.requestState() === undefined) {
      throw new ProtocolError(ProtocolErrorCode.InvalidParams, 'requestState missing');
    }
    return result(text('state-ok'));
  });
  tool('test_input_required_result_multiple_inputs', 'MRTR: elicitation, sampling and roots at once', async (_args, ctx) => {
    const responses = ctx.mcpReq.inputResponses;
    const name = acceptedContent(responses, 'user_name')?.name;
    const greeting = sampledText(responses?.greeting);
    const roots = responses?.client_roots?.roots;
    if (typeof name === 'string' && greeting !== undefined && Array.isArray(roots)) {
      return result(text(`${greeting} ${name} (${roots.length} roots)`));
    }
    return inputRequired({
      inputRequests: {
        user_name: ask('What is your name?', 'name'),
        greeting: sample('Generate a greeting', 50),
        client_roots: inputRequired.listRoots(),
      },
      requestState: await codec.mint({ tool: 'multiple_inputs', nonce: randomUUID() }),
    });
  });
  tool('test_input_required_result_multi_round', 'MRTR: two rounds, the round in requestState', async (_args, ctx) => {
    const state = ctx.mcpReq.requestState();
    const round = state?.tool === 'multi_round' ? state.round : 0;
    if (round === 0) {
      return inputRequired({
        inputRequests: { step1: ask('Step 1: What is your name?', 'name') },
        requestState: await codec.mint({ tool: 'multi_round', round: 1 }),
      });
    }
    if (round === 1) {
      const name = acceptedContent(ctx.mcpReq.inputResponses, 'step1')?.name ?? 'unknown';
      return inputRequired({
        inputRequests: { step2: ask('Step 2: What is your favorite color?', 'color') },
        requestState: await codec.mint({ tool: 'multi_round', round: 2, name }),
      });
    }
    const color = acceptedContent(ctx.mcpReq.inputResponses, 'step2')?.color ?? 'unknown';
    return result(text(`${state.name} likes ${color}`));
  });
  tool('test_input_required_result_tampered_state', 'MRTR: signed requestState, a tampered one is refused', async (_args, ctx) => {
    if (ctx.mcpReq.requestState() !== undefined && acceptedContent(ctx.mcpReq.inputResponses, 'confirm') !== undefined) {
      return result(text('integrity-ok'));
    }
    return inputRequired({
      inputRequests: { confirm: ask('Please confirm', 'ok', 'boolean') },
      requestState: await codec.mint({ tool: 'tampered_state', nonce: randomUUID() }),
    });
  });
  tool('test_input_required_result_capabilities', 'MRTR: asks only for what the client declared', async (_args, ctx) => {
    if (ctx.mcpReq.inputResponses !== undefined) return result(text('fulfilled'));
    const declared = ctx.mcpReq.envelope?.[CLIENT_CAPABILITIES_META_KEY] ?? {};
    const inputRequests = {};
    if (declared.elicitation !== undefined) inputRequests.user_name = ask('What is your name?', 'name');
    if (declared.sampling !== undefined) inputRequests.greeting = sample('Generate a short greeting', 50);
    if (declared.roots !== undefined) inputRequests.client_roots = inputRequired.listRoots();
    if (Object.keys(inputRequests).length === 0) return result(text('nothing to ask'));
    return inputRequired({ inputRequests });
  });

  // Resources.
  const resource = (name, uri, mimeType, content) =>
    server.registerResource(name, uri, { title: name, description: `The ${name} resource`, mimeType }, async () => ({
      contents: [{ uri, mimeType, ...content }],
    }));
  resource('static-text', 'test://static-text', 'text/plain', { text: 'This is the content of the static text resource.' });
  resource('static-binary', 'test://static-binary', 'image/png', { blob: PNG });
  resource('watched-resource', 'test://watched-resource', 'text/plain', { text: 'Watched resource content' });
  server.registerResource(
    'template',
    new ResourceTemplate('test://template/{id}/data', { list: undefined }),
    { title: 'template', description: 'Substitutes {id}', mimeType: 'application/json' },
    async (uri, { id }) => ({
      contents: [{ uri: uri.toString(), mimeType: 'application/json', text: JSON.stringify({ id, templateTest: true, data: `Data for ID: ${id}` }) }],
    }),
  );

  // Prompts.
  const prompt = (name, description, argsSchema, callback) =>
    server.registerPrompt(name, { title: name, description, ...(argsSchema && { argsSchema }) }, callback);
  const user = (content) => ({ role: 'user', content });
  prompt('test_simple_prompt', 'No arguments', undefined, async () => ({
    messages: [user(text('This is a simple prompt for testing.'))],
  }));
  prompt('test_prompt_with_arguments', 'Two required arguments',
    fromJsonSchema({
      type: 'object',
      properties: { arg1: { type: 'string', description: 'First argument' }, arg2: { type: 'string', description: 'Second argument' } },
      required: ['arg1', 'arg2'],
    }),
    async ({ arg1, arg2 }) => ({ messages: [user(text(`Prompt with arguments: arg1='${arg1}', arg2='${arg2}'`))] }));
  prompt('test_prompt_with_embedded_resource', 'Embeds the resource it is given',
    fromJsonSchema({
      type: 'object',
      properties: { resourceUri: { type: 'string', description: 'URI of the resource to embed' } },
      required: ['resourceUri'],
    }),
    async ({ resourceUri }) => ({
      messages: [
        user({ type: 'resource', resource: { uri: resourceUri, mimeType: 'text/plain', text: 'Embedded resource content for testing.' } }),
        user(text('Please process the embedded resource above.')),
      ],
    }));
  prompt('test_prompt_with_image', 'Contains an image', undefined, async () => ({
    messages: [user({ type: 'image', data: PNG, mimeType: 'image/png' }), user(text('Please analyze the image above.'))],
  }));
  prompt('test_input_required_result_prompt', 'MRTR: asks for context before rendering', undefined, async (ctx) => {
    const context = acceptedContent(ctx.mcpReq.inputResponses, 'user_context')?.context;
    if (typeof context === 'string') return { messages: [user(text(`Use the following context: ${context}`))] };
    return inputRequired({ inputRequests: { user_context: ask('What context should the prompt use?', 'context') } });
  });

  server.server.setRequestHandler('completion/complete', async () => ({ completion: { values: [], total: 0, hasMore: false } }));
  return server;
}

const report = (error) => console.error(`fixture2026: ${error.message}`);

if (mode === 'stdio') {
  serveStdio(buildServer, { legacy: 'reject', onerror: report });
  console.error('FIXTURE READY stdio');
} else {
  const port = Number(process.argv[3]);
  handler = createMcpHandler(buildServer, { legacy: 'reject', onerror: report });
  const httpServer = http.createServer((req, res) => {
    serve(req, res).catch((error) => {
      report(error);
      if (!res.headersSent) res.writeHead(500);
      res.end();
    });
  });
  httpServer.listen(port, '127.0.0.1', () => console.log(`FIXTURE READY http://127.0.0.1:${httpServer.address().port}/mcp`));
  process.on('SIGTERM', async () => {
    await handler.close().catch(() => {});
    httpServer.closeAllConnections();
    process.exit(0);
  });
}

// node:http -> web Request -> handler.fetch (behind the SDK's Host/Origin guard) -> node:http,
// streamed (SSE stays open); a client that goes away aborts the request's signal.
async function serve(req, res) {
  const url = new URL(req.url, 'http://127.0.0.1');
  if (url.pathname !== '/mcp') {
    res.writeHead(404).end();
    return;
  }
  const aborter = new AbortController();
  res.on('close', () => {
    if (!res.writableFinished) aborter.abort();
  });
  const headers = new Headers();
  for (let i = 0; i < req.rawHeaders.length; i += 2) headers.append(req.rawHeaders[i], req.rawHeaders[i + 1]);
  const hasBody = req.method !== 'GET' && req.method !== 'HEAD';
  const request = new Request(new URL(req.url, `http://${req.headers.host || '127.0.0.1'}`), {
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
  res.writeHead(response.status, Object.fromEntries(response.headers));
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
    // the client went away
  }
  res.end();
}
