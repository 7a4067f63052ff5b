// Presence and occupancy webhooks across nodes (docs/scaling.md, "Webhooks once per cluster"): a
// user who leaves on node A and comes back on node B within the hold (a page reload that the load
// balancer sends elsewhere) must leave a receiver that mirrors presence from webhooks with the
// truth: the last member webhook of a present user is `member_added`, and the last occupancy
// webhook of an occupied channel is `channel_occupied`. Two nodes on the shared Redis, then NATS,
// each with its own spool dir, and a real receiver verifying every request with the `pusher` SDK.
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';

import { ADAPTERS, SHARED_URLS, TIMINGS, deleteNatsHistory, requireBackbone } from '../cluster-helpers.js';
import { APPS, connected, openPusher, sleep, startBroker, subscribe, uniq, waitFor } from '../helpers.js';
import { removeDir, startReceiver, tempDir } from '../webhook-receiver.js';

const HOLD_MS = 1500;

/** The last webhook of each kind pair for `channel` (and `user`), in id order (UUIDv7: creation order). */
function lastOf(events, channel, kinds, user) {
  const mine = events
    .filter((e) => e.channel === channel && kinds.includes(e.name) && (user === undefined || e.user_id === user))
    .sort((a, b) => (a.id < b.id ? -1 : 1));
  return mine.at(-1)?.name;
}

for (const adapter of ADAPTERS) {
  describe(`webhooks across nodes over ${adapter}`, () => {
    const dirs = [];
    const nodes = [];
    let receiver;
    let prefix;

    after(async () => {
      for (const n of nodes) await n.stop().catch(() => {});
      // The shared NATS keeps the cluster's history in JetStream: remove this test's stream.
      if (adapter === 'nats' && prefix) await deleteNatsHistory(SHARED_URLS.nats, prefix).catch(() => {});
      await receiver?.close();
      for (const d of dirs) removeDir(d);
    });

    it('leaving on A and coming back on B within the hold ends with member_added and channel_occupied', async () => {
      await requireBackbone(adapter);
      receiver = await startReceiver(APPS.main);
      prefix = uniq('whx');
      const cluster =
        adapter === 'redis'
          ? { adapter, redis_url: SHARED_URLS.redis, prefix, ...TIMINGS }
          : { adapter, nats_url: SHARED_URLS.nats, prefix, ...TIMINGS };
      for (const label of ['A', 'B']) {
        const dir = tempDir();
        dirs.push(dir);
        const node = await startBroker({
          apps: [{ ...APPS.main, webhooks: [{ url: receiver.url }] }],
          tables: { cluster, webhooks: { data_dir: dir, hold_ms: HOLD_MS, batch_ms: 20 } },
        });
        node.label = label;
        nodes.push(node);
      }
      const [A, B] = nodes;
      const name = uniq('presence-reload-');
      const user = 'shopper';

      const first = openPusher(A, { presence: { user_id: user, user_info: {} } });
      await connected(first);
      await subscribe(first, name);
      await waitFor(
        () => lastOf(receiver.events, name, ['member_added', 'member_removed'], user) === 'member_added',
        5000,
        'member_added from A',
      );

      // The reload: gone from A, back on B well inside the hold.
      first.disconnect();
      const again = openPusher(B, { presence: { user_id: user, user_info: {} } });
      await connected(again);
      await subscribe(again, name);

      // Past A's hold, and past the batch window; then the mirror must say "present".
      await sleep(HOLD_MS + 1000);
      await waitFor(
        () => receiver.events.some((e) => e.channel === name),
        5000,
        'webhooks for the channel',
      );
      const describe = () => JSON.stringify(receiver.events.filter((e) => e.channel === name).map((e) => [e.id, e.name, e.user_id]));
      assert.equal(lastOf(receiver.events, name, ['member_added', 'member_removed'], user), 'member_added', describe());
      assert.equal(lastOf(receiver.events, name, ['channel_occupied', 'channel_vacated']), 'channel_occupied', describe());
      again.disconnect();
    });
  });
}
