// Public, private and private-encrypted channels; subscription refusals.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import {
  APPS,
  connected,
  openPusher,
  openRaw,
  serverSdk,
  startBroker,
  subscribe,
  subscribeResult,
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

describe('public channels', () => {
  it('pusher-js subscribes and receives triggered events (JSON and plain-string data)', async () => {
    const name = uniq('public-news-');
    const client = openPusher(broker);
    await connected(client);
    const channel = await subscribe(client, name);
    const got = [];
    channel.bind('update', (d) => got.push(d));
    await sdk.trigger(name, 'update', { n: 1, text: 'héllo' });
    await sdk.trigger(name, 'update', 'plain string');
    await waitFor(() => got.length === 2, 5000, 'two update events');
    assert.deepEqual(got[0], { n: 1, text: 'héllo' });
    assert.equal(got[1], 'plain string');
    client.disconnect();
  });

  it('raw: subscribe with auth "" succeeds and events arrive with data as the published string', async () => {
    const name = uniq('public-raw-');
    const c = await openRaw(broker);
    const ok = await c.subscribe(name, { auth: '' });
    assert.equal(ok.event, 'pusher_internal:subscription_succeeded', ok.raw);
    assert.equal(ok.channel, name);
    const data = JSON.stringify({ a: [1, 2, 3], s: 'x' });
    await sdk.trigger(name, 'evt', data);
    const f = await c.waitEvent('evt', name);
    assert.equal(f.data, data, 'data must be forwarded verbatim as a string');
    c.close();
  });

  it('every allowed punctuation character works in a channel name', async () => {
    const name = `public-azAZ09_=@,.;-${uniq('')}`;
    const c = await openRaw(broker);
    await c.subscribeOk(name);
    await sdk.trigger(name, 'punct', {});
    await c.waitEvent('punct', name);
    c.close();
  });

  it('after pusher:unsubscribe no more events arrive on that channel', async () => {
    const gone = uniq('public-gone-');
    const kept = uniq('public-kept-');
    const c = await openRaw(broker);
    await c.subscribeOk(gone);
    await c.subscribeOk(kept);
    c.send({ event: 'pusher:unsubscribe', data: { channel: gone } });
    // The unsubscribe is processed in order with later frames; wait until the channel is empty.
    await waitFor(async () => {
      const r = await sdk.get({ path: `/channels/${gone}` });
      return (await r.json()).occupied === false;
    }, 5000, `${gone} to become unoccupied`);
    const since = c.mark();
    await sdk.trigger(gone, 'late', {});
    await sdk.trigger(kept, 'marker', {});
    await c.waitEvent('marker', kept, { since });
    assert.equal(c.find((f) => f.event === 'late', since).length, 0, 'event after unsubscribe was delivered');
    c.close();
  });

  it('a socket subscribed twice to a channel receives each event once', async () => {
    const name = uniq('public-twice-');
    const c = await openRaw(broker);
    await c.subscribeOk(name);
    // A duplicate subscribe may or may not be answered; it must not double the delivery.
    c.send({ event: 'pusher:subscribe', data: { channel: name, auth: '' } });
    await c.ping();
    const since = c.mark();
    await sdk.trigger(name, 'once', {});
    await sdk.trigger(name, 'marker', {});
    await c.waitEvent('marker', name, { since });
    assert.equal(c.find((f) => f.event === 'once', since).length, 1);
    c.close();
  });
});

describe('private channels', () => {
  it('pusher-js subscribes with a signature from the SDK and receives events', async () => {
    const name = uniq('private-orders-');
    const client = openPusher(broker);
    await connected(client);
    const channel = await subscribe(client, name);
    const got = [];
    channel.bind('order:status', (d) => got.push(d));
    await sdk.trigger(name, 'order:status', { status: 'shipped' });
    await waitFor(() => got.length === 1, 5000, 'order:status');
    assert.deepEqual(got[0], { status: 'shipped' });
    client.disconnect();
  });

  it('a bad signature gets pusher:subscription_error AuthError 401 and the socket stays open', async () => {
    const name = uniq('private-bad-');
    const c = await openRaw(broker);
    const f = await c.subscribe(name, { auth: `${APPS.main.key}:${'0'.repeat(64)}` });
    assert.equal(f.event, 'pusher:subscription_error', f.raw);
    assert.equal(f.channel, name);
    assert.equal(f.payload.type, 'AuthError');
    assert.equal(f.payload.status, 401);
    assert.equal(typeof f.payload.error, 'string');
    await c.ping();
    // No events are delivered to the refused socket.
    const since = c.mark();
    await sdk.trigger(name, 'secret', {});
    const pub = uniq('public-marker-');
    await c.subscribeOk(pub);
    await sdk.trigger(pub, 'marker', {});
    await c.waitEvent('marker', pub, { since });
    assert.equal(c.find((x) => x.event === 'secret', since).length, 0);
    c.close();
  });

  it('a signature for another socket id is refused', async () => {
    const name = uniq('private-other-');
    const c = await openRaw(broker);
    const stolen = sdk.authorizeChannel('1234.5678', name);
    const f = await c.subscribe(name, { auth: stolen.auth });
    assert.equal(f.event, 'pusher:subscription_error', f.raw);
    assert.equal(f.payload.type, 'AuthError');
    c.close();
  });

  it('a missing auth is refused', async () => {
    const name = uniq('private-noauth-');
    const c = await openRaw(broker);
    const f = await c.subscribe(name, { auth: '' });
    assert.equal(f.event, 'pusher:subscription_error', f.raw);
    assert.equal(f.payload.type, 'AuthError');
    c.close();
  });

  it('pusher-js surfaces a server refusal as pusher:subscription_error', async () => {
    const name = uniq('private-js-bad-');
    const client = openPusher(broker, { authorize: () => ({ auth: `${APPS.main.key}:${'f'.repeat(64)}` }) });
    await connected(client);
    const r = await subscribeResult(client, name);
    assert.equal(r.ok, false);
    assert.equal(r.error.type, 'AuthError');
    assert.equal(client.connection.state, 'connected');
    client.disconnect();
  });
});

describe('private-encrypted channels', () => {
  it('pusher-js decrypts an event the SDK encrypted (server relays it)', async () => {
    const name = uniq('private-encrypted-vault-');
    const client = openPusher(broker);
    await connected(client);
    const channel = await subscribe(client, name);
    const got = [];
    channel.bind('secret', (d) => got.push(d));
    await sdk.trigger(name, 'secret', { pin: 1234 });
    await waitFor(() => got.length === 1, 5000, 'decrypted secret event');
    assert.deepEqual(got[0], { pin: 1234 });
    client.disconnect();
  });

  it('raw: the encrypted payload is relayed byte for byte', async () => {
    const name = uniq('private-encrypted-raw-');
    const c = await openRaw(broker);
    const ok = await c.subscribeSigned(sdk, name);
    assert.equal(ok.event, 'pusher_internal:subscription_succeeded', ok.raw);
    const data = JSON.stringify({ nonce: 'bm9uY2Vub25jZW5vbmNlbm9uY2Vub25j', ciphertext: 'Y2lwaGVydGV4dA==' });
    await sdk.post({ path: '/events', body: { name: 'sealed', channels: [name], data } });
    const f = await c.waitEvent('sealed', name);
    assert.equal(f.data, data);
    c.close();
  });

  it('client events on an encrypted channel are refused with 4301 and not relayed', async () => {
    const name = uniq('private-encrypted-ce-');
    const a = await openRaw(broker);
    const b = await openRaw(broker);
    await a.subscribeSigned(sdk, name);
    await b.subscribeSigned(sdk, name);
    const sinceA = a.mark();
    const sinceB = b.mark();
    a.send({ event: 'client-leak', channel: name, data: { x: 1 } });
    const err = await a.waitEvent('pusher:error', undefined, { since: sinceA });
    assert.equal(err.payload.code, 4301, err.raw);
    await sdk.trigger(name, 'marker', 'm');
    await b.waitEvent('marker', name, { since: sinceB });
    assert.equal(b.find((f) => f.event === 'client-leak', sinceB).length, 0);
    await a.ping();
    a.close();
    b.close();
  });
});

describe('channel names', () => {
  it('an invalid channel name gets subscription_error InvalidChannel', async () => {
    const c = await openRaw(broker);
    const f = await c.subscribe('bad channel!');
    assert.equal(f.event, 'pusher:subscription_error', f.raw);
    assert.equal(f.payload.type, 'InvalidChannel');
    await c.ping();
    c.close();
  });

  it('a channel name of exactly 200 characters is accepted', async () => {
    const name = `public-${'y'.repeat(193)}`;
    assert.equal(name.length, 200);
    const c = await openRaw(broker);
    const f = await c.subscribe(name);
    assert.equal(f.event, 'pusher_internal:subscription_succeeded', f.raw);
    c.close();
  });

  it('a channel name over 200 characters is refused', async () => {
    const c = await openRaw(broker);
    // 230 characters: over the 200 limit, but short enough that the server echoes it whole.
    const f = await c.subscribe(`public-${'x'.repeat(223)}`);
    assert.equal(f.event, 'pusher:subscription_error', f.raw);
    assert.ok(['InvalidChannel', 'LimitReached'].includes(f.payload.type), f.raw);
    c.close();
  });

  it('a #-channel other than the own #server-to-user- is refused', async () => {
    const c = await openRaw(broker);
    const f = await c.subscribe('#reserved-channel');
    assert.equal(f.event, 'pusher:subscription_error', f.raw);
    c.close();
  });
});

describe('subscription_count (app with subscription_count = true)', () => {
  it('pusher-js receives pusher:subscription_count as sockets join', async () => {
    const name = uniq('public-count-');
    const a = openPusher(broker, { app: APPS.counts });
    const b = openPusher(broker, { app: APPS.counts });
    await connected(a);
    await connected(b);
    const chA = await subscribe(a, name);
    const counts = [];
    chA.bind('pusher:subscription_count', (d) => counts.push(d.subscription_count));
    await subscribe(b, name);
    await waitFor(() => counts.includes(2), 5000, 'subscription_count 2', () => `counts=${JSON.stringify(counts)}`);
    a.disconnect();
    b.disconnect();
  });

  it('no pusher_internal:subscription_count when the app has it disabled', async () => {
    const name = uniq('public-nocount-');
    const a = await openRaw(broker);
    const b = await openRaw(broker);
    await a.subscribeOk(name);
    await b.subscribeOk(name);
    await sdk.trigger(name, 'marker', {});
    await a.waitEvent('marker', name);
    assert.equal(a.find((f) => f.event === 'pusher_internal:subscription_count').length, 0);
    a.close();
    b.close();
  });
});
