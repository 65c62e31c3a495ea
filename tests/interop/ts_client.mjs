// The official TypeScript SDK 2.4's client (@modelcontextprotocol/client) starting the proxy over
// stdio, in one of its version-negotiation modes, for the interop suite: `legacy` (initialize),
// `auto` (a `server/discover` probe first — on stdio from a disposable sibling process — then
// the revision the server has) or `pin` (2026-07-28 and nothing else). It lists the tools, calls
// `whoami`, and prints one JSON line: {"protocolVersion", "tools", "whoami"}.
//
// Usage: node ts_client.mjs MODE COMMAND [ARGS...]   (the proxy's environment is this process's)
import { Client } from '@modelcontextprotocol/client';
import { StdioClientTransport } from '@modelcontextprotocol/client/stdio';

const [mode, command, ...args] = process.argv.slice(2);
if (!mode || !command) {
  console.error('usage: node ts_client.mjs legacy|auto|pin COMMAND [ARGS...]');
  process.exit(2);
}

const client = new Client(
  { name: 'interop-ts-client', version: '2.4.0' },
  { capabilities: {}, versionNegotiation: { mode: mode === 'pin' ? { pin: '2026-07-28' } : mode } },
);
const transport = new StdioClientTransport({ command, args, env: process.env, stderr: 'inherit' });
await client.connect(transport, { timeout: 60_000 });
const tools = (await client.listTools()).tools.map((t) => t.name).sort();
const who = await client.callTool({ name: 'whoami', arguments: {} });
const text = who.content?.find((c) => c.type === 'text')?.text;
const whoami = who.structuredContent?.result ?? who.structuredContent ?? (text ? JSON.parse(text) : null);
console.log(JSON.stringify({
  protocolVersion: client.getNegotiatedProtocolVersion() ?? null,
  tools,
  whoami,
}));
await client.close();
