// Multi-node helpers for the Vestnik end-to-end suite (test/cluster.test.js):
// - `requireBackbone`: fails (never skips) with how to start the shared Redis / NATS when it is down;
// - `startBackbone`: a private `redis-server` / `nats-server` on a free port that a test may kill and
//   restart on the same port;
// - `startCluster`: N broker processes joined through Redis or NATS under a random `[cluster] prefix`
//   with short timings, each started with `helpers.js`'s `startBroker` (TOML config on port 0);
// - `deleteNatsHistory`: removes the history stream a NATS cluster kept in JetStream;
// - `withLogs`: re-throws a failure with the tail of every node's stderr, so a server bug is reported
//   with what the brokers logged.

import { spawn } from 'node:child_process';
import { createConnection, createServer } from 'node:net';

import { APPS, reapOnExit, startBroker, waitFor } from './helpers.js';

export const ADAPTERS = ['redis', 'nats'];

/** The shared services (never stopped or restarted by the suite). */
export const SHARED_URLS = {
  redis: process.env.VESTNIK_TEST_REDIS_URL || 'redis://127.0.0.1:6379',
  nats: process.env.VESTNIK_TEST_NATS_URL || 'nats://127.0.0.1:4222',
};

/** Short timings so the fault cases finish quickly. */
export const TIMINGS = {
  heartbeat_interval_ms: 200,
  node_timeout_ms: 1500,
  query_timeout_ms: 500,
  join_timeout_ms: 3000,
};

// The binaries for private servers: scripts/services.sh exports VESTNIK_REDIS_SERVER and
// VESTNIK_NATS_SERVER (the names the Rust testkit reads too).
const REDIS_SERVER = process.env.VESTNIK_REDIS_SERVER || process.env.REDIS_SERVER_BIN || 'redis-server';
const NATS_SERVER = process.env.VESTNIK_NATS_SERVER || process.env.NATS_SERVER_BIN || '/usr/sbin/nats-server';

const HOW_TO_START = {
  redis:
    "start it with `redis-server --port 6379 --save '' --appendonly no --daemonize yes` " +
    '(or `docker run -d -p 6379:6379 redis:7`), or point VESTNIK_TEST_REDIS_URL at a running Redis, ' +
    'or run the tests under `scripts/services.sh run -- …`, which starts one',
  nats:
    'start it with `nats-server -p 4222 &` (or `docker run -d -p 4222:4222 nats:2`), ' +
    'or point VESTNIK_TEST_NATS_URL at a running NATS server, ' +
    'or run the tests under `scripts/services.sh run -- …`, which starts one',
};

function hostPort(url) {
  // A Redis Cluster URL (redis+cluster://[cred@]h:p,h:p,…): its first seed.
  const m = /^(\w+)\+cluster:\/\/([^@/]*@)?([^,/]+)/.exec(url);
  if (m) url = `${m[1]}://${m[2] || ''}${m[3]}`;
  const u = new URL(url);
  return { host: u.hostname || '127.0.0.1', port: Number(u.port) || (u.protocol.startsWith('nats') ? 4222 : 6379) };
}

/** Resolves true if a TCP connection to host:port opens within `timeoutMs`. */
export function tcpReachable(host, port, timeoutMs = 1000) {
  return new Promise((res) => {
    const sock = createConnection({ host, port });
    const done = (ok) => {
      clearTimeout(timer);
      sock.destroy();
      res(ok);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    sock.once('connect', () => done(true));
    sock.once('error', () => done(false));
  });
}

/** Throws (so the test fails, never skips) unless the shared Redis / NATS answers. */
export async function requireBackbone(adapter, url = SHARED_URLS[adapter]) {
  const { host, port } = hostPort(url);
  if (!(await tcpReachable(host, port, 2000))) {
    throw new Error(`the ${adapter} backbone is not reachable at ${url}; the cluster tests need it: ${HOW_TO_START[adapter]}`);
  }
}

/** A TCP port that was free a moment ago on 127.0.0.1. */
export function freePort() {
  return new Promise((res, rej) => {
    const s = createServer();
    s.once('error', rej);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => res(port));
    });
  });
}

/** A random cluster prefix (letters, digits, `_`: valid as a Redis channel and a NATS subject token). */
export function randomPrefix() {
  return `vt_${process.pid}_${Math.random().toString(36).slice(2, 10)}`;
}

// ---------------------------------------------------------------------------------------------
// A private backbone a test may kill and restart

/**
 * Starts this test's own `redis-server` (no persistence) or `nats-server` on a free port. Returns
 * `{adapter, port, url, kill(), restart(), stop()}`: `kill` SIGKILLs it, `restart` starts it again
 * on the same port.
 */
export async function startBackbone(adapter) {
  const port = await freePort();
  let proc = null;
  let output = '';
  const launch = async () => {
    const [bin, args] =
      adapter === 'redis'
        ? [REDIS_SERVER, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no']]
        : [NATS_SERVER, ['-a', '127.0.0.1', '-p', String(port)]];
    const p = reapOnExit(spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] }));
    const append = (d) => {
      output = (output + d).slice(-10000);
    };
    p.stdout.on('data', append);
    p.stderr.on('data', append);
    const exited = new Promise((r) => p.on('exit', (code, signal) => r({ code, signal })));
    p.exitedPromise = exited;
    let spawnError = null;
    p.on('error', (e) => {
      spawnError = e;
    });
    proc = p;
    await waitFor(
      async () => {
        if (spawnError) throw new Error(`could not spawn ${bin}: ${spawnError.message}`);
        return tcpReachable('127.0.0.1', port, 300);
      },
      10000,
      `${adapter} server on port ${port}`,
      () => `output:\n${output}`,
    );
  };
  await launch();
  const b = {
    adapter,
    port,
    url: adapter === 'redis' ? `redis://127.0.0.1:${port}` : `nats://127.0.0.1:${port}`,
    get output() {
      return output;
    },
    async kill() {
      if (proc && proc.exitCode === null && proc.signalCode === null) {
        proc.kill('SIGKILL');
        await proc.exitedPromise;
      }
      proc = null;
    },
    async restart() {
      await b.kill();
      await launch();
    },
    stop: () => b.kill(),
  };
  return b;
}

// ---------------------------------------------------------------------------------------------
// The cluster history a NATS cluster keeps in JetStream

/** The JetStream stream that keeps the channel history of the NATS cluster `prefix` (as vestnik-nats names it). */
export function natsHistoryStream(prefix) {
  return `VESTNIK_HISTORY_${Buffer.from(prefix, 'utf8').toString('hex')}`;
}

/**
 * Deletes the history stream of the NATS cluster `prefix` at `url` (tests clean up after
 * themselves), speaking the NATS protocol itself: `$JS.API.STREAM.DELETE.<stream>`. Resolves
 * true if it was deleted, false if there was none; rejects on anything else (no JetStream, no
 * answer within 5 s).
 */
export function deleteNatsHistory(url, prefix) {
  const { host, port } = hostPort(url);
  const inbox = `_INBOX.vestnik_${Math.random().toString(36).slice(2)}`;
  return new Promise((res, rej) => {
    const sock = createConnection({ host, port });
    let buf = Buffer.alloc(0);
    let sent = false;
    const done = (err, value) => {
      clearTimeout(timer);
      sock.destroy();
      if (err) rej(err);
      else res(value);
    };
    const timer = setTimeout(() => done(new Error(`no answer from NATS at ${url} to the stream delete`)), 5000);
    sock.once('error', (e) => done(e));
    sock.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      for (;;) {
        const eol = buf.indexOf('\r\n');
        if (eol < 0) return;
        const line = buf.subarray(0, eol).toString();
        if (line.startsWith('INFO ') && !sent) {
          sent = true;
          buf = buf.subarray(eol + 2);
          sock.write(
            'CONNECT {"verbose":false,"pedantic":false,"headers":true,"no_responders":true}\r\n' +
              `SUB ${inbox} 1\r\nPUB $JS.API.STREAM.DELETE.${natsHistoryStream(prefix)} ${inbox} 2\r\n{}\r\n`,
          );
        } else if (line === 'PING') {
          buf = buf.subarray(eol + 2);
          sock.write('PONG\r\n');
        } else if (line.startsWith('MSG ') || line.startsWith('HMSG ')) {
          const total = Number(line.split(' ').at(-1));
          if (buf.length < eol + 2 + total + 2) return;
          const body = buf.subarray(eol + 2, eol + 2 + total).toString();
          if (line.startsWith('HMSG ')) return done(new Error(`NATS at ${url} has no JetStream: ${body.split('\r\n')[0]}`));
          const answer = JSON.parse(body);
          if (answer.success) return done(null, true);
          if (answer.error?.err_code === 10059) return done(null, false);
          return done(new Error(`deleting ${natsHistoryStream(prefix)}: ${body}`));
        } else if (line.startsWith('-ERR')) {
          return done(new Error(`NATS at ${url}: ${line}`));
        } else {
          buf = buf.subarray(eol + 2);
        }
      }
    });
  });
}

// ---------------------------------------------------------------------------------------------
// Nodes

/**
 * Nodes drain at once on SIGTERM: these tests time how fast a stopped node's members go, and the
 * drain's spread over its window is tested on its own (crates/vestnik-server/tests/drain.rs).
 */
export const QUICK_DRAIN = { drain_grace_ms: 0, drain_window_ms: 0 };

/** Starts one node of the cluster `{adapter, url, prefix}`; the broker gets `.label`. */
export async function startNode({ adapter, url, prefix, timings = TIMINGS, apps = Object.values(APPS) }, label = 'node') {
  const cluster = { adapter, prefix, ...timings };
  cluster[adapter === 'redis' ? 'redis_url' : 'nats_url'] = url;
  const broker = await startBroker({ apps, server: QUICK_DRAIN, tables: { cluster } });
  broker.label = label;
  return broker;
}

/**
 * Starts `nodes` brokers (labelled A, B, C, ...) on one backbone under a fresh random prefix.
 * `url` defaults to the shared service. Returns `{adapter, url, prefix, nodes, addNode(label),
 * logs(), stop()}`; `stop` kills every node.
 */
export async function startCluster(adapter, { nodes = 3, url = SHARED_URLS[adapter], timings = TIMINGS } = {}) {
  await requireBackbone(adapter, url);
  const spec = { adapter, url, prefix: randomPrefix(), timings };
  const cluster = {
    ...spec,
    nodes: [],
    async addNode(label = String.fromCharCode(65 + cluster.nodes.length)) {
      const n = await startNode(spec, label);
      cluster.nodes.push(n);
      return n;
    },
    /** The tail of every node's stderr, for failure messages. */
    logs(tail = 4000) {
      return cluster.nodes
        .map((n) => {
          const lines = n.stderr.split('\n').filter((l) => !/serving app|open file limit/.test(l));
          return `--- node ${n.label} (port ${n.port}, exit ${JSON.stringify(n.exitInfo)}) stderr tail:\n${lines.join('\n').slice(-tail)}`;
        })
        .join('\n');
    },
    async stop() {
      await Promise.all(cluster.nodes.map((n) => n.stop().catch(() => {})));
      // A NATS with JetStream keeps the cluster's history stream after its nodes: remove it (a
      // server without JetStream, or one a test already stopped, has nothing to remove).
      if (adapter === 'nats') await deleteNatsHistory(url, spec.prefix).catch(() => {});
    },
  };
  const labels = Array.from({ length: nodes }, (_, i) => String.fromCharCode(65 + i));
  try {
    // The first node alone, then the others together: each of them joins a running cluster.
    await cluster.addNode(labels[0]);
    const rest = await Promise.allSettled(labels.slice(1).map((l) => startNode(spec, l)));
    for (const r of rest) if (r.status === 'fulfilled') cluster.nodes.push(r.value);
    const failed = rest.find((r) => r.status === 'rejected');
    if (failed) throw failed.reason;
  } catch (e) {
    await cluster.stop();
    throw e;
  }
  return cluster;
}

/**
 * Runs `fn(cluster)` on a fresh cluster and always stops it; a failure is re-thrown with the nodes'
 * stderr tails (and the private backbone's output, if any) appended.
 */
export async function withCluster(adapter, opts, fn) {
  const cluster = await startCluster(adapter, opts);
  try {
    await fn(cluster);
  } catch (e) {
    const extra = `\n\n${cluster.logs()}${opts?.backbone ? `\n--- ${adapter} server output:\n${opts.backbone.output.slice(-2000)}` : ''}`;
    if (e instanceof Error) {
      e.message += extra;
      throw e;
    }
    throw new Error(`${String(e)}${extra}`);
  } finally {
    await cluster.stop();
  }
}
