// The Vue 3 composable of @vestnik/pushler: `usePushlerChannel(client, name, handlers)` subscribes a
// component (or any effect scope) to a channel, exposes reactive `subscribed`, `error`, `members` and
// the connection `state`, follows a reactive channel name, and on unmount removes exactly its own
// handlers and unsubscribes only when no other user of the same client still holds the channel. It
// never creates or disconnects the client: the app owns that. `vue` is a peer dependency.
import { getCurrentScope, onScopeDispose, ref, shallowRef, unref, watch } from 'vue';

// How many composables hold each channel of each client, so one unmount does not cut the others off.
const holders = new WeakMap();

function hold(client, name, delta) {
  let counts = holders.get(client);
  if (!counts) holders.set(client, (counts = new Map()));
  const n = (counts.get(name) || 0) + delta;
  if (n <= 0) counts.delete(name);
  else counts.set(name, n);
  return n;
}

const read = (v) => (typeof v === 'function' ? v() : unref(v));

/**
 * Subscribes to `name` (a string, a ref or a getter; null or '' = no subscription) on `client` (a
 * PushlerClient, or a ref/getter of one) and binds `handlers` (`{eventName: callback}`).
 * Returns `{channel, subscribed, error, members, state, send}`.
 */
export function usePushlerChannel(client, name, handlers = {}) {
  const channel = shallowRef(null);
  const subscribed = ref(false);
  const error = ref(null);
  const members = ref([]);
  const state = ref(read(client)?.state ?? 'initialized');
  let detach = () => {};

  function attach(c, channelName) {
    hold(c, channelName, +1);
    const ch = c.subscribe(channelName);
    const bound = [];
    const on = (event, fn) => {
      ch.on(event, fn);
      bound.push([event, fn]);
    };
    const syncMembers = () => {
      members.value = ch.members ? ch.members.list() : [];
    };
    on('pushler:subscription_succeeded', () => {
      subscribed.value = true;
      error.value = null;
      syncMembers();
    });
    on('pushler:subscription_error', (e) => {
      subscribed.value = false;
      error.value = e;
    });
    on('pushler:member_added', syncMembers);
    on('pushler:member_removed', syncMembers);
    for (const [event, fn] of Object.entries(handlers)) on(event, fn);
    const onState = ({ current }) => {
      state.value = current;
      if (current !== 'connected') subscribed.value = false;
    };
    c.on('stateChanged', onState);
    state.value = c.state;
    subscribed.value = ch.subscribed;
    syncMembers();
    channel.value = ch;
    return () => {
      for (const [event, fn] of bound) ch.off(event, fn);
      c.off('stateChanged', onState);
      if (hold(c, channelName, -1) === 0) c.unsubscribe(channelName);
      channel.value = null;
      subscribed.value = false;
      members.value = [];
    };
  }

  watch(
    () => [read(client), read(name)],
    ([c, channelName]) => {
      detach();
      detach = () => {};
      error.value = null;
      if (c && channelName) detach = attach(c, channelName);
    },
    { immediate: true },
  );

  if (getCurrentScope()) onScopeDispose(() => detach());

  /** Sends a client event (`client-…`) on the current channel; false when not subscribed. */
  const send = (event, data) => (channel.value ? channel.value.send(event, data) : false);

  return { channel, subscribed, error, members, state, send };
}

export default usePushlerChannel;
