// Webhooks end to end: a real HTTP receiver (node:http) that verifies every request with the
// official `pusher` SDK (`pusher.webhook({headers, rawBody}).isValid()` / `getEvents()`).
// Covers the event shapes, batching, the vacate hold, retries, durability across a broker restart,
// dead letters and their replay through the signed admin endpoints, and the `--webhook-url` quick
// start.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import { expectHttpError, openRaw, serverSdk, sleep, uniq, waitFor, withTimeout } from '../helpers.js';
import {
  UUID_V7_RE,
  deadLetters,
  downReceiver,
  removeDir,
  replayDeadLetters,
  startReceiver,
  startWebhookBroker,
  tempDir,
  webhookStats,
} from '../webhook-receiver.js';

const HOLD_MS = 1000;
const BATCH_MS = 200;
const testStart = Date.now();

// One app per concern so each receiver sees only its own test's traffic.
const WH = {
  shapes: { id: '2001', key: 'wh-shapes-key', secret: 'wh-shapes-secret' },
  counts: { id: '2002', key: 'wh-counts-key', secret: 'wh-counts-secret', subscription_count: true },
  batch: { id: '2003', key: 'wh-batch-key', secret: 'wh-batch-secret' },
  hold: { id: '2004', key: 'wh-hold-key', secret: 'wh-hold-secret' },
  retry: { id: '2005', key: 'wh-retry-key', secret: 'wh-retry-secret' },
  durable: { id: '3001', key: 'wh-durable-key', secret: 'wh-durable-secret' },
  dead: { id: '4001', key: 'wh-dead-key', secret: 'wh-dead-secret' },
};
const DEFAULT_APP = { id: 'app-id', key: 'app-key', secret: 'app-secret' };

/** Config app entry: the app with one target at `receiver`. */
const withTarget = (app, receiver) => ({ ...app, webhooks: [{ url: receiver.url }] });

/** An accepted event without the receiver's bookkeeping fields. */
const strip = ({ _at, _req, ...e }) => e;

/** Polls an async predicate every `everyMs` (for conditions that need an HTTP call per try). */
function poll(predicate, timeoutMs, what, describe, everyMs = 100) {
  return waitFor(
    async () => {
      const v = await predicate();
      if (!v) await sleep(everyMs);
      return v;
    },
    timeoutMs,
    what,
    describe,
  );
}

/** Every request the receiver got is a well-formed, SDK-valid Vestnik webhook. */
function assertWellFormed(receiver, { allowRetries = false } = {}) {
  assert.ok(receiver.requests.length > 0, 'no requests');
  for (const q of receiver.requests) {
    assert.equal(q.valid, true, `the pusher SDK rejected a request: ${JSON.stringify(q.headers)} ${q.rawBody}`);
    assert.equal(q.method, 'POST');
    assert.equal(q.headers['content-type'], 'application/json');
    assert.equal(q.headers['x-pusher-key'], receiver.app.key);
    assert.match(q.headers['x-pusher-signature'], /^[0-9a-f]{64}$/);
    assert.match(q.headers['user-agent'] ?? '', /^vestnik-webhooks\//);
    if (!allowRetries) assert.equal(q.attempt, '1', `attempt header of ${q.rawBody}`);
    assert.equal(typeof q.timeMs, 'number');
    assert.ok(Math.abs(q.timeMs - q.at) < 5000, `time_ms ${q.timeMs} far from arrival ${q.at}`);
    assert.ok(q.events.length >= 1, `empty batch: ${q.rawBody}`);
    assert.deepEqual(q.headerIds, q.events.map((e) => e.id), `X-Vestnik-Webhook-Id vs body ids: ${q.rawBody}`);
    for (const e of q.events) {
      assert.match(e.id, UUID_V7_RE, `event id ${e.id}`);
      const createdMs = parseInt(e.id.replace(/-/g, '').slice(0, 12), 16);
      assert.ok(createdMs >= testStart - 1000 && createdMs <= q.at + 1000, `id ${e.id} time ${createdMs}`);
    }
  }
  const ids = receiver.events.map((e) => e.id);
  assert.equal(new Set(ids).size, ids.length, `duplicate event ids: ${ids.join(' ')}`);
}

// ---------------------------------------------------------------------------------------------
// One broker for shapes, batching, hold and retries

describe('webhooks with a running receiver', () => {
  let broker;
  let dataDir;
  const rx = {};

  before(async () => {
    for (const name of ['shapes', 'counts', 'batch', 'hold', 'retry']) rx[name] = await startReceiver(WH[name]);
    dataDir = tempDir();
    broker = await startWebhookBroker({
      apps: Object.keys(rx).map((name) => withTarget(WH[name], rx[name])),
      webhooks: {
        data_dir: dataDir,
        batch_ms: BATCH_MS,
        batch_max: 20,
        hold_ms: HOLD_MS,
        retry_window_secs: 60,
        retry_initial_ms: 100,
        retry_max_ms: 400,
        max_in_flight: 4,
        request_timeout_ms: 2000,
      },
    });
  });
  after(async () => {
    await broker?.stop();
    for (const r of Object.values(rx)) await r.close();
    removeDir(dataDir);
  });

  describe('event shapes (Pusher\'s, plus id last)', () => {
    it('channel_occupied, then channel_vacated after the hold', async () => {
      const r = rx.shapes;
      const name = uniq('public-wh-');
      const a = await openRaw(broker, { app: WH.shapes });
      await a.subscribeOk(name);
      const occ = await r.waitEvent((e) => e.name === 'channel_occupied' && e.channel === name);
      assert.deepEqual(Object.keys(strip(occ)), ['name', 'channel', 'id']);
      assert.deepEqual(strip(occ), { name: 'channel_occupied', channel: name, id: occ.id });

      const t0 = Date.now();
      a.send({ event: 'pusher:unsubscribe', data: { channel: name } });
      const vac = await r.waitEvent((e) => e.name === 'channel_vacated' && e.channel === name, HOLD_MS + 4000);
      assert.deepEqual(Object.keys(strip(vac)), ['name', 'channel', 'id']);
      assert.deepEqual(strip(vac), { name: 'channel_vacated', channel: name, id: vac.id });
      assert.ok(vac._at - t0 >= HOLD_MS - 50, `channel_vacated after ${vac._at - t0} ms, hold is ${HOLD_MS} ms`);
      assert.notEqual(vac.id, occ.id);
      a.close();
      assertWellFormed(r);
    });

    it('member_added and member_removed carry user_id; the last leave vacates', async () => {
      const r = rx.shapes;
      const sdk = serverSdk(broker, WH.shapes);
      const name = uniq('presence-wh-');
      const a = await openRaw(broker, { app: WH.shapes });
      const b = await openRaw(broker, { app: WH.shapes });
      await a.subscribeSigned(sdk, name, { user_id: 'alice', user_info: { n: 1 } });
      await b.subscribeSigned(sdk, name, { user_id: 'bob' });
      const [added] = await r.waitEvents((e) => e.name === 'member_added' && e.channel === name, 2);
      const adds = r.find((e) => e.name === 'member_added' && e.channel === name);
      assert.deepEqual(adds.map((e) => e.user_id).sort(), ['alice', 'bob']);
      assert.deepEqual(Object.keys(strip(added)), ['name', 'channel', 'user_id', 'id']);
      for (const e of adds) assert.deepEqual(strip(e), { name: 'member_added', channel: name, user_id: e.user_id, id: e.id });
      assert.equal(r.find((e) => e.name === 'channel_occupied' && e.channel === name).length, 1);

      b.close(); // bob's only socket: member_removed bob, channel still occupied by alice
      a.send({ event: 'pusher:unsubscribe', data: { channel: name } });
      const removed = await r.waitEvents((e) => e.name === 'member_removed' && e.channel === name, 2, HOLD_MS + 4000);
      assert.deepEqual(removed.map((e) => e.user_id).sort(), ['alice', 'bob']);
      for (const e of removed) {
        assert.deepEqual(Object.keys(strip(e)), ['name', 'channel', 'user_id', 'id']);
        assert.deepEqual(strip(e), { name: 'member_removed', channel: name, user_id: e.user_id, id: e.id });
      }
      await r.waitEvent((e) => e.name === 'channel_vacated' && e.channel === name, HOLD_MS + 4000);
      a.close();
      assertWellFormed(r);
    });

    it('client_event: event, data (the string sent), socket_id, and user_id on presence only', async () => {
      const r = rx.shapes;
      const sdk = serverSdk(broker, WH.shapes);
      const pres = uniq('presence-wh-ce-');
      const priv = uniq('private-wh-ce-');
      const a = await openRaw(broker, { app: WH.shapes });
      const b = await openRaw(broker, { app: WH.shapes });
      await a.subscribeSigned(sdk, pres, { user_id: 'carol' });
      await b.subscribeSigned(sdk, pres, { user_id: 'dan' });
      await a.subscribeSigned(sdk, priv);
      await b.subscribeSigned(sdk, priv);

      a.send({ event: 'client-hi', channel: pres, data: { text: 'hi', n: 1 } });
      b.send({ event: 'client-note', channel: priv, data: 'just text' });
      const onPres = await r.waitEvent((e) => e.name === 'client_event' && e.channel === pres);
      const onPriv = await r.waitEvent((e) => e.name === 'client_event' && e.channel === priv);

      assert.deepEqual(Object.keys(strip(onPres)), ['name', 'channel', 'event', 'data', 'socket_id', 'user_id', 'id']);
      assert.equal(typeof onPres.data, 'string', 'data must be the string the client sent');
      assert.deepEqual(JSON.parse(onPres.data), { text: 'hi', n: 1 });
      assert.deepEqual(strip(onPres), {
        name: 'client_event',
        channel: pres,
        event: 'client-hi',
        data: onPres.data,
        socket_id: a.socketId,
        user_id: 'carol',
        id: onPres.id,
      });

      assert.deepEqual(Object.keys(strip(onPriv)), ['name', 'channel', 'event', 'data', 'socket_id', 'id']);
      assert.deepEqual(strip(onPriv), {
        name: 'client_event',
        channel: priv,
        event: 'client-note',
        data: 'just text',
        socket_id: b.socketId,
        id: onPriv.id,
      });
      a.close();
      b.close();
      assertWellFormed(r);
    });

    it('cache_miss when a cache channel is subscribed with nothing cached', async () => {
      const r = rx.shapes;
      const name = uniq('cache-wh-');
      const a = await openRaw(broker, { app: WH.shapes });
      await a.subscribeOk(name);
      const miss = await r.waitEvent((e) => e.name === 'cache_miss' && e.channel === name);
      assert.deepEqual(Object.keys(strip(miss)), ['name', 'channel', 'id']);
      assert.deepEqual(strip(miss), { name: 'cache_miss', channel: name, id: miss.id });
      // A cached event: the next subscriber gets no cache_miss webhook.
      await serverSdk(broker, WH.shapes).trigger(name, 'state', { on: true });
      const b = await openRaw(broker, { app: WH.shapes });
      await b.subscribeOk(name);
      await b.waitEvent('state', name);
      const marker = uniq('public-wh-marker-');
      await b.subscribeOk(marker);
      await r.waitEvent((e) => e.name === 'channel_occupied' && e.channel === marker);
      await sleep(BATCH_MS + 100);
      assert.equal(r.find((e) => e.name === 'cache_miss' && e.channel === name).length, 1, r.describe());
      a.close();
      b.close();
      assertWellFormed(r);
    });

    it('subscription_count (app with subscription_count = true)', async () => {
      const r = rx.counts;
      const name = uniq('public-wh-count-');
      const a = await openRaw(broker, { app: WH.counts });
      const b = await openRaw(broker, { app: WH.counts });
      await a.subscribeOk(name);
      await r.waitEvent((e) => e.name === 'subscription_count' && e.channel === name && e.subscription_count === 1);
      await b.subscribeOk(name);
      const two = await r.waitEvent((e) => e.name === 'subscription_count' && e.channel === name && e.subscription_count === 2);
      assert.deepEqual(Object.keys(strip(two)), ['name', 'channel', 'subscription_count', 'id']);
      assert.deepEqual(strip(two), { name: 'subscription_count', channel: name, subscription_count: 2, id: two.id });
      b.send({ event: 'pusher:unsubscribe', data: { channel: name } });
      a.send({ event: 'pusher:unsubscribe', data: { channel: name } });
      await r.waitEvents((e) => e.name === 'subscription_count' && e.channel === name, 4);
      const counts = r.find((e) => e.name === 'subscription_count' && e.channel === name).map((e) => e.subscription_count);
      assert.deepEqual(counts.sort(), [0, 1, 1, 2]);
      a.close();
      b.close();
      assertWellFormed(r);
    });
  });

  it('batching: events in quick succession arrive in one POST', async () => {
    const r = rx.batch;
    const names = Array.from({ length: 6 }, () => uniq('public-wh-batch-'));
    const a = await openRaw(broker, { app: WH.batch });
    const before = r.requests.length;
    const t0 = Date.now();
    for (const channel of names) a.send({ event: 'pusher:subscribe', data: { channel, auth: '' } });
    const got = await r.waitEvents((e) => e.name === 'channel_occupied' && names.includes(e.channel), names.length);
    const reqs = new Set(got.map((e) => e._req));
    assert.equal(reqs.size, 1, `6 events in ${reqs.size} POSTs: ${r.describe()}`);
    assert.equal(r.requests.length - before, 1, r.describe());
    const [req] = reqs;
    assert.deepEqual(req.events.map((e) => e.channel).sort(), [...names].sort());
    assert.ok(req.at - t0 >= BATCH_MS - 50, `batch sent ${req.at - t0} ms after the first event; batch_ms is ${BATCH_MS}`);
    a.close();
    assertWellFormed(r);
  });

  it(`the vacate hold (${HOLD_MS} ms): a quick leave-and-return is silent, a real leave is sent after the hold`, async () => {
    const r = rx.hold;
    const sdk = serverSdk(broker, WH.hold);
    const flap = uniq('public-wh-flap-');
    const pres = uniq('presence-wh-flap-');
    const reload = uniq('presence-wh-reload-');
    const gone = uniq('public-wh-gone-');
    const a = await openRaw(broker, { app: WH.hold });
    await a.subscribeOk(flap);
    await a.subscribeSigned(sdk, pres, { user_id: 'erin' });
    await a.subscribeOk(gone);
    const b = await openRaw(broker, { app: WH.hold });
    await b.subscribeSigned(sdk, reload, { user_id: 'gina' });
    await r.waitEvents((e) => e.name === 'channel_occupied' && [flap, pres, gone, reload].includes(e.channel), 4);
    await r.waitEvents((e) => e.name === 'member_added' && [pres, reload].includes(e.channel), 2);

    // A page reload: the user's only socket closes and a new one joins again.
    b.close();
    await b.waitClose();
    const c = await openRaw(broker, { app: WH.hold });
    await c.subscribeSigned(sdk, reload, { user_id: 'gina' });

    // Leave and come back at once, on the same socket.
    a.send({ event: 'pusher:unsubscribe', data: { channel: flap } });
    a.send({ event: 'pusher:unsubscribe', data: { channel: pres } });
    await a.subscribeOk(flap);
    const resub = await a.subscribeSigned(sdk, pres, { user_id: 'erin' });
    assert.equal(resub.event, 'pusher_internal:subscription_succeeded', resub.raw);

    // Leave for good: vacated only after the hold. Its hold started after the flaps' would have.
    const t0 = Date.now();
    a.send({ event: 'pusher:unsubscribe', data: { channel: gone } });
    const vac = await r.waitEvent((e) => e.name === 'channel_vacated' && e.channel === gone, HOLD_MS + 4000);
    assert.ok(vac._at - t0 >= HOLD_MS - 50, `channel_vacated after ${vac._at - t0} ms, hold is ${HOLD_MS} ms`);
    assert.ok(vac._at - t0 < HOLD_MS + BATCH_MS + 1500, `channel_vacated only after ${vac._at - t0} ms`);
    await sleep(BATCH_MS + 300);

    const about = (ch) => r.find((e) => e.channel === ch).map((e) => e.name + (e.user_id ? `:${e.user_id}` : ''));
    assert.deepEqual(about(flap), ['channel_occupied'], r.describe());
    assert.deepEqual(about(pres).sort(), ['channel_occupied', 'member_added:erin'], r.describe());
    assert.deepEqual(about(reload).sort(), ['channel_occupied', 'member_added:gina'], r.describe());
    const stats = await webhookStats(broker, WH.hold);
    // Each quick return cancels the held leave and its matching join: flap 2 (vacated, occupied),
    // presence flap 4 and page reload 4 (member_removed, member_added, vacated, occupied).
    assert.equal(stats.suppressed, 10, JSON.stringify(stats));
    assert.equal(stats.delivered, r.events.length, JSON.stringify(stats));
    a.close();
    c.close();
    assertWellFormed(r);
  });

  it('retries: a receiver that answers 500 twice then 200 gets the events, freshly signed each time', async () => {
    const r = rx.retry;
    r.failNext(2);
    const names = [uniq('public-wh-retry-'), uniq('public-wh-retry-')];
    const a = await openRaw(broker, { app: WH.retry });
    for (const n of names) a.send({ event: 'pusher:subscribe', data: { channel: n, auth: '' } });
    const got = await r.waitEvents((e) => e.name === 'channel_occupied' && names.includes(e.channel), 2, 8000);
    const tries = r.requests.filter((q) => q.events.some((e) => names.includes(e.channel)));
    assert.deepEqual(tries.map((q) => q.status), [500, 500, 200], r.describe());
    assert.deepEqual(tries.map((q) => q.attempt), ['1', '2', '3']);
    for (const q of tries) {
      assert.equal(q.valid, true, 'the pusher SDK rejected a retry');
      assert.deepEqual(q.headerIds, tries[0].headerIds, 'a retry must carry the same event ids');
    }
    assert.deepEqual(got.map((e) => e.id).sort(), [...tries[0].headerIds].sort());
    assert.equal(new Set(tries.map((q) => q.headers['x-pusher-signature'])).size, 3, 'signatures reused');
    assert.ok(tries[1].timeMs > tries[0].timeMs && tries[2].timeMs > tries[1].timeMs, 'time_ms not fresh on retry');
    assert.ok(tries[1].at - tries[0].at >= 40, `first retry after ${tries[1].at - tries[0].at} ms (retry_initial_ms 100, jitter >= half)`);

    const stats = await poll(
      async () => {
        const s = await webhookStats(broker, WH.retry);
        return s && s.pending === 0 && s.delivered >= 2 ? s : null;
      },
      5000,
      'retry stats to settle',
    );
    assert.ok(stats.failed >= 2, JSON.stringify(stats));
    assert.ok(stats.retried >= 2, JSON.stringify(stats));
    assert.equal(stats.dead_lettered, 0, JSON.stringify(stats));
    a.close();
    assertWellFormed(r, { allowRetries: true });
  });
});

// ---------------------------------------------------------------------------------------------

describe('durability', () => {
  let brokers = [];
  let receiver;
  let dataDir;
  after(async () => {
    for (const b of brokers) await b.stop();
    await receiver?.close();
    removeDir(dataDir);
  });

  it('receiver down, broker stopped with SIGTERM and restarted on the same data_dir: every event arrives exactly once', async () => {
    receiver = await downReceiver(WH.durable);
    dataDir = tempDir();
    const start = () =>
      startWebhookBroker({
        apps: [withTarget(WH.durable, receiver)],
        webhooks: { data_dir: dataDir, batch_ms: 50, hold_ms: 3000, retry_initial_ms: 100, retry_max_ms: 300 },
        // No drain grace: the time to exit below measures the spooling, not the drain.
        server: { drain_grace_ms: 0 },
      });
    const first = await start();
    brokers.push(first);
    const sdk = serverSdk(first, WH.durable);

    const pub1 = uniq('public-wh-dur-');
    const pub2 = uniq('public-wh-dur-');
    const pres = uniq('presence-wh-dur-');
    const priv = uniq('private-wh-dur-');
    const cache = uniq('cache-wh-dur-');
    const a = await openRaw(first, { app: WH.durable });
    await a.subscribeOk(pub1);
    await a.subscribeOk(pub2);
    await a.subscribeSigned(sdk, pres, { user_id: 'frank' });
    await a.subscribeSigned(sdk, priv);
    await a.subscribeOk(cache);
    a.send({ event: 'client-x', channel: priv, data: { k: 'v' } });
    await a.ping();
    a.close(); // the vacates and member_removed are now held (3 s) when SIGTERM comes
    const expected = [
      ...[pub1, pub2, pres, priv, cache].flatMap((c) => [`channel_occupied ${c}`, `channel_vacated ${c}`]),
      `member_added ${pres} frank`,
      `member_removed ${pres} frank`,
      `client_event ${priv}`,
      `cache_miss ${cache}`,
    ].sort();

    // Every event has reached the webhook service (spooled, or held/batching) before the stop.
    await poll(
      async () => {
        const s = await webhookStats(first, WH.durable);
        return s && s.pending + s.queued === expected.length ? s : null;
      },
      5000,
      `pending + queued = ${expected.length}`,
      undefined,
      50,
    );
    assert.equal(receiver.requests.length, 0);

    const t0 = Date.now();
    first.proc.kill('SIGTERM');
    const exit = await withTimeout(first.exited, 15000, 'broker still running 15 s after SIGTERM');
    assert.deepEqual(exit, { code: 0, signal: null }, first.stderr.slice(-2000));
    assert.ok(Date.now() - t0 < 2500, `SIGTERM took ${Date.now() - t0} ms (held events should be spooled, not waited for)`);

    const second = await start();
    brokers.push(second);
    await receiver.open();

    const label = (e) => [e.name, e.channel, e.user_id].filter(Boolean).join(' ');
    await waitFor(
      () => new Set(receiver.events.map((e) => e.id)).size >= expected.length,
      8000,
      `${expected.length} events after the restart`,
      () => receiver.describe(),
    );
    await sleep(500); // would-be duplicates
    assert.deepEqual(receiver.events.map(label).sort(), expected, receiver.describe());
    for (const [id, n] of receiver.idCounts()) assert.equal(n, 1, `event ${id} delivered ${n} times`);
    assertWellFormed(receiver, { allowRetries: true });

    const stats = await poll(
      async () => {
        const s = await webhookStats(second, WH.durable);
        return s && s.pending === 0 ? s : null;
      },
      5000,
      'pending = 0 after delivery',
    );
    assert.equal(stats.delivered, expected.length, JSON.stringify(stats));
  });
});

// ---------------------------------------------------------------------------------------------

describe('dead letters', () => {
  let broker;
  let receiver;
  let dataDir;
  after(async () => {
    await broker?.stop();
    await receiver?.close();
    removeDir(dataDir);
  });

  it('after retry_window_secs they are listed; replay by ids and {"all": true} delivers them', async () => {
    receiver = await downReceiver(WH.dead);
    dataDir = tempDir();
    broker = await startWebhookBroker({
      apps: [withTarget(WH.dead, receiver)],
      webhooks: { data_dir: dataDir, batch_ms: 50, hold_ms: 0, retry_window_secs: 1, retry_initial_ms: 100, retry_max_ms: 200 },
    });
    const names = [uniq('public-wh-dead-'), uniq('public-wh-dead-'), uniq('public-wh-dead-')];
    const a = await openRaw(broker, { app: WH.dead });
    for (const n of names) await a.subscribeOk(n);

    const dead = await poll(
      async () => {
        const list = await deadLetters(broker, WH.dead);
        return names.every((n) => list.some((d) => d.event.channel === n)) ? list : null;
      },
      8000,
      'the 3 channel_occupied in the dead letters',
    );
    assert.equal(dead.length, 3, JSON.stringify(dead));
    for (const d of dead) {
      assert.equal(d.app_id, WH.dead.id);
      assert.equal(d.url, receiver.url);
      assert.equal(d.id, d.event.id);
      assert.match(d.id, UUID_V7_RE);
      assert.deepEqual(d.event, { name: 'channel_occupied', channel: d.event.channel, id: d.id });
      assert.ok(d.attempts >= 2, `attempts ${d.attempts}`);
      assert.match(d.last_error, /refused/i);
      assert.ok(d.dead_lettered_ms - d.created_ms >= 900, `dead-lettered ${d.dead_lettered_ms - d.created_ms} ms after spooling; window is 1 s`);
    }
    const s1 = await webhookStats(broker, WH.dead);
    assert.equal(s1.dead_lettered, 3, JSON.stringify(s1));
    assert.equal(s1.pending, 0, JSON.stringify(s1));

    // Dead letters are not retried on their own, even once the receiver is back.
    await receiver.open();
    await sleep(500);
    assert.equal(receiver.requests.length, 0, receiver.describe());

    const bad = await expectHttpError(() => serverSdk(broker, WH.dead).post({ path: '/webhooks/dead_letters/replay', body: {} }));
    assert.equal(bad.status, 400, bad.body);

    // One by id, then the rest with {"all": true}.
    const byId = await replayDeadLetters(broker, WH.dead, { ids: [dead[0].id] });
    assert.deepEqual(byId, { replayed: 1 });
    const first = await receiver.waitEvent(() => true, 5000, 'the event replayed by id');
    assert.equal(first.id, dead[0].id);
    assert.deepEqual((await deadLetters(broker, WH.dead)).map((d) => d.id).sort(), [dead[1].id, dead[2].id].sort());
    const res = await replayDeadLetters(broker, WH.dead, { all: true });
    assert.deepEqual(res, { replayed: 2 });
    await receiver.waitEvents(() => true, 3, 5000, 'replayed events');
    await sleep(300);
    assert.deepEqual(receiver.events.map((e) => e.id).sort(), dead.map((d) => d.id).sort(), 'replay keeps the ids, each once');
    assert.ok(receiver.requests.every((q) => q.attempt === '1'), 'replays start again at attempt 1');
    assertWellFormed(receiver);

    assert.deepEqual(await deadLetters(broker, WH.dead), []);
    const s2 = await poll(
      async () => {
        const s = await webhookStats(broker, WH.dead);
        return s.delivered === 3 && s.pending === 0 ? s : null;
      },
      5000,
      'delivered = 3',
    );
    assert.equal(s2.replayed, 3, JSON.stringify(s2));
    a.close();
  });
});

// ---------------------------------------------------------------------------------------------

describe('quick start (default app, no config file)', () => {
  const cleanup = [];
  after(async () => {
    for (const f of cleanup.reverse()) await f();
  });

  for (const via of ['--webhook-url', 'VESTNIK_WEBHOOK_URL']) {
    it(`${via} delivers channel_occupied of the default app`, async () => {
      const receiver = await startReceiver(DEFAULT_APP);
      const dataDir = tempDir();
      cleanup.push(() => receiver.close(), () => removeDir(dataDir));
      const broker = await startWebhookBroker(
        via === '--webhook-url'
          ? { args: ['--webhook-url', receiver.url, '--data-dir', dataDir] }
          : { env: { VESTNIK_WEBHOOK_URL: receiver.url, VESTNIK_DATA_DIR: dataDir } },
      );
      cleanup.push(() => broker.stop());
      const name = uniq('public-wh-qs-');
      const a = await openRaw(broker, { key: DEFAULT_APP.key });
      await a.subscribeOk(name);
      const occ = await receiver.waitEvent((e) => e.name === 'channel_occupied' && e.channel === name, 5000);
      assert.deepEqual(strip(occ), { name: 'channel_occupied', channel: name, id: occ.id });
      assertWellFormed(receiver);
      assert.ok(existsSync(join(dataDir, 'webhooks.redb')), 'no spool in the --data-dir');
      a.close();
    });
  }
});
