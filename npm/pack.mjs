#!/usr/bin/env node
// Makes the npm tarballs: one package per platform that carries the binary, and the wrapper that
// depends on all of them as optionalDependencies (npm installs the one whose `os`, `cpu` and
// `libc` match, and skips the rest), so `npx` runs the binary with no download after install.
//
//   node npm/pack.mjs platform --target <rust target> --binary <path> --out <dir>
//   node npm/pack.mjs wrapper --out <dir>
//   node npm/pack.mjs targets          (the Rust targets and their package keys, a line each)
//
// Options for both: --name <npm name> (default: npm/package/package.json's, authful-mcp-proxy-rs;
// a company publishing under its own name passes it here), --version <v> (default: Cargo.toml's)
// and --repository <url> (the source repository; npm's provenance requires it to match the
// repository that publishes).
// Prints the path of the tarball it wrote.
import { execFileSync } from "node:child_process";
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.dirname(here);

/** Rust target → the npm platform it serves. The key names the package: `<name>-<key>`. */
export const TARGETS = {
  "x86_64-unknown-linux-gnu": { key: "linux-x64", os: "linux", cpu: "x64", libc: "glibc" },
  "aarch64-unknown-linux-gnu": { key: "linux-arm64", os: "linux", cpu: "arm64", libc: "glibc" },
  "x86_64-unknown-linux-musl": { key: "linux-x64-musl", os: "linux", cpu: "x64", libc: "musl" },
  "aarch64-unknown-linux-musl": { key: "linux-arm64-musl", os: "linux", cpu: "arm64", libc: "musl" },
  "x86_64-apple-darwin": { key: "darwin-x64", os: "darwin", cpu: "x64" },
  "aarch64-apple-darwin": { key: "darwin-arm64", os: "darwin", cpu: "arm64" },
  "x86_64-pc-windows-msvc": { key: "win32-x64", os: "win32", cpu: "x64", exe: ".exe" },
};

function fail(message) {
  process.stderr.write(`pack.mjs: ${message}\n`);
  process.exit(2);
}

function cargoVersion() {
  const manifest = readFileSync(path.join(root, "Cargo.toml"), "utf8");
  const version = /^\[package\][^[]*?^version\s*=\s*"([^"]+)"/ms.exec(manifest);
  if (!version) fail("no version in Cargo.toml's [package]");
  return version[1];
}

/** Writes `manifest` and `files` (name → source path) into a fresh directory and `npm pack`s it. */
function pack(manifest, files, out) {
  const stage = mkdtempSync(path.join(tmpdir(), "authful-npm-"));
  try {
    for (const [name, source] of Object.entries(files)) {
      mkdirSync(path.dirname(path.join(stage, name)), { recursive: true });
      copyFileSync(source, path.join(stage, name));
    }
    writeFileSync(path.join(stage, "package.json"), `${JSON.stringify(manifest, null, 2)}\n`);
    mkdirSync(out, { recursive: true });
    const report = execFileSync("npm", ["pack", "--json", "--pack-destination", path.resolve(out)], {
      cwd: stage,
      encoding: "utf8",
      stdio: ["ignore", "pipe", "inherit"],
      shell: process.platform === "win32",
    });
    return path.join(path.resolve(out), JSON.parse(report)[0].filename);
  } finally {
    rmSync(stage, { recursive: true, force: true });
  }
}

const { positionals, values } = parseArgs({
  allowPositionals: true,
  options: {
    target: { type: "string" },
    binary: { type: "string" },
    out: { type: "string" },
    name: { type: "string" },
    version: { type: "string" },
    repository: { type: "string" },
  },
});
const [kind] = positionals;
if (kind === "targets") {
  for (const [target, { key }] of Object.entries(TARGETS)) console.log(`${target} ${key}`);
  process.exit(0);
}
if (!values.out) fail("--out <dir> is required");
const wrapper = JSON.parse(readFileSync(path.join(here, "package", "package.json"), "utf8"));
const name = values.name ?? wrapper.name;
const version = values.version ?? cargoVersion();
const common = {
  license: wrapper.license,
  LICENSE: path.join(root, "LICENSE"),
  ...(values.repository ? { repository: { type: "git", url: `git+${values.repository}.git` } } : {}),
};

if (kind === "platform") {
  const platform = TARGETS[values.target];
  if (!platform) fail(`--target must be one of: ${Object.keys(TARGETS).join(", ")}`);
  if (!values.binary) fail("--binary <path> is required");
  const file = `bin/authful-mcp-proxy${platform.exe ?? ""}`;
  chmodSync(values.binary, 0o755);
  const manifest = {
    name: `${name}-${platform.key}`,
    version,
    description: `The ${values.target} binary of ${name}`,
    license: common.license,
    ...(common.repository ? { repository: common.repository } : {}),
    os: [platform.os],
    cpu: [platform.cpu],
    ...(platform.libc ? { libc: [platform.libc] } : {}),
    files: [file, "LICENSE"],
    preferUnplugged: true,
  };
  console.log(pack(manifest, { [file]: values.binary, LICENSE: common.LICENSE }, values.out));
} else if (kind === "wrapper") {
  const optionalDependencies = Object.fromEntries(
    Object.values(TARGETS).map(({ key }) => [`${name}-${key}`, version]),
  );
  const repository = common.repository ? { repository: common.repository } : {};
  const manifest = { ...wrapper, name, version, ...repository, optionalDependencies };
  const files = {
    "bin/authful-mcp-proxy.js": path.join(here, "package", "bin", "authful-mcp-proxy.js"),
    "README.md": path.join(here, "package", "README.md"),
    LICENSE: common.LICENSE,
  };
  console.log(pack(manifest, files, values.out));
} else {
  fail("usage: pack.mjs platform --target <rust target> --binary <path> --out <dir> | pack.mjs wrapper --out <dir>");
}
