#!/usr/bin/env node
// Browser stand-in, used as $BROWSER: a real headless Chromium (Debian's, driven by the npm
// package playwright-core) logs in at oidc-provider's dev interactions like a person would.
//
// Usage: chromium_browser.mjs [--foreground] AUTHORIZATION_URL
//
// Opens the URL, types a login and password into the login form and clicks "Sign-in", clicks
// "Continue" on the consent form, waits until the page is the proxy's callback (the authorization
// URL's redirect_uri) and has loaded, then saves a full-page screenshot and the page text.
//
// It detaches at once (a new session; the caller's process exits 0), so a caller that waits for
// the browser command does not block its own callback server. Every step is appended to
// $INTEROP_BROWSER_LOG, ending with "done, exit N"; the authorization code is never logged.
//
// Environment:
//   INTEROP_CHROMIUM          Chromium executable (default /usr/bin/chromium)
//   INTEROP_SCREENSHOT        PNG to write; the page text goes beside it (.txt)  [required]
//   INTEROP_BROWSER_LOG       log file (default: stderr)
//   INTEROP_LOGIN             login to type (default "interop-alice")
//   INTEROP_BROWSER_DEADLINE  seconds for the login (default 60); closing Chromium then takes at
//                             most 15 s more
import { spawn } from 'node:child_process';
import { appendFileSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const LOG = process.env.INTEROP_BROWSER_LOG;
const LOGIN = process.env.INTEROP_LOGIN || 'interop-alice';
const CHROMIUM = process.env.INTEROP_CHROMIUM || '/usr/bin/chromium';
const SCREENSHOT = process.env.INTEROP_SCREENSHOT;
const DEADLINE = Number(process.env.INTEROP_BROWSER_DEADLINE || 60);
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox', // root in containers and CI; the pages are our own test servers
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

function log(msg) {
  const line = `${new Date().toTimeString().slice(0, 8)} [chromium-browser ${process.pid}] ${msg}\n`;
  if (LOG) appendFileSync(LOG, line);
  else process.stderr.write(line);
}

// The URL for the log: the authorization code is a secret, so its value is replaced.
function redact(url) {
  const u = new URL(url);
  if (u.searchParams.has('code')) u.searchParams.set('code', 'REDACTED');
  return u.href;
}

function firstLine(err) {
  return `${err?.name || 'Error'}: ${String(err?.message || err).split('\n')[0]}`;
}

// Processes, from /proc (Linux): playwright-core does not tell Chromium's pid (its logger sees
// API calls only), and Chromium's crash handlers outlive it briefly in sessions of their own.
function processes() {
  const found = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const [state, ppid, , sid] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const cmdline = readFileSync(`/proc/${entry}/cmdline`, 'utf8').replaceAll('\0', ' ');
      found.push({ pid: Number(entry), ppid: Number(ppid), sid: Number(sid), state, cmdline });
    } catch {
      // gone meanwhile
    }
  }
  return found;
}

// This Chromium's live processes: its session (Chromium leads one, every child inherits it) and
// the crashpad handlers, which leave it but name the profile in their arguments. Zombies are dead.
function chromiumProcesses(sid, profile) {
  return processes().filter((p) => p.state !== 'Z' && ((sid && p.sid === sid) || p.cmdline.includes(profile)));
}

// After the browser closed: waits up to 5 s for its stragglers to exit, then kills the rest.
async function reap(sid, profile) {
  const started = Date.now();
  while (chromiumProcesses(sid, profile).length && Date.now() - started < 5000) await sleep(100);
  const left = chromiumProcesses(sid, profile);
  for (const p of left) {
    try {
      process.kill(p.pid, 'SIGKILL');
    } catch {
      // exited meanwhile
    }
  }
  log(left.length
    ? `killed ${left.length} Chromium process(es) still running 5 s after closing: ${left.map((p) => p.pid).join(' ')}`
    : `all Chromium processes gone ${Date.now() - started} ms after closing`);
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// The login itself; returns the exit code. `state` gets the browser context and Chromium's pid as
// soon as Chromium runs, so the caller can close it whatever happens here.
async function login(url, profile, state) {
  const callback = new URL(new URL(url).searchParams.get('redirect_uri'));
  const isCallback = (u) => {
    const x = new URL(u);
    return x.origin === callback.origin && x.pathname === callback.pathname;
  };
  const { chromium } = await import('playwright-core');
  log(`launching ${CHROMIUM} (profile ${profile})`);
  state.context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
    // Chromium writes beside the profile too (~/.pki, caches): keep it all in the temp dir.
    env: { ...process.env, HOME: profile, XDG_CONFIG_HOME: profile, XDG_CACHE_HOME: profile },
    handleSIGINT: false, // our own handlers close the browser and still write "done"
    handleSIGTERM: false,
    handleSIGHUP: false,
  });
  // Chromium is this process's only child (playwright-core spawns it as a session leader).
  state.chromium = processes().find((p) => p.ppid === process.pid)?.pid;
  log(`chromium pid ${state.chromium}`);
  const page = state.context.pages()[0] ?? (await state.context.newPage());
  // Requests to the callback (a second one would be a second login attempt) and its answer.
  let callbackRequests = 0;
  let callbackStatus;
  page.on('request', (request) => {
    if (isCallback(request.url())) callbackRequests += 1;
  });
  page.on('framenavigated', (frame) => {
    if (frame !== page.mainFrame()) return;
    const u = new URL(frame.url());
    // Provider URLs are logged without their query (long, and nothing to learn from it).
    log(`  at ${isCallback(u.href) ? redact(u.href) : u.origin + u.pathname}`);
  });
  page.on('response', async (response) => {
    if (!isCallback(response.url())) return;
    callbackStatus = response.status();
    // localhost has two loopback addresses; which one Chromium used is worth knowing.
    const addr = await response.serverAddr().catch(() => null);
    log(`  callback answered HTTP ${response.status()} from ${addr ? `${addr.ipAddress} port ${addr.port}` : 'an unknown address'}`);
  });

  const auth = new URL(url);
  log(`step 1: open the authorization URL ${auth.origin}${auth.pathname}?...`);
  await page.goto(url, { waitUntil: 'load' });
  log(`step 2: login form: type ${JSON.stringify(LOGIN)} and a password, click "Sign-in"`);
  await page.locator('input[name="login"]').pressSequentially(LOGIN);
  await page.locator('input[name="password"]').pressSequentially('any-password');
  await page.getByRole('button', { name: 'Sign-in' }).click();
  log('step 3: consent form: click "Continue"');
  await page.getByRole('button', { name: 'Continue' }).click();
  log(`step 4: wait for the callback ${callback.href}`);
  await page.waitForURL((u) => isCallback(u.href), { waitUntil: 'load' });
  await page.locator('h1').waitFor();
  const title = await page.title();
  const text = await page.locator('body').innerText();
  log(`landed on ${redact(page.url())} (title ${JSON.stringify(title)}, callback requests: ${callbackRequests})`);
  log(`  page text: ${text.split(/\s+/).join(' ').slice(0, 300)}`);
  await page.screenshot({ path: SCREENSHOT, fullPage: true });
  writeFileSync(SCREENSHOT.replace(/\.png$/, '') + '.txt', `${text}\n`);
  log(`step 5: saved the screenshot ${SCREENSHOT} and the page text beside it`);
  return callbackRequests === 1 && callbackStatus === 200 ? 0 : 1;
}

async function worker(url) {
  if (!SCREENSHOT) {
    log('INTEROP_SCREENSHOT is not set');
    return 2;
  }
  const profile = mkdtempSync(join(tmpdir(), 'interop-chromium-'));
  const state = { context: null, chromium: null };
  // The deadline and signals end the login early; the browser is closed either way.
  let stop;
  const stopped = new Promise((resolve) => (stop = resolve));
  const timer = setTimeout(() => stop(`deadline of ${DEADLINE}s reached`), DEADLINE * 1000);
  for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP']) process.on(sig, () => stop(`got ${sig}`));
  let code;
  try {
    code = await Promise.race([login(url, profile, state), stopped.then((why) => (log(why), 3))]);
  } catch (err) {
    log(`error: ${firstLine(err)}`);
    code = 1;
  }
  if (state.context) {
    log('closing the browser');
    await Promise.race([state.context.close().catch((err) => log(`close: ${firstLine(err)}`)), sleep(10_000)]);
  }
  // Also when the launch itself was cut short: that Chromium names the profile in its arguments.
  await reap(state.chromium, profile);
  rmSync(profile, { recursive: true, force: true, maxRetries: 5 });
  clearTimeout(timer);
  return code;
}

const args = process.argv.slice(2);
const foreground = args[0] === '--foreground';
const url = args.at(-1);
if (!url || url === '--foreground') {
  log('no URL given');
  process.exit(2);
}
if (!foreground) {
  // Detach: a new session, no stdio shared with the caller, then return to the caller at once.
  const child = spawn(process.execPath, [fileURLToPath(import.meta.url), '--foreground', url], {
    detached: true,
    stdio: 'ignore',
  });
  child.unref();
  log(`detached worker pid ${child.pid}`);
  process.exit(0);
}
const code = await worker(url).catch((err) => (log(`error: ${firstLine(err)}`), 1));
log(`done, exit ${code}`);
process.exit(code);
