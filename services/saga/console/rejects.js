// #/rejects?pipeline=&rule=&field=&device_id=&since= — a pipeline's rejected
// and DLQ records over the whole of both topics, grouped by rule and field,
// with counts and examples. An admin may re-drive a group through clean
// (after a confirmation) once its rule is fixed.

import { h, fill, num, text, hash, table, filterForm, sagaHref, sinceParam, pipelineOptions } from './dom.js';
import { replayButton } from './replays.js';

const EXAMPLES = 5;

export async function render(ctx) {
  const p = Object.fromEntries(ctx.params);
  const pipelines = await ctx.pipelines();
  if (!p.pipeline && pipelines.length === 1) p.pipeline = pipelines[0];
  ctx.main.append(
    h('div', { class: 'title' }, h('h1', {}, 'Rejects')),
    filterForm('/rejects', [
      { name: 'pipeline', label: 'pipeline', value: p.pipeline, options: pipelineOptions(pipelines, p.pipeline), any: 'choose' },
      { name: 'rule', label: 'rule', value: p.rule, placeholder: 'range, regex…' },
      { name: 'field', label: 'field', value: p.field, placeholder: 'speed_kmh…' },
      { name: 'device_id', label: 'device', value: p.device_id },
      { name: 'since', label: 'since', value: p.since, placeholder: '1h, 1d or a time' },
    ], 'rejects-filter'),
  );
  if (!p.pipeline) {
    ctx.main.append(h('p', { class: 'muted' }, 'Choose a pipeline.'));
    return;
  }
  const out = h('div', { testid: 'rejects' }, h('p', { class: 'muted' }, 'scanning the rejected and DLQ topics…'));
  ctx.main.append(out);
  const since = sinceParam(p.since);
  const got = await ctx.api('/v1/rejects', {
    params: { pipeline: p.pipeline, rule: p.rule, field: p.field, device_id: p.device_id, since, examples: EXAMPLES },
  });
  const groups = got.groups || [];
  const total = groups.reduce((n, g) => n + (Number(g.count) || 0), 0);
  fill(out,
    h('p', { class: 'muted', testid: 'rejects-scan' },
      `${num(total)} rejected records in ${num(groups.length)} groups · ${num(got.scanned)} records scanned`,
      got.complete === false ? ' (scan bound hit: narrow the filters to reach the rest)' : ''),
    groups.length ? groups.map((g) => group(ctx, p, since, g)) : h('p', { testid: 'rejects-none' }, 'No rejected record matches.'),
  );
}

function group(ctx, p, since, g) {
  const examples = Array.isArray(g.examples) ? g.examples : [];
  const pipeline = p.pipeline;
  return h('section', { class: 'card', testid: 'rejects-group', data: { rule: String(g.rule), field: String(g.field), stage: String(g.stage) } },
    h('header', {},
      h('h2', {}, h('span', { testid: 'group-rule' }, text(g.rule)), ' on ', h('span', { class: 'mono', testid: 'group-field' }, text(g.field))),
      h('span', { class: 'count', testid: 'group-count' }, num(g.count)),
      h('span', { class: 'muted' }, ` rejected by ${text(g.stage)}`),
      h('span', { class: 'links' }, h('a', { href: hash('/rejects', { ...p, rule: g.rule, field: g.field }) }, 'only this group'))),
    table(['event', 'device', 'saga', 'value', 'expected', 'time', 'position'],
      examples.map((x) => [
        h('a', { href: hash('/journey', { pipeline, event_id: x.event_id }), class: 'mono', testid: 'example-event' }, text(x.event_id)),
        h('span', { class: 'mono', testid: 'example-device' }, text(x.device_id)),
        x.saga_id ? h('a', { href: sagaHref(x.saga_id), class: 'mono' }, String(x.saga_id)) : '—',
        h('span', { class: 'mono', testid: 'example-value' }, text(x.value)), text(x.expected), text(x.time),
        `${text(x.topic)} [${text(x.partition)}] @ ${text(x.offset)}`]),
      { testid: 'rejects-examples', rowProps: () => ({ testid: 'rejects-example' }), empty: 'no example' }),
    g.stage === 'clean' ? h('div', { class: 'actions' }, replayButton(ctx,
      `Re-drive the ${num(g.count)} records of ${pipeline} rejected by ${g.rule} on ${g.field}${since ? ' since the filter\'s time' : ''} through clean again?`,
      { pipeline, stage: 'clean', rule: g.rule, field: g.field, device_id: p.device_id || undefined, from: since || undefined },
      'group-redrive', 'Re-drive through clean')) : null);
}
