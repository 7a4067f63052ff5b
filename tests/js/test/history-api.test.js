// The history API (issue 14, docs/recovery.md): `GET /apps/{id}/channels/{name}/history` read with
// the official Node SDK's generic `pusher.get({path, params})`, paged with its cursor, and its
// refusals as JSON errors a backend can act on. A cluster on Redis or on NATS with JetStream answers
// from its cluster-wide history on any node; one on NATS without JetStream refuses it clearly.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import {
  ADAPTERS,
  deleteNatsHistory,
  randomPrefix,
  requireBackbone,
  SHARED_URLS,
  startBackbone,
  startNode,
} from '../cluster-helpers.js';
import { APPS, expectHttpError, openRaw, sdkGetJson, serverSdk, signedRequest, startBroker, uniq, waitFor } from '../helpers.js';

const HISTORY_APP = {
  ...APPS.main,
  history: { size: 5, channels: [{ prefix: 'nohistory-', enabled: false }] },
};

let broker;
let sdk;
before(async () => {
  broker = await startBroker({ apps: [HISTORY_APP] });
  sdk = serverSdk(broker, HISTORY_APP);
});
after(async () => {
  await broker?.stop();
});

const history = (channel, params = {}) => sdkGetJson(sdk, `/channels/${channel}/history`, params);

describe('history API with the pusher Node SDK', () => {
  it('pages oldest first with next_after, and the events are those the sockets got', async () => {
    const name = uniq('orders-');
    const raw = await openRaw(broker);
    await raw.subscribeOk(name);
    await sdk.trigger(name, 'status', { step: 1 });
    await sdk.triggerBatch([2, 3].map((step) => ({ channel: name, name: 'status', data: JSON.stringify({ step }) })));
    await raw.waitFor((f) => f.event === 'status' && f.payload?.step === 3);
    const onSocket = raw.frames.filter((f) => f.event === 'status');
    const epoch = onSocket[0].position.epoch;

    const before = Date.now();
    const first = await history(name, { limit: '2' });
    assert.equal(first.epoch, epoch);
    assert.deepEqual([first.first_offset, first.last_offset], [1, 3]);
    assert.deepEqual(
      first.events.map((e) => [e.offset, e.event, e.data]),
      onSocket.slice(0, 2).map((f) => [f.position.offset, f.event, f.data]),
    );
    for (const e of first.events) assert.ok(e.published_at_ms <= before && e.published_at_ms > before - 60_000);
    assert.deepEqual([first.next_after, first.has_more], [2, true]);

    const next = await history(name, { epoch, after: String(first.next_after) });
    assert.deepEqual(next.events.map((e) => JSON.parse(e.data).step), [3]);
    assert.deepEqual([next.next_after, next.has_more], [3, false]);
    // Polling again from the cursor: nothing new, the cursor stays.
    const idle = await history(name, { epoch, after: String(next.next_after) });
    assert.deepEqual([idle.events, idle.next_after, idle.has_more], [[], 3, false]);
    raw.close();
  });

  it('client events are kept with their sender on presence channels', async () => {
    const name = uniq('presence-chat-');
    const a = await openRaw(broker, { app: HISTORY_APP });
    const b = await openRaw(broker, { app: HISTORY_APP });
    await a.subscribeSigned(sdk, name, { user_id: 'alice' });
    await b.subscribeSigned(sdk, name, { user_id: 'bob' });
    a.send({ event: 'client-typing', channel: name, data: { on: true } });
    await b.waitFor((f) => f.event === 'client-typing');
    const page = await history(name);
    assert.deepEqual(
      page.events.map((e) => [e.event, e.user_id, JSON.parse(e.data)]),
      [['client-typing', 'alice', { on: true }]],
    );
    a.close();
    b.close();
  });

  it('a lost position is 409 with the reason and where to go on from', async () => {
    const name = uniq('orders-');
    for (let step = 1; step <= 8; step++) await sdk.trigger(name, 'status', { step });
    const { epoch } = await history(name);

    const tooOld = await expectHttpError(sdk.get({ path: `/channels/${name}/history`, params: { epoch, after: '1' } }));
    assert.equal(tooOld.status, 409);
    assert.equal(tooOld.json.reason, 'too_old');
    assert.deepEqual([tooOld.json.epoch, tooOld.json.first_offset, tooOld.json.last_offset], [epoch, 4, 8]);
    assert.match(tooOld.json.error, /dropped/);

    const other = await expectHttpError(sdk.get({ path: `/channels/${name}/history`, params: { epoch: 'abc', after: '1' } }));
    assert.equal(other.status, 409);
    assert.deepEqual([other.json.reason, other.json.epoch], ['epoch_changed', epoch]);

    // From just before the oldest kept event: all five kept events.
    const from3 = await history(name, { epoch, after: '3' });
    assert.deepEqual(from3.events.map((e) => e.offset), [4, 5, 6, 7, 8]);
  });

  it('a channel without events has no epoch; history off is 404; bad params are 400', async () => {
    const empty = await history(uniq('quiet-'));
    assert.deepEqual(empty, { epoch: null, first_offset: 1, last_offset: 0, events: [], next_after: 0, has_more: false });

    const off = await expectHttpError(sdk.get({ path: `/channels/${uniq('nohistory-')}/history`, params: {} }));
    assert.deepEqual([off.status, off.json.reason], [404, 'history_off']);

    for (const params of [{ after: '1' }, { epoch: 'e', after: 'x' }, { limit: '0' }, { limit: '1001' }]) {
      const bad = await expectHttpError(sdk.get({ path: `/channels/${uniq('orders-')}/history`, params }));
      assert.equal(bad.status, 400, JSON.stringify(params));
      assert.equal(typeof bad.json.error, 'string');
    }
    const badName = await signedRequest(broker, 'GET', `/apps/${HISTORY_APP.id}/channels/bad%20name/history`, { app: HISTORY_APP });
    assert.equal(badName.status, 400);
    const unsigned = await fetch(`${broker.httpUrl}/apps/${HISTORY_APP.id}/channels/x/history`);
    assert.equal(unsigned.status, 401);
  });
});

describe('history API on a clustered node', () => {
  for (const adapter of ADAPTERS) {
    it(`on ${adapter === 'redis' ? 'Redis' : 'NATS JetStream'} answers from the cluster-wide history, whichever node published`, async () => {
      await requireBackbone(adapter);
      const prefix = randomPrefix();
      const a = await startNode({ adapter, url: SHARED_URLS[adapter], prefix, apps: [HISTORY_APP] });
      const b = await startNode({ adapter, url: SHARED_URLS[adapter], prefix, apps: [HISTORY_APP] });
      try {
        // A trigger is answered once its event is numbered (durable triggers, the default);
        // the wait below also covers a node whose answer came early (a slow store). Two
        // triggers through two nodes may be numbered in either order, so the second waits for
        // the first to be numbered.
        await serverSdk(a, HISTORY_APP).trigger('orders-1', 'status', { step: 1 });
        await waitFor(async () => {
          const first = await sdkGetJson(serverSdk(b, HISTORY_APP), '/channels/orders-1/history', {});
          return first.last_offset === 1;
        }, 5000, 'the first event in the history');
        await serverSdk(b, HISTORY_APP).trigger('orders-1', 'status', { step: 2 });
        let page;
        await waitFor(async () => {
          page = await sdkGetJson(serverSdk(b, HISTORY_APP), '/channels/orders-1/history', {});
          return page.last_offset === 2;
        }, 5000, 'both events in the history');
        assert.deepEqual(page.events.map((e) => [e.offset, JSON.parse(e.data).step]), [[1, 1], [2, 2]]);
        const again = await sdkGetJson(serverSdk(a, HISTORY_APP), '/channels/orders-1/history', {
          epoch: page.epoch,
          after: '1',
        });
        assert.deepEqual(again.events.map((e) => e.offset), [2]);
      } finally {
        await a.stop();
        await b.stop();
        // The shared NATS keeps what a cluster stored in JetStream: remove this test's stream.
        if (adapter === 'nats') assert.equal(await deleteNatsHistory(SHARED_URLS.nats, prefix), true);
      }
    });
  }

  it('on NATS without JetStream answers 501 cluster_history_unavailable (core NATS keeps no history)', async () => {
    const nats = await startBackbone('nats'); // a private nats-server without -js
    try {
      const node = await startNode({ adapter: 'nats', url: nats.url, prefix: randomPrefix(), apps: [HISTORY_APP] });
      try {
        const nodeSdk = serverSdk(node, HISTORY_APP);
        await nodeSdk.trigger('orders-1', 'status', {});
        const r = await expectHttpError(nodeSdk.get({ path: '/channels/orders-1/history', params: {} }));
        assert.deepEqual([r.status, r.json.reason], [501, 'cluster_history_unavailable']);
        assert.match(r.json.error, /JetStream/);
      } finally {
        await node.stop();
      }
    } finally {
      await nats.stop();
    }
  });
});
