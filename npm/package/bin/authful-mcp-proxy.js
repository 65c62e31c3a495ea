#!/usr/bin/env node
// Starts the native authful-mcp-proxy binary from the platform package npm installed beside this
// one (an optionalDependency filtered by `os`, `cpu` and `libc`): no download after install.
//
// The binary inherits stdin, stdout and stderr, so JSON-RPC flows between the MCP client and the
// binary without passing through Node. This process only waits: it hands on the signals a client
// sends to stop its server, and leaves with the binary's exit status.
"use strict";

const { spawn } = require("node:child_process");
const path = require("node:path");

const { name, version } = require("../package.json");

function platformKey() {
  const key = `${process.platform}-${process.arch}`;
  if (process.platform !== "linux") return key;
  // glibc or musl: Node reports the glibc it runs on, and none on musl (Alpine). The report's
  // network section can take seconds on some hosts, and is not needed.
  if (!process.report) return key;
  process.report.excludeNetwork = true;
  const report = process.report.getReport();
  const glibc = report && report.header && report.header.glibcVersionRuntime;
  return glibc ? key : `${key}-musl`;
}

function binaryPath() {
  const key = platformKey();
  const pkg = `${name}-${key}`;
  const file = process.platform === "win32" ? "authful-mcp-proxy.exe" : "authful-mcp-proxy";
  try {
    return path.join(path.dirname(require.resolve(`${pkg}/package.json`)), "bin", file);
  } catch {
    process.stderr.write(
      `authful-mcp-proxy: the package ${pkg}@${version}, which carries the binary for ${key}, is not installed.\n` +
        `  npm installs it with ${name} unless optional dependencies are left out (--omit=optional, --no-optional)\n` +
        `  or this platform has no build. Install again with optional dependencies, or install the binary\n` +
        `  another way (uvx --from authful-mcp-proxy-rs authful-mcp-proxy, or a release archive).\n`,
    );
    process.exit(1);
  }
}

const child = spawn(binaryPath(), process.argv.slice(2), { stdio: "inherit", windowsHide: true });

const forwarded = ["SIGINT", "SIGTERM", "SIGHUP"];
for (const signal of forwarded) {
  process.on(signal, () => {
    if (child.exitCode === null && child.signalCode === null) child.kill(signal);
  });
}

child.on("error", (error) => {
  process.stderr.write(`authful-mcp-proxy: could not start ${child.spawnfile}: ${error.message}\n`);
  process.exit(1);
});

child.on("exit", (code, signal) => {
  if (signal) {
    // Leave the way the binary left, so the caller sees the same signal.
    for (const s of forwarded) process.removeAllListeners(s);
    process.kill(process.pid, signal);
    return;
  }
  process.exit(code === null ? 1 : code);
});
