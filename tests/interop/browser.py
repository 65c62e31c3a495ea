#!/usr/bin/env python3
"""Browser stand-in, used as $BROWSER: logs in at oidc-provider's dev interactions.

Usage: browser.py [--foreground] AUTHORIZATION_URL
       browser.py --foreground --user-code CODE VERIFICATION_URI    (a person with a device code)

Gets the URL, follows the provider's redirects keeping cookies, submits the dev login form (any
login/password; the login becomes the account id) and the consent form, then follows the final
redirect to the proxy's loopback callback. Standard library only.

With --user-code it is the person of a device authorization (RFC 8628) instead: it types the code
into the provider's code form at the verification URI, confirms, logs in and consents, and stops
at the provider's "Sign-in Success" page.

It detaches at once (fork + setsid) and does the work in the background, so a caller that waits
for the browser command does not block its own callback server. Everything it does is appended
to $INTEROP_BROWSER_LOG (if set).

Environment: INTEROP_BROWSER_LOG (log file), INTEROP_LOGIN (login to type, default
"interop-alice"), INTEROP_BROWSER_DEADLINE (seconds, default 60), INTEROP_CALLBACK_RETRY (seconds
to retry a refused connection to the callback, default 10), INTEROP_CONSENT ("deny": cancel at the
consent page, so the provider redirects with error=access_denied; default "allow"),
INTEROP_BROWSER_PAUSE (seconds a person takes at the login form, typing a password and an MFA
code; default 0).
"""

import html.parser
import os
import signal
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from http.cookiejar import CookieJar

LOG = os.environ.get("INTEROP_BROWSER_LOG")
LOGIN = os.environ.get("INTEROP_LOGIN", "interop-alice")
DEADLINE = int(os.environ.get("INTEROP_BROWSER_DEADLINE", "60"))
CALLBACK_RETRY = float(os.environ.get("INTEROP_CALLBACK_RETRY", "10"))
CONSENT = os.environ.get("INTEROP_CONSENT", "allow")
PAUSE = float(os.environ.get("INTEROP_BROWSER_PAUSE", "0"))


def log(msg: str) -> None:
    line = f"{time.strftime('%H:%M:%S')} [browser {os.getpid()}] {msg}\n"
    if LOG:
        with open(LOG, "a", encoding="utf-8") as f:
            f.write(line)
    else:
        sys.stderr.write(line)


def redact(url: str) -> str:
    """The URL without query values that are secrets (code), for the log."""
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    shown = [(k, "<redacted>" if k in ("code",) else v) for k, v in query]
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(shown)))


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: D401
        return None


class Forms(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict] = []
        self.links: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "a" and a.get("href"):
            self.links.append(a["href"])
        if tag == "form":
            self.forms.append({"action": a.get("action", ""), "method": a.get("method", "get"), "inputs": {}})
        elif tag == "input" and self.forms and a.get("name"):
            self.forms[-1]["inputs"][a["name"]] = a.get("value", "")


def run(url: str, user_code: str | None = None) -> int:
    idp_origin = urllib.parse.urlsplit(url)[:2]
    jar = CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar), NoRedirect())
    method, target, body = "GET", url, None
    for step in range(1, 21):
        is_idp = urllib.parse.urlsplit(target)[:2] == idp_origin
        log(f"step {step}: {method} {redact(target) if not is_idp else target.split('?')[0]}")
        req = urllib.request.Request(target, data=body, method=method)
        if body is not None:
            req.add_header("Content-Type", "application/x-www-form-urlencoded")
        # A person takes seconds to log in; this stand-in takes milliseconds. A client that opens
        # the browser before its callback server listens (the Python original does) would see a
        # refused connection, so the callback is retried for up to CALLBACK_RETRY seconds.
        retry_until = time.monotonic() + (CALLBACK_RETRY if not is_idp else 0)
        while True:
            try:
                resp = opener.open(req, timeout=15)
                status, headers, text = resp.status, resp.headers, resp.read().decode("utf-8", "replace")
                break
            except urllib.error.HTTPError as e:
                status, headers, text = e.code, e.headers, e.read().decode("utf-8", "replace")
                break
            except urllib.error.URLError as e:
                if isinstance(e.reason, ConnectionRefusedError) and time.monotonic() < retry_until:
                    log("  connection refused; retrying in 0.25 s")
                    time.sleep(0.25)
                    continue
                raise
        log(f"  -> {status}")
        if not is_idp:
            # The proxy's loopback callback: the end of the journey.
            log(f"  callback page: {' '.join(text.split())[:300]}")
            return 0 if status == 200 or CONSENT == "deny" else 1
        if status in (301, 302, 303, 307, 308):
            location = urllib.parse.urljoin(target, headers.get("Location", ""))
            method, target, body = "GET", location, None
            continue
        if status != 200:
            log(f"  unexpected response: {' '.join(text.split())[:500]}")
            return 1
        parser = Forms()
        parser.feed(text)
        form = next((f for f in parser.forms if f["method"].lower() == "post"), None)
        if form is None and user_code is not None and "Sign-in Success" in text:
            # The device flow ends at the provider: the proxy picks the tokens up by polling.
            log("  device sign-in complete (Sign-in Success)")
            return 0
        if form is None:
            log(f"  page without a form: {' '.join(text.split())[:500]}")
            return 1
        fields = dict(form["inputs"])
        prompt = fields.get("prompt")
        if user_code is not None and "user_code" in fields and "confirm" not in fields:
            # oidc-provider's code form (op.deviceInputForm): the person types the code.
            fields["user_code"] = user_code
            log(f"  typing the user code {user_code}")
        elif user_code is not None and "confirm" in fields:
            # The confirmation form (op.deviceConfirmForm): "Continue"; `abort` would cancel.
            fields.pop("abort", None)
            log("  confirming the device sign-in")
        elif prompt == "login":
            if PAUSE:
                log(f"  a person types for {PAUSE:g} s")
                time.sleep(PAUSE)
            fields["login"] = LOGIN
            fields["password"] = "any-password"
            log(f"  submitting login form as {LOGIN!r}")
        elif prompt == "consent" and CONSENT == "deny":
            abort = next((link for link in parser.links if link.rstrip("/").endswith("/abort")), None)
            if abort is None:
                log("  consent page without a cancel link")
                return 1
            log("  denying consent (following the cancel link)")
            method, target, body = "GET", urllib.parse.urljoin(target, abort), None
            continue
        elif prompt == "consent":
            log("  submitting consent form")
        else:
            log(f"  submitting unknown form (prompt={prompt!r})")
        method = "POST"
        target = urllib.parse.urljoin(target, form["action"])
        body = urllib.parse.urlencode(fields).encode()
    log("too many steps")
    return 1


def main() -> None:
    args = sys.argv[1:]
    foreground = False
    user_code = None
    while args and args[0].startswith("--"):
        if args[0] == "--foreground":
            foreground, args = True, args[1:]
        elif args[0] == "--user-code" and len(args) > 1:
            user_code, args = args[1], args[2:]
        else:
            log(f"unknown option {args[0]}")
            sys.exit(2)
    if not args:
        log("no URL given")
        sys.exit(2)
    url = args[-1]
    if not foreground:
        if os.fork() > 0:
            os._exit(0)  # the caller sees a browser that "opened" at once
        os.setsid()
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
    signal.signal(signal.SIGALRM, lambda *_: (log("deadline reached"), os._exit(3)))
    signal.alarm(DEADLINE)
    try:
        code = run(url, user_code)
    except Exception as e:  # noqa: BLE001 - anything goes into the log
        log(f"error: {type(e).__name__}: {e}")
        code = 1
    log(f"done, exit {code}")
    os._exit(code)


if __name__ == "__main__":
    main()
