// Connection handshake, ping/pong, health endpoint, connect refusals and malformed frames.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import {
  APPS,
  SOCKET_ID_RE,
  connected,
  openPusher,
  openRaw,
  openRefused,
  sdkGetJson,
  serverSdk,
  sleep,
  startBroker,
  waitFor,
  withTimeout,
} from '../helpers.js';

let broker;
before(async () => {
  broker = await startBroker();
});
after(async () => {
  await broker?.stop();
});

describe('handshake', () => {
  it('raw: first frame is pusher:connection_established with double-encoded data', async () => {
    const c = await openRaw(broker);
    const f = c.frames[0];
    assert.equal(f.event, 'pusher:connection_established');
    assert.equal(typeof f.data, 'string', `data must be a JSON string, got ${f.raw}`);
    assert.match(f.payload.socket_id, SOCKET_ID_RE);
    assert.equal(f.payload.activity_timeout, 120);
    c.close();
  });

  it('pusher-js connects and gets a socket id of the form \\d+.\\d+', async () => {
    const client = openPusher(broker);
    const socketId = await connected(client);
    assert.match(socketId, SOCKET_ID_RE);
    client.disconnect();
  });

  it('two sockets get distinct socket ids', async () => {
    const a = await openRaw(broker);
    const b = await openRaw(broker);
    assert.notEqual(a.socketId, b.socketId);
    a.close();
    b.close();
  });

  it('accepts protocol versions 5 and 6 and ignores unknown query params', async () => {
    for (const v of [5, 6]) {
      const c = await openRaw(broker, { path: `/app/${APPS.main.key}?protocol=${v}&client=js&version=1.0&foo=bar` });
      assert.match(c.socketId, SOCKET_ID_RE);
      c.close();
    }
  });

  it('answers pusher:ping with pusher:pong', async () => {
    const c = await openRaw(broker);
    const pong = await c.ping();
    assert.equal(pong.event, 'pusher:pong');
    c.close();
  });

  it('answers a WebSocket ping frame with a pong frame', async () => {
    const c = await openRaw(broker);
    const pong = new Promise((res) => c.ws.once('pong', (data) => res(data.toString())));
    c.ws.ping('are-you-there');
    assert.equal(await withTimeout(pong, 5000, 'no pong frame'), 'are-you-there');
    c.close();
  });

  it('GET /up answers 200', async () => {
    const res = await fetch(`${broker.httpUrl}/up`);
    assert.equal(res.status, 200);
  });
});

describe('connect refusals: pusher:error N then close N', () => {
  async function expectRefused(opts, code) {
    const r = await openRefused(broker, opts);
    assert.ok(r.error, `expected a pusher:error frame before close ${code}; frames: ${JSON.stringify(r.frames.map((f) => f.raw))}`);
    assert.equal(r.error.payload.code, code, `pusher:error code; frame ${r.error.raw}`);
    assert.equal(typeof r.error.payload.message, 'string');
    assert.equal(r.close.code, code, `close code; frames ${JSON.stringify(r.frames.map((f) => f.raw))}`);
    assert.ok(!r.frames.some((f) => f.event === 'pusher:connection_established'), 'must not be established');
    return r;
  }

  it('4001 for an unknown app key', async () => {
    await expectRefused({ key: 'no-such-key' }, 4001);
  });

  it('4003 for a disabled app', async () => {
    await expectRefused({ app: APPS.disabled }, 4003);
  });

  it('4004 when the app is over its connection quota, and the slot frees on close', async () => {
    const first = await openRaw(broker, { app: APPS.quota });
    await expectRefused({ app: APPS.quota }, 4004);
    // The first socket is unaffected.
    await first.ping();
    first.close();
    await first.closedPromise;
    // Once the first socket is gone, a new one is accepted again.
    const again = await waitFor(
      async () => {
        const c = await openRaw(broker, { app: APPS.quota, handshake: false });
        const f = await c.waitFor((x) => x.event === 'pusher:connection_established' || x.event === 'pusher:error');
        if (f.event === 'pusher:connection_established') return c;
        c.terminate();
        return null;
      },
      5000,
      'a quota slot to be released after the first socket closed',
    );
    again.close();
  });

  it('4005 for a path that is not /app/{key}', async () => {
    await expectRefused({ path: `/nope/${APPS.main.key}?protocol=7` }, 4005);
  });

  it('4008 without a protocol param', async () => {
    await expectRefused({ path: `/app/${APPS.main.key}?client=js` }, 4008);
  });

  it('4006 when protocol is not an integer', async () => {
    await expectRefused({ path: `/app/${APPS.main.key}?protocol=seven&client=js&version=8.4.0` }, 4006);
  });

  it('4007 for unsupported protocol versions (4 and 8)', async () => {
    await expectRefused({ path: `/app/${APPS.main.key}?protocol=4&client=js&version=8.4.0` }, 4007);
    await expectRefused({ path: `/app/${APPS.main.key}?protocol=8&client=js&version=8.4.0` }, 4007);
  });
});

describe('node capacity ([server] max_connections = 2)', () => {
  it('the socket over the node-wide cap gets pusher:error 4100 and close 4100', async () => {
    const small = await startBroker({ server: { max_connections: 2 } });
    try {
      const a = await openRaw(small);
      const b = await openRaw(small, { app: APPS.noclient });
      const r = await openRefused(small, {});
      assert.equal(r.error?.payload?.code, 4100, `frames: ${JSON.stringify(r.frames.map((f) => f.raw))}`);
      assert.equal(r.close.code, 4100);
      await a.ping();
      await b.ping();
    } finally {
      await small.stop();
    }
  });
});

describe('slow consumer ([server] outbox_capacity = 8)', () => {
  it('a socket that stops reading is closed with 4100; publishers are not blocked', async () => {
    const slow = await startBroker({ server: { outbox_capacity: 8 } });
    try {
      const sdkSlow = serverSdk(slow);
      const c = await openRaw(slow);
      await c.subscribeOk('public-slow');
      c.ws._socket.pause(); // stop reading: the kernel buffers fill, then the broker's queue
      const data = 'z'.repeat(10000);
      const batch = Array.from({ length: 10 }, () => ({ channel: 'public-slow', name: 'big', data }));
      let dropped = false;
      for (let i = 0; i < 400 && !dropped; i++) {
        const res = await withTimeout(sdkSlow.triggerBatch(batch.map((e) => ({ ...e }))), 5000, 'a trigger blocked on a slow subscriber');
        assert.equal(res.status, 200);
        if (i % 10 === 9) {
          const info = await sdkGetJson(sdkSlow, '/channels/public-slow');
          dropped = info.occupied === false;
        }
      }
      assert.ok(dropped, 'the slow socket was never dropped after 4000 events of 10 KB');
      c.ws._socket.resume();
      const close = await c.waitClose(10000);
      assert.equal(close.code, 4100, c.describe());
    } finally {
      await slow.stop();
    }
  });
});

describe('liveness ([server] activity_timeout = 1, pong_timeout = 1)', () => {
  let quick;
  before(async () => {
    quick = await startBroker({ server: { activity_timeout: 1, pong_timeout: 1 } });
  });
  after(async () => {
    await quick?.stop();
  });

  it('connection_established carries the configured activity_timeout', async () => {
    const c = await openRaw(quick);
    assert.equal(c.frames[0].payload.activity_timeout, 1);
    c.close();
  });

  it('a socket that answers the server pings stays open', async () => {
    const c = await openRaw(quick);
    c.ws.on('message', (d) => {
      if (JSON.parse(d.toString()).event === 'pusher:ping') c.send({ event: 'pusher:pong', data: {} });
    });
    await sleep(4000); // proving that the socket is NOT closed
    assert.equal(c.closed, null, c.describe());
    await c.ping();
    c.close();
  });

  it('a silent socket that never answers pings is closed with 4201', async () => {
    const c = await openRaw(quick, { wsOptions: { autoPong: false } });
    const close = await c.waitClose(8000);
    assert.equal(close.code, 4201, c.describe());
  });
});

describe('allowed_origins', () => {
  it('refuses a foreign Origin with 4009', async () => {
    const r = await openRefused(broker, { app: APPS.origins, origin: 'https://evil.example.org' });
    assert.equal(r.error?.payload?.code, 4009, `frames: ${JSON.stringify(r.frames.map((f) => f.raw))}`);
    assert.equal(r.close.code, 4009);
  });

  it('refuses a look-alike of the wildcard domain with 4009', async () => {
    const r = await openRefused(broker, { app: APPS.origins, origin: 'https://trusted.test.evil.com' });
    assert.equal(r.close.code, 4009);
  });

  it('accepts an exactly listed origin', async () => {
    const c = await openRaw(broker, { app: APPS.origins, origin: 'https://good.example.com' });
    assert.match(c.socketId, SOCKET_ID_RE);
    c.close();
  });

  it('accepts an origin matching a *.domain wildcard', async () => {
    const c = await openRaw(broker, { app: APPS.origins, origin: 'https://app.trusted.test' });
    assert.match(c.socketId, SOCKET_ID_RE);
    c.close();
  });

  it('an app without allowed_origins accepts any origin', async () => {
    const c = await openRaw(broker, { origin: 'https://anything.example.net' });
    assert.match(c.socketId, SOCKET_ID_RE);
    c.close();
  });
});

describe('malformed frames: pusher:error 4300 and the socket stays usable', () => {
  async function expect4300(send) {
    const c = await openRaw(broker);
    const since = c.mark();
    send(c);
    const err = await c.waitEvent('pusher:error', undefined, { since });
    assert.equal(err.payload.code, 4300, `frame: ${err.raw}`);
    await c.ping();
    const ch = await c.subscribeOk('after-malformed');
    assert.equal(ch.channel, 'after-malformed');
    assert.equal(c.closed, null);
    c.close();
  }

  it('invalid JSON', async () => {
    await expect4300((c) => c.sendRaw('{this is not json'));
  });

  it('unknown pusher: event', async () => {
    await expect4300((c) => c.send({ event: 'pusher:bogus', data: {} }));
  });

  it('binary frame', async () => {
    await expect4300((c) => c.sendRaw(Buffer.from(JSON.stringify({ event: 'pusher:ping', data: {} })), { binary: true }));
  });
});
