// HTTP API refusals: status codes with JSON bodies {"error": "...", "code": STATUS}.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import { APPS, expectHttpError, serverSdk, signedRequest, startBroker, uniq } from '../helpers.js';

let broker;
let sdk;
before(async () => {
  broker = await startBroker();
  sdk = serverSdk(broker);
});
after(async () => {
  await broker?.stop();
});

function assertJsonError(r, status) {
  const body = r.body ?? r.text;
  assert.equal(r.status, status, `status; body ${body}`);
  assert.ok(r.json, `error body must be JSON, got ${body}`);
  assert.equal(typeof r.json.error, 'string', body);
  assert.equal(r.json.code, status, body);
}

const eventsPath = `/apps/${APPS.main.id}/events`;

describe('authentication', () => {
  it('wrong secret: 401 with a JSON error', async () => {
    const bad = serverSdk(broker, { ...APPS.main, secret: 'not-the-secret' });
    assertJsonError(await expectHttpError(() => bad.trigger('public-x', 'e', {})), 401);
  });

  it('GET with a wrong secret: 401', async () => {
    const bad = serverSdk(broker, { ...APPS.main, secret: 'not-the-secret' });
    assertJsonError(await expectHttpError(() => bad.get({ path: '/channels' })), 401);
  });

  it('timestamp outside the 600 s window: 401', async () => {
    const body = JSON.stringify({ name: 'e', channels: ['public-x'], data: '{}' });
    const r = await signedRequest(broker, 'POST', eventsPath, { body, timestamp: Math.floor(Date.now() / 1000) - 1000 });
    assertJsonError(r, 401);
  });

  it('body_md5 that does not match the body: 401', async () => {
    const body = JSON.stringify({ name: 'e', channels: ['public-x'], data: '{}' });
    const r = await signedRequest(broker, 'POST', eventsPath, { body, bodyMd5: '0'.repeat(32) });
    assertJsonError(r, 401);
  });

  it('a missing auth_signature: 401', async () => {
    const body = JSON.stringify({ name: 'e', channels: ['public-x'], data: '{}' });
    const r = await signedRequest(broker, 'POST', eventsPath, {
      body,
      tamper: (q) => q.replace(/&auth_signature=[0-9a-f]+/, ''),
    });
    assertJsonError(r, 401);
  });

  it('a query param added after signing: 401', async () => {
    const r = await signedRequest(broker, 'GET', `/apps/${APPS.main.id}/channels`, {
      tamper: (q) => `${q}&filter_by_prefix=presence-`,
    });
    assertJsonError(r, 401);
  });

  it('the body_md5 is over the raw bytes (Python SDK style JSON with spaces)', async () => {
    const body = '{"name": "e", "channels": ["public-x"], "data": "{\\"a\\": 1}"}';
    const r = await signedRequest(broker, 'POST', eventsPath, { body });
    assert.equal(r.status, 200, r.text);
  });

  it('a correctly signed hand-built request is accepted (control)', async () => {
    const body = JSON.stringify({ name: 'e', channels: ['public-x'], data: '{}' });
    const r = await signedRequest(broker, 'POST', eventsPath, { body });
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(r.json, {});
  });
});

describe('apps', () => {
  it('unknown app (id and key): 404', async () => {
    const ghost = serverSdk(broker, { id: '9999', key: 'ghost-key', secret: 'ghost-secret' });
    assertJsonError(await expectHttpError(() => ghost.trigger('public-x', 'e', {})), 404);
  });

  it('unknown app id in the path with a valid key: 404', async () => {
    const wrongPath = serverSdk(broker, { ...APPS.main, id: '9999' });
    assertJsonError(await expectHttpError(() => wrongPath.trigger('public-x', 'e', {})), 404);
  });

  it("another app's id in the path with this app's key is refused", async () => {
    const crossed = serverSdk(broker, { ...APPS.main, id: APPS.noclient.id });
    const r = await expectHttpError(() => crossed.trigger('public-x', 'e', {}));
    assert.ok([401, 403, 404].includes(r.status), `status ${r.status} body ${r.body}`);
  });

  it('disabled app: 403', async () => {
    const off = serverSdk(broker, APPS.disabled);
    assertJsonError(await expectHttpError(() => off.trigger('public-x', 'e', {})), 403);
  });
});

describe('POST /events validation', () => {
  it('data over 10 KB: 413', async () => {
    assertJsonError(await expectHttpError(() => sdk.trigger('public-x', 'big', 'x'.repeat(10241))), 413);
  });

  it('data of exactly 10 KB is accepted', async () => {
    const res = await sdk.trigger('public-x', 'edge', 'x'.repeat(10240));
    assert.equal(res.status, 200);
  });

  it('more than 100 channels: 400', async () => {
    const channels = Array.from({ length: 101 }, (_, i) => `public-many-${i}`);
    assertJsonError(
      await expectHttpError(() => sdk.post({ path: '/events', body: { name: 'e', data: '{}', channels } })),
      400,
    );
  });

  it('exactly 100 channels is accepted', async () => {
    const channels = Array.from({ length: 100 }, (_, i) => `public-many-${i}`);
    const res = await sdk.post({ path: '/events', body: { name: 'e', data: '{}', channels } });
    assert.equal(res.status, 200);
  });

  it('an invalid channel name: 400', async () => {
    assertJsonError(
      await expectHttpError(() => sdk.post({ path: '/events', body: { name: 'e', data: '{}', channels: ['bad channel!'] } })),
      400,
    );
  });

  it('a missing name: 400', async () => {
    assertJsonError(
      await expectHttpError(() => sdk.post({ path: '/events', body: { data: '{}', channels: ['public-x'] } })),
      400,
    );
  });

  it('malformed JSON body (correctly signed): 400', async () => {
    const r = await signedRequest(broker, 'POST', eventsPath, { body: '{"name": "e", "channels": [' });
    assertJsonError(r, 400);
  });

  it('the single-channel form {"channel": ...} (PHP SDK) is accepted', async () => {
    const body = JSON.stringify({ name: 'e', channel: uniq('public-single-'), data: '{}' });
    const r = await signedRequest(broker, 'POST', eventsPath, { body });
    assert.equal(r.status, 200, r.text);
  });
});

describe('POST /batch_events validation', () => {
  const batchOf = (n) => Array.from({ length: n }, (_, i) => ({ channel: `public-batch-${i}`, name: 'e', data: '{}' }));

  it('more than 10 events: 400', async () => {
    assertJsonError(await expectHttpError(() => sdk.triggerBatch(batchOf(11))), 400);
  });

  it('exactly 10 events is accepted', async () => {
    const res = await sdk.triggerBatch(batchOf(10));
    assert.equal(res.status, 200);
  });

  it('an item with data over 10 KB: 413', async () => {
    const batch = batchOf(2);
    batch[1].data = 'y'.repeat(10241);
    assertJsonError(await expectHttpError(() => sdk.triggerBatch(batch)), 413);
  });

  it('an item with an invalid channel: 400', async () => {
    const batch = batchOf(2);
    batch[0].channel = 'bad channel!';
    assertJsonError(await expectHttpError(() => sdk.triggerBatch(batch)), 400);
  });
});

describe('channel queries', () => {
  it('an invalid channel name in GET /channels/{name}: 400', async () => {
    // '!' and '*' need no percent-encoding in a path, so the signed path is unambiguous.
    const r = await signedRequest(broker, 'GET', `/apps/${APPS.main.id}/channels/bad!channel*`);
    assertJsonError(r, 400);
  });
});
