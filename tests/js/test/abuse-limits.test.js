// Abuse limits seen by the official clients: the pusher SDK gets 429 (with Retry-After and a JSON
// error) over the app's api_rate_limit, pusher-js gets a LimitReached subscription error past
// max_channels_per_socket, and a `ws` client over ip_connection_rate gets 429 on the upgrade.
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';

import WebSocket from 'ws';

import {
  APPS,
  connected,
  expectHttpError,
  openPusher,
  serverSdk,
  signedRequest,
  startBroker,
  subscribe,
  subscribeResult,
  uniq,
  waitFor,
} from '../helpers.js';

const LIMITED = { id: '2001', key: 'limited-key', secret: 'limited-secret', api_rate_limit: 2, max_channels_per_socket: 2 };

const brokers = [];
after(async () => {
  for (const b of brokers) await b.stop();
});

/** Resolves with the HTTP answer to a WebSocket upgrade that the server refuses. */
function refusedUpgrade(url) {
  return new Promise((res, rej) => {
    const ws = new WebSocket(url);
    ws.on('open', () => {
      ws.terminate();
      rej(new Error(`the upgrade to ${url} was accepted`));
    });
    ws.on('unexpected-response', (_req, resp) => {
      let body = '';
      resp.setEncoding('utf8');
      resp.on('data', (d) => (body += d));
      resp.on('end', () => res({ status: resp.statusCode, headers: resp.headers, json: JSON.parse(body) }));
    });
    ws.on('error', (e) => {
      if (!String(e.message).includes('Unexpected server response')) rej(e);
    });
  });
}

describe('abuse limits', () => {
  it('the pusher SDK gets 429 with a JSON error over api_rate_limit, with Retry-After', async () => {
    const broker = await startBroker({ apps: [LIMITED] });
    brokers.push(broker);
    const sdk = serverSdk(broker, LIMITED);
    const outcomes = await Promise.all(
      Array.from({ length: 8 }, () =>
        sdk.trigger('limited', 'e', {}).then(
          (r) => ({ status: r.status }),
          (e) => ({ status: e.status ?? String(e), body: e.body }),
        ),
      ),
    );
    assert.ok(outcomes.every((o) => o.status === 200 || o.status === 429), JSON.stringify(outcomes));
    const refused = outcomes.filter((o) => o.status === 429);
    assert.ok(refused.length >= 1, `no 429 in a burst of 8 at 2 per second: ${JSON.stringify(outcomes)}`);
    assert.ok(outcomes.some((o) => o.status === 200), JSON.stringify(outcomes));
    for (const r of refused) assert.match(JSON.parse(r.body).error, /Too many API requests/);
    // The same through the helper that reads an SDK failure.
    const viaHelper = await waitFor(
      async () => {
        const r = await expectHttpError(() => sdk.trigger('limited', 'e', {})).catch(() => null);
        return r?.status === 429 ? r : null;
      },
      5000,
      'the SDK to be refused again',
    );
    assert.equal(viaHelper.json.code, 429);
    // Retry-After comes with it (the SDK does not expose headers; a hand-signed call does).
    const answer = await waitFor(
      async () => {
        const r = await signedRequest(broker, 'POST', `/apps/${LIMITED.id}/events`, {
          app: LIMITED,
          body: JSON.stringify({ name: 'e', channels: ['limited'], data: '{}' }),
        });
        return r.status === 429 ? r : null;
      },
      5000,
      'a 429 to a hand-signed call',
    );
    assert.ok(Number(answer.headers.get('retry-after')) >= 1, `Retry-After ${answer.headers.get('retry-after')}`);
    // The budget comes back.
    await waitFor(async () => (await sdk.trigger('limited', 'e', {})).status === 200, 5000, 'the API to accept again');
  });

  it('pusher-js gets LimitReached past max_channels_per_socket and keeps its other channels', async () => {
    const broker = await startBroker({ apps: [LIMITED] });
    brokers.push(broker);
    const client = openPusher(broker, { app: LIMITED });
    await connected(client);
    const [a, b, c] = [uniq('cap-a-'), uniq('cap-b-'), uniq('cap-c-')];
    await subscribe(client, a);
    await subscribe(client, b);
    const third = await subscribeResult(client, c);
    assert.equal(third.ok, false);
    assert.equal(third.error.type, 'LimitReached', JSON.stringify(third.error));
    assert.equal(third.error.status, 403, JSON.stringify(third.error));
    assert.equal(client.connection.state, 'connected');
    client.disconnect();
  });

  it('a client IP over ip_connection_rate gets 429 with Retry-After on the upgrade', async () => {
    const broker = await startBroker({ server: { ip_connection_rate: 2, ip_connection_window: 60 } });
    brokers.push(broker);
    const first = openPusher(broker);
    const second = openPusher(broker);
    await connected(first);
    await connected(second);
    const refused = await refusedUpgrade(broker.wsUrl(`/app/${APPS.main.key}?protocol=7&client=js&version=8.4.0`));
    assert.equal(refused.status, 429);
    assert.ok(Number(refused.headers['retry-after']) >= 1, JSON.stringify(refused.headers));
    assert.match(refused.json.error, /Too many new connections from 127\.0\.0\.1/);
    // The admitted sockets are not affected.
    assert.equal(first.connection.state, 'connected');
    first.disconnect();
    second.disconnect();
  });
});
