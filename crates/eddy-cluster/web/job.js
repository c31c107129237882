// One job's page: its graph with live vertex metrics, subtasks, checkpoints, exceptions and
// configuration, and the actions on it (cancel, savepoint, stop with savepoint).

import {
  DASH, HttpError, TERMINAL, badge, bytes, duration, esc, get, getOrNull, num, send, time,
} from './api.js';
import { render as renderGraph } from './dag.js';

const TABS = [
  ['overview', 'Overview'],
  ['subtasks', 'Subtasks'],
  ['checkpoints', 'Checkpoints'],
  ['exceptions', 'Exceptions'],
  ['configuration', 'Configuration'],
];

/** The lowest watermark of a vertex's subtasks, as text; null without any. */
function watermarkOf(list) {
  if (!Array.isArray(list)) return null;
  const values = list
    .filter((m) => String(m.id).endsWith('currentInputWatermark') || String(m.id).endsWith('currentOutputWatermark'))
    .map((m) => Number(m.value))
    .filter((v) => Number.isFinite(v));
  if (!values.length) return null;
  const low = Math.min(...values);
  if (low <= -9.2e18) return 'No watermark';
  return low > 946684800000 ? time(low) : num(low);
}

/** {busy, backpressure, watermark} of a vertex, each missing when the server does not report it. */
async function vertexMetrics(jid, vid) {
  const base = `/jobs/${jid}/vertices/${encodeURIComponent(vid)}`;
  const quiet = (p) => p.catch(() => null);
  const [bp, wm, agg] = await Promise.all([
    quiet(getOrNull(`${base}/backpressure`)),
    quiet(getOrNull(`${base}/watermarks`)),
    quiet(getOrNull(`${base}/subtasks/metrics?get=busyTimeMsPerSecond,backPressuredTimeMsPerSecond`)),
  ]);
  const m = {};
  if (bp && bp['backpressure-level']) m.backpressure = String(bp['backpressure-level']).toLowerCase();
  if (bp && Array.isArray(bp.subtasks)) m.subtasks = bp.subtasks;
  const busy = Array.isArray(agg) && agg.find((a) => a.id === 'busyTimeMsPerSecond');
  if (busy && Number.isFinite(Number(busy.avg))) m.busy = Math.min(1, Number(busy.avg) / 1000);
  const watermark = watermarkOf(wm);
  if (watermark) m.watermark = watermark;
  return m;
}

function tabNav(jid, active) {
  return TABS.map(([key, label]) => `<a href="#/jobs/${esc(jid)}/${key}" data-tab="${key}"` +
    `${key === active ? ' class="active" aria-current="page"' : ''}>${label}</a>`).join('');
}

function vertexTable(job, metrics, jid) {
  const rows = job.vertices.map((v) => {
    const m = metrics.get(v.id) || {};
    return `<tr data-vertex-id="${esc(v.id)}">
      <td><a href="#/jobs/${esc(jid)}/subtasks/${encodeURIComponent(v.id)}">${esc(v.name)}</a></td>
      <td>${badge(v.status)}</td><td>${num(v.parallelism)}</td>
      <td>${num(v.metrics['read-records'])}</td><td>${num(v.metrics['write-records'])}</td>
      <td>${bytes(v.metrics['read-bytes'])}</td><td>${bytes(v.metrics['write-bytes'])}</td>
      <td>${typeof m.busy === 'number' ? `${Math.round(m.busy * 100)}%` : DASH}</td>
      <td>${m.backpressure ? badge(m.backpressure) : DASH}</td>
      <td>${esc(m.watermark || DASH)}</td>
      <td>${duration(v.duration)}</td></tr>`;
  });
  return `<table class="table vertices"><thead><tr><th>Vertex</th><th>Status</th><th>Parallelism</th>` +
    `<th>Records in</th><th>Records out</th><th>Bytes in</th><th>Bytes out</th><th>Busy</th>` +
    `<th>Backpressure</th><th>Watermark</th><th>Duration</th></tr></thead><tbody>${rows.join('')}</tbody></table>`;
}

function legend() {
  return `<div class="legend muted small"><span class="swatch busy-low"></span>idle` +
    `<span class="swatch busy-mid"></span>busy<span class="swatch busy-high"></span>very busy` +
    `<span class="swatch bp-low"></span>low backpressure<span class="swatch bp-high"></span>high backpressure` +
    `<span class="swatch busy-unknown"></span>no metrics</div>`;
}

async function overviewTab(jid, job) {
  const entries = await Promise.all(job.vertices.map(async (v) => [v.id, await vertexMetrics(jid, v.id)]));
  const metrics = new Map(entries);
  const vertices = new Map(job.vertices.map((v) => [v.id, v]));
  return `<div class="graph-wrap">${renderGraph(job.plan, vertices, metrics, null)}</div>${legend()}` +
    vertexTable(job, metrics, jid);
}

async function subtasksTab(jid, job, vid) {
  const vertex = job.vertices.find((v) => v.id === vid) || job.vertices[0];
  if (!vertex) return '<p class="muted">The job has no vertices.</p>';
  const base = `/jobs/${jid}/vertices/${encodeURIComponent(vertex.id)}`;
  const [detail, bp] = await Promise.all([get(base), getOrNull(`${base}/backpressure`).catch(() => null)]);
  const pressure = new Map(((bp && bp.subtasks) || []).map((s) => [s.subtask, s]));
  const pick = job.vertices.map((v) => `<a href="#/jobs/${esc(jid)}/subtasks/${encodeURIComponent(v.id)}"` +
    `${v.id === vertex.id ? ' class="active"' : ''}>${esc(v.name)}</a>`).join('');
  const pct = (x) => (typeof x === 'number' ? `${Math.round(x * 100)}%` : DASH);
  const rows = detail.subtasks.map((s) => {
    const p = pressure.get(s.subtask) || {};
    return `<tr data-subtask="${s.subtask}"><td>${num(s.subtask)}</td><td>${badge(s.status)}</td>
      <td class="mono">${esc(s['taskmanager-id'] || DASH)}</td><td>${num(s.attempt)}</td>
      <td>${time(s['start-time'])}</td><td>${duration(s.duration)}</td>
      <td>${num(s.metrics['read-records'])}</td><td>${num(s.metrics['write-records'])}</td>
      <td>${bytes(s.metrics['read-bytes'])}</td><td>${bytes(s.metrics['write-bytes'])}</td>
      <td>${pct(p.busyRatio)}</td><td>${p['backpressure-level'] ? badge(p['backpressure-level']) : DASH}</td></tr>`;
  });
  return `<div class="pills">${pick}</div><h2>${esc(vertex.name)}</h2>
    <table class="table subtasks"><thead><tr><th>Subtask</th><th>Status</th><th>TaskManager</th><th>Attempt</th>
    <th>Started</th><th>Duration</th><th>Records in</th><th>Records out</th><th>Bytes in</th><th>Bytes out</th>
    <th>Busy</th><th>Backpressure</th></tr></thead><tbody>${rows.join('')}</tbody></table>`;
}

function summaryRow(label, s, format) {
  return `<tr><td>${label}</td><td>${format(s && s.min)}</td><td>${format(s && s.avg)}</td><td>${format(s && s.max)}</td></tr>`;
}

function checkpointRow(c) {
  const detail = c.status === 'FAILED' ? esc(c.failure_message || '') : `<span class="mono">${esc(c.external_path || '')}</span>`;
  return `<tr data-checkpoint-id="${esc(c.id)}" data-status="${esc(c.status)}"><td>${num(c.id)}</td>
    <td>${badge(c.status)}</td><td>${esc(c.is_savepoint ? 'Savepoint' : c.checkpoint_type || 'Checkpoint')}</td>
    <td>${time(c.trigger_timestamp)}</td><td>${duration(c.end_to_end_duration)}</td><td>${bytes(c.state_size)}</td>
    <td>${num(c.num_acknowledged_subtasks)} / ${num(c.num_subtasks)}</td><td class="wrap">${detail}</td></tr>`;
}

async function checkpointsTab(jid) {
  const [stats, config] = await Promise.all([
    getOrNull(`/jobs/${jid}/checkpoints`),
    getOrNull(`/jobs/${jid}/checkpoints/config`),
  ]);
  if (!stats) return '<p class="muted empty">This job does not checkpoint (execution.checkpointing.interval is not set, or it runs in BATCH mode).</p>';
  const c = stats.counts;
  const latest = (label, r) => `<dt>${label}</dt><dd>${r ? `#${num(r.id)} at ${time(r.latest_ack_timestamp > 0 ? r.latest_ack_timestamp : r.trigger_timestamp || r.restore_timestamp)}${r.external_path ? ` — <span class="mono">${esc(r.external_path)}</span>` : ''}` : DASH}</dd>`;
  const history = stats.history || [];
  const cfg = config ? `<dl class="facts"><dt>Mode</dt><dd>${esc(String(config.mode).toUpperCase())}</dd>
      <dt>Interval</dt><dd>${duration(config.interval)}</dd><dt>Timeout</dt><dd>${duration(config.timeout)}</dd>
      <dt>Min pause</dt><dd>${duration(config.min_pause)}</dd><dt>Max concurrent</dt><dd>${num(config.max_concurrent)}</dd>
      <dt>Unaligned</dt><dd>${config.unaligned_checkpoints ? 'yes' : 'no'}</dd>
      <dt>Retained</dt><dd>${config.externalization && config.externalization.enabled ? (config.externalization.delete_on_cancellation ? 'on failure' : 'always') : 'no'}</dd>
      <dt>State backend</dt><dd>${esc(config.state_backend || DASH)}</dd>
      <dt>Storage</dt><dd>${esc(config.checkpoint_storage || DASH)}</dd>
      <dt>Directory</dt><dd class="mono">${esc(config.checkpoints_directory || DASH)}</dd></dl>` : '';
  return `<div class="stats">
      <div class="stat" data-stat="cp-total"><div class="stat-value">${num(c.total)}</div><div class="stat-label">Triggered</div></div>
      <div class="stat" data-stat="cp-in-progress"><div class="stat-value">${num(c.in_progress)}</div><div class="stat-label">In progress</div></div>
      <div class="stat" data-stat="cp-completed"><div class="stat-value">${num(c.completed)}</div><div class="stat-label">Completed</div></div>
      <div class="stat" data-stat="cp-failed"><div class="stat-value">${num(c.failed)}</div><div class="stat-label">Failed</div></div>
      <div class="stat" data-stat="cp-restored"><div class="stat-value">${num(c.restored)}</div><div class="stat-label">Restored</div></div>
    </div>
    <div class="columns"><section><h2>Latest</h2><dl class="facts">
      ${latest('Completed', stats.latest.completed)}${latest('Savepoint', stats.latest.savepoint)}
      ${latest('Failed', stats.latest.failed)}${latest('Restored', stats.latest.restored)}</dl>
      ${stats.latest.failed && stats.latest.failed.failure_message ? `<p class="error small">${esc(stats.latest.failed.failure_message)}</p>` : ''}</section>
      <section><h2>Summary</h2><table class="table"><thead><tr><th></th><th>Min</th><th>Average</th><th>Max</th></tr></thead><tbody>
      ${summaryRow('State size', stats.summary.state_size, bytes)}
      ${summaryRow('End to end duration', stats.summary.end_to_end_duration, duration)}</tbody></table></section>
      <section><h2>Configuration</h2>${cfg || DASH}</section></div>
    <h2>History</h2>${history.length
      ? `<table class="table checkpoints"><thead><tr><th>Id</th><th>Status</th><th>Type</th><th>Triggered</th><th>Duration</th>
        <th>State size</th><th>Acknowledged</th><th>Path or failure</th></tr></thead><tbody>${history.map(checkpointRow).join('')}</tbody></table>`
      : '<p class="muted empty">No checkpoint has been triggered yet.</p>'}`;
}

async function exceptionsTab(jid) {
  const ex = await get(`/jobs/${jid}/exceptions`);
  const entries = (ex.exceptionHistory && ex.exceptionHistory.entries) || [];
  const root = ex['root-exception']
    ? `<h2>Root cause</h2><p class="muted small">${time(ex.timestamp)}</p><pre class="trace" id="root-exception">${esc(ex['root-exception'])}</pre>`
    : '<p class="muted empty">No exception has been recorded for this job.</p>';
  const history = entries.map((e) => `<details class="exception"><summary>${time(e.timestamp)} · attempt ${num(e.attempt)}` +
    `${e.taskManagerId ? ` · <span class="mono">${esc(e.taskManagerId)}</span>` : ''} · ${esc(String(e.stacktrace).split('\n')[0].slice(0, 160))}</summary>` +
    `<pre class="trace">${esc(e.stacktrace)}</pre></details>`);
  return `${root}${entries.length ? `<h2>History</h2>${history.join('')}` : ''}`;
}

async function configurationTab(jid, job) {
  const cfg = await getOrNull(`/jobs/${jid}/config`);
  if (!cfg) return `<p class="muted">${DASH} (this JobManager does not report job configurations)</p>`;
  const ec = cfg['execution-config'] || {};
  const user = Object.entries(ec['user-config'] || {});
  return `<dl class="facts"><dt>Job id</dt><dd class="mono">${esc(cfg.jid)}</dd><dt>Type</dt><dd>${esc(job['job-type'])}</dd>
      <dt>Parallelism</dt><dd>${ec['job-parallelism'] > 0 ? num(ec['job-parallelism']) : DASH}</dd>
      <dt>Restart strategy</dt><dd>${esc(ec['restart-strategy'] || DASH)}</dd>
      <dt>Program arguments</dt><dd class="mono">${esc((cfg['program-args'] || []).join(' ') || DASH)}</dd></dl>
    <h2>Configuration</h2>${user.length
      ? `<table class="table config"><thead><tr><th>Key</th><th>Value</th></tr></thead><tbody>${user
        .map(([k, v]) => `<tr><td class="mono">${esc(k)}</td><td class="mono wrap">${esc(v)}</td></tr>`).join('')}</tbody></table>`
      : '<p class="muted empty">The job was submitted without configuration of its own.</p>'}`;
}

/** Follows a savepoint operation until it ends; returns its location or throws its failure. */
async function followSavepoint(jid, trigger) {
  const deadline = Date.now() + 15 * 60 * 1000;
  while (Date.now() < deadline) {
    const s = await get(`/jobs/${jid}/savepoints/${trigger}`);
    if (s.status && s.status.id === 'COMPLETED') {
      if (s.operation && s.operation.location) return s.operation.location;
      const cause = (s.operation && s.operation['failure-cause']) || {};
      throw new Error(cause.message || cause['stack-trace'] || 'the savepoint failed');
    }
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
  throw new Error('the savepoint did not complete within 15 minutes');
}

export function jobPage(jid, tab, vid, onChange) {
  const active = TABS.some(([k]) => k === tab) ? tab : 'overview';
  let job = null;
  let cancelArmed = 0;
  return {
    mount(root) {
      this.root = root;
      root.innerHTML = `<p><a href="#/jobs/running">← Running jobs</a> · <a href="#/jobs/completed">Completed jobs</a></p>
        <div class="job-head"><div><h1 id="job-name">${esc(jid)}</h1><div id="job-facts" class="muted"></div></div>
          <div id="job-state"></div></div>
        <div class="actions" id="job-actions">
          <input id="savepoint-dir" type="text" placeholder="Savepoint directory (default: state.savepoints.dir)" spellcheck="false">
          <label class="check" title="Let the sources end their input first (Flink's --drain)"><input id="stop-drain" type="checkbox"> Drain</label>
          <button id="action-savepoint" type="button">Trigger savepoint</button>
          <button id="action-stop" type="button">Stop with savepoint</button>
          <button id="action-cancel" type="button" class="danger">Cancel job</button>
        </div>
        <p id="action-status" class="status"></p>
        <nav class="tabs" id="job-tabs">${tabNav(jid, active)}</nav>
        <div id="tab"></div>`;
      const status = root.querySelector('#action-status');
      const show = (text, kind) => {
        status.textContent = text;
        status.className = `status ${kind || ''}`;
      };
      const dir = () => root.querySelector('#savepoint-dir').value.trim() || null;
      const guard = (label, action) => async () => {
        try {
          await action();
        } catch (e) {
          show(`${label} failed: ${e instanceof HttpError || e instanceof Error ? e.message : e}`, 'error');
        }
        onChange();
      };
      root.querySelector('#action-cancel').addEventListener('click', guard('Cancelling', async () => {
        const button = root.querySelector('#action-cancel');
        if (Date.now() > cancelArmed) {
          cancelArmed = Date.now() + 5000;
          button.textContent = 'Click again to cancel';
          setTimeout(() => { button.textContent = 'Cancel job'; }, 5000);
          return;
        }
        cancelArmed = 0;
        button.textContent = 'Cancel job';
        await send('PATCH', `/jobs/${jid}?mode=cancel`);
        show('Cancellation requested.', 'ok');
      }));
      root.querySelector('#action-savepoint').addEventListener('click', guard('The savepoint', async () => {
        show('Taking a savepoint…');
        const r = await send('POST', `/jobs/${jid}/savepoints`, { 'target-directory': dir(), 'cancel-job': false });
        show(`Savepoint written to ${await followSavepoint(jid, r['request-id'])}`, 'ok');
      }));
      root.querySelector('#action-stop').addEventListener('click', guard('Stop with savepoint', async () => {
        show('Stopping the job with a savepoint…');
        const drain = root.querySelector('#stop-drain').checked;
        const r = await send('POST', `/jobs/${jid}/stop`, { targetDirectory: dir(), drain });
        show(`Job stopped; savepoint written to ${await followSavepoint(jid, r['request-id'])}`, 'ok');
      }));
      // Vertices are redrawn on every refresh: one listener on the container follows clicks.
      const open = (event) => {
        const vertex = event.target.closest('[data-vertex-id]');
        if (vertex && vertex.closest('#job-graph')) {
          window.location.hash = `#/jobs/${jid}/subtasks/${encodeURIComponent(vertex.dataset.vertexId)}`;
        }
      };
      root.querySelector('#tab').addEventListener('click', open);
      root.querySelector('#tab').addEventListener('keydown', (e) => { if (e.key === 'Enter') open(e); });
    },
    async refresh() {
      job = await get(`/jobs/${jid}`);
      const root = this.root;
      root.querySelector('#job-name').textContent = job.name;
      root.querySelector('#job-state').innerHTML = badge(job.state);
      root.querySelector('#job-state').dataset.state = job.state;
      root.querySelector('#job-facts').innerHTML = `<span class="mono">${esc(job.jid)}</span> · ${esc(job['job-type'])}` +
        ` · started ${time(job['start-time'])} · ${duration(job.duration)}` +
        `${job['end-time'] > 0 ? ` · ended ${time(job['end-time'])}` : ''} · restarts ${num(job.restarts)}`;
      const ended = TERMINAL.has(job.state);
      for (const id of ['action-cancel', 'action-savepoint', 'action-stop']) {
        root.querySelector(`#${id}`).disabled = ended;
      }
      root.querySelector('#job-actions').classList.toggle('ended', ended);
      const render = {
        overview: () => overviewTab(jid, job),
        subtasks: () => subtasksTab(jid, job, vid),
        checkpoints: () => checkpointsTab(jid),
        exceptions: () => exceptionsTab(jid),
        configuration: () => configurationTab(jid, job),
      }[active];
      const html = await render();
      const target = root.querySelector('#tab');
      // Keep what the reader scrolled to in a wide graph.
      const wrap = target.querySelector('.graph-wrap');
      const scroll = wrap ? [wrap.scrollLeft, wrap.scrollTop] : null;
      // Keep open exception details open.
      const open = [...target.querySelectorAll('details[open] summary')].map((s) => s.textContent);
      target.innerHTML = html;
      const again = target.querySelector('.graph-wrap');
      if (again && scroll) [again.scrollLeft, again.scrollTop] = scroll;
      for (const d of target.querySelectorAll('details')) {
        if (open.includes(d.querySelector('summary').textContent)) d.open = true;
      }
    },
  };
}
