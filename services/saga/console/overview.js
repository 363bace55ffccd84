// #/ — per pipeline: events/s per stage with sparklines of the last 60 s,
// lag per stage, sagas by state, rejects per minute by rule, ingest→loaded
// latency. Polls GET /v1/overview every 2 s and updates the cards in place
// (the charts keep their uPlot instances; only their data changes).

import { h, fill, num, time, hash, badge, table } from './dom.js';

const STAGES = [
  ['ingested', 'ingested'],
  ['cleaned', 'cleaned'],
  ['rejected', 'rejected by clean'],
  ['loaded', 'loaded'],
  ['rejected_at_load', 'rejected at load'],
];
const STATES = ['ACCEPTED', 'IN_FLIGHT', 'COMPLETED', 'STALLED', 'OVERDUE', 'FAILED', 'COMPENSATED'];
const POLL_MS = 2000;

export function render(ctx) {
  const updated = h('span', { class: 'muted', testid: 'overview-updated' }, 'loading…');
  const sagaLag = h('span', { testid: 'saga-lag' }, '—');
  const cards = h('div', { class: 'cards', testid: 'overview' });
  ctx.main.append(
    h('div', { class: 'title' }, h('h1', {}, 'Pipelines'), h('span', { class: 'muted' }, 'saga lag ', sagaLag, ' · ', updated)),
    cards,
  );
  const live = new Map(); // pipeline name → card
  ctx.poll(async () => {
    const o = await ctx.api('/v1/overview');
    const names = new Set();
    for (const p of o.pipelines || []) {
      names.add(p.name);
      if (!live.has(p.name)) {
        const c = card(p.name);
        live.set(p.name, c);
        cards.append(c.el);
      }
      live.get(p.name).update(p);
    }
    for (const [name, c] of live) {
      if (!names.has(name)) {
        c.el.remove();
        live.delete(name);
      }
    }
    if (!live.size) fill(cards, h('p', { class: 'muted', testid: 'overview-empty' }, 'No pipelines.'));
    fill(sagaLag, num(o.saga_lag));
    fill(updated, `updated ${time(o.time_ms || Date.now())}`);
  }, POLL_MS);
}

/// One pipeline's card: built once, then update(p) with each answer.
function card(name) {
  const cells = {};
  const charts = {};
  const stageRows = STAGES.map(([stage, label]) => {
    cells[stage] = h('span', { class: 'num', testid: `rate-${stage}` }, '—');
    const spark = h('div', { class: 'spark', testid: `spark-${stage}` });
    charts[stage] = sparkline(spark, stage);
    return h('tr', {}, h('th', {}, label), h('td', { class: 'num' }, cells[stage], h('span', { class: 'unit' }, ' /s')), h('td', {}, spark));
  });
  const lag = { clean: h('span', { class: 'num', testid: 'lag-clean' }), load: h('span', { class: 'num', testid: 'lag-load' }) };
  const states = h('div', { class: 'states', testid: 'sagas-by-state' });
  const rejects = h('div', { testid: 'rejects-per-min' });
  const p50 = h('span', { class: 'num', testid: 'latency-p50' }, '—');
  const p99 = h('span', { class: 'num', testid: 'latency-p99' }, '—');
  const samples = h('span', { class: 'muted', testid: 'latency-samples' });

  const el = h('section', { class: 'card', testid: 'pipeline-card', data: { pipeline: name } },
    h('header', {}, h('h2', {}, name),
      h('span', { class: 'links' },
        h('a', { href: hash('/sagas', { pipeline: name }) }, 'sagas'), ' · ',
        h('a', { href: hash('/rejects', { pipeline: name }) }, 'rejects'), ' · ',
        h('a', { href: hash('/journey', { pipeline: name }) }, 'journey'))),
    h('div', { class: 'grid' },
      h('div', {}, h('h3', {}, 'Events per second (60 s)'), h('table', { class: 'stages', testid: 'stages' }, h('tbody', {}, stageRows))),
      h('div', {},
        h('h3', {}, 'Lag (records)'),
        h('dl', { class: 'facts' }, h('dt', {}, 'clean'), h('dd', {}, lag.clean), h('dt', {}, 'load'), h('dd', {}, lag.load)),
        h('h3', {}, 'Ingest → loaded (60 s)'),
        h('dl', { class: 'facts' }, h('dt', {}, 'p50'), h('dd', {}, p50), h('dt', {}, 'p99'), h('dd', {}, p99)),
        samples),
      h('div', {}, h('h3', {}, 'Sagas by state'), states, h('h3', {}, 'Rejects per minute'), rejects)));

  let lastStates = '';
  let lastRejects = '';
  function update(p) {
    const stages = p.stages || {};
    for (const [stage] of STAGES) {
      const s = stages[stage] || {};
      fill(cells[stage], num(s.rate, 1));
      charts[stage](Array.isArray(s.series) ? s.series : []);
    }
    for (const k of ['clean', 'load']) {
      const v = p.lag ? p.lag[k] : null;
      fill(lag[k], v === null || v === undefined ? 'unknown' : num(v));
    }
    const lat = p.latency_ms;
    fill(p50, lat ? `${num(lat.p50)} ms` : '—');
    fill(p99, lat ? `${num(lat.p99)} ms` : '—');
    fill(samples, lat ? `${num(lat.samples)} samples` : 'no event loaded in the last 60 s');

    // Rebuilt only when they change, so a link under the pointer stays put.
    const byState = p.sagas_by_state || {};
    const sj = JSON.stringify(byState);
    if (sj !== lastStates) {
      lastStates = sj;
      const names = [...STATES, ...Object.keys(byState).filter((s) => !STATES.includes(s))];
      fill(states, names.map((s) =>
        h('a', { class: 'state', href: hash('/sagas', { pipeline: name, state: s }), testid: `state-${s}` },
          badge(s), h('span', { class: 'num', testid: `state-count-${s}` }, num(byState[s] || 0)))));
    }
    const rj = JSON.stringify(p.rejects_per_min || []);
    if (rj !== lastRejects) {
      lastRejects = rj;
      const rows = (p.rejects_per_min || []).map((r) => [
        h('a', { href: hash('/rejects', { pipeline: name, rule: r.rule, field: r.field }) }, String(r.rule)),
        String(r.field), h('span', { class: 'num' }, num(r.count))]);
      fill(rejects, table(['rule', 'field', 'per min'], rows, { testid: 'rejects-table', empty: 'none in the last minute' }));
    }
  }
  return { el, update };
}

/// A sparkline of the 60 one-second values; returns set(series).
/// Without uPlot (its file failed to load) the numbers still show.
function sparkline(el, stage) {
  let u = null;
  return (series) => {
    if (!window.uPlot) return;
    const ys = series.length ? series.map((v) => Number(v) || 0) : [0];
    const xs = ys.map((_, i) => i - ys.length + 1);
    if (u) {
      u.setData([xs, ys]);
      return;
    }
    const css = getComputedStyle(document.documentElement);
    const color = css.getPropertyValue(stage.startsWith('rejected') ? '--warn' : '--accent').trim() || '#4c8dff';
    u = new window.uPlot({
      width: 180,
      height: 34,
      class: 'sparkline',
      legend: { show: false },
      cursor: { show: false },
      select: { show: false },
      scales: { x: { time: false }, y: { range: (_u, _min, max) => [0, Math.max(1, max)] } },
      axes: [{ show: false }, { show: false }],
      series: [{}, { stroke: color, width: 1.5, fill: `${color}33`, points: { show: false } }],
    }, [xs, ys], el);
  };
}
