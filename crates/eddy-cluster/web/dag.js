// The job graph as an SVG: vertices in layers from left to right (a layer is the longest path
// from a source), ordered in each layer by the mean position of their inputs, edges as curves.

import { DASH, esc, num } from './api.js';

const W = 250;
const H = 112;
const GAP_X = 90;
const GAP_Y = 28;
const PAD = 16;

/** Layers of the plan's nodes: [[node, ...], ...] and each node's (layer, row). */
export function layout(nodes) {
  const byId = new Map(nodes.map((n) => [n.id, n]));
  const layerOf = new Map();
  const visiting = new Set();
  const depth = (n) => {
    if (layerOf.has(n.id)) return layerOf.get(n.id);
    if (visiting.has(n.id)) return 0; // A cycle (not in a valid plan): cut it.
    visiting.add(n.id);
    let d = 0;
    for (const input of n.inputs || []) {
      const source = byId.get(input.id);
      if (source) d = Math.max(d, depth(source) + 1);
    }
    visiting.delete(n.id);
    layerOf.set(n.id, d);
    return d;
  };
  nodes.forEach(depth);
  const layers = [];
  for (const n of nodes) {
    const l = layerOf.get(n.id);
    (layers[l] ||= []).push(n);
  }
  const row = new Map();
  layers.forEach((layer, l) => {
    if (l > 0) {
      const key = (n) => {
        const rows = (n.inputs || []).map((i) => row.get(i.id)).filter((r) => r !== undefined);
        return rows.length ? rows.reduce((a, b) => a + b, 0) / rows.length : 0;
      };
      layer.sort((a, b) => key(a) - key(b));
    }
    layer.forEach((n, i) => row.set(n.id, i));
  });
  return { layers, layerOf, row };
}

function truncate(text, max) {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

/** The fill class of a vertex: by backpressure, else by how busy it is, else by its state. */
function heat(m) {
  if (m.backpressure === 'high') return 'bp-high';
  if (m.backpressure === 'low') return 'bp-low';
  if (typeof m.busy === 'number') {
    if (m.busy >= 0.75) return 'busy-high';
    if (m.busy >= 0.25) return 'busy-mid';
    return 'busy-low';
  }
  return 'busy-unknown';
}

/**
 * The SVG of a plan. `vertices` maps a vertex id to what GET /jobs/:id reports of it, and
 * `metrics` to {busy, backpressure, watermark} (any of them may be missing).
 */
export function render(plan, vertices, metrics, selected) {
  const nodes = (plan && plan.nodes) || [];
  if (!nodes.length) return '<p class="muted">The job has no graph.</p>';
  const { layers, layerOf, row } = layout(nodes);
  const tallest = Math.max(...layers.map((l) => l.length));
  const width = PAD * 2 + layers.length * W + (layers.length - 1) * GAP_X;
  const height = PAD * 2 + tallest * H + (tallest - 1) * GAP_Y;
  const pos = (id) => {
    const l = layerOf.get(id);
    const inLayer = layers[l].length;
    const offset = ((tallest - inLayer) * (H + GAP_Y)) / 2;
    return { x: PAD + l * (W + GAP_X), y: PAD + offset + row.get(id) * (H + GAP_Y) };
  };
  const edges = [];
  for (const n of nodes) {
    const to = pos(n.id);
    for (const input of n.inputs || []) {
      if (!layerOf.has(input.id)) continue;
      const from = pos(input.id);
      const x1 = from.x + W;
      const y1 = from.y + H / 2;
      const x2 = to.x - 4;
      const y2 = to.y + H / 2;
      const mx = (x1 + x2) / 2;
      const label = String(input.ship_strategy || '').toUpperCase();
      edges.push(
        `<g class="edge"><path d="M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2},${y2}" marker-end="url(#arrow)"/>` +
          `<text x="${mx}" y="${(y1 + y2) / 2 - 6}" text-anchor="middle">${esc(label)}</text></g>`,
      );
    }
  }
  const boxes = nodes.map((n) => {
    const { x, y } = pos(n.id);
    const v = vertices.get(n.id) || {};
    const m = metrics.get(n.id) || {};
    const name = v.name || n.description || n.id;
    const status = v.status || 'CREATED';
    const readRecords = v.metrics ? v.metrics['read-records'] : undefined;
    const writeRecords = v.metrics ? v.metrics['write-records'] : undefined;
    const busy = typeof m.busy === 'number' ? `${Math.round(m.busy * 100)}%` : DASH;
    const bp = m.backpressure ? m.backpressure.toUpperCase() : DASH;
    const wm = m.watermark ?? DASH;
    const cls = `vertex ${heat(m)}${selected === n.id ? ' selected' : ''}`;
    return (
      `<g class="${cls}" data-vertex-id="${esc(n.id)}" data-name="${esc(name)}" data-status="${esc(status)}" ` +
      `data-read-records="${esc(readRecords ?? '')}" data-write-records="${esc(writeRecords ?? '')}" ` +
      `transform="translate(${x},${y})" tabindex="0" role="button">` +
      `<title>${esc(name)}</title>` +
      `<rect width="${W}" height="${H}" rx="8"/>` +
      `<text class="vertex-name" x="12" y="22">${esc(truncate(name, 28))}</text>` +
      `<text class="vertex-line" x="12" y="42">Parallelism: ${esc(v.parallelism ?? n.parallelism)}` +
      ` · <tspan class="state-text state-${esc(status.toLowerCase())}">${esc(status)}</tspan></text>` +
      `<text class="vertex-line vertex-records" x="12" y="61">Records in: ${num(readRecords)} · out: ${num(
        writeRecords,
      )}</text>` +
      `<text class="vertex-line" x="12" y="80">Backpressure: ${esc(bp)} · Busy: ${esc(busy)}</text>` +
      `<text class="vertex-line" x="12" y="99">Watermark: ${esc(wm)}</text>` +
      `</g>`
    );
  });
  return (
    `<svg id="job-graph" class="dag" viewBox="0 0 ${width} ${height}" width="${width}" height="${height}" ` +
    `role="img" aria-label="Job graph">` +
    `<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="8" markerHeight="8" ` +
    `orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z"/></marker></defs>` +
    edges.join('') +
    boxes.join('') +
    `</svg>`
  );
}
