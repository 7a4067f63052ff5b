// The order-tracking shop for the browser test: spawn the real `order-tracking` binary against a
// broker started by helpers.js, on a free port with a fresh SQLite file, and sign in seeded users.
//
// Reuses the broker spawn of helpers.js; this file only adds what the shop needs.

import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { APPS, REPO_ROOT, reapOnExit } from './helpers.js';

export const SHOP_LISTENING_RE = /order-tracking listening on (http:\/\/[^\s]+)/;
export const ADMIN = { login: 'shop-app', password: 'shop-admin-password' };
export const PARTNER_KEY = 'demo-partner-key';

export function shopBinary() {
  const bin = process.env.SHOP_BIN || join(REPO_ROOT, 'target', 'debug', 'order-tracking');
  if (!existsSync(bin)) {
    throw new Error(`order-tracking binary not found at ${bin}: run \`cargo build -p order-tracking\` or set SHOP_BIN`);
  }
  return bin;
}

/** Starts the shop against `broker` (app `APPS.main`) and resolves once it logs its URL. */
export async function startShop(broker, { env = {} } = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'vestnik-shop-'));
  const proc = spawn(shopBinary(), [], {
    env: {
      ...process.env,
      RUST_LOG: 'info',
      SHOP_LISTEN: '127.0.0.1:0',
      SHOP_DATABASE: join(dir, 'shop.sqlite3'),
      PUSHER_HOST: '127.0.0.1',
      PUSHER_PORT: String(broker.port),
      PUSHER_APP_ID: APPS.main.id,
      PUSHER_KEY: APPS.main.key,
      PUSHER_SECRET: APPS.main.secret,
      ...env,
    },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  reapOnExit(proc);
  let stderr = '';
  const exited = new Promise((res) => proc.on('exit', (code, signal) => res({ code, signal })));
  const url = await new Promise((res, rej) => {
    const timer = setTimeout(() => rej(new Error(`shop did not start within 15 s:\n${stderr}`)), 15000);
    proc.stderr.setEncoding('utf8');
    proc.stderr.on('data', (d) => {
      stderr = (stderr + d).slice(-100000);
      const m = SHOP_LISTENING_RE.exec(stderr);
      if (m) {
        clearTimeout(timer);
        res(m[1]);
      }
    });
    exited.then(({ code }) => {
      clearTimeout(timer);
      rej(new Error(`shop exited with ${code} before listening:\n${stderr}`));
    });
  });
  return {
    url,
    dir,
    get stderr() {
      return stderr;
    },
    async stop() {
      proc.kill('SIGKILL');
      await exited;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Signs in seeded user `userId` over HTTP and returns the session cookie header value. */
export async function sessionCookie(shop, userId) {
  const r = await fetch(`${shop.url}/login`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
    body: `user_id=${userId}`,
    redirect: 'manual',
  });
  const cookie = r.headers.get('set-cookie');
  if (r.status !== 303 || !cookie) throw new Error(`login of ${userId} answered ${r.status}`);
  return cookie.split(';')[0];
}

/** A JSON call to the shop as the holder of `cookie`; resolves with `{status, body}`. */
export async function shopCall(shop, cookie, method, path, body, headers = {}) {
  const r = await fetch(`${shop.url}${path}`, {
    method,
    headers: { ...(cookie ? { Cookie: cookie } : {}), ...(body ? { 'Content-Type': 'application/json' } : {}), ...headers },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await r.text();
  let json;
  try {
    json = JSON.parse(text);
  } catch {
    json = text;
  }
  return { status: r.status, body: json };
}

/** The Basic header of the admin API. */
export function adminAuth() {
  return { Authorization: `Basic ${Buffer.from(`${ADMIN.login}:${ADMIN.password}`).toString('base64')}` };
}

/** The one screenshot-path rule of the suites (helpers.js), re-exported for the shop's tests. */
export { screenshotPath } from './helpers.js';
