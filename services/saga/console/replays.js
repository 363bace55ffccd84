// #/replays — the replay runs with progress, rate and ETA, and (admin only)
// Pause / Resume / Cancel, each after a confirmation in the page's dialog.
// Polls GET /v1/replays every 2 s; the table is redrawn only when it changed.

import { h, fill, num, text, time, badge, table, progress, duration, confirmDialog, sagaHref } from './dom.js';

const POLL_MS = 2000;
const ADMIN_ONLY = 'needs a key with the admin scope';

// Which control each state takes (the server answers 409 otherwise).
const ACTIONS = [
  ['pause', 'Pause', ['running']],
  ['resume', 'Resume', ['paused']],
  ['cancel', 'Cancel', ['running', 'paused']],
];

export function render(ctx) {
  const list = h('div', { testid: 'replays' }, h('p', { class: 'muted' }, 'loading…'));
  const note = h('p', { class: 'note', testid: 'replay-note' });
  ctx.main.append(h('div', { class: 'title' }, h('h1', {}, 'Replays'),
    ctx.admin ? null : h('span', { class: 'muted', testid: 'replays-read-only' }, 'read-only: controls need the admin scope')), note, list);

  let last = '';
  const refresh = async () => {
    const got = await ctx.api('/v1/replays');
    const runs = got.replays || [];
    const j = JSON.stringify(runs);
    if (j === last) return;
    last = j;
    fill(list, table(['replay', 'pipeline', 'stage', 'state', 'progress', 'published', 'rate', 'ETA', 'updated', ''],
      runs.map((r) => [
        h('a', { href: sagaHref(r.id), class: 'mono', testid: 'replay-id' }, String(r.id)),
        text(r.pipeline), text(r.stage),
        h('span', {}, badge(r.state, 'replay-state'), r.error ? h('div', { class: 'warn' }, text(r.error)) : null),
        progress(r.offsets_read, r.offsets_total, 'replay-progress'),
        num(r.published), r.rate === null || r.rate === undefined ? '—' : `${num(r.rate, 1)}/s`,
        duration(r.eta_s), when(r.updated),
        h('span', { class: 'actions' }, ACTIONS.map(([action, label, states]) => {
          const b = h('button', { type: 'button', testid: `replay-${action}`, disabled: !ctx.admin || !states.includes(r.state) }, label);
          if (!ctx.admin) b.title = ADMIN_ONLY;
          b.addEventListener('click', () => control(r, action, label));
          return b;
        }))]),
      { testid: 'replay-table', rowProps: (i) => ({ testid: 'replay-row', data: { id: String(runs[i].id), state: String(runs[i].state) } }), empty: 'No replay has run.' }));
  };

  const control = async (r, action, label) => {
    if (!(await confirmDialog(`${label} replay ${r.id} of ${r.pipeline}?`, label))) return;
    try {
      // The replay takes the control between batches: its state below follows.
      await ctx.api(`/v1/replays/${encodeURIComponent(r.id)}/${action}`, { method: 'POST' });
      fill(note, `${label} sent to replay ${r.id}.`);
    } catch (e) {
      fill(note, `${label} failed: ${e.code ? `${e.code}: ` : ''}${e.message}`);
    }
    last = '';
    await refresh().catch(ctx.error);
  };
  ctx.poll(refresh, POLL_MS);
}

/// An RFC 3339 string (or Unix ms) in the console's short form.
function when(v) {
  const ms = typeof v === 'number' ? v : Date.parse(v);
  return Number.isNaN(ms) ? text(v) : time(ms);
}

/// A button that starts a replay (POST /v1/replays with `body`) after a
/// confirmation; disabled without the admin scope. When the server cannot
/// start one, it says which command does.
export function replayButton(ctx, message, body, testid, label) {
  const out = h('span', { class: 'muted', testid: `${testid}-result` });
  const b = h('button', { type: 'button', testid, disabled: !ctx.admin }, label);
  if (!ctx.admin) b.title = ADMIN_ONLY;
  b.addEventListener('click', async () => {
    if (!(await confirmDialog(message, label))) return;
    try {
      const got = await ctx.api('/v1/replays', { method: 'POST', body });
      fill(out, 'started ', h('a', { href: sagaHref(got.id || got.saga_id), testid: `${testid}-saga` }, String(got.id || got.saga_id)),
        got.records !== undefined ? ` with ${num(got.records)} records` : '', ' · ', h('a', { href: '#/replays' }, 'replays'));
    } catch (e) {
      if (e.status === 405) {
        const args = ['starling replay', `--pipeline ${body.pipeline}`, `--stage ${body.stage || 'clean'}`];
        if (body.saga) args.push(`--saga ${body.saga}`);
        if (body.from) args.push(`--from ${body.from}`);
        if (body.to) args.push(`--to ${body.to}`);
        fill(out, 'this server cannot start replays; run ', h('code', {}, args.join(' ')));
      } else {
        fill(out, `failed: ${e.code ? `${e.code}: ` : ''}${e.message}`);
      }
    }
  });
  return h('span', {}, b, ' ', out);
}
