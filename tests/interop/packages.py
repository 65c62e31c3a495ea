"""Scenarios of the proxy as users install it, with no Rust toolchain: the PyPI wheel (built by
maturin from the release build) in a fresh venv and through `uvx --from`, and the npm wrapper
with its Linux binary package through `npx`, from its tarballs and from a registry. Each
installs from the files `run` built (a folder or a registry on 127.0.0.1 stands in for the
index), then goes through a real browser login at oidc-provider and tool calls on the fastmcp
backend, started the way a desktop client starts it.
"""

from __future__ import annotations

import tarfile

from harness import *  # noqa: F401,F403  (the scenarios' vocabulary)

PACKAGES_ERROR = os.environ.get("INTEROP_PACKAGES_ERROR") or ""
WHEEL = os.environ.get("INTEROP_WHEEL") or ""
NPM_TARBALLS = (os.environ.get("INTEROP_NPM_TARBALLS") or "").split()
BIN_DIR = Path(PYTHON).parent  # the suite's venv: uv and uvx come from requirements.txt
PYPI_NAME = "authful-mcp-proxy-rs"
PACK = HERE.parent.parent / "npm" / "pack.mjs"


def packages() -> None:
    check(not PACKAGES_ERROR, f"the packages were not built: {PACKAGES_ERROR}")


def npm_settings(sc: Scenario) -> dict[str, str]:
    """A fresh npm cache of the scenario's own, and no update notice."""
    return {"npm_config_cache": str(sc.dir / "npm-cache"), "npm_config_update_notifier": "false"}


def install(sc: Scenario, label: str, argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> None:
    """Runs an installer; its output is kept as `<label>.log`."""
    log = sc.dir / f"{label}.log"
    with open(log, "wb") as out:
        code = subprocess.run(argv, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, env=env, timeout=180).returncode
    check(code == 0, f"{' '.join(map(str, argv[:3]))} ... exited with {code}:\n{tail(log)}")


def login_and_call(sc: Scenario, command: list[str], label: str, extra_env: dict[str, str] | None = None) -> None:
    """The installed command as a desktop client starts it: a first browser login, then calls."""
    idp, backend_url, cb = fastmcp_stack(sc)
    home = sc.home(f"home-{label}")
    env = {**sc.proxy_env(home, backend_url, idp.issuer, cb), **(extra_env or {})}
    out: dict = {}

    async def body(session: ClientSession) -> None:
        out["whoami"] = await call_json(session, "whoami")
        out["echo"] = await call_json(session, "echo", {"text": "installed héllo"})

    asyncio.run(with_proxy(sc, env, body, command=command, label=label, check_exit=True))
    check(browser_finished(sc), f"the browser stand-in did not complete the login:\n{tail(sc.dir / 'browser.log')}")
    check_whoami(out["whoami"], "interop-public")
    check(out["echo"] == "installed héllo", f"echo gave {out['echo']!r}")
    tokens = cached_tokens(home)
    check_no_secrets([sc.dir / f"{label}.stderr.log"], [tokens["access_token"], tokens["refresh_token"]])


def wheel_in_a_fresh_venv(sc: Scenario) -> None:
    packages()
    venv = sc.dir / "venv"
    install(sc, "venv", [PYTHON, "-m", "venv", str(venv)], sc.dir)
    # By the package's name, from a folder standing in for the index.
    pip = [str(venv / "bin" / "pip"), "install", "--no-index", "--find-links", str(Path(WHEEL).parent)]
    install(sc, "pip-install", [*pip, "--disable-pip-version-check", PYPI_NAME], sc.dir)
    command = venv / "bin" / "authful-mcp-proxy"
    check(command.is_file() and os.access(command, os.X_OK), f"pip installed no {command}")
    login_and_call(sc, [str(command)], "proxy-venv")


def wheel_with_uvx_offline(sc: Scenario) -> None:
    packages()
    # A fresh cache: everything uvx runs comes from the wheel, nothing from an index.
    uv_env = {
        "UV_CACHE_DIR": str(sc.dir / "uv-cache"),
        "UV_TOOL_DIR": str(sc.dir / "uv-tools"),
        "UV_PYTHON_DOWNLOADS": "never",
        "UV_NO_CONFIG": "1",
    }
    # The README's command, with a folder standing in for the index.
    index = ["--offline", "--no-index", "--find-links", str(Path(WHEEL).parent)]
    command = [str(BIN_DIR / "uvx"), *index, "--from", PYPI_NAME, "authful-mcp-proxy"]
    login_and_call(sc, command, "proxy-uvx", uv_env)


def npm_tarballs_with_npx(sc: Scenario) -> None:
    packages()
    project = sc.dir / "npm-project"
    project.mkdir()
    npm_env = {**os.environ, **npm_settings(sc)}
    install(sc, "npm-install", ["npm", "install", "--offline", "--no-audit", "--no-fund", "--prefix", str(project), *NPM_TARBALLS], project, npm_env)
    launcher = project / "node_modules" / ".bin" / "authful-mcp-proxy"
    check(launcher.exists(), f"npm linked no {launcher}")
    # npx finds the command in the project's node_modules/.bin, as `npx <package>` would after
    # fetching it; the wrapper starts the binary from the platform package npm picked.
    command = ["npx", "--offline", "--prefix", str(project), "authful-mcp-proxy"]
    login_and_call(sc, command, "proxy-npx", npm_settings(sc))

    # Where npm is told to leave optional dependencies out (some company setups do), the launcher
    # finds no binary: it must say which package is missing and why, and fail.
    bare = sc.dir / "npm-without-optional"
    bare.mkdir()
    install(sc, "npm-install-omit-optional", ["npm", "install", "--offline", "--no-audit", "--no-fund", "--omit=optional", "--prefix", str(bare), *NPM_TARBALLS[:1]], bare, npm_env)
    # Nor may a copy in a node_modules further up stand in for it (stale, or planted by someone
    # else): Node's require.resolve would find this one, of the right name and version, and run
    # its "binary". The launcher looks only beside the wrapper and in the wrapper's node_modules.
    platform_package = Path(NPM_TARBALLS[1]).name.rsplit("-", 1)[0]  # <name>-<key>-<version>.tgz
    planted = sc.dir / "node_modules" / platform_package
    (planted / "bin").mkdir(parents=True)
    with tarfile.open(NPM_TARBALLS[1]) as tar:
        (planted / "package.json").write_bytes(tar.extractfile("package/package.json").read())
    planted_ran = sc.dir / "planted-binary-ran"
    (planted / "bin" / "authful-mcp-proxy").write_text(f"#!/bin/sh\necho ran > '{planted_ran}'\necho planted\n")
    (planted / "bin" / "authful-mcp-proxy").chmod(0o755)
    run = subprocess.run(
        ["npx", "--offline", "--prefix", str(bare), "authful-mcp-proxy", "--version"],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, env=npm_env, timeout=60,
    )
    check(not planted_ran.exists(), f"the launcher ran the binary of {planted}, a node_modules above the project's")
    check(run.returncode == 1, f"without the platform package the launcher exited {run.returncode} (expected 1); stderr: {run.stderr[-300:]}")
    check(platform_package in run.stderr and "--omit=optional" in run.stderr, f"the launcher's message names neither the package nor the cause: {run.stderr[-400:]}")
    check(run.stdout == "", f"the launcher wrote to stdout: {run.stdout[:200]!r}")


def npx_from_a_registry(sc: Scenario) -> None:
    """`npx -y authful-mcp-proxy-rs`, the README's command, against a registry on 127.0.0.1 that
    holds the wrapper and all seven platform packages: npm must fetch only this machine's (by
    `os`, `cpu` and `libc`), and the binary in it must serve the session."""
    packages()
    registry = sc.dir / "registry"
    registry.mkdir()
    for tarball in NPM_TARBALLS:
        shutil.copy(tarball, registry)
    wrapper, host = (Path(t).name for t in NPM_TARBALLS)
    host_package = host.rsplit("-", 1)[0]
    # The other platforms' packages hold a stand-in file: fetching one would be the failure.
    stand_in = sc.dir / "another-platforms-binary"
    stand_in.write_text("not a binary for this machine\n")
    targets = subprocess.run(["node", str(PACK), "targets"], capture_output=True, text=True, check=True).stdout
    for line in targets.splitlines():
        target, key = line.split()
        if host_package.endswith(f"-{key}"):
            continue
        pack = ["node", str(PACK), "platform", "--target", target, "--binary", str(stand_in), "--out", str(registry)]
        install(sc, f"pack-{key}", pack, sc.dir)
    check(len(list(registry.glob("*.tgz"))) == 8, f"the registry holds {sorted(p.name for p in registry.glob('*.tgz'))}")
    port = free_port()
    proc = sc.start("npm-registry", [PYTHON, str(HERE / "npm_registry.py"), "--port", str(port), "--dir", str(registry)], dict(os.environ), "npm registry on")

    command = ["npx", "-y", "--registry", f"http://127.0.0.1:{port}", "authful-mcp-proxy-rs"]
    login_and_call(sc, command, "proxy-npx-registry", npm_settings(sc))

    fetched = sorted(line.split()[1][3:] for line in proc.log.read_text().splitlines() if line.startswith("GET /-/"))
    check(fetched == sorted([wrapper, host]), f"npm fetched the tarballs {fetched}; expected only {sorted([wrapper, host])}")


SCENARIOS = [wheel_in_a_fresh_venv, wheel_with_uvx_offline, npm_tarballs_with_npx, npx_from_a_registry]
