// Presence channels: roster on subscribe, per-user member_added / member_removed, limits.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import {
  APPS,
  connected,
  hmacHex,
  openPusher,
  openRaw,
  sdkGetJson,
  sleep,
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

const memberEvents = (client, channel, event) =>
  client.received.filter((e) => e.channel === channel && e.event === event);

describe('presence roster', () => {
  it('subscription_succeeded carries members, count and me (pusher-js)', async () => {
    const name = uniq('presence-room-');
    const one = openPusher(broker, { presence: { user_id: 'u1', user_info: { name: 'One' } } });
    await connected(one);
    const ch1 = await subscribe(one, name);
    assert.equal(ch1.members.count, 1);
    assert.deepEqual(ch1.members.me, { id: 'u1', info: { name: 'One' } });

    const two = openPusher(broker, { presence: { user_id: 'u2', user_info: { name: 'Two' } } });
    await connected(two);
    const ch2 = await subscribe(two, name);
    assert.equal(ch2.members.count, 2);
    assert.deepEqual(ch2.members.me, { id: 'u2', info: { name: 'Two' } });
    const seen = {};
    ch2.members.each((m) => {
      seen[m.id] = m.info;
    });
    assert.deepEqual(seen, { u1: { name: 'One' }, u2: { name: 'Two' } });

    // The first member is told about the second.
    await waitFor(() => ch1.members.count === 2, 5000, 'member_added on u1');
    assert.deepEqual(ch1.members.get('u2'), { id: 'u2', info: { name: 'Two' } });
    one.disconnect();
    two.disconnect();
  });

  it('raw: subscription_succeeded data is a JSON string {presence:{ids,hash,count}}', async () => {
    const name = uniq('presence-wire-');
    const a = await openRaw(broker);
    await a.subscribeSigned(sdk, name, { user_id: 'alpha', user_info: { n: 1 } });
    const b = await openRaw(broker);
    const ok = await b.subscribeSigned(sdk, name, { user_id: 'beta' });
    assert.equal(ok.event, 'pusher_internal:subscription_succeeded', ok.raw);
    assert.equal(typeof ok.data, 'string', 'presence data must be a JSON string');
    const p = ok.payload.presence;
    assert.deepEqual([...p.ids].sort(), ['alpha', 'beta']);
    assert.equal(p.count, 2);
    assert.deepEqual(p.hash.alpha, { n: 1 });
    assert.ok('beta' in p.hash, `hash must contain the subscriber: ${ok.raw}`);
    const added = await a.waitEvent('pusher_internal:member_added', name);
    assert.equal(typeof added.data, 'string');
    assert.equal(added.payload.user_id, 'beta');
    // The joining socket does not get its own member_added.
    assert.equal(b.find((f) => f.event === 'pusher_internal:member_added').length, 0);
    a.close();
    b.close();
  });

  it('channel_data is verified over the received bytes (Python SDK style JSON with spaces)', async () => {
    const name = uniq('presence-py-');
    const c = await openRaw(broker);
    const channelData = '{"user_id": "fred", "user_info": {"key": "value"}}';
    const sig = hmacHex(APPS.main.secret, `${c.socketId}:${name}:${channelData}`);
    const ok = await c.subscribe(name, { auth: `${APPS.main.key}:${sig}`, channel_data: channelData });
    assert.equal(ok.event, 'pusher_internal:subscription_succeeded', ok.raw);
    assert.deepEqual(ok.payload.presence.hash.fred, { key: 'value' });
    c.close();
  });

  it('numeric user_id in channel_data is accepted', async () => {
    const name = uniq('presence-num-');
    const a = await openRaw(broker);
    const ok = await a.subscribeSigned(sdk, name, { user_id: 10, user_info: { name: 'Ten' } });
    assert.equal(ok.event, 'pusher_internal:subscription_succeeded', ok.raw);
    assert.equal(ok.payload.presence.count, 1);
    a.close();
  });

  it('a bad presence signature is refused with AuthError', async () => {
    const name = uniq('presence-bad-');
    const c = await openRaw(broker);
    const good = sdk.authorizeChannel(c.socketId, name, { user_id: 'mallory' });
    // channel_data tampered after signing: the signature no longer matches.
    const f = await c.subscribe(name, { auth: good.auth, channel_data: JSON.stringify({ user_id: 'admin' }) });
    assert.equal(f.event, 'pusher:subscription_error', f.raw);
    assert.equal(f.payload.type, 'AuthError');
    c.close();
  });

  it('presence without channel_data (not signed in) is refused', async () => {
    const name = uniq('presence-nodata-');
    const c = await openRaw(broker);
    const f = await c.subscribeSigned(sdk, name);
    assert.equal(f.event, 'pusher:subscription_error', f.raw);
    c.close();
  });
});

describe('member_added / member_removed are per user, not per socket', () => {
  it('second socket of a user: no member_added; member_removed only after the last socket', async () => {
    const name = uniq('presence-multi-');
    const watcher = openPusher(broker, { presence: { user_id: 'w', user_info: {} } });
    await connected(watcher);
    const chW = await subscribe(watcher, name);

    const s1 = openPusher(broker, { presence: { user_id: 'dup', user_info: { tab: 1 } } });
    await connected(s1);
    await subscribe(s1, name);
    await waitFor(() => memberEvents(watcher, name, 'pusher_internal:member_added').length === 1, 5000, 'first member_added');

    const s2 = openPusher(broker, { presence: { user_id: 'dup', user_info: { tab: 2 } } });
    await connected(s2);
    const ch2 = await subscribe(s2, name);
    assert.equal(ch2.members.count, 2, 'the roster counts users, not sockets');

    // Ordering marker: a trigger after s2 joined reaches the watcher after any member_added would.
    await sdk.trigger(name, 'marker-1', {});
    await waitFor(() => watcher.received.some((e) => e.event === 'marker-1'), 5000, 'marker-1');
    assert.equal(memberEvents(watcher, name, 'pusher_internal:member_added').length, 1, 'duplicate member_added for dup');
    assert.equal(chW.members.count, 2);

    // Close the first socket: the user still has one, so no member_removed.
    s1.disconnect();
    // Proving an absence needs a pause: give the broker time to process s1's close.
    await sleep(300);
    const info = await sdkGetJson(sdk, `/channels/${name}`, { info: 'user_count' });
    assert.equal(info.user_count, 2, 'user dup still has a socket');
    await sdk.trigger(name, 'marker-2', {});
    await waitFor(() => watcher.received.some((e) => e.event === 'marker-2'), 5000, 'marker-2');
    assert.equal(memberEvents(watcher, name, 'pusher_internal:member_removed').length, 0, 'member_removed while a socket remains');

    s2.disconnect();
    await waitFor(() => memberEvents(watcher, name, 'pusher_internal:member_removed').length === 1, 5000, 'member_removed after last socket');
    const removed = memberEvents(watcher, name, 'pusher_internal:member_removed')[0];
    assert.equal(removed.data.user_id, 'dup');
    assert.equal(chW.members.count, 1);
    watcher.disconnect();
  });

  it('an abruptly dropped TCP connection (no close frame) removes the member', async () => {
    const name = uniq('presence-drop-');
    const a = await openRaw(broker);
    await a.subscribeSigned(sdk, name, { user_id: 'survivor' });
    const b = await openRaw(broker);
    await b.subscribeSigned(sdk, name, { user_id: 'dropped' });
    await a.waitEvent('pusher_internal:member_added', name);
    b.ws._socket.destroy();
    const removed = await a.waitEvent('pusher_internal:member_removed', name);
    assert.equal(removed.payload.user_id, 'dropped');
    a.close();
  });

  it('unsubscribe (not just disconnect) also removes the member', async () => {
    const name = uniq('presence-unsub-');
    const a = await openRaw(broker);
    await a.subscribeSigned(sdk, name, { user_id: 'stay' });
    const b = await openRaw(broker);
    await b.subscribeSigned(sdk, name, { user_id: 'leave' });
    await a.waitEvent('pusher_internal:member_added', name);
    b.send({ event: 'pusher:unsubscribe', data: { channel: name } });
    const removed = await a.waitEvent('pusher_internal:member_removed', name);
    assert.equal(removed.payload.user_id, 'leave');
    await b.ping();
    a.close();
    b.close();
  });
});

describe('presence limits (app small: max_presence_members=2, max_user_info_bytes=100)', () => {
  const small = APPS.small;
  let smallSdk;
  before(() => {
    smallSdk = serverSdk(broker, small);
  });

  it('user_info over the limit is refused with LimitReached', async () => {
    const name = uniq('presence-big-');
    const c = await openRaw(broker, { app: small });
    const f = await c.subscribeSigned(smallSdk, name, { user_id: 'big', user_info: { bio: 'x'.repeat(500) } });
    assert.equal(f.event, 'pusher:subscription_error', f.raw);
    assert.equal(f.payload.type, 'LimitReached');
    await c.ping();
    c.close();
  });

  it('a third distinct member is refused with LimitReached; another socket of a member is not', async () => {
    const name = uniq('presence-full-');
    const a = await openRaw(broker, { app: small });
    const b = await openRaw(broker, { app: small });
    const c = await openRaw(broker, { app: small });
    const a2 = await openRaw(broker, { app: small });
    assert.equal((await a.subscribeSigned(smallSdk, name, { user_id: 'a' })).event, 'pusher_internal:subscription_succeeded');
    assert.equal((await b.subscribeSigned(smallSdk, name, { user_id: 'b' })).event, 'pusher_internal:subscription_succeeded');
    const refused = await c.subscribeSigned(smallSdk, name, { user_id: 'c' });
    assert.equal(refused.event, 'pusher:subscription_error', refused.raw);
    assert.equal(refused.payload.type, 'LimitReached');
    await c.ping();
    // The refused user never became a member.
    assert.equal(a.find((f) => f.event === 'pusher_internal:member_added' && f.payload.user_id === 'c').length, 0);
    const again = await a2.subscribeSigned(smallSdk, name, { user_id: 'a' });
    assert.equal(again.event, 'pusher_internal:subscription_succeeded', again.raw);
    assert.equal(again.payload.presence.count, 2);
    for (const x of [a, b, c, a2]) x.close();
  });

  it('pusher-js sees the LimitReached refusal as pusher:subscription_error', async () => {
    const name = uniq('presence-jsbig-');
    const client = openPusher(broker, { app: small, presence: { user_id: 'js', user_info: { bio: 'y'.repeat(400) } } });
    await connected(client);
    const r = await subscribeResult(client, name);
    assert.equal(r.ok, false);
    assert.equal(r.error.type, 'LimitReached');
    client.disconnect();
  });
});
