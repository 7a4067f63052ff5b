// Shared helpers for the Vestnik end-to-end suite: spawn the broker binary on an ephemeral port,
// open pusher-js / raw `ws` clients, sign HTTP API requests, and wait on conditions with timeouts.
//
// Every test file starts its own broker (node --test runs each file in its own process) with the
// standard config below, and stops it in `after`.

import { spawn } from 'node:child_process';
import { createHash, createHmac } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import PusherServer from 'pusher';
import PusherJS from 'pusher-js';
import WebSocket from 'ws';

const here = dirname(fileURLToPath(import.meta.url));
export const REPO_ROOT = resolve(here, '..', '..');

/**
 * Where a test saves the screenshot `name` (for example `console.png`): `target/screenshots/`, so a
 * test run never changes the checkout, or `docs/` when VESTNIK_UPDATE_DOCS_SCREENSHOTS=1 (what
 * scripts/screenshots.sh sets to refresh the pictures the docs show).
 */
export function screenshotPath(name) {
  const docs = process.env.VESTNIK_UPDATE_DOCS_SCREENSHOTS === '1';
  const dir = docs ? join(REPO_ROOT, 'docs') : join(REPO_ROOT, 'target', 'screenshots');
  mkdirSync(dir, { recursive: true });
  return join(dir, name);
}

// ---------------------------------------------------------------------------------------------
// Child processes die with the test file

const children = new Set();
let reaperInstalled = false;

/**
 * Kills `proc` (a broker, shop or php -S) when this test file's process ends, however it ends: a
 * normal exit, or the SIGTERM/SIGINT node's test runner sends a file that ran out of time. Without
 * it such a file leaves its servers running. Returns `proc`.
 */
export function reapOnExit(proc) {
  children.add(proc);
  proc.on('exit', () => children.delete(proc));
  if (!reaperInstalled) {
    reaperInstalled = true;
    const killAll = () => {
      for (const child of children) child.kill('SIGKILL');
    };
    process.on('exit', killAll);
    for (const [signal, code] of [['SIGTERM', 143], ['SIGINT', 130]]) {
      process.on(signal, () => {
        killAll();
        process.exit(code);
      });
    }
  }
  return proc;
}

export const SOCKET_ID_RE = /^\d+\.\d+$/;
export const LISTENING_RE = /listening on https?:\/\/[^:]+:(\d+)/;
// 32 bytes, base64: the master key the app would use for private-encrypted- channels.
export const ENCRYPTION_MASTER_KEY_BASE64 = Buffer.alloc(32, 7).toString('base64');

/** The apps of the standard config. Ids are numeric so every official SDK accepts them. */
export const APPS = {
  main: { id: '1001', key: 'main-key', secret: 'main-secret' },
  disabled: { id: '1002', key: 'disabled-key', secret: 'disabled-secret', enabled: false },
  quota: { id: '1003', key: 'quota-key', secret: 'quota-secret', max_connections: 1 },
  noclient: { id: '1004', key: 'noclient-key', secret: 'noclient-secret', client_events: false },
  signin: { id: '1005', key: 'signin-key', secret: 'signin-secret', signin_timeout: 2 },
  origins: {
    id: '1006',
    key: 'origins-key',
    secret: 'origins-secret',
    allowed_origins: ['https://good.example.com', '*.trusted.test'],
  },
  small: {
    id: '1007',
    key: 'small-key',
    secret: 'small-secret',
    max_presence_members: 2,
    max_user_info_bytes: 100,
  },
  counts: { id: '1008', key: 'counts-key', secret: 'counts-secret', subscription_count: true },
  cachettl: { id: '1009', key: 'cachettl-key', secret: 'cachettl-secret', cache_ttl: 1 },
};

// ---------------------------------------------------------------------------------------------
// Generic waiting

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * Polls `predicate` (sync or async) until it returns a truthy value, and resolves with that value.
 * A predicate that throws counts as "not yet"; the last error is reported on timeout, with what
 * `describe()` (sync or async) says.
 */
export async function waitFor(predicate, timeoutMs = 5000, what = 'condition', describe) {
  const deadline = Date.now() + timeoutMs;
  let lastErr;
  for (;;) {
    try {
      const v = await predicate();
      if (v) return v;
    } catch (e) {
      lastErr = e;
    }
    if (Date.now() > deadline) {
      let msg = `timed out after ${timeoutMs} ms waiting for ${what}`;
      if (lastErr) msg += `\n  last error: ${lastErr.message ?? lastErr}`;
      if (describe) msg += `\n  ${await describe()}`;
      throw new Error(msg);
    }
    await sleep(10);
  }
}

/** Resolves like `promise`, or rejects with `message()` after `timeoutMs` (the timer is cleared). */
export function withTimeout(promise, timeoutMs, message) {
  let timer;
  const timeout = new Promise((_, rej) => {
    timer = setTimeout(() => rej(new Error(typeof message === 'function' ? message() : message)), timeoutMs);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

let uniqueCounter = 0;
/** A channel/user name unique within this test process. */
export function uniq(prefix) {
  uniqueCounter += 1;
  return `${prefix}${process.pid}-${uniqueCounter}-${Math.random().toString(36).slice(2, 7)}`;
}

// ---------------------------------------------------------------------------------------------
// Broker process

function tomlValue(v) {
  if (typeof v === 'string') return JSON.stringify(v);
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  if (Array.isArray(v)) return `[${v.map(tomlValue).join(', ')}]`;
  throw new Error(`cannot encode ${v} as TOML`);
}

/**
 * Builds the TOML config text for the given apps (array of app objects) and [server] keys.
 * `tables` adds flat top-level tables, e.g. `{ cluster: { adapter: 'redis', prefix: 'x' } }`.
 */
export function configToml(apps = Object.values(APPS), server = {}, tables = {}) {
  const lines = ['[server]'];
  for (const [k, v] of Object.entries(server)) lines.push(`${k} = ${tomlValue(v)}`);
  for (const [table, entries] of Object.entries(tables)) {
    lines.push('', `[${table}]`);
    for (const [k, v] of Object.entries(entries)) lines.push(`${k} = ${tomlValue(v)}`);
  }
  for (const app of apps) tableLines(lines, 'apps', app, true);
  return lines.join('\n') + '\n';
}

const isTable = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);
const isTableArray = (v) => Array.isArray(v) && v.length > 0 && v.every(isTable);

/**
 * Appends `[path]` (or `[[path]]` for an item of an array of tables) with its plain keys first,
 * then its sub-tables (`history: {size: 5}` becomes `[apps.history]`) and arrays of tables
 * (`channels: [{prefix: 'x'}]` becomes `[[apps.history.channels]]`).
 */
function tableLines(lines, path, table, arrayItem = false) {
  lines.push('', arrayItem ? `[[${path}]]` : `[${path}]`);
  const nested = [];
  for (const [k, v] of Object.entries(table)) {
    if (isTable(v) || isTableArray(v)) nested.push([k, v]);
    else lines.push(`${k} = ${tomlValue(v)}`);
  }
  for (const [k, v] of nested) {
    if (isTable(v)) tableLines(lines, `${path}.${k}`, v);
    else for (const item of v) tableLines(lines, `${path}.${k}`, item, true);
  }
}

export function brokerBinary() {
  const bin = process.env.VESTNIK_BIN || join(REPO_ROOT, 'target', 'debug', 'vestnik');
  if (!existsSync(bin)) {
    throw new Error(
      `Vestnik binary not found at ${bin}.\n` +
        `Build it first: (cd ${REPO_ROOT} && cargo build -p vestnik-server), ` +
        `or point VESTNIK_BIN at a built binary.`,
    );
  }
  return bin;
}

/**
 * Starts the broker with a temp TOML config on 127.0.0.1:0 and resolves once its stderr says
 * `listening on http://127.0.0.1:PORT`. `tables` adds top-level TOML tables (see `configToml`),
 * `args` extra command-line flags, `port` a fixed port instead of an ephemeral one (to restart a
 * broker where its clients expect it).
 */
export async function startBroker({ apps = Object.values(APPS), server = {}, tables = {}, args = [], env = {}, port: fixedPort = 0 } = {}) {
  const bin = brokerBinary();
  const dir = mkdtempSync(join(tmpdir(), 'vestnik-e2e-'));
  const configPath = join(dir, 'vestnik.toml');
  // Each broker's data dir (the webhook spool, which always runs with an app database) is its own
  // temp dir unless the test names one: two nodes must not share a spool, nor write in the repo.
  const withData = { ...tables, webhooks: { data_dir: join(dir, 'data'), ...(tables.webhooks || {}) } };
  writeFileSync(configPath, configToml(apps, server, withData));

  const proc = reapOnExit(
    spawn(bin, ['--config', configPath, '--host', '127.0.0.1', '--port', String(fixedPort), ...args], {
      // Usage files go to the temp dir, never into the repository's working tree.
      env: { RUST_LOG: 'info', VESTNIK_USAGE_DIR: join(dir, 'usage'), ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    }),
  );
  let stderr = '';
  let stdout = '';
  const exited = new Promise((res) => {
    proc.on('exit', (code, signal) => res({ code, signal }));
  });
  let exitInfo = null;
  exited.then((info) => {
    exitInfo = info;
  });
  proc.stdout.setEncoding('utf8');
  proc.stdout.on('data', (d) => {
    stdout = (stdout + d).slice(-20000);
  });
  proc.stderr.setEncoding('utf8');
  const port = await new Promise((res, rej) => {
    const timer = setTimeout(() => {
      rej(new Error(`broker did not report its port within 15 s.\nstderr:\n${stderr}\nstdout:\n${stdout}`));
    }, 15000);
    let found = false;
    proc.stderr.on('data', (d) => {
      stderr = (stderr + d).slice(-200000);
      if (!found) {
        const m = LISTENING_RE.exec(stderr);
        if (m) {
          found = true;
          clearTimeout(timer);
          res(Number(m[1]));
        }
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

  const broker = {
    proc,
    port,
    host: '127.0.0.1',
    configPath,
    httpUrl: `http://127.0.0.1:${port}`,
    wsUrl: (path) => `ws://127.0.0.1:${port}${path}`,
    get stderr() {
      return stderr;
    },
    get exitInfo() {
      return exitInfo;
    },
    exited,
    /**
     * Sends `signal` to the broker process only and resolves once it exited; clients (on this or
     * other brokers) stay open and the temp dir stays until `stop()`.
     */
    async kill(signal = 'SIGKILL') {
      if (exitInfo === null) {
        proc.kill(signal);
        await exited;
      }
      return exitInfo;
    },
    /** Kills the broker (SIGKILL unless told otherwise) and removes its temp dir. */
    async stop(signal = 'SIGKILL') {
      for (const c of [...openClients]) closeQuietly(c);
      openClients.clear();
      if (exitInfo === null) {
        proc.kill(signal);
        const t = setTimeout(() => proc.kill('SIGKILL'), 10000);
        await exited;
        clearTimeout(t);
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return broker;
}

// ---------------------------------------------------------------------------------------------
// Clients are tracked so `broker.stop()` closes whatever a failing test left open.

const openClients = new Set();

function closeQuietly(c) {
  try {
    if (c instanceof RawClient) c.terminate();
    else c.disconnect();
  } catch {
    /* already closed */
  }
}

// pusher-js quirk (not a broker issue): pusher-js may call close() on a faye-websocket client that
// is already closed (after a 4000-4099 close) or whose connect attempt already failed (reconnecting
// to a stopped broker). faye then arms a 30 s close timer that is never cleared and keeps the test
// process alive. Skip close() on a closed socket and unref that fallback timer otherwise.
{
  const runtime = PusherJS.Runtime;
  const create = runtime.createWebSocket.bind(runtime);
  runtime.createWebSocket = (url) => {
    const socket = create(url);
    const close = socket.close;
    socket.close = function patchedClose(...args) {
      if (this.readyState === 3 /* CLOSED */) return undefined;
      const result = close.apply(this, args);
      this._closeTimer?.unref?.();
      return result;
    };
    return socket;
  };
}

/** The official Node server SDK configured against the broker. */
export function serverSdk(broker, app = APPS.main, overrides = {}) {
  return new PusherServer({
    appId: app.id,
    key: app.key,
    secret: app.secret,
    host: '127.0.0.1',
    port: broker.port,
    useTLS: false,
    encryptionMasterKeyBase64: ENCRYPTION_MASTER_KEY_BASE64,
    timeout: 5000,
    ...overrides,
  });
}

/**
 * Opens a pusher-js (Node build) client. Channel authorization and user authentication are signed
 * in-process with the `pusher` SDK:
 * - `presence`: `{user_id, user_info}` used as channel_data for presence- channels;
 * - `user`: user data (`{id, user_info?, watchlist?}`) for `pusher.signin()`;
 * - `authorize(socketId, channelName)` / `authenticate(socketId)`: override the signing (e.g. to
 *   return a bad signature).
 */
export function openPusher(broker, { app = APPS.main, presence, user, authorize, authenticate, options = {} } = {}) {
  const sdk = serverSdk(broker, app);
  const client = new PusherJS(app.key, {
    cluster: 'mt1',
    wsHost: '127.0.0.1',
    wsPort: broker.port,
    forceTLS: false,
    enabledTransports: ['ws'],
    channelAuthorization: {
      customHandler: ({ socketId, channelName }, callback) => {
        try {
          if (authorize) return callback(null, authorize(socketId, channelName));
          const data = channelName.startsWith('presence-') ? presence : undefined;
          callback(null, sdk.authorizeChannel(socketId, channelName, data));
        } catch (e) {
          callback(e, null);
        }
      },
    },
    userAuthentication: {
      customHandler: ({ socketId }, callback) => {
        try {
          if (authenticate) return callback(null, authenticate(socketId));
          if (!user) throw new Error('openPusher: no `user` given for sign-in');
          callback(null, sdk.authenticateUser(socketId, user));
        } catch (e) {
          callback(e, null);
        }
      },
    },
    ...options,
  });
  openClients.add(client);
  const origDisconnect = client.disconnect.bind(client);
  client.disconnect = () => {
    openClients.delete(client);
    origDisconnect();
  };
  // Record every decoded message and every connection error on the client for assertions.
  client.received = [];
  client.errors = [];
  client.connection.bind('message', (ev) => client.received.push(ev));
  client.connection.bind('error', (err) => client.errors.push(err));
  return client;
}

/** Resolves with the socket id once the pusher-js client is connected. */
export async function connected(client, timeoutMs = 5000) {
  await waitFor(() => client.connection.state === 'connected', timeoutMs, 'pusher-js state "connected"', () =>
    `state=${client.connection.state} errors=${JSON.stringify(client.errors)}`,
  );
  return client.connection.socket_id;
}

/**
 * Subscribes with pusher-js and resolves with `{ok: true, channel, data}` on
 * pusher:subscription_succeeded or `{ok: false, channel, error}` on pusher:subscription_error.
 */
export function subscribeResult(client, name, timeoutMs = 5000) {
  const channel = client.subscribe(name);
  return new Promise((res, rej) => {
    const timer = setTimeout(
      () =>
        rej(
          new Error(
            `pusher-js subscription to ${name} neither succeeded nor failed within ${timeoutMs} ms; ` +
              `received: ${JSON.stringify(client.received.slice(-10))}`,
          ),
        ),
      timeoutMs,
    );
    channel.bind('pusher:subscription_succeeded', (data) => {
      clearTimeout(timer);
      res({ ok: true, channel, data });
    });
    channel.bind('pusher:subscription_error', (error) => {
      clearTimeout(timer);
      res({ ok: false, channel, error });
    });
  });
}

/** Subscribes with pusher-js and resolves with the channel; rejects on subscription_error. */
export async function subscribe(client, name, timeoutMs = 5000) {
  const r = await subscribeResult(client, name, timeoutMs);
  if (!r.ok) throw new Error(`subscription to ${name} failed: ${JSON.stringify(r.error)}`);
  return r.channel;
}

/** Extracts a Pusher error code from whatever pusher-js emitted on connection 'error'. */
export function pusherJsErrorCode(err) {
  return err?.data?.code ?? err?.error?.data?.code ?? null;
}

// ---------------------------------------------------------------------------------------------
// Raw WebSocket client

function decodeFrame(text) {
  const frame = JSON.parse(text);
  let payload = frame.data;
  if (typeof payload === 'string') {
    try {
      payload = JSON.parse(payload);
    } catch {
      /* plain string data */
    }
  }
  return { ...frame, payload, raw: text };
}

/**
 * A raw `ws` client that records every frame as `{event, channel, data, payload, raw}` where
 * `payload` is `data` JSON-decoded when it was a string.
 */
export class RawClient {
  constructor(ws) {
    this.ws = ws;
    this.frames = [];
    this.nonJson = [];
    this.closed = null;
    this.socketId = null;
    this.closedPromise = new Promise((res) => {
      ws.on('close', (code, reason) => {
        this.closed = { code, reason: reason.toString() };
        openClients.delete(this);
        res(this.closed);
      });
    });
    ws.on('message', (data, isBinary) => {
      const text = data.toString('utf8');
      try {
        const f = decodeFrame(text);
        f.binary = isBinary;
        this.frames.push(f);
        if (f.event === 'pusher:connection_established' && f.payload?.socket_id) this.socketId = f.payload.socket_id;
      } catch {
        this.nonJson.push(text);
      }
    });
    ws.on('error', () => {
      /* surfaced through close */
    });
    openClients.add(this);
  }

  /** Opens `path` (default `/app/{key}?protocol=7&client=js&version=8.4.0&flash=false`). */
  static async open(broker, { app = APPS.main, key, path, origin, headers, wsOptions = {}, handshake = true, timeoutMs = 5000 } = {}) {
    const p = path ?? `/app/${key ?? app.key}?protocol=7&client=js&version=8.4.0&flash=false`;
    const ws = new WebSocket(broker.wsUrl(p), { origin, headers, handshakeTimeout: timeoutMs, ...wsOptions });
    const client = new RawClient(ws);
    await new Promise((res, rej) => {
      ws.once('open', res);
      ws.once('unexpected-response', (_req, resp) =>
        rej(new Error(`WebSocket upgrade to ${p} refused with HTTP ${resp.statusCode}`)),
      );
      ws.once('error', rej);
    });
    if (handshake) {
      await client.waitFor((f) => f.event === 'pusher:connection_established', { timeoutMs, what: 'connection_established' });
    }
    return client;
  }

  describe() {
    const frames = this.frames.map((f) => f.raw.slice(0, 300)).join('\n    ');
    return `frames so far:\n    ${frames || '(none)'}\n  closed: ${JSON.stringify(this.closed)}`;
  }

  /** Index to pass as `since` so a later wait only looks at frames received after now. */
  mark() {
    return this.frames.length;
  }

  /** Resolves with the first frame (at index >= since) matching `pred`. */
  waitFor(pred, { since = 0, timeoutMs = 5000, what = 'frame' } = {}) {
    return waitFor(
      () => this.frames.slice(since).find(pred),
      timeoutMs,
      what,
      () => this.describe(),
    );
  }

  waitEvent(event, channel, opts = {}) {
    return this.waitFor((f) => f.event === event && (channel === undefined || f.channel === channel), {
      what: `${event}${channel ? ` on ${channel}` : ''}`,
      ...opts,
    });
  }

  /** Frames (since `since`) matching `pred`. */
  find(pred, since = 0) {
    return this.frames.slice(since).filter(pred);
  }

  send(obj) {
    this.ws.send(JSON.stringify(obj));
  }

  sendRaw(data, opts) {
    this.ws.send(data, opts);
  }

  /** Sends pusher:subscribe and resolves with succeeded or subscription_error frame for `channel`. */
  async subscribe(channel, { auth, channel_data, timeoutMs = 5000 } = {}) {
    const since = this.mark();
    const data = { channel, auth: auth ?? '' };
    if (channel_data !== undefined) data.channel_data = channel_data;
    this.send({ event: 'pusher:subscribe', data });
    return this.waitFor(
      (f) =>
        f.channel === channel &&
        (f.event === 'pusher_internal:subscription_succeeded' || f.event === 'pusher:subscription_error'),
      { since, timeoutMs, what: `subscription result for ${channel}` },
    );
  }

  /** Subscribes and fails unless pusher_internal:subscription_succeeded arrives. */
  async subscribeOk(channel, opts) {
    const f = await this.subscribe(channel, opts);
    if (f.event !== 'pusher_internal:subscription_succeeded') {
      throw new Error(`expected subscription_succeeded for ${channel}, got ${f.raw}`);
    }
    return f;
  }

  /** Subscribes to a private-/presence-/encrypted- channel with a signature from the SDK. */
  async subscribeSigned(sdk, channel, presenceData) {
    const a = sdk.authorizeChannel(this.socketId, channel, presenceData);
    return this.subscribe(channel, { auth: a.auth, channel_data: a.channel_data });
  }

  /** Sends pusher:signin signed by the SDK and waits for pusher:signin_success. */
  async signin(sdk, userData) {
    const since = this.mark();
    const a = sdk.authenticateUser(this.socketId, userData);
    this.send({ event: 'pusher:signin', data: { auth: a.auth, user_data: a.user_data } });
    return this.waitEvent('pusher:signin_success', undefined, { since });
  }

  /** pusher:ping -> pusher:pong round trip; proves the socket is open and served. */
  async ping(timeoutMs = 5000) {
    const since = this.mark();
    this.send({ event: 'pusher:ping', data: {} });
    return this.waitEvent('pusher:pong', undefined, { since, timeoutMs });
  }

  /** Resolves with `{code, reason}` once the server closed the socket. */
  waitClose(timeoutMs = 5000) {
    return withTimeout(this.closedPromise, timeoutMs, () => `socket not closed within ${timeoutMs} ms; ${this.describe()}`);
  }

  close() {
    openClients.delete(this);
    this.ws.close();
  }

  terminate() {
    openClients.delete(this);
    this.ws.terminate();
  }
}

/** Opens a raw client and waits for its handshake. */
export function openRaw(broker, opts) {
  return RawClient.open(broker, opts);
}

/**
 * Opens a connection that the server is expected to refuse: resolves with
 * `{error: <pusher:error frame or undefined>, close: {code, reason}, frames}`.
 */
export async function openRefused(broker, opts) {
  const c = await RawClient.open(broker, { ...opts, handshake: false });
  const close = await c.waitClose(opts.timeoutMs ?? 5000);
  const error = c.frames.find((f) => f.event === 'pusher:error');
  return { error, close, frames: c.frames, client: c };
}

// ---------------------------------------------------------------------------------------------
// Signatures and raw HTTP

export function hmacHex(secret, text) {
  return createHmac('sha256', secret).update(text).digest('hex');
}

export function md5Hex(text) {
  return createHash('md5').update(text).digest('hex');
}

/**
 * Sends a signed HTTP API request built by hand (for cases the SDK can't produce: malformed JSON,
 * expired timestamps, wrong secrets, GET with body_md5 ...). Resolves with `{status, text, json, headers}`.
 *
 * opts: `app`, `params` (extra query params, signed), `body` (string, sent verbatim), `timestamp`,
 * `secret` (signing secret), `key` (auth_key), `bodyMd5` (override; `null` = omit even with a body),
 * `signedPath` (path used in the string to sign, default = path), `tamper(query)`.
 */
export async function signedRequest(broker, method, path, opts = {}) {
  const app = opts.app ?? APPS.main;
  const params = {
    auth_key: opts.key ?? app.key,
    auth_timestamp: String(opts.timestamp ?? Math.floor(Date.now() / 1000)),
    auth_version: '1.0',
    ...(opts.params ?? {}),
  };
  if (opts.bodyMd5 !== undefined) {
    if (opts.bodyMd5 !== null) params.body_md5 = opts.bodyMd5;
  } else if (opts.body !== undefined && opts.body !== '') {
    params.body_md5 = md5Hex(opts.body);
  }
  const keys = Object.keys(params).sort();
  const toSign = keys.map((k) => `${k}=${params[k]}`).join('&');
  const signature = hmacHex(opts.secret ?? app.secret, [method, opts.signedPath ?? path, toSign].join('\n'));
  let query = keys.map((k) => `${k}=${encodeURIComponent(params[k])}`).join('&') + `&auth_signature=${signature}`;
  if (opts.tamper) query = opts.tamper(query);
  const res = await fetch(`${broker.httpUrl}${path}?${query}`, {
    method,
    body: opts.body,
    headers: opts.body !== undefined ? { 'content-type': 'application/json' } : {},
  });
  const text = await res.text();
  let json;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, text, json, headers: res.headers };
}

/** Runs an SDK call expected to fail; resolves with `{status, body, json}` of the RequestError. */
export async function expectHttpError(promiseOrFn) {
  let result;
  try {
    result = await (typeof promiseOrFn === 'function' ? promiseOrFn() : promiseOrFn);
  } catch (e) {
    if (e.status === undefined) throw e;
    let json;
    try {
      json = JSON.parse(e.body);
    } catch {
      json = undefined;
    }
    return { status: e.status, body: e.body, json };
  }
  const text = result && typeof result.text === 'function' ? await result.text() : String(result);
  throw new Error(`expected an HTTP error, got status ${result?.status} body ${text}`);
}

/** GET through the SDK and JSON-decode the 200 body. */
export async function sdkGetJson(sdk, path, params) {
  const res = await sdk.get({ path, params });
  if (res.status !== 200) throw new Error(`GET ${path} -> ${res.status}`);
  return res.json();
}
