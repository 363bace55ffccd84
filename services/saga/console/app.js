// The Starling Console: a single page with hash routes, no framework.
// app.js signs in (GET /v1/whoami decides), routes, and gives each view a
// context: where to draw, the API, polling that stops when the view goes.

import { api, ApiError, key } from './api.js';
import { h, fill } from './dom.js';
import * as overview from './overview.js';
import * as sagas from './sagas.js';
import * as saga from './saga.js';
import * as journey from './journey.js';
import * as rejects from './rejects.js';
import * as replays from './replays.js';

const routes = [
  [/^\/$/, overview, 'overview'],
  [/^\/sagas$/, sagas, 'sagas'],
  [/^\/saga\/(.+)$/, saga, 'sagas'],
  [/^\/journey$/, journey, 'journey'],
  [/^\/rejects$/, rejects, 'rejects'],
  [/^\/replays$/, replays, 'replays'],
];

const $ = (id) => document.getElementById(id);
let who = null; // the whoami answer
let current = null; // the live view's context
let pipelineNames = null;

function parseHash() {
  const raw = location.hash.replace(/^#/, '') || '/';
  const q = raw.indexOf('?');
  const path = q < 0 ? raw : raw.slice(0, q);
  return { path: path || '/', params: new URLSearchParams(q < 0 ? '' : raw.slice(q + 1)) };
}

function showError(e) {
  if (e instanceof ApiError && e.status === 401) {
    signOut(e.code === 'invalid_api_key' ? 'That key was not accepted.' : 'This console needs an API key.');
    return;
  }
  fill($('error'), e instanceof ApiError && e.code ? `${e.code}: ${e.message}` : String(e.message || e));
  $('error').hidden = false;
}

function clearError() {
  $('error').hidden = true;
}

/// The context a view draws with. Everything asynchronous checks alive()
/// so an answer that arrives after the operator moved on draws nothing.
function makeContext(params, match) {
  const cleanups = [];
  const ctx = {
    main: $('view'),
    params,
    match,
    who,
    admin: who.scopes.includes('admin'),
    alive: () => current === ctx,
    api: async (path, opts) => {
      const r = await api(path, opts);
      if (current !== ctx) throw new Stale();
      return r;
    },
    error: showError,
    clearError,
    onCleanup: (fn) => cleanups.push(fn),
    /// Calls fn now and then every `ms` after each call finishes, while
    /// the view lives. Errors are shown and polling goes on.
    poll: (fn, ms) => {
      let timer = null;
      const tick = async () => {
        try {
          await fn();
          clearError();
        } catch (e) {
          if (!(e instanceof Stale)) showError(e);
        }
        if (ctx.alive()) timer = setTimeout(tick, ms);
      };
      cleanups.push(() => clearTimeout(timer));
      tick();
    },
    /// The pipelines' names (from the overview), asked once per sign-in.
    pipelines: async () => {
      if (!pipelineNames) {
        try {
          pipelineNames = (await api('/v1/overview')).pipelines.map((p) => p.name);
        } catch {
          return [];
        }
      }
      return pipelineNames;
    },
    dispose: () => cleanups.forEach((fn) => fn()),
  };
  return ctx;
}

class Stale extends Error {}

async function route() {
  if (!who) return;
  if (current) current.dispose();
  current = null;
  clearError();
  const { path, params } = parseHash();
  let found = null;
  let m = null;
  for (const r of routes) {
    m = r[0].exec(path);
    if (m) {
      found = r;
      break;
    }
  }
  for (const a of document.querySelectorAll('nav a')) a.classList.toggle('active', found && a.dataset.route === found[2]);
  fill($('view'));
  if (!found) {
    $('view').append(h('h1', {}, 'Not found'), h('p', {}, 'No page at ', h('code', {}, path), '. ', h('a', { href: '#/' }, 'Overview')));
    return;
  }
  const ctx = makeContext(params, m);
  current = ctx;
  try {
    await found[1].render(ctx);
  } catch (e) {
    if (!(e instanceof Stale)) showError(e);
  }
}

function signOut(message) {
  key.clear();
  who = null;
  pipelineNames = null;
  if (current) current.dispose();
  current = null;
  fill($('view'));
  $('app-nav').hidden = true;
  $('whoami').hidden = true;
  $('login').hidden = false;
  fill($('login-message'), message || '');
  $('login-key').value = '';
  $('login-key').focus();
}

async function start() {
  clearError();
  try {
    who = await api('/v1/whoami');
  } catch (e) {
    who = null;
    if (e instanceof ApiError && e.status === 401) {
      signOut(key.get() ? 'That key was not accepted.' : '');
      return;
    }
    showError(e);
    return;
  }
  if (!Array.isArray(who.scopes)) who.scopes = [];
  $('login').hidden = true;
  $('app-nav').hidden = false;
  const w = $('whoami');
  w.hidden = false;
  fill($('whoami-name'), who.auth ? `${who.name || 'key'} · ${who.scopes.join(', ')}` : 'no keys file: open access (loopback only)');
  $('sign-out').hidden = !who.auth;
  route();
}

$('login-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const k = $('login-key').value.trim();
  if (!k) return;
  key.set(k);
  start();
});
$('sign-out').addEventListener('click', () => signOut('Signed out.'));
window.addEventListener('hashchange', route);
start();
