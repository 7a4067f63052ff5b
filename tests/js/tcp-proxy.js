// A TCP proxy in front of a broker that a test can cut: every open connection is reset at once, the
// way a phone in a tunnel or a proxy's idle timeout drops it (no WebSocket close frame), while new
// connections go through as before. Used by the recovery suites (test/recovery-clients.test.js).
import { connect, createServer } from 'node:net';

/**
 * Starts a proxy on 127.0.0.1:0 to `127.0.0.1:targetPort`. Returns `{port, cuts, accepted, cut(),
 * hold(), release(), close()}`: `cut()` resets every open connection and counts it in `cuts`;
 * `hold()` cuts and holds new connections (unanswered) until `release()`; `accepted` counts the connections
 * made through it.
 */
export async function startProxy(targetPort) {
  const pairs = new Set();
  const proxy = { port: 0, cuts: 0, accepted: 0, held: false };
  const waiting = [];
  const join = (client) => {
    proxy.accepted++;
    const upstream = connect(targetPort, '127.0.0.1');
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
  };
  const server = createServer((client) => {
    if (proxy.held) {
      // Down: the connection waits (its bytes stay buffered) until the proxy is released, as
      // behind a network that has not come back yet.
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
  /** Resets every open connection (RST to the client, close to the broker). */
  proxy.cut = () => {
    proxy.cuts++;
    for (const { client, upstream } of [...pairs]) {
      if (typeof client.resetAndDestroy === 'function') client.resetAndDestroy();
      else client.destroy();
      upstream.destroy();
    }
    pairs.clear();
  };
  /** Cuts every connection and holds new ones until `release()`: a client that stays away. */
  proxy.hold = () => {
    proxy.held = true;
    proxy.cut();
  };
  proxy.release = () => {
    proxy.held = false;
    for (const client of waiting.splice(0)) if (!client.destroyed) join(client);
  };
  proxy.close = async () => {
    proxy.release();
    proxy.cut();
    await new Promise((res) => server.close(res));
  };
  return proxy;
}
