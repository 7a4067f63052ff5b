// Positions and recovery (issue 14) seen by the stock clients: pusher-js ignores the extra
// `position` field on events and on subscription_succeeded, and a raw client recovers what it missed.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import { connected, openPusher, openRaw, serverSdk, startBroker, subscribe, uniq, waitFor } from '../helpers.js';

let broker;
let sdk;
before(async () => {
  broker = await startBroker();
  sdk = serverSdk(broker);
});
after(async () => {
  await broker?.stop();
});

describe('positions with stock pusher-js', () => {
  for (const prefix of ['orders-', 'private-orders-', 'presence-orders-']) {
    it(`${prefix}: events with a position reach pusher-js unchanged, in order`, async () => {
      const name = uniq(prefix);
      const pusher = openPusher(broker, { presence: { user_id: 'u1', user_info: { name: 'U' } } });
      await connected(pusher);
      const channel = await subscribe(pusher, name);
      const got = [];
      channel.bind('status', (data) => got.push(data));
      const raw = await openRaw(broker);
      if (prefix === 'orders-') await raw.subscribeOk(name);
      else if (prefix === 'private-orders-') await raw.subscribeSigned(sdk, name);
      else await raw.subscribeSigned(sdk, name, { user_id: 'raw' });
      for (let i = 1; i <= 5; i++) await sdk.trigger(name, 'status', { step: i });
      await waitFor(() => got.length === 5, 5000, 'five events in pusher-js');
      assert.deepEqual(got.map((d) => d.step), [1, 2, 3, 4, 5]);
      // The raw frames carry the positions pusher-js silently ignored.
      await raw.waitFor((f) => f.event === 'status' && f.payload?.step === 5);
      const offsets = raw.frames.filter((f) => f.event === 'status').map((f) => f.position.offset);
      assert.deepEqual(offsets, [1, 2, 3, 4, 5]);
      raw.close();
      pusher.disconnect();
    });
  }

  it('pusher-js resubscribes after a reconnect as before, and a raw client recovers the gap', async () => {
    const name = uniq('orders-');
    const raw = await openRaw(broker);
    const ok = await raw.subscribeOk(name);
    assert.deepEqual(ok.payload, {}, 'no recovery asked: data is {}');
    const { epoch } = ok.position;
    assert.equal(ok.position.offset, 0);
    await sdk.trigger(name, 'status', { step: 1 });
    await raw.waitEvent('status', name);
    raw.close();

    const pusher = openPusher(broker);
    await connected(pusher);
    const channel = await subscribe(pusher, name);
    const got = [];
    channel.bind('status', (d) => got.push(d.step));
    pusher.disconnect();
    await sdk.trigger(name, 'status', { step: 2 });
    await sdk.trigger(name, 'status', { step: 3 });
    pusher.connect();
    await connected(pusher);
    await waitFor(() => channel.subscribed, 5000, 'pusher-js resubscribed');
    await sdk.trigger(name, 'status', { step: 4 });
    await waitFor(() => got.includes(4), 5000, 'live event after resubscribe');
    assert.deepEqual(got, [4], 'stock pusher-js without the plugin: exactly as today');
    pusher.disconnect();

    const back = await openRaw(broker);
    const since = back.mark();
    back.send({ event: 'pusher:subscribe', data: { channel: name, recover: { epoch, offset: 1 } } });
    const succeeded = await back.waitFor((f) => f.event === 'pusher_internal:subscription_succeeded', { since });
    assert.deepEqual(succeeded.payload.recovery, { recovered: true, missed: 3 });
    await back.waitFor((f) => f.event === 'status' && f.payload?.step === 4);
    const steps = back.frames.filter((f) => f.event === 'status').map((f) => [f.payload.step, f.position.offset]);
    assert.deepEqual(steps, [[2, 2], [3, 3], [4, 4]]);
    back.close();
  });
});
