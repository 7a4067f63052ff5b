// The debug console's operator view (issue 15, docs/console.md), in real Chromium (playwright-core)
// against the real broker with its apps in PostgreSQL (a database made for this file on
// VESTNIK_TEST_POSTGRES, the shared PostgreSQL by default, dropped after) and an admin token:
// a wrong token is refused with a clear message and kept nowhere; the right one lists every app;
// an app created in the page (its secret shown once) accepts a pusher-js client, and its per-app view
// works although the app did not exist at start; disabling it in the page closes that client with
// 4003; enabling lets clients back; rotating its secret keeps the old one signing API calls during
// the grace; deleting it (after a confirm) closes its sockets and refuses new ones with 4001; an API
// refusal is shown in the page; and nothing of this answers a caller without the token. Saves its
// screenshot with `screenshotPath` (target/screenshots/, or docs/ for scripts/screenshots.sh).
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { after, before, describe, it } from 'node:test';

import { launchChromium, watchPageErrors } from '../browser.js';
import {
  APPS,
  connected,
  openPusher,
  openRefused,
  pusherJsErrorCode,
  screenshotPath,
  serverSdk,
  startBroker,
  subscribe,
  uniq,
  waitFor,
} from '../helpers.js';

const PG = process.env.VESTNIK_TEST_POSTGRES || 'postgres://postgres@127.0.0.1:5432';
const TOKEN = 'operator-admin-token-0123456789abcdef';
const DESKTOP = { width: 1360, height: 900 };
// Waits in the browser are on conditions; this bounds each one.
const UI_TIMEOUT_MS = 10000;

function psql(sql) {
  execFileSync('psql', [`${PG}/postgres`, '-v', 'ON_ERROR_STOP=1', '-qc', sql], { stdio: 'pipe' });
}

const db = uniq('vestnik_js_operator').replace(/[^a-z0-9_]/gi, '_').toLowerCase();
let broker;
let browser;
let page;
let pageErrors;
/** The app created in the page: {id, key, secret}, and its old secret once rotated. */
const app = {};
let oldSecret;
let client;

before(async () => {
  psql(`CREATE DATABASE ${db}`);
  broker = await startBroker({
    tables: { console: { stats_interval_ms: 200 } },
    args: ['--apps-url', `${PG}/${db}`, '--admin-token', TOKEN],
  });
  browser = await launchChromium();
  const context = await browser.newContext({ viewport: DESKTOP });
  page = await context.newPage();
  pageErrors = watchPageErrors(page);
});

after(async () => {
  await browser?.close();
  await broker?.stop();
  psql(`DROP DATABASE IF EXISTS ${db} WITH (FORCE)`);
});

const text = (selector) => page.textContent(selector);
const row = (id) => `#op-apps tr[data-id="${id}"]`;
/** Clicks the button of `action` in the app's row. */
const clickAction = (id, action) => page.click(`${row(id)} button[data-action="${action}"]`);
/** Waits until the page says `selector`'s text matches `re`. */
const waitText = (selector, re) =>
  waitFor(async () => re.test((await page.textContent(selector).catch(() => '')) ?? ''), UI_TIMEOUT_MS, `${selector} ~ ${re}`, () =>
    page.textContent(selector).catch((e) => e.message),
  );
/** Resolves with the Pusher close code pusher-js reports for `c`. */
const closeCode = (c) =>
  new Promise((res) => c.connection.bind('error', (e) => pusherJsErrorCode(e) && res(pusherJsErrorCode(e))));

/** Calls the admin API with the token, as another admin (or a script) would. */
async function adminCall(method, path, body) {
  const res = await fetch(`${broker.httpUrl}${path}`, {
    method,
    headers: { Authorization: `Bearer ${TOKEN}`, 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, json: await res.json() };
}

/** Fetches a console or admin route as a caller without the token would. */
async function anonymous(method, path, headers = {}) {
  const res = await fetch(`${broker.httpUrl}${path}`, { method, headers });
  return { status: res.status, text: await res.text() };
}

describe('console operator view in Chromium', () => {
  it('refuses a wrong admin token with a clear message and keeps it nowhere', async () => {
    await page.goto(`${broker.httpUrl}/console`);
    await page.waitForSelector('#signin-form', { state: 'visible' });
    await page.click('#to-operator');
    await page.waitForSelector('#operator-form', { state: 'visible' });
    await page.fill('#admin-token', 'not-the-admin-token');
    const [response] = await Promise.all([
      page.waitForResponse((r) => r.url().endsWith('/console/api/operator/apps')),
      page.click('#operator-button'),
    ]);
    assert.equal(response.status(), 401);
    await page.waitForSelector('#operator-error', { state: 'visible' });
    assert.equal(await text('#operator-error'), 'Wrong admin token.');
    assert.equal(await page.isHidden('#operator'), true);
    assert.equal(await page.inputValue('#admin-token'), '');
    assert.equal(await page.evaluate(() => sessionStorage.length), 0);
    assert.ok(!page.url().includes('not-the-admin-token'));
  });

  it('signs in with the right token: the (empty) list of apps, the token in this tab only', async () => {
    await page.fill('#admin-token', TOKEN);
    await page.click('#operator-button');
    await page.waitForSelector('#operator', { state: 'visible' });
    await page.waitForSelector('#op-no-apps', { state: 'visible' });
    assert.equal(await page.isVisible('#operator-bar'), true);
    assert.equal(await page.inputValue('#admin-token'), '');
    // Kept in sessionStorage (this tab), never in the URL or a cookie.
    assert.equal(await page.evaluate(() => sessionStorage.getItem('vestnik.console.adminToken')), TOKEN);
    assert.ok(!page.url().includes(TOKEN));
    assert.deepEqual(await page.context().cookies(), []);
  });

  it('shows an API refusal in the page', async () => {
    await page.click('#op-new');
    await page.fill('#op-create-id', 'no spaces allowed');
    await page.click('#op-create-button');
    await waitText('#op-message', /.+/);
    assert.equal(await page.getAttribute('#op-message', 'data-ok'), 'false');
    assert.match(await text('#op-message'), /id/i);
    assert.equal(await page.isHidden('#op-secret'), true);
    assert.equal(await page.$$eval('#op-apps tr', (trs) => trs.length), 0);
  });

  it('creates an app (secret shown once) that a pusher-js client connects to', async () => {
    await page.fill('#op-create-id', '');
    await page.fill('#op-create-limits', '{"max_connections": 50}');
    const [response] = await Promise.all([
      page.waitForResponse((r) => r.url().endsWith('/admin/apps') && r.request().method() === 'POST'),
      page.click('#op-create-button'),
    ]);
    assert.equal(response.status(), 201);
    await page.waitForSelector('#op-secret', { state: 'visible' });
    app.id = await text('#op-secret-id');
    app.key = await text('#op-secret-key');
    app.secret = await text('#op-secret-value');
    assert.match(app.id, /^\d+$/);
    assert.match(app.key, /^[0-9a-f]{20}$/);
    assert.match(app.secret, /^[0-9a-f]{32}$/);
    // The token went in the Authorization header, not the URL.
    const sent = response.request();
    assert.equal(await sent.headerValue('authorization'), `Bearer ${TOKEN}`);
    assert.ok(!sent.url().includes(TOKEN));

    await page.waitForSelector(row(app.id));
    assert.equal(await text(`${row(app.id)} td.state`), 'enabled');
    assert.equal(await text(`${row(app.id)} td:nth-child(2)`), app.key);
    assert.match(await text(`${row(app.id)} td.limits`), /connections ≤ 50/);

    client = openPusher(broker, { app });
    await connected(client);
    await subscribe(client, 'orders');
    await waitText(`${row(app.id)} td.conns`, /^1$/);

    // Dismissed, the secret is gone from the page; listings never carried it.
    await page.click('#op-secret-dismiss');
    assert.equal(await page.isHidden('#op-secret'), true);
    assert.ok(!(await page.content()).includes(app.secret));

    // A second app, made by another admin through the API (disabled, with limits), shows up in the
    // list by itself.
    const shop = await adminCall('POST', '/admin/apps', {
      id: 'shop-1001',
      key: 'shop-key',
      enabled: false,
      limits: { max_connections: 500, api_rate_limit: 50 },
      quotas: { max_messages_per_day: 1000000 },
    });
    assert.equal(shop.status, 201, JSON.stringify(shop.json));
    await waitText(`${row('shop-1001')} td.state`, /^disabled$/);
    assert.match(await text(`${row('shop-1001')} td.limits`), /connections ≤ 500 · API 50\/s/);
    await page.screenshot({ path: screenshotPath('console-operator.png'), fullPage: true });
  });

  it('fits a phone: the list scrolls inside its card, the page never sideways', async () => {
    try {
      await page.setViewportSize({ width: 390, height: 844 });
      const fits = await page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth);
      assert.equal(fits, true);
      await page.screenshot({ path: screenshotPath('console-operator-phone.png'), fullPage: true });
    } finally {
      await page.setViewportSize(DESKTOP);
    }
  });

  it("opens the new app's per-app view (events, counts) from the list", async () => {
    await clickAction(app.id, 'open');
    await page.waitForSelector('#console', { state: 'visible' });
    assert.equal(await text('#app-name'), app.id);
    await page.waitForFunction(() => document.getElementById('live').dataset.state === 'open', null, {
      timeout: UI_TIMEOUT_MS,
    });
    await waitText('#stat-connections', /^1$/);
    await waitFor(
      async () => (await page.$$eval('#channels tr', (trs) => trs.map((t) => t.dataset.channel))).includes('orders'),
      UI_TIMEOUT_MS,
      'orders in the channel list',
    );
    await serverSdk(broker, app).trigger('orders', 'placed', { n: 1 });
    await page.waitForSelector('#stream li[data-type="trigger"]', { timeout: UI_TIMEOUT_MS });
    assert.match(await text('#stream li[data-type="trigger"] .event'), /placed/);
    // The session is the ordinary console cookie, HttpOnly; the secret was never sent to the page.
    const [cookie] = await page.context().cookies();
    assert.equal(cookie.name, 'vestnik_console');
    assert.equal(cookie.httpOnly, true);
    await page.click('#back-to-apps');
    await page.waitForSelector('#operator', { state: 'visible' });
  });

  it('lists the new app for the ordinary sign-in, which works with its secret', async () => {
    const other = await browser.newContext({ viewport: DESKTOP });
    try {
      const p2 = await other.newPage();
      await p2.goto(`${broker.httpUrl}/console`);
      await p2.waitForSelector(`#app-select option[value="${app.id}"]`, { state: 'attached' });
      await p2.selectOption('#app-select', app.id);
      await p2.fill('#secret', app.secret);
      await p2.click('#signin-button');
      await p2.waitForSelector('#console', { state: 'visible' });
      assert.equal(await p2.textContent('#app-name'), app.id);
      // Not an operator: no way back to the list of every app.
      assert.equal(await p2.isHidden('#back-to-apps'), true);
    } finally {
      await other.close();
    }
  });

  it('disables the app: its client is closed with 4003 and the page shows it disabled', async () => {
    const code = closeCode(client);
    await clickAction(app.id, 'disable');
    assert.equal(await code, 4003);
    client.disconnect();
    await waitText(`${row(app.id)} td.state`, /^disabled$/);
    assert.equal(await page.getAttribute(row(app.id), 'data-enabled'), 'false');
    assert.match(await text('#op-message'), new RegExp(`Disabled app ${app.id}`));
    const refused = await openRefused(broker, { app });
    assert.equal(refused.close.code, 4003);
  });

  it('enables it again: clients connect', async () => {
    await clickAction(app.id, 'enable');
    await waitText(`${row(app.id)} td.state`, /^enabled$/);
    client = openPusher(broker, { app });
    await connected(client);
  });

  it('edits its limits: only the changed keys are sent, and the list shows them', async () => {
    await clickAction(app.id, 'edit');
    await page.waitForSelector('#op-edit', { state: 'visible' });
    assert.equal(await text('#op-edit-id'), app.id);
    const limits = JSON.parse(await page.inputValue('#op-edit-limits'));
    assert.equal(limits.max_connections, 50);
    await page.fill('#op-edit-limits', JSON.stringify({ ...limits, max_connections: 60, client_event_rate: 3 }));
    const [response] = await Promise.all([
      page.waitForResponse((r) => r.url().endsWith(`/admin/apps/${app.id}`) && r.request().method() === 'PATCH'),
      page.click('#op-edit-button'),
    ]);
    assert.equal(response.status(), 200);
    assert.deepEqual(JSON.parse(response.request().postData()), {
      limits: { max_connections: 60, client_event_rate: 3 },
    });
    await waitText(`${row(app.id)} td.limits`, /connections ≤ 60/);
    assert.equal(await page.isHidden('#op-edit'), true);
    assert.match(await text('#op-message'), new RegExp(`Saved app ${app.id}`));
  });

  it('rotates the secret: the new one shown once, the old one still signs API calls in the grace', async () => {
    oldSecret = app.secret;
    await clickAction(app.id, 'rotate');
    await page.waitForSelector('#op-rotate', { state: 'visible' });
    await page.fill('#op-rotate-grace', '600');
    await page.click('#op-rotate-button');
    await page.waitForSelector('#op-secret', { state: 'visible' });
    const secret = await text('#op-secret-value');
    assert.match(secret, /^[0-9a-f]{32}$/);
    assert.notEqual(secret, oldSecret);
    assert.match(await text('#op-secret-note'), /old secret stays valid until/);
    app.secret = secret;
    // Both secrets sign API calls (the node applies the rotation from its feed within a second).
    await waitFor(
      async () => (await serverSdk(broker, app).trigger('orders', 'new-secret', {}).catch((e) => e)).status === 200,
      UI_TIMEOUT_MS,
      'the new secret accepted',
    );
    const old = await serverSdk(broker, { ...app, secret: oldSecret }).trigger('orders', 'old-secret', {});
    assert.equal(old.status, 200);
    await page.click('#op-secret-dismiss');
  });

  it('deletes it after a confirm: its socket is closed and new ones are refused with 4001', async () => {
    await clickAction(app.id, 'delete');
    await page.waitForSelector('#op-delete', { state: 'visible' });
    assert.equal(await text('#op-delete-id'), app.id);
    // Nothing is deleted before the confirm.
    assert.equal(await page.isVisible(row(app.id)), true);
    const code = closeCode(client);
    await page.click('#op-delete-confirm');
    assert.equal(await code, 4001);
    client.disconnect();
    await page.waitForSelector(row(app.id), { state: 'detached', timeout: UI_TIMEOUT_MS });
    assert.deepEqual(await page.$$eval('#op-apps tr', (trs) => trs.map((tr) => tr.dataset.id)), ['shop-1001']);
    const refused = await openRefused(broker, { app });
    assert.equal(refused.close.code, 4001);
  });

  it('answers nothing about apps to a caller without the token', async () => {
    for (const [method, path] of [
      ['GET', '/console/api/operator/apps'],
      ['POST', '/console/api/operator/session'],
      ['GET', '/admin/apps'],
    ]) {
      const none = await anonymous(method, path);
      assert.equal(none.status, 401, `${method} ${path}: ${none.text}`);
      assert.ok(JSON.parse(none.text).error);
      const wrong = await anonymous(method, path, { Authorization: 'Bearer nope' });
      assert.equal(wrong.status, 401, `${method} ${path}`);
    }
    // The sign-in picker lists ids and the enabled flag only, never a key.
    const listed = JSON.parse((await anonymous('GET', '/console/api/apps')).text);
    for (const a of listed.apps) assert.deepEqual(Object.keys(a).sort(), ['enabled', 'id']);
  });

  it('signs out: the token leaves the tab', async () => {
    await page.click('#operator-signout');
    await page.waitForSelector('#signin', { state: 'visible' });
    assert.equal(await page.evaluate(() => sessionStorage.length), 0);
    // Chromium logs every 4xx answer; the refusals this suite asked for are the only errors: the
    // wrong token and the invalid id.
    const refused = (status) => `console.error: Failed to load resource: the server responded with a status of ${status}`;
    assert.deepEqual(pageErrors, [`${refused(401)} (Unauthorized)`, `${refused(422)} (Unprocessable Entity)`]);
  });
});

describe('operator view with apps from the config file, and without an admin token', () => {
  let fileBroker;
  let noToken;
  let context;
  let p;

  before(async () => {
    fileBroker = await startBroker({ args: ['--admin-token', TOKEN] });
    noToken = await startBroker();
    context = await browser.newContext({ viewport: DESKTOP });
    p = await context.newPage();
  });
  after(async () => {
    await context?.close();
    await fileBroker?.stop();
    await noToken?.stop();
  });

  async function operatorSignIn(target) {
    await p.goto(`${target.httpUrl}/console`);
    await p.click('#to-operator');
    await p.fill('#admin-token', TOKEN);
    await p.click('#operator-button');
  }

  it('lists the served apps read-only, says why, and opens any of them', async () => {
    await operatorSignIn(fileBroker);
    await p.waitForSelector('#op-note', { state: 'visible' });
    assert.match(await p.textContent('#op-note'), /config file.*SIGHUP.*--apps-url/);
    const ids = await p.$$eval('#op-apps tr', (trs) => trs.map((tr) => tr.dataset.id));
    assert.deepEqual(ids, Object.values(APPS).map((a) => a.id).sort());
    const actions = await p.$$eval(`#op-apps tr[data-id="${APPS.main.id}"] button`, (bs) => bs.map((b) => b.dataset.action));
    assert.deepEqual(actions, ['open']);
    assert.equal(await p.textContent(`#op-apps tr[data-id="${APPS.main.id}"] td:nth-child(2)`), APPS.main.key);
    await p.click(`#op-apps tr[data-id="${APPS.main.id}"] button[data-action="open"]`);
    await p.waitForSelector('#console', { state: 'visible' });
    assert.equal(await p.textContent('#app-name'), APPS.main.id);
    assert.ok(!(await p.content()).includes(APPS.main.secret));
  });

  it('says so when the broker has no admin token', async () => {
    await p.evaluate(() => sessionStorage.clear());
    await context.clearCookies();
    await operatorSignIn(noToken);
    await p.waitForSelector('#operator-error', { state: 'visible' });
    assert.match(await p.textContent('#operator-error'), /no admin token set \(--admin-token\)/);
    assert.equal(await p.evaluate(() => sessionStorage.length), 0);
  });
});
