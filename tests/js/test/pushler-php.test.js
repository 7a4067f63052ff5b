// The PHP client (clients/php, PushlerRu\PushlerClient) against the real broker: trigger by key (the
// constructor has no app id) and by id, several channels, socket_id exclusion, triggerBatch,
// authorizeChannel / authorizePresenceChannel signatures accepted by the broker, getChannels,
// getChannelInfo, getPresenceUsers, getChannelHistory, terminateUserConnections, the broker's JSON errors as
// ApiException, and webhook verification of the broker's real webhooks in a PHP receiver.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';

import { APPS, openRaw, serverSdk, startBroker, uniq, waitFor } from '../helpers.js';
import { postForm, runPhpClient, startPhp } from '../pushler-helpers.js';
import { removeDir, startWebhookBroker, tempDir } from '../webhook-receiver.js';

let broker;
let php;

before(async () => {
  broker = await startBroker();
});
after(async () => {
  await php?.stop();
  await broker?.stop();
});

const client = (app = APPS.main, options = {}) => ({
  key: app.key,
  secret: app.secret,
  options: { host: '127.0.0.1', port: broker.port, scheme: 'http', ...options },
});
const call = (method, args, c = client()) => runPhpClient(c, method, args);

async function subscriber(channel) {
  const raw = await openRaw(broker);
  await raw.subscribeOk(channel);
  return raw;
}

describe('trigger', () => {
  test('by key (no app_id): one channel, the PHP array arrives as JSON with numbers and unescaped text', async () => {
    const channel = uniq('orders-');
    const raw = await subscriber(channel);
    const r = await call('trigger', [channel, 'order:status', { order_id: 12345, text: 'Подтверждён', ok: true }]);
    assert.deepEqual(r, { result: [] });
    const f = await raw.waitEvent('order:status', channel);
    assert.equal(f.data, '{"order_id":12345,"text":"Подтверждён","ok":true}');
  });

  test('with app_id, to several channels at once', async () => {
    const [a, b] = [uniq('news-'), uniq('news-')];
    const ra = await subscriber(a);
    const rb = await subscriber(b);
    const r = await call('trigger', [[a, b], 'article.published', { id: 1 }], client(APPS.main, { app_id: APPS.main.id }));
    assert.deepEqual(r, { result: [] });
    await ra.waitEvent('article.published', a);
    await rb.waitEvent('article.published', b);
  });

  test('a socket id as the 4th argument excludes that connection', async () => {
    const channel = uniq('chat-');
    const sender = await subscriber(channel);
    const other = await subscriber(channel);
    await call('trigger', [channel, 'new-message', { n: 1 }, sender.socketId]);
    await other.waitEvent('new-message', channel);
    // Ordering marker: a second event to everyone reaches the sender, the first never did.
    await call('trigger', [channel, 'marker', {}]);
    await sender.waitEvent('marker', channel);
    assert.equal(sender.find((f) => f.event === 'new-message').length, 0);
  });

  test('triggerBatch sends every item, named by name or event', async () => {
    const [a, b] = [uniq('batch-'), uniq('batch-')];
    const ra = await subscriber(a);
    const rb = await subscriber(b);
    const r = await call('triggerBatch', [[
      { channel: a, name: 'one', data: { i: 1 } },
      { channel: b, event: 'two', data: 'plain' },
    ]]);
    assert.deepEqual(r, { result: [] });
    assert.equal((await ra.waitEvent('one', a)).data, '{"i":1}');
    assert.equal((await rb.waitEvent('two', b)).data, 'plain');
  });
});

describe('authorization accepted by the broker', () => {
  test('authorizeChannel signs a private subscription the broker accepts; a wrong secret is refused', async () => {
    const raw = await openRaw(broker);
    const channel = uniq('private-user-');
    const good = (await call('authorizeChannel', [channel, raw.socketId])).result;
    assert.deepEqual(Object.keys(good), ['auth']);
    assert.equal((await raw.subscribe(channel, { auth: good.auth })).event, 'pusher_internal:subscription_succeeded');
    const bad = (await call('authorizeChannel', [uniq('private-x-'), raw.socketId], client({ ...APPS.main, secret: 'wrong' }))).result;
    const f = await raw.subscribe(uniq('private-x-'), { auth: bad.auth });
    assert.equal(f.event, 'pusher:subscription_error');
  });

  test('authorizePresenceChannel: the member appears in getPresenceUsers, getChannels and getChannelInfo', async () => {
    const channel = uniq('presence-room-');
    const raw = await openRaw(broker);
    const auth = (await call('authorizePresenceChannel', [channel, raw.socketId, 42, { name: 'Анна' }])).result;
    const ok = await raw.subscribe(channel, { auth: auth.auth, channel_data: auth.channel_data });
    assert.equal(ok.event, 'pusher_internal:subscription_succeeded');
    assert.deepEqual(ok.payload.presence.hash, { 42: { name: 'Анна' } });

    assert.deepEqual((await call('getPresenceUsers', [channel])).result, [{ id: '42' }]);
    const list = (await call('getChannels', [{ filter_by_prefix: channel, info: 'user_count' }])).result;
    assert.deepEqual(list, { channels: { [channel]: { user_count: 1 } } });
    const info = (await call('getChannelInfo', [channel, { info: 'user_count' }])).result;
    assert.deepEqual(info, { occupied: true, user_count: 1 });
    const empty = (await call('getChannelInfo', [uniq('nobody-')])).result;
    assert.equal(empty.occupied, false);
  });

  test('getChannels and getChannelInfo with info as an array: signed and sent the same way', async () => {
    const channel = uniq('presence-arr-');
    const raw = await openRaw(broker);
    const auth = (await call('authorizePresenceChannel', [channel, raw.socketId, 'arr-1'])).result;
    await raw.subscribeOk(channel, { auth: auth.auth, channel_data: auth.channel_data });
    const list = await call('getChannels', [{ filter_by_prefix: channel, info: ['user_count'] }]);
    assert.deepEqual(list, { result: { channels: { [channel]: { user_count: 1 } } } });
    const info = await call('getChannelInfo', [channel, { info: ['user_count', 'subscription_count'] }]);
    assert.deepEqual(info, { result: { occupied: true, user_count: 1, subscription_count: 1 } });
  });

  test('channel names with reserved characters and #server-to-user- are percent-encoded in paths', async () => {
    const odd = uniq('room@a=b,c;d.e-');
    const pub = await subscriber(odd);
    const info = await call('getChannelInfo', [odd, { info: 'subscription_count' }]);
    assert.deepEqual(info, { result: { occupied: true, subscription_count: 1 } });

    const presence = uniq('presence-x@y=z;');
    const auth = (await call('authorizePresenceChannel', [presence, pub.socketId, 'odd-1'])).result;
    await pub.subscribeOk(presence, { auth: auth.auth, channel_data: auth.channel_data });
    assert.deepEqual((await call('getPresenceUsers', [presence])).result, [{ id: 'odd-1' }]);

    const user = uniq('php-s2u-');
    const raw = await openRaw(broker);
    await raw.signin(serverSdk(broker), { id: user });
    await raw.subscribeOk(`#server-to-user-${user}`);
    const s2u = await call('getChannelInfo', [`#server-to-user-${user}`]);
    assert.deepEqual(s2u, { result: { occupied: true } });
  });

  test('terminateUserConnections closes a signed-in user\'s socket', async () => {
    const raw = await openRaw(broker);
    await raw.signin(serverSdk(broker), { id: 'php-user-1' });
    assert.deepEqual((await call('terminateUserConnections', ['php-user-1'])).result, []);
    assert.equal((await raw.waitClose()).code, 4009);
  });
});

describe('history', () => {
  test('getChannelHistory pages a channel\'s events oldest first; a lost position is ApiException 409', async () => {
    const channel = uniq('orders-');
    for (let step = 1; step <= 3; step++) await call('trigger', [channel, 'status', { step }]);
    const first = (await call('getChannelHistory', [channel, { limit: 2 }])).result;
    assert.deepEqual(first.events.map((e) => [e.offset, e.event, JSON.parse(e.data).step]), [[1, 'status', 1], [2, 'status', 2]]);
    assert.deepEqual([first.first_offset, first.last_offset, first.next_after, first.has_more], [1, 3, 2, true]);
    assert.match(first.epoch, /^[0-9a-f]{12}$/);
    const next = (await call('getChannelHistory', [channel, { epoch: first.epoch, after: first.next_after }])).result;
    assert.deepEqual(next.events.map((e) => e.offset), [3]);
    assert.equal(next.has_more, false);

    const lost = await call('getChannelHistory', [channel, { epoch: 'feedfeedfeed', after: 1 }]);
    assert.equal(lost.exception, 'PushlerRu\\ApiException');
    assert.equal(lost.status, 409);
    assert.match(lost.error, /epoch/);
  });
});

describe('errors', () => {
  test('the broker\'s JSON error arrives as ApiException with status and message', async () => {
    const big = await call('trigger', [uniq('big-'), 'e', 'x'.repeat(20000)]);
    assert.equal(big.exception, 'PushlerRu\\ApiException');
    assert.equal(big.status, 413);
    assert.match(big.error, /10240|too large|over/i);

    const unknown = await call('trigger', ['c', 'e', {}], client({ key: 'nope', secret: 's' }));
    assert.equal(unknown.status, 404);
    assert.match(unknown.error, /nope/);

    const badSecret = await call('trigger', ['c', 'e', {}], client({ ...APPS.main, secret: 'wrong' }));
    assert.equal(badSecret.status, 401);

    const disabled = await call('trigger', ['c', 'e', {}], client(APPS.disabled));
    assert.equal(disabled.status, 403);

    const many = Array.from({ length: 101 }, (_, i) => `c${i}`);
    const tooMany = await call('trigger', [many, 'e', {}]);
    assert.equal(tooMany.status, 400);
    assert.ok(tooMany.error.length > 0);
  });

  test('invalid names are refused before anything is sent; an unreachable broker is PushlerException', async () => {
    const bad = await call('trigger', ['bad channel', 'e', {}]);
    assert.equal(bad.exception, 'InvalidArgumentException');
    for (const name of ['#orders', 'a#b', 'x'.repeat(201)]) {
      const refused = await call('getChannelInfo', [name]);
      assert.equal(refused.exception, 'InvalidArgumentException', name);
    }
    const down = await call('getChannels', [], client(APPS.main, { port: 9, timeout: 2 }));
    assert.equal(down.exception, 'PushlerRu\\PushlerException');
    assert.match(down.message, /failed/);
  });
});

describe('webhooks', () => {
  test('verifyWebhook accepts the broker\'s signed webhooks in a PHP receiver and refuses a forged one', async () => {
    const app = { id: '3001', key: 'wh-php-key', secret: 'wh-php-secret' };
    const dataDir = tempDir();
    // The receiver runs first: the broker's config needs its URL.
    php = await startPhp(broker, app, { env: { WEBHOOK_LOG: `${dataDir}/webhooks.jsonl` } });
    const whBroker = await startWebhookBroker({
      apps: [{ ...app, webhooks: [{ url: `${php.url}/pushler_webhook.php` }] }],
      webhooks: { data_dir: dataDir, batch_ms: 0, hold_ms: 0 },
    });
    try {
      const channel = uniq('wh-');
      const raw = await openRaw(whBroker, { app });
      await raw.subscribeOk(channel);
      const log = () => {
        try {
          return readFileSync(`${dataDir}/webhooks.jsonl`, 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l));
        } catch {
          return [];
        }
      };
      const entry = await waitFor(
        () => log().find((e) => e.valid && e.events.some((ev) => ev.name === 'channel_occupied' && ev.channel === channel)),
        10000,
        'a verified channel_occupied webhook',
        () => JSON.stringify(log()) + php.log.slice(-2000),
      );
      assert.equal(typeof entry.time_ms, 'number');

      const forged = await fetch(`${php.url}/pushler_webhook.php`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-pusher-key': app.key, 'x-pusher-signature': '0'.repeat(64) },
        body: JSON.stringify({ time_ms: Date.now(), events: [{ name: 'channel_occupied', channel: 'forged' }] }),
      });
      assert.equal(forged.status, 401);
      assert.ok(log().some((e) => !e.valid && /signature/.test(e.error)));
    } finally {
      await whBroker.stop();
      removeDir(dataDir);
    }
  });

  test('an empty form POST is not a webhook: the PHP receiver answers 401', async () => {
    const r = await postForm(`${php.url}/pushler_webhook.php`, {});
    assert.equal(r.status, 401);
  });
});
