// DOM helpers. Every value that reaches the page goes through createElement
// and textContent: nothing here parses HTML, so a device id like
// `<img src=x onerror=alert(1)>` stays text. (The page's CSP forbids inline
// scripts and styles anyway; this is the other half of that promise.)

/// h('a', {href: '#/', testid: 'nav-overview', class: 'x'}, 'text', child, [more]).
/// Props: class, testid (data-testid), data (an object of data-* values),
/// on (an object of event listeners), and any DOM property (href, type,
/// value, disabled, title, max...). Children: strings and numbers become text
/// nodes, null/undefined/false are skipped, arrays are flattened.
export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v === undefined || v === null) continue;
    if (k === 'class') el.className = v;
    else if (k === 'testid') el.dataset.testid = v;
    else if (k === 'data') for (const [dk, dv] of Object.entries(v)) el.dataset[dk] = dv;
    else if (k === 'on') for (const [ev, fn] of Object.entries(v)) el.addEventListener(ev, fn);
    else el[k] = v;
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else if (c instanceof Node) el.appendChild(c);
    else el.appendChild(document.createTextNode(String(c)));
  }
}

/// Replaces an element's children.
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/// A table: head is a list of column titles, rows a list of lists of cells
/// (strings or nodes). rowProps(i) may give each row's props.
export function table(head, rows, { testid, rowProps, empty = 'nothing to show' } = {}) {
  if (!rows.length) return h('p', { class: 'muted', testid: testid && `${testid}-empty` }, empty);
  return h('table', { testid },
    h('thead', {}, h('tr', {}, head.map((t) => h('th', {}, t)))),
    h('tbody', {}, rows.map((cells, i) => h('tr', rowProps ? rowProps(i) : {}, cells.map((c) => h('td', {}, c))))));
}

/// A definition list from [term, value] pairs (values: strings or nodes).
export function facts(pairs, testid) {
  return h('dl', { class: 'facts', testid }, pairs.filter(Boolean).map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
}

/// A value of any JSON type as text: strings as they are, the rest as JSON.
export function text(v) {
  if (v === null || v === undefined) return '—';
  if (typeof v === 'string') return v;
  return JSON.stringify(v);
}

export function num(v, digits = 0) {
  if (v === null || v === undefined || Number.isNaN(v)) return '—';
  return Number(v).toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });
}

export function time(ms) {
  if (!ms) return '—';
  return new Date(ms).toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z');
}

export function duration(s) {
  if (s === null || s === undefined) return '—';
  s = Math.round(s);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
  return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
}

/// A hash link: link('#/saga/' + encodeURIComponent(id), id).
export function link(href, label, testid) {
  return h('a', { href, testid }, label);
}

export function hash(path, params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) if (v !== undefined && v !== null && v !== '') q.set(k, v);
  const s = q.toString();
  return `#${path}${s ? `?${s}` : ''}`;
}

export const sagaHref = (id) => `#/saga/${encodeURIComponent(id)}`;

/// A state badge; CSS colours it by its data-state.
export function badge(state, testid) {
  return h('span', { class: 'badge', data: { state: String(state) }, testid }, String(state));
}

/// A <progress> bar with its numbers beside it (no inline styles needed).
export function progress(value, max, testid) {
  const bar = h('progress', { max: Math.max(1, Number(max) || 0), value: Math.max(0, Number(value) || 0) });
  const pct = max ? Math.floor((100 * value) / max) : 0;
  return h('span', { class: 'progress', testid }, bar, h('span', { class: 'muted' }, ` ${num(value)} / ${num(max)} (${pct}%)`));
}

/// Asks in the page's <dialog> (not window.confirm, so tests can click it).
/// Resolves true on "Confirm", false on "Cancel" or Escape.
export function confirmDialog(message, okLabel = 'Confirm') {
  const dlg = document.getElementById('confirm');
  fill(dlg.querySelector('.confirm-message'), message);
  dlg.querySelector('[data-testid=confirm-ok]').textContent = okLabel;
  dlg.returnValue = '';
  dlg.showModal();
  return new Promise((resolve) => {
    dlg.addEventListener('close', () => resolve(dlg.returnValue === 'ok'), { once: true });
  });
}

/// A filter form whose submit puts its fields in the hash (so the view is
/// bookmarkable and the back button works). fields: [{name, label, value,
/// options?, placeholder?}]; toParams(values) may rename them for the hash.
export function filterForm(path, fields, testid, submitLabel = 'Apply', toParams = (v) => v) {
  const inputs = fields.map((f) => {
    const id = `f-${testid}-${f.name}`;
    const input = f.options
      ? h('select', { id, name: f.name, testid: `${testid}-${f.name}` },
        f.options.map((o) => h('option', { value: o, selected: o === (f.value || '') }, o || (f.any || 'any'))))
      : h('input', { id, name: f.name, value: f.value || '', placeholder: f.placeholder || '', testid: `${testid}-${f.name}` });
    return h('label', { htmlFor: id }, h('span', {}, f.label), input);
  });
  const form = h('form', { class: 'filters', testid }, inputs, h('button', { type: 'submit', testid: `${testid}-submit` }, submitLabel));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const params = {};
    for (const f of fields) params[f.name] = form.elements[f.name].value.trim();
    location.hash = hash(path, toParams(params));
  });
  return form;
}

/// "15m", "2h", "1d" (before now) or an RFC 3339 time / Unix ms as the API
/// takes it. Returns the API's form, or '' for empty.
export function sinceParam(v) {
  v = (v || '').trim();
  const m = /^(\d+)\s*(s|m|h|d)$/.exec(v);
  if (!m) return v;
  const unit = { s: 1e3, m: 60e3, h: 3600e3, d: 86400e3 }[m[2]];
  return String(Date.now() - Number(m[1]) * unit);
}

/// Shows `items` a page at a time (so a saga with 10k timeline entries
/// builds 50 rows, not 10k): draw(slice, offset) returns the page's node.
export function pager(items, size, draw, testid) {
  const body = h('div', {});
  const info = h('span', { class: 'muted', testid: `${testid}-info` });
  const prev = h('button', { type: 'button', testid: `${testid}-prev` }, '‹ previous');
  const next = h('button', { type: 'button', testid: `${testid}-next` }, 'next ›');
  const pages = Math.max(1, Math.ceil(items.length / size));
  let page = 0;
  const show = () => {
    const from = page * size;
    fill(body, draw(items.slice(from, from + size), from));
    fill(info, items.length ? `${num(from + 1)}–${num(Math.min(items.length, from + size))} of ${num(items.length)}` : '');
    prev.disabled = page === 0;
    next.disabled = page >= pages - 1;
  };
  prev.addEventListener('click', () => { page -= 1; show(); });
  next.addEventListener('click', () => { page += 1; show(); });
  show();
  return h('div', { class: 'paged', testid }, body, items.length > size ? h('div', { class: 'pager' }, prev, info, next) : info);
}

/// The options of a pipeline <select>: any, the known pipelines, and the
/// one in the URL even when it is not (yet) known.
export function pipelineOptions(known, current) {
  return ['', ...new Set([...known, current].filter(Boolean))];
}
