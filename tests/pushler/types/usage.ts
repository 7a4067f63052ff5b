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
