// Every HTTP API endpoint through the official `pusher` Node SDK.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import {
  APPS,
  connected,
  openPusher,
  openRaw,
  sdkGetJson,
  serverSdk,
  signedRequest,
  startBroker,
  subscribe,
  uniq,
  waitFor,
} from '../helpers.js';

let broker;
let sdk;
let counts; // app with subscription_count = true
before(async () => {
  broker = await startBroker();
  sdk = serverSdk(broker);
  counts = serverSdk(broker, APPS.counts);
});
after(async () => {
  await broker?.stop();
});

describe('POST /events (trigger)', () => {
  it('single channel: 200 {} and the event is delivered', async () => {
    const name = uniq('public-t1-');
    const c = await openRaw(broker);
    await c.subscribeOk(name);
    const res = await sdk.trigger(name, 'hello', { a: 1 });
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /application\/json/);
    assert.deepEqual(await res.json(), {});
    const f = await c.waitEvent('hello', name);
    assert.deepEqual(JSON.parse(f.data), { a: 1 });
    c.close();
  });

  it('multiple channels: every subscriber of each channel gets it once', async () => {
    const n1 = uniq('public-m1-');
    const n2 = uniq('private-m2-');
    const a = await openRaw(broker);
    const b = await openRaw(broker);
    const both = await openRaw(broker);
    await a.subscribeOk(n1);
    await b.subscribeSigned(sdk, n2);
    await both.subscribeOk(n1);
    await both.subscribeSigned(sdk, n2);
    const res = await sdk.trigger([n1, n2], 'multi', { m: true });
    assert.equal(res.status, 200);
    await a.waitEvent('multi', n1);
    await b.waitEvent('multi', n2);
    await both.waitEvent('multi', n1);
    await both.waitEvent('multi', n2);
    assert.equal(both.find((f) => f.event === 'multi').length, 2);
    for (const c of [a, b, both]) c.close();
  });

  it('socket_id excludes that connection', async () => {
    const name = uniq('public-excl-');
    const excluded = openPusher(broker);
    const included = openPusher(broker);
    const excludedId = await connected(excluded);
    await connected(included);
    const chEx = await subscribe(excluded, name);
    const chIn = await subscribe(included, name);
    const gotEx = [];
    const gotIn = [];
    chEx.bind('news', (d) => gotEx.push(d));
    chIn.bind('news', (d) => gotIn.push(d));
    await sdk.trigger(name, 'news', { n: 1 }, { socket_id: excludedId });
    await waitFor(() => gotIn.length === 1, 5000, 'news at the included client');
    await sdk.trigger(name, 'news', { n: 2 });
    await waitFor(() => gotEx.length >= 1 && gotIn.length === 2, 5000, 'second news at both');
    assert.deepEqual(gotEx, [{ n: 2 }], 'the excluded socket received the first event');
    excluded.disconnect();
    included.disconnect();
  });

  it('info=subscription_count returns counts per channel', async () => {
    const name = uniq('public-info-');
    const a = await openRaw(broker, { app: APPS.counts });
    const b = await openRaw(broker, { app: APPS.counts });
    await a.subscribeOk(name);
    await b.subscribeOk(name);
    const res = await counts.trigger(name, 'counted', {}, { info: 'subscription_count' });
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), { channels: { [name]: { subscription_count: 2 } } });
    a.close();
    b.close();
  });

  it('info=user_count on a presence channel counts users', async () => {
    const name = uniq('presence-info-');
    const a = await openRaw(broker);
    const a2 = await openRaw(broker);
    const b = await openRaw(broker);
    await a.subscribeSigned(sdk, name, { user_id: 'ua' });
    await a2.subscribeSigned(sdk, name, { user_id: 'ua' });
    await b.subscribeSigned(sdk, name, { user_id: 'ub' });
    const res = await sdk.trigger(name, 'counted', {}, { info: 'user_count' });
    const body = await res.json();
    assert.equal(body.channels[name].user_count, 2, JSON.stringify(body));
    for (const c of [a, a2, b]) c.close();
  });

  it('the #server-to-user- channel is accepted (sendToUser)', async () => {
    const res = await sdk.sendToUser(uniq('nobody-'), 'note', { x: 1 });
    assert.equal(res.status, 200);
  });

  it('the app key is accepted in place of the app id in the path', async () => {
    const name = uniq('public-bykey-');
    const c = await openRaw(broker);
    await c.subscribeOk(name);
    const byKey = serverSdk(broker, APPS.main, { appId: APPS.main.key });
    const res = await byKey.trigger(name, 'via-key', { k: 1 });
    assert.equal(res.status, 200);
    await c.waitEvent('via-key', name);
    c.close();
  });

  it('a GET signed with body_md5 of the empty body (Python SDK style) is accepted', async () => {
    const r = await signedRequest(broker, 'GET', `/apps/${APPS.main.id}/channels`, {
      bodyMd5: 'd41d8cd98f00b204e9800998ecf8427e',
    });
    assert.equal(r.status, 200, r.text);
    assert.ok(r.json && typeof r.json.channels === 'object', r.text);
  });
});

describe('apps are isolated', () => {
  it('an event triggered on one app does not reach a same-named channel of another app', async () => {
    const name = uniq('public-iso-');
    const mainSub = await openRaw(broker);
    const otherSub = await openRaw(broker, { app: APPS.counts });
    await mainSub.subscribeOk(name);
    await otherSub.subscribeOk(name);
    await sdk.trigger(name, 'only-main', {});
    await mainSub.waitEvent('only-main', name);
    await counts.trigger(name, 'marker', {});
    await otherSub.waitEvent('marker', name);
    assert.equal(otherSub.find((f) => f.event === 'only-main').length, 0, 'event crossed apps');
    const onlyOther = uniq('public-iso-other-');
    await otherSub.subscribeOk(onlyOther);
    const listed = await sdkGetJson(sdk, '/channels', { filter_by_prefix: 'public-iso-other-' });
    assert.deepEqual(listed.channels, {}, "another app's channel is listed");
    mainSub.close();
    otherSub.close();
  });
});

describe('POST /batch_events', () => {
  it('delivers every event of the batch; 200 {}', async () => {
    const n1 = uniq('public-b1-');
    const n2 = uniq('public-b2-');
    const c = await openRaw(broker);
    await c.subscribeOk(n1);
    await c.subscribeOk(n2);
    const res = await sdk.triggerBatch([
      { channel: n1, name: 'first', data: { i: 1 } },
      { channel: n2, name: 'second', data: 'two' },
    ]);
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), {});
    const f1 = await c.waitEvent('first', n1);
    const f2 = await c.waitEvent('second', n2);
    assert.deepEqual(JSON.parse(f1.data), { i: 1 });
    assert.equal(f2.data, 'two');
    c.close();
  });

  it('socket_id in a batch item excludes that connection', async () => {
    const name = uniq('public-bx-');
    const ex = await openRaw(broker);
    const inc = await openRaw(broker);
    await ex.subscribeOk(name);
    await inc.subscribeOk(name);
    await sdk.triggerBatch([
      { channel: name, name: 'skip-me', data: {}, socket_id: ex.socketId },
      { channel: name, name: 'marker', data: {} },
    ]);
    await inc.waitEvent('skip-me', name);
    await ex.waitEvent('marker', name);
    assert.equal(ex.find((f) => f.event === 'skip-me').length, 0);
    ex.close();
    inc.close();
  });

  it('info in a batch returns index-aligned attributes', async () => {
    const name = uniq('public-binfo-');
    const c = await openRaw(broker, { app: APPS.counts });
    await c.subscribeOk(name);
    const res = await counts.triggerBatch([
      { channel: name, name: 'a', data: {}, info: 'subscription_count' },
      { channel: uniq('public-other-'), name: 'b', data: {} },
    ]);
    const body = await res.json();
    assert.ok(Array.isArray(body.batch), JSON.stringify(body));
    assert.equal(body.batch.length, 2, JSON.stringify(body));
    assert.equal(body.batch[0].subscription_count, 1, JSON.stringify(body));
    c.close();
  });
});

describe('GET /channels', () => {
  it('lists occupied channels, filter_by_prefix, and info=user_count for presence-', async () => {
    const pub = uniq('public-list-');
    const pres = uniq('presence-list-');
    const a = await openRaw(broker);
    const b = await openRaw(broker);
    await a.subscribeOk(pub);
    await a.subscribeSigned(sdk, pres, { user_id: 'l1' });
    await b.subscribeSigned(sdk, pres, { user_id: 'l2' });

    const all = await sdkGetJson(sdk, '/channels');
    assert.ok(pub in all.channels, JSON.stringify(all));
    assert.ok(pres in all.channels, JSON.stringify(all));

    const onlyPresence = await sdkGetJson(sdk, '/channels', { filter_by_prefix: 'presence-', info: 'user_count' });
    assert.ok(!(pub in onlyPresence.channels), JSON.stringify(onlyPresence));
    assert.deepEqual(onlyPresence.channels[pres], { user_count: 2 });
    for (const name of Object.keys(onlyPresence.channels)) assert.ok(name.startsWith('presence-'), name);

    const filtered = await sdkGetJson(sdk, '/channels', { filter_by_prefix: 'public-list-' });
    assert.deepEqual(Object.keys(filtered.channels), [pub]);
    assert.deepEqual(filtered.channels[pub], {});

    a.close();
    await waitFor(
      async () => !((await sdkGetJson(sdk, '/channels', { filter_by_prefix: 'public-list-' })).channels[pub]),
      5000,
      'vacated channel to leave the list',
    );
    b.close();
  });

  it('info=user_count without filter_by_prefix=presence- is 400', async () => {
    const r = await signedRequest(broker, 'GET', `/apps/${APPS.main.id}/channels`, { params: { info: 'user_count' } });
    assert.equal(r.status, 400, r.text);
    assert.equal(r.json?.code, 400, r.text);
  });
});

describe('GET /channels/{name}', () => {
  it('occupied false for an empty channel', async () => {
    const body = await sdkGetJson(sdk, `/channels/${uniq('public-empty-')}`);
    assert.equal(body.occupied, false, JSON.stringify(body));
  });

  it('occupied and subscription_count for a public channel', async () => {
    const name = uniq('public-one-');
    const a = await openRaw(broker, { app: APPS.counts });
    const b = await openRaw(broker, { app: APPS.counts });
    await a.subscribeOk(name);
    await b.subscribeOk(name);
    const body = await sdkGetJson(counts, `/channels/${name}`, { info: 'subscription_count' });
    assert.deepEqual(body, { occupied: true, subscription_count: 2 });
    b.close();
    await waitFor(
      async () => (await sdkGetJson(counts, `/channels/${name}`, { info: 'subscription_count' })).subscription_count === 1,
      5000,
      'subscription_count 1 after a socket left',
    );
    a.close();
    await waitFor(async () => (await sdkGetJson(counts, `/channels/${name}`)).occupied === false, 5000, 'occupied false');
  });

  it('user_count for a presence channel', async () => {
    const name = uniq('presence-one-');
    const a = await openRaw(broker);
    await a.subscribeSigned(sdk, name, { user_id: 'p1' });
    const body = await sdkGetJson(sdk, `/channels/${name}`, { info: 'user_count' });
    assert.equal(body.occupied, true);
    assert.equal(body.user_count, 1);
    a.close();
  });

  it('info=user_count on a non-presence channel is 400', async () => {
    const r = await signedRequest(broker, 'GET', `/apps/${APPS.main.id}/channels/${uniq('public-uc-')}`, {
      params: { info: 'user_count' },
    });
    assert.equal(r.status, 400, r.text);
  });

  it('cache info for a cache channel', async () => {
    const name = uniq('cache-one-');
    const c = await openRaw(broker);
    await c.subscribe(name);
    await sdk.trigger(name, 'v', { x: 1 });
    await c.waitEvent('v', name);
    const body = await sdkGetJson(sdk, `/channels/${name}`, { info: 'cache' });
    assert.equal(body.occupied, true);
    assert.equal(body.cache?.data, JSON.stringify({ x: 1 }), JSON.stringify(body));
    assert.equal(typeof body.cache.ttl, 'number');
    c.close();
  });
});

describe('GET /channels/{name}/users', () => {
  it('lists the users of a presence channel (one entry per user)', async () => {
    const name = uniq('presence-users-');
    const a = await openRaw(broker);
    const a2 = await openRaw(broker);
    const b = await openRaw(broker);
    await a.subscribeSigned(sdk, name, { user_id: 'x1' });
    await a2.subscribeSigned(sdk, name, { user_id: 'x1' });
    await b.subscribeSigned(sdk, name, { user_id: 'x2' });
    const body = await sdkGetJson(sdk, `/channels/${name}/users`);
    const ids = body.users.map((u) => u.id).sort();
    assert.deepEqual(ids, ['x1', 'x2']);
    b.close();
    await waitFor(
      async () => (await sdkGetJson(sdk, `/channels/${name}/users`)).users.length === 1,
      5000,
      'x2 to leave the users list',
    );
    a.close();
    a2.close();
  });

  it('400 for a non-presence channel', async () => {
    const r = await signedRequest(broker, 'GET', `/apps/${APPS.main.id}/channels/${uniq('public-nousers-')}/users`);
    assert.equal(r.status, 400, r.text);
    assert.equal(r.json?.code, 400, r.text);
    assert.equal(typeof r.json?.error, 'string', r.text);
  });
});

describe('POST /users/{id}/terminate_connections', () => {
  it('200 {} for a user with no connections', async () => {
    const res = await sdk.terminateUserConnections(uniq('ghost-'));
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), {});
  });
});
