// The showcase shop end to end in real Chromium: the real `vestnik` binary, the real
// `order-tracking` binary, pusher-js as the shop serves it, and the shop's own APIs.
//
// The README's walkthrough (Alice signs in, finds M-1001 in "my orders", the manager changes it),
// then the five steps: a customer opens their order page; the manager API changes the
// status; without reload the page shows it, moves the timeline and shows a toast; a courier update
// moves the marker; a second customer's page never receives the first one's events. Plus the
// total broken down, steps not reached that look not reached, the courier's distance instead of
// coordinates, "my orders" live, the manager page live on private-managers (refused to
// customers), the order page at 390 px, a log without colour codes, and the screenshots
// (`target/screenshots/`, or `docs/` with VESTNIK_UPDATE_DOCS_SCREENSHOTS=1).
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import { launchChromium, watchPageErrors } from '../browser.js';
import { startBroker, waitFor } from '../helpers.js';
import { adminAuth, screenshotPath, sessionCookie, shopCall, startShop } from '../shop.js';

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
const stepDots = (page) =>
  page.evaluate(() => [...document.querySelectorAll('#timeline .dot')].map((d) => d.textContent));
const events = (page) => page.evaluate(() => window.__orderEvents);
// Roubles as the page writes them ("1 480 ₽", "−100 ₽") as a number; the group separator is a
// no-break space.
const roubles = (s) => Number(s.replace(/\s/g, '').replace('−', '-').replace('₽', '').replace(',', '.'));
const spaced = (s) => s.replace(/\s/g, ' ');

async function signedInContext(userId, viewport = { width: 900, height: 1100 }) {
  const context = await browser.newContext({ viewport, locale: 'ru-RU' });
  const [name, value] = cookies[userId].split('=');
  await context.addCookies([{ name, value, url: shop.url }]);
  return context;
}

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
  let aliceList;

  it('the README walkthrough: Alice signs in, finds M-1001 in her orders and opens it', async () => {
    const context = await browser.newContext({ viewport: { width: 900, height: 900 }, locale: 'ru-RU' });
    const page = await context.newPage();
    const errors = watchPageErrors(page);
    await page.goto(`${shop.url}/login`);
    await page.locator('button', { hasText: 'Алиса Петрова' }).click();
    await page.waitForURL(`${shop.url}/`);
    await waitFor(() => page.evaluate(() => document.body.dataset.live === 'subscribed'), 10000, 'my orders subscribed');
    assert.equal(await text(page, 'h2'), 'Мои заказы');
    const listed = await page.evaluate(() =>
      [...document.querySelectorAll('#my-orders li')].map((li) => [li.dataset.orderId, li.querySelector('.number').textContent]),
    );
    assert.deepEqual(listed, [['1003', 'Заказ M-1003'], ['1001', 'Заказ M-1001']], 'both of her orders, newest first');
    const row = page.locator('#my-orders li[data-order-id="1001"]');
    assert.equal(await row.locator('.status-text').textContent(), 'Ожидает подтверждения');
    assert.equal(spaced(await row.locator('.price').textContent()), '1 570 ₽');
    assert.equal(await row.locator('.badge').textContent(), 'Ожидает подтверждения', 'the seeded status speaks Russian');
    await row.locator('a').click();
    await page.waitForURL(`${shop.url}/orders/1001`);
    await waitFor(async () => (await text(page, '#status-text')) === 'Ожидает подтверждения', 5000, 'the order page of M-1001');
    await page.locator('a.nav', { hasText: 'Мои заказы' }).click();
    await page.waitForURL(`${shop.url}/`);
    await waitFor(() => page.evaluate(() => document.body.dataset.live === 'subscribed'), 10000, 'back on my orders');
    await page.evaluate(() => {
      window.__noReload = true;
    });
    assert.deepEqual(errors, []);
    aliceList = { context, page, errors };
  });

  it('1. a customer opens their order page: status, timeline and lines from the shop', async () => {
    alice = await openOrderPage(ALICE, 1001);
    bob = await openOrderPage(BOB, 1002);
    assert.equal(await text(alice.page, '#status-text'), 'Ожидает подтверждения');
    assert.deepEqual(await stepStates(alice.page), ['active', 'pending', 'pending', 'pending', 'pending', 'pending']);
    // A step not reached shows its number on a grey dot, never its own icon (a pending
    // "Подтверждён" with ✅ would read as done).
    assert.deepEqual(await stepDots(alice.page), ['🕐', '2', '3', '4', '5', '6']);
    const greyDot = await alice.page.evaluate(() => getComputedStyle(document.querySelector('#timeline .pending .dot')).color);
    assert.equal(greyDot, 'rgb(156, 163, 175)');
    assert.equal(await alice.page.locator('#lines li').count(), 2);
    assert.equal(await alice.page.locator('.badge#custom-status').textContent(), 'Ожидает подтверждения');
    assert.equal(await alice.page.locator('#map-card').isHidden(), true, 'no map before shipping');
    assert.equal(await alice.page.locator('#enable-notifications').isHidden(), true, 'permission already granted: no button');
  });

  it('the order page breaks the total down: lines − discount + delivery = the total', async () => {
    const lineSums = await alice.page.evaluate(() => [...document.querySelectorAll('#lines .sum')].map((e) => e.textContent));
    assert.deepEqual(lineSums.map(spaced), ['1 180 ₽', '300 ₽'], '2 × 590 and 2 × 150');
    const part = (p) => text(alice.page, `#breakdown [data-part="${p}"] dd`);
    assert.equal(spaced(await part('items')), '1 480 ₽');
    assert.equal(spaced(await part('discount')), '−100 ₽');
    assert.equal(spaced(await part('delivery')), '190 ₽');
    assert.equal(spaced(await part('total')), '1 570 ₽');
    assert.equal(await alice.page.locator('#breakdown [data-part="bonuses"]').isHidden(), true, 'no bonuses spent on M-1001');
    assert.equal(
      roubles(await part('items')) + roubles(await part('discount')) + roubles(await part('delivery')),
      roubles(await part('total')),
    );
    // M-1003 was partly paid with bonuses: they show, and the sum still holds.
    const other = await openOrderPage(ALICE, 1003);
    const p3 = (p) => text(other.page, `#breakdown [data-part="${p}"] dd`);
    await waitFor(async () => (await p3('total')) !== '', 5000, 'M-1003 loaded');
    assert.equal(spaced(await p3('bonuses')), '−30 ₽');
    assert.equal(await other.page.locator('#breakdown [data-part="discount"]').isHidden(), true);
    assert.equal(spaced(await p3('delivery')), 'бесплатно');
    assert.equal(roubles(await p3('items')) + roubles(await p3('bonuses')), roubles(await p3('total')));
    assert.deepEqual(other.errors, []);
    await other.context.close();
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

  it('"my orders" is live: a new status on any of her orders shows there without a reload', async () => {
    const status = (id) => text(aliceList.page, `#my-orders li[data-order-id="${id}"] .status-text`);
    await waitFor(async () => (await status(1003)) === 'Подтверждён', 5000, 'M-1003 confirmed in the list');
    await waitFor(async () => (await status(1001)) === 'Подтверждён', 5000, 'M-1001 confirmed in the list');
    assert.equal(await aliceList.page.evaluate(() => window.__noReload), true, 'the list was not reloaded');
    // A new order for Alice appears in the list as it is created.
    const created = await shopCall(
      shop,
      null,
      'POST',
      '/admin/orders.json',
      { order: { client_id: ALICE, order_lines_attributes: [{ product_id: 2, quantity: 1 }], delivery_price: 190 } },
      adminAuth(),
    );
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const id = created.body.id;
    await waitFor(
      () => aliceList.page.locator(`#my-orders li[data-order-id="${id}"]`).count().then((n) => n === 1),
      5000,
      'the new order listed',
    );
    assert.equal(await aliceList.page.locator('#my-orders li').first().getAttribute('data-order-id'), String(id), 'newest first');
    assert.equal(await aliceList.page.evaluate(() => window.__noReload), true);
    assert.equal((await events(alice.page)).ignored.length, 2, 'the order page ignores the new order');
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

    const distance = () => text(alice.page, '#courier-distance');
    assert.equal(await distance(), '', 'no position yet: nothing said');
    const move = await shopCall(shop, cookies[COURIER], 'POST', '/api/courier/orders/1001/location', { lat: 55.7601, lng: 37.6102 });
    assert.equal(move.status, 200, JSON.stringify(move.body));
    await waitFor(async () => (await marker.getAttribute('data-lat')) === '55.7601', 5000, 'marker at the first fix');
    const first = await marker.getAttribute('transform');
    assert.notEqual(first, before);
    // What a shopper wants, not coordinates: 57 m from the door.
    assert.equal(spaced(await distance()), 'Курьер в 1 мин · 60 м от вас');
    assert.doesNotMatch(await alice.page.locator('#map-card').textContent(), /55[.,]7|37[.,]6/, 'no raw coordinates');
    const far = await shopCall(shop, cookies[COURIER], 'POST', '/api/courier/orders/1001/location', { lat: 55.7745, lng: 37.6401 });
    assert.equal(far.status, 200);
    await waitFor(async () => (await marker.getAttribute('data-lat')) === '55.7745', 5000, 'marker at the far fix');
    assert.equal(spaced(await distance()), 'Курьер в 8 мин · 2,5 км от вас');

    // The map is centred on the order's destination (Тверская, 7): the house is in the middle, and
    // a courier at the door is drawn on it.
    const center = await alice.page.evaluate(() => JSON.parse(document.getElementById('config').textContent).mapCenter);
    assert.deepEqual(center, { lat: 55.7596, lng: 37.61 });
    assert.equal(await alice.page.locator('#home').getAttribute('transform'), 'translate(200 120)');
    const door = await shopCall(shop, cookies[COURIER], 'POST', '/api/courier/orders/1001/location', center);
    assert.equal(door.status, 200);
    await waitFor(async () => (await marker.getAttribute('data-lat')) === '55.7596', 5000, 'marker at the door');
    assert.equal(await marker.getAttribute('transform'), 'translate(200.0 120.0)');
    assert.equal(await distance(), 'Курьер у двери');

    const again = await shopCall(shop, cookies[COURIER], 'POST', '/api/courier/orders/1001/location', { lat: 55.7531, lng: 37.6084 });
    assert.equal(again.status, 200);
    await waitFor(async () => (await marker.getAttribute('data-lat')) === '55.7531', 5000, 'marker at the second fix');
    assert.notEqual(await marker.getAttribute('transform'), first);
    assert.match(spaced(await distance()), /^Курьер в \d+ мин · \d+ м от вас$/);

    const stranger = await shopCall(shop, cookies[OTHER_COURIER], 'POST', '/api/courier/orders/1001/location', { lat: 1, lng: 1 });
    assert.equal(stranger.status, 403);
    assert.deepEqual(stranger.body, { error: 'Forbidden' });
    const manager = await shopCall(shop, cookies[MANAGER], 'POST', '/api/courier/orders/1001/location', { lat: 1, lng: 1 });
    assert.equal(manager.status, 403);
    assert.equal(await marker.getAttribute('data-lat'), '55.7531', 'refused positions never reach the page');

    // The page as the README shows it: shipped, the courier's distance, "Доставлен" still ahead
    // (a grey 6), the total broken down. And the list with the new status.
    assert.deepEqual(await stepDots(alice.page), ['✓', '✓', '✓', '✓', '🚗', '6']);
    assert.ok((await alice.page.locator('.toast').count()) <= 3, 'a burst of changes shows its latest few toasts');
    // The picture shows the total, which the toasts of the burst would cover.
    await alice.page.evaluate(() => document.querySelectorAll('.toast').forEach((t) => t.remove()));
    await alice.page.screenshot({ path: screenshotPath('order-tracking.png'), fullPage: true });
    await waitFor(
      async () => (await text(aliceList.page, '#my-orders li[data-order-id="1001"] .status-text')) === 'В доставке',
      5000,
      'the list follows',
    );
    await aliceList.page.screenshot({ path: screenshotPath('order-tracking-orders.png'), fullPage: true });
  });

  it('the order page fits a 390 px phone: no sideways scroll, step labels apart', async () => {
    for (const path of ['/orders/1001', '/']) {
      const context = await signedInContext(ALICE, { width: 390, height: 844 });
      const page = await context.newPage();
      const errors = watchPageErrors(page);
      await page.goto(`${shop.url}${path}`);
      await waitFor(() => page.evaluate(() => document.body.dataset.live === 'subscribed'), 10000, `${path} subscribed`);
      const width = await page.evaluate(() => document.documentElement.scrollWidth);
      assert.ok(width <= 390, `${path} is ${width} px wide at 390 px`);
      if (path !== '/') {
        const labels = await page.evaluate(() =>
          [...document.querySelectorAll('#timeline .label')].map((l) => {
            const r = l.getBoundingClientRect();
            return { text: l.textContent, left: r.left, right: r.right, top: r.top, bottom: r.bottom };
          }),
        );
        assert.equal(labels.length, 6);
        for (let i = 0; i < labels.length; i += 1) {
          for (let j = i + 1; j < labels.length; j += 1) {
            const [a, b] = [labels[i], labels[j]];
            // Labels sharing a line must stand apart (the old six-column timeline had them touch,
            // 0 px apart, and overflow to 428 px); stacked labels must not overlap.
            const sameLine = a.top < b.bottom && b.top < a.bottom;
            const gap = Math.max(b.left - a.right, a.left - b.right);
            assert.ok(!sameLine || gap >= 8, `labels ${a.text} and ${b.text} run together (${gap} px apart)`);
          }
          assert.ok(labels[i].right <= 390, `label ${labels[i].text} ends at ${labels[i].right}`);
        }
        await page.screenshot({ path: screenshotPath('order-tracking-phone.png'), fullPage: true });
      }
      assert.deepEqual(errors, []);
      await context.close();
    }
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
    // The managers' channel: refused to a customer and a courier, signed for a manager.
    const customer = await fetch(`${shop.url}/pusher/auth`, form('private-managers'));
    assert.equal(customer.status, 403);
    assert.deepEqual(await customer.json(), { error: 'Forbidden' });
    for (const [user, status] of [[COURIER, 403], [MANAGER, 200]]) {
      const r = await fetch(`${shop.url}/pusher/auth`, {
        ...form('private-managers'),
        headers: { 'Content-Type': 'application/x-www-form-urlencoded', Cookie: cookies[user] },
      });
      assert.equal(r.status, status, `user ${user}`);
    }
  });

  it("pusher-js in a customer's page cannot subscribe to the managers' channel", async () => {
    const refused = await bob.page.evaluate(
      () =>
        new Promise((resolve) => {
          const ch = window.__pusher.subscribe('private-managers');
          ch.bind('pusher:subscription_error', (e) => resolve(e.status));
          ch.bind('pusher:subscription_succeeded', () => resolve('subscribed'));
        }),
    );
    assert.equal(refused, 403);
  });

  it('the manager page is live on private-managers, shows prices and dates, filters and changes a status', async () => {
    const context = await signedInContext(MANAGER, { width: 1280, height: 720 });
    const page = await context.newPage();
    const errors = watchPageErrors(page);
    await page.goto(`${shop.url}/manager`);
    await waitFor(() => page.evaluate(() => document.body.dataset.live === 'subscribed'), 10000, 'manager page subscribed');
    await waitFor(async () => (await page.locator('#rows tr').count()) === 5, 5000, 'the four seeded orders and the new one listed');
    await page.evaluate(() => {
      window.__noReload = true;
    });
    const row1001 = page.locator('tr[data-order-id="1001"]');
    assert.equal(spaced(await row1001.locator('.total').textContent()), '1 570 ₽');
    assert.match(await row1001.locator('.created').textContent(), /1 янв\.?,? 0?[0-9]:00|1 янв/);
    assert.match(await row1001.locator('.updated').textContent(), /^изм\. /);
    assert.match(await row1001.locator('.badge').textContent(), /В доставке/, 'Russian titles in the manager list');

    // A change made elsewhere (the admin API, another manager, the app) shows without a reload.
    const before = (await page.evaluate(() => window.__managerEvents.received.length));
    const r = await shopCall(shop, null, 'PUT', '/admin/orders/1002.json', { order: { custom_status_permalink: 'preparing' } }, adminAuth());
    assert.equal(r.status, 200, JSON.stringify(r.body));
    await waitFor(
      async () => /Готовится/.test(await page.locator('tr[data-order-id="1002"] .badge').textContent()),
      5000,
      'M-1002 shows Готовится live',
    );
    assert.ok((await page.evaluate(() => window.__managerEvents.received.length)) > before);
    const assign = await shopCall(shop, cookies[MANAGER], 'POST', '/api/manager/orders/1004/courier', { courier_id: COURIER });
    assert.equal(assign.status, 200);
    await waitFor(
      async () => (await page.locator('tr[data-order-id="1004"] select.courier').inputValue()) === String(COURIER),
      5000,
      'the courier assignment shows live',
    );
    assert.equal(await page.evaluate(() => window.__noReload), true, 'the manager page was not reloaded');
    await page.screenshot({ path: screenshotPath('order-tracking-manager.png') });

    await page.selectOption('#filter', 'shipped');
    await waitFor(async () => (await page.locator('#rows tr').count()) === 1, 5000, 'one shipped order');
    assert.equal(await page.locator('#rows tr').first().getAttribute('data-order-id'), '1001');
    await page.selectOption('#filter', '');
    await waitFor(async () => (await page.locator('#rows tr').count()) === 5, 5000, 'all orders again');
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
    assert.deepEqual(aliceList.errors, []);
  });

  it('the shop writes no ANSI colour codes into a redirected log', () => {
    assert.match(shop.stderr, /order-tracking listening on/);
    assert.doesNotMatch(shop.stderr, /\x1b\[/, 'escape codes in the log');
  });
});
