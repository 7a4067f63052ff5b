// Recovery with real clients (issue 14, docs/recovery.md): a subscriber behind a TCP proxy that the
// test cuts at random moments, while 1,000 events are published to its channel over a few seconds,
// receives all 1,000 exactly once and in order, with the plugin (clients/js/vestnik-recovery.js)
// on stock pusher-js 8 (in Node, and in Chromium loading the plugin from /vestnik-recovery.js), with
// PushlerClient (clients/js), and with Laravel Echo on a private channel.
// Where recovery cannot work (too old, another epoch, history off) the answer says why and the
// plugin's and the client's events fire; stock pusher-js without the plugin sends no `recover`.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { after, before, describe, it } from 'node:test';

import Echo from 'laravel-echo';
import WebSocket from 'ws';
import PushlerClient, { VestnikRecovery } from '../../../clients/js/index.js';
import { launchChromium, watchPageErrors } from '../browser.js';
import {
  APPS,
  REPO_ROOT,
  connected,
  openPusher,
  serverSdk,
  sleep,
  startBroker,
  subscribe,
  uniq,
  waitFor,
} from '../helpers.js';
import { startProxy } from '../tcp-proxy.js';

const TOTAL = 1000;
/** Pusher's batch limit: ten events per request. */
const BATCH = 10;

const APP = {
  ...APPS.main,
  // Room for what a few cuts miss at ~300 events/s, whatever the machine's speed.
  history: {
    size: 2000,
    channels: [
      { prefix: 'tiny-', size: 3 },
      { prefix: 'nohistory-', enabled: false },
    ],
  },
};

let broker;
let sdk;
let proxy;
before(async () => {
  broker = await startBroker({ apps: [APP] });
  sdk = serverSdk(broker, APP);
  proxy = await startProxy(broker.port);
});
after(async () => {
  await proxy?.close();
  await broker?.stop();
});

/** The broker as a client behind the proxy sees it. */
const viaProxy = () => ({ ...broker, port: proxy.port });

/**
 * Publishes 1..TOTAL as `seq` events (`{n}`) in batches while cutting every connection through the
 * proxy at random moments (the cuts are the chaos, not a synchronisation). Returns the cut count.
 */
async function streamWithCuts(channel) {
  const cutsBefore = proxy.cuts;
  let publishing = true;
  const chaos = (async () => {
    while (publishing) {
      await sleep(250 + Math.random() * 500);
      if (publishing) proxy.cut();
    }
  })();
  for (let first = 1; first <= TOTAL; first += BATCH) {
    const batch = [];
    for (let n = first; n < first + BATCH; n++) batch.push({ channel, name: 'seq', data: JSON.stringify({ n }) });
    await sdk.triggerBatch(batch);
    await sleep(25);
  }
  publishing = false;
  await chaos;
  return proxy.cuts - cutsBefore;
}

const EXPECTED = Array.from({ length: TOTAL }, (_, i) => i + 1);

/** Waits for every event, then checks exactly once and in order. */
async function assertAllOnceInOrder(got, cuts, describe) {
  await waitFor(() => got.length >= TOTAL, 30_000, `${TOTAL} events`, () => `${got.length} so far; ${describe()}`);
  // Nothing after the last one: a marker event proves no late duplicate is still queued.
  assert.ok(cuts >= 3, `the stream was cut ${cuts} times`);
  assert.equal(got.length, TOTAL, 'no duplicate');
  assert.deepEqual(got, EXPECTED, 'all, exactly once, in order');
}

describe('recovery through cuts: 1,000 events exactly once and in order', () => {
  it('stock pusher-js 8 with the plugin', async () => {
    const name = uniq('orders-');
    const pusher = openPusher(viaProxy(), { app: APP });
    const hook = VestnikRecovery.install(pusher);
    const recovered = [];
    const failed = [];
    await connected(pusher);
    const channel = await subscribe(pusher, name);
    channel.bind('vestnik:recovered', (e) => recovered.push(e.missed));
    channel.bind('vestnik:recovery_failed', (e) => failed.push(e));
    const got = [];
    channel.bind('seq', (d) => got.push(d.n));
    const cuts = await streamWithCuts(name);
    await assertAllOnceInOrder(got, cuts, () => `recovered ${JSON.stringify(recovered)} failed ${JSON.stringify(failed)}`);
    assert.deepEqual(failed, []);
    assert.ok(recovered.length >= 1, `recovered after reconnects: ${JSON.stringify(recovered)}`);
    assert.ok(recovered.some((m) => m > 0), 'some recovery replayed missed events');
    assert.equal(hook.position(name).offset, TOTAL);
    pusher.disconnect();
  });

  it('PushlerClient recovers by itself', async () => {
    const name = uniq('orders-');
    const client = new PushlerClient({
      appKey: APP.key,
      wsHost: '127.0.0.1',
      wsPort: proxy.port,
      forceTLS: false,
      WebSocket,
      minReconnectDelay: 100,
      maxReconnectDelay: 400,
    });
    try {
      const channel = client.subscribe(name);
      const recovered = [];
      const failed = [];
      const got = [];
      channel.on('pushler:recovered', (e) => recovered.push(e.missed));
      channel.on('pushler:recovery_failed', (e) => failed.push(e));
      channel.on('seq', (d) => got.push(d.n));
      await waitFor(() => channel.subscribed, 5000, 'PushlerClient subscribed');
      const cuts = await streamWithCuts(name);
      await assertAllOnceInOrder(got, cuts, () => `recovered ${JSON.stringify(recovered)} failed ${JSON.stringify(failed)}`);
      assert.deepEqual(failed, []);
      assert.ok(recovered.some((m) => m > 0), `recovered: ${JSON.stringify(recovered)}`);
    } finally {
      client.disconnect();
    }
  });

  it('Laravel Echo on a private channel, with the plugin', async () => {
    const room = uniq('orders.');
    const pusher = openPusher(viaProxy(), { app: APP });
    const echo = new Echo({ broadcaster: 'pusher', key: APP.key, client: pusher });
    VestnikRecovery.install(echo.connector.pusher);
    const failed = [];
    const recovered = [];
    const got = [];
    try {
      const channel = echo.private(room);
      channel.listen('.seq', (d) => got.push(d.n));
      channel.listen('.vestnik:recovered', (e) => recovered.push(e.missed));
      channel.listen('.vestnik:recovery_failed', (e) => failed.push(e));
      await waitFor(() => pusher.channel(`private-${room}`)?.subscribed, 5000, 'Echo subscribed');
      const cuts = await streamWithCuts(`private-${room}`);
      await assertAllOnceInOrder(got, cuts, () => `recovered ${JSON.stringify(recovered)} failed ${JSON.stringify(failed)}`);
      assert.deepEqual(failed, []);
      assert.ok(recovered.some((m) => m > 0), `recovered: ${JSON.stringify(recovered)}`);
    } finally {
      echo.disconnect();
    }
  });
});

describe('the plugin as the broker serves it', () => {
  it('/vestnik-recovery.js is clients/js/vestnik-recovery.js, with cache headers and 304', async () => {
    const res = await fetch(`${broker.httpUrl}/vestnik-recovery.js`);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-type'), 'application/javascript');
    assert.equal(await res.text(), readFileSync(`${REPO_ROOT}/clients/js/vestnik-recovery.js`, 'utf8'));
    const again = await fetch(`${broker.httpUrl}/vestnik-recovery.js`, { headers: { 'if-none-match': res.headers.get('etag') } });
    assert.equal(again.status, 304);
  });

  it('in Chromium: stock pusher-js (web build) with <script src=/vestnik-recovery.js> through cuts', async () => {
    const browser = await launchChromium();
    try {
      // The broker's own page at / (a real loopback origin, so Chromium's local-network checks let
      // the socket through; its CSP, made for the console, is bypassed for this app-like page),
      // stock pusher-js (served by interception), and the plugin from the broker itself.
      const context = await browser.newContext({ bypassCSP: true });
      const page = await context.newPage();
      const errors = watchPageErrors(page);
      const pusherWeb = readFileSync(createRequire(import.meta.url).resolve('pusher-js/dist/web/pusher.min.js'), 'utf8');
      await page.route(`${broker.httpUrl}/shop/pusher.min.js`, (route) =>
        route.fulfill({ contentType: 'application/javascript', body: pusherWeb }),
      );
      await page.goto(`${broker.httpUrl}/`);
      await page.addScriptTag({ url: '/shop/pusher.min.js' });
      await page.addScriptTag({ url: '/vestnik-recovery.js' });
      assert.deepEqual(await page.evaluate(() => [typeof window.Pusher, typeof window.VestnikRecovery]), ['function', 'object']);
      const name = uniq('orders-');
      await page.evaluate(
        ({ key, port, name }) => {
          window.got = [];
          window.failed = [];
          const pusher = new window.Pusher(key, {
            cluster: 'mt1',
            wsHost: '127.0.0.1',
            wsPort: port,
            forceTLS: false,
            enabledTransports: ['ws'],
          });
          window.VestnikRecovery.install(pusher);
          // The connection's states with their times, shown if the events stop coming.
          window.states = [];
          const t0 = Date.now();
          pusher.connection.bind('state_change', (s) => window.states.push(`${Date.now() - t0}ms ${s.current}`));
          const channel = pusher.subscribe(name);
          channel.bind('seq', (d) => window.got.push(d.n));
          channel.bind('vestnik:recovery_failed', (e) => window.failed.push(e.reason));
          channel.bind('pusher:subscription_succeeded', () => {
            window.subscribed = true;
          });
        },
        { key: APP.key, port: proxy.port, name },
      );
      await waitFor(() => page.evaluate(() => window.subscribed === true), 10_000, 'subscribed in Chromium', () =>
        JSON.stringify(errors),
      );
      const cuts = await streamWithCuts(name);
      const got = [];
      await waitFor(
        async () => {
          got.splice(0, got.length, ...(await page.evaluate(() => window.got)));
          return got.length >= TOTAL;
        },
        30_000,
        `${TOTAL} events in Chromium`,
        async () =>
          `${got.length} so far; connection states: ${(await page.evaluate(() => window.states)).join(', ')}; ` +
          `page errors: ${JSON.stringify(errors)}`,
      );
      await assertAllOnceInOrder(got, cuts, () => '');
      assert.deepEqual(await page.evaluate(() => window.failed), []);
      // Chromium reports each cut as a failed WebSocket; nothing else may go wrong on the page.
      assert.deepEqual(errors.filter((e) => !/WebSocket/.test(e)), []);
    } finally {
      await browser.close();
    }
  });
});

describe('when recovery cannot work', () => {
  /** Subscribes a plugin-equipped pusher-js through the proxy, collecting events and failures. */
  async function pluginClient(name) {
    const pusher = openPusher(viaProxy(), { app: APP });
    const failed = [];
    VestnikRecovery.install(pusher, { onRecoveryFailed: (e) => failed.push(['option', e.reason]) });
    await connected(pusher);
    const channel = await subscribe(pusher, name);
    channel.bind('vestnik:recovery_failed', (e) => failed.push(['event', e.reason, e.position]));
    const got = [];
    channel.bind('seq', (d) => got.push(d.n));
    return { pusher, channel, failed, got };
  }

  /** Holds the client off, publishes `missed` events while it is away, and waits for its return. */
  async function missWhileAway(c, name, missed) {
    proxy.hold();
    try {
      await waitFor(() => c.pusher.connection.state !== 'connected', 5000, 'the cut noticed');
      for (let n = 1; n <= missed; n++) await sdk.trigger(name, 'seq', { n: 100 + n });
    } finally {
      proxy.release();
    }
    await connected(c.pusher, 15_000);
    await waitFor(() => c.channel.subscribed, 5000, 'resubscribed');
  }

  it('too old: recovered:false with too_old, the plugin event fires, live events go on', async () => {
    const name = uniq('tiny-');
    const c = await pluginClient(name);
    await sdk.trigger(name, 'seq', { n: 1 });
    await waitFor(() => c.got.length === 1, 5000, 'first event');
    await missWhileAway(c, name, 5);
    await waitFor(() => c.failed.length === 2, 5000, 'recovery_failed');
    assert.equal(c.failed[0][1], 'too_old');
    assert.deepEqual(c.failed.map((f) => f.slice(0, 2)).sort(), [['event', 'too_old'], ['option', 'too_old']]);
    const failure = c.failed.find((f) => f[0] === 'event');
    assert.equal(failure[2].offset, 6, 'the position to go on from');
    await sdk.trigger(name, 'seq', { n: 7 });
    await waitFor(() => c.got.includes(7), 5000, 'live after the failure');
    assert.deepEqual(c.got, [1, 7], 'no partial replay');
    c.pusher.disconnect();
  });

  it('wrong epoch: after a broker restart the plugin gets epoch_changed and goes on live', async () => {
    // Its own broker and proxy: this one is restarted on its port.
    const own = await startBroker({ apps: [APP] });
    const port = own.port;
    const ownProxy = await startProxy(port);
    let second;
    try {
      const name = uniq('orders-');
      const pusher = openPusher({ ...own, port: ownProxy.port }, { app: APP });
      const failed = [];
      const hook = VestnikRecovery.install(pusher);
      await connected(pusher);
      const channel = await subscribe(pusher, name);
      channel.bind('vestnik:recovery_failed', (e) => failed.push(e));
      const got = [];
      channel.bind('seq', (d) => got.push(d.n));
      const ownSdk = serverSdk(own, APP);
      await ownSdk.trigger(name, 'seq', { n: 1 });
      await waitFor(() => got.length === 1, 5000, 'first event');
      const before = hook.position(name);
      assert.equal(before.offset, 1);

      // The client's next connection waits in the proxy until the new broker is up, rather than
      // meet a closed port and pusher-js's long retry.
      ownProxy.hold();
      await own.kill('SIGTERM');
      second = await startBroker({ apps: [APP], port });
      ownProxy.release();
      await waitFor(() => failed.length === 1, 20_000, 'vestnik:recovery_failed after the restart');
      assert.equal(failed[0].reason, 'epoch_changed');
      assert.notEqual(failed[0].position.epoch, before.epoch, 'the restarted broker numbers anew');
      assert.equal(failed[0].position.offset, 0);
      await serverSdk(second, APP).trigger(name, 'seq', { n: 2 });
      await waitFor(() => got.includes(2), 5000, 'live after the failure');
      assert.deepEqual(got, [1, 2]);
      assert.deepEqual(hook.position(name), { epoch: failed[0].position.epoch, offset: 1 });
      pusher.disconnect();
    } finally {
      await ownProxy.close();
      await second?.stop();
      await own.stop();
    }
  });

  it('history off: no positions, so the plugin asks nothing and stock behaviour is kept', async () => {
    const name = uniq('nohistory-');
    const c = await pluginClient(name);
    await sdk.trigger(name, 'seq', { n: 1 });
    await waitFor(() => c.got.length === 1, 5000, 'first event');
    assert.equal(c.pusher.__vestnikRecovery.position(name), null);
    await missWhileAway(c, name, 2);
    await sdk.trigger(name, 'seq', { n: 9 });
    await waitFor(() => c.got.includes(9), 5000, 'live after the reconnect');
    assert.deepEqual(c.got, [1, 9], 'missed events are lost, as with any Pusher server');
    assert.deepEqual(c.failed, []);
    c.pusher.disconnect();
  });

  it('history off, asked anyway: recovered:false with history_off, PushlerClient fires pushler:recovery_failed', async () => {
    const name = uniq('nohistory-');
    const client = new PushlerClient({ appKey: APP.key, wsHost: '127.0.0.1', wsPort: broker.port, forceTLS: false, WebSocket });
    try {
      const channel = client.getChannel(name) ?? client.subscribe(name);
      // A position from an earlier life of the channel, as if history had been on then.
      channel._position = { epoch: 'abcdefabcdef', offset: 3 };
      const failed = [];
      channel.on('pushler:recovery_failed', (e) => failed.push(e));
      await waitFor(() => failed.length === 1, 5000, 'pushler:recovery_failed');
      assert.equal(failed[0].reason, 'history_off');
      assert.equal(failed[0].position, null, 'no position on a channel without history');
    } finally {
      client.disconnect();
    }
  });

  it('stock pusher-js without the plugin sends no recover', async () => {
    const name = uniq('orders-');
    const pusher = openPusher(viaProxy(), { app: APP });
    const sent = [];
    const send = pusher.send_event.bind(pusher);
    pusher.send_event = (event, data, channel) => {
      sent.push([event, data]);
      return send(event, data, channel);
    };
    await connected(pusher);
    await subscribe(pusher, name);
    await sdk.trigger(name, 'seq', { n: 1 });
    proxy.hold();
    await waitFor(() => pusher.connection.state !== 'connected', 5000, 'the cut noticed');
    proxy.release();
    await connected(pusher, 15_000);
    await waitFor(() => sent.filter(([e]) => e === 'pusher:subscribe').length === 2, 5000, 'resubscribed');
    for (const [event, data] of sent) if (event === 'pusher:subscribe') assert.equal(data.recover, undefined);
    pusher.disconnect();
  });
});
