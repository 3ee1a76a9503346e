// The sluice web console: a small single-page app over the admin JSON API (docs/admin-api.md).
//
// No framework and no build step: the broker embeds this file as it is. Everything the broker
// sends goes into the page through textContent or attributes, never innerHTML, so a queue
// named "<img src=x onerror=...>" is shown, not run.
'use strict';

const POLL_MS = 2000;
// A broker that accepts the connection but never answers must not stall the refresh loop.
const REQUEST_TIMEOUT_MS = 5000;

// ---------------------------------------------------------------------------------------------
// DOM helpers

/** Makes an element: h('a', {href: '#/', class: 'x'}, 'text', child, [more children]). */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value == null || value === false) continue;
    if (name === 'class') el.className = value;
    else if (name === 'dataset') Object.assign(el.dataset, value);
    else if (name.startsWith('on')) el.addEventListener(name.slice(2), value);
    else el.setAttribute(name, value === true ? '' : value);
  }
  // append() makes text nodes of strings: this is where broker data is kept inert.
  el.append(...children.flat().filter((c) => c != null));
  return el;
}

/** Sets the text only when it changed, so a refresh that changes nothing touches nothing. */
function setText(el, text) {
  if (el.textContent !== text) el.textContent = text;
}

function byId(id) {
  return document.getElementById(id);
}

// ---------------------------------------------------------------------------------------------
// Formatting

const intFormat = new Intl.NumberFormat();

function fmtInt(n) {
  return n == null ? '—' : intFormat.format(n);
}

function fmtRate(perSecond) {
  if (perSecond == null) return '—';
  if (perSecond === 0) return '0';
  return perSecond < 9.95 ? perSecond.toFixed(1) : intFormat.format(Math.round(perSecond));
}

function fmtBytes(bytes) {
  if (bytes == null) return '—';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${value} B` : `${value < 10 ? value.toFixed(1) : Math.round(value)} ${units[unit]}`;
}

/** 42 -> "42s", 3725 -> "1h 2m": the two largest units are enough to read at a glance. */
function fmtDuration(seconds) {
  let s = Math.max(0, Math.floor(seconds));
  const parts = [];
  for (const [unit, size] of [['d', 86400], ['h', 3600], ['m', 60], ['s', 1]]) {
    if (s >= size || (unit === 's' && parts.length === 0)) {
      parts.push(`${Math.floor(s / size)}${unit}`);
      s %= size;
    }
  }
  return parts.slice(0, 2).join(' ');
}

/** An RFC 3339 time as local "YYYY-MM-DD HH:MM:SS". */
function fmtTime(iso) {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  const p = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ` +
    `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

function plural(n, word) {
  return `${fmtInt(n)} ${word}${n === 1 ? '' : 's'}`;
}

/** A setting's value as text: null means "not set", which reads better as a dash. */
function fmtValue(value) {
  if (value == null) return '—';
  return typeof value === 'string' ? value : JSON.stringify(value);
}

// ---------------------------------------------------------------------------------------------
// The API

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status; // 0: no HTTP answer at all
  }
}

async function api(method, path) {
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), REQUEST_TIMEOUT_MS);
  try {
    let response;
    try {
      response = await fetch(path, {
        method,
        // The admin API refuses a state-changing request without this (admin/guard.rs).
        headers: { accept: 'application/json', 'x-requested-with': 'sluice-console' },
        cache: 'no-store',
        signal: abort.signal,
      });
    } catch (e) {
      throw new ApiError(0, e.name === 'AbortError'
        ? `no answer within ${REQUEST_TIMEOUT_MS / 1000} s` : 'the connection failed');
    }
    const body = await response.json().catch(() => null);
    if (!response.ok) {
      throw new ApiError(response.status, (body && body.error) || `HTTP ${response.status}`);
    }
    return body;
  } finally {
    clearTimeout(timer);
  }
}

const queuePath = (name) => `/api/queues/${encodeURIComponent(name)}`;
const queueHref = (name) => `#/queues/${encodeURIComponent(name)}`;
const connectionHref = (id) => `#/connections/${encodeURIComponent(id)}`;

// ---------------------------------------------------------------------------------------------
// Tables that update in place
//
// A refresh every 2 s must not rebuild the page: rows keep their identity (keyed by a data-
// attribute), so nothing flickers, a text selection survives and a test can hold on to a row.
//
// A column is {cls, label, text(item)} plus optionally:
//   num: true          right-aligned figures; value(item) goes to data-value unformatted
//   href(item)         the cell is a link (unless it gives null)
//   title(item)        a tooltip
//   button: {label, cls, onClick(item)}

function table(id, columns, emptyText, extraClass = '') {
  const tbody = h('tbody', { dataset: { empty: emptyText } });
  const head = h('tr', {}, columns.map((c) => h('th', { class: cellClass(c), scope: 'col' }, c.label)));
  const el = h('table', { id, class: `grid ${extraClass}`.trim() }, h('thead', {}, head), tbody);
  return { el, tbody };
}

function cellClass(column) {
  return column.num ? `${column.cls} num` : column.cls;
}

function syncRows(tbody, items, keyName, keyOf, columns) {
  const existing = new Map();
  for (const tr of tbody.rows) {
    if (tr.dataset[keyName] !== undefined) existing.set(tr.dataset[keyName], tr);
  }
  const rows = items.map((item) => {
    const key = String(keyOf(item));
    let tr = existing.get(key);
    if (!tr) {
      tr = h('tr', { dataset: { [keyName]: key } }, columns.map((c) => h('td', { class: cellClass(c) })));
    }
    columns.forEach((column, i) => fillCell(tr.cells[i], column, item));
    return tr;
  });
  if (rows.length === 0) {
    const empty = tbody.querySelector('tr.empty') ||
      h('tr', { class: 'empty' }, h('td', { colspan: columns.length }, tbody.dataset.empty));
    rows.push(empty);
  }
  // Only reorder when the order changed; replaceChildren moves the same nodes, it makes none.
  if (rows.length !== tbody.rows.length || rows.some((tr, i) => tbody.rows[i] !== tr)) {
    tbody.replaceChildren(...rows);
  }
}

function fillCell(td, column, item) {
  if (column.button) {
    if (!td.firstElementChild) {
      td.append(h('button', { type: 'button', class: column.button.cls }, column.button.label));
    }
    // The handler must see this refresh's item, not the one the button was made for.
    td.firstElementChild.onclick = (event) => {
      event.stopPropagation();
      column.button.onClick(item, event.currentTarget);
    };
    return;
  }
  const text = column.text(item);
  const href = column.href ? column.href(item) : null;
  if (href != null) {
    let link = td.firstElementChild;
    if (!link) td.replaceChildren((link = h('a')));
    if (link.getAttribute('href') !== href) link.setAttribute('href', href);
    setText(link, text);
  } else {
    if (td.firstElementChild) td.replaceChildren();
    setText(td, text);
  }
  if (column.num && column.value) td.dataset.value = String(column.value(item));
  if (column.title) td.title = column.title(item);
}

/** A numeric column: shown formatted, raw in data-value. */
function num(cls, label, get, format = fmtInt) {
  return { cls, label, num: true, text: (x) => format(get(x)), value: get };
}

// ---------------------------------------------------------------------------------------------
// Header, banner and result message

function renderOverview(o) {
  setText(byId('version'), `v${o.version}`);
  setText(byId('uptime'), `up ${fmtDuration(o.uptime_seconds)}`);
  setText(byId('summary'), [
    plural(o.connections, 'connection'),
    plural(o.queues, 'queue'),
    `${fmtInt(o.messages.ready)} ready`,
    `${fmtRate(o.rates.enqueue)}/s in`,
    `${fmtRate(o.rates.deliver)}/s out`,
  ].join(' · '));
  renderMemory(o.memory);
}

/** Memory against the watermark; a warning while producers are held back. */
function renderMemory(m) {
  const el = byId('memory');
  if (!m) return;
  const limit = m.high_watermark == null ? 'no watermark' : `of ${fmtBytes(m.high_watermark)}`;
  const why = m.alarm ? 'memory above the watermark' : 'store full';
  setText(el, `memory ${fmtBytes(m.used)} ${limit}` +
    (m.producers_blocked ? ` · producers paused (${why})` : ''));
  el.title = `${fmtInt(m.used)} bytes held by messages, incomplete deliveries and output; ` +
    `producers get no credit above the high watermark until below ${m.low_watermark == null ? '-' : fmtBytes(m.low_watermark)}`;
  el.classList.toggle('alarm', Boolean(m.producers_blocked));
}

function showError(error) {
  const banner = byId('error');
  setText(banner, error
    ? `${error.status ? `The broker answered ${error.status}` : 'Cannot reach the broker'}: ${error.message}. ` +
      `Retrying every ${POLL_MS / 1000} s; the figures below may be out of date.`
    : '');
  banner.hidden = !error;
  document.body.classList.toggle('stale', Boolean(error));
}

/** The outcome of the last action, until the next one or the next page. */
function showResult(message, isError = false) {
  const result = byId('result');
  setText(result, message || '');
  result.hidden = !message;
  result.classList.toggle('error', isError);
}

/**
 * Asks, calls the API, and says what happened. `describe` turns the answer into the message;
 * `after` runs on success (Delete leaves the page).
 */
async function act(button, { question, method, path, describe, after }) {
  if (!window.confirm(question)) return;
  button.disabled = true;
  try {
    const answer = await api(method, path);
    const message = describe(answer);
    if (after) after(message);
    else showResult(message);
  } catch (e) {
    showResult(`${button.textContent} failed: ${e.message}`, true);
  } finally {
    button.disabled = false;
    refresh();
  }
}

// ---------------------------------------------------------------------------------------------
// Views. Each builds its skeleton into `main` once and returns {title, load(), render(data)}:
// load() fetches, render() updates the skeleton in place.

const QUEUE_COLUMNS = [
  { cls: 'name', label: 'Queue', text: (q) => q.name, href: (q) => queueHref(q.name) },
  num('ready', 'Ready', (q) => q.ready),
  num('unacked', 'Unacked', (q) => q.unacked),
  num('delayed', 'Delayed', (q) => q.delayed),
  num('consumers', 'Consumers', (q) => q.consumers),
  num('groups', 'Groups', (q) => q.groups),
  num('enqueue-rate', 'Enqueue/s', (q) => q.rates.enqueue, fmtRate),
  num('deliver-rate', 'Deliver/s', (q) => q.rates.deliver, fmtRate),
  num('ack-rate', 'Ack/s', (q) => q.rates.ack, fmtRate),
  { ...num('bytes', 'Bytes', (q) => q.bytes, fmtBytes), title: (q) => `${fmtInt(q.bytes)} bytes ready` },
];

function queuesView(main) {
  const queues = table('queues', QUEUE_COLUMNS,
    'No queues yet: a queue appears when a client first uses its address.');
  main.append(h('h1', {}, 'Queues'), queues.el);
  return {
    title: 'Queues',
    load: () => api('GET', '/api/queues'),
    render: (list) => syncRows(queues.tbody, list, 'queue', (q) => q.name, QUEUE_COLUMNS),
  };
}

// The queue page's figures: [field, label, format].
const QUEUE_STATS = [
  ['ready', 'Ready'], ['unacked', 'Unacked'], ['delayed', 'Delayed'],
  ['consumers', 'Consumers'], ['groups', 'Groups'], ['bytes', 'Bytes ready', fmtBytes],
  ['enqueued', 'Enqueued'], ['delivered', 'Delivered'], ['acked', 'Acked'],
  ['redelivered', 'Redelivered'], ['rejected', 'Rejected'], ['expired', 'Expired'],
  ['dead_lettered', 'Dead-lettered'],
];
const QUEUE_RATES = [['enqueue', 'Enqueue/s'], ['deliver', 'Deliver/s'], ['ack', 'Ack/s']];

const CONSUMER_COLUMNS = [
  { cls: 'link', label: 'Link', text: (c) => c.link },
  { cls: 'connection', label: 'Connection', text: (c) => String(c.connection),
    href: (c) => connectionHref(c.connection) },
  num('credit', 'Credit', (c) => c.credit),
  num('unacked', 'Unacked', (c) => c.unacked),
];

const GROUP_COLUMNS = [
  { cls: 'group', label: 'Group', text: (g) => g.group },
  { cls: 'owner', label: 'Owner', text: (g) => (g.owner_link == null ? 'none' : g.owner_link),
    title: (g) => (g.owner == null ? 'no consumer owns this group' : `consumer ${g.owner}`) },
  num('ready', 'Ready', (g) => g.ready),
  num('unacked', 'Unacked', (g) => g.unacked),
];

const SETTING_COLUMNS = [
  { cls: 'key', label: 'Setting', text: ([key]) => key },
  { cls: 'value', label: 'Value', text: ([, value]) => fmtValue(value) },
];

function queueView(main, name) {
  const stat = (field, label) => h('div', {}, h('dt', {}, label), h('dd', { class: field }, '—'));
  const stats = h('dl', { id: 'queue-stats', class: 'stats' },
    QUEUE_STATS.map(([field, label]) => stat(field, label)),
    QUEUE_RATES.map(([rate, label]) => stat(`${rate}-rate`, label)));
  const flags = h('p', { id: 'queue-flags', class: 'muted' });
  const consumers = table('consumers', CONSUMER_COLUMNS, 'No consumers.', 'compact');
  const groups = table('groups', GROUP_COLUMNS, 'No message groups.', 'compact');
  const settings = table('queue-settings', SETTING_COLUMNS, 'No settings.', 'compact');
  const missing = h('p', { id: 'missing', class: 'notice', hidden: true });
  const details = h('div', { id: 'queue-details' },
    stats, flags,
    h('h2', {}, 'Consumers'), consumers.el,
    h('h2', {}, 'Message groups'), groups.el,
    h('h2', {}, 'Settings'), settings.el);

  const button = (id, label, cls, onClick) =>
    h('button', { id, type: 'button', class: cls, onclick: onClick }, label);
  const actions = h('div', { id: 'queue-actions', class: 'toolbar' },
    button('purge', 'Purge', '', (e) => act(e.currentTarget, {
      question: `Purge queue "${name}"? Its ready messages are dropped; unacknowledged ones stay.`,
      method: 'POST',
      path: `${queuePath(name)}/purge`,
      describe: (r) => `Purged ${plural(r.purged, 'message')} from "${name}".`,
    })),
    button('reset-groups', 'Reset groups', '', (e) => act(e.currentTarget, {
      question: `Reset the message groups of "${name}"? Every group is freed for the next consumer to take.`,
      method: 'POST',
      path: `${queuePath(name)}/reset-groups`,
      describe: (r) => `Reset ${plural(r.reset, 'group')} of "${name}".`,
    })),
    button('delete', 'Delete', 'danger', (e) => act(e.currentTarget, {
      question: `Delete queue "${name}" and all its messages? Its consumers are detached.`,
      method: 'DELETE',
      path: queuePath(name),
      describe: (r) => `Deleted queue "${r.deleted}" and ${plural(r.messages, 'message')}.`,
      after: (message) => navigate('#/', message),
    })));

  main.append(
    h('p', { class: 'crumbs' }, h('a', { href: '#/' }, 'Queues'), ' / '),
    h('h1', { id: 'queue-name' }, name),
    actions, missing, details);

  return {
    title: name,
    load: () => api('GET', queuePath(name)).catch((e) => {
      if (e.status === 404) return null; // gone: say so on the page, not in the error banner
      throw e;
    }),
    render: (q) => {
      missing.hidden = q !== null;
      details.hidden = q === null;
      for (const b of actions.querySelectorAll('button')) b.disabled = q === null;
      if (q === null) {
        setText(missing, `There is no queue "${name}" (any more).`);
        return;
      }
      for (const [field, , format = fmtInt] of QUEUE_STATS) {
        const dd = stats.querySelector(`dd.${field}`);
        setText(dd, format(q[field]));
        dd.dataset.value = String(q[field]);
      }
      for (const [rate] of QUEUE_RATES) setText(stats.querySelector(`dd.${rate}-rate`), fmtRate(q.rates[rate]));
      setText(flags, [q.durable ? 'durable' : 'not durable', q.dynamic ? 'dynamic' : null]
        .filter(Boolean).join(' · '));
      syncRows(consumers.tbody, q.consumers_detail || [], 'consumer', (c) => c.id, CONSUMER_COLUMNS);
      syncRows(groups.tbody, q.groups_detail || [], 'group', (g) => g.group, GROUP_COLUMNS);
      syncRows(settings.tbody, Object.entries(q.settings || {}), 'setting', ([key]) => key, SETTING_COLUMNS);
    },
  };
}

const LINK_COLUMNS = [
  num('handle', 'Handle', (l) => l.handle),
  { cls: 'name', label: 'Name', text: (l) => l.name },
  { cls: 'role', label: 'Role', text: (l) => l.role },
  { cls: 'address', label: 'Address', text: (l) => l.address ?? '—',
    href: (l) => (l.address == null ? null : queueHref(l.address)) },
  num('credit', 'Credit', (l) => l.credit),
  num('unsettled', 'Unsettled', (l) => l.unsettled),
  num('delivery-count', 'Delivery count', (l) => l.delivery_count),
];

function closeConnection(c, button) {
  act(button, {
    question: `Close connection ${c.id} from ${c.peer} (${c.container_id})? ` +
      'The client sees amqp:connection:forced.',
    method: 'DELETE',
    path: `/api/connections/${encodeURIComponent(c.id)}`,
    describe: (r) => `Closing connection ${r.closing}.`,
  });
}

const CONNECTION_COLUMNS = [
  { cls: 'id', label: 'Id', text: (c) => String(c.id), href: (c) => connectionHref(c.id) },
  { cls: 'peer', label: 'Peer', text: (c) => c.peer },
  { cls: 'user', label: 'User', text: (c) => c.user ?? '—', title: (c) => (c.user == null ? 'anonymous' : '') },
  { cls: 'container-id', label: 'Container id', text: (c) => c.container_id },
  { cls: 'connected-at', label: 'Connected since', text: (c) => fmtTime(c.connected_at),
    title: (c) => c.connected_at },
  num('sessions', 'Sessions', (c) => c.sessions),
  num('links', 'Links', (c) => c.links),
  { ...num('bytes-in', 'Bytes in', (c) => c.bytes_in, fmtBytes),
    title: (c) => `${fmtInt(c.bytes_in)} bytes` },
  { ...num('bytes-out', 'Bytes out', (c) => c.bytes_out, fmtBytes),
    title: (c) => `${fmtInt(c.bytes_out)} bytes` },
  { cls: 'actions', label: '', button: { label: 'Close', cls: 'danger close', onClick: closeConnection } },
];

/** The connections page; `selected` is the id whose sessions and links are shown, if any. */
function connectionsView(main, selected) {
  const connections = table('connections', CONNECTION_COLUMNS, 'No open connections.');
  // A click anywhere on a row opens it; the id link does the same for keyboards.
  connections.tbody.addEventListener('click', (event) => {
    const tr = event.target.closest('tr[data-connection]');
    if (tr && !event.target.closest('a, button')) location.hash = connectionHref(tr.dataset.connection);
  });
  connections.el.classList.add('clickable');
  main.append(h('h1', {}, 'Connections'), connections.el);

  let detail = null;
  if (selected != null) {
    detail = {
      heading: h('h2', {}, `Connection ${selected}`),
      note: h('p', { class: 'notice', hidden: true }),
      sessions: h('div', { class: 'sessions' }),
    };
    main.append(h('section', { id: 'connection-detail', dataset: { connection: selected } },
      detail.heading, detail.note, detail.sessions));
  }

  return {
    title: selected == null ? 'Connections' : `Connection ${selected}`,
    load: () => Promise.all([
      api('GET', '/api/connections'),
      selected == null ? null : api('GET', `/api/connections/${encodeURIComponent(selected)}`)
        .catch((e) => {
          if (e.status === 404) return null;
          throw e;
        }),
    ]),
    render: ([list, one]) => {
      syncRows(connections.tbody, list, 'connection', (c) => c.id, CONNECTION_COLUMNS);
      for (const tr of connections.tbody.rows) {
        tr.classList.toggle('selected', tr.dataset.connection === String(selected));
      }
      if (detail) renderConnectionDetail(detail, selected, one);
    },
  };
}

function renderConnectionDetail(detail, id, c) {
  detail.note.hidden = c !== null;
  detail.sessions.hidden = c === null;
  if (c === null) {
    setText(detail.note, `Connection ${id} is closed.`);
    return;
  }
  setText(detail.heading, `Connection ${c.id} · ${c.peer} · ${c.container_id}`);
  // One block per session, keyed by channel like the rows are.
  const existing = new Map([...detail.sessions.children].map((el) => [el.dataset.channel, el]));
  const blocks = (c.sessions_detail || []).map((s) => {
    let block = existing.get(String(s.channel));
    if (!block) {
      const links = table(null, LINK_COLUMNS, 'No links on this session.', 'compact');
      block = h('section', { class: 'session', dataset: { channel: s.channel } }, h('h3'), links.el);
    }
    setText(block.querySelector('h3'), `Session on channel ${s.channel} · ${plural(s.links.length, 'link')}`);
    syncRows(block.querySelector('tbody'), s.links, 'handle', (l) => l.handle, LINK_COLUMNS);
    return block;
  });
  if (blocks.length === 0) blocks.push(h('p', { class: 'muted' }, 'No sessions.'));
  detail.sessions.replaceChildren(...blocks);
}

const EXCHANGE_COLUMNS = [
  { cls: 'name', label: 'Exchange', text: (x) => x.name },
  { cls: 'type', label: 'Type', text: (x) => x.type },
  { cls: 'durable', label: 'Durable', text: (x) => (x.durable ? 'yes' : 'no') },
  { cls: 'unroutable', label: 'Unroutable', text: (x) => x.unroutable,
    title: (x) => (x.alternate_exchange ? `alternate exchange: ${x.alternate_exchange}` : '') },
  num('bindings', 'Bindings', (x) => x.bindings),
];

const BINDING_COLUMNS = [
  { cls: 'exchange', label: 'Exchange', text: (b) => b.exchange },
  { cls: 'queue', label: 'Queue', text: (b) => b.queue, href: (b) => queueHref(b.queue) },
  { cls: 'key', label: 'Key', text: (b) => b.key,
    title: (b) => Object.entries(b.arguments || {}).map(([k, v]) => `${k}=${v}`).join(' ') },
];

/** The exchanges and their bindings. */
function exchangesView(main) {
  const exchanges = table('exchanges', EXCHANGE_COLUMNS, 'No exchanges.');
  const bindings = table('bindings', BINDING_COLUMNS,
    'No bindings: bind a queue with sluice ctl bind, broker.toml [[bindings]], or a subscribing receiver.');
  main.append(h('h1', {}, 'Exchanges'), exchanges.el, h('h2', {}, 'Bindings'), bindings.el);
  const bindingKey = (b) => `${b.exchange}\u0000${b.queue}\u0000${b.key}`;
  return {
    title: 'Exchanges',
    load: () => Promise.all([api('GET', '/api/exchanges'), api('GET', '/api/bindings')]),
    render: ([xs, bs]) => {
      syncRows(exchanges.tbody, xs, 'exchange', (x) => x.name, EXCHANGE_COLUMNS);
      syncRows(bindings.tbody, bs, 'binding', bindingKey, BINDING_COLUMNS);
    },
  };
}

function notFoundView(main) {
  main.append(h('h1', {}, 'Not found'),
    h('p', {}, 'No such page. ', h('a', { href: '#/' }, 'Back to the queues.')));
  return { title: 'Not found', load: async () => null, render: () => {} };
}

// ---------------------------------------------------------------------------------------------
// Routing and the refresh loop

/**
 * '#/', '#/queues/NAME', '#/exchanges', '#/connections', '#/connections/ID'; names arrive
 * percent-encoded.
 */
function parseRoute(hash) {
  const parts = hash.replace(/^#\/?/, '').split('/');
  const decode = (s) => {
    try {
      return decodeURIComponent(s);
    } catch {
      return null;
    }
  };
  if (parts.length === 1 && parts[0] === '') return { view: queuesView, nav: 'nav-queues' };
  if (parts[0] === 'queues' && parts.length === 2 && decode(parts[1])) {
    return { view: queueView, arg: decode(parts[1]), nav: 'nav-queues' };
  }
  if (parts[0] === 'exchanges' && parts.length === 1) {
    return { view: exchangesView, nav: 'nav-exchanges' };
  }
  if (parts[0] === 'connections' && parts.length <= 2) {
    const id = parts[1] ? decode(parts[1]) : null;
    return { view: connectionsView, arg: id, nav: 'nav-connections' };
  }
  return { view: notFoundView };
}

let current = null; // the mounted view
let pollSeq = 0; // bumped by every refresh; an answer older than the newest one is dropped
let pollTimer = null;
let pendingResult = null; // a message for the next page (after Delete)

function navigate(hash, message) {
  pendingResult = message;
  if (location.hash === hash) route();
  else location.hash = hash;
}

function route() {
  const { view, arg, nav } = parseRoute(location.hash);
  const main = byId('view');
  main.replaceChildren();
  current = view(main, arg);
  document.title = `${current.title} · sluice`;
  for (const link of document.querySelectorAll('header nav a')) {
    if (link.id === nav) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  showResult(pendingResult);
  pendingResult = null;
  refresh();
}

/** Fetches the overview and the view's data, renders both, and schedules the next refresh. */
async function refresh() {
  clearTimeout(pollTimer);
  pollTimer = null;
  // A hidden tab does not poll; visibilitychange starts again.
  if (document.hidden) return;
  const seq = ++pollSeq;
  const view = current;
  let error = null;
  try {
    const [overview, data] = await Promise.all([api('GET', '/api/overview'), view.load()]);
    if (seq !== pollSeq) return;
    renderOverview(overview);
    view.render(data);
  } catch (e) {
    if (seq !== pollSeq) return;
    error = e instanceof ApiError ? e : new ApiError(0, String(e));
    // A bug in a view must be visible to whoever debugs the console.
    if (!(e instanceof ApiError)) console.error(e);
  }
  showError(error);
  pollTimer = setTimeout(refresh, POLL_MS);
}

window.addEventListener('hashchange', route);
document.addEventListener('visibilitychange', () => {
  if (!document.hidden) refresh();
});
route();
