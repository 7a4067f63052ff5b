// Vestnik debug console: sign-in, live stats and events over Server-Sent Events, and test events.
// The operator view (every app, managed with the admin token) is in operator.js, which this file's
// start() hands over to.
//
// Plain browser JavaScript with no dependencies. Everything the broker sends is put on the page with
// textContent, never as HTML, so event data cannot inject markup. The secret lives only in the
// sign-in form until the sign-in request is sent, then the field is cleared: the session is an
// HttpOnly cookie this script cannot read.
'use strict';

/** Rows kept in the event list; older ones are removed so a busy app cannot exhaust the tab. */
const MAX_ROWS = 500;

const $ = (id) => document.getElementById(id);

const state = {
  source: null,
  paused: false,
  seen: 0,
  dropped: 0,
  filter: '',
};

/** Calls the console API; resolves to {ok, status, body} and never throws on HTTP errors. */
function api(method, path, body) {
  return request(method, `/console/api/${path}`, body);
}

/**
 * Calls one of the broker's JSON APIs at `url` with extra `headers`; resolves to {ok, status, body}
 * (the error in `body.error`) and never throws.
 */
async function request(method, url, body, headers = {}) {
  const init = { method, credentials: 'same-origin', headers: { ...headers } };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let resp;
  try {
    resp = await fetch(url, init);
  } catch (e) {
    return { ok: false, status: 0, body: { error: `The broker cannot be reached (${e.message})` } };
  }
  let json = {};
  try {
    json = await resp.json();
  } catch {
    json = { error: `Unexpected answer (HTTP ${resp.status})` };
  }
  return { ok: resp.ok, status: resp.status, body: json };
}

/** Shows one view: 'signin', 'console' (one app), 'operator-signin' or 'operator' (every app). */
function show(view) {
  for (const id of ['signin', 'console', 'operator-signin', 'operator']) $(id).hidden = view !== id;
  $('session-bar').hidden = view !== 'console';
  $('operator-bar').hidden = view !== 'operator';
  // An operator watching one app can go back to the list of every app.
  $('back-to-apps').hidden = !operatorToken();
  if (view !== 'operator') stopOperatorPolling();
}

async function showSignIn(message) {
  closeStream();
  show('signin');
  const error = $('signin-error');
  error.hidden = !message;
  error.textContent = message || '';
  const select = $('app-select');
  const { ok, body } = await api('GET', 'apps');
  if (!ok) return;
  const previous = select.value;
  select.replaceChildren(
    ...body.apps.map((a) => {
      const option = document.createElement('option');
      option.value = a.id;
      option.textContent = a.enabled ? a.id : `${a.id} (disabled)`;
      return option;
    }),
  );
  if (previous) select.value = previous;
  $('secret').focus();
}

async function signIn(event) {
  event.preventDefault();
  const secretField = $('secret');
  const button = $('signin-button');
  button.disabled = true;
  const request = { app_id: $('app-select').value, secret: secretField.value };
  secretField.value = '';
  const { ok, body } = await api('POST', 'session', request);
  button.disabled = false;
  if (!ok) {
    const error = $('signin-error');
    error.textContent = body.error || 'Sign-in refused';
    error.hidden = false;
    secretField.focus();
    return;
  }
  showConsole(body.app_id);
}

async function signOut() {
  await api('DELETE', 'session');
  if (operatorToken()) showOperator('Signed out of the app.');
  else showSignIn('Signed out.');
}

function showConsole(appId) {
  $('app-name').textContent = appId;
  $('signin-error').hidden = true;
  show('console');
  resetStream();
  openStream();
}

function resetStream() {
  state.seen = 0;
  state.dropped = 0;
  $('stream').replaceChildren();
  $('stat-events').textContent = '0';
  $('stat-dropped').textContent = '0';
  $('lagged').hidden = true;
  $('no-events').hidden = false;
}

function setLive(s) {
  const live = $('live');
  live.dataset.state = s;
  live.textContent = { open: 'live', connecting: 'connecting', closed: 'disconnected' }[s];
}

function closeStream() {
  if (state.source) state.source.close();
  state.source = null;
}

function openStream() {
  closeStream();
  setLive('connecting');
  const source = new EventSource('/console/api/stream');
  state.source = source;
  source.addEventListener('hello', () => setLive('open'));
  source.addEventListener('stats', (m) => renderStats(JSON.parse(m.data)));
  source.addEventListener('event', (m) => addEvent(JSON.parse(m.data)));
  source.addEventListener('lagged', (m) => {
    const { dropped } = JSON.parse(m.data);
    state.dropped += dropped;
    $('stat-dropped').textContent = String(state.dropped);
    const note = $('lagged');
    note.textContent = `This console fell behind and missed ${state.dropped} event(s).`;
    note.hidden = false;
  });
  source.onerror = async () => {
    if (state.source !== source) return;
    setLive(source.readyState === EventSource.CLOSED ? 'closed' : 'connecting');
    // EventSource retries by itself; a refused stream (session over) stays closed.
    if (source.readyState === EventSource.CLOSED) {
      const { ok, body } = await api('GET', 'session');
      if (ok && !body.signed_in) {
        // An operator goes back to the list of apps (a rotation ends the app's console sessions).
        if (operatorToken()) showOperator(body.reason, false);
        else showSignIn(body.reason);
      }
      else setTimeout(() => state.source === source && openStream(), 2000);
    }
  };
}

function renderStats(stats) {
  $('stat-connections').textContent = String(stats.connections);
  $('stat-channels').textContent = String(stats.channel_count);
  // The day's messages (UTC), and the daily quota when the app has one (0: none).
  const today = stats.messages_today ?? 0;
  const quota = stats.max_messages_per_day ?? 0;
  const messages = $('stat-messages');
  messages.textContent = quota > 0 ? `${today} / ${quota}` : String(today);
  messages.classList.toggle('over-quota', quota > 0 && today >= quota);
  const rows = stats.channels.map((c) => {
    const tr = document.createElement('tr');
    tr.dataset.channel = c.name;
    for (const text of [c.name, c.subscription_count, c.user_count ?? '–']) {
      const td = document.createElement('td');
      td.textContent = String(text);
      tr.append(td);
    }
    return tr;
  });
  $('channels').replaceChildren(...rows);
  $('no-channels').hidden = rows.length > 0;
}

function span(cls, text) {
  const el = document.createElement('span');
  el.className = cls;
  el.textContent = text;
  return el;
}

const LABELS = {
  trigger: 'API message',
  client_event: 'client event',
  subscribed: 'subscribed',
  unsubscribed: 'unsubscribed',
  occupied: 'occupied',
  vacated: 'vacated',
  member_added: 'member added',
  member_removed: 'member removed',
  cache_miss: 'cache miss',
};

function matches(li) {
  return !state.filter || li.dataset.search.includes(state.filter);
}

function addEvent(e) {
  state.seen += 1;
  $('stat-events').textContent = String(state.seen);
  if (state.paused) return;
  const li = document.createElement('li');
  li.dataset.type = e.type;
  li.dataset.search = [e.type, e.channel, e.event || '', e.user_id || ''].join(' ').toLowerCase();
  const time = new Date(e.at).toLocaleTimeString([], { hour12: false });
  const what = document.createElement('div');
  what.className = 'what';
  what.append(span('channel', e.channel));
  if (e.event) what.append(span('event', e.event));
  const meta = [];
  if (e.user_id) meta.push(`user ${e.user_id}`);
  if (e.socket_id) meta.push(`socket ${e.socket_id}`);
  if (e.recipients !== undefined) meta.push(`${e.recipients} recipient(s) here`);
  if (meta.length) what.append(span('meta', meta.join(' · ')));
  if (e.data !== undefined) what.append(span('data', e.data));
  li.append(span('time', time), span('type', LABELS[e.type] || e.type), what);
  li.hidden = !matches(li);
  const list = $('stream');
  list.prepend(li);
  while (list.children.length > MAX_ROWS) list.lastElementChild.remove();
  $('no-events').hidden = true;
}

async function sendEvent(event) {
  event.preventDefault();
  const result = $('send-result');
  const data = $('send-data').value;
  try {
    JSON.parse(data);
  } catch (e) {
    result.dataset.ok = 'false';
    result.textContent = `Data is not valid JSON: ${e.message}`;
    result.hidden = false;
    return;
  }
  const button = $('send-button');
  button.disabled = true;
  const { ok, body } = await api('POST', 'events', {
    channel: $('send-channel').value.trim(),
    name: $('send-event').value.trim(),
    data,
  });
  button.disabled = false;
  result.dataset.ok = String(ok);
  result.textContent = ok ? `Sent to ${body.sent.join(', ')}` : body.error || 'Refused';
  result.hidden = false;
}

/**
 * Shows the newest kept events of a channel (its history, docs/recovery.md), newest first, with the
 * epoch and offsets; a channel without history says why.
 */
async function showHistory(event) {
  event?.preventDefault();
  const channel = $('history-channel').value.trim();
  const result = $('history-result');
  const { ok, body } = await api('GET', `history?channel=${encodeURIComponent(channel)}`);
  result.dataset.ok = String(ok);
  result.hidden = false;
  if (!ok) {
    result.textContent = body.error || 'Refused';
    $('history').replaceChildren();
    return;
  }
  result.textContent = body.epoch
    ? `Epoch ${body.epoch}: offsets ${body.first_offset} to ${body.last_offset}, ${body.events.length} shown`
    : 'No events kept for this channel';
  const rows = body.events.map((e) => {
    const li = document.createElement('li');
    li.dataset.offset = String(e.offset);
    const what = document.createElement('div');
    what.className = 'what';
    what.append(span('event', e.event ?? '?'));
    if (e.user_id) what.append(span('meta', `user ${e.user_id}`));
    what.append(span('data', e.data ?? ''));
    const time = new Date(e.published_at_ms).toLocaleTimeString([], { hour12: false });
    li.append(span('time', time), span('type offset', `#${e.offset}`), what);
    return li;
  });
  $('history').replaceChildren(...rows.reverse());
}

function wire() {
  $('history-form').addEventListener('submit', showHistory);
  // A click on a channel in the list shows its history.
  $('channels').addEventListener('click', (e) => {
    const tr = e.target.closest('tr');
    if (!tr?.dataset.channel) return;
    $('history-channel').value = tr.dataset.channel;
    showHistory();
  });
  $('signin-form').addEventListener('submit', signIn);
  $('signout').addEventListener('click', signOut);
  wireOperator();
  $('send-form').addEventListener('submit', sendEvent);
  $('clear').addEventListener('click', () => resetStream());
  $('pause').addEventListener('click', () => {
    state.paused = !state.paused;
    $('pause').textContent = state.paused ? 'Resume' : 'Pause';
  });
  $('filter').addEventListener('input', () => {
    state.filter = $('filter').value.trim().toLowerCase();
    for (const li of $('stream').children) li.hidden = !matches(li);
  });
}

async function start() {
  wire();
  const { ok, body } = await api('GET', 'session');
  if (ok && body.signed_in) showConsole(body.app_id);
  else if (operatorToken()) showOperator();
  else showSignIn(ok ? '' : body.error);
}

// operator.js is loaded after this file (both deferred); both have run before DOMContentLoaded.
document.addEventListener('DOMContentLoaded', start);
