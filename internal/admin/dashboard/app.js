// The waage dashboard: polls the admin API every second and differences the counters into rates;
// every two seconds it also reads the events, the busiest sources, the blocks and VRRP.
// Plain script, no dependencies, served from the binary.
'use strict';

const POLL_MS = 1000;
const EVENTS_EVERY = 2; // poll events, sources, blocks and VRRP every this many polls
const TOP_SOURCES = 15; // rows of the top sources panel
const DEFAULT_BLOCK_TTL = '10m';
const HISTORY = 60; // samples per sparkline (a minute)
const MAX_EVENTS = 100;
const TOKEN_KEY = 'waage-token';

const $ = (id) => document.getElementById(id);

const ui = {
  token: sessionStorage.getItem(TOKEN_KEY) || '',
  structure: '',
  rows: new Map(), // "backend/server" -> row elements
  groups: new Map(), // backend name -> group row elements
  history: new Map(), // "backend/server" or "backend" -> {rps: [], err: []}
  prev: null, // counters of the previous poll, by key
  prevAt: 0,
  lastEvent: 0,
  events: [],
  polls: 0,
  asking: null, // the pending token dialog, a Promise
  readAsked: false, // reads asked for a token once: the button asks again, polls do not
  filter: '',
  sourceRows: new Map(), // "frontend|source" -> row elements
  blocking: null, // the pending block dialog, a Promise
};

class APIError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function api(method, path, body) {
  const headers = { Accept: 'application/json' };
  if (ui.token) headers.Authorization = 'Bearer ' + ui.token;
  const init = { method, headers, cache: 'no-store' };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const res = await fetch(path, init);
  const version = res.headers.get('X-Waage-Version');
  if (version) $('version').textContent = version;
  let data = null;
  try {
    data = await res.json();
  } catch (e) {
    data = null;
  }
  if (!res.ok) {
    throw new APIError(res.status, (data && data.error) || res.status + ' ' + res.statusText);
  }
  return data;
}

// askToken shows the token dialog once at a time; it resolves with the token, or '' if cancelled.
function askToken() {
  if (ui.asking) return ui.asking;
  const dlg = $('token-dialog');
  const input = $('token-input');
  input.value = ui.token;
  ui.asking = new Promise((resolve) => {
    const done = (tok) => {
      $('token-form').onsubmit = null;
      $('token-cancel').onclick = null;
      dlg.close();
      ui.asking = null;
      if (tok) {
        ui.token = tok;
        sessionStorage.setItem(TOKEN_KEY, tok);
        updateTokenButton();
      }
      resolve(tok);
    };
    $('token-form').onsubmit = (ev) => {
      ev.preventDefault();
      done(input.value.trim());
    };
    $('token-cancel').onclick = () => done('');
    dlg.addEventListener('cancel', () => done(''), { once: true });
  });
  dlg.showModal();
  input.focus();
  return ui.asking;
}

// withToken runs a call, asking for the token (when mayAsk) if the API wants one.
async function withToken(call, mayAsk = true) {
  try {
    return await call();
  } catch (e) {
    if (mayAsk && e instanceof APIError && e.status === 401) {
      const tok = await askToken();
      if (tok) return call();
    }
    throw e;
  }
}

function updateTokenButton() {
  const b = $('token-button');
  b.textContent = ui.token ? 'Token set' : 'Token';
  b.title = ui.token ? 'A token is kept for this tab; click to change it' : 'Enter the admin token to make changes';
}

let toastTimer = 0;
function toast(msg, isError) {
  const t = $('toast');
  t.textContent = msg;
  t.className = 'toast' + (isError ? ' error' : '');
  t.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { t.hidden = true; }, isError ? 6000 : 2500);
}

// ---- formatting

function fmtRate(v) {
  if (!isFinite(v) || v <= 0) return '0';
  if (v >= 10000) return (v / 1000).toFixed(1) + 'k';
  if (v >= 100) return Math.round(v).toString();
  return v.toFixed(1);
}

function fmtPct(v) {
  if (!isFinite(v) || v <= 0) return '0%';
  if (v >= 10) return Math.round(v) + '%';
  return v.toFixed(1) + '%';
}

function fmtMs(v) {
  if (!v) return '–';
  if (v >= 1000) return (v / 1000).toFixed(2) + ' s';
  if (v >= 100) return Math.round(v) + ' ms';
  return v.toFixed(1) + ' ms';
}

function ago(iso) {
  const s = Math.max(0, (Date.now() - new Date(iso).getTime()) / 1000);
  if (s < 60) return Math.round(s) + 's ago';
  if (s < 3600) return Math.round(s / 60) + 'm ago';
  return Math.round(s / 3600) + 'h ago';
}

function clock(iso) {
  const d = new Date(iso);
  return d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false });
}

// ---- sparklines

function push(arr, v) {
  arr.push(v);
  if (arr.length > HISTORY) arr.shift();
}

function history(key) {
  let h = ui.history.get(key);
  if (!h) {
    h = { rps: [], err: [] };
    ui.history.set(key, h);
  }
  return h;
}

const palette = {};
function colors() {
  if (!palette.ok) {
    const cs = getComputedStyle(document.documentElement);
    palette.accent = cs.getPropertyValue('--accent').trim() || '#5aa9ff';
    palette.bad = cs.getPropertyValue('--bad').trim() || '#ff5d5d';
    palette.line = cs.getPropertyValue('--line').trim() || '#263141';
    palette.ok = true;
  }
  return palette;
}

function spark(canvas, data, color, floor) {
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth || 110;
  const h = canvas.clientHeight || 22;
  if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
    canvas.width = Math.round(w * dpr);
    canvas.height = Math.round(h * dpr);
  }
  const ctx = canvas.getContext('2d');
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, w, h);
  ctx.strokeStyle = colors().line;
  ctx.lineWidth = 1;
  ctx.beginPath();
  ctx.moveTo(0, h - 0.5);
  ctx.lineTo(w, h - 0.5);
  ctx.stroke();
  if (data.length < 2) return;
  const top = Math.max(...data);
  if (top <= 0) return; // nothing but the baseline: an all-zero error rate is no alarm
  const max = Math.max(floor, top);
  // The first samples spread over a quarter of the width at least, then the line moves left as
  // the minute fills.
  const step = w / (Math.max(data.length, HISTORY / 4) - 1);
  const x0 = w - (data.length - 1) * step;
  const y = (v) => h - 1.5 - (v / max) * (h - 3);
  ctx.beginPath();
  ctx.moveTo(x0, h);
  data.forEach((v, i) => ctx.lineTo(x0 + i * step, y(v)));
  ctx.lineTo(x0 + (data.length - 1) * step, h);
  ctx.closePath();
  ctx.globalAlpha = 0.18;
  ctx.fillStyle = color;
  ctx.fill();
  ctx.globalAlpha = 1;
  ctx.beginPath();
  data.forEach((v, i) => (i ? ctx.lineTo(x0 + i * step, y(v)) : ctx.moveTo(x0, y(v))));
  ctx.strokeStyle = color;
  ctx.lineWidth = 1.5;
  ctx.stroke();
}

// ---- table

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function chartCell() {
  const td = el('td', 'c-chart');
  const cell = el('div', 'cell');
  const canvas = el('canvas');
  const num = el('span', 'num', '–');
  cell.append(canvas, num);
  td.append(cell);
  return { td, canvas, num };
}

function buildTable(backends) {
  const tbody = $('rows');
  tbody.textContent = '';
  ui.rows.clear();
  ui.groups.clear();
  for (const b of backends) {
    const gtr = el('tr', 'group');
    gtr.dataset.backend = b.name;
    const gtd = el('td');
    gtd.colSpan = 10;
    const title = el('div', 'group-title');
    const meta = el('span', 'meta');
    const agg = el('span', 'agg');
    title.append(el('span', 'bname', b.name), meta, agg);
    gtd.append(title);
    gtr.append(gtd);
    tbody.append(gtr);
    ui.groups.set(b.name, { tr: gtr, meta, agg });
    for (const s of b.servers) {
      const key = b.name + '/' + s.name;
      const tr = el('tr', 'server');
      tr.dataset.server = key;
      tr.dataset.search = (key + ' ' + s.address).toLowerCase();
      const name = el('td', 'c-name');
      name.title = key + ' · ' + s.address;
      name.append(el('span', 'name', s.name), el('span', 'addr', s.address));
      if (s.backup) name.append(el('span', 'backup', 'backup'));
      const state = el('span', 'badge state');
      const health = el('span', 'badge health');
      const tdState = el('td', 'c-state');
      tdState.append(state);
      const tdHealth = el('td', 'c-health');
      tdHealth.append(health);
      const weight = el('td', 'c-num weight');
      const inflight = el('td', 'c-num inflight');
      const rps = chartCell();
      rps.td.classList.add('rps');
      const err = chartCell();
      err.td.classList.add('err');
      const latency = el('td', 'c-num c-latency latency');
      const check = el('td', 'c-check');
      const checkText = el('span', 'text');
      check.append(checkText);
      const actions = el('td', 'c-actions');
      const buttons = {};
      for (const [action, label] of [['drain', 'Drain'], ['ready', 'Ready'], ['maintenance', 'Maint']]) {
        const btn = el('button', 'ghost', label);
        btn.type = 'button';
        btn.dataset.action = action;
        btn.title = action === 'maintenance' ? 'Maintenance: no traffic at all' :
          action === 'drain' ? 'Drain: no new traffic; pinned sessions and open connections finish' :
            'Ready: take new traffic';
        btn.addEventListener('click', () => setState(b.name, s.name, action, btn));
        buttons[action] = btn;
        actions.append(btn);
      }
      tr.append(name, tdState, tdHealth, weight, inflight, rps.td, err.td, latency, check, actions);
      tbody.append(tr);
      ui.rows.set(key, { tr, state, health, weight, inflight, rps, err, latency, check, checkText, buttons });
    }
  }
  applyFilter();
}

function applyFilter() {
  const f = ui.filter;
  for (const [name, g] of ui.groups) {
    let any = false;
    for (const [key, r] of ui.rows) {
      if (!key.startsWith(name + '/')) continue;
      const show = !f || r.tr.dataset.search.includes(f);
      r.tr.classList.toggle('hidden', !show);
      any = any || show;
    }
    g.tr.classList.toggle('hidden', !any);
  }
}

function responses(s) {
  const r = s.responses || {};
  return (r['1xx'] || 0) + (r['2xx'] || 0) + (r['3xx'] || 0) + (r['4xx'] || 0) + (r['5xx'] || 0);
}

function render(data, now) {
  const backends = data.backends || [];
  $('empty').hidden = backends.length > 0;
  const structure = backends.map((b) => b.name + ':' + b.servers.map((s) => s.name).join(',')).join('|');
  if (structure !== ui.structure) {
    ui.structure = structure;
    buildTable(backends);
  }
  const dt = ui.prev ? (now - ui.prevAt) / 1000 : 0;
  const cur = new Map();
  let totalServers = 0, upServers = 0, totalRps = 0, total5xx = 0, totalResp = 0, totalInflight = 0;
  for (const b of backends) {
    let bRps = 0, b5xx = 0, bResp = 0, bInflight = 0, bUp = 0;
    for (const s of b.servers) {
      const key = b.name + '/' + s.name;
      const r = ui.rows.get(key);
      const counters = { req: s.requests, e5: (s.responses || {})['5xx'] || 0, resp: responses(s) };
      cur.set(key, counters);
      const p = ui.prev && ui.prev.get(key);
      let rps = 0, d5 = 0, dr = 0;
      if (p && dt > 0) {
        rps = Math.max(0, counters.req - p.req) / dt;
        d5 = Math.max(0, counters.e5 - p.e5);
        dr = Math.max(0, counters.resp - p.resp);
      }
      const errPct = dr > 0 ? (100 * d5) / dr : 0;
      const h = history(key);
      if (p && dt > 0) {
        push(h.rps, rps);
        push(h.err, errPct);
      }
      bRps += rps;
      b5xx += d5;
      bResp += dr;
      bInflight += s.in_flight;
      const up = s.health === 'up' && !s.ejected;
      if (up) bUp++;
      if (!r) continue;
      r.state.textContent = s.state === 'maintenance' ? 'maint' : s.state;
      r.state.className = 'badge state s-' + s.state;
      const hs = s.health === 'down' ? 'down' : s.ejected ? 'ejected' : 'up';
      r.health.textContent = hs.toUpperCase();
      r.health.className = 'badge health h-' + hs;
      r.tr.className = 'server' + (hs !== 'up' ? ' down' : '') + (s.state !== 'ready' ? ' ' + s.state : '') +
        (r.tr.classList.contains('hidden') ? ' hidden' : '');
      const ew = Math.round(s.effective_weight * 10) / 10;
      r.weight.textContent = ew < s.weight ? ew + ' / ' + s.weight : String(s.weight);
      r.weight.title = ew < s.weight ? 'slow start: effective weight ' + ew + ' of ' + s.weight : '';
      r.inflight.textContent = s.in_flight;
      r.rps.num.textContent = fmtRate(rps);
      spark(r.rps.canvas, h.rps, colors().accent, 1);
      r.err.num.textContent = fmtPct(errPct);
      spark(r.err.canvas, h.err, colors().bad, 5);
      r.latency.textContent = fmtMs(s.latency_ms);
      const lc = s.last_check;
      if (!lc) {
        r.checkText.textContent = '–';
        r.check.title = 'no active health check';
        r.check.classList.remove('failed');
      } else if (lc.ok) {
        r.checkText.textContent = 'ok · ' + ago(lc.at) + (lc.duration_ms ? ' · ' + fmtMs(lc.duration_ms) : '');
        r.check.title = 'passed at ' + new Date(lc.at).toLocaleString();
        r.check.classList.remove('failed');
      } else {
        r.checkText.textContent = lc.error || 'failed';
        r.check.title = 'failed at ' + new Date(lc.at).toLocaleString() + ': ' + (lc.error || '');
        r.check.classList.add('failed');
      }
      for (const [action, btn] of Object.entries(r.buttons)) {
        if (!btn.dataset.busy) btn.disabled = s.state === action;
      }
    }
    const g = ui.groups.get(b.name);
    if (g) {
      const hb = history(b.name);
      if (ui.prev && dt > 0) {
        push(hb.rps, bRps);
      }
      g.meta.textContent = [b.mode || 'unused', b.algorithm, bUp + '/' + b.servers.length + ' up'].join(' · ');
      g.agg.textContent = '';
      const part = (label, value) => {
        const s = el('span');
        s.append(label + ' ', el('b', '', value));
        g.agg.append(s);
      };
      part('req/s', fmtRate(bRps));
      part('5xx', fmtPct(bResp > 0 ? (100 * b5xx) / bResp : 0));
      part('in flight', String(bInflight));
    }
    totalServers += b.servers.length;
    upServers += bUp;
    totalRps += bRps;
    total5xx += b5xx;
    totalResp += bResp;
    totalInflight += bInflight;
  }
  ui.prev = cur;
  ui.prevAt = now;
  $('sum-backends').textContent = backends.length;
  const sumServers = $('sum-servers');
  sumServers.textContent = upServers + ' / ' + totalServers;
  sumServers.classList.toggle('bad', upServers < totalServers);
  $('sum-rps').textContent = fmtRate(totalRps);
  const errPct = totalResp > 0 ? (100 * total5xx) / totalResp : 0;
  const sumErr = $('sum-err');
  sumErr.textContent = fmtPct(errPct);
  sumErr.classList.toggle('bad', errPct > 0);
  $('sum-inflight').textContent = totalInflight;
}

// ---- events

function describe(e) {
  switch (e.kind) {
    case 'health':
      return { text: e.to === 'down' ? 'DOWN' : 'UP', cls: e.to === 'down' ? 'bad' : 'good' };
    case 'ejection':
      return { text: e.to === 'ejected' ? 'ejected (outlier)' : 'back from ejection', cls: e.to === 'ejected' ? 'warn' : 'good' };
    case 'state':
      return { text: 'state ' + e.from + ' → ' + e.to, cls: e.to === 'ready' ? 'good' : 'warn' };
    case 'weight':
      return { text: 'weight ' + e.from + ' → ' + e.to, cls: '' };
    case 'reload':
      return { text: 'configuration reloaded', cls: 'good' };
  }
  return { text: e.kind + (e.to ? ' ' + e.to : ''), cls: '' };
}

function renderEvents() {
  const ol = $('events');
  ol.textContent = '';
  for (const e of ui.events) {
    const d = describe(e);
    const li = el('li', d.cls);
    li.dataset.kind = e.kind;
    li.append(el('span', 'when', clock(e.time)), document.createTextNode(' '));
    if (e.server) li.append(el('span', 'who', e.backend + '/' + e.server));
    li.append(el('span', 'what', d.text));
    const details = [];
    if (e.detail) details.push(e.detail);
    if (e.source && e.kind !== 'health') details.push('by ' + e.source);
    if (details.length) li.append(el('span', 'detail', details.join(' · ')));
    ol.append(li);
  }
  $('no-events').hidden = ui.events.length > 0;
}

async function pollEvents() {
  const data = await api('GET', '/api/events?since=' + ui.lastEvent + '&limit=' + MAX_EVENTS);
  if (!data) return;
  if (data.last < ui.lastEvent) {
    ui.events = []; // the instance restarted
  }
  ui.lastEvent = data.last;
  if (data.events.length) {
    ui.events = data.events.slice().reverse().concat(ui.events).slice(0, MAX_EVENTS);
  }
  renderEvents();
}

// ---- top sources and blocks

function fmtLeft(sec) {
  if (sec >= 3600) return Math.floor(sec / 3600) + 'h ' + Math.floor((sec % 3600) / 60) + 'm left';
  if (sec >= 60) return Math.floor(sec / 60) + 'm ' + (sec % 60) + 's left';
  return Math.max(0, sec) + 's left';
}

function renderSources(sources) {
  const tbody = $('source-rows');
  const seen = new Set();
  for (const s of sources) {
    const key = s.frontend + '|' + s.source;
    seen.add(key);
    let r = ui.sourceRows.get(key);
    if (!r) {
      const tr = el('tr', 'source');
      tr.dataset.source = s.source;
      tr.dataset.frontend = s.frontend;
      const src = el('td', 'c-source');
      const addr = el('span', 'addr', s.source);
      const mark = el('span', 'badge blocked', 'blocked');
      src.append(addr, mark);
      const fe = el('td', 'c-frontend', s.frontend);
      const rps = el('td', 'c-num rps');
      const cps = el('td', 'c-num cps');
      const open = el('td', 'c-num open');
      const refused = el('td', 'c-num refused');
      const actions = el('td', 'c-actions');
      const btn = el('button', 'ghost', 'Block');
      btn.type = 'button';
      btn.dataset.action = 'block';
      btn.title = 'Block ' + s.source + ' on every frontend';
      btn.addEventListener('click', () => block(s.source, btn));
      actions.append(btn);
      tr.append(src, fe, rps, cps, open, refused, actions);
      r = { tr, mark, rps, cps, open, refused, btn };
      ui.sourceRows.set(key, r);
    }
    r.tr.classList.toggle('denied', s.denied);
    r.mark.hidden = !s.denied;
    r.rps.textContent = fmtRate(s.request_rate);
    r.cps.textContent = fmtRate(s.connection_rate);
    r.open.textContent = s.open_connections;
    r.refused.textContent = s.refused;
    r.refused.title = s.connections + ' connections, ' + s.requests + ' requests in all';
    if (!r.btn.dataset.busy) r.btn.disabled = s.denied;
    tbody.append(r.tr); // in the API's order, busiest first
  }
  for (const [key, r] of ui.sourceRows) {
    if (!seen.has(key)) {
      r.tr.remove();
      ui.sourceRows.delete(key);
    }
  }
  $('sources').hidden = sources.length === 0;
  $('no-sources').hidden = sources.length > 0;
}

function renderBlocks(denied) {
  const ul = $('blocks');
  ul.textContent = '';
  for (const d of denied) {
    const li = el('li', 'block');
    li.dataset.cidr = d.cidr;
    const until = el('span', 'until', d.remaining_seconds == null ? 'until unblocked' : fmtLeft(d.remaining_seconds));
    if (d.expires) until.title = 'until ' + new Date(d.expires).toLocaleString();
    const btn = el('button', 'ghost', 'Unblock');
    btn.type = 'button';
    btn.dataset.action = 'unblock';
    btn.addEventListener('click', () => unblock(d.cidr, btn));
    li.append(el('span', 'cidr', d.cidr), until, btn);
    ul.append(li);
  }
  $('no-blocks').hidden = denied.length > 0;
}

async function pollProtection() {
  const [top, deny] = await Promise.all([
    api('GET', '/api/top-sources?limit=' + TOP_SOURCES),
    api('GET', '/api/deny'),
  ]);
  renderSources((top && top.sources) || []);
  renderBlocks((deny && deny.denied) || []);
}

// askBlock shows the block dialog for a source; it resolves with {cidr, ttl}, or null if
// cancelled.
function askBlock(source) {
  if (ui.blocking) return ui.blocking;
  const dlg = $('block-dialog');
  $('block-cidr').value = source;
  $('block-ttl').value = DEFAULT_BLOCK_TTL;
  ui.blocking = new Promise((resolve) => {
    const done = (v) => {
      $('block-form').onsubmit = null;
      $('block-cancel').onclick = null;
      dlg.close();
      ui.blocking = null;
      resolve(v);
    };
    $('block-form').onsubmit = (ev) => {
      ev.preventDefault();
      done({ cidr: $('block-cidr').value.trim(), ttl: $('block-ttl').value.trim() });
    };
    $('block-cancel').onclick = () => done(null);
    dlg.addEventListener('cancel', () => done(null), { once: true });
  });
  dlg.showModal();
  $('block-ttl').focus();
  $('block-ttl').select();
  return ui.blocking;
}

async function block(source, btn) {
  const req = await askBlock(source);
  if (!req || !req.cidr) return;
  btn.dataset.busy = '1';
  btn.disabled = true;
  try {
    const body = { cidr: req.cidr };
    if (req.ttl) body.ttl = req.ttl;
    const d = await withToken(() => api('POST', '/api/deny', body));
    toast('blocked ' + d.cidr + (d.remaining_seconds == null ? ' until unblocked' : ' for ' + req.ttl));
  } catch (e) {
    toast(req.cidr + ': ' + e.message, true);
  } finally {
    delete btn.dataset.busy;
    await pollProtection().catch(() => {});
  }
}

async function unblock(cidr, btn) {
  btn.disabled = true;
  try {
    await withToken(() => api('DELETE', '/api/deny?cidr=' + encodeURIComponent(cidr)));
    toast('unblocked ' + cidr);
  } catch (e) {
    toast(cidr + ': ' + e.message, true);
    btn.disabled = false;
  } finally {
    await pollProtection().catch(() => {});
  }
}

// ---- VRRP

function renderVRRP(instances) {
  const panel = $('vrrp');
  panel.hidden = instances.length === 0;
  const list = $('vrrp-list');
  list.textContent = '';
  for (const v of instances) {
    const card = el('div', 'vrrp-card ' + v.state);
    card.dataset.instance = v.name;
    const head = el('div', 'vrrp-head');
    head.append(el('span', 'vname', v.name), el('span', 'vwhere', v.interface + ' · VRID ' + v.virtual_router_id),
      el('span', 'badge state v-' + v.state, v.state === 'initialize' ? 'init' : v.state));
    const dl = el('dl');
    const item = (label, value, cls) => {
      dl.append(el('dt', '', label));
      const dd = el('dd', cls || '', value);
      dl.append(dd);
      return dd;
    };
    const prio = item('Priority', v.effective_priority === v.priority ? String(v.priority) : v.effective_priority + ' / ' + v.priority, 'priority');
    if (v.effective_priority !== v.priority) prio.title = 'effective ' + v.effective_priority + ' of the configured ' + v.priority + ': a tracker fails';
    item('Master', v.master_address || '–', 'master mono');
    item('Virtual IPs', (v.virtual_ips || []).join(', ') || '–', 'vips mono');
    const last = v.last_transition ? ago(v.last_transition) + (v.last_reason ? ' · ' + v.last_reason : '') : '–';
    const lt = item('Last change', last, 'last');
    if (v.last_transition) lt.title = new Date(v.last_transition).toLocaleString() + ' · ' + v.transitions + ' transitions';
    const failing = (v.trackers || []).filter((t) => t.failing);
    if (failing.length) item('Failing', failing.map((t) => t.kind + ' ' + t.name + ' (−' + t.weight + ')').join(', '), 'failing');
    if (v.last_error) item('Error', v.last_error, 'error');
    card.append(head, dl);
    list.append(card);
  }
}

async function pollVRRP() {
  const data = await api('GET', '/api/vrrp');
  renderVRRP((data && data.instances) || []);
}

// ---- BGP

// renderBGP shows the speaker's decision and prefixes in one card, and a card per session.
function renderBGP(b) {
  const panel = $('bgp');
  panel.hidden = !b || !b.enabled;
  if (panel.hidden) return;
  const list = $('bgp-list');
  list.textContent = '';
  const card = (name, where, state, badge) => {
    const c = el('div', 'vrrp-card' + (state === 'ok' ? ' master' : ''));
    const head = el('div', 'vrrp-head');
    head.append(el('span', 'vname', name), el('span', 'vwhere', where), el('span', 'badge state ' + (state === 'ok' ? 'v-master' : 'v-initialize'), badge));
    const dl = el('dl');
    c.append(head, dl);
    list.append(c);
    return (label, value, cls) => {
      dl.append(el('dt', '', label), el('dd', cls || '', value));
    };
  };
  const item = card('AS ' + b.local_as, 'router ID ' + b.router_id, b.announcing ? 'ok' : 'bad', b.announcing ? 'announcing' : 'withdrawn');
  item('Why', (b.reason || '–') + (b.since ? ' · ' + ago(b.since) : ''), b.announcing ? '' : 'failing');
  item('Prefixes', (b.prefixes || []).map((p) => p.prefix + (p.announced ? '' : ' (withdrawn)')).join(', ') || '–', 'mono');
  const failing = (b.trackers || []).filter((t) => !t.healthy);
  if (failing.length) item('No healthy server', failing.map((t) => t.backend).join(', '), 'failing');
  if (b.last_error) item('Error', b.last_error, 'error');
  for (const p of b.peers || []) {
    const up = p.state === 'established';
    const pi = card(p.address, 'AS ' + p.as, up ? 'ok' : 'bad', p.state);
    pi(up ? 'Up' : 'Down', p.since ? ago(p.since) : '–');
    pi('Routes', p.advertised + ' advertised · ' + p.received + ' received');
    if (p.last_error) pi('Last error', p.last_error, 'error');
  }
}

async function pollBGP() {
  renderBGP(await api('GET', '/api/bgp'));
}

// pollSlow reads what changes less often than the counters. The panels fail on their own: one
// that cannot be read keeps its last content.
async function pollSlow() {
  await Promise.all([
    pollEvents(),
    pollProtection().catch(() => {}),
    pollVRRP().catch(() => {}),
    pollBGP().catch(() => {}),
  ]);
}

// ---- actions

async function setState(backend, server, action, btn) {
  btn.dataset.busy = '1';
  btn.disabled = true;
  try {
    const path = '/api/backends/' + encodeURIComponent(backend) + '/servers/' + encodeURIComponent(server) + '/' + action;
    const s = await withToken(() => api('POST', path));
    toast(backend + '/' + server + ': ' + s.state);
    await poll(true);
  } catch (e) {
    toast(backend + '/' + server + ': ' + e.message, true);
  } finally {
    delete btn.dataset.busy;
  }
}

// ---- loop

let timer = 0;
let polling = false;

async function poll(once) {
  if (polling) return;
  polling = true;
  const conn = $('conn');
  try {
    const data = await withToken(() => api('GET', '/api/backends'), !ui.readAsked).catch((e) => {
      if (e instanceof APIError && e.status === 401) ui.readAsked = true;
      throw e;
    });
    render(data, performance.now());
    if (ui.polls++ % EVENTS_EVERY === 0 || once) await pollSlow();
    conn.textContent = 'live';
    conn.className = 'conn live';
    conn.title = 'Updated ' + new Date().toLocaleTimeString();
  } catch (e) {
    conn.textContent = e instanceof APIError ? e.message : 'connection lost';
    conn.className = 'conn lost';
    conn.title = String(e.message || e);
    ui.prev = null; // rates restart after a gap
  } finally {
    polling = false;
  }
  if (!once) {
    clearTimeout(timer);
    timer = setTimeout(() => poll(false), POLL_MS);
  }
}

// The chart colors follow the color scheme when it changes.
window.matchMedia('(prefers-color-scheme: dark)').addEventListener('change', () => { palette.ok = false; });

document.addEventListener('DOMContentLoaded', () => {
  updateTokenButton();
  $('token-button').addEventListener('click', () => { askToken(); });
  $('filter').addEventListener('input', (ev) => {
    ui.filter = ev.target.value.trim().toLowerCase();
    applyFilter();
  });
  poll(false);
});
