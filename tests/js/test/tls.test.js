// Native TLS: with tls_cert/tls_key the broker's one port speaks wss:// and https://. The certificate
// is made here with openssl, signed by a throw-away CA that only the test's clients trust: pusher-js
// (forceTLS) runs in a child process with NODE_EXTRA_CA_CERTS, and the pusher SDK (useTLS) gets the CA
// through its https agent. Nothing switches certificate checks off.
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import { REPO_ROOT, serverSdk, startBroker, uniq, waitFor, withTimeout } from '../helpers.js';

let dir;
let broker;
let child;

/** A CA and a server certificate for 127.0.0.1 and localhost, both valid for a day. */
function makeCertificates() {
  dir = mkdtempSync(join(tmpdir(), 'vestnik-tls-'));
  const f = (name) => join(dir, name);
  const openssl = (...args) => execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  openssl('req', '-x509', ...ec, '-keyout', f('ca.key'), '-out', f('ca.pem'), '-days', '1',
    '-subj', '/CN=Vestnik test CA', '-addext', 'basicConstraints=critical,CA:TRUE',
    '-addext', 'keyUsage=critical,keyCertSign,cRLSign');
  openssl('req', ...ec, '-keyout', f('server.key'), '-out', f('server.csr'), '-subj', '/CN=localhost');
  writeFileSync(
    f('server.ext'),
    'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n' +
      'keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n',
  );
  openssl('x509', '-req', '-in', f('server.csr'), '-CA', f('ca.pem'), '-CAkey', f('ca.key'),
    '-CAcreateserial', '-out', f('server.pem'), '-days', '1', '-extfile', f('server.ext'));
  return { ca: f('ca.pem'), cert: f('server.pem'), key: f('server.key') };
}

function get(module, url, options = {}) {
  return new Promise((res, rej) => {
    const req = module.get(url, { timeout: 5000, ...options }, (resp) => {
      let body = '';
      resp.setEncoding('utf8');
      resp.on('data', (d) => (body += d));
      resp.on('end', () => res({ status: resp.statusCode, body }));
    });
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', rej);
  });
}

let files;
before(async () => {
  files = makeCertificates();
  broker = await startBroker({ server: { tls_cert: files.cert, tls_key: files.key, tls_handshake_timeout: 1 } });
});

after(async () => {
  child?.kill('SIGKILL');
  await broker?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('native TLS', () => {
  it('pusher-js over wss:// receives an event the pusher SDK triggers over https://', async () => {
    assert.match(broker.stderr, /listening on https:\/\//);
    const channel = uniq('tls-');
    const lines = [];
    let stderr = '';
    child = spawn(process.execPath, [join(REPO_ROOT, 'tests', 'js', 'tls-subscriber.js')], {
      env: {
        ...process.env,
        NODE_EXTRA_CA_CERTS: files.ca,
        VESTNIK_TLS_PORT: String(broker.port),
        VESTNIK_TLS_CHANNEL: channel,
        VESTNIK_TLS_EVENT: 'over-tls',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stdout.setEncoding('utf8');
    let partial = '';
    child.stdout.on('data', (d) => {
      partial += d;
      const parts = partial.split('\n');
      partial = parts.pop();
      for (const p of parts) if (p.trim()) lines.push(JSON.parse(p));
    });
    child.stderr.on('data', (d) => (stderr += d));
    const describeChild = () => `child said ${JSON.stringify(lines)}; stderr: ${stderr.slice(-2000)}`;

    await waitFor(() => lines.some((l) => l.subscribed === channel || l.error), 20000, 'the wss client to subscribe',
      describeChild);
    assert.ok(!lines.some((l) => l.error), describeChild());
    assert.match(lines.find((l) => l.connected).connected, /^\d+\.\d+$/);

    const sdk = serverSdk(broker, undefined, {
      useTLS: true,
      agent: new https.Agent({ ca: readFileSync(files.ca) }),
    });
    const resp = await sdk.trigger(channel, 'over-tls', { secure: true });
    assert.equal(resp.status, 200);

    await waitFor(() => lines.find((l) => l.event === 'over-tls'), 10000, 'the event over wss', describeChild);
    assert.deepEqual(lines.find((l) => l.event === 'over-tls').data, { secure: true });
  });

  it('refuses clients that do not trust the certificate, and plain http on the TLS port', async () => {
    const trusted = await get(https, `https://127.0.0.1:${broker.port}/up`, { ca: readFileSync(files.ca) });
    assert.equal(trusted.status, 200);
    await assert.rejects(get(https, `https://127.0.0.1:${broker.port}/up`), (e) => {
      assert.match(e.code ?? e.message, /CERT|SIGNATURE|ISSUER/i);
      return true;
    });
    await assert.rejects(get(http, `http://127.0.0.1:${broker.port}/up`));
  });

  it('hangs up on a client that never starts its TLS handshake (tls_handshake_timeout)', async () => {
    const socket = net.connect(broker.port, '127.0.0.1');
    const closed = new Promise((res) => socket.on('close', res));
    socket.on('error', () => {});
    await withTimeout(closed, 8000, 'the broker kept a silent TCP connection open past tls_handshake_timeout (1 s)');
  });
});
