// #/saga/<id> — one saga: state and explanation, per-stage counts, outcome
// facts, its timeline (paged), its events' positions (GET
// /v1/sagas/{id}/events, paged), and for a REPLAY saga its children's
// progress. An admin may replay it (after a confirmation).

import { h, fill, num, time, text, hash, badge, table, facts, progress, pager, sagaHref } from './dom.js';
import { replayButton } from './replays.js';

const PAGE = 50;

export async function render(ctx) {
  const id = decodeURIComponent(ctx.match[1]);
  const s = await ctx.api(`/v1/sagas/${encodeURIComponent(id)}`);
  const c = s.counts || {};
  const reasons = Object.entries(s.reasons || {});
  const timeline = Array.isArray(s.timeline) ? s.timeline : [];

  ctx.main.append(
    h('div', { class: 'title' },
      h('h1', {}, 'Saga ', h('span', { class: 'mono', testid: 'saga-id' }, String(s.saga_id))),
      badge(s.state, 'saga-state'), h('span', { class: 'muted' }, ` ${s.kind || 'INGEST'} · ${s.pipeline}`)),
    h('p', { class: 'explanation', testid: 'saga-explanation' }, text(s.explanation)),
    h('div', { class: 'grid' },
      h('section', { class: 'card' }, h('h2', {}, 'Counts'),
        facts([
          ['events', num(s.total)], ['cleaned', num(c.cleaned)], ['rejected by clean', num(c.rejected)],
          ['loaded', num(c.loaded)], ['rejected at load', num(c.rejected_at_load)], ['in flight', num(c.in_flight)],
        ], 'saga-counts'),
        s.total ? progress((c.loaded || 0) + (c.rejected || 0) + (c.rejected_at_load || 0), s.total, 'saga-progress') : null),
      h('section', { class: 'card' }, h('h2', {}, 'Outcome'),
        facts([
          ['state', String(s.state)], ['created', time(s.created_ms)], ['updated', time(s.updated_ms)],
          ['partition', text(s.partition)], ['compensated', s.compensated ? 'yes' : 'no'],
          s.next_deadline ? ['next deadline', text(s.next_deadline)] : null,
        ], 'saga-outcome'),
        h('h3', {}, 'Reasons'),
        table(['rule:field', 'events'], reasons.map(([k, n]) => [k, num(n)]), { testid: 'saga-reasons', empty: 'no rejection' }),
        h('div', { class: 'actions' },
          replayButton(ctx, `Replay saga ${s.saga_id} of ${s.pipeline} through clean? Its events are cleaned and loaded again as a new REPLAY saga.`,
            { pipeline: s.pipeline, saga: s.saga_id, stage: 'clean' }, 'saga-replay', 'Replay this saga')))),
  );

  if (s.replay) ctx.main.append(replaySection(s.replay));

  ctx.main.append(h('section', { class: 'card' }, h('h2', {}, `Timeline (${num(timeline.length)})`),
    pager(timeline, PAGE, (rows) => table(['time', 'from', 'to', 'cause'],
      rows.map((t) => [time(t.time_ms), t.from ? badge(t.from) : '—', badge(t.to), text(t.cause)]),
      { testid: 'saga-timeline', rowProps: () => ({ testid: 'timeline-row' }), empty: 'no transition yet' }), 'timeline-pager')));

  const events = h('section', { class: 'card', testid: 'saga-events' }, h('h2', {}, 'Events'), h('p', { class: 'muted' }, 'reading the topics…'));
  ctx.main.append(events);
  try {
    const ev = await ctx.api(`/v1/sagas/${encodeURIComponent(id)}/events`, { params: { limit: 10000 } });
    const list = ev.events || [];
    fill(events, h('h2', {}, `Events (${num(list.length)})`),
      h('p', { class: 'muted' }, `${num(ev.scanned)} records scanned${ev.complete === false ? ' (scan bound hit: the list may be incomplete)' : ''}`),
      pager(list, PAGE, (rows) => table(['seq', 'event', 'device', 'status', 'topic', 'partition', 'offset'],
        rows.map((e) => [num(e.seq),
          h('a', { href: hash('/journey', { pipeline: s.pipeline, event_id: e.event_id }), class: 'mono' }, text(e.event_id)),
          h('span', { class: 'mono' }, text(e.device_id)), badge(e.status), text(e.topic), text(e.partition), text(e.offset)]),
        { testid: 'saga-events-table', rowProps: () => ({ testid: 'event-row' }), empty: 'no event found' }), 'events-pager'));
  } catch (e) {
    if (!ctx.alive()) return;
    fill(events, h('h2', {}, 'Events'), h('p', { class: 'warn' }, `cannot list the events: ${e.message}`));
  }
}

function replaySection(r) {
  const children = Array.isArray(r.children) ? r.children : [];
  return h('section', { class: 'card', testid: 'replay-info' }, h('h2', {}, 'Replay'),
    facts([
      ['stage', text(r.stage)], ['from topic', text(r.source_topic)], ['into', text(r.replay_topic)], ['range', text(r.range)],
      ['original sagas', num(r.origin_saga_count)], ['duplicates skipped', num(r.duplicates_skipped)],
      ['cancelled', r.cancelled ? 'yes' : 'no'],
    ]),
    h('h3', {}, 'Children (input partitions)'),
    table(['partition', 'seqs', 'offsets', 'progress', 'loaded', 'rejected', 'in flight'],
      children.map((ch) => [text(ch.name), text(ch.seqs), text(ch.offsets),
        progress((ch.loaded || 0) + (ch.rejected || 0), ch.total, 'child-progress'), num(ch.loaded), num(ch.rejected), num(ch.in_flight)]),
      { testid: 'replay-children', empty: 'no child yet (still publishing)' }),
    Array.isArray(r.origin_sagas) && r.origin_sagas.length
      ? h('details', {}, h('summary', {}, `original sagas (${num(r.origin_sagas.length)})`),
        h('p', { class: 'mono ids' }, r.origin_sagas.slice(0, 1000).map((o) => [h('a', { href: sagaHref(o) }, String(o)), ' '])))
      : null);
}
