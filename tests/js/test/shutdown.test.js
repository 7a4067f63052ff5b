// SIGTERM: every socket is closed with 4200 and the process exits 0. The drain's window is shortened
// to keep the suite quick; its spread is tested in crates/vestnik-server/tests/drain.rs.
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';

import { connected, openPusher, openRaw, pusherJsErrorCode, serverSdk, startBroker, waitFor, withTimeout } from '../helpers.js';

let broker;
after(async () => {
  await broker?.stop();
  // pusher-js quirk (not a broker issue): on a 4200 close both its "retry" action and its
  // "closed" handler schedule a reconnect, and the orphaned one can start a new connection
  // attempt after disconnect(), whose strategy timers keep this process alive. All results are
  // reported by now; don't let those timers hold the file open.
  setTimeout(() => process.exit(process.exitCode ?? 0), 2000).unref();
});

describe('SIGTERM', () => {
  it('closes every socket with 4200 and exits 0', async () => {
    broker = await startBroker({ server: { drain_grace_ms: 200, drain_window_ms: 1000 } });
    const sdk = serverSdk(broker);
    const raws = [];
    for (let i = 0; i < 3; i++) {
      const c = await openRaw(broker);
      await c.subscribeOk(`public-shutdown-${i}`);
      raws.push(c);
    }
    const presence = await openRaw(broker);
    await presence.subscribeSigned(sdk, 'presence-shutdown', { user_id: 'bye' });
    raws.push(presence);
    const js = openPusher(broker);
    await connected(js);

    broker.proc.kill('SIGTERM');
    for (const c of raws) {
      const close = await c.waitClose(20000);
      assert.equal(close.code, 4200, c.describe());
    }
    await waitFor(() => js.errors.some((e) => pusherJsErrorCode(e) === 4200), 20000, 'pusher-js to see close 4200', () =>
      JSON.stringify(js.errors),
    );
    js.disconnect();

    const exit = await withTimeout(broker.exited, 20000, 'broker still running 20 s after SIGTERM');
    assert.equal(exit.signal, null, `killed by signal ${exit.signal}`);
    assert.equal(exit.code, 0, `exit code; stderr tail:\n${broker.stderr.slice(-2000)}`);
  });
});
