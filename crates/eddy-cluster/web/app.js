// The dashboard's entry: hash routes (#/overview, #/jobs/<id>/<tab>, ...), the refresh loop
// and the token field.

import { esc, get, setToken, token } from './api.js';
import { jobPage } from './job.js';
import { jobList, overview, submit, taskmanager, taskmanagers } from './views.js';

const view = document.getElementById('view');
let config = { 'refresh-interval': 3000 };
let current = null;
let timer = null;
let generation = 0;

function navigate(hash) {
  window.location.hash = hash;
}

/** The view of a route, and the navigation entry to highlight. */
function route(hash) {
  const parts = hash.replace(/^#\/?/, '').split('/').filter(Boolean).map(decodeURIComponent);
  const [head, a, b, c] = parts;
  if (head === 'jobs' && a === 'running') return [jobList(false), 'running'];
  if (head === 'jobs' && a === 'completed') return [jobList(true), 'completed'];
  if (head === 'jobs' && a) return [jobPage(a, b || 'overview', c, () => refreshNow()), 'job'];
  if (head === 'taskmanagers' && a) return [taskmanager(a), 'taskmanagers'];
  if (head === 'taskmanagers') return [taskmanagers, 'taskmanagers'];
  if (head === 'submit') return [submit(config, navigate), 'submit'];
  return [overview, 'overview'];
}

function showError(e) {
  let box = view.querySelector('#refresh-error');
  if (!box) {
    box = document.createElement('p');
    box.id = 'refresh-error';
    box.className = 'notice error';
    view.prepend(box);
  }
  box.textContent = `Cannot reach the JobManager: ${e.message}`;
}

async function refreshNow() {
  const mine = generation;
  const state = document.getElementById('refresh-state');
  try {
    await current.refresh();
    if (mine !== generation) return;
    view.querySelector('#refresh-error')?.remove();
    state.textContent = `Updated ${new Date().toLocaleTimeString()}`;
    document.body.dataset.refreshed = String(Number(document.body.dataset.refreshed || 0) + 1);
  } catch (e) {
    if (mine === generation) showError(e);
  }
}

function schedule() {
  clearTimeout(timer);
  if (current.static) return;
  timer = setTimeout(async () => {
    // Only while the page is visible: a hidden tab does not poll the JobManager.
    if (!document.hidden) await refreshNow();
    schedule();
  }, Math.max(250, Number(config['refresh-interval']) || 3000));
}

async function show() {
  generation += 1;
  clearTimeout(timer);
  const [next, nav] = route(window.location.hash);
  current = next;
  for (const link of document.querySelectorAll('#nav a')) {
    link.classList.toggle('active', link.dataset.nav === nav);
  }
  current.mount(view);
  await refreshNow();
  schedule();
}

async function start() {
  try {
    config = await get('/config');
  } catch (e) {
    view.innerHTML = `<p class="notice error">Cannot read /config: ${esc(e.message)}</p>`;
  }
  document.getElementById('footer').textContent =
    `Eddy ${config['eddy-version'] || ''} · refreshes every ${(Number(config['refresh-interval']) || 3000) / 1000} s`;
  const box = document.getElementById('token-box');
  const input = document.getElementById('token');
  box.hidden = !config['submission-token-required'] && !token();
  input.value = token();
  input.addEventListener('input', () => setToken(input.value.trim()));
  document.addEventListener('visibilitychange', () => {
    if (!document.hidden && current && !current.static) refreshNow();
  });
  window.addEventListener('hashchange', show);
  if (!window.location.hash) window.history.replaceState(null, '', '#/overview');
  await show();
}

start();
