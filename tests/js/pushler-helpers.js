// Helpers for the Pushler-compatibility suites (pushler-*.test.js):
// - `startPhp`: `php -S` on 127.0.0.1:0 serving tests/pushler/cookbook (the cookbook's PHP, its pages
//   and router.php), with the broker's address and the app's credentials in its environment and a
//   fresh SQLite file for the cookbook's database;
// - `postForm`: a form POST as a browser sends it (optionally with cookies);
// - `compileVueSfc`: the cookbook's OrderTracker.vue compiled the way a Vite build would (Vue's own
//   compiler-sfc, then TypeScript's transpiler to strip the types) into an ES module;
// - `runPhpClient`: one PushlerClient method call through tests/pushler/php-call.php.

import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

import ts from 'typescript';
import { compileScript, compileStyle, parse } from 'vue/compiler-sfc';

import { REPO_ROOT, reapOnExit } from './helpers.js';

export const COOKBOOK_DIR = join(REPO_ROOT, 'tests', 'pushler', 'cookbook');
const PHP_STARTED_RE = /Development Server \(http:\/\/127\.0\.0\.1:(\d+)\) started/;

/**
 * Compiles a Vue single-file component (`<script setup lang="ts">`, scoped `<style>`) into an ES
 * module's source that also adds its CSS to the page, as a bundler would.
 */
export function compileVueSfc(source, filename) {
  const { descriptor, errors } = parse(source, { filename });
  if (errors.length) throw new Error(`${filename}: ${errors.map((e) => e.message).join('; ')}`);
  const id = 'cookbook';
  const scoped = descriptor.styles.some((style) => style.scoped);
  const script = compileScript(descriptor, {
    id,
    inlineTemplate: true,
    genDefaultAs: '__sfc',
    templateOptions: { scoped, id, compilerOptions: { scopeId: scoped ? `data-v-${id}` : undefined } },
  });
  const css = descriptor.styles
    .map((style) => {
      const out = compileStyle({ source: style.content, filename, id: `data-v-${id}`, scoped: style.scoped });
      if (out.errors.length) throw new Error(`${filename} style: ${out.errors.join('; ')}`);
      return out.code;
    })
    .join('\n');
  const js = ts.transpileModule(script.content, {
    compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2020 },
    fileName: `${filename}.ts`,
  }).outputText;
  const addStyle = `{ const s = document.createElement('style'); s.textContent = ${JSON.stringify(css)}; document.head.appendChild(s); }\n`;
  const scopeId = scoped ? `__sfc.__scopeId = ${JSON.stringify(`data-v-${id}`)};\n` : '';
  return `${addStyle}${js}\n${scopeId}export default __sfc;\n`;
}

/**
 * Starts `php -S` for the cookbook against `broker` with `app`'s credentials. Resolves with
 * `{port, url, dir, stop(), log}`; `env` adds variables, `compiledVue` is the module router.php
 * serves at /OrderTracker.js (written to the server's temp dir).
 */
export async function startPhp(broker, app, { env = {}, compiledVue } = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'vestnik-cookbook-'));
  if (compiledVue !== undefined) {
    const path = join(dir, 'OrderTracker.js');
    writeFileSync(path, compiledVue);
    env = { ...env, COOKBOOK_COMPILED_VUE: path };
  }
  const proc = spawn('php', ['-S', '127.0.0.1:0', '-t', COOKBOOK_DIR, join(COOKBOOK_DIR, 'router.php')], {
    env: {
      ...process.env,
      VESTNIK_HOST: '127.0.0.1',
      VESTNIK_PORT: String(broker.port),
      PUSHLER_APP_KEY: app.key,
      PUSHLER_APP_SECRET: app.secret,
      COOKBOOK_DB: join(dir, 'cookbook.sqlite'),
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  reapOnExit(proc);
  let log = '';
  const exited = new Promise((r) => proc.on('exit', r));
  const port = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`php -S did not start within 10 s:\n${log}`)), 10000);
    const onData = (d) => {
      log = (log + d).slice(-50000);
      const m = PHP_STARTED_RE.exec(log);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    };
    proc.stdout.on('data', onData);
    proc.stderr.on('data', onData);
    proc.on('error', (e) => {
      clearTimeout(timer);
      reject(new Error(`cannot run php (scripts/test.sh installs php-cli): ${e.message}`));
    });
    exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`php -S exited (${code}) before starting:\n${log}`));
    });
  });
  return {
    port,
    url: `http://127.0.0.1:${port}`,
    dir,
    get log() {
      return log;
    },
    async stop() {
      proc.kill('SIGKILL');
      await exited;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** POSTs `fields` form-encoded to `url` with `cookies` (`{name: value}`); resolves `{status, text, json}`. */
export async function postForm(url, fields, cookies = {}) {
  const cookie = Object.entries(cookies)
    .map(([k, v]) => `${k}=${encodeURIComponent(v)}`)
    .join('; ');
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', ...(cookie ? { cookie } : {}) },
    body: new URLSearchParams(fields).toString(),
  });
  const text = await res.text();
  let json;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, text, json };
}

const execFileP = promisify(execFile);

/**
 * Calls `method(...args)` on a PHP PushlerClient built with `key`, `secret` and `options` (the
 * constructor's third argument). Resolves with `{result}` or `{exception, status, error, message}`.
 */
export async function runPhpClient({ key, secret, options }, method, args = []) {
  const { stdout } = await execFileP('php', [join(REPO_ROOT, 'tests', 'pushler', 'php-call.php')], {
    env: { ...process.env, PHP_CALL: JSON.stringify({ key, secret, options, method, args }) },
    timeout: 15000,
  });
  return JSON.parse(stdout);
}

/** Reads a file of the cookbook copy. */
export function cookbookFile(name) {
  return readFileSync(join(COOKBOOK_DIR, name), 'utf8');
}
