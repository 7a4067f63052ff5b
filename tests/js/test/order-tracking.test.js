// The showcase shop end to end in real Chromium: the real `vestnik` binary, the real
// `order-tracking` binary, pusher-js as the shop serves it, and the shop's own APIs.
//
// The five steps: a customer opens their order page; the manager API changes the status;
// without reload the page shows it, moves the timeline and shows a toast; a courier update moves
// the marker; a second customer's page never receives the first one's events. Plus the refusals
// the page depends on, and the screenshot docs/order-tracking.png.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import { launchChromium, watchPageErrors } from '../browser.js';
import { REPO_ROOT, startBroker, waitFor } from '../helpers.js';
import { adminAuth, sessionCookie, shopCall, startShop } from '../shop.js';

const ALICE = 1;
const BOB = 2;
const VERA = 3; // order 1004, in Kazan
const MANAGER = 10;
const COURIER = 20; // assigned to orders 1001 and 1002
const OTHER_COURIER = 21;

let broker;
let shop;
let browser;
const cookies = {};

async function openOrderPage(userId, orderId, { notifications = true } = {}) {
  const context = await browser.newContext({ viewport: { width: 900, height: 1100 }, locale: 'ru-RU' });
  if (notifications) await context.grantPermissions(['notifications'], { origin: shop.url });
  const [name, value] = cookies[userId].split('=');
  await context.addCookies([{ name, value, url: shop.url }]);
  const page = await context.newPage();
  const errors = watchPageErrors(page);
  await page.goto(`${shop.url}/orders/${orderId}`);
  await waitFor(
    () => page.evaluate(() => document.body.dataset.live === 'subscribed'),
    10000,
    `order page ${orderId} of user ${userId} subscribed`,
    () => `errors: ${errors.join('; ')}`,
  );
  // A marker that a reload would wipe: the page must update in place.
  await page.evaluate(() => {
    window.__noReload = true;
  });
  return { context, page, errors };
}

const text = (page, sel) => page.locator(sel).textContent();
const stepStates = (page) =>
  page.evaluate(() => [...document.querySelectorAll('#timeline .step')].map((li) => li.dataset.state));
const events = (page) => page.evaluate(() => window.__orderEvents);

before(async () => {
  broker = await startBroker();
  shop = await startShop(broker);
  for (const id of [ALICE, BOB, VERA, MANAGER, COURIER, OTHER_COURIER]) cookies[id] = await sessionCookie(shop, id);
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
  await shop?.stop();
  await broker?.stop();
});

describe('order tracking in the browser', () => {
  let alice;
  let bob;

  it('1. a customer opens their order page: status, timeline and lines from the shop', async () => {
    alice = await openOrderPage(ALICE, 1001);
    bob = await openOrderPage(BOB, 1002);
    assert.equal(await text(alice.page, '#status-text'), 'Ожидает подтверждения');
    assert.deepEqual(await stepStates(alice.page), ['active', 'pending', 'pending', 'pending', 'pending', 'pending']);
    assert.equal(await alice.page.locator('#lines li').count(), 2);
    assert.equal(await alice.page.locator('#map-card').isHidden(), true, 'no map before shipping');
    assert.equal(await alice.page.locator('#enable-notifications').isHidden(), true, 'permission already granted: no button');
  });

  it('2-3. the manager API changes the status; the page updates without reload, moves the timeline, toasts', async () => {
    const r = await shopCall(shop, cookies[MANAGER], 'POST', '/api/manager/orders/1001/status', {
      status: 'confirmed',
      comment: 'Менеджер подтвердил заказ',
    });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    await waitFor(async () => (await text(alice.page, '#status-text')) === 'Подтверждён', 5000, 'status Подтверждён');
    assert.deepEqual(await stepStates(alice.page), ['done', 'active', 'pending', 'pending', 'pending', 'pending']);
    assert.equal(await text(alice.page, '#status-comment'), 'Менеджер подтвердил заказ');
    assert.match(await alice.page.locator('.toast').last().textContent(), /Подтверждён/);
    assert.equal(await alice.page.evaluate(() => window.__noReload), true, 'the page was not reloaded');
    assert.equal(await alice.page.locator('#custom-status').getAttribute('data-color'), '#3A9FC9');
    const ev = await events(alice.page);
    assert.equal(ev.received.length, 1);
    assert.equal(ev.received[0].data.order_id, 1001);
    assert.equal(ev.notifications, 1, 'a browser notification, permission being granted');
    // The cookbook's payload fields.
    for (const k of ['order_id', 'status', 'status_text', 'status_icon', 'step', 'comment', 'updated_at']) {
      assert.ok(k in ev.received[0].data, `payload has ${k}`);
    }
  });

  it('an invalid status is refused with 400 and changes nothing on the page', async () => {
    const r = await shopCall(shop, cookies[MANAGER], 'POST', '/api/manager/orders/1001/status', { status: 'teleported' });
    assert.equal(r.status, 400);
    assert.deepEqual(r.body, { error: 'Invalid status' });
    const customer = await shopCall(shop, cookies[ALICE], 'POST', '/api/manager/orders/1001/status', { status: 'shipped' });
    assert.equal(customer.status, 403, 'a customer is not a manager');
    assert.equal(await text(alice.page, '#status-text'), 'Подтверждён');
  });

  it('events for another order on the same user channel are ignored by order_id', async () => {
    const r = await shopCall(shop, cookies[MANAGER], 'POST', '/api/manager/orders/1003/status', { status: 'confirmed' });
    assert.equal(r.status, 200);
    await waitFor(async () => (await events(alice.page)).ignored.length === 1, 5000, 'the 1003 event reached and was ignored');
    assert.equal((await events(alice.page)).ignored[0].order_id, 1003);
    assert.equal((await events(alice.page)).received.length, 1);
    assert.equal(await text(alice.page, '#status-text'), 'Подтверждён');
  });

  it('4. while shipped, courier positions move the marker; an unassigned courier gets 403', async () => {
    for (const status of ['preparing', 'ready', 'shipped']) {
      const r = await shopCall(shop, cookies[MANAGER], 'POST', '/api/manager/orders/1001/status', { status });
      assert.equal(r.status, 200, JSON.stringify(r.body));
    }
    await waitFor(async () => (await text(alice.page, '#status-text')) === 'В доставке', 5000, 'status В доставке');
    assert.deepEqual(await stepStates(alice.page), ['done', 'done', 'done', 'done', 'active', 'pending']);
    await waitFor(() => alice.page.locator('#map-card').isVisible(), 5000, 'map shown while shipped');
    const marker = alice.page.locator('#courier-marker');
    const before = await marker.getAttribute('transform');

    const move = await shopCall(shop, cookies[COURIER], 'POST', '/api/courier/orders/1001/location', { lat: 55.7601, lng: 37.6102 });
    assert.equal(move.status, 200, JSON.stringify(move.body));
    await waitFor(async () => (await marker.getAttribute('data-lat')) === '55.7601', 5000, 'marker at the first fix');
    const first = await marker.getAttribute('transform');
    assert.notEqual(first, before);

    // The map is centred on the order's destination (Тверская, 7): the house is in the middle, and
    // a courier at the door is drawn on it.
    const center = await alice.page.evaluate(() => JSON.parse(document.getElementById('config').textContent).mapCenter);
    assert.deepEqual(center, { lat: 55.7596, lng: 37.61 });
    assert.equal(await alice.page.locator('#home').getAttribute('transform'), 'translate(200 120)');
    const door = await shopCall(shop, cookies[COURIER], 'POST', '/api/courier/orders/1001/location', center);
    assert.equal(door.status, 200);
    await waitFor(async () => (await marker.getAttribute('data-lat')) === '55.7596', 5000, 'marker at the door');
    assert.equal(await marker.getAttribute('transform'), 'translate(200.0 120.0)');

    const again = await shopCall(shop, cookies[COURIER], 'POST', '/api/courier/orders/1001/location', { lat: 55.7531, lng: 37.6084 });
    assert.equal(again.status, 200);
    await waitFor(async () => (await marker.getAttribute('data-lat')) === '55.7531', 5000, 'marker at the second fix');
    assert.notEqual(await marker.getAttribute('transform'), first);

    const stranger = await shopCall(shop, cookies[OTHER_COURIER], 'POST', '/api/courier/orders/1001/location', { lat: 1, lng: 1 });
    assert.equal(stranger.status, 403);
    assert.deepEqual(stranger.body, { error: 'Forbidden' });
    const manager = await shopCall(shop, cookies[MANAGER], 'POST', '/api/courier/orders/1001/location', { lat: 1, lng: 1 });
    assert.equal(manager.status, 403);
    assert.equal(await marker.getAttribute('data-lat'), '55.7531', 'refused positions never reach the page');

    await alice.page.screenshot({ path: join(REPO_ROOT, 'docs', 'order-tracking.png'), fullPage: true });
  });

  it('5. the second customer never receives the first one’s events, and cannot subscribe to their channel', async () => {
    assert.deepEqual((await events(bob.page)).received, []);
    assert.deepEqual((await events(bob.page)).ignored, []);
    assert.equal(await text(bob.page, '#status-text'), 'Ожидает подтверждения');

    // Bob's page is live: his own order's change arrives.
    const r = await shopCall(shop, cookies[MANAGER], 'POST', '/api/manager/orders/1002/status', { status: 'confirmed' });
    assert.equal(r.status, 200);
    await waitFor(async () => (await text(bob.page, '#status-text')) === 'Подтверждён', 5000, "Bob's own update");
    assert.equal((await events(bob.page)).received.length, 1);
    assert.ok((await events(bob.page)).received.every((e) => e.data.order_id === 1002));

    // pusher-js in Bob's page asks the shop to authorise Alice's channel: 403.
    const refused = await bob.page.evaluate(
      () =>
        new Promise((resolve) => {
          const ch = window.__pusher.subscribe('private-user-1');
          ch.bind('pusher:subscription_error', (e) => resolve(e.status));
          ch.bind('pusher:subscription_succeeded', () => resolve('subscribed'));
        }),
    );
    assert.equal(refused, 403);
  });

  it('a page without notification permission offers a button; a click asks, and granted notifications follow', async () => {
    const page = await openOrderPage(VERA, 1004, { notifications: false });
    const button = page.page.locator('#enable-notifications');
    assert.equal(await page.page.evaluate(() => Notification.permission), 'default');
    assert.equal(await button.isVisible(), true, 'the choice is open: the button shows');
    assert.equal((await events(page.page)).permissionRequests, undefined, 'nothing is asked before a click');
    // The user accepts the browser's prompt (playwright answers it through the permission grant).
    await page.context.grantPermissions(['notifications'], { origin: shop.url });
    await button.click();
    await waitFor(() => button.isHidden(), 5000, 'the button goes once permission is granted');
    assert.equal((await events(page.page)).permissionRequests, 1);
    const r = await shopCall(shop, cookies[MANAGER], 'POST', '/api/manager/orders/1004/status', { status: 'confirmed' });
    assert.equal(r.status, 200);
    await waitFor(async () => (await events(page.page)).notifications === 1, 5000, 'a browser notification after the grant');
    assert.deepEqual(page.errors, []);
    await page.context.close();
  });

  it('the pages raised no errors besides the refused subscription', async () => {
    assert.deepEqual(alice.errors, []);
    assert.ok(bob.errors.every((e) => /403|subscription refused|Forbidden/.test(e)), bob.errors.join('\n'));
  });

  it('the channel auth endpoint: 401 when not signed in, 403 for another user, a signature for the owner', async () => {
    const form = (channel) => ({
      method: 'POST',
      headers: { 'Content-Type': 'application/x-www-form-urlencoded', Cookie: cookies[ALICE] },
      body: `socket_id=123.456&channel_name=${channel}`,
    });
    const anon = await fetch(`${shop.url}/pusher/auth`, { ...form('private-user-1'), headers: { 'Content-Type': 'application/x-www-form-urlencoded' } });
    assert.equal(anon.status, 401);
    assert.deepEqual(await anon.json(), { error: 'Unauthorized' });
    const other = await fetch(`${shop.url}/pusher/auth`, form('private-user-2'));
    assert.equal(other.status, 403);
    const own = await fetch(`${shop.url}/auth.php`, form('private-user-1'));
    assert.equal(own.status, 200);
    assert.match((await own.json()).auth, /^main-key:[0-9a-f]{64}$/);
  });

  it('the manager page lists orders, filters by status and changes a status', async () => {
    const context = await browser.newContext({ viewport: { width: 1200, height: 800 } });
    const [name, value] = cookies[MANAGER].split('=');
    await context.addCookies([{ name, value, url: shop.url }]);
    const page = await context.newPage();
    const errors = watchPageErrors(page);
    await page.goto(`${shop.url}/manager`);
    await waitFor(async () => (await page.locator('#rows tr').count()) === 4, 5000, 'four seeded orders listed');
    await page.screenshot({ path: join(REPO_ROOT, 'docs', 'order-tracking-manager.png') });
    await page.selectOption('#filter', 'shipped');
    await waitFor(async () => (await page.locator('#rows tr').count()) === 1, 5000, 'one shipped order');
    assert.equal(await page.locator('#rows tr').first().getAttribute('data-order-id'), '1001');
    await page.selectOption('#filter', '');
    await waitFor(async () => (await page.locator('#rows tr').count()) === 4, 5000, 'all orders again');
    const row = page.locator('tr[data-order-id="1001"]');
    await row.locator('select.status').selectOption('delivered');
    await row.locator('input.comment').fill('Вручён лично');
    await row.locator('button.apply').click();
    await waitFor(async () => (await text(alice.page, '#status-text')) === 'Доставлен', 5000, 'Alice sees Доставлен');
    assert.equal(await text(alice.page, '#status-comment'), 'Вручён лично');
    assert.equal(await alice.page.locator('#map-card').isHidden(), true, 'no map after delivery');
    assert.deepEqual(errors, []);
    await context.close();
  });

  it('a custom status set through the admin API shows its own title and colour on the page', async () => {
    const created = await shopCall(
      shop,
      null,
      'POST',
      '/admin/custom_statuses.json',
      { custom_status: { system_status: 'delivered', title: 'Вручён у двери', color: '#7ABF24' } },
      adminAuth(),
    );
    assert.equal(created.status, 201, JSON.stringify(created.body));
    assert.equal(created.body.permalink, 'vruchen-u-dveri');
    const r = await shopCall(shop, null, 'PUT', '/admin/orders/1001.json', { order: { custom_status_permalink: 'vruchen-u-dveri' } }, adminAuth());
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.body.fulfillment_status, 'delivered');
    await waitFor(async () => (await text(alice.page, '#custom-status')) === 'Вручён у двери', 5000, 'the custom title on the page');
    assert.equal(await alice.page.locator('#custom-status').getAttribute('data-color'), '#7ABF24');
    assert.equal(await text(alice.page, '#status-text'), 'Доставлен', 'the system status text stays');
    const mismatch = await shopCall(
      shop,
      null,
      'PUT',
      '/admin/orders/1001.json',
      { order: { fulfillment_status: 'new', custom_status_permalink: 'vruchen-u-dveri' } },
      adminAuth(),
    );
    assert.equal(mismatch.status, 422);
    assert.deepEqual(mismatch.body, { message: 'incompatible fulfillment and custom statuses' });
    assert.deepEqual(alice.errors, []);
  });
});
