// Several nodes as one broker (docs/scaling.md): three broker processes joined through Redis or NATS,
// pusher-js / raw clients on different nodes, the `pusher` SDK pointed at one node. Every case runs on
// both adapters, each on a fresh cluster with a random `[cluster] prefix` and short timings
// (cluster-helpers.js). The shared Redis (127.0.0.1:6379) and NATS (127.0.0.1:4222) must be running:
// a case that cannot reach them fails with how to start them. The backbone-restart case starts its
// own redis-server / nats-server on a free port and restarts that one.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import {
  ADAPTERS,
  TIMINGS,
  startBackbone,
  withCluster,
} from '../cluster-helpers.js';
import {
  APPS,
  connected,
  openPusher,
  openRaw,
  pusherJsErrorCode,
  sdkGetJson,
  serverSdk,
  sleep,
  subscribe,
  uniq,
  waitFor,
} from '../helpers.js';

/** How long a test waits to prove that something does NOT arrive (a duplicate, an echo). */
const QUIET_MS = 300;

const events = (client, channel, event) => client.received.filter((e) => e.channel === channel && e.event === event);
const count = (client, channel, event) => events(client, channel, event).length;
const lastReceived = (client, n = 8) => JSON.stringify(client.received.slice(-n));

/** A connected pusher-js client on `node`, labelled for failure messages. */
async function pjs(node, opts = {}, label = node.label) {
  const c = openPusher(node, opts);
  c.label = label;
  await connected(c);
  return c;
}

/** Waits until every client has received `event` on `channel` at least once. */
async function allReceive(clients, channel, event, timeoutMs = 5000) {
  await waitFor(
    () => clients.every((c) => count(c, channel, event) >= 1),
    timeoutMs,
    `${event} on ${channel} at every client`,
    () => clients.map((c) => `${c.label}: ${count(c, channel, event)} × ${event}; last: ${lastReceived(c, 4)}`).join('\n  '),
  );
}

/** The sorted user ids `/channels/{name}/users` lists on `node`. */
async function usersOn(node, name, app = APPS.main) {
  const body = await sdkGetJson(serverSdk(node, app), `/channels/${name}/users`);
  return body.users.map((u) => u.id).sort();
}

/** Waits until `/channels/{name}/users` on every node lists exactly `ids`. */
async function rosterEverywhere(nodes, name, ids, { app = APPS.main, timeoutMs = 5000 } = {}) {
  const want = [...ids].sort();
  const seen = {};
  await waitFor(
    async () => {
      for (const n of nodes) {
        seen[n.label] = await usersOn(n, name, app);
        if (JSON.stringify(seen[n.label]) !== JSON.stringify(want)) return false;
      }
      return true;
    },
    timeoutMs,
    `/channels/${name}/users = ${JSON.stringify(want)} on ${nodes.map((n) => n.label).join(', ')}`,
    () => `last answers: ${JSON.stringify(seen)}`,
  );
}

/** The members of a pusher-js presence channel as `{id: info}`. */
function membersOf(channel) {
  const out = {};
  channel.members.each((m) => {
    out[m.id] = m.info;
  });
  return out;
}

/** pusher-js client on `node` signed in as `id`, with #server-to-user-{id} subscribed. */
async function signedIn(node, id, label = node.label) {
  const client = openPusher(node, { user: { id } });
  client.label = label;
  client.signin();
  await connected(client);
  await waitFor(
    () => client.user.user_data?.id === id && client.user.serverToUserChannel?.subscribed,
    5000,
    `sign-in of ${id} on ${label}`,
    () => `received=${lastReceived(client)} errors=${JSON.stringify(client.errors)}`,
  );
  return client;
}

for (const adapter of ADAPTERS) {
  describe(`cluster over ${adapter}`, () => {
    it('a trigger on any node reaches subscribers on A, B and C exactly once each', async () => {
      await withCluster(adapter, {}, async ({ nodes: [A, B, C] }) => {
        const name = uniq('fanout-');
        const clients = [await pjs(A), await pjs(B, {}, 'B1'), await pjs(B, {}, 'B2'), await pjs(C)];
        for (const c of clients) await subscribe(c, name);

        await serverSdk(A).trigger(name, 'from-a', { n: 1 });
        await allReceive(clients, name, 'from-a');
        await serverSdk(B).trigger(name, 'from-b', { n: 2 });
        await serverSdk(C).trigger(name, 'from-c', { n: 3 });
        await allReceive(clients, name, 'from-b');
        await allReceive(clients, name, 'from-c');

        await sleep(QUIET_MS); // a duplicate would arrive within this
        for (const c of clients) {
          for (const [ev, n] of [['from-a', 1], ['from-b', 2], ['from-c', 3]]) {
            const got = events(c, name, ev);
            assert.equal(got.length, 1, `${c.label} got ${got.length} × ${ev}: ${lastReceived(c)}`);
            assert.deepEqual(got[0].data, { n });
          }
        }
        for (const c of clients) c.disconnect();
      });
    });

    it('socket_id exclusion holds across nodes (excluded socket on B, trigger via A)', async () => {
      await withCluster(adapter, {}, async ({ nodes: [A, B, C] }) => {
        const name = uniq('exclude-');
        const excluded = await pjs(B, {}, 'B-excluded');
        const others = [await pjs(A), await pjs(B, {}, 'B-other'), await pjs(C)];
        for (const c of [excluded, ...others]) await subscribe(c, name);

        const sdkA = serverSdk(A);
        const res = await sdkA.trigger(name, 'not-for-you', { x: 1 }, { socket_id: excluded.connection.socket_id });
        assert.equal(res.status, 200);
        await allReceive(others, name, 'not-for-you');
        // Ordering marker: relayed after the excluded event, over the same path.
        await sdkA.trigger(name, 'marker', {});
        await allReceive([excluded, ...others], name, 'marker');
        await sleep(QUIET_MS);
        assert.equal(count(excluded, name, 'not-for-you'), 0, `the excluded socket got the event: ${lastReceived(excluded)}`);
        for (const c of others) assert.equal(count(c, name, 'not-for-you'), 1, `${c.label}: ${lastReceived(c)}`);
        for (const c of [excluded, ...others]) c.disconnect();
      });
    });

    it('client events cross nodes once and are never echoed (private and presence)', async () => {
      await withCluster(adapter, {}, async ({ nodes }) => {
        const [A] = nodes;
        const priv = uniq('private-chat-');
        const pres = uniq('presence-chat-');
        const clients = [];
        for (const n of nodes) {
          const c = await pjs(n, { presence: { user_id: `user-${n.label}`, user_info: { node: n.label } } });
          await subscribe(c, priv);
          await subscribe(c, pres);
          clients.push(c);
        }
        // Every client sends one client event on each channel (authorized by the SDK's authorizeChannel).
        for (const c of clients) {
          assert.ok(c.channel(priv).trigger('client-said', { from: c.label }), `trigger refused at ${c.label}`);
          assert.ok(c.channel(pres).trigger('client-said', { from: c.label }), `trigger refused at ${c.label}`);
        }
        const expectFrom = (c) => clients.filter((o) => o !== c).map((o) => o.label).sort();
        const fromSet = (c, ch) => events(c, ch, 'client-said').map((e) => e.data.from).sort();
        for (const ch of [priv, pres]) {
          await waitFor(
            () => clients.every((c) => fromSet(c, ch).length >= 2),
            5000,
            `client-said from the two other nodes on ${ch}`,
            () => clients.map((c) => `${c.label}: ${JSON.stringify(fromSet(c, ch))}`).join('; '),
          );
        }
        // Markers (server events through A) arrive after anything the senders could have echoed.
        await serverSdk(A).trigger([priv, pres], 'marker', {});
        await allReceive(clients, priv, 'marker');
        await allReceive(clients, pres, 'marker');
        await sleep(QUIET_MS);
        for (const c of clients) {
          for (const ch of [priv, pres]) {
            assert.deepEqual(fromSet(c, ch), expectFrom(c), `${c.label} on ${ch} (no echo, no duplicate): ${lastReceived(c)}`);
          }
          // On presence channels the relayed client event carries the sender's user_id.
          for (const e of events(c, pres, 'client-said')) {
            assert.equal(e.user_id, `user-${e.data.from}`, `user_id of a relayed client event: ${JSON.stringify(e)}`);
          }
        }
        for (const c of clients) c.disconnect();
      });
    });

    describe('presence across nodes', () => {
      it('subscription_succeeded lists the members of every node (members.count, members.each)', async () => {
        await withCluster(adapter, {}, async ({ nodes }) => {
          const [A, B, C] = nodes;
          const name = uniq('presence-roster-');
          const info = (l) => ({ name: `User ${l}`, node: l });
          const a = await pjs(A, { presence: { user_id: 'ua', user_info: info('A') } });
          const chA = await subscribe(a, name);
          assert.equal(chA.members.count, 1);
          await rosterEverywhere(nodes, name, ['ua']);

          const b = await pjs(B, { presence: { user_id: 'ub', user_info: info('B') } });
          const chB = await subscribe(b, name);
          assert.equal(chB.members.count, 2, `B's roster: ${JSON.stringify(membersOf(chB))}`);
          assert.deepEqual(membersOf(chB), { ua: info('A'), ub: info('B') });
          await rosterEverywhere(nodes, name, ['ua', 'ub']);

          const c = await pjs(C, { presence: { user_id: 'uc', user_info: info('C') } });
          const chC = await subscribe(c, name);
          assert.equal(chC.members.count, 3, `C's roster: ${JSON.stringify(membersOf(chC))}`);
          assert.deepEqual(chC.members.me, { id: 'uc', info: info('C') });
          assert.deepEqual(membersOf(chC), { ua: info('A'), ub: info('B'), uc: info('C') });

          // The earlier members learn of the later ones through member_added from other nodes.
          await waitFor(() => chA.members.count === 3 && chB.members.count === 3, 5000, 'member_added at A and B', () =>
            `A: ${JSON.stringify(membersOf(chA))} B: ${JSON.stringify(membersOf(chB))}`,
          );
          assert.deepEqual(membersOf(chA), { ua: info('A'), ub: info('B'), uc: info('C') });
          assert.deepEqual(membersOf(chB), { ua: info('A'), ub: info('B'), uc: info('C') });
          for (const x of [a, b, c]) x.disconnect();
        });
      });

      it('member_added once per user across nodes; member_removed only after its last socket anywhere', async () => {
        await withCluster(adapter, {}, async ({ nodes }) => {
          const [A, B, C] = nodes;
          const name = uniq('presence-once-');
          const watchers = [];
          for (const n of nodes) {
            const w = await pjs(n, { presence: { user_id: `watch-${n.label}`, user_info: {} } }, `watcher-${n.label}`);
            w.presenceChannel = await subscribe(w, name);
            watchers.push(w);
          }
          await waitFor(() => watchers.every((w) => w.presenceChannel.members.count === 3), 5000, 'three watchers everywhere', () =>
            watchers.map((w) => `${w.label}: ${JSON.stringify(membersOf(w.presenceChannel))}`).join('; '),
          );
          const dupAdded = (w) =>
            events(w, name, 'pusher_internal:member_added').filter((e) => e.data.user_id === 'dup').length;
          const dupRemoved = (w) =>
            events(w, name, 'pusher_internal:member_removed').filter((e) => e.data.user_id === 'dup').length;
          const describeWatchers = () =>
            watchers.map((w) => `${w.label}: added ${dupAdded(w)} removed ${dupRemoved(w)}; last: ${lastReceived(w, 5)}`).join('\n  ');

          // The user's first socket, on B.
          const dup1 = await pjs(B, { presence: { user_id: 'dup', user_info: { tab: 1 } } }, 'dup@B');
          await subscribe(dup1, name);
          await waitFor(() => watchers.every((w) => dupAdded(w) === 1), 5000, 'member_added dup at every watcher', describeWatchers);

          // Its second socket, on C: already a member, so no member_added anywhere.
          const dup2 = await pjs(C, { presence: { user_id: 'dup', user_info: { tab: 2 } } }, 'dup@C');
          const ch2 = await subscribe(dup2, name);
          assert.equal(ch2.members.count, 4, `roster at dup@C counts users: ${JSON.stringify(membersOf(ch2))}`);
          await serverSdk(C).trigger(name, 'marker-1', {});
          await allReceive(watchers, name, 'marker-1');
          await sleep(QUIET_MS);
          for (const w of watchers) assert.equal(dupAdded(w), 1, `duplicate member_added for dup:\n  ${describeWatchers()}`);

          // The first socket (B) goes: the user still has a socket on C.
          dup1.disconnect();
          await sleep(QUIET_MS); // time for B to process the close and tell the others
          await serverSdk(B).trigger(name, 'marker-2', {});
          await allReceive(watchers, name, 'marker-2');
          await sleep(QUIET_MS);
          for (const w of watchers) {
            assert.equal(dupRemoved(w), 0, `member_removed while dup still has a socket on C:\n  ${describeWatchers()}`);
          }
          for (const n of nodes) {
            assert.deepEqual(await usersOn(n, name), ['dup', 'watch-A', 'watch-B', 'watch-C'], `/users on ${n.label}`);
            const info = await sdkGetJson(serverSdk(n), `/channels/${name}`, { info: 'user_count' });
            assert.equal(info.user_count, 4, `user_count on ${n.label}: ${JSON.stringify(info)}`);
          }

          // The last socket (C) goes: member_removed once at every watcher.
          dup2.disconnect();
          await waitFor(() => watchers.every((w) => dupRemoved(w) === 1), 5000, 'member_removed dup at every watcher', describeWatchers);
          await sleep(QUIET_MS);
          for (const w of watchers) {
            assert.equal(dupRemoved(w), 1, `duplicate member_removed:\n  ${describeWatchers()}`);
            assert.equal(w.presenceChannel.members.count, 3);
          }
          await rosterEverywhere(nodes, name, ['watch-A', 'watch-B', 'watch-C']);
          for (const w of watchers) w.disconnect();
        });
      });

      it('max_presence_members counts the whole cluster (app small: 2 members)', async () => {
        await withCluster(adapter, {}, async ({ nodes }) => {
          const [A, B, C] = nodes;
          const app = APPS.small;
          const name = uniq('presence-limit-');
          const sdk = serverSdk(A, app);
          const open = (n) => openRaw(n, { app });
          const ok = 'pusher_internal:subscription_succeeded';

          const a = await open(A);
          const b = await open(B);
          assert.equal((await a.subscribeSigned(sdk, name, { user_id: 'a' })).event, ok);
          assert.equal((await b.subscribeSigned(sdk, name, { user_id: 'b' })).event, ok);
          await rosterEverywhere(nodes, name, ['a', 'b'], { app });

          for (const n of nodes) {
            const c = await open(n);
            const refused = await c.subscribeSigned(sdk, name, { user_id: `c-${n.label}` });
            assert.equal(refused.event, 'pusher:subscription_error', `a third member on ${n.label}: ${refused.raw}`);
            assert.equal(refused.payload.type, 'LimitReached', refused.raw);
            await c.ping();
            c.close();
          }
          // Another socket of an existing member is not a new member, on any node.
          const a2 = await open(C);
          const again = await a2.subscribeSigned(sdk, name, { user_id: 'a' });
          assert.equal(again.event, ok, again.raw);
          assert.equal(again.payload.presence.count, 2, again.raw);
          assert.deepEqual([...again.payload.presence.ids].sort(), ['a', 'b']);
          // The refused users never became members.
          await rosterEverywhere(nodes, name, ['a', 'b'], { app });
          for (const x of [a, b]) {
            const added = x.find((f) => f.event === 'pusher_internal:member_added').map((f) => f.payload.user_id);
            assert.ok(added.every((u) => u === 'a' || u === 'b'), `member_added for a refused user: ${added}`);
          }
          // A place frees up cluster-wide when a member leaves its node.
          b.close();
          await rosterEverywhere(nodes, name, ['a'], { app });
          const d = await open(C);
          assert.equal((await d.subscribeSigned(sdk, name, { user_id: 'd' })).event, ok);
          for (const x of [a, a2, d]) x.close();
        });
      });
    });

    it('channel info answers the same on A, B and C (subscriptions spread across nodes)', async () => {
      await withCluster(adapter, {}, async ({ nodes }) => {
        const [A, B, C] = nodes;
        const pub = uniq('public-info-');
        const pres = uniq('presence-info-');
        const sdkA = serverSdk(A);
        // public: 1 socket on A, 2 on B, none on C.
        const pa = await openRaw(A);
        const pb1 = await openRaw(B);
        const pb2 = await openRaw(B);
        for (const c of [pa, pb1, pb2]) await c.subscribeOk(pub);
        // presence: p1 on A and again on C, p2 on B: 3 subscriptions, 2 users.
        const m1a = await openRaw(A);
        const m2b = await openRaw(B);
        const m1c = await openRaw(C);
        await m1a.subscribeSigned(sdkA, pres, { user_id: 'p1' });
        await m2b.subscribeSigned(sdkA, pres, { user_id: 'p2' });
        await m1c.subscribeSigned(sdkA, pres, { user_id: 'p1' });

        const expectAll = async (what, path, params, want, normalize = (x) => x) => {
          const got = {};
          await waitFor(
            async () => {
              for (const n of nodes) {
                got[n.label] = await sdkGetJson(serverSdk(n), path, params);
                if (!isDeepEqual(normalize(got[n.label]), want)) return false;
              }
              return true;
            },
            5000,
            `${what} on A, B and C = ${JSON.stringify(want)}`,
            () => `answers: ${JSON.stringify(got)}`,
          );
        };
        const check = async (subs, users) => {
          await expectAll('GET /channels', '/channels', {}, { channels: { [pub]: {}, [pres]: {} } });
          await expectAll('GET /channels?info=subscription_count', '/channels', { info: 'subscription_count' }, {
            channels: { [pub]: { subscription_count: subs.pub }, [pres]: { subscription_count: subs.pres } },
          });
          await expectAll('GET /channels presence- user_count', '/channels', { filter_by_prefix: 'presence-', info: 'user_count' }, {
            channels: { [pres]: { user_count: users.length } },
          });
          await expectAll(`GET /channels/${pres}`, `/channels/${pres}`, { info: 'subscription_count,user_count' }, {
            occupied: true,
            subscription_count: subs.pres,
            user_count: users.length,
          });
          await expectAll(`GET /channels/${pub}`, `/channels/${pub}`, { info: 'subscription_count' }, {
            occupied: true,
            subscription_count: subs.pub,
          });
          // The API does not define the order of `users`; compare the sets.
          await expectAll(`GET /channels/${pres}/users`, `/channels/${pres}/users`, undefined, {
            users: users.map((id) => ({ id })),
          }, (body) => ({ ...body, users: [...body.users].sort((x, y) => (x.id < y.id ? -1 : 1)) }));
        };
        await check({ pub: 3, pres: 3 }, ['p1', 'p2']);

        // Sockets leave on B and A: every node reflects it.
        pb2.close();
        m2b.close();
        m1a.close();
        await check({ pub: 2, pres: 1 }, ['p1']);
        pa.close();
        pb1.close();
        m1c.close();
        await expectAll('GET /channels (all gone)', '/channels', {}, { channels: {} });
        await expectAll(`GET /channels/${pub} (vacated)`, `/channels/${pub}`, {}, { occupied: false });
      });
    });

    it('sendToUser and terminateUserConnections reach users on other nodes', async () => {
      await withCluster(adapter, {}, async ({ nodes: [A, B, C] }) => {
        const sdkA = serverSdk(A);
        const id = uniq('far-user-');
        const onC = await signedIn(C, id, 'user@C');
        const onB = await openRaw(B);
        await onB.signin(sdkA, { id });
        await onB.subscribeOk(`#server-to-user-${id}`); // pusher-js does this itself after signin
        const bystander = await signedIn(C, uniq('bystander-'), 'bystander@C');
        const got = [];
        const gotBystander = [];
        onC.user.bind('notice', (d) => got.push(d));
        bystander.user.bind('notice', (d) => gotBystander.push(d));

        await sdkA.sendToUser(id, 'notice', { text: 'hello from A' });
        await waitFor(() => got.length >= 1, 5000, 'notice at the user on C', () => lastReceived(onC));
        const rawNotice = await onB.waitEvent('notice', `#server-to-user-${id}`);
        assert.equal(rawNotice.payload.text, 'hello from A');
        await sleep(QUIET_MS);
        assert.deepEqual(got, [{ text: 'hello from A' }], 'exactly one notice on C');
        assert.equal(onB.find((f) => f.event === 'notice').length, 1, `exactly one notice on B: ${onB.describe()}`);
        assert.equal(gotBystander.length, 0);

        const res = await sdkA.terminateUserConnections(id);
        assert.equal(res.status, 200);
        await waitFor(() => onC.errors.some((e) => pusherJsErrorCode(e) === 4009), 5000, '4009 at the user on C', () =>
          JSON.stringify(onC.errors),
        );
        const err = await onB.waitEvent('pusher:error');
        assert.equal(err.payload.code, 4009, err.raw);
        assert.equal((await onB.waitClose()).code, 4009);
        await waitFor(() => onC.connection.state !== 'connected', 5000, 'the user on C to be disconnected');
        // The bystander on the same node as the victim keeps its connection.
        assert.equal(bystander.connection.state, 'connected');
        await sdkA.sendToUser(bystander.user.user_data.id, 'notice', { text: 'still here' });
        await waitFor(() => gotBystander.length === 1, 5000, 'notice at the bystander');
        onC.disconnect();
        bystander.disconnect();
      });
    });

    it('a cache channel shares its last event: a late subscriber on another node gets it (no cache_miss)', async () => {
      await withCluster(adapter, {}, async ({ nodes }) => {
        const [A, B, C] = nodes;
        const name = uniq('cache-x-');
        const marker = uniq('marker-');
        const sdkA = serverSdk(A);
        // A live subscriber on B; on C only a marker-channel subscriber (C has no cache-x socket).
        const liveB = await openRaw(B);
        await liveB.subscribeOk(name);
        await liveB.waitEvent('pusher:cache_miss', name);
        const markC = await openRaw(C);
        await markC.subscribeOk(marker);

        await sdkA.trigger(name, 'price', { v: 42 });
        await sdkA.trigger(marker, 'relayed', {}); // relayed after `price` by A
        await liveB.waitEvent('price', name);
        await markC.waitEvent('relayed', marker);

        for (const n of [B, C, A]) {
          const late = await openRaw(n);
          const ok = await late.subscribeOk(name);
          const first = await late.waitFor((f) => f.channel === name && f.event !== ok.event, {
            what: `the first frame after subscription_succeeded on ${n.label}`,
          });
          assert.equal(first.event, 'price', `late subscriber on ${n.label} expected the cached event, got ${first.raw}`);
          assert.deepEqual(first.payload, { v: 42 });
          const info = await sdkGetJson(serverSdk(n), `/channels/${name}`, { info: 'cache' });
          assert.equal(info.cache?.data, JSON.stringify({ v: 42 }), `info=cache on ${n.label}: ${JSON.stringify(info)}`);
          late.close();
        }
        liveB.close();
        markC.close();
      });
    });

    it('the app connection quota counts the sockets of every node (app quota: max_connections = 1)', async () => {
      await withCluster(adapter, {}, async ({ nodes: [A, B, C] }) => {
        const app = APPS.quota;
        /** Opens a quota-app socket on `n`: `{c, f}` with f = connection_established or pusher:error. */
        const attempt = async (n) => {
          const c = await openRaw(n, { app, handshake: false });
          const f = await c.waitFor((x) => x.event === 'pusher:connection_established' || x.event === 'pusher:error');
          return { c, f };
        };
        // Heartbeats carry socket counts, so the other nodes refuse once they heard A's (bounded).
        const bound = TIMINGS.heartbeat_interval_ms * 5;
        const first = await openRaw(A, { app });
        for (const n of [B, C]) {
          let last = null;
          await waitFor(
            async () => {
              const { c, f } = await attempt(n);
              last = f;
              if (f.event === 'pusher:error') {
                await c.waitClose();
                return true;
              }
              c.close();
              await c.closedPromise;
              return false;
            },
            bound,
            `${n.label} to refuse a second socket of the quota app (one is open on A)`,
            () => `last answer: ${last?.raw}`,
          );
          assert.equal(last.payload.code, 4004, last.raw);
        }
        await first.ping(); // the first socket is unaffected
        first.close();
        await first.closedPromise;
        for (const n of [B, C]) {
          const again = await waitFor(
            async () => {
              const { c, f } = await attempt(n);
              if (f.event === 'pusher:connection_established') return c;
              c.terminate();
              return null;
            },
            bound + 2000,
            `${n.label} to accept a quota-app socket once A's socket closed`,
          );
          again.close();
          await again.closedPromise;
        }
      });
    });

    it('SIGKILL of a node: survivors get member_removed within node_timeout and /users drops the ghost', async () => {
      await withCluster(adapter, {}, async ({ nodes }) => {
        const [A, B, C] = nodes;
        const name = uniq('presence-ghost-');
        const wA = await pjs(A, { presence: { user_id: 'watch-A', user_info: {} } }, 'watcher-A');
        const wB = await pjs(B, { presence: { user_id: 'watch-B', user_info: {} } }, 'watcher-B');
        const chA = await subscribe(wA, name);
        const chB = await subscribe(wB, name);
        const ghost = await openRaw(C);
        await ghost.subscribeSigned(serverSdk(C), name, { user_id: 'ghost', user_info: { on: 'C' } });
        // A user with a socket on the killed node and one on a survivor stays a member.
        const bothC = await openRaw(C);
        const bothB = await openRaw(B);
        await bothC.subscribeSigned(serverSdk(C), name, { user_id: 'both' });
        await bothB.subscribeSigned(serverSdk(C), name, { user_id: 'both' });
        await waitFor(() => chA.members.count === 4 && chB.members.count === 4, 5000, 'ghost and both in the watchers\' rosters');
        await rosterEverywhere(nodes, name, ['both', 'ghost', 'watch-A', 'watch-B']);

        const removed = (w, user = 'ghost') =>
          events(w, name, 'pusher_internal:member_removed').filter((e) => e.data.user_id === user).length;
        const t0 = Date.now();
        const exit = await C.kill('SIGKILL');
        assert.equal(exit.signal, 'SIGKILL');
        const limit = TIMINGS.node_timeout_ms + 1500;
        await waitFor(() => removed(wA) >= 1 && removed(wB) >= 1, limit + 3000, 'member_removed ghost at A and B', () =>
          `A: ${lastReceived(wA, 4)} B: ${lastReceived(wB, 4)}`,
        );
        const elapsed = Date.now() - t0;
        assert.ok(
          elapsed <= limit,
          `member_removed came ${elapsed} ms after the SIGKILL; expected within node_timeout_ms (${TIMINGS.node_timeout_ms}) + 1500 ms`,
        );
        console.log(`[${adapter}] member_removed for the SIGKILLed node's member came ${elapsed} ms after the kill`);
        // The roster was updated before the member_removed went out.
        for (const n of [A, B]) {
          assert.deepEqual(await usersOn(n, name), ['both', 'watch-A', 'watch-B'], `/users on ${n.label} after the kill`);
          const info = await sdkGetJson(serverSdk(n), `/channels/${name}`, { info: 'user_count' });
          assert.equal(info.user_count, 3, `user_count on ${n.label}: ${JSON.stringify(info)}`);
        }
        await sleep(QUIET_MS);
        assert.equal(removed(wA), 1, `member_removed count at A: ${lastReceived(wA)}`);
        assert.equal(removed(wB), 1, `member_removed count at B: ${lastReceived(wB)}`);
        assert.equal(removed(wA, 'both'), 0, `member_removed for a user still on B: ${lastReceived(wA)}`);
        assert.equal(removed(wB, 'both'), 0, `member_removed for a user still on B: ${lastReceived(wB)}`);
        assert.equal(chA.members.count, 3);
        assert.equal(chB.members.count, 3);
        // The survivors still form a cluster.
        await serverSdk(A).trigger(name, 'after-kill', {});
        await allReceive([wA, wB], name, 'after-kill');
        // ... and the user's last socket going (on B) now removes it.
        bothB.close();
        await waitFor(() => removed(wA, 'both') === 1 && removed(wB, 'both') === 1, 5000, 'member_removed both at A and B');
        wA.disconnect();
        wB.disconnect();
      });
    });

    it('a node stopped with SIGTERM: its members go at once, without waiting for node_timeout', async () => {
      await withCluster(adapter, {}, async ({ nodes }) => {
        const [A, B, C] = nodes;
        const name = uniq('presence-leaving-');
        const wA = await pjs(A, { presence: { user_id: 'watch-A', user_info: {} } }, 'watcher-A');
        const chA = await subscribe(wA, name);
        const polite = await openRaw(C);
        await polite.subscribeSigned(serverSdk(C), name, { user_id: 'polite' });
        const onB = await openRaw(B);
        await onB.subscribeSigned(serverSdk(B), name, { user_id: 'on-B' });
        await waitFor(() => chA.members.count === 3, 5000, 'polite and on-B in the roster at A');

        const t0 = Date.now();
        const exit = await C.kill('SIGTERM');
        assert.equal(exit.code, 0, `C exited with ${JSON.stringify(exit)}`);
        assert.equal((await polite.waitClose()).code, 4200);
        await waitFor(
          () => events(wA, name, 'pusher_internal:member_removed').some((e) => e.data.user_id === 'polite'),
          5000,
          'member_removed polite at A',
          () => lastReceived(wA),
        );
        const elapsed = Date.now() - t0;
        assert.ok(
          elapsed < TIMINGS.node_timeout_ms,
          `member_removed came ${elapsed} ms after SIGTERM: as slow as a dead node (node_timeout_ms ${TIMINGS.node_timeout_ms})`,
        );
        // A knows C left: an API query that asks every node does not wait for C.
        const q0 = Date.now();
        const info = await sdkGetJson(serverSdk(A), `/channels/${name}`, { info: 'subscription_count,user_count' });
        const queryMs = Date.now() - q0;
        assert.deepEqual(info, { occupied: true, subscription_count: 2, user_count: 2 });
        assert.ok(queryMs < TIMINGS.query_timeout_ms, `GET /channels/{name} on A took ${queryMs} ms: still waiting for the stopped node`);
        await rosterEverywhere([A, B], name, ['on-B', 'watch-A']);
        wA.disconnect();
        onB.close();
      });
    });

    it('backbone restart: local delivery while it is down, cross-node delivery and presence resume by themselves', async () => {
      const backbone = await startBackbone(adapter);
      try {
        await withCluster(adapter, { url: backbone.url, backbone }, async ({ nodes }) => {
          const [A, B, C] = nodes;
          const name = uniq('restart-');
          const pres = uniq('presence-restart-');
          const sdkA = serverSdk(A);
          const subA = await openRaw(A);
          const subB = await openRaw(B);
          const subC = await openRaw(C);
          for (const s of [subA, subB, subC]) await s.subscribeOk(name);
          const memberA = await openRaw(A);
          const memberB = await openRaw(B);
          await memberA.subscribeSigned(sdkA, pres, { user_id: 'on-A' });
          await memberB.subscribeSigned(sdkA, pres, { user_id: 'on-B' });
          await rosterEverywhere(nodes, pres, ['on-A', 'on-B']);
          await sdkA.trigger(name, 'before', {});
          for (const s of [subA, subB, subC]) await s.waitEvent('before', name);

          await backbone.kill();
          // Local subscribers still get what is triggered on their node, and the API answers.
          const res = await sdkA.trigger(name, 'while-down', { n: 1 });
          assert.equal(res.status, 200);
          const local = await subA.waitEvent('while-down', name, { timeoutMs: 3000 });
          assert.deepEqual(local.payload, { n: 1 });
          const down = await sdkGetJson(sdkA, `/channels/${name}`, { info: 'subscription_count' });
          assert.equal(down.occupied, true, JSON.stringify(down));
          // An outage longer than node_timeout: the nodes also lose track of each other.
          await sleep(TIMINGS.node_timeout_ms + 500);

          await backbone.restart();
          const t0 = Date.now();
          // Each node reconnects on its own (with backoff), so every direction is polled: trigger
          // through `from` until `to` receives one of these triggers, within a bound from the restart.
          const RESUME_MS = 20000;
          const untilDelivered = async (from, to, label) => {
            const sdk = serverSdk(from);
            const tag = `resumed-${from.label}-`;
            const got = () => to.find((f) => f.channel === name && f.event.startsWith(tag)).length > 0;
            let sent = 0;
            await waitFor(
              async () => {
                if (got()) return true;
                sent += 1;
                await sdk.trigger(name, `${tag}${sent}`, {});
                await sleep(200);
                return got();
              },
              Math.max(1000, RESUME_MS - (Date.now() - t0)),
              `a trigger on ${from.label} to reach the subscriber on ${label} after the backbone restart`,
              () => `sent ${sent} triggers; ${label}: ${to.describe()}`,
            );
            return sent;
          };
          const sent = await untilDelivered(A, subB, 'B');
          const resumedMs = Date.now() - t0;
          console.log(`[${adapter}] A -> B delivery resumed ${resumedMs} ms after the backbone restart (${sent} triggers)`);
          // Every other direction works again too ...
          await untilDelivered(A, subC, 'C');
          await untilDelivered(B, subA, 'A');
          await untilDelivered(C, subA, 'A');
          await untilDelivered(C, subB, 'B');
          // ... and presence is resynced.
          await rosterEverywhere(nodes, pres, ['on-A', 'on-B'], { timeoutMs: 10000 });
          for (const s of [subA, subB, subC, memberA, memberB]) s.close();
        });
      } finally {
        await backbone.stop();
      }
    });

    it('a node started while others run is part of the cluster as soon as it listens', async () => {
      await withCluster(adapter, {}, async (cluster) => {
        const [A, B] = cluster.nodes;
        const name = uniq('late-');
        const pres = uniq('presence-late-');
        const sdkA = serverSdk(A);
        const mA = await openRaw(A);
        const mB = await openRaw(B);
        await mA.subscribeSigned(sdkA, pres, { user_id: 'early-A', user_info: { n: 'A' } });
        await mB.subscribeSigned(sdkA, pres, { user_id: 'early-B', user_info: { n: 'B' } });
        await rosterEverywhere(cluster.nodes, pres, ['early-A', 'early-B']);
        const subA = await openRaw(A);
        await subA.subscribeOk(name);

        const D = await cluster.addNode('D'); // resolves on `listening on`
        // No waiting: straight away a socket on D subscribes and gets a trigger from A.
        const d = await openRaw(D);
        await d.subscribeOk(name);
        await sdkA.trigger(name, 'welcome', { to: 'D' });
        const got = await d.waitEvent('welcome', name, { timeoutMs: 3000 });
        assert.deepEqual(got.payload, { to: 'D' });
        // ... and its presence roster already has the members of A and B.
        const dm = await openRaw(D);
        const ok = await dm.subscribeSigned(sdkA, pres, { user_id: 'late-D' });
        assert.equal(ok.event, 'pusher_internal:subscription_succeeded', ok.raw);
        assert.deepEqual([...ok.payload.presence.ids].sort(), ['early-A', 'early-B', 'late-D'], ok.raw);
        assert.equal(ok.payload.presence.count, 3, ok.raw);
        assert.deepEqual(ok.payload.presence.hash['early-A'], { n: 'A' }, ok.raw);
        // The others hear of D's member, and D's triggers reach them.
        await mA.waitFor((f) => f.event === 'pusher_internal:member_added' && f.payload.user_id === 'late-D', {
          what: 'member_added late-D at A',
        });
        await serverSdk(D).trigger(name, 'from-d', {});
        await subA.waitEvent('from-d', name);
        await rosterEverywhere(cluster.nodes, pres, ['early-A', 'early-B', 'late-D']);
        for (const x of [mA, mB, subA, d, dm]) x.close();
      });
    });
  });
}

function isDeepEqual(a, b) {
  try {
    assert.deepStrictEqual(a, b);
    return true;
  } catch {
    return false;
  }
}
