// The cluster's pages: overview, job lists, TaskManagers and job submission. Each view has
// `mount(root)`, which draws what stays (forms, headings), and `refresh()`, which redraws what
// the REST API reports; the app calls refresh every web.refresh-interval.

import {
  DASH, HttpError, TERMINAL, ago, badge, bytes, duration, esc, get, getOrNull, num, send, splitArgs, time,
} from './api.js';

function stat(key, label, value) {
  return `<div class="stat" data-stat="${esc(key)}"><div class="stat-value">${esc(value)}</div>` +
    `<div class="stat-label">${esc(label)}</div></div>`;
}

function taskCounts(tasks) {
  if (!tasks) return '';
  return Object.entries(tasks)
    .filter(([k, v]) => k !== 'total' && v > 0)
    .map(([k, v]) => `<span class="count state-${esc(k.toLowerCase())}" title="${esc(k.toUpperCase())}">${num(v)}</span>`)
    .join('');
}

/** A table of jobs (from /jobs/overview). */
export function jobsTable(jobs, empty) {
  if (!jobs.length) return `<p class="muted empty">${esc(empty)}</p>`;
  const rows = jobs.map((j) => `<tr data-job-id="${esc(j.jid)}" data-state="${esc(j.state)}">
      <td><a href="#/jobs/${esc(j.jid)}">${esc(j.name)}</a><div class="muted mono small">${esc(j.jid)}</div></td>
      <td>${time(j['start-time'])}</td>
      <td>${duration(j.duration)}</td>
      <td>${j['end-time'] > 0 ? time(j['end-time']) : DASH}</td>
      <td class="counts">${taskCounts(j.tasks)}</td>
      <td>${badge(j.state)}</td></tr>`);
  return `<table class="table jobs"><thead><tr><th>Job</th><th>Started</th><th>Duration</th><th>Ended</th>` +
    `<th>Tasks</th><th>Status</th></tr></thead><tbody>${rows.join('')}</tbody></table>`;
}

function byStartDesc(a, b) {
  return (b['start-time'] || 0) - (a['start-time'] || 0);
}

export const overview = {
  mount(root) {
    root.innerHTML = `<h1>Cluster overview</h1><div id="stats" class="stats"></div>
      <section><h2>Running jobs</h2><div id="running"></div></section>
      <section><h2>Completed jobs</h2><div id="completed"></div></section>`;
    this.root = root;
  },
  async refresh() {
    const [o, jobs] = await Promise.all([get('/overview'), get('/jobs/overview')]);
    this.root.querySelector('#stats').innerHTML = [
      stat('taskmanagers', 'TaskManagers', num(o.taskmanagers)),
      stat('slots-total', 'Slots total', num(o['slots-total'])),
      stat('slots-available', 'Slots available', num(o['slots-available'])),
      stat('jobs-running', 'Running jobs', num(o['jobs-running'])),
      stat('jobs-finished', 'Finished', num(o['jobs-finished'])),
      stat('jobs-failed', 'Failed', num(o['jobs-failed'])),
      stat('jobs-cancelled', 'Cancelled', num(o['jobs-cancelled'])),
    ].join('');
    const list = (jobs.jobs || []).slice().sort(byStartDesc);
    this.root.querySelector('#running').innerHTML =
      jobsTable(list.filter((j) => !TERMINAL.has(j.state)), 'No job is running.');
    this.root.querySelector('#completed').innerHTML =
      jobsTable(list.filter((j) => TERMINAL.has(j.state)).slice(0, 10), 'No job has completed yet.');
  },
};

/** Running or completed jobs. */
export function jobList(completed) {
  return {
    mount(root) {
      root.innerHTML = `<h1>${completed ? 'Completed jobs' : 'Running jobs'}</h1><div id="jobs"></div>`;
      this.root = root;
    },
    async refresh() {
      const jobs = ((await get('/jobs/overview')).jobs || []).slice().sort(byStartDesc);
      const shown = jobs.filter((j) => TERMINAL.has(j.state) === completed);
      this.root.querySelector('#jobs').innerHTML =
        jobsTable(shown, completed ? 'No job has completed yet.' : 'No job is running.');
    },
  };
}

function heartbeat(tm) {
  return tm.timeSinceLastHeartbeat > 0 ? ago(tm.timeSinceLastHeartbeat) : DASH;
}

export const taskmanagers = {
  mount(root) {
    root.innerHTML = '<h1>TaskManagers</h1><div id="tms"></div>';
    this.root = root;
  },
  async refresh() {
    const tms = (await get('/taskmanagers')).taskmanagers || [];
    const rows = tms.map((tm) => `<tr data-taskmanager-id="${esc(tm.id)}">
        <td><a href="#/taskmanagers/${encodeURIComponent(tm.id)}">${esc(tm.id)}</a></td>
        <td class="mono">${esc(tm.path)}</td>
        <td>${num(tm.freeSlots)} / ${num(tm.slotsNumber)}</td>
        <td>${num(tm.hardware && tm.hardware.cpuCores)}</td>
        <td>${bytes(tm.hardware && tm.hardware.physicalMemory)}</td>
        <td>${heartbeat(tm)}</td>
        <td>${time(tm.registered)}</td></tr>`);
    this.root.querySelector('#tms').innerHTML = tms.length
      ? `<table class="table"><thead><tr><th>Id</th><th>Address</th><th>Free / total slots</th><th>CPU cores</th>` +
        `<th>Physical memory</th><th>Last heartbeat</th><th>Registered</th></tr></thead><tbody>${rows.join('')}</tbody></table>`
      : '<p class="muted empty">No TaskManager is registered.</p>';
  },
};

/** Metric values of a TaskManager: every metric it lists, or null when it has none (404). */
async function taskmanagerMetrics(id) {
  const base = `/taskmanagers/${encodeURIComponent(id)}/metrics`;
  const available = await getOrNull(base);
  if (!Array.isArray(available) || !available.length) return null;
  const names = available.map((m) => m.id).filter(Boolean);
  const values = await getOrNull(`${base}?get=${names.map(encodeURIComponent).join(',')}`);
  return Array.isArray(values) ? values : null;
}

export function taskmanager(id) {
  return {
    mount(root) {
      root.innerHTML = `<p><a href="#/taskmanagers">← TaskManagers</a></p><h1 class="mono">${esc(id)}</h1>
        <div id="tm"></div><section><h2>Metrics</h2><div id="tm-metrics"></div></section>`;
      this.root = root;
    },
    async refresh() {
      const [tm, metrics] = await Promise.all([
        get(`/taskmanagers/${encodeURIComponent(id)}`),
        taskmanagerMetrics(id).catch(() => null),
      ]);
      const slots = (tm.allocatedSlots || []).map((s) => `<tr><td>${num(s.slot)}</td>` +
        `<td><a href="#/jobs/${esc(s.jobId)}" class="mono">${esc(s.jobId)}</a></td><td>${num(s.attempt)}</td></tr>`);
      this.root.querySelector('#tm').innerHTML = `<div class="stats">
          ${stat('slots', 'Slots', num(tm.slotsNumber))}
          ${stat('free-slots', 'Free slots', num(tm.freeSlots))}
          ${stat('cpu', 'CPU cores', num(tm.hardware.cpuCores))}
          ${stat('memory', 'Physical memory', bytes(tm.hardware.physicalMemory))}
          ${stat('heartbeat', 'Last heartbeat', heartbeat(tm))}
        </div>
        <dl class="facts"><dt>Address</dt><dd class="mono">${esc(tm.path)}</dd>
          <dt>Data host</dt><dd class="mono">${esc(tm.dataHost || DASH)}</dd>
          <dt>Registered</dt><dd>${time(tm.registered)}</dd></dl>
        <h2>Allocated slots</h2>${slots.length
          ? `<table class="table"><thead><tr><th>Slot</th><th>Job</th><th>Attempt</th></tr></thead><tbody>${slots.join('')}</tbody></table>`
          : '<p class="muted empty">No slot is in use.</p>'}`;
      this.root.querySelector('#tm-metrics').innerHTML = metrics
        ? `<table class="table"><thead><tr><th>Metric</th><th>Value</th></tr></thead><tbody>${metrics
          .map((m) => `<tr><td class="mono">${esc(m.id)}</td><td>${esc(m.value ?? DASH)}</td></tr>`).join('')}</tbody></table>`
        : `<p class="muted">${DASH} (this JobManager reports no TaskManager metrics)</p>`;
    },
  };
}

/**
 * Uploads a job binary. A server that refuses an upload answers before it has read the body,
 * which a browser may report as a broken connection: an empty upload then asks for the reason
 * (an authorized one is refused only for being empty).
 */
async function upload(file) {
  try {
    return await send('POST', '/artifacts', file, 'application/octet-stream');
  } catch (e) {
    if (e instanceof HttpError) throw e;
    try {
      await send('POST', '/artifacts', new Blob([]), 'application/octet-stream');
    } catch (reason) {
      if (reason instanceof HttpError && reason.status !== 400) throw reason;
    }
    throw e;
  }
}

export function submit(config, navigate) {
  return {
    mount(root) {
      const limit = config['upload-max-size'];
      const enabled = !config.features || config.features['web-submit'] !== false;
      root.innerHTML = `<h1>Submit a job</h1>
        ${enabled ? '' : '<p class="notice error">Submission from the dashboard is disabled (web.submit.enable: false).</p>'}
        <form id="submit-form" class="form">
          <label>Job binary <input id="submit-binary" type="file" required></label>
          <p class="muted small">The program's executable, built for the TaskManagers' platform${limit ? ` (at most ${bytes(limit)})` : ''}.
            It is uploaded, then run on the JobManager in client mode to submit its job, as <code>eddy run -d</code> would.</p>
          <label>Program arguments <input id="submit-args" type="text" placeholder="--input /data/in --mode streaming" spellcheck="false"></label>
          <label>Parallelism <input id="submit-parallelism" type="number" min="1" placeholder="the program's default"></label>
          <label>Savepoint path <input id="submit-savepoint" type="text" placeholder="restore from a savepoint or retained checkpoint" spellcheck="false"></label>
          <label class="check"><input id="submit-allow-non-restored" type="checkbox"> Allow non-restored state</label>
          <div><button id="submit-button" type="submit" class="primary"${enabled ? '' : ' disabled'}>Submit</button></div>
          <p id="submit-status" class="status"></p>
        </form>`;
      const form = root.querySelector('#submit-form');
      const status = root.querySelector('#submit-status');
      form.addEventListener('submit', async (event) => {
        event.preventDefault();
        const file = root.querySelector('#submit-binary').files[0];
        const button = root.querySelector('#submit-button');
        const show = (text, kind) => {
          status.textContent = text;
          status.className = `status ${kind || ''}`;
        };
        try {
          if (!file) throw new Error('choose the job binary first');
          if (limit && file.size > limit) {
            throw new Error(`the binary is ${bytes(file.size)}, more than the JobManager accepts (${bytes(limit)}, rest.upload.max-size)`);
          }
          const args = splitArgs(root.querySelector('#submit-args').value.trim());
          const parallelism = root.querySelector('#submit-parallelism').value;
          const savepoint = root.querySelector('#submit-savepoint').value.trim();
          button.disabled = true;
          show(`Uploading ${file.name} (${bytes(file.size)})…`);
          const artifact = await upload(file);
          show('Starting the program…');
          const body = { programArgsList: args };
          if (parallelism) body.parallelism = Number(parallelism);
          if (savepoint) {
            body.savepointPath = savepoint;
            body.allowNonRestoredState = root.querySelector('#submit-allow-non-restored').checked;
          }
          const run = await send('POST', `/artifacts/${artifact.id}/run`, body);
          show(`Job ${run.jobid} submitted.`, 'ok');
          navigate(`#/jobs/${run.jobid}`);
        } catch (e) {
          show(`Submission failed: ${e.message}`, 'error');
        } finally {
          button.disabled = !enabled;
        }
      });
    },
    async refresh() {},
    static: true,
  };
}
