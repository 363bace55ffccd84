// #/journey?pipeline=&event_id= (or &device_id=) — where one event went:
// ingested (time, saga, raw offset) → cleaned (each Change, rule by rule,
// from → to) → loaded (the table and the row) or rejected (rule, field,
// value, expected), or the stage it waits for.

import { h, fill, num, text, hash, badge, table, facts, filterForm, sagaHref, sinceParam, pipelineOptions } from './dom.js';

export async function render(ctx) {
  const p = Object.fromEntries(ctx.params);
  const by = p.device_id !== undefined && p.event_id === undefined ? 'device_id' : 'event_id';
  const pipelines = await ctx.pipelines();
  if (!p.pipeline && pipelines.length === 1) p.pipeline = pipelines[0];
  const form = journeyForm(p, by, pipelines);
  ctx.main.append(h('div', { class: 'title' }, h('h1', {}, 'Event journey')), form);
  const value = p[by];
  if (!p.pipeline || !value) {
    ctx.main.append(h('p', { class: 'muted' }, 'Give a pipeline and an event id or a device id.'));
    return;
  }
  const out = h('div', { testid: 'journey' }, h('p', { class: 'muted' }, 'following the event through the topics…'));
  ctx.main.append(out);
  const got = await ctx.api('/v1/journey', { params: { pipeline: p.pipeline, [by]: value, since: sinceParam(p.since), limit: 50 } });
  const events = got.events || [];
  fill(out,
    h('p', { class: 'muted', testid: 'journey-scan' },
      `${num(events.length)} event${events.length === 1 ? '' : 's'} · ${num(got.scanned)} records scanned`,
      got.complete === false ? ' (scan bound hit: older records were not read)' : ''),
    events.length ? events.map((e) => eventCard(got.pipeline || p.pipeline, e))
      : h('p', { testid: 'journey-none' }, 'No event with ', h('code', {}, `${by} = ${value}`), ' found.'));
}

function journeyForm(p, by, pipelines) {
  // One text box, and a choice of what it is: the hash gets event_id or device_id.
  return filterForm('/journey', [
    { name: 'pipeline', label: 'pipeline', value: p.pipeline, options: pipelineOptions(pipelines, p.pipeline) },
    { name: 'by', label: 'search by', value: by, options: ['event_id', 'device_id'] },
    { name: 'q', label: 'id', value: p[by], placeholder: 'an event id or a device id' },
    { name: 'since', label: 'since', value: p.since, placeholder: 'optional: 1h, 1d…' },
  ], 'journey-form', 'Follow', (v) => ({ pipeline: v.pipeline, [v.by]: v.q, since: v.since }));
}

function eventCard(pipeline, e) {
  return h('section', { class: 'card journey-event', testid: 'journey-event', data: { status: String(e.status) } },
    h('header', {},
      h('h2', {}, h('span', { class: 'mono', testid: 'journey-event-id' }, text(e.event_id))),
      badge(e.status, 'journey-status'),
      h('span', { class: 'muted' }, ' device ', h('span', { class: 'mono', testid: 'journey-device' }, text(e.device_id)))),
    h('p', { class: 'where', testid: 'journey-where' }, text(e.where)),
    h('ol', { class: 'steps' },
      ingestedStep(e),
      cleanedStep(e),
      outcomeStep(pipeline, e)));
}

function step(name, state, ...body) {
  return h('li', { class: 'step', data: { state }, testid: `step-${name}` }, h('h3', {}, name), ...body);
}

function position(x) {
  return x && x.topic !== undefined ? `${text(x.topic)} [${text(x.partition)}] @ ${text(x.offset)}` : '—';
}

function kv(obj, testid) {
  const entries = obj && typeof obj === 'object' ? Object.entries(obj) : [];
  return table(['field', 'value'], entries.map(([k, v]) => [k, h('span', { class: 'mono' }, text(v))]), { testid, empty: 'empty' });
}

function ingestedStep(e) {
  const i = e.ingested;
  if (!i) return step('ingested', 'wait', h('p', { class: 'muted' }, 'not seen on the raw topic'));
  return step('ingested', 'done',
    facts([
      ['time', text(i.time)],
      ['saga', e.saga_id ? h('a', { href: sagaHref(e.saga_id), class: 'mono', testid: 'journey-saga' }, String(e.saga_id)) : '—'],
      ['seq', text(e.seq)], ['position', position(i)],
    ]),
    h('details', {}, h('summary', {}, 'payload as ingested'), kv(i.payload, 'journey-payload')));
}

function cleanedStep(e) {
  const c = e.cleaned;
  if (c) {
    const changes = Array.isArray(c.changes) ? c.changes : [];
    return step('cleaned', 'done',
      facts([['position', position(c)]]),
      table(['field', 'rule', 'from', '', 'to'],
        changes.map((ch) => [text(ch.field), text(ch.rule), h('span', { class: 'mono' }, text(ch.from)), '→', h('span', { class: 'mono' }, text(ch.to))]),
        { testid: 'journey-changes', rowProps: () => ({ testid: 'journey-change' }), empty: 'no value changed' }),
      h('details', {}, h('summary', {}, 'payload as cleaned'), kv(c.payload, 'journey-clean-payload')));
  }
  if (e.rejected && e.rejected.stage === 'clean') return step('cleaned', 'fail', h('p', {}, 'refused by clean (below)'));
  if (e.status === 'in_flight') return step('cleaned', 'wait', h('p', { class: 'warn' }, 'waiting for clean'));
  return step('cleaned', 'wait', h('p', { class: 'muted' }, '—'));
}

function outcomeStep(pipeline, e) {
  if (e.loaded) {
    return step('loaded', 'done', h('div', { testid: 'journey-loaded' },
      facts([['table', h('span', { class: 'mono', testid: 'journey-table' }, text(e.loaded.table))]]),
      kv(e.loaded.row, 'journey-row')));
  }
  if (e.rejected) {
    const r = e.rejected;
    const reasons = Array.isArray(r.reasons) ? r.reasons : [];
    return step('rejected', 'fail', h('div', { testid: 'journey-rejected' },
      facts([['by', text(r.stage)], ['time', text(r.time)], ['position', position(r)]]),
      table(['rule', 'field', 'value', 'expected'],
        reasons.map((x) => [
          h('a', { href: hash('/rejects', { pipeline, rule: x.rule, field: x.field }) }, text(x.rule)),
          text(x.field), h('span', { class: 'mono' }, text(x.value)), text(x.expected)]),
        { testid: 'journey-reasons', rowProps: () => ({ testid: 'journey-reason' }), empty: 'no reason given' })));
  }
  return step('in flight', 'wait', h('p', { class: 'warn', testid: 'journey-in-flight' }, text(e.where) === '—' ? 'in flight' : text(e.where)));
}
