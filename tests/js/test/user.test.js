// User sign-in, #server-to-user-{id}, watchlist events, signin_timeout, terminate_connections.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import {
  APPS,
  connected,
  hmacHex,
  openPusher,
  openRaw,
  pusherJsErrorCode,
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

/** pusher-js client signed in as `id`; resolves once #server-to-user-{id} is subscribed. */
async function signedIn(id, extra = {}, app = APPS.main) {
  const client = openPusher(broker, { app, user: { id, ...extra } });
  client.signin();
  await connected(client);
  await waitFor(
    () => client.user.user_data?.id === id && client.user.serverToUserChannel?.subscribed,
    5000,
    `sign-in of ${id} and #server-to-user-${id} subscription`,
    () => `received=${JSON.stringify(client.received.slice(-10))} errors=${JSON.stringify(client.errors)}`,
  );
  return client;
}

describe('sign-in', () => {
  it('pusher.signin() succeeds and subscribes #server-to-user-{id}', async () => {
    const id = uniq('alice-');
    const client = await signedIn(id, { user_info: { name: 'Alice' } });
    const success = client.received.find((e) => e.event === 'pusher:signin_success');
    assert.ok(success);
    assert.equal(JSON.parse(success.data.user_data).id, id);
    client.disconnect();
  });

  it('raw: pusher:signin_success echoes user_data exactly', async () => {
    const c = await openRaw(broker);
    const id = uniq('raw-user-');
    const f = await c.signin(sdk, { id, user_info: { role: 'tester' } });
    assert.equal(f.payload.user_data, JSON.stringify({ id, user_info: { role: 'tester' } }));
    await c.ping();
    c.close();
  });

  it('a bad signature gets pusher:error 4009 and close 4009', async () => {
    const c = await openRaw(broker);
    c.send({
      event: 'pusher:signin',
      data: { auth: `${APPS.main.key}:${'0'.repeat(64)}`, user_data: JSON.stringify({ id: 'mallory' }) },
    });
    const err = await c.waitEvent('pusher:error');
    assert.equal(err.payload.code, 4009, err.raw);
    const close = await c.waitClose();
    assert.equal(close.code, 4009);
  });

  it('signing in again as a different user fails with 4009', async () => {
    const c = await openRaw(broker);
    await c.signin(sdk, { id: uniq('first-') });
    const a = sdk.authenticateUser(c.socketId, { id: uniq('second-') });
    c.send({ event: 'pusher:signin', data: { auth: a.auth, user_data: a.user_data } });
    const close = await c.waitClose();
    assert.equal(close.code, 4009, c.describe());
    assert.ok(c.frames.some((f) => f.event === 'pusher:error' && f.payload.code === 4009), c.describe());
  });

  it('user_data without an id is refused with 4009', async () => {
    const c = await openRaw(broker);
    const userData = JSON.stringify({ name: 'no id' });
    const sig = hmacHex(APPS.main.secret, `${c.socketId}::user::${userData}`);
    c.send({ event: 'pusher:signin', data: { auth: `${APPS.main.key}:${sig}`, user_data: userData } });
    const close = await c.waitClose();
    assert.equal(close.code, 4009, c.describe());
  });

  it('pusher-js with a bad user signature sees error 4009 and leaves the connected state', async () => {
    const client = openPusher(broker, {
      authenticate: () => ({ auth: `${APPS.main.key}:${'1'.repeat(64)}`, user_data: JSON.stringify({ id: 'eve' }) }),
    });
    client.signin();
    // The refusal can come before a poll ever sees "connected", so wait on the error itself.
    await waitFor(() => client.errors.some((e) => pusherJsErrorCode(e) === 4009), 5000, 'error 4009 in pusher-js', () =>
      JSON.stringify(client.errors),
    );
    await waitFor(() => client.connection.state !== 'connected', 5000, 'pusher-js to leave "connected"');
    client.disconnect();
  });
});

describe('presence after sign-in', () => {
  it('raw: presence auth without channel_data uses the signed-in user (signature over socket:channel)', async () => {
    const id = uniq('signed-member-');
    const name = uniq('presence-signed-');
    const c = await openRaw(broker);
    await c.signin(sdk, { id, user_info: { name: 'Signed' } });
    const ok = await c.subscribeSigned(sdk, name); // no channel_data
    assert.equal(ok.event, 'pusher_internal:subscription_succeeded', ok.raw);
    assert.deepEqual(ok.payload.presence.ids, [id]);
    assert.equal(ok.payload.presence.count, 1);
    c.close();
  });

  it('pusher-js: presence auth response without channel_data after pusher.signin()', async () => {
    const id = uniq('js-member-');
    const name = uniq('presence-jssigned-');
    const sdkLocal = serverSdk(broker);
    const client = openPusher(broker, {
      user: { id, user_info: { name: 'JS' } },
      authorize: (socketId, channelName) => ({ auth: sdkLocal.authorizeChannel(socketId, channelName).auth }),
    });
    client.signin();
    await connected(client);
    const ch = await subscribe(client, name);
    assert.equal(ch.members.count, 1);
    assert.equal(ch.members.me?.id, id);
    client.disconnect();
  });
});

describe('#server-to-user-{id}', () => {
  it('pusher.sendToUser reaches the pusher.user.bind handler of that user only', async () => {
    const id = uniq('bob-');
    const other = uniq('carol-');
    const bob = await signedIn(id);
    const carol = await signedIn(other);
    const gotBob = [];
    const gotCarol = [];
    bob.user.bind('notice', (d) => gotBob.push(d));
    carol.user.bind('notice', (d) => gotCarol.push(d));
    await sdk.sendToUser(id, 'notice', { text: 'for bob' });
    await waitFor(() => gotBob.length === 1, 5000, 'notice at bob');
    assert.deepEqual(gotBob[0], { text: 'for bob' });
    await sdk.sendToUser(other, 'notice', { text: 'for carol' });
    await waitFor(() => gotCarol.length === 1, 5000, 'notice at carol');
    assert.deepEqual(gotCarol[0], { text: 'for carol' });
    assert.equal(gotBob.length, 1);
    bob.disconnect();
    carol.disconnect();
  });

  it('sendToUser reaches every signed-in socket of the user', async () => {
    const id = uniq('multi-');
    const s1 = await signedIn(id);
    const s2 = await signedIn(id);
    const got = [];
    s1.user.bind('ping-user', (d) => got.push(['s1', d]));
    s2.user.bind('ping-user', (d) => got.push(['s2', d]));
    await sdk.sendToUser(id, 'ping-user', { ok: 1 });
    await waitFor(() => got.length === 2, 5000, 'both sockets');
    s1.disconnect();
    s2.disconnect();
  });

  it('raw: only the signed-in user may subscribe to its own #server-to-user channel', async () => {
    const id = uniq('own-');
    const c = await openRaw(broker);
    const before = await c.subscribe(`#server-to-user-${id}`);
    assert.equal(before.event, 'pusher:subscription_error', `not signed in yet: ${before.raw}`);
    await c.signin(sdk, { id });
    const foreign = await c.subscribe(`#server-to-user-${id}-other`);
    assert.equal(foreign.event, 'pusher:subscription_error', `someone else's channel: ${foreign.raw}`);
    const own = await c.subscribe(`#server-to-user-${id}`);
    assert.equal(own.event, 'pusher_internal:subscription_succeeded', own.raw);
    c.close();
  });
});

describe('watchlist', () => {
  it('online when a watched user signs in, offline only after its last socket goes', async () => {
    const watched = uniq('watched-');
    const watcher = await signedIn(uniq('watcher-'), { watchlist: [watched] });
    const online = [];
    const offline = [];
    watcher.user.watchlist.bind('online', (e) => online.push(e));
    watcher.user.watchlist.bind('offline', (e) => offline.push(e));

    const w1 = await signedIn(watched);
    await waitFor(() => online.some((e) => e.user_ids.includes(watched)), 5000, 'online event', () =>
      `online=${JSON.stringify(online)} received=${JSON.stringify(watcher.received.slice(-5))}`,
    );
    const onlineCount = online.filter((e) => e.user_ids.includes(watched)).length;
    assert.equal(onlineCount, 1);
    // An initial "offline" status (sent at the watcher's sign-in) is allowed; count from here.
    const offlineBefore = offline.filter((e) => e.user_ids.includes(watched)).length;

    const w2 = await signedIn(watched);
    w1.disconnect();
    // Proving an absence: give the broker time to process the second sign-in and the first close.
    await sleep(400);
    assert.equal(online.filter((e) => e.user_ids.includes(watched)).length, 1, 'second socket re-announced online');
    assert.equal(
      offline.filter((e) => e.user_ids.includes(watched)).length,
      offlineBefore,
      `offline while a socket remains: ${JSON.stringify(offline)}`,
    );

    w2.disconnect();
    await waitFor(
      () => offline.filter((e) => e.user_ids.includes(watched)).length === offlineBefore + 1,
      5000,
      'offline event after the last socket',
    );
    watcher.disconnect();
  });

  it('on sign-in the watcher is told which watched users are already online', async () => {
    const present = uniq('present-');
    const p = await signedIn(present);
    const c = await openRaw(broker);
    await c.signin(sdk, { id: uniq('late-watcher-'), watchlist: [present, uniq('absent-')] });
    const f = await c.waitFor(
      (x) => x.event === 'pusher_internal:watchlist_events' && x.payload.events.some((e) => e.name === 'online'),
      { what: 'initial online watchlist event' },
    );
    const onlineIds = f.payload.events.filter((e) => e.name === 'online').flatMap((e) => e.user_ids);
    assert.ok(onlineIds.includes(present), f.raw);
    p.disconnect();
    c.close();
  });

  it('a watchlist over 100 ids: sign-in succeeds and pusher:error 4302 is sent', async () => {
    const c = await openRaw(broker);
    const watchlist = Array.from({ length: 101 }, (_, i) => `w-${i}`);
    const since = c.mark();
    await c.signin(sdk, { id: uniq('greedy-'), watchlist });
    const err = await c.waitFor((f) => f.event === 'pusher:error', { since, what: 'pusher:error 4302' });
    assert.equal(err.payload.code, 4302, err.raw);
    await c.ping();
    assert.equal(c.closed, null);
    c.close();
  });

  it('raw wire format: pusher_internal:watchlist_events {events:[{name, user_ids}]}', async () => {
    const watched = uniq('wire-watched-');
    const c = await openRaw(broker);
    await c.signin(sdk, { id: uniq('wire-watcher-'), watchlist: [watched] });
    const since = c.mark();
    const w = await openRaw(broker);
    await w.signin(sdk, { id: watched });
    const f = await c.waitFor(
      (x) => x.event === 'pusher_internal:watchlist_events' && x.payload?.events?.some((e) => e.user_ids?.includes(watched)),
      { since, what: 'watchlist online event' },
    );
    const e = f.payload.events.find((x) => x.user_ids.includes(watched));
    assert.equal(e.name, 'online');
    assert.ok(Array.isArray(e.user_ids));
    w.close();
    c.close();
  });
});

describe('signin_timeout (app signin: 2 s)', () => {
  it('a socket that never signs in is closed with 4009', async () => {
    const c = await openRaw(broker, { app: APPS.signin });
    const t0 = Date.now();
    const close = await c.waitClose(6000);
    assert.equal(close.code, 4009, c.describe());
    assert.ok(Date.now() - t0 >= 1000, `closed too early (${Date.now() - t0} ms)`);
  });

  it('a socket that signs in stays open past the timeout', async () => {
    const signinSdk = serverSdk(broker, APPS.signin);
    const c = await openRaw(broker, { app: APPS.signin });
    await c.signin(signinSdk, { id: uniq('timely-') });
    await sleep(3000);
    assert.equal(c.closed, null, c.describe());
    await c.ping();
    c.close();
  });
});

describe('terminate_connections', () => {
  it('closes every signed-in socket of the user with 4009; others unaffected', async () => {
    const victim = uniq('victim-');
    const a1 = await openRaw(broker);
    const a2 = await openRaw(broker);
    await a1.signin(sdk, { id: victim });
    await a2.signin(sdk, { id: victim });
    const bystander = await openRaw(broker);
    await bystander.signin(sdk, { id: uniq('bystander-') });
    // A presence-only member with the same id is not a signed-in user and is not terminated.
    const presenceOnly = await openRaw(broker);
    await presenceOnly.subscribeSigned(sdk, uniq('presence-term-'), { user_id: victim });

    const res = await sdk.terminateUserConnections(victim);
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), {});
    for (const c of [a1, a2]) {
      const err = await c.waitEvent('pusher:error');
      assert.equal(err.payload.code, 4009, err.raw);
      const close = await c.waitClose();
      assert.equal(close.code, 4009);
    }
    await bystander.ping();
    await presenceOnly.ping();
    assert.equal(bystander.closed, null);
    assert.equal(presenceOnly.closed, null);
    bystander.close();
    presenceOnly.close();
  });

  it('pusher-js: terminateUserConnections disconnects the signed-in client', async () => {
    const id = uniq('js-victim-');
    const client = await signedIn(id);
    await subscribe(client, uniq('public-term-'));
    await sdk.terminateUserConnections(id);
    await waitFor(() => client.errors.some((e) => pusherJsErrorCode(e) === 4009), 5000, '4009 at pusher-js', () =>
      JSON.stringify(client.errors),
    );
    client.disconnect();
  });
});
