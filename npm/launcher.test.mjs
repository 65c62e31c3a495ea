// Tests of the npm launcher (npm/package/bin/authful-mcp-proxy.js): which platform package it
// starts the binary from, and what it refuses. No Rust build: each test lays out node_modules
// directories in a temporary folder, with shell scripts standing in for the binary, and runs the
// launcher copied into them as npm would install it. The last test packs real tarballs with
// npm/pack.mjs (the same stand-in binary) and installs them with npm, offline.
//
//   node --test npm/launcher.test.mjs
//   LAUNCHER=/path/to/another/authful-mcp-proxy.js node --test npm/launcher.test.mjs
//
// LAUNCHER tests another copy of the launcher (an older one, to show what these tests catch).
import assert from "node:assert/strict";
import { execFileSync, spawn, spawnSync } from "node:child_process";
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, describe, test } from "node:test";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const LAUNCHER = path.resolve(process.env.LAUNCHER || path.join(here, "package", "bin", "authful-mcp-proxy.js"));
const NAME = "authful-mcp-proxy-rs";
const VERSION = "1.2.3";
const skip = process.platform === "win32" ? "the stand-in binaries are shell scripts" : false;

/** The platform key the launcher computes: `<platform>-<arch>`, `-musl` on Linux without glibc. */
function platformKey() {
  const key = `${process.platform}-${process.arch}`;
  if (process.platform !== "linux" || !process.report) return key;
  process.report.excludeNetwork = true;
  return process.report.getReport().header.glibcVersionRuntime ? key : `${key}-musl`;
}
const KEY = platformKey();

const root = mkdtempSync(path.join(tmpdir(), "authful-launcher-"));
after(() => rmSync(root, { recursive: true, force: true }));
let serial = 0;

/** A fresh directory for one test. */
function scratch(label) {
  const dir = path.join(root, `${++serial}-${label}`);
  mkdirSync(dir, { recursive: true });
  return dir;
}

function writeJson(file, value) {
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(file, `${JSON.stringify(value, null, 2)}\n`);
}

/** The wrapper package installed at `dir` (…/node_modules/<name>): its package.json and a copy of
 * the launcher. Returns the launcher's path. */
function wrapper(dir, { name = NAME, version = VERSION } = {}) {
  writeJson(path.join(dir, "package.json"), { name, version, bin: { "authful-mcp-proxy": "bin/authful-mcp-proxy.js" } });
  const launcher = path.join(dir, "bin", "authful-mcp-proxy.js");
  mkdirSync(path.dirname(launcher), { recursive: true });
  copyFileSync(LAUNCHER, launcher);
  return launcher;
}

/** A stand-in binary: it records that it ran (in `marker`), prints its arguments and then its
 * standard input on stdout, and exits with status 7. */
function standIn(file, marker, label) {
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(
    file,
    `#!/bin/sh\necho "${label}" >> '${marker}'\necho "${label} ran with: $*"\ncat\nexit 7\n`,
  );
  chmodSync(file, 0o755);
}

/** A platform package at `dir`, as npm/pack.mjs makes it, with a stand-in binary. */
function platformPackage(dir, marker, { name = `${NAME}-${KEY}`, version = VERSION, label = "binary" } = {}) {
  writeJson(path.join(dir, "package.json"), { name, version, os: [process.platform], cpu: [process.arch] });
  standIn(path.join(dir, "bin", "authful-mcp-proxy"), marker, label);
}

function run(launcher, args = ["--version"], input = "") {
  const result = spawnSync(process.execPath, [launcher, ...args], { input, encoding: "utf8", timeout: 30_000 });
  return { status: result.status, signal: result.signal, stdout: result.stdout, stderr: result.stderr };
}

const ran = (marker) => (existsSync(marker) ? readFileSync(marker, "utf8") : "");

describe("npm launcher", { skip }, () => {
  test("runs the binary of the sibling platform package of the same release", () => {
    const dir = scratch("sibling");
    const modules = path.join(dir, "project", "node_modules");
    const launcher = wrapper(path.join(modules, NAME));
    const marker = path.join(dir, "ran");
    platformPackage(path.join(modules, `${NAME}-${KEY}`), marker);
    const result = run(launcher, ["--version", "two words"], "stdin line\n");
    assert.equal(result.stderr, "");
    assert.equal(result.stdout, "binary ran with: --version two words\nstdin line\n");
    assert.equal(result.status, 7, "the binary's exit status");
    assert.equal(ran(marker), "binary\n");
  });

  test("runs the binary of a platform package nested in the wrapper's own node_modules", () => {
    // npm nests it there when another version sits beside the wrapper, and for global installs.
    const dir = scratch("nested");
    const wrapperDir = path.join(dir, "project", "node_modules", NAME);
    const launcher = wrapper(wrapperDir);
    const marker = path.join(dir, "ran");
    platformPackage(path.join(wrapperDir, "node_modules", `${NAME}-${KEY}`), marker, { label: "nested" });
    // The sibling is of another release: the nested one is the wrapper's own, as Node would pick.
    platformPackage(path.join(dir, "project", "node_modules", `${NAME}-${KEY}`), marker, { version: "0.0.1", label: "sibling" });
    const result = run(launcher);
    assert.equal(result.stdout, "nested ran with: --version\n");
    assert.equal(result.status, 7);
    assert.equal(ran(marker), "nested\n");
  });

  test("runs the binary of a scoped sibling (node_modules/@scope/name-<key>)", () => {
    const dir = scratch("scoped");
    const modules = path.join(dir, "project", "node_modules");
    const launcher = wrapper(path.join(modules, "@acme", "proxy"), { name: "@acme/proxy" });
    const marker = path.join(dir, "ran");
    platformPackage(path.join(modules, "@acme", `proxy-${KEY}`), marker, { name: `@acme/proxy-${KEY}` });
    const result = run(launcher);
    assert.equal(result.stderr, "");
    assert.equal(result.stdout, "binary ran with: --version\n");
    assert.equal(result.status, 7);
  });

  test("refuses a platform package found only in a node_modules further up", () => {
    // <tmp>/node_modules/<name>-<key>, of the right name and version even, while the wrapper is
    // installed in <tmp>/project/node_modules without it: Node's require.resolve would find it.
    const dir = scratch("ancestor");
    const marker = path.join(dir, "planted-binary-ran");
    platformPackage(path.join(dir, "node_modules", `${NAME}-${KEY}`), marker, { label: "planted" });
    const launcher = wrapper(path.join(dir, "project", "node_modules", NAME));
    const result = run(launcher);
    assert.equal(ran(marker), "", "the planted binary ran");
    assert.equal(result.stdout, "", "nothing on stdout, which belongs to JSON-RPC");
    assert.equal(result.status, 1, `exit status (stderr: ${result.stderr})`);
    assert.match(result.stderr, new RegExp(`${NAME}-${KEY}@${VERSION}.*is not installed`));
    assert.ok(result.stderr.includes(path.join(dir, "project", "node_modules", `${NAME}-${KEY}`)), "names where it looked");
    assert.ok(!result.stderr.includes(path.join(dir, "node_modules", `${NAME}-${KEY}`)), "looked further up");
    assert.match(result.stderr, /--omit=optional/);
  });

  test("refuses a scoped platform package found only in a node_modules further up", () => {
    const dir = scratch("ancestor-scoped");
    const marker = path.join(dir, "planted-binary-ran");
    platformPackage(path.join(dir, "node_modules", "@acme", `proxy-${KEY}`), marker, { name: `@acme/proxy-${KEY}`, label: "planted" });
    const launcher = wrapper(path.join(dir, "project", "node_modules", "@acme", "proxy"), { name: "@acme/proxy" });
    const result = run(launcher);
    assert.equal(ran(marker), "", "the planted binary ran");
    assert.equal(result.stdout, "");
    assert.equal(result.status, 1, `exit status (stderr: ${result.stderr})`);
    assert.match(result.stderr, new RegExp(`@acme/proxy-${KEY}@${VERSION}.*is not installed`));
  });

  test("refuses a sibling platform package of another release, naming both versions", () => {
    const dir = scratch("other-version");
    const modules = path.join(dir, "project", "node_modules");
    const launcher = wrapper(path.join(modules, NAME));
    const marker = path.join(dir, "ran");
    platformPackage(path.join(modules, `${NAME}-${KEY}`), marker, { version: "1.2.2", label: "stale" });
    const result = run(launcher);
    assert.equal(ran(marker), "", "the binary of another release ran");
    assert.equal(result.stdout, "");
    assert.equal(result.status, 1, `exit status (stderr: ${result.stderr})`);
    assert.ok(result.stderr.includes(`found ${NAME}-${KEY}@1.2.2, expected ${NAME}-${KEY}@${VERSION}`), result.stderr);
    assert.ok(result.stderr.includes(path.join(modules, `${NAME}-${KEY}`)), "names the directory");
    assert.ok(result.stderr.includes(`npm install ${NAME}@${VERSION}`), "says what to do");
  });

  test("refuses a sibling directory whose package.json names another package", () => {
    const dir = scratch("other-name");
    const modules = path.join(dir, "project", "node_modules");
    const launcher = wrapper(path.join(modules, NAME));
    const marker = path.join(dir, "ran");
    platformPackage(path.join(modules, `${NAME}-${KEY}`), marker, { name: "something-else" });
    const result = run(launcher);
    assert.equal(ran(marker), "");
    assert.equal(result.stdout, "");
    assert.equal(result.status, 1);
    assert.ok(result.stderr.includes(`found something-else@${VERSION}, expected ${NAME}-${KEY}@${VERSION}`), result.stderr);
  });

  test("without any platform package, says which one is missing and why", () => {
    const dir = scratch("missing");
    const launcher = wrapper(path.join(dir, "project", "node_modules", NAME));
    const result = run(launcher);
    assert.equal(result.stdout, "");
    assert.equal(result.status, 1);
    assert.match(result.stderr, new RegExp(`${NAME}-${KEY}@${VERSION}, which carries the binary for ${KEY}, is not installed`));
    assert.match(result.stderr, /--omit=optional/);
  });

  test("hands SIGTERM on to the binary and leaves by the same signal", async () => {
    const dir = scratch("signal");
    const modules = path.join(dir, "project", "node_modules");
    const launcher = wrapper(path.join(modules, NAME));
    const binary = path.join(modules, `${NAME}-${KEY}`, "bin", "authful-mcp-proxy");
    writeJson(path.join(modules, `${NAME}-${KEY}`, "package.json"), { name: `${NAME}-${KEY}`, version: VERSION });
    mkdirSync(path.dirname(binary), { recursive: true });
    writeFileSync(binary, "#!/bin/sh\necho ready >&2\nexec sleep 30\n");
    chmodSync(binary, 0o755);
    const proc = spawn(process.execPath, [launcher], { stdio: ["ignore", "ignore", "pipe"] });
    const stop = setTimeout(() => proc.kill("SIGKILL"), 20_000);
    await new Promise((resolve) => proc.stderr.once("data", resolve));
    proc.kill("SIGTERM");
    const [code, signal] = await new Promise((resolve) => proc.on("exit", (...args) => resolve(args)));
    clearTimeout(stop);
    assert.deepEqual([code, signal], [null, "SIGTERM"]);
  });

  test("npm's own layouts, from tarballs made by npm/pack.mjs: a project install and a global one", (t) => {
    const targets = execFileSync(process.execPath, [path.join(here, "pack.mjs"), "targets"], { encoding: "utf8" });
    const target = targets.split("\n").map((line) => line.split(" ")).find(([, key]) => key === KEY)?.[0];
    if (!target) return t.skip(`no release target for ${KEY}`);
    const dir = scratch("npm");
    const marker = path.join(dir, "ran");
    const binary = path.join(dir, "stand-in");
    standIn(binary, marker, "packed");
    const out = path.join(dir, "tarballs");
    const pack = (...args) =>
      execFileSync(process.execPath, [path.join(here, "pack.mjs"), ...args, "--version", VERSION, "--out", out], {
        encoding: "utf8",
        stdio: ["ignore", "pipe", "pipe"],
      }).trim();
    const tarballs = [pack("wrapper"), pack("platform", "--target", target, "--binary", binary)];
    if (process.env.LAUNCHER) {
      // pack.mjs packs the launcher of this checkout: repack the wrapper with the one under test.
      const stage = path.join(dir, "stage");
      mkdirSync(stage);
      execFileSync("tar", ["-xzf", tarballs[0], "-C", stage]);
      copyFileSync(LAUNCHER, path.join(stage, "package", "bin", "authful-mcp-proxy.js"));
      tarballs[0] = path.join(out, `launcher-under-test-${VERSION}.tgz`);
      execFileSync("tar", ["-czf", tarballs[0], "-C", stage, "package"]);
    }
    const env = {
      ...process.env,
      npm_config_cache: path.join(dir, "npm-cache"),
      npm_config_update_notifier: "false",
      npm_config_audit: "false",
      npm_config_fund: "false",
    };
    const npm = (...args) => execFileSync("npm", ["--offline", "--loglevel=error", ...args], { env, stdio: ["ignore", "pipe", "pipe"] });

    const project = path.join(dir, "project");
    mkdirSync(project);
    npm("install", "--prefix", project, ...tarballs);
    const local = run(path.join(project, "node_modules", NAME, "bin", "authful-mcp-proxy.js"), ["--version"]);
    assert.equal(local.stdout, "packed ran with: --version\n", local.stderr);
    assert.equal(local.status, 7);

    const prefix = path.join(dir, "global");
    npm("install", "--global", "--prefix", prefix, ...tarballs);
    const bin = path.join(prefix, "bin", "authful-mcp-proxy");
    assert.ok(existsSync(bin), `npm linked no ${bin}`);
    const global = spawnSync(bin, ["--version"], { input: "", encoding: "utf8", timeout: 30_000 });
    assert.equal(global.stdout, "packed ran with: --version\n", global.stderr);
    assert.equal(global.status, 7);
    assert.equal(ran(marker), "packed\npacked\n");
  });
});
