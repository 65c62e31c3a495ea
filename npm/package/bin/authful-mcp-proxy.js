#!/usr/bin/env node
// Starts the native authful-mcp-proxy binary from the platform package npm installed beside this
// one (an optionalDependency filtered by `os`, `cpu` and `libc`): no download after install.
//
// The binary inherits stdin, stdout and stderr, so JSON-RPC flows between the MCP client and the
// binary without passing through Node. This process only waits: it hands on the signals a client
// sends to stop its server, and leaves with the binary's exit status. It never writes to stdout,
// which belongs to JSON-RPC: every message of its own goes to stderr.
//
// The platform package is looked up only where npm installs it for this package, and must be
// the same release: `<this package>/node_modules/<platform package>` (where npm nests it), then
// the node_modules directory this package sits in (where npm, npx and pnpm put it beside this
// one). Never a node_modules further up the tree, as Node's `require.resolve` would: a stale or
// planted copy there must not supply the binary (Yarn Plug'n'Play, which has no node_modules,
// answers through its own resolver, which never searches above). Its package.json must name
// exactly the expected package and this package's version; otherwise the launcher refuses, and
// says why.
"use strict";

const { spawn } = require("node:child_process");
const fs = require("node:fs");
const path = require("node:path");

// This package's directory, symbolic links resolved: pnpm links packages into node_modules from
// its store, where the real directory has the platform package beside it.
const wrapperDir = fs.realpathSync(path.join(__dirname, ".."));
const { name, version } = JSON.parse(fs.readFileSync(path.join(wrapperDir, "package.json"), "utf8"));

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

/** The node_modules directory this package was installed in (`node_modules/<name>` or
 * `node_modules/@scope/<name>`), or null when it was not (a checkout, `npm link`). */
function installedIn(dir) {
  const parent = path.dirname(dir);
  if (path.basename(parent) === "node_modules") return parent;
  const grandparent = path.dirname(parent);
  if (path.basename(parent).startsWith("@") && path.basename(grandparent) === "node_modules") return grandparent;
  return null;
}

/** The directories npm installs the platform package `pkg` in for this package, nearest first. */
function candidates(pkg) {
  const segments = pkg.split("/"); // `@scope/name-key` is two directories
  const dirs = [path.join(wrapperDir, "node_modules", ...segments)];
  const modules = installedIn(wrapperDir);
  if (modules) dirs.push(path.join(modules, ...segments));
  return dirs;
}

function refuse(lines) {
  process.stderr.write(`authful-mcp-proxy: ${lines.join("\n  ")}\n`);
  process.exit(1);
}

/** The package.json in `dir`, or null when there is none. */
function manifestIn(dir) {
  const file = path.join(dir, "package.json");
  let text;
  try {
    text = fs.readFileSync(file, "utf8");
  } catch (error) {
    if (error.code === "ENOENT" || error.code === "ENOTDIR") return null;
    refuse([`could not read ${file}: ${error.message}`]);
  }
  try {
    const manifest = JSON.parse(text);
    if (manifest && typeof manifest === "object") return manifest;
  } catch {
    // refused below, as any other manifest that is not an object
  }
  refuse([`${file} is not a package manifest (JSON object); reinstall ${name}@${version}.`]);
}

/** Yarn Plug'n'Play has no node_modules: its resolver answers for the dependencies this package
 * declares, from its own map, and never searches the directories above. */
function plugNPlayDir(pkg) {
  if (!process.versions.pnp) return null;
  try {
    return path.dirname(require.resolve(`${pkg}/package.json`));
  } catch {
    return null;
  }
}

function binaryPath() {
  const key = platformKey();
  const pkg = `${name}-${key}`;
  const expected = `${pkg}@${version}`;
  const file = process.platform === "win32" ? "authful-mcp-proxy.exe" : "authful-mcp-proxy";
  const looked = candidates(pkg);
  let dir = looked.find((candidate) => manifestIn(candidate) !== null);
  if (dir === undefined) dir = plugNPlayDir(pkg);
  if (!dir) {
    refuse([
      `the package ${expected}, which carries the binary for ${key}, is not installed with ${name}.`,
      `Looked in (only these, on purpose: a copy in a node_modules further up is never used):`,
      ...looked.map((candidate) => `  ${candidate}`),
      `npm installs it with ${name} unless optional dependencies are left out (--omit=optional, --no-optional)`,
      `or this platform has no build. Install again with optional dependencies, or install the binary`,
      `another way (uvx --from authful-mcp-proxy-rs authful-mcp-proxy, or a release archive).`,
    ]);
  }
  const found = manifestIn(dir);
  if (found.name !== pkg || found.version !== version) {
    refuse([
      `refusing to start the binary in ${dir}:`,
      `found ${String(found.name)}@${String(found.version)}, expected ${expected} (${name}@${version} runs only the binary of its own release).`,
      `Install the two together again: \`npm install ${name}@${version}\` in your project, or with npx`,
      `\`npx -y ${name}@${version}\` (npx keeps what it installed in the _npx folder of npm's cache,`,
      `\`npm config get cache\`; deleting that folder makes it install afresh).`,
    ]);
  }
  return path.join(dir, "bin", file);
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
