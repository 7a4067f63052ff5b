// The debug console at /console, in real Chromium (playwright-core), against the real broker with
// pusher-js clients and the `pusher` Node SDK: sign-in and refusal, live counts and channel list, the
// event stream (subscriptions, API triggers, client events, members, vacates), a channel's history, test events sent from
// the page, the JSON errors of its API, and (without the browser) a console on one node of a Redis or
// NATS cluster seeing the other nodes, and the page fitting a phone. Saves its screenshots with
// `screenshotPath` (target/screenshots/, or docs/ for scripts/screenshots.sh).
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import { launchChromium, watchPageErrors } from '../browser.js';
import { ADAPTERS, withCluster } from '../cluster-helpers.js';
import {
  APPS,
  connected,
  openPusher,
  screenshotPath,
  serverSdk,
  startBroker,
  subscribe,
  waitFor,
} from '../helpers.js';

// Phone widths the page must fit without sideways scrolling: a common phone (390) and the width the
// first look found too wide (420).
const PHONE_WIDTHS = [420, 390];
const DESKTOP = { width: 1360, height: 900 };
// Waits in the browser are on conditions; this bounds each one.
const UI_TIMEOUT_MS = 10000;

let broker;
let browser;
let page;
let pageErrors;
let sdk;

before(async () => {
  // Sign-in attempts unlimited here: this file signs in many times a minute; the limit has its own test.
  broker = await startBroker({ tables: { console: { stats_interval_ms: 200, signin_attempts: 0 } } });
  sdk = serverSdk(broker);
  browser = await launchChromium();
  const context = await browser.newContext({ viewport: DESKTOP });
  page = await context.newPage();
  pageErrors = watchPageErrors(page);
});
after(async () => {
  await browser?.close();
  await broker?.stop();
});

/** The stream's rows as plain objects, newest first. */
const streamRows = () =>
  page.$$eval('#stream li', (lis) =>
    lis.map((li) => ({
      type: li.dataset.type,
      channel: li.querySelector('.channel')?.textContent,
      event: li.querySelector('.event')?.textContent ?? null,
      meta: li.querySelector('.meta')?.textContent ?? '',
      data: li.querySelector('.data')?.textContent ?? null,
    })),
  );

/** Waits until a stream row matches `predicate` and returns it. */
const rowWhere = (predicate, what) =>
  waitFor(async () => (await streamRows()).find(predicate), UI_TIMEOUT_MS, what, async () =>
    JSON.stringify(await streamRows()),
  );

/** The channel table as {name: [subscriptions, users]}. */
const channelTable = () =>
  page.$$eval('#channels tr', (trs) =>
    Object.fromEntries(trs.map((tr) => [tr.dataset.channel, [...tr.children].slice(1).map((td) => td.textContent)])),
  );

const text = (selector) => page.textContent(selector);

describe('debug console in Chromium', () => {
  it('refuses a wrong secret with a clear message and no session', async () => {
    await page.goto(`${broker.httpUrl}/console`);
    await page.waitForSelector('#signin-form', { state: 'visible' });
    const options = await page.$$eval('#app-select option', (os) => os.map((o) => o.value));
    assert.deepEqual(options, Object.values(APPS).map((a) => a.id));
    // The page lists apps but never their keys or secrets.
    const html = await page.content();
    for (const app of Object.values(APPS)) assert.ok(!html.includes(app.secret), app.secret);

    await page.selectOption('#app-select', APPS.main.id);
    await page.fill('#secret', 'not-the-secret');
    const [response] = await Promise.all([
      page.waitForResponse((r) => r.url().endsWith('/console/api/session') && r.request().method() === 'POST'),
      page.click('#signin-button'),
    ]);
    assert.equal(response.status(), 401);
    assert.equal((await response.json()).error, `Wrong secret for app "${APPS.main.id}"`);
    await page.waitForSelector('#signin-error', { state: 'visible' });
    assert.equal(await text('#signin-error'), `Wrong secret for app "${APPS.main.id}"`);
    assert.equal(await page.isHidden('#console'), true);
    assert.deepEqual(await page.context().cookies(), []);
  });

  it('signs in with the secret into an HttpOnly, SameSite=Strict session cookie', async () => {
    await page.fill('#secret', APPS.main.secret);
    await page.click('#signin-button');
    await page.waitForSelector('#console', { state: 'visible' });
    assert.equal(await text('#app-name'), APPS.main.id);
    await page.waitForFunction(() => document.getElementById('live').dataset.state === 'open', null, {
      timeout: UI_TIMEOUT_MS,
    });
    // The secret is gone from the page once the sign-in request left.
    assert.equal(await page.inputValue('#secret'), '');
    const cookies = await page.context().cookies();
    assert.equal(cookies.length, 1);
    const [cookie] = cookies;
    assert.equal(cookie.name, 'vestnik_console');
    assert.equal(cookie.httpOnly, true);
    assert.equal(cookie.sameSite, 'Strict');
    assert.equal(cookie.path, '/console');
    assert.ok(!cookie.value.includes(APPS.main.secret));
    // Script cannot read it.
    assert.equal(await page.evaluate(() => document.cookie), '');
    await page.waitForFunction(() => document.getElementById('stat-connections').textContent === '0', null, {
      timeout: UI_TIMEOUT_MS,
    });
    assert.equal(await text('#stat-channels'), '0');
  });

  it("shows a pusher-js client's subscription, the counts and the channel list", async () => {
    const client = openPusher(broker);
    const socketId = await connected(client);
    await subscribe(client, 'orders');
    const row = await rowWhere((r) => r.type === 'subscribed' && r.channel === 'orders', 'subscribed row');
    assert.match(row.meta, new RegExp(`socket ${socketId.replace('.', '\\.')}`));
    await rowWhere((r) => r.type === 'occupied' && r.channel === 'orders', 'occupied row');
    await page.waitForFunction(() => document.getElementById('stat-connections').textContent === '1', null, {
      timeout: UI_TIMEOUT_MS,
    });
    await waitFor(async () => (await channelTable()).orders?.[0] === '1', UI_TIMEOUT_MS, 'orders in the table');
    assert.equal(await text('#stat-channels'), '1');

    // Presence: the member shows up in the stream and the user count in the table.
    const member = openPusher(broker, { presence: { user_id: 'ada', user_info: { name: 'Ada' } } });
    await connected(member);
    const room = await subscribe(member, 'presence-support');
    await rowWhere((r) => r.type === 'member_added' && r.meta.includes('user ada'), 'member_added row');
    await waitFor(
      async () => JSON.stringify((await channelTable())['presence-support']) === '["1","1"]',
      UI_TIMEOUT_MS,
      'presence-support with 1 subscription and 1 user',
      async () => JSON.stringify(await channelTable()),
    );
    await page.waitForFunction(() => document.getElementById('stat-connections').textContent === '2', null, {
      timeout: UI_TIMEOUT_MS,
    });
    // A client event on the presence channel, with its sender.
    room.trigger('client-typing', { typing: true });
    const typed = await rowWhere((r) => r.type === 'client_event' && r.event === 'client-typing', 'client event row');
    assert.match(typed.meta, /user ada/);
    assert.equal(JSON.parse(typed.data).typing, true);
  });

  it('streams an event triggered with the pusher Node SDK, and no other app\'s', async () => {
    // The day's message count (no quota on this app: a bare number) grows with this app's
    // trigger: one message received, one delivered.
    const before = Number(await text('#stat-messages'));
    assert.ok(Number.isInteger(before), `messages today: ${await text('#stat-messages')}`);
    await serverSdk(broker, APPS.counts).trigger('orders', 'other-app-event', { secret: 'elsewhere' });
    await sdk.trigger('orders', 'order-created', { id: 7, total: '12.50' });
    await waitFor(async () => Number(await text('#stat-messages')) >= before + 2, UI_TIMEOUT_MS, 'messages today counted');
    const row = await rowWhere((r) => r.type === 'trigger' && r.event === 'order-created', 'trigger row');
    assert.equal(row.channel, 'orders');
    assert.deepEqual(JSON.parse(row.data), { id: 7, total: '12.50' });
    assert.match(row.meta, /1 recipient/);
    assert.equal((await streamRows()).some((r) => r.event === 'other-app-event'), false);
  });

  it('sends a test event from the page to a pusher-js client', async () => {
    const client = openPusher(broker);
    await connected(client);
    const channel = await subscribe(client, 'test-events');
    const got = new Promise((resolve) => channel.bind('console-ping', resolve));
    await page.fill('#send-channel', 'test-events');
    await page.fill('#send-event', 'console-ping');
    await page.fill('#send-data', '{"hello": "from the browser", "n": 3}');
    await page.click('#send-button');
    const data = await Promise.race([
      got,
      new Promise((_, reject) => setTimeout(() => reject(new Error('no console-ping')), UI_TIMEOUT_MS)),
    ]);
    assert.deepEqual(data, { hello: 'from the browser', n: 3 });
    await page.waitForSelector('#send-result[data-ok="true"]', { timeout: UI_TIMEOUT_MS });
    assert.equal(await text('#send-result'), 'Sent to test-events');
    await rowWhere((r) => r.type === 'trigger' && r.event === 'console-ping', 'the test event in the stream');
  });

  it('shows the broker refusing a bad channel name and bad JSON from the form', async () => {
    await page.fill('#send-channel', 'no spaces allowed');
    await page.fill('#send-event', 'x');
    await page.fill('#send-data', '{}');
    await page.click('#send-button');
    await page.waitForSelector('#send-result[data-ok="false"]', { timeout: UI_TIMEOUT_MS });
    assert.match(await text('#send-result'), /Invalid channel name "no spaces allowed"/);
    // The page checks JSON before sending.
    await page.fill('#send-channel', 'test-events');
    await page.fill('#send-data', '{oops');
    await page.click('#send-button');
    await waitFor(async () => (await text('#send-result')).startsWith('Data is not valid JSON'), UI_TIMEOUT_MS, 'JSON note');
  });

  it("shows a channel's history newest first with its offsets, also on a click in the channel list", async () => {
    const client = openPusher(broker);
    await connected(client);
    await subscribe(client, 'history-orders');
    for (let step = 1; step <= 3; step++) await sdk.trigger('history-orders', 'status', { step });
    const historyRows = () =>
      page.$$eval('#history li', (lis) =>
        lis.map((li) => [Number(li.dataset.offset), li.querySelector('.event').textContent, li.querySelector('.data').textContent]),
      );
    await page.fill('#history-channel', 'history-orders');
    await page.click('#history-button');
    await page.waitForSelector('#history-result[data-ok="true"]', { timeout: UI_TIMEOUT_MS });
    assert.match(await text('#history-result'), /^Epoch [0-9a-f]{12}: offsets 1 to 3, 3 shown$/);
    assert.deepEqual(await historyRows(), [3, 2, 1].map((step) => [step, 'status', JSON.stringify({ step })]));

    await sdk.trigger('history-orders', 'status', { step: 4 });
    await page.fill('#history-channel', '');
    await page.click('#channels tr[data-channel="history-orders"]');
    await waitFor(async () => (await historyRows()).length === 4, UI_TIMEOUT_MS, 'four rows after the click');
    assert.equal(await page.inputValue('#history-channel'), 'history-orders');
    assert.deepEqual((await historyRows())[0], [4, 'status', '{"step":4}']);
    client.disconnect();
  });

  it('shows unsubscriptions, member removal and vacates, and saves the screenshot', async () => {
    const client = openPusher(broker);
    await connected(client);
    await subscribe(client, 'private-invoices');
    await subscribe(client, 'inventory');
    client.unsubscribe('inventory');
    await rowWhere((r) => r.type === 'vacated' && r.channel === 'inventory', 'vacated row');
    await rowWhere((r) => r.type === 'unsubscribed' && r.channel === 'inventory', 'unsubscribed row');
    const guest = openPusher(broker, { presence: { user_id: 'grace', user_info: { name: 'Grace' } } });
    await connected(guest);
    await subscribe(guest, 'presence-support');
    await rowWhere((r) => r.type === 'member_added' && r.meta.includes('user grace'), 'grace joins');
    guest.disconnect();
    await rowWhere((r) => r.type === 'member_removed' && r.meta.includes('user grace'), 'grace leaves');
    await sdk.trigger(['orders', 'presence-support'], 'order-shipped', { id: 7, carrier: 'DHL' });
    await rowWhere((r) => r.event === 'order-shipped' && r.channel === 'presence-support', 'shipped');
    // Reset the form so the screenshot shows a ready-to-send event, not the last error.
    await page.fill('#send-channel', 'orders');
    await page.fill('#send-event', 'order-updated');
    await page.fill('#send-data', '{"id": 7, "status": "packed"}');
    await page.click('#send-button');
    await page.waitForSelector('#send-result[data-ok="true"]', { timeout: UI_TIMEOUT_MS });
    await rowWhere((r) => r.event === 'order-updated', 'order-updated');
    await page.screenshot({ path: screenshotPath('console.png'), fullPage: true });
  });

  it('fits a phone: no sideways scrolling at 420 and 390 px, with the stream and channels filled', async () => {
    // A long channel name and event data with no spaces are the widest things a stream shows.
    await sdk.trigger(['presence-support'], 'order-shipped-with-a-long-event-name', {
      tracking: 'X'.repeat(120),
    });
    await rowWhere((r) => r.event === 'order-shipped-with-a-long-event-name', 'long row');
    try {
      for (const width of PHONE_WIDTHS) {
        await page.setViewportSize({ width, height: 844 });
        const scrollWidth = await page.evaluate(() => document.documentElement.scrollWidth);
        assert.ok(scrollWidth <= width, `the console is ${scrollWidth} px wide at ${width} px`);
      }
      await page.screenshot({ path: screenshotPath('console-390.png'), fullPage: true });
    } finally {
      await page.setViewportSize(DESKTOP);
    }
  });

  it('signs out, after which the API refuses the old browser', async () => {
    await page.click('#signout');
    await page.waitForSelector('#signin-form', { state: 'visible' });
    assert.equal(await text('#signin-error'), 'Signed out.');
    assert.deepEqual(await page.context().cookies(), []);
    const status = await page.evaluate(async () => (await fetch('/console/api/stats')).status);
    assert.equal(status, 401);
    // Chromium logs every 4xx answer; the refusals this suite asked for are the only errors: the wrong
    // secret, the bad channel name, and this last call.
    const refused = (status) => `console.error: Failed to load resource: the server responded with a status of ${status}`;
    assert.deepEqual(pageErrors, [
      `${refused(401)} (Unauthorized)`,
      `${refused(400)} (Bad Request)`,
      `${refused(401)} (Unauthorized)`,
    ]);
  });
});

describe('console API errors (JSON, 4xx)', () => {
  const call = async (method, path, { body, cookie, type = 'application/json' } = {}) => {
    const headers = {};
    if (body !== undefined) headers['content-type'] = type;
    if (cookie) headers.cookie = cookie;
    const res = await fetch(`${broker.httpUrl}/console/api/${path}`, { method, body, headers });
    return { status: res.status, json: await res.json(), headers: res.headers };
  };
  const signIn = async () => {
    const res = await call('POST', 'session', { body: JSON.stringify({ app_id: APPS.main.id, secret: APPS.main.secret }) });
    assert.equal(res.status, 200);
    return res.headers.get('set-cookie').split(';')[0];
  };

  it('an unknown app is 404 and a wrong secret 401', async () => {
    const unknown = await call('POST', 'session', { body: JSON.stringify({ app_id: 'nope', secret: 'x' }) });
    assert.deepEqual([unknown.status, unknown.json.error], [404, 'Unknown app "nope"']);
    const wrong = await call('POST', 'session', { body: JSON.stringify({ app_id: APPS.counts.id, secret: APPS.main.secret }) });
    assert.equal(wrong.status, 401);
  });

  it('bad JSON is 400, another content type 415, no cookie 401, a forged cookie 401', async () => {
    const bad = await call('POST', 'session', { body: '{"app_id":' });
    assert.equal(bad.status, 400);
    assert.match(bad.json.error, /Invalid JSON body/);
    const form = await call('POST', 'session', { body: 'app_id=1001&secret=x', type: 'application/x-www-form-urlencoded' });
    assert.equal(form.status, 415);
    assert.equal((await call('GET', 'stats')).status, 401);
    const cookie = await signIn();
    const forged = cookie.replace(/.$/, (c) => (c === '0' ? '1' : '0'));
    const refused = await call('GET', 'stats', { cookie: forged });
    assert.deepEqual([refused.status, refused.json.error], [401, 'invalid console session']);
    const stream = await fetch(`${broker.httpUrl}/console/api/stream`, { headers: { cookie: forged } });
    assert.equal(stream.status, 401);
    await stream.body?.cancel();
  });

  it('a test event needs a valid channel, a name and JSON data within the app limit', async () => {
    const cookie = await signIn();
    const send = (event) => call('POST', 'events', { cookie, body: JSON.stringify(event) });
    const badChannel = await send({ channel: 'a b', name: 'e', data: '{}' });
    assert.equal(badChannel.status, 400);
    const noName = await send({ channel: 'c', data: '{}' });
    assert.deepEqual([noName.status, noName.json.error], [400, 'Missing event name (name)']);
    const notJson = await send({ channel: 'c', name: 'e', data: 'hello' });
    assert.equal(notJson.status, 400);
    assert.match(notJson.json.error, /data must be JSON/);
    const big = await send({ channel: 'c', name: 'e', data: JSON.stringify({ s: 'x'.repeat(11 * 1024) }) });
    assert.equal(big.status, 413);
    const fine = await send({ channel: 'c', name: 'e', data: '{"ok":true}' });
    assert.deepEqual([fine.status, fine.json], [200, { sent: ['c'] }]);
    assert.equal((await call('GET', 'nothing-here')).status, 404);
  });

  it('history needs a session and a valid channel; a channel without events has no epoch', async () => {
    assert.equal((await call('GET', 'history?channel=orders')).status, 401);
    const cookie = await signIn();
    const bad = await call('GET', 'history?channel=a%20b', { cookie });
    assert.equal(bad.status, 400);
    assert.match(bad.json.error, /Invalid channel name/);
    assert.equal((await call('GET', 'history', { cookie })).status, 400);
    const quiet = await call('GET', 'history?channel=never-published', { cookie });
    assert.deepEqual([quiet.status, quiet.json.epoch, quiet.json.events], [200, null, []]);
  });

  it('sign-in attempts are limited per client IP: 429 with Retry-After, other IPs unaffected', async () => {
    const limited = await startBroker({ args: ['--trust-proxy'], tables: { console: { signin_attempts: 3 } } });
    try {
      const attempt = (secret, ip) =>
        fetch(`${limited.httpUrl}/console/api/session`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'x-forwarded-for': ip },
          body: JSON.stringify({ app_id: APPS.main.id, secret }),
        });
      for (let i = 0; i < 3; i++) assert.equal((await attempt('guess', '203.0.113.7')).status, 401);
      const refused = await attempt(APPS.main.secret, '203.0.113.7');
      assert.equal(refused.status, 429, 'even the right secret waits once the budget is spent');
      assert.match((await refused.json()).error, /Too many sign-in attempts/);
      assert.ok(Number(refused.headers.get('retry-after')) >= 1);
      assert.equal((await attempt(APPS.main.secret, '198.51.100.9')).status, 200, 'another IP signs in');
    } finally {
      await limited.stop();
    }
  });

  it('the cookie is Secure only when the client came over TLS (here: a trusted proxy says so)', async () => {
    const plain = await call('POST', 'session', { body: JSON.stringify({ app_id: APPS.main.id, secret: APPS.main.secret }) });
    assert.doesNotMatch(plain.headers.get('set-cookie'), /Secure/);
    const proxied = await startBroker({ args: ['--trust-proxy'] });
    try {
      const signIn = (proto) =>
        fetch(`${proxied.httpUrl}/console/api/session`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'x-forwarded-proto': proto },
          body: JSON.stringify({ app_id: APPS.main.id, secret: APPS.main.secret }),
        });
      assert.match((await signIn('https')).headers.get('set-cookie'), /; Secure$/);
      assert.doesNotMatch((await signIn('http')).headers.get('set-cookie'), /Secure/);
    } finally {
      await proxied.stop();
    }
  });

  it('--no-console turns every console route into a 404 and leaves the API alone', async () => {
    const off = await startBroker({ args: ['--no-console'] });
    try {
      for (const path of ['/console', '/console/console.js', '/console/api/apps']) {
        const res = await fetch(`${off.httpUrl}${path}`);
        assert.equal(res.status, 404, path);
        assert.match((await res.json()).error, /console is disabled/);
      }
      await serverSdk(off).trigger('still-works', 'e', {});
    } finally {
      await off.stop();
    }
  });
});

/** Signs in to `app` on `node` through the console API; resolves with the cookie to send back. */
async function consoleCookie(node, app = APPS.main) {
  const res = await fetch(`${node.httpUrl}/console/api/session`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ app_id: app.id, secret: app.secret }),
  });
  assert.equal(res.status, 200, await res.text());
  return res.headers.get('set-cookie').split(';')[0];
}

/**
 * Opens the console's event stream on `node` and collects its messages as `{event, data}` in
 * `stream.messages`; `stream.close()` ends it.
 */
async function openStream(node, cookie) {
  const abort = new AbortController();
  const res = await fetch(`${node.httpUrl}/console/api/stream`, { headers: { cookie }, signal: abort.signal });
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('content-type'), 'text/event-stream');
  const stream = { messages: [], close: () => abort.abort() };
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  (async () => {
    let buffer = '';
    for (;;) {
      let chunk;
      try {
        chunk = await reader.read();
      } catch {
        return; // closed by the test
      }
      if (chunk.done) return;
      buffer += chunk.value;
      let end;
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        const message = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const event = /^event: (.*)$/m.exec(message)?.[1];
        const data = /^data: (.*)$/m.exec(message)?.[1];
        stream.messages.push({ event, data: JSON.parse(data) });
      }
    }
  })();
  return stream;
}

describe('console on a cluster (no browser)', () => {
  for (const adapter of ADAPTERS) {
    it(`${adapter}: node A's console counts node B's sockets and streams triggers published on B`, async () => {
      await withCluster(adapter, { nodes: 2 }, async ({ nodes: [A, B] }) => {
        // A token from one node opens the console on another: no shared session store.
        const cookie = await consoleCookie(B);
        const stream = await openStream(A, cookie);
        try {
          const client = openPusher(B);
          await connected(client);
          await subscribe(client, 'cluster-orders');
          const lastStats = () => stream.messages.filter((m) => m.event === 'stats').at(-1)?.data;
          await waitFor(
            () => lastStats()?.connections === 1 && lastStats()?.channels.some((c) => c.name === 'cluster-orders'),
            10000,
            "B's socket and channel in A's console stats",
            () => JSON.stringify(lastStats()),
          );
          await serverSdk(B).trigger('cluster-orders', 'made-on-b', { node: 'B' });
          const trigger = await waitFor(
            () => stream.messages.find((m) => m.event === 'event' && m.data.event === 'made-on-b'),
            10000,
            "B's trigger in A's console stream",
            () => JSON.stringify(stream.messages.slice(-5)),
          );
          assert.equal(trigger.data.type, 'trigger');
          assert.equal(trigger.data.channel, 'cluster-orders');
          // Delivered on B; nobody subscribes on A.
          assert.equal(trigger.data.recipients, 0);
        } finally {
          stream.close();
        }
      });
    });
  }
});
