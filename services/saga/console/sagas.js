// #/sagas?pipeline=&state=&since=&page_token= — the saga list, filtered and
// paged by the API's next_page_token (the URL holds the page, so the back
// button goes back a page).

import { h, fill, num, time, hash, badge, table, filterForm, sinceParam, sagaHref, pipelineOptions } from './dom.js';

export const STATES = ['', 'ACCEPTED', 'IN_FLIGHT', 'COMPLETED', 'STALLED', 'OVERDUE', 'FAILED', 'COMPENSATED'];
const PAGE = 50;

export async function render(ctx) {
  const p = Object.fromEntries(ctx.params);
  const pipelines = await ctx.pipelines();
  ctx.main.append(
    h('div', { class: 'title' }, h('h1', {}, 'Sagas')),
    filterForm('/sagas', [
      { name: 'pipeline', label: 'pipeline', value: p.pipeline, options: pipelineOptions(pipelines, p.pipeline) },
      { name: 'state', label: 'state', value: p.state, options: STATES },
      { name: 'since', label: 'created since', value: p.since, placeholder: '15m, 2h, 1d or a time' },
    ], 'saga-filter'),
  );
  const out = h('div', { testid: 'sagas' }, h('p', { class: 'muted' }, 'loading…'));
  ctx.main.append(out);

  const got = await ctx.api('/v1/sagas', {
    params: { pipeline: p.pipeline, state: p.state, since: sinceParam(p.since), limit: PAGE, page_token: p.page_token },
  });
  const list = got.sagas || [];
  const rows = list.map((s) => {
    const c = s.counts || {};
    return [
      h('a', { href: sagaHref(s.saga_id), testid: 'saga-link', class: 'mono' }, String(s.saga_id)),
      String(s.pipeline), String(s.kind || 'INGEST'), badge(s.state, 'saga-state'),
      num(s.total), num(c.loaded), num((c.rejected || 0) + (c.rejected_at_load || 0)), num(c.in_flight), time(s.created_ms),
    ];
  });
  const totals = got.totals;
  fill(out,
    totals ? h('p', { class: 'muted', testid: 'sagas-totals' },
      `${num(totals.sagas)} sagas match · ${num(totals.accepted)} events: ${num(totals.loaded)} loaded, ${num(totals.rejected)} rejected, ${num(totals.in_flight)} in flight`) : null,
    table(['saga', 'pipeline', 'kind', 'state', 'events', 'loaded', 'rejected', 'in flight', 'created'], rows, {
      testid: 'saga-table',
      rowProps: (i) => ({ testid: 'saga-row', data: { state: String(list[i].state), sagaId: String(list[i].saga_id) } }),
      empty: 'No saga matches.',
    }),
    h('div', { class: 'pager' },
      p.page_token ? h('a', { href: hash('/sagas', { ...p, page_token: '' }), testid: 'sagas-first' }, '« first page') : null,
      got.next_page_token
        ? h('a', { href: hash('/sagas', { ...p, page_token: got.next_page_token }), testid: 'sagas-next' }, 'next page »')
        : h('span', { class: 'muted' }, 'last page')),
  );
}
