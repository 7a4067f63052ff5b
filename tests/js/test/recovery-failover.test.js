// Failover with real clients (issue 14, "Failover"; docs/recovery.md "In a cluster"): positions and
// history live in Redis (or NATS JetStream), so a client whose node dies recovers what it missed on
// another node.
//
// On each backbone, three nodes A, B, C under one random prefix; a client (stock pusher-js 8 with the plugin
// clients/js/vestnik-recovery.js, then Laravel Echo on a private channel) connects through a TCP
// proxy to A. 300 numbered events are published over about 3 s, round robin over A, B and C. After
// event 150, A is SIGKILLed and the proxy's upstream switched to B (new connections wait in the
// proxy until 30 more events went out, as behind a load balancer that notices late): pusher-js
// reconnects to B, the plugin resubscribes with `recover`, and B (which never heard the channel)
// answers from the backbone's history. The client gets all 300 exactly once and in order, by payload and by the
// frames' position offsets, with one recovery `recovered:true`.
import assert from 'node:assert/strict';
import { connect, createServer } from 'node:net';
import { describe, it } from 'node:test';

import Echo from 'laravel-echo';
import { VestnikRecovery } from '../../../clients/js/index.js';
import { SHARED_URLS, TIMINGS, deleteNatsHistory, randomPrefix, requireBackbone, startNode } from '../cluster-helpers.js';
import { APPS, connected, openPusher, serverSdk, sleep, subscribe, uniq, waitFor } from '../helpers.js';

/**
 * The main app with history on (the default), kept deeper than the default 100 events: a client
 * that pusher-js brings back after its reconnect delay may have missed more than 100 of these
 * 100 events/s (a recovery then answers too_old, rightly). As in recovery-clients.test.js.
 */
const APP = { ...APPS.main, history: { size: 1000 } };
const TOTAL = 300;
/** One event every 10 ms: 300 in about 3 s. */
const PACE_MS = 10;
/** A is killed right after this event was published... */
const KILL_AFTER = 150;
/** ...and the client's new connection waits in the proxy until this one was published. */
const RELEASE_AFTER = 180;
const EXPECTED = Array.from({ length: TOTAL }, (_, i) => i + 1);

// ---------------------------------------------------------------------------------------------
// Three nodes of one cluster serving APP

/**
 * Runs `fn(cluster)` on three nodes A, B, C of a fresh cluster on the shared `adapter` backbone
 * under one random prefix (as cluster-helpers.js's withCluster does, with this file's app), and
 * always kills them; a failure is re-thrown with the tail of every node's stderr.
 */
async function withNodes(adapter, fn) {
  await requireBackbone(adapter);
  // The default config: durable triggers are on, so a 200 stands for an event the store
  // numbered (docs/recovery.md); with them off this test fails.
  const spec = { adapter, url: SHARED_URLS[adapter], prefix: randomPrefix(), apps: [APP], timings: TIMINGS };
  const nodes = [];
  const cluster = { ...spec, nodes };
  try {
    // The first node alone, then the others: each of them joins a running cluster.
    nodes.push(await startNode(spec, 'A'));
    const rest = await Promise.allSettled(['B', 'C'].map((l) => startNode(spec, l)));
    for (const r of rest) if (r.status === 'fulfilled') nodes.push(r.value);
    for (const r of rest) if (r.status === 'rejected') throw r.reason;
    await fn(cluster);
  } catch (e) {
    const logs = nodes
      .map((n) => {
        const lines = n.stderr.split('\n').filter((l) => !/serving app|open file limit/.test(l));
        return `--- node ${n.label} (port ${n.port}, exit ${JSON.stringify(n.exitInfo)}) stderr tail:\n${lines.join('\n').slice(-3000)}`;
      })
      .join('\n');
    if (e instanceof Error) {
      e.message += `\n\n${logs}`;
      throw e;
    }
    throw new Error(`${String(e)}\n\n${logs}`);
  } finally {
    await Promise.all(nodes.map((n) => n.stop().catch(() => {})));
    // A NATS with JetStream keeps the cluster's history stream after its nodes.
    if (adapter === 'nats') await deleteNatsHistory(spec.url, spec.prefix);
  }
}

// ---------------------------------------------------------------------------------------------
// A TCP proxy whose upstream can be switched (tcp-proxy.js always forwards to one port)

/**
 * Forwards 127.0.0.1:port to `127.0.0.1:target`. `switchTo(port)` changes the upstream of new
 * connections (open ones stay where they are); `hold()` makes new connections wait, unanswered and
 * buffered, until `release()`; `upstreams` lists the upstream port of every connection made.
 */
async function startSwitchableProxy(targetPort) {
  const pairs = new Set();
  const waiting = [];
  const proxy = { port: 0, target: targetPort, held: false, upstreams: [] };
  const join = (client) => {
    const target = proxy.target;
    proxy.upstreams.push(target);
    const upstream = connect(target, '127.0.0.1');
    const pair = { client, upstream };
    pairs.add(pair);
    const end = () => {
      pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    for (const s of [client, upstream]) {
      s.setNoDelay(true);
      s.on('error', end);
      s.on('close', end);
    }
    client.pipe(upstream);
    upstream.pipe(client);
    client.resume();
  };
  const server = createServer((client) => {
    if (proxy.held) {
      client.pause();
      client.on('error', () => client.destroy());
      waiting.push(client);
      return;
    }
    join(client);
  });
  await new Promise((res, rej) => {
    server.once('error', rej);
    server.listen(0, '127.0.0.1', res);
  });
  proxy.port = server.address().port;
  proxy.switchTo = (port) => {
    proxy.target = port;
  };
  proxy.hold = () => {
    proxy.held = true;
  };
  proxy.release = () => {
    proxy.held = false;
    for (const client of waiting.splice(0)) if (!client.destroyed) join(client);
  };
  proxy.close = async () => {
    proxy.release();
    for (const { client, upstream } of [...pairs]) {
      client.destroy();
      upstream.destroy();
    }
    pairs.clear();
    await new Promise((res) => server.close(res));
  };
  return proxy;
}

// ---------------------------------------------------------------------------------------------
// A raw frame tap on a pusher-js instance (pusher-js drops `position` when it decodes)

/**
 * Records every raw channel frame on every connection of `pusher` as `{conn, channel, event, data,
 * position}` (`conn`: 1 for the first connection, 2 for the next, ...; `data` JSON-decoded).
 */
function tapFrames(pusher) {
  const frames = [];
  const hooked = new WeakSet();
  let conns = 0;
  const hook = () => {
    const transport = pusher.connection.connection?.transport;
    if (!transport || hooked.has(transport)) return;
    hooked.add(transport);
    conns += 1;
    const conn = conns;
    transport.bind('message', (m) => {
      let f;
      try {
        f = JSON.parse(m.data);
      } catch {
        return;
      }
      if (typeof f?.channel !== 'string') return;
      let data = f.data;
      try {
        data = typeof data === 'string' ? JSON.parse(data) : data;
      } catch {
        /* plain string */
      }
      frames.push({ conn, channel: f.channel, event: f.event, data, position: f.position });
    });
  };
  pusher.connection.bind('connected', hook);
  hook();
  return frames;
}

const summarize = (frames) =>
  frames
    .filter((f) => f.event !== 'seq')
    .map((f) => JSON.stringify(f))
    .concat([`${frames.filter((f) => f.event === 'seq').length} seq frames`])
    .join('\n    ');

// ---------------------------------------------------------------------------------------------
// The failover run

/** The newest events the cluster keeps of `channel` (read from the backbone through `node`), for a diagnosis. */
async function historyTail(node, channel) {
  try {
    const res = await serverSdk(node, APP).get({ path: `/channels/${channel}/history`, params: { limit: '1000' } });
    const page = await res.json();
    const seq = page.events.filter((e) => e.event === 'seq').map((e) => [e.offset, JSON.parse(e.data).n]);
    const shifted = seq.filter(([o, n]) => o !== n).map(([o, n]) => `${o}:${n}`);
    const kept = seq.map(([, n]) => n);
    const unnumbered = EXPECTED.filter((n) => n >= (kept[0] ?? 1) && !kept.includes(n));
    return (
      `cluster history via node ${node.label}: epoch ${page.epoch}, offsets ${page.first_offset}..${page.last_offset}; ` +
      `published n never numbered: ${JSON.stringify(unnumbered)}; offset:n where n != offset: ${shifted.slice(0, 12).join(' ')}` +
      `${shifted.length > 12 ? ` … (${shifted.length})` : ''}`
    );
  } catch (e) {
    return `cluster history not read via node ${node.label}: ${e.message ?? e}`;
  }
}

/** Panic lines and errors in the nodes' stderr (the failure's log tails may cut them off). */
function panics(cluster) {
  const lines = cluster.nodes.flatMap((n) =>
    n.stderr
      .split('\n')
      .filter((l) => /panicked|overflow|ERROR/.test(l))
      .slice(0, 6)
      .map((l) => `node ${n.label}: ${l}`),
  );
  return lines.length ? `node panics/errors:\n      ${lines.join('\n      ')}` : 'no node panicked or logged an error';
}

/**
 * Publishes 1..TOTAL as `seq` events (`{n}`), one request each, round robin over the live nodes;
 * after KILL_AFTER it holds the proxy's new connections, SIGKILLs A, switches the proxy to B and
 * goes on over B and C; after RELEASE_AFTER it lets the held connections through (to B).
 */
async function publishThroughFailover(cluster, proxy, channel) {
  const [A, B, C] = cluster.nodes;
  const sdks = new Map(cluster.nodes.map((n) => [n, serverSdk(n, APP)]));
  let live = [A, B, C];
  let killed = null;
  const t0 = Date.now();
  for (let n = 1; n <= TOTAL; n++) {
    // Pacing only (about 3 s in all); nothing waits on it for correctness.
    const ahead = t0 + (n - 1) * PACE_MS - Date.now();
    if (ahead > 0) await sleep(ahead);
    const node = live[n % live.length];
    try {
      await sdks.get(node).trigger(channel, 'seq', { n });
    } catch (e) {
      throw new Error(`trigger of event ${n} on node ${node.label} failed: ${e.message ?? e}`);
    }
    if (n === KILL_AFTER) {
      proxy.hold();
      killed = await A.kill('SIGKILL');
      proxy.switchTo(B.port);
      live = [B, C];
    }
    if (n === RELEASE_AFTER) proxy.release();
  }
  return killed;
}

/**
 * One failover run. `open(pusher)` subscribes the client (pusher-js with the plugin, through the
 * proxy) and resolves with `{channel (its full name), bind(event, fn)}`.
 */
async function failoverRun(cluster, open) {
  const [A, B, C] = cluster.nodes;
  const proxy = await startSwitchableProxy(A.port);
  let pusher;
  try {
    pusher = openPusher({ ...A, port: proxy.port }, { app: APP });
    const hook = VestnikRecovery.install(pusher);
    const tapped = tapFrames(pusher);
    const { channel, bind, close } = await open(pusher);
    pusher.closeClient = close;
    const frames = {
      filter: (pred) => tapped.filter((f) => f.channel === channel).filter(pred),
      all: () => tapped.filter((f) => f.channel === channel),
    };
    const got = [];
    const recovered = [];
    const failed = [];
    let done = 0;
    bind('seq', (d) => got.push(d.n));
    bind('done', () => {
      done += 1;
    });
    bind('vestnik:recovered', (e) => recovered.push(e.missed));
    bind('vestnik:recovery_failed', (e) => failed.push(e));
    const state = () =>
      `got ${got.length} (last ${got.slice(-3)}), recovered ${JSON.stringify(recovered)}, ` +
      `failed ${JSON.stringify(failed)}, state ${pusher.connection.state}, proxy upstreams ` +
      `${JSON.stringify(proxy.upstreams)} (A ${A.port}, B ${B.port}), frames:\n    ${summarize(frames.all())}`;

    try {
      const killed = await publishThroughFailover(cluster, proxy, channel);
      assert.equal(killed.signal, 'SIGKILL', `node A died of a SIGKILL: ${JSON.stringify(killed)}`);
      await waitFor(() => got.length >= TOTAL, 20_000, `${TOTAL} events`, state);
      // A last event after them: in order, so once it is here no late duplicate is still on its way.
      await serverSdk(C, APP).trigger(channel, 'done', {});
      await waitFor(() => done === 1, 5000, 'the final event', state);

      // The client went from A to B, and nowhere else.
      assert.equal(proxy.upstreams[0], A.port);
      assert.ok(proxy.upstreams.length >= 2, `a new connection after the kill: ${state()}`);
      assert.deepEqual(new Set(proxy.upstreams.slice(1)), new Set([B.port]), `reconnected to B: ${state()}`);

      // All 300, exactly once, in order, as the app's handlers saw them.
      assert.equal(got.length, TOTAL, `no duplicate: ${state()}`);
      assert.deepEqual(got, EXPECTED, 'all, exactly once, in order');

      // The same in the raw frames, with their positions: one epoch, offsets 1..300 (a new channel),
      // offset n on event n, whichever node published it and whichever node delivered it.
      const seq = frames.filter((f) => f.event === 'seq');
      assert.deepEqual(
        seq.map((f) => f.data.n),
        EXPECTED,
        'raw seq frames: all, exactly once, in order',
      );
      const epochs = new Set(seq.map((f) => f.position?.epoch));
      assert.equal(epochs.size, 1, `one epoch: ${[...epochs]}`);
      const [epoch] = epochs;
      assert.equal(typeof epoch, 'string');
      assert.deepEqual(
        seq.map((f) => f.position.offset),
        EXPECTED,
        'offset n on event n',
      );
      assert.ok(seq.some((f) => f.conn === 1) && seq.some((f) => f.conn > 1), 'events came on both connections');

      // One resubscribe, answered by B from the backbone's history with recovered:true; the missed events follow it
      // at once and pick up right after the last offset seen on A.
      const answers = frames.filter((f) => f.event === 'pusher_internal:subscription_succeeded');
      assert.equal(answers[0].conn, 1);
      assert.equal(answers[0].data.recovery, undefined, 'the first subscribe asks for nothing');
      const resubscribes = answers.slice(1);
      assert.equal(resubscribes.length, 1, `one resubscribe: ${state()}`);
      const answer = resubscribes[0];
      assert.equal(answer.data.recovery?.recovered, true, `recovered on B: ${JSON.stringify(answer)}`);
      const missed = answer.data.recovery.missed;
      const lastOnA = Math.max(0, ...seq.filter((f) => f.conn === 1).map((f) => f.position.offset));
      assert.ok(lastOnA < KILL_AFTER + 1, `nothing after the kill came from A (last ${lastOnA})`);
      assert.ok(
        missed >= RELEASE_AFTER - KILL_AFTER,
        `at least the ${RELEASE_AFTER - KILL_AFTER} events published while the client was away were replayed: missed ${missed}`,
      );
      const all = frames.all();
      const after = all.slice(all.indexOf(answer) + 1).filter((f) => f.event === 'seq');
      assert.deepEqual(
        after.slice(0, missed).map((f) => f.position.offset),
        Array.from({ length: missed }, (_, i) => lastOnA + 1 + i),
        'the replay: the offsets right after the last one seen on A',
      );
      assert.equal(answer.position?.epoch, epoch, 'the answer is in the same epoch');
      assert.equal(answer.position?.offset, lastOnA + missed, 'the answer tells the position after the replay');

      // The plugin saw the same: one recovery, no failure, at the final event's position.
      assert.deepEqual(recovered, [missed]);
      assert.deepEqual(failed, []);
      assert.deepEqual(hook.position(channel), { epoch, offset: TOTAL + 1 });
      return { missed, lastOnA };
    } catch (e) {
      // What the client missed, what the cluster numbered, and what the nodes said: a failure is
      // reported with the facts to tell a broker bug from a test bug.
      e.message += `\n  diagnosis:\n    missing n: ${JSON.stringify(EXPECTED.filter((n) => !got.includes(n)))}` +
        `\n    duplicated n: ${JSON.stringify(got.filter((n, i) => got.indexOf(n) !== i))}` +
        `\n    ${await historyTail(C, channel)}\n    ${panics(cluster)}`;
      throw e;
    }
  } finally {
    try {
      pusher?.closeClient?.();
      pusher?.disconnect();
    } catch {
      /* already closed */
    }
    await proxy.close();
  }
}

for (const [backbone, label] of [['redis', 'Redis'], ['nats', 'NATS JetStream']]) {
  describe(`failover on ${label}: a client whose node is SIGKILLed recovers on another node`, () => {
    it('stock pusher-js 8 with the plugin, public channel: 300 events exactly once and in order', { timeout: 60_000 }, async () => {
      await withNodes(backbone, async (cluster) => {
        const r = await failoverRun(cluster, async (pusher) => {
          await connected(pusher);
          const name = uniq('orders-');
          const channel = await subscribe(pusher, name);
          return { channel: name, bind: (e, fn) => channel.bind(e, fn) };
        });
        assert.ok(r.missed > 0);
      });
    });

    it('Laravel Echo on a private channel, with the plugin: 300 events exactly once and in order', { timeout: 60_000 }, async () => {
      await withNodes(backbone, async (cluster) => {
        const r = await failoverRun(cluster, async (pusher) => {
          const echo = new Echo({ broadcaster: 'pusher', key: APP.key, client: pusher });
          const room = uniq('orders.');
          const channel = echo.private(room);
          const name = `private-${room}`;
          await waitFor(() => pusher.channel(name)?.subscribed, 5000, 'Echo subscribed');
          // Echo's `listen` with a leading dot: the raw event name.
          return { channel: name, bind: (e, fn) => channel.listen(`.${e}`, fn), close: () => echo.disconnect() };
        });
        assert.ok(r.missed > 0);
      });
    });
  });
}
