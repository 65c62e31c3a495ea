"""Scenarios of the other ways to get and give up tokens, against oidc-provider: the device flow
(RFC 8628) with a person typing the code, client credentials with private_key_jwt (RFC 7523) or
a client secret, an issuer found through the backends' protected resource metadata (RFC 9728)
with a token per resource (RFC 8707), and `login` / `status` / `logout` with revocation (RFC 7009).
"""

from __future__ import annotations

import base64
import threading
import urllib.error
import urllib.parse

from harness import *  # noqa: F401,F403  (the scenarios' vocabulary)

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
DEVICE_LINE_START = "authful-mcp-proxy: to sign in to"


# --------------------------------------------------------------------------------------------
# Helpers


def write_config(sc: Scenario, name: str, lines: list[str]) -> Path:
    path = sc.dir / name
    path.write_text("\n".join(lines) + "\n")
    return path


def config_env(sc: Scenario, home: Path, *, browser: str = "fail", label: str = "failing-browser") -> dict[str, str]:
    """The env block of a client that starts the proxy with `--config`: no drop-in variables."""
    browser_log = sc.dir / f"{label}.log"
    sc.browser_logs.append(browser_log)
    return {
        "HOME": str(home),
        "PATH": os.environ["PATH"],
        "BROWSER": str(HERE / ("browser.py" if browser == "login" else "browser_fail.sh")),
        "MCP_PROXY_DEBUG": "1",
        "INTEROP_BROWSER_LOG": str(browser_log),
        "INTEROP_LOGIN": LOGIN,
        "INTEROP_BROWSER_MARKER": str(sc.dir / f"{label}.invoked"),
    }


def run_cli(sc: Scenario, label: str, args: list[str], env: dict[str, str], timeout: float = 60) -> tuple[int, str]:
    """Runs `authful-mcp-proxy ARGS` as a command: (exit status, stdout); stdout and stderr are kept
    as `<label>.stdout.log` / `<label>.stderr.log`."""
    out_path, err_path = sc.dir / f"{label}.stdout.log", sc.dir / f"{label}.stderr.log"
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        popen = subprocess.Popen(
            [BIN, *args], stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env, cwd=sc.dir,
            start_new_session=True,
        )
        with open(RUN_DIR / "pids", "a") as pids:  # for ./run's last-resort cleanup
            pids.write(f"{popen.pid}\n")
        try:
            code = popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(popen.pid, signal.SIGKILL)
            popen.wait(timeout=5)
            raise Failure(f"`authful-mcp-proxy {' '.join(args)}` did not finish within {timeout:g}s:\n{tail(err_path)}") from None
    return code, out_path.read_text(errors="replace")


def token_aud(who: Any) -> Any:
    check(isinstance(who, dict) and who.get("authenticated") is True, f"whoami: not authenticated: {who!r}")
    return (who.get("claims") or {}).get("aud")


def has_aud(aud: Any, expected: str) -> bool:
    """`aud` is exactly `expected` (a string, or a list of just that)."""
    return aud == expected or aud == [expected]


def cached_access_tokens(home: Path) -> list[str]:
    """Every access token in the token cache files under `home` (none when nothing is cached)."""
    found: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                if k == "access_token" and isinstance(v, str):
                    found.append(v)
                else:
                    walk(v)

    for path in glob.glob(str(home / ".fastmcp" / "oauth-mcp-client-cache" / "*_tokens.json")):
        walk(json.loads(Path(path).read_text()))
    return found


def gaps_ms(requests: list[dict]) -> list[int]:
    times = [r["ms"] for r in requests]
    return [b - a for a, b in zip(times, times[1:])]


class DevicePerson(threading.Thread):
    """The person of a device sign-in: watches the proxy's stderr for the line that tells them
    where to go and which code to type, then does it with browser.py on "another device" (plain
    HTTP), taking `pause` seconds at the login form."""

    def __init__(self, sc: Scenario, stderr_log: Path, label: str, pause: float) -> None:
        super().__init__(daemon=True)
        self.sc, self.stderr_log, self.label, self.pause = sc, stderr_log, label, pause
        self.log = sc.dir / f"{label}.log"
        sc.browser_logs.append(self.log)
        self.line: str | None = None
        self.uri: str | None = None
        self.code: str | None = None
        self.exit: int | None = None
        self.done = threading.Event()

    def run(self) -> None:
        deadline = time.monotonic() + 60
        while not self.done.is_set() and time.monotonic() < deadline and self.line is None:
            text = self.stderr_log.read_text(errors="replace") if self.stderr_log.exists() else ""
            for line in text.splitlines():
                uri = re.search(r" open (\S+) on any device", line)
                code = re.search(r" enter the code ([A-Za-z0-9-]+)", line)
                if line.startswith(DEVICE_LINE_START) and uri and code:
                    self.line, self.uri, self.code = line, uri.group(1), code.group(1)
                    break
            else:
                time.sleep(0.1)
        if self.line is None:
            return
        env = {
            "PATH": os.environ["PATH"],
            "INTEROP_BROWSER_LOG": str(self.log),
            "INTEROP_LOGIN": LOGIN,
            "INTEROP_BROWSER_PAUSE": str(self.pause),
        }
        argv = [PYTHON, str(HERE / "browser.py"), "--foreground", "--user-code", self.code, self.uri]
        popen = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
            cwd=HERE, start_new_session=True,
        )
        with open(RUN_DIR / "pids", "a") as pids:
            pids.write(f"{popen.pid}\n")
        self.sc.procs.append(Proc(self.label, popen, self.log))
        self.exit = popen.wait()


def rsa_client_key(kid: str) -> tuple[bytes, dict]:
    """A fresh RSA key pair for private_key_jwt: (PKCS#8 PEM, public JWK)."""
    try:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
    except ImportError as e:  # fastmcp depends on it, so the venv has it
        raise Failure(f"the suite's venv lacks the cryptography package: {e}") from None
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    numbers = key.public_key().public_numbers()

    def b64u(n: int) -> str:
        return base64.urlsafe_b64encode(n.to_bytes((n.bit_length() + 7) // 8, "big")).rstrip(b"=").decode()

    return pem, {"kty": "RSA", "n": b64u(numbers.n), "e": b64u(numbers.e), "kid": kid, "alg": "RS256", "use": "sig"}


# --------------------------------------------------------------------------------------------
# Scenarios


def device_flow(sc: Scenario) -> str:
    """`flow: device`: the proxy tells the person a URL and a code (stderr, and a log message to
    the MCP client), polls as often as the provider allows while a person types the code
    elsewhere, and the backend accepts the token. Then a provider that enforces a longer interval
    than it announces: the proxy must poll 5 s more slowly after `slow_down` (RFC 8628 §3.5)."""
    interval = 2  # announced to both clients; enforced for interop-device, 3 s for interop-device-hasty
    backend_port = free_port()
    backend_url = f"http://127.0.0.1:{backend_port}/mcp"
    idp = sc.start_idp(backend_url, [free_port()], device_interval=interval)
    sc.start_backend(backend_port, idp.issuer)
    notes = []
    # (phase, client, seconds the person takes at the login form)
    for phase, client, pause in (("device", "interop-device", 5), ("hasty", "interop-device-hasty", 5)):
        home = sc.home(f"home-{phase}")
        config = write_config(sc, f"{phase}.yaml", [
            "oidc_profiles:",
            "  tv:",
            f"    issuer_url: {idp.issuer}",
            f"    client_id: {client}",
            "    flow: device",
            "    login_timeout: 60",
            "backends:",
            "  corp:",
            f"    url: {backend_url}",
            "    oidc_profile: tv",
            '    prefix: ""',
        ])
        label = f"proxy-{phase}"
        env = config_env(sc, home, label=f"failing-browser-{phase}")
        person = DevicePerson(sc, sc.dir / f"{label}.stderr.log", f"person-{phase}", pause)
        person.start()
        logs: list = []
        out: dict = {}

        async def body(session: ClientSession) -> None:
            tools, _ = await list_all(session, "tools")
            out["tools"] = sorted(t.name for t in tools)
            out["whoami"] = await call_json(session, "whoami")

        started = time.monotonic()
        try:
            asyncio.run(with_proxy(sc, env, body, args=["--config", str(config)], label=label, logs=logs))
        finally:
            person.done.set()
            person.join(10)
        took = time.monotonic() - started

        check(person.line is not None, f"{phase}: no '{DEVICE_LINE_START} ... open <uri> on any device and enter the code <code>' line on stderr:\n{tail(sc.dir / f'{label}.stderr.log')}")
        check(person.line.startswith(f"{DEVICE_LINE_START} {idp.issuer}"), f"{phase}: the line names no issuer: {person.line}")
        check(person.uri == f"{idp.issuer}/device", f"{phase}: verification URI {person.uri!r}, expected {idp.issuer}/device")
        issued = [r for r in idp.requests("device_authorization", client=client) if r["status"] == 200]
        check(len(issued) == 1, f"{phase}: {len(issued)} device authorization(s) at the IdP, expected 1")
        check(person.code == issued[0]["user_code"], f"{phase}: the proxy told the code {person.code!r}, the IdP issued {issued[0]['user_code']!r}")
        check(person.exit == 0, f"{phase}: the person could not complete the sign-in (exit {person.exit}):\n{tail(person.log)}")
        told = [m for m in logs if m.level == "notice" and m.logger == "authful-mcp-proxy" and person.code in str(m.data)]
        check(told, f"{phase}: the MCP client got no notice log message with the code; log messages: {[(m.level, m.logger, str(m.data)[:120]) for m in logs]}")
        check(person.uri in str(told[0].data), f"{phase}: the log message lacks the verification URI: {told[0].data}")
        check("whoami" in out["tools"], f"{phase}: tools/list gave {out['tools']}")
        check_whoami(out["whoami"], client)
        check(not browser_invoked(sc, f"failing-browser-{phase}"), f"{phase}: a browser was opened in the device flow")

        polls = idp.requests("token", grant_type=DEVICE_GRANT, client=client)
        check(polls and polls[-1]["status"] == 200, f"{phase}: the last device-code poll did not get the tokens: {[(p['status'], p.get('error')) for p in polls]}")
        check(all(p.get("error") in ("authorization_pending", "slow_down") for p in polls[:-1]), f"{phase}: polls before the tokens failed otherwise: {[p.get('error') for p in polls]}")
        gaps = gaps_ms(polls)
        slow = [i for i, p in enumerate(polls) if p.get("error") == "slow_down"]
        if phase == "device":
            check(len(polls) >= 3, f"{phase}: only {len(polls)} poll(s): the person took {pause} s, the interval is {interval} s")
            check(not slow, f"{phase}: the IdP answered slow_down {len(slow)} time(s): polls {gaps} ms apart, interval {interval} s")
            check(min(gaps) >= interval * 1000, f"{phase}: polls {gaps} ms apart, faster than the interval of {interval} s")
            check(max(gaps) <= interval * 1000 + 1500, f"{phase}: polls {gaps} ms apart: the announced interval of {interval} s was not used (5 s is the default)")
            notes.append(f"polls {', '.join(f'{g / 1000:.1f}' for g in gaps)} s apart (interval {interval} s)")
        else:
            # Told 2 s, held to 3 s: the second poll gets slow_down; from then on every poll
            # must wait 2 + 5 s.
            check(len(slow) == 1, f"{phase}: {len(slow)} slow_down answers, expected exactly 1 (polls {gaps} ms apart)")
            after = gaps[slow[0]:]
            slower = (interval + 5) * 1000
            check(after and min(after) >= slower, f"{phase}: after slow_down the proxy polled {after} ms apart, expected >= {slower} (interval {interval} s + 5 s)")
            check(max(after) <= slower + 1500, f"{phase}: after slow_down the proxy polled {after} ms apart, expected about {slower} (interval {interval} s + 5 s)")
            notes.append(f"after slow_down {', '.join(f'{g / 1000:.1f}' for g in after)} s")
        grants = [e for e in idp.events() if e["event"] == "grant.success" and e.get("client") == client]
        check([g["grant_type"] for g in grants] == [DEVICE_GRANT], f"{phase}: grants {[g['grant_type'] for g in grants]}")
        notes.append(f"{phase} {took:.1f} s")
    return "; ".join(notes)


def client_credentials(sc: Scenario) -> str:
    """`flow: client_credentials`: a service account, no person and no browser. The client
    authenticates with a JWT signed by its own RSA key (private_key_jwt, key registered at the
    IdP as a JWK), then with a client secret (client_secret_basic)."""
    kid = "interop-cc-jwt-1"
    pem, jwk = rsa_client_key(kid)
    key_file = sc.dir / "client-key.pem"
    key_file.write_bytes(pem)
    key_file.chmod(0o600)
    jwks_file = sc.dir / "client-jwks.json"
    jwks_file.write_text(json.dumps({"keys": [jwk]}))
    backend_port = free_port()
    backend_url = f"http://127.0.0.1:{backend_port}/mcp"
    idp = sc.start_idp(backend_url, [free_port()], client_jwks=jwks_file)
    sc.start_backend(backend_port, idp.issuer)
    variants = {
        "interop-cc-jwt": [
            "    client_assertion:",
            f"      key_file: {key_file}",
            "      algorithm: RS256",
            f"      key_id: {kid}",
        ],
        "interop-cc-secret": ["    client_secret: ${INTEROP_CLIENT_SECRET}"],
    }
    key_text = pem.decode().splitlines()[5]  # a line of the key itself, to look for in logs
    for client, auth in variants.items():
        config = write_config(sc, f"{client}.yaml", [
            "oidc_profiles:",
            "  robot:",
            f"    issuer_url: {idp.issuer}",
            f"    client_id: {client}",
            "    flow: client_credentials",
            *auth,
            "backends:",
            "  corp:",
            f"    url: {backend_url}",
            "    oidc_profile: robot",
            '    prefix: ""',
        ])
        label = f"proxy-{client}"
        home = sc.home(f"home-{client}")
        env = config_env(sc, home, label=f"failing-browser-{client}")
        env["INTEROP_CLIENT_SECRET"] = SECRET
        out: dict = {}
        asyncio.run(with_proxy(sc, env, whoami_body(out), args=["--config", str(config)], label=label))
        who = out["whoami"]
        check(has_aud(token_aud(who), "mcp-backend"), f"{client}: token aud {token_aud(who)!r}")
        check(who.get("sub") == client, f"{client}: token sub {who.get('sub')!r}, expected the client itself")
        check(who["claims"].get("client_id") == client, f"{client}: token client_id {who['claims'].get('client_id')!r}")
        check(not browser_invoked(sc, f"failing-browser-{client}"), f"{client}: the browser was opened")
        stderr = (sc.dir / f"{label}.stderr.log").read_text(errors="replace")
        check(auth_url_line(sc.dir / f"{label}.stderr.log") is None and DEVICE_LINE_START not in stderr, f"{client}: the proxy asked a person to sign in")
        grants = [r for r in idp.requests("token", client=client) if r["status"] == 200]
        check(grants and all(r["grant_type"] == "client_credentials" for r in grants), f"{client}: token requests {[(r['grant_type'], r['status']) for r in idp.requests('token', client=client)]}")
        errors = [r for r in idp.requests("token", client=client) if r["status"] != 200]
        check(not errors, f"{client}: the IdP refused token requests: {[(r.get('error'), r.get('error_description')) for r in errors]}")
        if client == "interop-cc-jwt":
            check(all(r["client_auth"] == "private_key_jwt" and r.get("client_assertion_type") == JWT_BEARER and not r["basic_auth"] for r in grants),
                  f"{client}: not authenticated with a client assertion: {grants}")
        else:
            check(all(r["client_auth"] == "client_secret_basic" and r["basic_auth"] and not r.get("client_assertion_type") for r in grants),
                  f"{client}: not authenticated with HTTP Basic: {grants}")
        check_no_secrets([sc.dir / f"{label}.stderr.log"], [SECRET, key_text, *cached_access_tokens(home)])
    return f"{len(variants)} clients"


def rfc9728_resource(sc: Scenario) -> str:
    """Two RFC 9728 backends (fastmcp RemoteAuthProvider, each accepting only tokens whose aud is
    its own URL) behind one profile that names no issuer: the proxy finds the issuer in their
    metadata, asks for both resources at one browser login (RFC 8707) and gets each backend a
    token of its own, the second through the refresh token."""
    ports = {"alpha": free_port(), "beta": free_port()}
    urls = {name: f"http://127.0.0.1:{port}/mcp" for name, port in ports.items()}
    cb = free_port()
    idp = sc.start_idp(None, [cb], resources=list(urls.values()))
    for name, port in ports.items():
        sc.start_backend(port, idp.issuer, name=f"backend-{name}", resource_metadata=True)

    # The fixture itself: a 401 pointing at the metadata, which names the IdP.
    probe = urllib.request.Request(urls["alpha"], data=b"{}", method="POST", headers={"Content-Type": "application/json", "Accept": "application/json, text/event-stream"})
    try:
        urllib.request.urlopen(probe, timeout=10)
        raise Failure("backend-alpha answered without a token")
    except urllib.error.HTTPError as e:
        challenge = e.headers.get("WWW-Authenticate", "")
    metadata_url = f"http://127.0.0.1:{ports['alpha']}/.well-known/oauth-protected-resource/mcp"
    check(f'resource_metadata="{metadata_url}"' in challenge, f"backend-alpha's 401 challenge: {challenge!r}")
    metadata = json.loads(urllib.request.urlopen(metadata_url, timeout=10).read())
    check(metadata.get("resource") == urls["alpha"] and metadata.get("authorization_servers") == [idp.issuer], f"backend-alpha's metadata: {metadata}")

    config = write_config(sc, "resources.yaml", [
        "oidc_profiles:",
        "  corp:",
        "    client_id: interop-public",
        f"    redirect_url: http://localhost:{cb}/auth/callback",
        "backends:",
        *[line for name, url in urls.items() for line in (f"  {name}:", f"    url: {url}", "    oidc_profile: corp")],
        "gateway:",
        "  startup_timeout: 30",
    ])
    env = config_env(sc, sc.home(), browser="login", label="browser")
    out: dict = {}

    async def body(session: ClientSession) -> None:
        tools, _ = await list_all(session, "tools")
        out["tools"] = sorted(t.name for t in tools)
        for name in urls:
            out[name] = await call_json(session, f"{name}_whoami")
        out["sum"] = await call_json(session, "beta_add", {"a": 20, "b": 22})

    asyncio.run(with_proxy(sc, env, body, args=["--config", str(config)], label="gateway"))
    for name in urls:
        check(f"{name}_whoami" in out["tools"], f"tools/list lacks {name}_whoami: {out['tools']}")
        who = out[name]
        check(has_aud(token_aud(who), urls[name]), f"{name}: token aud {token_aud(who)!r}, expected its own resource {urls[name]}")
        check(who.get("sub") == LOGIN and who["claims"].get("client_id") == "interop-public", f"{name}: whoami {who}")
    check(out["sum"] == 42, f"beta_add gave {out['sum']!r}")
    check(browser_finished(sc), f"the browser stand-in did not complete the login:\n{tail(sc.dir / 'browser.log')}")

    authorizations = idp.requests("authorization")
    check(len(authorizations) == 1, f"{len(authorizations)} authorization requests at the IdP, expected one login for both backends")
    asked = authorizations[0].get("resource")
    asked = asked if isinstance(asked, list) else [asked]
    check(sorted(asked) == sorted(urls.values()), f"the authorization request asked for resources {asked}, expected both backends'")
    url = auth_url_line(sc.dir / "gateway.stderr.log") or ""
    for u in urls.values():
        check(f"resource={urllib.parse.quote(u, safe='')}" in url, f"the printed authorization URL lacks resource={u}")
    tokens = idp.requests("token")
    refused = [r for r in tokens if r["status"] != 200]
    check(not refused, f"the IdP refused token requests: {[(r.get('grant_type'), r.get('resource'), r.get('error'), r.get('error_description')) for r in refused]}")
    by_grant = {g: [r.get("resource") for r in tokens if r.get("grant_type") == g] for g in ("authorization_code", "refresh_token")}
    check(len(by_grant["authorization_code"]) == 1 and by_grant["authorization_code"][0] in urls.values(), f"code grants with resources {by_grant['authorization_code']}")
    other = next(u for u in urls.values() if u != by_grant["authorization_code"][0])
    check(other in by_grant["refresh_token"], f"no refresh with resource={other}: refreshes with {by_grant['refresh_token']}")
    check(all(r in urls.values() for r in by_grant["refresh_token"]), f"refreshes without a resource of a backend: {by_grant['refresh_token']}")
    first = next(name for name, u in urls.items() if u == by_grant["authorization_code"][0])
    second = next(name for name in urls if name != first)
    return f"one login, code grant for {first}, refresh for {second}"


def public_server_with_registration(sc: Scenario) -> str:
    """A public MCP server with its own OAuth and a company server, in one gateway file: the
    public one (fastmcp RemoteAuthProvider publishing RFC 9728 metadata) trusts an oidc-provider
    with open dynamic client registration and is configured with `auth: oauth` alone; the company
    one (fastmcp, validating tokens) takes the tokens of another oidc-provider through a
    configured profile. The proxy registers a client at the public server's authorization server
    (RFC 7591), keeps it owner-only, signs in there with it and the company profile's client at
    the company provider, and each backend gets a token of its own provider, for its own
    resource, asking for the scope the public server publishes (no `openid`)."""
    company_port, public_port, company_cb, public_cb = free_port(), free_port(), free_port(), free_port()
    company_url = f"http://127.0.0.1:{company_port}/mcp"
    public_url = f"http://127.0.0.1:{public_port}/mcp"
    company_idp = sc.start_idp(company_url, [company_cb], name="idp-company")
    public_idp = sc.start_idp(None, [public_cb], name="idp-public", resources=[public_url], registration=True)
    sc.start_backend(company_port, company_idp.issuer, name="backend-company")
    sc.start_backend(public_port, public_idp.issuer, name="backend-public", resource_metadata=True, scope="mcp:tools")

    config = write_config(sc, "public-and-company.yaml", [
        "oidc_profiles:",
        "  company:",
        f"    issuer_url: {company_idp.issuer}",
        "    client_id: interop-public",
        f"    redirect_url: http://localhost:{company_cb}/auth/callback",
        "gateway:",
        "  startup_timeout: 30",
        f"  redirect_url: http://localhost:{public_cb}/auth/callback",
        "backends:",
        "  company:",
        f"    url: {company_url}",
        "    oidc_profile: company",
        "  public:",
        f"    url: {public_url}",
        "    auth: oauth",
    ])
    home = sc.home()
    env = config_env(sc, home, browser="login", label="browser")
    out: dict = {}

    async def body(session: ClientSession) -> None:
        tools, _ = await list_all(session, "tools")
        out["tools"] = sorted(t.name for t in tools)
        out["company"] = await call_json(session, "company_whoami")
        out["public"] = await call_json(session, "public_whoami")

    asyncio.run(with_proxy(sc, env, body, args=["--config", str(config)], label="gateway"))
    for name in ("company", "public"):
        check(f"{name}_whoami" in out["tools"], f"tools/list lacks {name}_whoami: {out['tools']}")
    registrations = public_idp.requests("registration")
    check([r["status"] for r in registrations] == [201], f"registrations at the public server's provider: {registrations}")
    check(not company_idp.requests("registration"), "the proxy registered at the company provider, which has a configured client")
    authorizations = public_idp.requests("authorization")
    registered = {r.get("client") for r in authorizations}
    check(len(authorizations) == 1 and registered and "interop-public" not in registered,
          f"authorizations at the public server's provider: {[(r.get('client'), r.get('status')) for r in authorizations]}")
    company = out["company"]
    check(company.get("sub") == LOGIN and company["claims"].get("client_id") == "interop-public"
          and has_aud(token_aud(company), "mcp-backend"), f"company whoami: {company}")
    public = out["public"]
    check(public.get("sub") == LOGIN and public["claims"].get("client_id") in registered
          and has_aud(token_aud(public), public_url), f"public whoami: {public} (registered {registered})")
    asked = [r.get("scope") for r in authorizations]
    check(asked == ["mcp:tools"], f"the sign-in at the public server's provider asked for scopes {asked}, expected the one its metadata publishes")
    refused = [r for r in public_idp.requests("token") if r["status"] != 200]
    check(not refused, f"the public server's provider refused token requests: {refused}")
    kept = sorted(home.rglob("*_client.json"))
    check(len(kept) == 1, f"registration files under {home}: {kept}")
    mode = kept[0].stat().st_mode & 0o777
    check(mode == 0o600, f"{kept[0].name} has mode {mode:o}")
    check(browser_finished(sc), f"the browser stand-in did not complete the logins:\n{tail(sc.dir / 'browser.log')}")
    return f"registered {next(iter(registered))} at the public server's provider; two sign-ins, one per provider"


def logout_revocation(sc: Scenario) -> str:
    """`login` signs in ahead of time; `status --json` sees the backend answer; `logout` revokes
    the refresh token at the IdP (RFC 7009) and deletes the cache file; the old refresh token is
    refused afterwards and `status` reports no token."""
    backend_port, cb = free_port(), free_port()
    backend_url = f"http://127.0.0.1:{backend_port}/mcp"
    idp = sc.start_idp(backend_url, [cb])
    sc.start_backend(backend_port, idp.issuer)
    home = sc.home()
    env = sc.proxy_env(home, backend_url, idp.issuer, cb)
    code, _ = run_cli(sc, "login", ["login"], env)
    check(code == 0, f"`login` exited {code}:\n{tail(sc.dir / 'login.stderr.log')}")
    check(browser_finished(sc), f"the browser stand-in did not complete the login:\n{tail(sc.dir / 'browser.log')}")
    cache_file(home)

    quiet = sc.proxy_env(home, backend_url, idp.issuer, cb, browser="fail", label="failing-browser")

    def status(label: str) -> tuple[int, dict]:
        code, text = run_cli(sc, label, ["status", "--json"], quiet)
        try:
            report = json.loads(text)
        except ValueError:
            raise Failure(f"`status --json` printed no JSON (exit {code}): {text[:300]!r}\n{tail(sc.dir / f'{label}.stderr.log')}") from None
        backends = report.get("backends") or []
        check(len(backends) == 1, f"`status --json` lists {len(backends)} backends: {report}")
        return code, backends[0]

    code, before = status("status-before")
    check(code == 0, f"`status --json` exited {code} after login, expected 0: {before}")
    check(before.get("answers") is True, f"status before logout: the backend does not answer: {before}")
    check(before.get("token") in ("valid", "refreshable"), f"status before logout: token {before.get('token')!r}")
    check(before.get("issuer") == idp.issuer and before.get("url") == backend_url, f"status before logout: {before}")

    tokens = cached_tokens(home)  # as they are right before the logout
    refresh_token = tokens.get("refresh_token")
    check(bool(refresh_token), f"the cache file holds no refresh token: keys {sorted(tokens)}")
    code, _ = run_cli(sc, "logout", ["logout"], quiet)
    check(code == 0, f"`logout` exited {code}:\n{tail(sc.dir / 'logout.stderr.log')}")
    left = glob.glob(str(home / ".fastmcp" / "oauth-mcp-client-cache" / "*_tokens.json"))
    check(not left, f"the token cache file is still there after logout: {left}")
    revocations = idp.requests("revocation")
    summary = [(r["status"], r.get("token_type_hint"), r.get("client"), r.get("error")) for r in revocations]
    check(revocations and all(r["status"] == 200 for r in revocations), f"revocation requests at the IdP: {summary}")
    check(any(r.get("token_type_hint") == "refresh_token" and r.get("client") == "interop-public" for r in revocations),
          f"no revocation of the refresh token by interop-public: {summary}")
    check(any(e["event"] == "grant.revoked" for e in idp.events()), "the IdP revoked no grant")

    # The old refresh token, straight at the IdP's token endpoint.
    form = urllib.parse.urlencode({"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": "interop-public"}).encode()
    try:
        answer = urllib.request.urlopen(urllib.request.Request(f"{idp.issuer}/token", data=form, method="POST"), timeout=10)
        raise Failure(f"the old refresh token still works after logout: HTTP {answer.status}")
    except urllib.error.HTTPError as e:
        refused = json.loads(e.read() or b"{}")
        check(e.code == 400 and refused.get("error") == "invalid_grant", f"the old refresh token got HTTP {e.code} {refused}, expected 400 invalid_grant")

    code, after = status("status-after")
    check(code == 1, f"`status --json` exited {code} after logout, expected 1: {after}")
    check(after.get("token") == "none", f"status after logout: token {after.get('token')!r}, expected 'none'")
    check(after.get("answers") is False, f"status after logout: the backend answers without a token: {after}")
    check(not browser_invoked(sc, "failing-browser"), "status or logout opened the browser")
    logs = [sc.dir / f"{n}.{s}.log" for n in ("login", "status-before", "logout", "status-after") for s in ("stdout", "stderr")]
    check_no_secrets(logs, [refresh_token, tokens.get("access_token") or ""])
    return ""


SCENARIOS = [device_flow, client_credentials, rfc9728_resource, public_server_with_registration, logout_revocation]
