// Vestnik debug console, operator view: every app of the broker, managed with the admin token.
//
// Loaded after console.js, whose helpers it uses ($, request, api, show, span, showConsole,
// showSignIn). The admin token is entered once and kept in this tab's sessionStorage only (gone when
// the tab closes or the operator signs out); it is sent in the Authorization header to the broker's
// admin API (/admin/apps, which does every change) and to the console's operator routes (the live
// connection counts, and opening one app's view), never in a URL, and never logged. A secret is
// shown only in the answer of a create or a rotation, once, and removed from the page when dismissed.
'use strict';

/** sessionStorage key of the admin token. */
const TOKEN_KEY = 'vestnik.console.adminToken';
/** How often the list (and its connection counts) is refreshed while shown. */
const OPERATOR_POLL_MS = 2000;

const operator = {
  /** The admin records by id, as last read (managed apps), for the edit form's diff. */
  records: new Map(),
  /** Whether apps are managed here (an app database) or come from the config file. */
  managed: false,
  timer: null,
  /** Ignores answers of a refresh that an action or a newer refresh overtook. */
  generation: 0,
};

/** The admin token of this tab, or null. */
function operatorToken() {
  try {
    return sessionStorage.getItem(TOKEN_KEY);
  } catch {
    return null;
  }
}

/** Calls the admin API, or a console operator route, with the admin token. */
function adminRequest(method, url, body) {
  return request(method, url, body, { Authorization: `Bearer ${operatorToken()}` });
}

function stopOperatorPolling() {
  clearTimeout(operator.timer);
  operator.timer = null;
}

function showOperatorSignIn(message) {
  show('operator-signin');
  const error = $('operator-error');
  error.textContent = message || '';
  error.hidden = !message;
  $('admin-token').focus();
}

/** Forgets the token and goes back to the operator sign-in with `message`. */
function operatorSignedOut(message) {
  try {
    sessionStorage.removeItem(TOKEN_KEY);
  } catch {
    // Storage refused: the token was never kept.
  }
  operator.records.clear();
  hideSecret();
  showOperatorSignIn(message);
}

/** What an operator call's refusal says to the operator. */
function refusal(status, body) {
  if (status === 404 && body.error === 'No route for the admin API') {
    return 'This broker has no admin token set (--admin-token), so the operator view is off.';
  }
  return body.error || `Refused (HTTP ${status})`;
}

async function operatorSignIn(event) {
  event.preventDefault();
  const field = $('admin-token');
  const token = field.value;
  field.value = '';
  try {
    sessionStorage.setItem(TOKEN_KEY, token);
  } catch {
    showOperatorSignIn('This browser refuses session storage, which the operator view needs.');
    return;
  }
  $('operator-button').disabled = true;
  const { ok, status, body } = await adminRequest('GET', '/console/api/operator/apps');
  $('operator-button').disabled = false;
  if (!ok) {
    operatorSignedOut(status === 401 ? 'Wrong admin token.' : refusal(status, body));
    return;
  }
  showOperator();
}

async function operatorSignOut() {
  await api('DELETE', 'session');
  operatorSignedOut('');
  showSignIn('Signed out.');
}

/** Shows the list of every app, with `message` on top (a success unless `ok` is false), and keeps it fresh. */
function showOperator(message, ok = true) {
  closeStream();
  show('operator');
  setMessage(message || '', ok);
  refreshApps();
}

function setMessage(text, ok) {
  const m = $('op-message');
  m.textContent = text;
  m.dataset.ok = String(ok);
  m.hidden = !text;
}

/** Reads the apps (and their connections), renders them, and schedules the next read. */
async function refreshApps() {
  stopOperatorPolling();
  const generation = ++operator.generation;
  const live = await adminRequest('GET', '/console/api/operator/apps');
  let records = null;
  if (live.ok && live.body.managed) {
    const list = await adminRequest('GET', '/admin/apps');
    if (!list.ok) return operatorFailed(list, generation);
    records = list.body.apps;
  }
  if (generation !== operator.generation || $('operator').hidden) return;
  if (!live.ok) return operatorFailed(live, generation);
  operator.managed = live.body.managed;
  renderApps(live.body.apps, records);
  operator.timer = setTimeout(refreshApps, OPERATOR_POLL_MS);
}

function operatorFailed({ status, body }, generation) {
  if (generation !== operator.generation) return;
  if (status === 401 || status === 404) {
    operatorSignedOut(status === 401 ? 'The admin token is no longer accepted; sign in again.' : refusal(status, body));
    return;
  }
  setMessage(refusal(status, body), false);
  operator.timer = setTimeout(refreshApps, OPERATOR_POLL_MS);
}

/** The limits column: the ones an operator checks first (0 is no limit). */
function limitsSummary(record, served) {
  const n = (v, unit = '') => (v ? `${v}${unit}` : '∞');
  if (!record) return `connections ≤ ${n(served.max_connections)}`;
  const { limits, quotas } = record;
  return [
    `connections ≤ ${n(limits.max_connections)}`,
    `API ${n(limits.api_rate_limit, '/s')}`,
    `event ≤ ${limits.max_event_bytes} B`,
    `quota: ${n(quotas.max_connections)} conns, ${n(quotas.max_messages_per_day)} msgs/day`,
  ].join(' · ');
}

/** A table cell; `label` names it where a phone shows the row as a card (console.css). */
function cell(text, cls, label) {
  const td = document.createElement('td');
  td.textContent = text;
  if (cls) td.className = cls;
  td.dataset.label = label;
  return td;
}

function actionButton(label, action, cls = 'secondary') {
  const b = document.createElement('button');
  b.type = 'button';
  b.className = cls;
  b.textContent = label;
  b.dataset.action = action;
  return b;
}

/**
 * Renders the table: the admin records when apps are managed here (with their connections), else
 * the served apps read-only. A row is rebuilt only when its app changed, so buttons stay put while
 * the counts refresh.
 */
function renderApps(served, records) {
  const byId = new Map(served.map((a) => [a.id, a]));
  operator.records = new Map((records || []).map((r) => [r.id, r]));
  const rows = records || served;
  const note = $('op-note');
  note.hidden = operator.managed;
  note.textContent = operator.managed
    ? ''
    : 'These apps come from the config file: change them there and send SIGHUP, or run the broker ' +
      'with --apps-url to manage them here.';
  const tbody = $('op-apps');
  const old = new Map([...tbody.children].map((tr) => [tr.dataset.id, tr]));
  const next = rows.map((app) => {
    const live = byId.get(app.id);
    // A row is rebuilt when its app changed, or when this node starts serving it (a created app is
    // served once the node's feed applied it, a moment after the create's answer).
    const version = `${records ? app.revision : `${app.key}/${app.enabled}/${app.max_connections}`}/${Boolean(live)}`;
    let tr = old.get(app.id);
    if (!tr || tr.dataset.version !== version) {
      tr = document.createElement('tr');
      tr.dataset.id = app.id;
      tr.dataset.version = version;
      tr.dataset.enabled = String(app.enabled);
      const state = cell(app.enabled ? 'enabled' : 'disabled', 'state', 'State');
      const actions = document.createElement('td');
      actions.className = 'actions';
      if (live) actions.append(actionButton('Open', 'open'));
      if (records) {
        actions.append(
          actionButton('Edit', 'edit'),
          app.enabled ? actionButton('Disable', 'disable') : actionButton('Enable', 'enable'),
          actionButton('Rotate secret', 'rotate'),
          actionButton('Delete', 'delete', 'danger'),
        );
      }
      tr.append(
        cell(app.id, 'mono', 'App'),
        cell(app.key, 'mono', 'Key'),
        state,
        cell('–', 'conns', 'Conns'),
        cell(limitsSummary(records ? app : null, app), 'limits', 'Limits'),
        actions,
      );
    }
    tr.querySelector('.conns').textContent = live ? String(live.connections) : '–';
    return tr;
  });
  tbody.replaceChildren(...next);
  $('op-no-apps').hidden = next.length > 0;
}

/** Shows the id, key and secret of a create or rotation answer, once. */
function showSecret(title, record, note) {
  $('op-secret-title').textContent = title;
  $('op-secret-id').textContent = record.id;
  $('op-secret-key').textContent = record.key;
  $('op-secret-value').textContent = record.secret;
  $('op-secret-note').textContent = note;
  $('op-secret').hidden = false;
}

/** Removes the secret from the page. */
function hideSecret() {
  for (const id of ['op-secret-title', 'op-secret-id', 'op-secret-key', 'op-secret-value', 'op-secret-note']) {
    $(id).textContent = '';
  }
  $('op-secret').hidden = true;
}

function closePanels() {
  for (const id of ['op-create', 'op-edit', 'op-rotate', 'op-delete']) $(id).hidden = true;
}

function openPanel(id, appId) {
  closePanels();
  $(id).hidden = false;
  $(id).dataset.app = appId || '';
  const label = $(`${id}-id`);
  if (label) label.textContent = appId;
  $(id).scrollIntoView({ block: 'nearest' });
}

/** Parses a JSON field of a form; throws an Error naming the field. */
function jsonField(id, what) {
  const text = $(id).value.trim();
  try {
    return JSON.parse(text || 'null');
  } catch (e) {
    throw new Error(`${what} is not valid JSON: ${e.message}`);
  }
}

/** Runs one admin call for an action and shows its outcome; resolves to the answer's body or null. */
async function adminAction(method, path, body, done) {
  const { ok, status, body: answer } = await adminRequest(method, `/admin/apps${path}`, body);
  if (!ok) {
    if (status === 401) {
      operatorSignedOut('The admin token is no longer accepted; sign in again.');
      return null;
    }
    setMessage(refusal(status, answer), false);
    return null;
  }
  setMessage(done(answer), true);
  refreshApps();
  return answer;
}

async function createApp(event) {
  event.preventDefault();
  const body = {};
  const id = $('op-create-id').value.trim();
  const key = $('op-create-key').value.trim();
  if (id) body.id = id;
  if (key) body.key = key;
  try {
    const limits = jsonField('op-create-limits', 'Limits');
    const webhooks = jsonField('op-create-webhooks', 'Webhooks');
    if (limits && Object.keys(limits).length) body.limits = limits;
    if (webhooks && webhooks.length) body.webhooks = webhooks;
  } catch (e) {
    setMessage(e.message, false);
    return;
  }
  $('op-create-button').disabled = true;
  const created = await adminAction('POST', '', body, (a) => `Created app ${a.id}.`);
  $('op-create-button').disabled = false;
  if (!created) return;
  closePanels();
  $('op-create-form').reset();
  showSecret(
    `App ${created.id} created. Copy its secret now: it is not shown again.`,
    created,
    'A lost secret cannot be read back: rotate it to get a new one.',
  );
}

/** The keys of `edited` that differ from `current` (a group's patch), or null when none do. */
function changedKeys(current, edited) {
  const out = {};
  for (const [k, v] of Object.entries(edited || {})) {
    if (JSON.stringify(v) !== JSON.stringify(current?.[k])) out[k] = v;
  }
  return Object.keys(out).length ? out : null;
}

function startEdit(id) {
  const r = operator.records.get(id);
  if (!r) return;
  openPanel('op-edit', id);
  const pretty = (v) => JSON.stringify(v, null, 1);
  $('op-edit-limits').value = pretty(r.limits);
  $('op-edit-options').value = pretty(r.options);
  $('op-edit-quotas').value = pretty(r.quotas);
  $('op-edit-webhooks').value = pretty(r.webhooks);
}

async function saveEdit(event) {
  event.preventDefault();
  const id = $('op-edit').dataset.app;
  const r = operator.records.get(id);
  if (!r) return setMessage(`App ${id} is gone.`, false);
  const patch = {};
  try {
    for (const group of ['limits', 'options', 'quotas']) {
      const value = jsonField(`op-edit-${group}`, group[0].toUpperCase() + group.slice(1));
      if (value === null || typeof value !== 'object' || Array.isArray(value)) {
        throw new Error(`${group} must be a JSON object`);
      }
      const changed = changedKeys(r[group], value);
      if (changed) patch[group] = changed;
    }
    const webhooks = jsonField('op-edit-webhooks', 'Webhooks');
    if (JSON.stringify(webhooks) !== JSON.stringify(r.webhooks)) patch.webhooks = webhooks;
  } catch (e) {
    setMessage(e.message, false);
    return;
  }
  if (!Object.keys(patch).length) {
    setMessage(`Nothing changed for app ${id}.`, true);
    return;
  }
  $('op-edit-button').disabled = true;
  const done = await adminAction('PATCH', `/${encodeURIComponent(id)}`, patch, () => `Saved app ${id}.`);
  $('op-edit-button').disabled = false;
  if (done) closePanels();
}

async function rotateSecret(event) {
  event.preventDefault();
  const id = $('op-rotate').dataset.app;
  const grace = Number($('op-rotate-grace').value);
  $('op-rotate-button').disabled = true;
  const rotated = await adminAction(
    'POST',
    `/${encodeURIComponent(id)}/rotate-secret`,
    { grace_seconds: grace },
    () => `Rotated the secret of app ${id}.`,
  );
  $('op-rotate-button').disabled = false;
  if (!rotated) return;
  closePanels();
  const until = rotated.previous_secret_expires_at
    ? `The old secret stays valid until ${new Date(rotated.previous_secret_expires_at * 1000).toLocaleString()}.`
    : 'The old secret no longer works.';
  showSecret(`New secret of app ${id}. Copy it now: it is not shown again.`, rotated, until);
}

async function deleteApp() {
  const id = $('op-delete').dataset.app;
  $('op-delete-confirm').disabled = true;
  const done = await adminAction('DELETE', `/${encodeURIComponent(id)}`, undefined, () => `Deleted app ${id}.`);
  $('op-delete-confirm').disabled = false;
  if (done) closePanels();
}

/** Opens one app's view (events, stats, history) with the admin token instead of its secret. */
async function openApp(id) {
  const { ok, status, body } = await adminRequest('POST', '/console/api/operator/session', { app_id: id });
  if (!ok) return setMessage(refusal(status, body), false);
  showConsole(body.app_id);
}

/** One click in the table: the row's app and the button's action. */
function onTableClick(e) {
  const button = e.target.closest('button[data-action]');
  const id = button?.closest('tr')?.dataset.id;
  if (!id) return;
  const enc = encodeURIComponent(id);
  switch (button.dataset.action) {
    case 'open':
      return openApp(id);
    case 'edit':
      return startEdit(id);
    case 'disable':
      return adminAction('POST', `/${enc}/disable`, undefined, () => `Disabled app ${id}: its sockets were closed (4003).`);
    case 'enable':
      return adminAction('POST', `/${enc}/enable`, undefined, () => `Enabled app ${id}.`);
    case 'rotate':
      return openPanel('op-rotate', id);
    case 'delete':
      return openPanel('op-delete', id);
    default:
      return undefined;
  }
}

function wireOperator() {
  $('to-operator').addEventListener('click', () => showOperatorSignIn(''));
  $('to-app-signin').addEventListener('click', () => showSignIn(''));
  $('operator-form').addEventListener('submit', operatorSignIn);
  $('operator-signout').addEventListener('click', operatorSignOut);
  $('back-to-apps').addEventListener('click', () => showOperator());
  $('op-refresh').addEventListener('click', () => refreshApps());
  $('op-new').addEventListener('click', () => openPanel('op-create'));
  $('op-apps').addEventListener('click', onTableClick);
  $('op-create-form').addEventListener('submit', createApp);
  $('op-edit-form').addEventListener('submit', saveEdit);
  $('op-rotate-form').addEventListener('submit', rotateSecret);
  $('op-delete-confirm').addEventListener('click', deleteApp);
  $('op-secret-dismiss').addEventListener('click', hideSecret);
  for (const id of ['op-create', 'op-edit', 'op-rotate', 'op-delete']) {
    $(`${id}-cancel`).addEventListener('click', closePanels);
  }
}
