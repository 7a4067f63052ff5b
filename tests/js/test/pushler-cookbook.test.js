// Pushler's order-tracking cookbook, running against Vestnik in real Chromium:
// - its PHP (update_order.php, update_courier_location.php, auth.php), unchanged except the
//   constructor options, under `php -S` with the database on SQLite (tests/pushler/cookbook/);
// - its vanilla OrderTracker class, unchanged, on a page that loads PushlerClient from the broker's
//   /pushler.js: status, timeline, toasts and courier updates arrive, foreign orders are ignored, and
//   after the broker restarts on the same port the page reconnects, resubscribes and still updates
//   (once: no doubled handlers);
// - its Vue 3 component (OrderTracker.vue, compiled with Vue's compiler-sfc, Vue from npm served
//   locally), unchanged except the import and the constructor options;
// - presence through the usePushlerChannel composable: the `pushler:` event names and the members.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import { launchChromium, watchPageErrors } from '../browser.js';
import { APPS, hmacHex, openRaw, serverSdk, startBroker, waitFor } from '../helpers.js';
import { COOKBOOK_DIR, compileVueSfc, cookbookFile, postForm, runPhpClient, startPhp } from '../pushler-helpers.js';

const APP = APPS.main;
const USER = 67890;
const ORDER = 12345;
const COURIER = 7;

let broker;
let php;
let browser;

before(async () => {
  broker = await startBroker();
  php = await startPhp(broker, APP, { compiledVue: compileVueSfc(cookbookFile('OrderTracker.vue'), 'OrderTracker.vue') });
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
  await php?.stop();
  await broker?.stop();
});

/** A browser context logged in as `cookies` on the PHP origin. */
async function loggedIn(cookies) {
  const context = await browser.newContext();
  await context.addCookies(Object.entries(cookies).map(([name, value]) => ({ name, value: String(value), url: php.url })));
  return context;
}

const updateOrder = (fields) => postForm(`${php.url}/update_order.php`, { order_id: ORDER, ...fields });
const moveCourier = (fields, courier = COURIER) =>
  postForm(`${php.url}/update_courier_location.php`, { order_id: ORDER, ...fields }, { courier_id: courier });

async function channelOccupied(name) {
  const res = await serverSdk(broker).get({ path: `/channels/${name}` });
  return (await res.json()).occupied;
}

/** One value from the cookbook's database, opened as the cookbook's PHP opens it (tables created on first use). */
function phpDbValue(sql) {
  const code = `require getenv('STUBS'); echo getDbConnection()->query(${JSON.stringify(sql)})->fetchColumn();`;
  const env = { ...process.env, COOKBOOK_DB: `${php.dir}/cookbook.sqlite`, STUBS: join(COOKBOOK_DIR, 'vendor', 'cookbook-stubs.php') };
  return execFileSync('php', ['-r', code], { env }).toString();
}

const phpDbCount = (sql) => Number(phpDbValue(sql));

describe('cookbook PHP', () => {
  test('auth.php: 401 without a user, 403 for another user\'s channel, else the json_encode of authorizeChannel', async () => {
    const anon = await postForm(`${php.url}/auth.php`, { channel_name: `private-user-${USER}`, socket_id: '123.456' });
    assert.equal(anon.status, 401);
    assert.deepEqual(anon.json, { error: 'Unauthorized' });
    const other = await postForm(`${php.url}/auth.php`, { channel_name: 'private-user-1', socket_id: '123.456' }, { user_id: USER });
    assert.equal(other.status, 403);
    assert.deepEqual(other.json, { error: 'Forbidden' });
    const ok = await postForm(`${php.url}/auth.php`, { channel_name: `private-user-${USER}`, socket_id: '123.456' }, { user_id: USER });
    assert.equal(ok.status, 200, ok.text);
    assert.deepEqual(ok.json, { auth: `${APP.key}:${hmacHex(APP.secret, `123.456:private-user-${USER}`)}` });
  });

  test('update_order.php refuses an unknown status with 400 and triggers nothing', async () => {
    // The order's owner listens where update_order.php triggers (private-user-{user_id}).
    const raw = await openRaw(broker);
    const channel = `private-user-${USER}`;
    assert.equal((await raw.subscribeSigned(serverSdk(broker), channel)).event, 'pusher_internal:subscription_succeeded');
    const historyBefore = phpDbCount(`SELECT COUNT(*) FROM order_history WHERE order_id = ${ORDER}`);
    const statusBefore = phpDbValue(`SELECT status FROM orders WHERE id = ${ORDER}`);

    const r = await updateOrder({ status: 'lost' });
    assert.equal(r.status, 400);
    assert.deepEqual(r.json, { error: 'Invalid status' });

    // Ordering marker: an event sent after the refused call arrives; nothing came before it.
    await serverSdk(broker).trigger(channel, 'marker', {});
    await raw.waitEvent('marker', channel);
    assert.deepEqual(raw.find((f) => f.channel === channel && f.event !== 'marker' && !f.event.startsWith('pusher')), []);
    assert.equal(phpDbCount(`SELECT COUNT(*) FROM order_history WHERE order_id = ${ORDER}`), historyBefore, 'no history row');
    assert.equal(phpDbValue(`SELECT status FROM orders WHERE id = ${ORDER}`), statusBefore, 'order unchanged');
    raw.close();
  });
});

describe('cookbook vanilla OrderTracker in Chromium', () => {
  let context;
  let page;
  let errors;
  const text = (sel) => page.locator(sel).textContent();
  const classOf = (id) => page.evaluate((i) => document.getElementById(i).className, id);
  // The cookbook removes each toast after 5 s, so count them as they are added.
  const toasts = () => page.evaluate(() => window.toastsShown);

  before(async () => {
    context = await loggedIn({ user_id: USER });
    page = await context.newPage();
    errors = watchPageErrors(page);
    await page.goto(`${php.url}/index.php`);
    await page.evaluate(() => {
      window.toastsShown = 0;
      new MutationObserver((records) => {
        for (const r of records) for (const n of r.addedNodes) if (n.classList?.contains('toast')) window.toastsShown += 1;
      }).observe(document.getElementById('toasts'), { childList: true });
    });
    await waitFor(() => page.evaluate(() => tracker.channel?.subscribed === true), 10000, 'tracker subscribed', () => errors.join('\n'));
  });
  after(async () => {
    await context?.close();
  });

  test('PushlerClient came from the broker and connected back to it by default', async () => {
    const opts = await page.evaluate(() => ({ ...tracker.pushler.options, WebSocket: undefined }));
    assert.equal(opts.wsHost, '127.0.0.1');
    assert.equal(opts.wsPort, broker.port);
    assert.equal(opts.forceTLS, false);
    assert.equal(await channelOccupied(`private-user-${USER}`), true);
  });

  test('a status change from update_order.php updates status, icon, timeline, comment and shows a toast', async () => {
    const r = await updateOrder({ status: 'confirmed', comment: 'Магазин принял заказ' });
    assert.deepEqual(r.json, { success: true });
    await waitFor(async () => (await text('#current-status')) === 'Подтверждён', 5000, 'status text', () => errors.join('\n'));
    assert.equal(await text('#status-icon'), '✅');
    assert.equal(await text('#status-comment'), 'Магазин принял заказ');
    assert.equal(await classOf('step-pending'), 'done');
    assert.equal(await classOf('step-confirmed'), 'active');
    assert.equal(await classOf('step-delivered'), 'pending');
    assert.equal(await toasts(), 1);
    assert.match(await page.locator('#toasts .toast').first().textContent(), /Подтверждён/);
    assert.equal(phpDbCount(`SELECT COUNT(*) FROM order_history WHERE order_id = ${ORDER}`), 1, 'history row written');
    assert.equal(phpDbCount(`SELECT COUNT(*) FROM orders WHERE id = ${ORDER} AND status = 'confirmed'`), 1, 'order row updated');
  });

  test('an update of another order of the same user is ignored (the cookbook checks order_id)', async () => {
    await postForm(`${php.url}/update_order.php`, { order_id: 555, status: 'delivered' });
    await updateOrder({ status: 'preparing' });
    await waitFor(async () => (await text('#current-status')) === 'Готовится', 5000, 'status text');
    assert.equal(await toasts(), 2, 'one toast per own update, none for order 555');
    assert.equal(await classOf('step-confirmed'), 'done');
    assert.equal(await classOf('step-preparing'), 'active');
  });

  test('courier positions from update_courier_location.php move the marker; another courier gets 403', async () => {
    // The cookbook's map is app code it does not show; a stand-in marker records setLatLng.
    await page.evaluate(() => {
      window.positions = [];
      tracker.map = {};
      tracker.courierMarker = { setLatLng: (p) => window.positions.push(p) };
    });
    const r = await moveCourier({ lat: '55.7558', lng: '37.6173' });
    assert.deepEqual(r.json, { success: true });
    await waitFor(() => page.evaluate(() => window.positions.length === 1), 5000, 'courier position');
    const refused = await moveCourier({ lat: '1', lng: '1' }, 8);
    assert.equal(refused.status, 403);
    await moveCourier({ lat: '55.76', lng: '37.62' });
    await waitFor(() => page.evaluate(() => window.positions.length >= 2), 5000, 'second position');
    assert.deepEqual(await page.evaluate(() => window.positions), [[55.7558, 37.6173], [55.76, 37.62]]);
  });

  test('after the broker restarts on the same port the page reconnects, resubscribes and updates once', async () => {
    const before = await toasts();
    const port = broker.port;
    await broker.stop('SIGTERM');
    broker = await startBroker({ port });
    await waitFor(
      () => page.evaluate(() => tracker.pushler.state === 'connected' && tracker.channel.subscribed),
      20000,
      'reconnected and resubscribed',
      () => errors.join('\n'),
    );
    await updateOrder({ status: 'ready' });
    await waitFor(async () => (await text('#current-status')) === 'Готов к выдаче', 5000, 'status after restart');
    assert.equal(await toasts(), before + 1, 'exactly one toast: the handlers were not bound twice');
    // Chromium logs each reconnect attempt made while the broker was down; nothing else may fail.
    // (refused while it was down, or answered 503 while it was draining or starting).
    const unexpected = errors.filter((e) => !/^console\.error: WebSocket connection to 'ws:\/\/127\.0\.0\.1:\d+\/app\/[^']*' failed/.test(e));
    assert.deepEqual(unexpected, []);
  });
});

describe('cookbook Vue 3 component in Chromium', () => {
  test('OrderTracker.vue follows status, timeline, comment and shows the map once the courier moves', async () => {
    await waitFor(async () => !(await channelOccupied(`private-user-${USER}`)), 5000, 'vanilla page gone');
    const context = await loggedIn({ user_id: USER });
    try {
      const page = await context.newPage();
      const errors = watchPageErrors(page);
      await page.goto(`${php.url}/vue.php`);
      await waitFor(() => page.evaluate(() => window.appMounted === true), 10000, 'app mounted', () => errors.join('\n'));
      await waitFor(() => channelOccupied(`private-user-${USER}`), 10000, 'component subscribed', () => errors.join('\n'));
      const stepClasses = () => page.$$eval('.timeline .step', (els) => els.map((e) => e.className.replace('step', '').trim()));
      assert.deepEqual(await stepClasses(), ['active', 'pending', 'pending', 'pending', 'pending', 'pending']);

      await updateOrder({ status: 'shipped', comment: 'Курьер выехал' });
      await waitFor(async () => (await page.locator('.current-status').getAttribute('class')).includes('shipped'), 5000, 'shipped', () => errors.join('\n'));
      assert.equal(await page.locator('.current-status .icon').textContent(), '🚗');
      assert.equal(await page.locator('.current-status .comment').textContent(), 'Курьер выехал');
      assert.deepEqual(await stepClasses(), ['done', 'done', 'done', 'done', 'active', 'pending']);
      assert.equal(await page.locator('.timeline .step.done .dot').first().textContent(), '✓');
      assert.equal(await page.locator('.map-container').count(), 0, 'no map before a courier position');

      await moveCourier({ lat: '55.75', lng: '37.61' });
      await waitFor(async () => (await page.locator('.map-container #courier-map').count()) === 1, 5000, 'map shown');

      await updateOrder({ status: 'delivered', comment: 'Вручён' });
      await waitFor(async () => (await page.locator('.current-status').getAttribute('class')).includes('delivered'), 5000, 'delivered');
      assert.equal(await page.locator('.current-status .comment').textContent(), 'Вручён');
      assert.equal(await page.locator('.map-container').count(), 0, 'the map goes with the shipped status');
      assert.deepEqual(errors, []);

      await page.close();
      await waitFor(async () => !(await channelOccupied(`private-user-${USER}`)), 5000, 'unmounted page leaves the channel');
    } finally {
      await context.close();
    }
  });
});

describe('presence with the pushler: event names (usePushlerChannel)', () => {
  test('subscription_succeeded lists the members; member_added / member_removed arrive; no pusher: names', async () => {
    const anna = await loggedIn({ user_id: 1, user_name: 'Анна' });
    const boris = await loggedIn({ user_id: 2, user_name: 'Борис' });
    try {
      const pageA = await anna.newPage();
      const errorsA = watchPageErrors(pageA);
      await pageA.goto(`${php.url}/presence.php`);
      await waitFor(async () => (await pageA.locator('#count').textContent()) === '1', 10000, 'Anna subscribed', () => errorsA.join('\n'));
      assert.equal(await pageA.locator('#state').textContent(), 'connected');

      const pageB = await boris.newPage();
      await pageB.goto(`${php.url}/presence.php`);
      await waitFor(async () => (await pageA.locator('#count').textContent()) === '2', 10000, 'Boris seen by Anna');
      assert.deepEqual(await pageA.locator('#members li').allTextContents(), ['Анна', 'Борис']);

      const logB = await pageB.evaluate(() => window.presenceLog);
      assert.equal(logB[0].name, 'pushler:subscription_succeeded');
      assert.equal(logB[0].data.count, 2);
      assert.deepEqual(logB[0].data.me, { id: '2', info: { name: 'Борис' } });
      assert.deepEqual(logB[0].data.list.map((m) => m.id).sort(), ['1', '2']);

      const users = await runPhpClient({ key: APP.key, secret: APP.secret, options: { host: '127.0.0.1', port: broker.port } }, 'getPresenceUsers', ['presence-order-12345']);
      assert.deepEqual(users.result.map((u) => u.id).sort(), ['1', '2'], JSON.stringify(users));

      await pageB.close();
      await waitFor(async () => (await pageA.locator('#count').textContent()) === '1', 10000, 'Boris gone');
      const logA = await pageA.evaluate(() => window.presenceLog);
      assert.deepEqual(
        logA.map((e) => e.name),
        ['pushler:subscription_succeeded', 'pushler:member_added', 'pushler:member_removed'],
      );
      assert.deepEqual(logA[1].data, { id: '2', info: { name: 'Борис' } });
      assert.deepEqual(logA[2].data, { id: '2', info: { name: 'Борис' } });
      assert.deepEqual(errorsA, []);
    } finally {
      await anna.close();
      await boris.close();
    }
  });
});
