// Types of the Vue 3 composable in vue.js.
import type { Ref, ShallowRef } from 'vue';
import type { Channel, ConnectionState, EventCallback, Member, SubscriptionError } from './index.js';
import type PushlerClient from './index.js';

type Source<T> = T | Ref<T> | (() => T);

export interface PushlerChannelState {
  channel: ShallowRef<Channel | null>;
  subscribed: Ref<boolean>;
  error: Ref<SubscriptionError | null>;
  /** Presence channels: the current members. */
  members: Ref<Member[]>;
  state: Ref<ConnectionState>;
  send(event: `client-${string}`, data?: unknown): boolean;
}

export function usePushlerChannel(
  client: Source<PushlerClient | null>,
  name: Source<string | null | undefined>,
  handlers?: Record<string, EventCallback>,
): PushlerChannelState;

export default usePushlerChannel;
