// Webhook helpers for the Vestnik end-to-end suite:
// - `startReceiver`: a real HTTP receiver (node:http on 127.0.0.1) that checks every request with the
//   official `pusher` SDK verifier (`pusher.webhook({headers, rawBody}).isValid()`), records requests
//   and events, can answer 500 a given number of times, and can be closed and reopened on its port;
// - `startWebhookBroker`: spawns the broker with a TOML config that has `[webhooks]` settings and
//   `[[apps.webhooks]]` targets (which `helpers.js`'s flat config writer cannot express), or with no
//   config at all and extra flags (the `--webhook-url` quick start);
// - `webhookStats` / `deadLetters` / `replayDeadLetters`: the signed admin endpoints, through the SDK.

import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import PusherServer from 'pusher';

import { LISTENING_RE, brokerBinary, reapOnExit, serverSdk, waitFor } from './helpers.js';

/** A UUID version 7, as event ids are documented to be. */
export const UUID_V7_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

/** A fresh temp dir (for a broker's data_dir); remove it with `removeDir`. */
export function tempDir(prefix = 'vestnik-wh-') {
  return mkdtempSync(join(tmpdir(), prefix));
}

export function removeDir(dir) {
  if (dir) rmSync(dir, { recursive: true, force: true });
}

// ---------------------------------------------------------------------------------------------
// Receiver

/**
 * Starts a webhook receiver for `app` (`{id, key, secret}`) on 127.0.0.1 (port 0 unless given).
 *
 * Every request is recorded in `requests` as
 * `{at, method, url, headers, rawBody, valid, status, events, headerIds, attempt}`; the events of
 * requests answered 2xx are appended to `events` (each with `_at`, the arrival time in ms, and
 * `_req`, its request). A request whose signature the SDK rejects is answered 401.
 */
export async function startReceiver(app, { port = 0, path = '/pusher/webhook' } = {}) {
  const pusher = new PusherServer({ appId: app.id, key: app.key, secret: app.secret });
  const sockets = new Set();
  let server = null;
  let failures = [];

  const r = {
    app,
    port,
    path,
    requests: [],
    events: [],
    get url() {
      return `http://127.0.0.1:${r.port}${path}`;
    },
    get listening() {
      return server !== null;
    },

    /** Answer the next `n` requests with `status` (default 500), then 200 again. */
    failNext(n, status = 500) {
      failures = Array(n).fill(status);
    },

    /** Listens (again) on `r.port`: the same port after `close()`. */
    async open() {
      if (server) return r;
      const s = createServer(handle);
      s.on('connection', (sock) => {
        sockets.add(sock);
        sock.on('close', () => sockets.delete(sock));
      });
      s.listen(r.port, '127.0.0.1');
      await once(s, 'listening');
      r.port = s.address().port;
      server = s;
      return r;
    },

    /** Stops listening and drops every open connection: requests now get "connection refused". */
    async close() {
      const s = server;
      if (!s) return;
      server = null;
      const closed = once(s, 'close');
      s.close();
      for (const sock of sockets) sock.destroy();
      sockets.clear();
      await closed;
    },

    /** Count of accepted deliveries of each event id. */
    idCounts() {
      const m = new Map();
      for (const e of r.events) m.set(e.id, (m.get(e.id) ?? 0) + 1);
      return m;
    },

    /** Accepted events matching `pred`. */
    find(pred) {
      return r.events.filter(pred);
    },

    /** Resolves with the first `count` accepted events matching `pred`. */
    async waitEvents(pred, count = 1, timeoutMs = 5000, what = 'webhook events') {
      return waitFor(
        () => {
          const got = r.events.filter(pred);
          return got.length >= count ? got.slice(0, count) : null;
        },
        timeoutMs,
        `${count} x ${what}`,
        () => r.describe(),
      );
    },

    /** Resolves with the first accepted event matching `pred`. */
    async waitEvent(pred, timeoutMs = 5000, what = 'webhook event') {
      const [e] = await r.waitEvents(pred, 1, timeoutMs, what);
      return e;
    },

    describe() {
      const reqs = r.requests
        .slice(-15)
        .map((q) => `${q.status} attempt=${q.attempt} valid=${q.valid} ${q.rawBody.slice(0, 400)}`)
        .join('\n    ');
      return `receiver :${r.port} got ${r.requests.length} request(s), ${r.events.length} event(s); last:\n    ${reqs || '(none)'}`;
    },
  };

  function handle(req, res) {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const rawBody = Buffer.concat(chunks).toString('utf8');
      const webhook = pusher.webhook({ headers: req.headers, rawBody });
      const valid = req.method === 'POST' && req.url === path && webhook.isValid();
      let status = valid ? 200 : 401;
      if (valid && failures.length > 0) status = failures.shift();
      const headerIds = (req.headers['x-vestnik-webhook-id'] ?? '').split(',').filter(Boolean);
      const record = {
        at: Date.now(),
        method: req.method,
        url: req.url,
        headers: req.headers,
        rawBody,
        valid,
        status,
        events: valid ? webhook.getEvents() : [],
        timeMs: valid ? webhook.getData().time_ms : undefined,
        headerIds,
        attempt: req.headers['x-vestnik-webhook-attempt'],
      };
      r.requests.push(record);
      if (status >= 200 && status < 300) {
        for (const e of record.events) r.events.push({ ...e, _at: record.at, _req: record });
      }
      res.writeHead(status, { 'content-type': 'text/plain' });
      res.end(status === 200 ? 'ok' : `status ${status}`);
    });
  }

  return r.open();
}

/** A receiver that is down: it got a port, then closed. `open()` brings it up on that port. */
export async function downReceiver(app, opts) {
  const r = await startReceiver(app, opts);
  await r.close();
  return r;
}

// ---------------------------------------------------------------------------------------------
// Broker with webhook config

function tomlValue(v) {
  if (typeof v === 'string') return JSON.stringify(v);
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  if (Array.isArray(v)) return `[${v.map(tomlValue).join(', ')}]`;
  if (v && typeof v === 'object') {
    return `{ ${Object.entries(v)
      .map(([k, x]) => `${JSON.stringify(k)} = ${tomlValue(x)}`)
      .join(', ')} }`;
  }
  throw new Error(`cannot encode ${v} as TOML`);
}

/**
 * TOML for `[webhooks]` settings and apps, each app with an optional `webhooks` array of targets
 * (`{url, event_types?, channel_prefix?, channel_suffix?, headers?}`).
 */
export function webhookConfigToml({ apps, webhooks = {}, server = {} }) {
  const lines = ['[server]'];
  for (const [k, v] of Object.entries(server)) lines.push(`${k} = ${tomlValue(v)}`);
  lines.push('', '[webhooks]');
  for (const [k, v] of Object.entries(webhooks)) lines.push(`${k} = ${tomlValue(v)}`);
  for (const app of apps) {
    const { webhooks: targets = [], ...rest } = app;
    lines.push('', '[[apps]]');
    for (const [k, v] of Object.entries(rest)) lines.push(`${k} = ${tomlValue(v)}`);
    for (const t of targets) {
      lines.push('', '[[apps.webhooks]]');
      for (const [k, v] of Object.entries(t)) lines.push(`${k} = ${tomlValue(v)}`);
    }
  }
  return lines.join('\n') + '\n';
}

/**
 * Spawns the broker on 127.0.0.1:0. With `apps`, writes a config file (see `webhookConfigToml`);
 * without, runs with no config (the default app). `args` are extra flags, `env` extra variables
 * (every inherited `VESTNIK_*` variable is removed first). Resolves once the port is logged.
 *
 * The broker object has `port`, `httpUrl`, `wsUrl(path)`, `stderr`, `exited`, `exitInfo`,
 * `signal(sig)` and `stop(signal = 'SIGKILL')` (waits for the exit). The data dir is the caller's.
 */
export async function startWebhookBroker({ apps, webhooks, server, args = [], env = {} } = {}) {
  const bin = brokerBinary();
  const cfgDir = mkdtempSync(join(tmpdir(), 'vestnik-wh-cfg-'));
  const argv = ['--host', '127.0.0.1', '--port', '0', ...args];
  if (apps) {
    const configPath = join(cfgDir, 'vestnik.toml');
    writeFileSync(configPath, webhookConfigToml({ apps, webhooks, server }));
    argv.unshift('--config', configPath);
  }
  const baseEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('VESTNIK_')));
  const proc = spawn(bin, argv, {
    env: { RUST_LOG: 'info', ...baseEnv, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
    cwd: cfgDir, // a default ./vestnik-data would land here, not in the repo
  });
  reapOnExit(proc);
  let stderr = '';
  let exitInfo = null;
  const exited = new Promise((res) => proc.on('exit', (code, signal) => res({ code, signal })));
  exited.then((info) => {
    exitInfo = info;
  });
  proc.stdout.resume();
  proc.stderr.setEncoding('utf8');
  const port = await new Promise((res, rej) => {
    let found = false;
    const timer = setTimeout(() => rej(new Error(`broker did not report its port within 15 s.\nstderr:\n${stderr}`)), 15000);
    proc.stderr.on('data', (d) => {
      stderr = (stderr + d).slice(-200000);
      const m = !found && LISTENING_RE.exec(stderr);
      if (m) {
        found = true;
        clearTimeout(timer);
        res(Number(m[1]));
      }
    });
    proc.on('error', (e) => {
      clearTimeout(timer);
      rej(new Error(`could not spawn ${bin}: ${e.message}`));
    });
    exited.then(({ code, signal }) => {
      if (!found) {
        clearTimeout(timer);
        rej(new Error(`broker exited (code ${code}, signal ${signal}) before listening.\nstderr:\n${stderr}`));
      }
    });
  });

  return {
    proc,
    port,
    host: '127.0.0.1',
    httpUrl: `http://127.0.0.1:${port}`,
    wsUrl: (path) => `ws://127.0.0.1:${port}${path}`,
    get stderr() {
      return stderr;
    },
    get exitInfo() {
      return exitInfo;
    },
    exited,
    async stop(signal = 'SIGKILL') {
      if (exitInfo === null) {
        proc.kill(signal);
        const t = setTimeout(() => proc.kill('SIGKILL'), 10000);
        await exited;
        clearTimeout(t);
      }
      removeDir(cfgDir);
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Admin endpoints (signed by the official SDK, like any Pusher API call)

async function jsonOrThrow(res, what) {
  const text = await res.text();
  if (res.status !== 200) throw new Error(`${what} -> HTTP ${res.status}: ${text}`);
  return JSON.parse(text);
}

/** `GET /apps/{id}/webhooks/stats` -> the app's stats object (or null). */
export async function webhookStats(broker, app) {
  const res = await serverSdk(broker, app).get({ path: '/webhooks/stats' });
  return (await jsonOrThrow(res, 'GET webhooks/stats')).stats;
}

/** `GET /apps/{id}/webhooks/dead_letters` -> the list. */
export async function deadLetters(broker, app) {
  const res = await serverSdk(broker, app).get({ path: '/webhooks/dead_letters' });
  return (await jsonOrThrow(res, 'GET webhooks/dead_letters')).dead_letters;
}

/** `POST /apps/{id}/webhooks/dead_letters/replay` with `selection` (`{all: true}` or `{ids}`). */
export async function replayDeadLetters(broker, app, selection) {
  const res = await serverSdk(broker, app).post({ path: '/webhooks/dead_letters/replay', body: selection });
  return jsonOrThrow(res, 'POST webhooks/dead_letters/replay');
}
