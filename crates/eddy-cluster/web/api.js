// The REST API as the dashboard uses it, and the formatting of what it answers.

const TOKEN_KEY = 'eddy.rest-token';

/** An answer that was not 2xx, with the server's message. */
export class HttpError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

export function token() {
  return sessionStorage.getItem(TOKEN_KEY) || '';
}

export function setToken(value) {
  if (value) sessionStorage.setItem(TOKEN_KEY, value);
  else sessionStorage.removeItem(TOKEN_KEY);
}

async function errorOf(response) {
  let text = await response.text();
  try {
    const body = JSON.parse(text);
    if (Array.isArray(body.errors)) text = body.errors.join('; ');
  } catch (_) {
    // Not JSON: keep the text.
  }
  return new HttpError(response.status, text || `${response.status} ${response.statusText}`);
}

/** GET a JSON document. */
export async function get(path) {
  const response = await fetch(path, { headers: { Accept: 'application/json' }, cache: 'no-store' });
  if (!response.ok) throw await errorOf(response);
  return response.json();
}

/** GET, or null when the server answers 404 (a route or an object that is not there). */
export async function getOrNull(path) {
  try {
    return await get(path);
  } catch (e) {
    if (e instanceof HttpError && e.status === 404) return null;
    throw e;
  }
}

/** A request that changes something: it carries the token when one is set. */
export async function send(method, path, body, contentType = 'application/json') {
  const headers = { Accept: 'application/json' };
  const t = token();
  if (t) headers.Authorization = `Bearer ${t}`;
  if (body !== undefined) headers['Content-Type'] = contentType;
  const payload = body === undefined || contentType !== 'application/json' ? body : JSON.stringify(body);
  const response = await fetch(path, { method, headers, body: payload });
  if (!response.ok) throw await errorOf(response);
  const text = await response.text();
  return text ? JSON.parse(text) : {};
}

// ---- formatting -------------------------------------------------------------------------------

export const DASH = '—';

const ESCAPES = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

/** Text made safe to put into HTML. */
export function esc(value) {
  return String(value ?? '').replace(/[&<>"']/g, (c) => ESCAPES[c]);
}

export function num(n) {
  if (n === null || n === undefined || Number.isNaN(Number(n))) return DASH;
  return Number(n).toLocaleString('en-US');
}

export function bytes(n) {
  if (n === null || n === undefined || n < 0) return DASH;
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = Number(n);
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u += 1;
  }
  return `${u === 0 ? v : v.toFixed(1)} ${units[u]}`;
}

export function duration(ms) {
  if (ms === null || ms === undefined || ms < 0) return DASH;
  if (ms < 1000) return `${Math.round(ms)} ms`;
  let s = Math.floor(ms / 1000);
  const d = Math.floor(s / 86400);
  s -= d * 86400;
  const h = Math.floor(s / 3600);
  s -= h * 3600;
  const m = Math.floor(s / 60);
  s -= m * 60;
  if (d) return `${d}d ${h}h ${m}m`;
  if (h) return `${h}h ${m}m ${s}s`;
  if (m) return `${m}m ${s}s`;
  return `${(ms / 1000).toFixed(ms < 10000 ? 1 : 0)} s`;
}

export function time(ms) {
  if (!ms || ms < 0) return DASH;
  const d = new Date(ms);
  const pad = (x) => String(x).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(
    d.getMinutes(),
  )}:${pad(d.getSeconds())}`;
}

export function ago(ms) {
  if (!ms || ms < 0) return DASH;
  return `${duration(Math.max(0, Date.now() - ms))} ago`;
}

/** A status badge (job, vertex, task or checkpoint state). */
export function badge(state) {
  const s = String(state || 'UNKNOWN').toUpperCase();
  return `<span class="badge state-${esc(s.toLowerCase())}">${esc(s)}</span>`;
}

/** Program arguments from one line: split on spaces, quotes keep spaces. */
export function splitArgs(line) {
  const args = [];
  let current = '';
  let quote = null;
  let any = false;
  for (const c of line) {
    if (quote) {
      if (c === quote) quote = null;
      else current += c;
    } else if (c === '"' || c === "'") {
      quote = c;
      any = true;
    } else if (/\s/.test(c)) {
      if (any || current) args.push(current);
      current = '';
      any = false;
    } else {
      current += c;
    }
  }
  if (quote) throw new Error(`unclosed ${quote} in the arguments`);
  if (any || current) args.push(current);
  return args;
}

export const TERMINAL = new Set(['FINISHED', 'FAILED', 'CANCELED']);
