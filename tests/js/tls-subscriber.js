// A pusher-js client over wss://, in its own process: Node reads NODE_EXTRA_CA_CERTS only at start,
// so the TLS test runs this script with that variable pointing at its throw-away CA instead of
// switching certificate checks off. It prints one JSON line per step on stdout:
// {"connected": socketId}, {"subscribed": channel}, {"event": name, "data": ...} or {"error": message}.
//
// Environment: VESTNIK_TLS_PORT (the broker's TLS port), VESTNIK_TLS_CHANNEL, VESTNIK_TLS_EVENT.

import { connected, openPusher, subscribe } from './helpers.js';

const port = Number(process.env.VESTNIK_TLS_PORT);
const channelName = process.env.VESTNIK_TLS_CHANNEL;
const eventName = process.env.VESTNIK_TLS_EVENT;
const say = (line) => process.stdout.write(`${JSON.stringify(line)}\n`);

const client = openPusher(
  { port },
  { options: { forceTLS: true, wsHost: '127.0.0.1', wssPort: port, enabledTransports: ['ws', 'wss'] } },
);
try {
  say({ connected: await connected(client, 15000) });
  const channel = await subscribe(client, channelName, 10000);
  channel.bind(eventName, (data) => {
    say({ event: eventName, data });
    client.disconnect();
    process.exit(0);
  });
  say({ subscribed: channelName });
} catch (e) {
  say({ error: String(e?.message ?? e), errors: client.errors.map((x) => JSON.stringify(x)) });
  process.exit(1);
}
