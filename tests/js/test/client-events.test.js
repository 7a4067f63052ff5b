// Client events: routing, user_id on presence, refusals with pusher:error 4301.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import {
  APPS,
  connected,
  openPusher,
  openRaw,
  serverSdk,
  sleep,
  startBroker,
  subscribe,
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

describe('delivery', () => {
  it('pusher-js: delivered to other subscribers, not echoed to the sender', async () => {
    const name = uniq('private-chat-');
    const a = openPusher(broker);
    const b = openPusher(broker);
    await connected(a);
    await connected(b);
    const chA = await subscribe(a, name);
    const chB = await subscribe(b, name);
    const gotA = [];
    const gotB = [];
    chA.bind('client-typing', (d) => gotA.push(d));
    chB.bind('client-typing', (d) => gotB.push(d));
    assert.equal(chA.trigger('client-typing', { who: 'a' }), true);
    await waitFor(() => gotB.length === 1, 5000, 'client event at b');
    assert.deepEqual(gotB[0], { who: 'a' });
    // Order marker: a server event sent afterwards reaches a after any echo would have.
    await sdk.trigger(name, 'marker', {});
    await waitFor(() => a.received.some((e) => e.event === 'marker'), 5000, 'marker at a');
    assert.equal(gotA.length, 0, 'client event was echoed to its sender');
    a.disconnect();
    b.disconnect();
  });

  it('presence: the relayed event carries the sender user_id (pusher-js metadata and raw frame)', async () => {
    const name = uniq('presence-chat-');
    const a = openPusher(broker, { presence: { user_id: 'sender-1', user_info: {} } });
    await connected(a);
    const chA = await subscribe(a, name);
    const b = openPusher(broker, { presence: { user_id: 'receiver-1', user_info: {} } });
    await connected(b);
    const chB = await subscribe(b, name);
    const raw = await openRaw(broker);
    await raw.subscribeSigned(sdk, name, { user_id: 'raw-1' });
    const got = [];
    chB.bind('client-hi', (d, meta) => got.push({ d, meta }));
    chA.trigger('client-hi', { text: 'hi' });
    await waitFor(() => got.length === 1, 5000, 'client-hi at b');
    assert.deepEqual(got[0].d, { text: 'hi' });
    assert.equal(got[0].meta.user_id, 'sender-1');
    const f = await raw.waitEvent('client-hi', name);
    assert.equal(f.user_id, 'sender-1', `top-level user_id missing: ${f.raw}`);
    a.disconnect();
    b.disconnect();
    raw.close();
  });

  it('string data is relayed as a string', async () => {
    const name = uniq('private-str-');
    const a = await openRaw(broker);
    const b = await openRaw(broker);
    await a.subscribeSigned(sdk, name);
    await b.subscribeSigned(sdk, name);
    a.send({ event: 'client-s', channel: name, data: 'just text' });
    const f = await b.waitEvent('client-s', name);
    assert.equal(f.payload, 'just text');
    a.close();
    b.close();
  });
});

describe('refusals: pusher:error 4301, socket stays open, nothing relayed', () => {
  async function expectRefused({ app = APPS.main, channel, subscribeSender = true, data = { x: 1 }, event = 'client-nope' }) {
    const appSdk = serverSdk(broker, app);
    const sender = await openRaw(broker, { app });
    const other = await openRaw(broker, { app });
    const sub = (c) => (channel.startsWith('private-') || channel.startsWith('presence-')
      ? c.subscribeSigned(appSdk, channel, channel.startsWith('presence-') ? { user_id: `u-${c.socketId}` } : undefined)
      : c.subscribe(channel));
    if (subscribeSender) await sub(sender);
    await sub(other);
    const sinceS = sender.mark();
    const sinceO = other.mark();
    sender.send({ event, channel, data });
    const err = await sender.waitEvent('pusher:error', undefined, { since: sinceS });
    assert.equal(err.payload.code, 4301, err.raw);
    assert.equal(typeof err.payload.message, 'string');
    await appSdk.trigger(channel, 'marker', {});
    await other.waitEvent('marker', channel, { since: sinceO });
    assert.equal(other.find((f) => f.event === event, sinceO).length, 0, 'refused client event was relayed');
    await sender.ping();
    assert.equal(sender.closed, null);
    sender.close();
    other.close();
  }

  it('on a public channel', async () => {
    await expectRefused({ channel: uniq('public-ce-') });
  });

  it('when the sender is not subscribed to the channel', async () => {
    await expectRefused({ channel: uniq('private-notsub-'), subscribeSender: false });
  });

  it('when client events are disabled for the app', async () => {
    await expectRefused({ app: APPS.noclient, channel: uniq('private-off-') });
  });

  it('when data is over 10 KB', async () => {
    await expectRefused({ channel: uniq('private-big-'), data: 'x'.repeat(11 * 1024) });
  });

  it('an event name without the client- prefix is not relayed', async () => {
    const name = uniq('private-noprefix-');
    const a = await openRaw(broker);
    const b = await openRaw(broker);
    await a.subscribeSigned(sdk, name);
    await b.subscribeSigned(sdk, name);
    const since = b.mark();
    a.send({ event: 'server-looking-event', channel: name, data: { x: 1 } });
    await a.ping();
    await sdk.trigger(name, 'marker', {});
    await b.waitEvent('marker', name, { since });
    assert.equal(b.find((f) => f.event === 'server-looking-event', since).length, 0);
    await a.ping();
    a.close();
    b.close();
  });

  it('data under 10 KB is relayed', async () => {
    const name = uniq('private-ok-');
    const a = await openRaw(broker);
    const b = await openRaw(broker);
    await a.subscribeSigned(sdk, name);
    await b.subscribeSigned(sdk, name);
    const data = 'y'.repeat(9 * 1024);
    a.send({ event: 'client-ok', channel: name, data });
    const f = await b.waitEvent('client-ok', name);
    assert.equal(f.payload, data);
    assert.equal(a.find((x) => x.event === 'pusher:error').length, 0);
    a.close();
    b.close();
  });

  it('over the rate limit (10/s): some are refused with 4301, the rest relayed, socket open', async () => {
    const name = uniq('private-rate-');
    const a = await openRaw(broker);
    const b = await openRaw(broker);
    await a.subscribeSigned(sdk, name);
    await b.subscribeSigned(sdk, name);
    const burst = 30;
    for (let i = 0; i < burst; i++) a.send({ event: 'client-burst', channel: name, data: { i } });
    await a.waitFor((f) => f.event === 'pusher:error' && f.payload?.code === 4301, { what: '4301 for the burst' });
    await sdk.trigger(name, 'marker', {});
    await b.waitEvent('marker', name);
    const relayed = b.find((f) => f.event === 'client-burst').length;
    assert.ok(relayed >= 1, 'no client event of the burst was relayed');
    assert.ok(relayed <= 20, `rate limit not applied: ${relayed} of ${burst} relayed`);
    await a.ping();
    assert.equal(a.closed, null);
    // The budget refills: a second later a client event is relayed again.
    await sleep(1100);
    const since = b.mark();
    a.send({ event: 'client-after', channel: name, data: {} });
    await b.waitEvent('client-after', name, { since });
    a.close();
    b.close();
  });
});
