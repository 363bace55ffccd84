// Browser tests of the Starling Console (ctest console.Browser):
//
//   node tests/console/console_test.mjs BIN_DIR SOURCE_DIR
//
// Starts a whole stack (`starling up`: broker, ingest, clean, load, saga) in a
// temporary folder with an API keys file of two keys (read; read + admin),
// posts a simulated fleet, and drives Debian's /usr/bin/chromium through
// playwright-core (pinned by package-lock.json; no browser is downloaded)
// over every page of the console. Screenshots go to SOURCE_DIR/docs/console/
// with STARLING_CONSOLE_SHOTS=1.
//
// No assertion is timed: every wait polls for a condition with a bound, and
// only its failure to arrive fails. Everything started here is stopped on
// exit: `starling up` and each command run in their own process groups, and
// die with this process (PR_SET_PDEATHSIG through a python3 exec shim).
import { spawn, spawnSync, execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const [binArg, srcArg] = process.argv.slice(2);
if (!binArg || !srcArg) {
  console.error('usage: node console_test.mjs BIN_DIR SOURCE_DIR');
  process.exit(2);
}
const BIN = path.resolve(binArg);
const SRC = path.resolve(srcArg);
const CHROMIUM = process.env.STARLING_CHROMIUM || '/usr/bin/chromium';
// Screenshots: into docs/console/ when STARLING_CONSOLE_SHOTS=1 (how the
// committed ones are made), else beside the test's temporary files, so a
// plain ctest run leaves the source tree alone.
const SHOTS = process.env.STARLING_CONSOLE_SHOTS === '1'
  ? path.join(SRC, 'docs/console')
  : fs.mkdtempSync(path.join(os.tmpdir(), 'starling-console-shots-'));
const PIPELINE = 'ecowheels';
const XSS = '<img src=x onerror=alert(1)>';
const CSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
  + "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'";

let chromium;
try {
  ({ chromium } = await import(path.join(here, 'node_modules/playwright-core/index.mjs')));
} catch (e) {
  console.error(`playwright-core is not installed in ${here}: run tools/setup (npm ci there)\n${e.message}`);
  process.exit(1);
}
if (!fs.existsSync(CHROMIUM)) {
  console.error(`${CHROMIUM} is missing: run tools/setup (Debian's chromium package)`);
  process.exit(1);
}

// --- checks ---------------------------------------------------------------
let passed = 0;
const failures = [];
let keep = process.env.STARLING_KEEP_TEST_DIRS === '1';

function log(msg) {
  process.stdout.write(`${msg}\n`);
}

function check(cond, what) {
  log(`${cond ? 'ok    ' : 'FAIL  '}${what}`);
  if (cond) passed += 1;
  else {
    failures.push(what);
    keep = true;
  }
  return cond;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/// An error that ends a wait at once (waiting longer cannot help).
class Fatal extends Error {}

/// Polls fn until it returns a truthy value (returned) or `seconds` pass
/// (throws, naming what it waited for and the last value or error seen).
async function until(what, fn, seconds = 60) {
  const deadline = Date.now() + seconds * 1000;
  let last;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
      last = v;
    } catch (e) {
      if (e instanceof Fatal) throw e;
      last = e.message;
    }
    if (Date.now() > deadline) throw new Error(`waited ${seconds} s for ${what}; last: ${JSON.stringify(last)}`);
    await sleep(250);
  }
}

// --- processes --------------------------------------------------------------
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'starling-console-'));
const dataDir = path.join(tmp, 'stack');
const live = new Set(); // child processes, each the leader of its own group

// Children get SIGTERM when this process dies, even by SIGKILL (ctest's
// timeout): python3 sets PR_SET_PDEATHSIG and execs the command.
const SHIM = 'import ctypes,signal,os,sys; ctypes.CDLL(None).prctl(1, signal.SIGTERM); os.execv(sys.argv[1], sys.argv[1:])';

function start(name, argv, env = childEnv) {
  const out = fs.openSync(path.join(tmp, `${name}.out`), 'a');
  const p = spawn('python3', ['-c', SHIM, ...argv], { cwd: tmp, env, detached: true, stdio: ['ignore', out, out] });
  fs.closeSync(out);
  p.name = name;
  p.exited = new Promise((resolve) => p.on('exit', (code, sig) => { live.delete(p); resolve(code ?? sig); }));
  live.add(p);
  return p;
}

function signalGroup(p, sig) {
  try {
    process.kill(-p.pid, sig);
  } catch {
    // already gone
  }
}

async function stop(p) {
  if (!live.has(p)) return;
  signalGroup(p, 'SIGCONT'); // a stopped loader would never see the SIGTERM
  signalGroup(p, 'SIGTERM');
  const t = setTimeout(() => signalGroup(p, 'SIGKILL'), 30_000);
  await p.exited;
  clearTimeout(t);
  signalGroup(p, 'SIGKILL'); // a child that outlived its parent is in the group
}

async function stopAll() {
  for (const p of [...live].reverse()) await stop(p);
}

function tail(file, n = 3000) {
  try {
    const t = fs.readFileSync(file, 'utf8');
    return t.slice(-n);
  } catch {
    return '';
  }
}

function logs() {
  const out = [];
  for (const d of [tmp, path.join(dataDir, 'logs')]) {
    if (!fs.existsSync(d)) continue;
    for (const f of fs.readdirSync(d).sort()) {
      if (/\.(out|log)$/.test(f)) out.push(`--- ${path.join(d, f)} (tail)\n${tail(path.join(d, f))}`);
    }
  }
  return out.join('\n');
}

for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, async () => {
    await stopAll();
    process.exit(128 + (sig === 'SIGINT' ? 2 : 15));
  });
}
process.on('exit', () => {
  for (const p of live) {
    signalGroup(p, 'SIGCONT');
    signalGroup(p, 'SIGKILL');
  }
});

// --- keys, pipeline, environment --------------------------------------------
const readKey = randomBytes(24).toString('hex');
const adminKey = randomBytes(24).toString('hex');
const sha = (k) => createHash('sha256').update(k).digest('hex');
const keysFile = path.join(tmp, 'saga-keys.yaml');
fs.writeFileSync(keysFile, `keys:
  - name: console-reader
    sha256: ${sha(readKey)}
    pipelines: ["*"]
    scopes: [read]
  - name: console-admin
    sha256: ${sha(adminKey)}
    pipelines: ["*"]
    scopes: [read, admin]
`);

// ecowheels with a 2 s stall_after, so a stopped loader stalls sagas soon.
const pipelineFile = path.join(tmp, `${PIPELINE}.yaml`);
const yaml = fs.readFileSync(path.join(SRC, 'pipelines/ecowheels.yaml'), 'utf8');
const shortStall = yaml.replace(/^(\s*)stall_after:\s*\S+/m, '$1stall_after: 2s');
if (shortStall === yaml) throw new Error('pipelines/ecowheels.yaml has no saga stall_after to shorten');
fs.writeFileSync(pipelineFile, shortStall);

const childEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('STARLING_')));
childEnv.STARLING_SAGA_API_KEYS = keysFile;

const starling = path.join(BIN, 'starling');
let ingestUrl;
let sagaUrl;
let kafka;

/// GET/POST the saga API with a key; resolves to {status, body}.
async function sagaApi(p, { key = adminKey, method = 'GET' } = {}) {
  const headers = key ? { Authorization: `Bearer ${key}` } : {};
  const r = await fetch(sagaUrl + p, { method, headers });
  const text = await r.text();
  let body = null;
  try {
    body = JSON.parse(text);
  } catch {
    body = text;
  }
  return { status: r.status, body, headers: r.headers };
}

async function startStack() {
  const check = spawnSync(starling, ['check', pipelineFile], { encoding: 'utf8' });
  if (check.status !== 0) throw new Error(`starling check ${pipelineFile}: ${check.stdout}${check.stderr}`);
  const up = start('starling-up', [starling, 'up', '--pipeline', pipelineFile, '--ingest-port', '0', '--saga-port', '0',
    '--data-dir', dataDir]);
  const m = await until('starling up to print its addresses', () => {
    if (!live.has(up)) throw new Error(`starling up exited:\n${logs()}`);
    return /kafka (\S+)\s+ingest (\S+)\s+saga API (\S+)/.exec(tail(path.join(tmp, 'starling-up.out'), 100_000));
  }, 90);
  [, kafka, ingestUrl, sagaUrl] = m;
  for (const base of [ingestUrl, sagaUrl]) {
    await until(`${base}/readyz`, async () => (await fetch(`${base}/readyz`)).status === 200, 60);
  }
  log(`stack up in ${tmp}: kafka ${kafka}, ingest ${ingestUrl}, saga ${sagaUrl}`);
}

async function run(name, argv, seconds = 120) {
  const p = start(name, argv);
  const code = await Promise.race([p.exited, sleep(seconds * 1000).then(() => 'timeout')]);
  if (code !== 0) {
    await stop(p);
    throw new Error(`${name} ended with ${code}:\n${tail(path.join(tmp, `${name}.out`))}`);
  }
}

/// Posts records to ingest as a device would (one request: one saga).
async function post(records) {
  const r = await fetch(`${ingestUrl}/v1/pipelines/${PIPELINE}/events`, {
    method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(records),
  });
  const body = await r.json();
  if (r.status !== 202) throw new Error(`ingest answered ${r.status}: ${JSON.stringify(body)}`);
  return body;
}

function loaderPid() {
  // starling up starts it with --data-dir <data-dir>/load.<pipeline>.
  const out = execFileSync('pgrep', ['-f', `starling-load .*${dataDir}/load\\.${PIPELINE}`], { encoding: 'utf8' });
  const pids = out.split('\n').filter(Boolean).map(Number);
  if (pids.length !== 1) throw new Error(`expected one starling-load, found ${pids.length}`);
  return pids[0];
}

// --- the browser -------------------------------------------------------------
const browsers = [];
async function openBrowser() {
  const udd = fs.mkdtempSync(path.join(tmp, 'chromium-'));
  const context = await chromium.launchPersistentContext(udd, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1200, height: 800 },
    colorScheme: 'dark',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  browsers.push(context);
  const page = context.pages()[0] || (await context.newPage());
  page.setDefaultTimeout(30_000);
  const seen = { dialogs: [], cspViolations: [], errors: [], offsite: [] };
  page.on('dialog', (d) => {
    seen.dialogs.push(d.message());
    d.dismiss().catch(() => {});
  });
  page.on('console', (m) => {
    if (/Content Security Policy/i.test(m.text())) seen.cspViolations.push(m.text());
  });
  page.on('pageerror', (e) => seen.errors.push(e.message));
  page.on('request', (r) => {
    if (!r.url().startsWith(sagaUrl)) seen.offsite.push(r.url());
  });
  return { page, seen };
}

async function signIn(page, key) {
  await page.goto(`${sagaUrl}/console/`);
  await page.getByTestId('login-key').fill(key);
  await page.getByTestId('login-submit').click();
  await page.getByTestId('whoami-name').waitFor({ state: 'visible' });
}

async function go(page, hash) {
  await page.goto(`${sagaUrl}/console/${hash}`);
}

async function shot(page, name) {
  fs.mkdirSync(SHOTS, { recursive: true });
  await page.screenshot({ path: path.join(SHOTS, name) });
  log(`      screenshot docs/console/${name}`);
}

const text = async (loc) => ((await loc.textContent()) || '').trim();

/// Throws with the page's error banner when it shows one (an API error), so
/// a wait for content the API refused ends at once, saying why.
async function noPageError(page) {
  const banner = page.getByTestId('error');
  if (await banner.isVisible()) throw new Fatal(`the page shows an error: ${await text(banner)}`);
}

/// Runs one part of the test; its failure is a FAIL line, and the next part runs.
async function section(name, fn) {
  log(`--    ${name}`);
  try {
    await fn();
  } catch (e) {
    check(false, `${name}: ${e.message.split('\n').slice(0, 6).join('\n      ')}`);
  }
}

// --- the tests ---------------------------------------------------------------
async function main() {
  await startStack();

  // The page and its API: CSP on /console/, keys on /v1/.
  const page0 = await fetch(`${sagaUrl}/console/`);
  check(page0.status === 200 && page0.headers.get('content-security-policy') === CSP,
    `GET /console/ is 200 with the strict CSP (got ${page0.status}, ${page0.headers.get('content-security-policy')})`);
  const vendor = await fetch(`${sagaUrl}/console/vendor/uPlot.iife.min.js`);
  check(vendor.status === 200, 'uPlot is served from the binary at /console/vendor/');
  check((await sagaApi('/v1/whoami', { key: '' })).status === 401, 'GET /v1/whoami without a key is 401');
  const whoRead = await sagaApi('/v1/whoami', { key: readKey });
  check(whoRead.status === 200 && whoRead.body.auth === true && !whoRead.body.scopes.includes('admin'),
    `the read key is read-only (${JSON.stringify(whoRead.body)})`);

  // A fleet posting while the overview is open: 3000 events at 150/s.
  const fleet = start('simulate', [starling, 'simulate', '--url', ingestUrl, '--pipeline', PIPELINE, '--events', '3000',
    '--rate', '150', '--bikes', '20', '--batch', '20', '--fault-rate', '0.1', '--seed', '7']);

  const admin = await openBrowser();
  const page = admin.page;
  await signIn(page, adminKey);
  check((await text(page.getByTestId('whoami-name'))).includes('console-admin'), 'the admin key signs in');

  await section('the overview: numbers move', async () => {
    await go(page, '#/');
    const card = page.locator(`[data-testid=pipeline-card][data-pipeline=${PIPELINE}]`);
    await card.waitFor();
    const reading = async () => {
      const parts = [];
      for (const id of ['rate-ingested', 'rate-cleaned', 'rate-loaded', 'state-count-COMPLETED', 'state-count-IN_FLIGHT', 'latency-p50']) {
        parts.push(await text(card.getByTestId(id)));
      }
      return parts.join(' | ');
    };
    await page.evaluate(() => { window.consoleTestMarker = 1; });
    const first = await until('the overview to show ingested events', async () => {
      const r = await reading();
      return (await text(card.getByTestId('rate-ingested'))) !== '0.0' && r.includes('|') && r;
    }, 90);
    const second = await until('a second, different reading of the overview (polling, no reload)', async () => {
      const r = await reading();
      return r !== first && r;
    }, 60);
    check(first !== second, `overview numbers move: [${first}] then [${second}]`);
    check(await page.evaluate(() => window.consoleTestMarker === 1),
      'the overview updated without reloading the page');
    check((await card.locator('canvas').count()) >= 4, 'uPlot draws a sparkline per stage');
    await shot(page, 'overview.png');
    const fleetCode = await Promise.race([fleet.exited, sleep(120_000).then(() => 'timeout')]);
    check(fleetCode === 0, `starling simulate posted its 3000 events (exit ${fleetCode})`);
  });

  // A good event, a faulty one, and one with a hostile device id: one saga.
  const nonce = randomBytes(4).toString('hex');
  const now = new Date().toISOString();
  const good = { event_id: `console-good-${nonce}`, device_id: 'bike-4242', ride_id: 'r1', event_time: now, lat: 38.7223, lon: -9.1393,
    speed_kmh: 18.26, battery_pct: 77, temperature_c: 21.5, odometer_km: 12.5, status: 'RIDING' };
  const bad = { ...good, event_id: `console-bad-${nonce}`, speed_kmh: 95 };
  const hostile = { ...good, event_id: `console-xss-${nonce}`, device_id: XSS };
  const posted = await post([good, bad, hostile]);
  check(posted.accepted === 3, `ingest accepted the good, the faulty and the hostile event (saga ${posted.saga_id})`);
  await until(`saga ${posted.saga_id} to complete`, async () => (await sagaApi(`/v1/sagas/${posted.saga_id}`)).body.state === 'COMPLETED', 120);

  // Through the search form, from another page (so no earlier result is on screen).
  const follow = async (by, value) => {
    await go(page, '#/');
    await page.getByTestId('nav-journey').click();
    await page.getByTestId('journey-form-pipeline').selectOption(PIPELINE);
    await page.getByTestId('journey-form-by').selectOption(by);
    await page.getByTestId('journey-form-q').fill(value);
    await page.getByTestId('journey-form-submit').click();
    const field = by === 'event_id' ? 'journey-event-id' : 'journey-device';
    return until(`the journey of ${by} ${value}`, async () => {
      await noPageError(page);
      const ev = page.getByTestId('journey-event').first();
      return (await page.getByTestId('journey-event').count()) > 0 && (await text(ev.getByTestId(field))) === value && ev;
    }, 90);
  };

  await section('a good event\'s journey ends in its row', async () => {
    const ev = await follow('event_id', good.event_id);
    check((await text(ev.getByTestId('journey-status'))) === 'loaded', 'the good event\'s journey ends loaded');
    check((await text(ev.getByTestId('journey-table'))) === 'ride_telemetry', 'it names the table, ride_telemetry');
    const row = await text(ev.getByTestId('journey-row'));
    check(row.includes(good.event_id) && row.includes('bike-4242'), `it shows the row as stored (${row.slice(0, 120)}…)`);
    const changes = await text(ev.getByTestId('journey-changes'));
    check(/speed_kmh\s*round\(1\)\s*18\.26\s*→\s*18\.3/.test(changes), `it shows clean's Change rule by rule: speed_kmh round(1) 18.26 → 18.3 (${changes.slice(0, 160)})`);
    await shot(page, 'journey-loaded.png');
  });

  await section('a faulty event\'s journey ends in its reject reasons', async () => {
    const ev = await follow('event_id', bad.event_id);
    check((await text(ev.getByTestId('journey-status'))) === 'rejected', 'the faulty event\'s journey ends rejected');
    const reason = ev.getByTestId('journey-reason').first();
    const reasonText = await text(reason);
    check(/range\s*speed_kmh\s*95/.test(reasonText), `its reason names rule range, field speed_kmh and value 95 (${reasonText})`);
    check((await reason.locator('td').nth(3).textContent()).trim().length > 0, 'and what was expected');
    await shot(page, 'journey-rejected.png');
  });

  await section('XSS: a hostile device id stays text (journey)', async () => {
    const ev = await follow('device_id', XSS);
    check((await text(ev.getByTestId('journey-device'))) === XSS, 'the hostile device id shows literally in the journey');
    check((await page.locator('img').count()) === 0, 'no <img> element was created from it (journey)');
  });

  await section('XSS: a hostile device id stays text (rejects)', async () => {
    await go(page, `#/rejects?pipeline=${PIPELINE}&device_id=${encodeURIComponent(XSS)}`);
    const device = await until('the hostile device\'s reject on the rejects page', async () => {
      await noPageError(page);
      const d = page.getByTestId('example-device');
      return (await d.count()) > 0 && d.first();
    }, 90);
    check((await text(device)) === XSS, 'the hostile device id shows literally on the rejects page');
    check((await page.locator('img').count()) === 0, 'no <img> element was created from it (rejects)');
    check(await page.evaluate(() => document.querySelectorAll('[onerror]').length === 0), 'no element carries an onerror attribute');
  });

  await section('rejects are grouped by rule and field', async () => {
    await go(page, `#/rejects?pipeline=${PIPELINE}`);
    const group = page.locator('[data-testid=rejects-group][data-rule=range][data-field=speed_kmh]');
    await until('the rejects page to group range on speed_kmh', async () => {
      await noPageError(page);
      return (await group.count()) > 0;
    }, 90);
    check(Number((await text(group.first().getByTestId('group-count'))).replace(/,/g, '')) >= 1,
      'rejects are grouped by rule and field with counts');
    check((await group.first().getByTestId('rejects-example').count()) >= 1, 'each group has examples');
    await shot(page, 'rejects.png');
    // Re-drive the group through clean: a REPLAY saga of exactly those records.
    const count = Number((await text(group.first().getByTestId('group-count'))).replace(/,/g, ''));
    await group.first().getByTestId('group-redrive').click();
    await page.getByTestId('confirm-dialog').waitFor({ state: 'visible' });
    await page.getByTestId('confirm-ok').click();
    const started = await until('the re-drive to start', async () => {
      await noPageError(page);
      const t = await text(group.first().getByTestId('group-redrive-result'));
      return /started replay-/.test(t) && t;
    }, 60);
    const m = /with ([\d,]+) records/.exec(started);
    check(m && Number(m[1].replace(/,/g, '')) >= 1 && Number(m[1].replace(/,/g, '')) <= count,
      `the re-drive replays the group's records through clean (${started}; the group counts ${count})`);
  });

  await section('a stopped loader: sagas STALL, the list filters them, a saga page shows one', async () => {
    const loader = loaderPid();
    process.kill(loader, 'SIGSTOP');
    let stalledIds;
    try {
      await post([{ ...good, event_id: `console-stall-${nonce}`, event_time: new Date().toISOString() }]);
      await run('simulate-stall', [starling, 'simulate', '--url', ingestUrl, '--pipeline', PIPELINE, '--events', '200',
        '--rate', '0', '--bikes', '10', '--batch', '20', '--seed', '8']);
      stalledIds = await until('the saga API to list STALLED sagas while the loader is stopped', async () => {
        const r = await sagaApi(`/v1/sagas?pipeline=${PIPELINE}&state=STALLED&limit=100`);
        return r.body.sagas.length > 0 && r.body.sagas.map((s) => s.saga_id);
      }, 120);

      await go(page, '#/sagas');
      await page.getByTestId('saga-filter-pipeline').selectOption(PIPELINE);
      await page.getByTestId('saga-filter-state').selectOption('STALLED');
      await page.getByTestId('saga-filter-submit').click();
      const states = await until('only STALLED rows in the saga list', async () => {
        const st = await page.getByTestId('saga-row').evaluateAll((rows) => rows.map((r) => r.dataset.state));
        return page.url().includes('state=STALLED') && st.length > 0 && st.every((x) => x === 'STALLED') && st;
      }, 60);
      check(true, `filtered to STALLED, the list shows ${states.length} STALLED sagas`);
      await shot(page, 'sagas.png');

      // --- a saga page ---------------------------------------------------------
      const link = page.getByTestId('saga-link').first();
      const sagaId = await text(link);
      await link.click();
      await page.getByTestId('saga-id').waitFor();
      check((await text(page.getByTestId('saga-id'))) === sagaId, `the saga link opens #/saga/${sagaId}`);
      check((await text(page.getByTestId('saga-state'))) === 'STALLED', 'its state is STALLED');
      const timeline = await text(page.getByTestId('saga-timeline'));
      check(timeline.includes('STALLED'), 'its timeline shows the move to STALLED');
      check((await text(page.getByTestId('saga-explanation'))).length > 0, 'it explains the state');
      check((await text(page.getByTestId('saga-counts'))).includes('in flight'), 'it shows per-stage counts');
      const events = await until('the saga\'s events and their positions', async () => {
        const t = await text(page.getByTestId('saga-events'));
        return !t.includes('reading the topics') && t;
      }, 60);
      await shot(page, 'saga.png');
      check((await page.getByTestId('event-row').count()) > 0, `its events are listed with topic, partition and offset (${events.slice(0, 100)}…)`);
    } finally {
      process.kill(loader, 'SIGCONT');
    }
    await until('the stalled sagas to complete once the loader runs again', async () => {
      for (const id of stalledIds || []) {
        if ((await sagaApi(`/v1/sagas/${id}`)).body.state !== 'COMPLETED') return false;
      }
      return true;
    }, 120);
    check(true, 'the STALLED sagas completed after SIGCONT (an alert, not a verdict)');
  });

  let reader = null;
  await section('a replay: pause and resume through the dialogs; a read key cannot', async () => {
    const replay = start('replay', [starling, 'replay', '--pipeline', pipelineFile, '--kafka', kafka, '--from', 'beginning',
      '--rate', '20', '--state-dir', path.join(dataDir, 'replays')]);
    await go(page, '#/replays');
    const running = page.locator('[data-testid=replay-row][data-state=running]');
    await until('a running replay on the replays page', async () => (await running.count()) > 0, 90);
    const replayId = await running.first().getAttribute('data-id');
    const replayRow = page.locator(`[data-testid=replay-row][data-id="${replayId}"]`);
    check((await replayRow.getByTestId('replay-progress').count()) === 1, `replay ${replayId} has a progress bar`);

    await replayRow.getByTestId('replay-pause').click();
    await page.getByTestId('confirm-dialog').waitFor({ state: 'visible' });
    check((await text(page.getByTestId('confirm-message'))).includes(replayId), 'Pause asks for a confirmation in the page\'s dialog');
    await page.getByTestId('confirm-ok').click();
    await until('the replay to be paused', async () => (await replayRow.getAttribute('data-state')) === 'paused', 60);
    check(true, 'confirmed, the replay is paused');
    await shot(page, 'replays.png');

    // A read key sees the controls, disabled; the API refuses its POST.
    reader = await openBrowser();
    await signIn(reader.page, readKey);
    await go(reader.page, '#/replays');
    const readerRow = reader.page.locator(`[data-testid=replay-row][data-id="${replayId}"]`);
    await readerRow.waitFor();
    const disabled = [];
    for (const a of ['pause', 'resume', 'cancel']) disabled.push(await readerRow.getByTestId(`replay-${a}`).isDisabled());
    check(disabled.every(Boolean), `a read key's Pause, Resume and Cancel are disabled (${disabled})`);
    const forbidden = await sagaApi(`/v1/replays/${encodeURIComponent(replayId)}/resume`, { key: readKey, method: 'POST' });
    check(forbidden.status === 403 && forbidden.body?.error?.code === 'admin_scope_required',
      `POST .../resume with the read key is 403 admin_scope_required (got ${forbidden.status} ${JSON.stringify(forbidden.body)})`);
    await go(reader.page, `#/saga/${encodeURIComponent(posted.saga_id)}`);
    await reader.page.getByTestId('saga-replay').waitFor();
    check(await reader.page.getByTestId('saga-replay').isDisabled(), 'a read key\'s "Replay this saga" is disabled');
    check(reader.seen.dialogs.length === 0 && reader.seen.errors.length === 0, 'the read-only session saw no dialog and no script error');

    // Resume, as admin, through the dialog; Cancel through the API ends it.
    await replayRow.getByTestId('replay-resume').click();
    await page.getByTestId('confirm-dialog').waitFor({ state: 'visible' });
    await page.getByTestId('confirm-ok').click();
    await until('the replay to run again', async () => (await replayRow.getAttribute('data-state')) === 'running', 60);
    check(true, 'confirmed, the replay runs again');
    const cancelled = await sagaApi(`/v1/replays/${encodeURIComponent(replayId)}/cancel`, { method: 'POST' });
    check(cancelled.status === 200, `the admin key cancels the replay through the API (${cancelled.status})`);
    await Promise.race([replay.exited, sleep(60_000)]);
    await stop(replay);
  });

  // The whole session: no dialog ever fired, nothing broke the CSP, nothing left the machine.
  check(admin.seen.dialogs.length === 0, `no dialog fired (${admin.seen.dialogs})`);
  check(admin.seen.cspViolations.length === 0, `no CSP violation (${admin.seen.cspViolations.slice(0, 3)})`);
  check(admin.seen.errors.length === 0, `no script error (${admin.seen.errors.slice(0, 3)})`);
  const offsite = [...admin.seen.offsite, ...(reader ? reader.seen.offsite : [])].filter((u) => !u.startsWith('data:'));
  check(offsite.length === 0, `every request went to the saga service (${offsite.slice(0, 3)})`);
}

let crashed = null;
try {
  await main();
} catch (e) {
  crashed = e;
  check(false, `the test ran to its end: ${e.stack || e}`);
}
for (const b of browsers) await b.close().catch(() => {});
if (failures.length) log(logs());
await stopAll();
if (keep) log(`kept ${tmp}`);
else fs.rmSync(tmp, { recursive: true, force: true });
log(`${passed} passed, ${failures.length} failed`);
process.exit(failures.length || crashed ? 1 : 0);
