// The Pushler-compatible JS client (clients/js) in Node against the real broker: the API surface
// (connected, subscribe, channel.on, getChannel/getChannels, unsubscribe, disconnect, stateChanged,
// failed; none of pusher-js's names), private and presence authorization through `authorize` and
// through a real HTTP authEndpoint (authHeaders, authParams), `pushler:` presence events, client
// events, the mapping of Pusher error codes, the reconnect with resubscription after a broker restart
// on the same port, the reconnect backoff measured against a killed broker, the ping / pong watchdog
// against a frozen (SIGSTOP) broker, /pushler.js as the broker serves it, resolution of
// @vestnik/pushler through package.json `exports`, and the TypeScript types. The browser side
// (cookbook pages, Vue) is in pushler-cookbook.test.js.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { register } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';

import WebSocket from 'ws';

import PushlerClient from '../../../clients/js/index.js';
import { APPS, REPO_ROOT, SOCKET_ID_RE, serverSdk, startBroker, uniq, waitFor } from '../helpers.js';

const run = promisify(execFile);

/** A `ws` WebSocket that records the frames it sends and receives, for assertions. */
function recordingWebSocket(log) {
  return class RecordingWebSocket extends WebSocket {
    constructor(url) {
      super(url);
      log.urls.push(url);
      this.addEventListener('message', (ev) => log.received.push(JSON.parse(String(ev.data))));
    }
    send(data) {
      log.sent.push(JSON.parse(data));
      super.send(data);
    }
  };
}

const clients = new Set();

/** A PushlerClient on the broker, signing private/presence subscriptions with the Node SDK. */
function openClient(broker, { app = APPS.main, presence, options = {} } = {}) {
  const sdk = serverSdk(broker, app);
  const log = { sent: [], received: [], urls: [], events: [] };
  const client = new PushlerClient({
    appKey: app.key,
    wsHost: '127.0.0.1',
    wsPort: broker.port,
    forceTLS: false,
    WebSocket: recordingWebSocket(log),
    authorize: ({ socketId, channelName }) =>
      sdk.authorizeChannel(socketId, channelName, channelName.startsWith('presence-') ? presence : undefined),
    ...options,
  });
  for (const ev of ['connected', 'reconnected', 'disconnected', 'failed', 'error', 'stateChanged', 'connecting']) {
    client.on(ev, (data) => log.events.push([ev, data]));
  }
  client.log = log;
  clients.add(client);
  return client;
}

const seen = (client, name) => client.log.events.filter(([ev]) => ev === name);

async function connectedClient(broker, opts) {
  const c = openClient(broker, opts);
  await waitFor(() => c.state === 'connected', 5000, 'connected', () => JSON.stringify(c.log.events));
  return c;
}

function subscribed(channel) {
  return new Promise((resolve, reject) => {
    channel.once('pushler:subscription_succeeded', resolve);
    channel.once('pushler:subscription_error', (e) => reject(new Error(`subscription_error ${JSON.stringify(e)}`)));
  });
}

let broker;
let sdk;
before(async () => {
  broker = await startBroker();
  sdk = serverSdk(broker);
});
after(async () => {
  for (const c of clients) c.disconnect();
  await broker?.stop();
});

describe('connection', () => {
  test('connected fires once with a Pusher socket id; state goes initialized -> connecting -> connected', async () => {
    const c = await connectedClient(broker);
    assert.match(c.socketId, SOCKET_ID_RE);
    assert.equal(seen(c, 'connected').length, 1);
    assert.equal(seen(c, 'connected')[0][1].socketId, c.socketId);
    assert.deepEqual(
      seen(c, 'stateChanged').map(([, s]) => `${s.previous}>${s.current}`),
      ['initialized>connecting', 'connecting>connected'],
    );
    assert.match(c.log.urls[0], new RegExp(`^ws://127\\.0\\.0\\.1:${broker.port}/app/main-key\\?protocol=7&client=vestnik-pushler-js&version=`));
    c.disconnect();
    assert.equal(c.state, 'disconnected');
    assert.equal(seen(c, 'disconnected').at(-1)[1].willReconnect, false);
  });

  test('an unknown app key maps Pusher 4001 to error + failed, without reconnecting', async () => {
    const c = openClient(broker, { app: { key: 'no-such-key', secret: 'x', id: '1' } });
    await waitFor(() => c.state === 'failed', 5000, 'failed', () => JSON.stringify(c.log.events));
    const errors = seen(c, 'error').map(([, e]) => e.code);
    assert.deepEqual(errors, [4001], 'one error event: the pusher:error and the close say the same');
    assert.match(seen(c, 'error')[0][1].message, /no-such-key/);
    assert.equal(seen(c, 'disconnected').at(-1)[1].willReconnect, false);
    assert.deepEqual(seen(c, 'failed').map(([, f]) => f.code), [4001], 'one failed event with the close code');
    assert.equal(c.log.urls.length, 1, 'no second attempt');
  });

  test('a disabled app is 4003 and failed', async () => {
    const c = openClient(broker, { app: APPS.disabled });
    await waitFor(() => seen(c, 'failed').length === 1, 5000, 'failed');
    assert.equal(c.state, 'failed');
    assert.equal(seen(c, 'failed')[0][1].code, 4003);
    assert.ok(seen(c, 'error').some(([, e]) => e.code === 4003));
  });

  test('disconnect() right after new PushlerClient() keeps it from connecting; connect() then works', async () => {
    const c = openClient(broker);
    c.disconnect();
    const ch = c.subscribe(uniq('later-'));
    // Ordering marker: a second client connects and is served; the first never opened a socket.
    await connectedClient(broker);
    assert.equal(c.log.urls.length, 0);
    assert.equal(c.state, 'initialized');
    c.connect();
    await waitFor(() => c.state === 'connected', 5000, 'connected after connect()');
    assert.equal(seen(c, 'connected').length, 1);
    await waitFor(() => ch.subscribed, 5000, 'the channel kept from before connect() is subscribed');
  });

  test('the constructor refuses a missing appKey and a missing WebSocket', () => {
    assert.throws(() => new PushlerClient({ authEndpoint: '/auth.php' }), /appKey/);
    assert.throws(() => new PushlerClient({ appKey: 'k', autoConnect: false }), /WebSocket/);
  });

  test('no pusher-js names: getChannel/getChannels and stateChanged; channel(), allChannels(), state_change and the pusher-js options are gone', async () => {
    for (const [option, instead] of [
      ['authorizer', /authorize/],
      ['auth', /authHeaders/],
      ['activityTimeout', /heartbeatIdle/],
      ['pongTimeout', /heartbeatTimeout/],
    ]) {
      assert.throws(() => new PushlerClient({ appKey: 'k', autoConnect: false, WebSocket, [option]: {} }), instead, option);
    }
    const c = openClient(broker);
    const pusherNamed = [];
    c.on('state_change', (s) => pusherNamed.push(s));
    await waitFor(() => c.state === 'connected', 5000, 'connected');
    assert.equal(c.channel, undefined);
    assert.equal(c.allChannels, undefined);
    const [a, b] = [uniq('get-a-'), uniq('get-b-')];
    const chA = c.subscribe(a);
    const chB = c.subscribe(b);
    assert.equal(c.getChannel(a), chA);
    assert.equal(c.getChannel(uniq('none-')), null);
    assert.deepEqual(c.getChannels(), [chA, chB]);
    chA.unsubscribe();
    assert.deepEqual(c.getChannels(), [chB]);
    assert.deepEqual(seen(c, 'stateChanged').at(-1)[1], { previous: 'connecting', current: 'connected' });
    assert.deepEqual(pusherNamed, [], 'nothing is emitted as state_change');
    assert.equal(c.options.heartbeatIdle, PushlerClient.DEFAULTS.heartbeatIdle);
    assert.equal(c.options.heartbeatTimeout, PushlerClient.DEFAULTS.heartbeatTimeout);
    c.disconnect();
    assert.deepEqual(seen(c, 'failed'), [], 'a disconnect() is not a failure');
  });
});

describe('channels', () => {
  test('public channel: channel.on gets the decoded payload; a non-JSON string stays a string', async () => {
    const c = await connectedClient(broker);
    const name = uniq('orders-');
    const ch = c.subscribe(name);
    assert.equal(c.subscribe(name), ch, 'subscribe twice returns the same channel');
    await subscribed(ch);
    const got = [];
    ch.on('order:status', (data) => got.push(data));
    await sdk.trigger(name, 'order:status', { order_id: 12345, status: 'shipped' });
    await sdk.trigger(name, 'order:status', 'plain text');
    await waitFor(() => got.length === 2, 5000, 'two events');
    assert.deepEqual(got[0], { order_id: 12345, status: 'shipped' });
    assert.equal(got[1], 'plain text');
  });

  test('subscribe before connected is sent once the connection is up', async () => {
    const c = openClient(broker);
    const ch = c.subscribe(uniq('early-'));
    await subscribed(ch);
    assert.equal(ch.subscribed, true);
  });

  test('unsubscribe leaves the channel on the broker', async () => {
    const c = await connectedClient(broker);
    const name = uniq('leave-');
    const ch = c.subscribe(name);
    await subscribed(ch);
    assert.equal((await (await sdk.get({ path: `/channels/${name}` })).json()).occupied, true);
    ch.unsubscribe();
    assert.equal(c.getChannel(name), null);
    await waitFor(async () => (await (await sdk.get({ path: `/channels/${name}` })).json()).occupied === false, 5000, 'vacated');
    assert.ok(c.log.sent.some((f) => f.event === 'pusher:unsubscribe' && f.data.channel === name));
  });

  test('private channel: a refused authorization is pushler:subscription_error with the status', async () => {
    const c = await connectedClient(broker, {
      options: {
        authorize: () => {
          const e = new Error('Forbidden');
          e.status = 403;
          throw e;
        },
      },
    });
    const ch = c.subscribe(uniq('private-user-'));
    const err = await new Promise((r) => ch.on('pushler:subscription_error', r));
    assert.equal(err.type, 'AuthError');
    assert.equal(err.error, 'Forbidden');
    assert.equal(ch.subscribed, false);
  });

  test('private channel: a bad signature is refused by the broker, surfaced as subscription_error', async () => {
    const c = await connectedClient(broker, { options: { authorize: () => ({ auth: 'main-key:0000' }) } });
    const ch = c.subscribe(uniq('private-x-'));
    const err = await new Promise((r) => ch.on('pushler:subscription_error', r));
    assert.equal(err.type, 'AuthError');
    assert.equal(err.status, 401);
  });
});

describe('authEndpoint over HTTP', () => {
  /**
   * A real auth endpoint: node:http on 127.0.0.1:0 that records each request's headers and form
   * fields, refuses (403) a request without the CSRF header or the `team` field, and otherwise answers
   * the signed auth as the cookbook's auth.php does.
   */
  async function authServer() {
    const requests = [];
    const server = createServer((req, res) => {
      let body = '';
      req.on('data', (d) => (body += d));
      req.on('end', () => {
        const fields = Object.fromEntries(new URLSearchParams(body));
        requests.push({ method: req.method, url: req.url, headers: req.headers, fields });
        res.setHeader('content-type', 'application/json');
        if (req.headers['x-csrf-token'] !== 'tok-1' || fields.team !== 'blue') {
          res.statusCode = 403;
          res.end(JSON.stringify({ error: 'Forbidden' }));
          return;
        }
        const presence = fields.channel_name.startsWith('presence-') ? { user_id: 'http-1', user_info: { team: fields.team } } : undefined;
        res.end(JSON.stringify(sdk.authorizeChannel(fields.socket_id, fields.channel_name, presence)));
      });
    });
    await new Promise((r) => server.listen(0, '127.0.0.1', r));
    return { requests, url: `http://127.0.0.1:${server.address().port}/auth`, close: () => new Promise((r) => {
        server.close(r);
        server.closeAllConnections(); // fetch keeps its connection alive
      }) };
  }

  test('authHeaders and authParams reach the endpoint with socket_id and channel_name; its signed answer subscribes', async () => {
    const auth = await authServer();
    try {
      const c = await connectedClient(broker, {
        options: {
          authorize: undefined,
          authEndpoint: auth.url,
          authHeaders: { 'X-CSRF-Token': 'tok-1' },
          // An extra field named like a signed one must not replace it.
          authParams: { team: 'blue', channel_name: 'private-someone-else' },
        },
      });
      const priv = uniq('private-http-');
      const pres = uniq('presence-http-');
      const chPriv = c.subscribe(priv);
      const chPres = c.subscribe(pres);
      const [, members] = await Promise.all([subscribed(chPriv), subscribed(chPres)]);
      assert.deepEqual(members.me, { id: 'http-1', info: { team: 'blue' } });
      assert.equal(auth.requests.length, 2);
      for (const r of auth.requests) {
        assert.equal(r.method, 'POST');
        assert.equal(r.headers['x-csrf-token'], 'tok-1');
        assert.equal(r.headers['content-type'], 'application/x-www-form-urlencoded');
        assert.equal(r.fields.team, 'blue');
        assert.equal(r.fields.socket_id, c.socketId);
      }
      assert.deepEqual(auth.requests.map((r) => r.fields.channel_name).sort(), [priv, pres].sort());

      // Without the header and the field the same endpoint refuses: the status and its error arrive.
      const bare = await connectedClient(broker, { options: { authorize: undefined, authEndpoint: auth.url } });
      const refused = bare.subscribe(uniq('private-http-'));
      const err = await new Promise((r) => refused.on('pushler:subscription_error', r));
      assert.deepEqual(err, { type: 'AuthError', error: 'Forbidden', status: 403 });
      assert.equal(auth.requests.at(-1).headers['x-csrf-token'], undefined);
      assert.equal(auth.requests.at(-1).fields.team, undefined);
    } finally {
      await auth.close();
    }
  });
});

describe('presence', () => {
  test('pushler:subscription_succeeded carries the members; member_added / member_removed use the pushler: names', async () => {
    const name = uniq('presence-room-');
    const a = await connectedClient(broker, { presence: { user_id: 'anna', user_info: { name: 'Анна' } } });
    const chA = a.subscribe(name);
    const pusherNamed = [];
    for (const ev of ['pusher:subscription_succeeded', 'pusher:member_added', 'pusher:member_removed']) {
      chA.on(ev, () => pusherNamed.push(ev));
    }
    const members = await subscribed(chA);
    assert.equal(members.count, 1);
    assert.deepEqual(members.me, { id: 'anna', info: { name: 'Анна' } });
    const added = [];
    const removed = [];
    chA.on('pushler:member_added', (m) => added.push(m));
    chA.on('pushler:member_removed', (m) => removed.push(m));

    const b = await connectedClient(broker, { presence: { user_id: 'boris', user_info: { name: 'Борис' } } });
    const chB = b.subscribe(name);
    const membersB = await subscribed(chB);
    assert.deepEqual(membersB.list().map((m) => m.id).sort(), ['anna', 'boris']);
    await waitFor(() => added.length === 1, 5000, 'member_added');
    assert.deepEqual(added[0], { id: 'boris', info: { name: 'Борис' } });
    assert.equal(chA.members.count, 2);

    b.disconnect();
    await waitFor(() => removed.length === 1, 5000, 'member_removed');
    assert.deepEqual(removed[0], { id: 'boris', info: { name: 'Борис' } });
    assert.equal(chA.members.count, 1);
    assert.equal(chA.members.get('boris'), null);
    assert.deepEqual(pusherNamed, [], 'no pusher: names reach the app');
  });

  test('client events: send() reaches the others with the sender user id; names must start client-', async () => {
    const name = uniq('presence-chat-');
    const a = await connectedClient(broker, { presence: { user_id: 'u1' } });
    const b = await connectedClient(broker, { presence: { user_id: 'u2' } });
    const chA = a.subscribe(name);
    const chB = b.subscribe(name);
    await Promise.all([subscribed(chA), subscribed(chB)]);
    const got = [];
    chB.on('client-typing', (data, meta) => got.push({ data, meta }));
    const mine = [];
    chA.on('client-typing', (data) => mine.push(data));
    assert.equal(chA.send('client-typing', { typing: true }), true);
    await waitFor(() => got.length === 1, 5000, 'client event');
    assert.deepEqual(got[0], { data: { typing: true }, meta: { userId: 'u1' } });
    assert.throws(() => chA.send('typing', {}), /client-/);
    assert.equal(a.getChannel(name), chA);
    assert.deepEqual(mine, [], 'the sender does not get its own event');
  });

  test('a client event refused by the broker (public channel) is an error event with code 4301', async () => {
    const c = await connectedClient(broker);
    const ch = c.subscribe(uniq('public-'));
    await subscribed(ch);
    ch.send('client-x', {});
    await waitFor(() => seen(c, 'error').some(([, e]) => e.code === 4301), 5000, 'error 4301');
    assert.equal(c.state, 'connected', 'the socket stays open');
  });
});

describe('reconnect and liveness', () => {
  test('a broker restart on the same port: disconnected, reconnected (not connected again), resubscribed, events arrive', async () => {
    const own = await startBroker();
    const port = own.port;
    let second;
    try {
      const c = await connectedClient(own, { presence: { user_id: 'r1' } });
      const pub = uniq('orders-');
      const priv = uniq('private-user-');
      const chPub = c.subscribe(pub);
      const chPriv = c.subscribe(priv);
      await Promise.all([subscribed(chPub), subscribed(chPriv)]);
      const got = [];
      chPriv.on('order:status', (d) => got.push(d));
      const firstSocket = c.socketId;

      await own.kill('SIGTERM');
      await waitFor(() => seen(c, 'disconnected').length >= 1, 5000, 'disconnected');
      const drop = seen(c, 'disconnected')[0][1];
      assert.equal(drop.code, 4200, 'SIGTERM closes 4200');
      assert.equal(drop.willReconnect, true);

      second = await startBroker({ port });
      await waitFor(() => seen(c, 'reconnected').length === 1, 20000, 'reconnected', () => JSON.stringify(c.log.events));
      assert.equal(seen(c, 'connected').length, 1, '`connected` only for the first connection');
      assert.notEqual(c.socketId, firstSocket);
      await waitFor(() => chPub.subscribed && chPriv.subscribed, 5000, 'resubscribed');
      await serverSdk(second).trigger(priv, 'order:status', { step: 4 });
      await waitFor(() => got.length === 1, 5000, 'event after the restart');
      assert.deepEqual(got, [{ step: 4 }]);
      c.disconnect();
    } finally {
      await own.stop();
      await second?.stop();
    }
  });

  test('ping after the server activity timeout, pong keeps it; a frozen broker is abandoned after heartbeatTimeout and rejoined', async () => {
    const own = await startBroker({ server: { activity_timeout: 1 } });
    try {
      const c = await connectedClient(own, { options: { heartbeatTimeout: 700, minReconnectDelay: 200, maxReconnectDelay: 400 } });
      const firstSocket = c.socketId;
      await waitFor(() => c.log.received.some((f) => f.event === 'pusher:pong'), 5000, 'a pong for our ping');
      assert.ok(c.log.sent.some((f) => f.event === 'pusher:ping'));
      assert.equal(c.socketId, firstSocket, 'the answered ping kept the connection');

      own.proc.kill('SIGSTOP');
      try {
        await waitFor(() => seen(c, 'disconnected').length >= 1, 6000, 'watchdog fired', () => JSON.stringify(c.log.events));
        assert.equal(seen(c, 'disconnected')[0][1].code, 4201);
      } finally {
        own.proc.kill('SIGCONT');
      }
      await waitFor(() => seen(c, 'reconnected').length >= 1, 10000, 'reconnected after SIGCONT', () => JSON.stringify(c.log.events));
      c.disconnect();
    } finally {
      await own.stop();
    }
  });

  test('reconnect attempts back off: the first after minReconnectDelay, then growing to maxReconnectDelay; back up, the channels are resubscribed', async () => {
    const own = await startBroker();
    const port = own.port;
    let second;
    // Scaled-down delays keep the test short; the rule is the same as with the 1 s / 30 s defaults.
    const min = 150;
    const max = 1200;
    const attempts = 7;
    try {
      const c = await connectedClient(own, { presence: { user_id: 'b1' }, options: { minReconnectDelay: min, maxReconnectDelay: max } });
      // A client with the default delays: its first retry comes after about one second.
      const d = await connectedClient(own);
      const pub = uniq('orders-');
      const priv = uniq('private-user-');
      const chPub = c.subscribe(pub);
      const chPriv = c.subscribe(priv);
      await Promise.all([subscribed(chPub), subscribed(chPriv)]);
      const got = [];
      chPriv.on('order:status', (x) => got.push(x));
      // Each drop or refusal emits `disconnected` with the delay chosen, then `connecting` when the
      // attempt starts: the gap between the two is the delay really waited.
      const times = { c: { drop: [], try: [] }, d: { drop: [], try: [] } };
      for (const [name, client] of [['c', c], ['d', d]]) {
        client.on('disconnected', () => times[name].drop.push(performance.now()));
        client.on('connecting', () => times[name].try.push(performance.now()));
      }

      // SIGKILL: no 4200 close (which would reconnect at once), the socket just drops (1006), and
      // every attempt afterwards is refused until the broker is back.
      await own.kill('SIGKILL');
      await waitFor(() => times.c.try.length >= attempts, 20000, `${attempts} attempts`, () => JSON.stringify(seen(c, 'disconnected')));
      await waitFor(() => times.d.try.length >= 2, 10000, 'two attempts with the defaults');

      // The delay before attempt i is drawn from [max(min, b/2), b] with b = min(max, min * 2^i).
      // Timers never fire early (5 ms of rounding allowed); a slow machine only makes a wait longer,
      // so the upper bounds are loose.
      const slack = 1000;
      const announced = seen(c, 'disconnected').map(([, e]) => e);
      const gaps = times.c.try.slice(0, attempts).map((t, i) => t - times.c.drop[i]);
      const report = () => `announced ${announced.map((e) => e.delay)}, waited ${gaps.map(Math.round)}`;
      gaps.forEach((gap, i) => {
        const b = Math.min(max, min * 2 ** i);
        const lower = Math.max(min, b / 2);
        const { delay, code, willReconnect } = announced[i];
        assert.ok(willReconnect && code === 1006, `attempt ${i}: ${JSON.stringify(announced[i])}`);
        assert.ok(delay >= lower && delay <= b, `attempt ${i}: delay ${delay} outside [${lower}, ${b}] (${report()})`);
        assert.ok(gap >= delay - 5 && gap <= delay + slack, `attempt ${i}: waited ${gap.toFixed(0)} ms for ${delay} (${report()})`);
      });
      assert.ok(gaps[attempts - 1] >= max / 2 - 5 && gaps[attempts - 1] <= max + slack, `the delays grew to the cap (${report()})`);

      const [dFirst, dSecond] = [0, 1].map((i) => times.d.try[i] - times.d.drop[i]);
      assert.ok(dFirst >= 1000 - 5 && dFirst <= 1000 + slack, `default first retry after ${dFirst.toFixed(0)} ms, about 1 s expected`);
      assert.ok(dSecond >= 1000 - 5 && dSecond <= 2000 + slack, `default second retry after ${dSecond.toFixed(0)} ms, 1-2 s expected`);

      second = await startBroker({ port });
      await waitFor(() => seen(c, 'reconnected').length === 1, 10000, 'reconnected', () => JSON.stringify(c.log.events));
      await waitFor(() => chPub.subscribed && chPriv.subscribed, 5000, 'resubscribed');
      await serverSdk(second).trigger(priv, 'order:status', { back: true });
      await waitFor(() => got.length === 1, 5000, 'event after the restart');
      assert.deepEqual(got, [{ back: true }]);
      assert.equal(seen(c, 'failed').length, 0, 'refused connections are retried, not a failure');
      c.disconnect();
      d.disconnect();
    } finally {
      await own.stop();
      await second?.stop();
    }
  });
});

describe('usePushlerChannel (Vue 3 reactivity, in Node)', () => {
  // clients/js/vue.js imports 'vue' as a peer dependency; resolve it to this suite's copy.
  let vue;
  let usePushlerChannel;
  before(async () => {
    const vueUrl = import.meta.resolve('vue');
    register(
      `data:text/javascript,${encodeURIComponent(
        `export async function resolve(s, c, next) { return next(s === 'vue' ? ${JSON.stringify(vueUrl)} : s, c); }`,
      )}`,
    );
    vue = await import(vueUrl);
    ({ usePushlerChannel } = await import('../../../clients/js/vue.js'));
  });

  const occupied = async (name) => (await (await sdk.get({ path: `/channels/${name}` })).json()).occupied;

  test('subscribes, follows a reactive name, keeps a channel another scope holds, and leaves on dispose', async () => {
    const c = await connectedClient(broker);
    const [first, second] = [uniq('vue-a-'), uniq('vue-b-')];
    const name = vue.ref(first);
    const got = [];
    const scope = vue.effectScope();
    const state = scope.run(() => usePushlerChannel(c, name, { 'order:status': (d) => got.push(d) }));
    await waitFor(() => state.subscribed.value, 5000, 'subscribed');
    assert.equal(state.state.value, 'connected');
    await sdk.trigger(first, 'order:status', { n: 1 });
    await waitFor(() => got.length === 1, 5000, 'event through the handler');

    // A second holder of the first channel (another component).
    const other = vue.effectScope();
    const otherState = other.run(() => usePushlerChannel(c, first));

    name.value = second;
    await waitFor(() => state.subscribed.value && state.channel.value.name === second, 5000, 'moved to the second channel');
    assert.equal(await occupied(first), true, 'the other holder keeps the first channel');
    assert.equal(otherState.subscribed.value, true);
    await sdk.trigger(first, 'order:status', { n: 2 });
    await sdk.trigger(second, 'order:status', { n: 3 });
    await waitFor(() => got.length === 2, 5000, 'event on the second channel');
    assert.deepEqual(got, [{ n: 1 }, { n: 3 }], 'handlers left the first channel with the name change');

    other.stop();
    await waitFor(async () => !(await occupied(first)), 5000, 'first channel left by its last holder');
    scope.stop();
    await waitFor(async () => !(await occupied(second)), 5000, 'second channel left on dispose');
    assert.equal(state.subscribed.value, false);
  });

  test('presence members are reactive', async () => {
    const name = uniq('presence-vue-');
    const a = await connectedClient(broker, { presence: { user_id: 'va', user_info: { name: 'A' } } });
    const scope = vue.effectScope();
    const state = scope.run(() => usePushlerChannel(a, name));
    await waitFor(() => state.members.value.length === 1, 5000, 'one member');
    const b = await connectedClient(broker, { presence: { user_id: 'vb', user_info: { name: 'B' } } });
    b.subscribe(name);
    await waitFor(() => state.members.value.length === 2, 5000, 'two members');
    b.disconnect();
    await waitFor(() => state.members.value.length === 1, 5000, 'back to one');
    assert.deepEqual(state.members.value, [{ id: 'va', info: { name: 'A' } }]);
    scope.stop();
  });
});

describe('/pushler.js and the types', () => {
  test('the broker serves clients/js/pushler.js as application/javascript with cache headers and 304', async () => {
    const res = await fetch(`${broker.httpUrl}/pushler.js`);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-type'), 'application/javascript');
    assert.equal(res.headers.get('cache-control'), 'public, max-age=300');
    const etag = res.headers.get('etag');
    assert.match(etag, /^"[0-9a-f]{16}"$/);
    assert.equal(await res.text(), readFileSync(join(REPO_ROOT, 'clients/js/pushler.js'), 'utf8'));
    const again = await fetch(`${broker.httpUrl}/pushler.js`, { headers: { 'if-none-match': etag } });
    assert.equal(again.status, 304);
    const head = await fetch(`${broker.httpUrl}/pushler.js`, { method: 'HEAD' });
    assert.equal(head.status, 200);
    assert.equal(Number(head.headers.get('content-length')), Buffer.byteLength(readFileSync(join(REPO_ROOT, 'clients/js/pushler.js'))));
  });

  test('@vestnik/pushler resolves through package.json exports when installed into node_modules', async () => {
    // What `npm install ./clients/js` leaves behind: a node_modules/@vestnik/pushler symlink.
    const dir = mkdtempSync(join(tmpdir(), 'vestnik-pushler-install-'));
    try {
      mkdirSync(join(dir, 'node_modules', '@vestnik'), { recursive: true });
      symlinkSync(join(REPO_ROOT, 'clients', 'js'), join(dir, 'node_modules', '@vestnik', 'pushler'), 'dir');
      // The app's other packages: vue (the peer dependency) and what it needs, from this suite.
      const suiteModules = join(REPO_ROOT, 'tests', 'js', 'node_modules');
      for (const entry of readdirSync(suiteModules)) {
        if (!entry.startsWith('.')) symlinkSync(join(suiteModules, entry), join(dir, 'node_modules', entry), 'dir');
      }
      writeFileSync(join(dir, 'package.json'), JSON.stringify({ type: 'module', private: true }));
      writeFileSync(
        join(dir, 'probe.js'),
        `import PushlerClient from '@vestnik/pushler';
import { PushlerClient as Named } from '@vestnik/pushler';
const resolved = {};
for (const spec of ['@vestnik/pushler', '@vestnik/pushler/vue', '@vestnik/pushler/pushler.js', '@vestnik/pushler/index.d.ts']) {
  try { resolved[spec] = new URL(import.meta.resolve(spec)).pathname; } catch (e) { resolved[spec] = e.code; }
}
const { usePushlerChannel } = await import('@vestnik/pushler/vue');
console.log(JSON.stringify({ resolved, type: typeof PushlerClient, same: PushlerClient === Named, version: PushlerClient.VERSION, vue: typeof usePushlerChannel }));
`,
      );
      // --preserve-symlinks: vue.js then finds `vue` in this node_modules, as in an app that installed
      // both (without it, Node follows the link to clients/js, which has no node_modules).
      const { stdout } = await run(process.execPath, ['--preserve-symlinks', 'probe.js'], { cwd: dir });
      const out = JSON.parse(stdout);
      const pkg = join(dir, 'node_modules', '@vestnik', 'pushler');
      assert.deepEqual(out.resolved, {
        '@vestnik/pushler': join(pkg, 'index.js'),
        '@vestnik/pushler/vue': join(pkg, 'vue.js'),
        '@vestnik/pushler/pushler.js': join(pkg, 'pushler.js'),
        '@vestnik/pushler/index.d.ts': 'ERR_PACKAGE_PATH_NOT_EXPORTED',
      });
      assert.deepEqual(
        { type: out.type, same: out.same, version: out.version, vue: out.vue },
        { type: 'function', same: true, version: PushlerClient.VERSION, vue: 'function' },
      );
      assert.equal(realpathSync(out.resolved['@vestnik/pushler']), join(REPO_ROOT, 'clients', 'js', 'index.js'));

      // TypeScript finds the types through the same `exports` (the "types" conditions), no paths.
      writeFileSync(
        join(dir, 'tsconfig.json'),
        JSON.stringify({
          compilerOptions: { strict: true, noEmit: true, target: 'ES2020', module: 'ESNext', moduleResolution: 'Bundler', types: [], preserveSymlinks: true },
          files: ['probe.ts'],
        }),
      );
      writeFileSync(
        join(dir, 'probe.ts'),
        `import PushlerClient from '@vestnik/pushler';
import { usePushlerChannel } from '@vestnik/pushler/vue';
const p = new PushlerClient({ appKey: 'k' });
const s = usePushlerChannel(p, 'x');
const ok: boolean = s.subscribed.value;
// @ts-expect-error the types resolved: getChannel takes a name
p.getChannel(1);
export { ok };
`,
      );
      const tsc = join(REPO_ROOT, 'tests/js/node_modules/.bin/tsc');
      const { stdout: tscOut, stderr: tscErr } = await run(tsc, ['-p', join(dir, 'tsconfig.json')]).catch((e) => e);
      assert.equal(`${tscOut}${tscErr}`.trim(), '', 'tsc reports nothing');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('index.d.ts and vue.d.ts type-check the cookbook usage and reject misuse (tsc --noEmit)', async () => {
    const tsc = join(REPO_ROOT, 'tests/js/node_modules/.bin/tsc');
    const project = join(REPO_ROOT, 'tests/pushler/types/tsconfig.json');
    const { stdout, stderr } = await run(tsc, ['-p', project]).catch((e) => e);
    assert.equal(`${stdout}${stderr}`.trim(), '', 'tsc reports nothing');
  });
});
