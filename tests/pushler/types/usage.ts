// Compile-time checks of clients/js/index.d.ts and vue.d.ts (tsc --noEmit, run by pushler-client.test.js):
// the cookbook's usage type-checks, and misuse does not.
import PushlerClient, { type Channel } from '@vestnik/pushler';
import { usePushlerChannel } from '@vestnik/pushler/vue';
const p = new PushlerClient({ appKey: 'k', authEndpoint: '/auth.php', wsHost: 'h', wsPort: 1, forceTLS: false });
p.on('connected', ({ socketId }) => socketId.toUpperCase());
const ch: Channel = p.subscribe('private-user-1');
ch.on('order:status', (data) => data.order_id);
ch.on('pushler:member_added', (m) => m.id);
ch.send('client-typing', { a: 1 });
const s = usePushlerChannel(p, 'x', { e: () => {} });
s.subscribed.value;
// @ts-expect-error client event names must start with client-
ch.send('typing', {});
// @ts-expect-error appKey is required
new PushlerClient({ authEndpoint: '/auth.php' });
// @ts-expect-error no such connection event
p.on('bogus', () => {});
// The Pushler-style names type-check...
p.on('stateChanged', ({ previous, current }) => `${previous}>${current}`);
p.on('failed', ({ code }) => code.toFixed());
const same: Channel | null = p.getChannel('private-user-1');
const all: Channel[] = p.getChannels();
new PushlerClient({ appKey: 'k', authorize: ({ socketId, channelName }) => ({ auth: `${socketId}:${channelName}` }), heartbeatIdle: 1, heartbeatTimeout: 1 });
new PushlerClient({ appKey: 'k', authHeaders: { 'X-CSRF-Token': 't' }, authParams: { team: 'a' }, minReconnectDelay: 1, maxReconnectDelay: 2 });
// ...and pusher-js's do not.
// @ts-expect-error pusher-js's state_change is stateChanged here
p.on('state_change', () => {});
// @ts-expect-error pusher-js's channel() is getChannel()
p.channel('x');
// @ts-expect-error pusher-js's allChannels() is getChannels()
p.allChannels();
// @ts-expect-error pusher-js's authorizer option is authorize
new PushlerClient({ appKey: 'k', authorizer: () => ({ auth: 'a' }) });
// @ts-expect-error pusher-js's nested auth option is authHeaders / authParams
new PushlerClient({ appKey: 'k', auth: { headers: {} } });
// @ts-expect-error pusher-js's activityTimeout is heartbeatIdle
new PushlerClient({ appKey: 'k', activityTimeout: 1 });
// @ts-expect-error pusher-js's pongTimeout is heartbeatTimeout
new PushlerClient({ appKey: 'k', pongTimeout: 1 });
export { same, all };
