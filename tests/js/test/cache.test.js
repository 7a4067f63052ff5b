// Cache channels: last HTTP-triggered event replayed after subscription_succeeded, or pusher:cache_miss.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import {
  APPS,
  connected,
  openPusher,
  openRaw,
  sdkGetJson,
  serverSdk,
  startBroker,
  uniq,
  waitFor,
} from '../helpers.js';

let broker;
let sdk;
before(async () => {
  broker = await startBroker();
  sdk = serverSdk(broker);
});
after(async () => {
  await broker?.stop();
});

/** Subscribes a raw client to any kind of cache channel, signing when needed. */
async function rawSubscribe(c, name, userId = 'cache-user') {
  if (name.startsWith('presence-')) return c.subscribeSigned(sdk, name, { user_id: userId });
  if (name.startsWith('private-')) return c.subscribeSigned(sdk, name);
  return c.subscribe(name);
}

/** The frames right after subscription_succeeded for `name`. */
function framesAfterSucceeded(c, name) {
  const i = c.frames.findIndex((f) => f.event === 'pusher_internal:subscription_succeeded' && f.channel === name);
  assert.ok(i >= 0, `no subscription_succeeded for ${name}; ${c.describe()}`);
  return c.frames.slice(i + 1).filter((f) => f.channel === name);
}

for (const prefix of ['cache-', 'private-cache-', 'presence-cache-', 'private-encrypted-cache-']) {
  describe(`${prefix} channels`, () => {
    it('empty cache: pusher:cache_miss right after subscription_succeeded', async () => {
      const name = uniq(`${prefix}empty-`);
      const c = await openRaw(broker);
      const ok = await rawSubscribe(c, name);
      assert.equal(ok.event, 'pusher_internal:subscription_succeeded', ok.raw);
      const miss = await c.waitEvent('pusher:cache_miss', name);
      assert.equal(miss.channel, name);
      assert.equal(framesAfterSucceeded(c, name)[0].event, 'pusher:cache_miss');
      c.close();
    });

    it('cache hit: a new subscriber gets the last triggered event (only the last) first', async () => {
      const name = uniq(`${prefix}hit-`);
      // Posted with explicit data strings (the SDK would encrypt for private-encrypted-cache-).
      await sdk.post({ path: '/events', body: { name: 'price', channels: [name], data: '{"v":1}' } });
      await sdk.post({ path: '/events', body: { name: 'price', channels: [name], data: '{"v":2}' } });
      const c = await openRaw(broker);
      const ok = await rawSubscribe(c, name);
      assert.equal(ok.event, 'pusher_internal:subscription_succeeded', ok.raw);
      const hit = await c.waitEvent('price', name);
      assert.equal(hit.data, '{"v":2}');
      // Nothing else is replayed: a marker after the replay arrives with no other price before it.
      await sdk.post({ path: '/events', body: { name: 'marker', channels: [name], data: '{}' } });
      await c.waitEvent('marker', name);
      const after = framesAfterSucceeded(c, name).filter((f) => !f.event.startsWith('pusher_internal:'));
      assert.deepEqual(
        after.map((f) => f.event),
        ['price', 'marker'],
        `expected exactly one replayed event then the marker; ${c.describe()}`,
      );
      assert.equal(c.find((f) => f.event === 'pusher:cache_miss').length, 0, 'cache_miss despite a cached event');
      c.close();
    });
  });
}

describe('cache channels with pusher-js', () => {
  it('pusher-js sees pusher:cache_miss on the channel and the cached event on a later subscribe', async () => {
    const name = uniq('cache-js-');
    const first = openPusher(broker);
    await connected(first);
    const ch = first.subscribe(name);
    let missed = false;
    ch.bind('pusher:cache_miss', () => {
      missed = true;
    });
    await waitFor(() => missed, 5000, 'pusher:cache_miss in pusher-js');
    await sdk.trigger(name, 'state', { on: true });

    const second = openPusher(broker);
    await connected(second);
    const ch2 = second.subscribe(name);
    const got = [];
    ch2.bind('state', (d) => got.push(d));
    await waitFor(() => got.length === 1, 5000, 'cached state event in pusher-js');
    assert.deepEqual(got[0], { on: true });
    first.disconnect();
    second.disconnect();
  });

  it('client events are not cached', async () => {
    const name = uniq('private-cache-ce-');
    const a = await openRaw(broker);
    const b = await openRaw(broker);
    await rawSubscribe(a, name);
    await rawSubscribe(b, name);
    await sdk.trigger(name, 'from-server', { n: 1 });
    await b.waitEvent('from-server', name);
    a.send({ event: 'client-note', channel: name, data: { n: 2 } });
    await b.waitEvent('client-note', name);
    const c = await openRaw(broker);
    await rawSubscribe(c, name);
    const replay = await c.waitFor((f) => f.channel === name && !f.event.startsWith('pusher_internal:'));
    assert.equal(replay.event, 'from-server', `replayed ${replay.raw}`);
    for (const x of [a, b, c]) x.close();
  });

  it('the cached event expires after cache_ttl (app cachettl: 1 s)', async () => {
    const app = APPS.cachettl;
    const ttlSdk = serverSdk(broker, app);
    const name = uniq('cache-ttl-');
    await ttlSdk.trigger(name, 'short-lived', { x: 1 });
    const fresh = await openRaw(broker, { app });
    await fresh.subscribe(name);
    await fresh.waitEvent('short-lived', name);
    fresh.close();
    // Waiting out the TTL is the condition under test; poll until a new subscriber misses.
    await waitFor(
      async () => {
        const c = await openRaw(broker, { app });
        await c.subscribe(name);
        const f = await c.waitFor((x) => x.channel === name && !x.event.startsWith('pusher_internal:'));
        c.close();
        return f.event === 'pusher:cache_miss';
      },
      4000,
      'cache_miss after the 1 s ttl',
    );
  });

  it('GET /channels/{name}?info=cache returns the cached data and a ttl', async () => {
    const name = uniq('cache-info-');
    const c = await openRaw(broker);
    await rawSubscribe(c, name);
    const data = JSON.stringify({ cached: 'yes' });
    await sdk.trigger(name, 'snap', data);
    await c.waitEvent('snap', name);
    const info = await sdkGetJson(sdk, `/channels/${name}`, { info: 'cache' });
    assert.equal(info.occupied, true);
    assert.ok(info.cache, `no cache in ${JSON.stringify(info)}`);
    assert.equal(info.cache.data, data);
    assert.equal(typeof info.cache.ttl, 'number');
    assert.ok(info.cache.ttl > 0 && info.cache.ttl <= 1800, `ttl ${info.cache.ttl}`);
    c.close();
  });
});
