// Apps in PostgreSQL, live on every node (issue 15, docs/apps.md), with the official clients: two
// nodes on Redis share one app database; an app created through node A's admin API is served by
// both (pusher-js on each node, the `pusher` SDK triggering through each), and disabling it closes
// the pusher-js sockets on both with 4003. The database is created for the test (psql, on
// VESTNIK_TEST_POSTGRES, the shared PostgreSQL by default) and dropped after.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { after, before, describe, it } from 'node:test';

import { requireBackbone, SHARED_URLS, TIMINGS } from '../cluster-helpers.js';
import { connected, openPusher, serverSdk, startBroker, subscribe, uniq, waitFor } from '../helpers.js';

const PG = process.env.VESTNIK_TEST_POSTGRES || 'postgres://postgres@127.0.0.1:5432';
const TOKEN = 'js-admin-token-0123456789';

function psql(sql) {
  execFileSync('psql', [`${PG}/postgres`, '-v', 'ON_ERROR_STOP=1', '-qc', sql], { stdio: 'pipe' });
}

async function admin(node, method, path, body) {
  const res = await fetch(`http://127.0.0.1:${node.port}${path}`, {
    method,
    headers: { Authorization: `Bearer ${TOKEN}`, 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, json: await res.json() };
}

describe('apps from PostgreSQL, live on two nodes', () => {
  const db = uniq('vestnik_js_apps').replace(/[^a-z0-9_]/gi, '_').toLowerCase();
  const nodes = [];

  before(async () => {
    await requireBackbone('redis');
    psql(`CREATE DATABASE ${db}`);
    const cluster = { adapter: 'redis', redis_url: SHARED_URLS.redis, prefix: uniq('apps'), ...TIMINGS };
    for (const label of ['A', 'B']) {
      const node = await startBroker({
        tables: { cluster },
        args: ['--apps-url', `${PG}/${db}`, '--admin-token', TOKEN],
      });
      node.label = label;
      nodes.push(node);
    }
  });

  after(async () => {
    for (const n of nodes) await n.stop();
    psql(`DROP DATABASE IF EXISTS ${db} WITH (FORCE)`);
  });

  it('serves a new app on both nodes, and closes its sockets with 4003 when disabled', async () => {
    const [a, b] = nodes;
    const created = await admin(a, 'POST', '/admin/apps', { key: 'js-live-key' });
    assert.equal(created.status, 201, JSON.stringify(created.json));
    const app = { id: created.json.id, key: created.json.key, secret: created.json.secret };

    // Live on each node once a signed call through it is served (docs/apps.md: within a second;
    // the Rust suite measures it). A socket opened before would get 4001, which pusher-js takes
    // as final.
    for (const node of nodes) {
      await waitFor(
        async () => (await serverSdk(node, app).get({ path: '/channels' }).catch(() => ({ status: 0 }))).status === 200,
        10000,
        `the new app served by node ${node.label}`,
      );
    }
    const clients = [];
    for (const node of nodes) {
      const c = openPusher(node, { app });
      await connected(c, 5000);
      await subscribe(c, 'orders');
      clients.push(c);
    }
    for (const node of nodes) {
      const name = `placed-${node.label}`;
      await serverSdk(node, app).trigger('orders', name, { n: 1 });
      await waitFor(
        () => clients.every((c) => c.received.some((e) => e.event === name)),
        2000,
        `${name} on both nodes' clients`,
      );
    }

    const closes = clients.map(
      (c) => new Promise((res) => c.connection.bind('error', (e) => res(e?.data?.code ?? e?.error?.data?.code))),
    );
    const disabled = await admin(b, 'POST', `/admin/apps/${app.id}/disable`);
    assert.equal(disabled.status, 200, JSON.stringify(disabled.json));
    assert.deepEqual(await Promise.all(closes), [4003, 4003]);
    for (const c of clients) c.disconnect();
  });
});
