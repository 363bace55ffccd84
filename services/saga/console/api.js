// The saga API, with the operator's key. The key lives in sessionStorage
// (gone when the tab closes) and goes out as `Authorization: Bearer KEY` on
// every request; there are no cookies, so there is nothing to forge (CSRF).

const KEY = 'starling.console.key';

export const key = {
  get: () => sessionStorage.getItem(KEY) || '',
  set: (k) => sessionStorage.setItem(KEY, k),
  clear: () => sessionStorage.removeItem(KEY),
};

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message || code || `HTTP ${status}`);
    this.status = status;
    this.code = code || '';
  }
}

/// GET (or POST) a /v1 path; resolves to the parsed JSON body, rejects with
/// an ApiError carrying the status and the API's error code.
export async function api(path, { method = 'GET', params, body } = {}) {
  let url = path;
  if (params) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') q.set(k, v);
    if (q.toString()) url += `?${q}`;
  }
  const headers = { Accept: 'application/json' };
  const k = key.get();
  if (k) headers.Authorization = `Bearer ${k}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let r;
  try {
    r = await fetch(url, { method, headers, cache: 'no-store', body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (e) {
    throw new ApiError(0, 'network', `cannot reach the saga service (${e.message})`);
  }
  let json = null;
  try {
    json = await r.json();
  } catch {
    // not JSON: the status says enough
  }
  if (!r.ok) {
    const err = (json && json.error) || {};
    throw new ApiError(r.status, err.code, err.message || `${method} ${path}: HTTP ${r.status}`);
  }
  return json;
}
