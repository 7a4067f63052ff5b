// Hand-written types of @vestnik/pushler (pushler.js). They describe the Pushler-style API only;
// nothing of pusher-js's surface is declared.

/** Connection states, in the order a connection usually goes through them. */
export type ConnectionState = 'initialized' | 'connecting' | 'connected' | 'disconnected' | 'failed';

export interface PushlerOptions {
  /** The app key (the Pushler name; `key` is accepted too). */
  appKey: string;
  key?: string;
  /** Broker host. Default: the host `/pushler.js` was loaded from, else the page's host, else 127.0.0.1. */
  wsHost?: string;
  /** Broker port. Default: the port `/pushler.js` was loaded from, else 6001. */
  wsPort?: number;
  /** A path prefix before `/app/{key}` (behind a proxy). */
  wsPath?: string;
  /** Use wss://. Default: true when the script or page was loaded over https. */
  forceTLS?: boolean;
  /** URL POSTed `socket_id` and `channel_name` (form-encoded) for private and presence channels. Default `/pushler/auth`. */
  authEndpoint?: string;
  /** Extra headers for the auth request (e.g. a CSRF token or a bearer token). */
  authHeaders?: Record<string, string>;
  /** Extra form fields for the auth request (`socket_id` and `channel_name` always win). */
  authParams?: Record<string, string>;
  /** Replaces the HTTP call to `authEndpoint`: resolve with the auth endpoint's JSON answer. */
  authorize?: (request: { socketId: string; channelName: string }) => ChannelAuth | Promise<ChannelAuth>;
  /** Milliseconds of silence before the client pings (the server may ask for less). Default 120000. */
  heartbeatIdle?: number;
  /** Milliseconds to wait for the pong before the connection is abandoned and reopened. Default 30000. */
  heartbeatTimeout?: number;
  /** First reconnect delay in milliseconds (doubled per failed attempt, with jitter). Default 1000. */
  minReconnectDelay?: number;
  /** Largest reconnect delay in milliseconds. Default 30000. */
  maxReconnectDelay?: number;
  /** Open the connection in the constructor. Default true. */
  autoConnect?: boolean;
  /** A WebSocket constructor where there is no global one (Node < 22: the `ws` package). */
  WebSocket?: new (url: string) => WebSocketLike;
  /** pusher-js names, refused with a TypeError: use `authorize`, `authHeaders`/`authParams`, `heartbeatIdle`, `heartbeatTimeout`. */
  authorizer?: never;
  auth?: never;
  activityTimeout?: never;
  pongTimeout?: never;
}

/** What the auth endpoint answers (`PushlerClient::authorizeChannel` / `authorizePresenceChannel` in PHP). */
export interface ChannelAuth {
  auth: string;
  channel_data?: string;
}

export interface WebSocketLike {
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
}

/** A Pusher error code and message, from a `pusher:error` frame or a refusing close code. */
export interface PushlerError {
  code: number | null;
  message: string;
}

export interface DisconnectedEvent {
  code: number;
  reason?: string;
  /** False after `disconnect()` and after a refusal (codes 4000-4099). */
  willReconnect: boolean;
  /** Milliseconds until the next attempt. */
  delay?: number;
}

export interface ClientEvents {
  /** The first connection after `new PushlerClient()` or `connect()`. */
  connected: { socketId: string };
  /** A later connection after a drop; every channel is being resubscribed. */
  reconnected: { socketId: string };
  connecting: Record<string, never>;
  disconnected: DisconnectedEvent;
  /** A refusal (close codes 4000-4099, e.g. 4001 unknown key): state `failed`, no retry until `connect()`. */
  failed: { code: number; reason: string };
  error: PushlerError;
  /** Every change of `state`. */
  stateChanged: { previous: ConnectionState; current: ConnectionState };
}

export interface Member<Info = unknown> {
  id: string;
  info: Info | null;
}

/** The members of a presence channel. */
export interface Members<Info = unknown> {
  readonly count: number;
  /** This connection's own member, once subscribed. */
  readonly me: Member<Info> | null;
  list(): Member<Info>[];
  get(id: string | number): Member<Info> | null;
}

export interface SubscriptionError {
  type: string;
  error: string;
  status: number | null;
}

export interface ChannelEvents {
  'pushler:subscription_succeeded': Members | Record<string, never>;
  'pushler:subscription_error': SubscriptionError;
  'pushler:member_added': Member;
  'pushler:member_removed': Member;
  'pushler:cache_miss': Record<string, never>;
  'pushler:subscription_count': { count: number };
  /** A resubscribe after a reconnect got the `missed` events replayed (they follow, in order). */
  'pushler:recovered': { missed: number };
  /** A resubscribe could not get what was missed: reload the state, then go on from `position`. */
  'pushler:recovery_failed': RecoveryFailed;
}

/** Where an event sits in its channel's history (docs/recovery.md). */
export interface Position {
  epoch: string;
  offset: number;
}

/** Why the broker could not replay what a channel missed. */
export type RecoveryFailureReason = 'too_old' | 'epoch_changed' | 'history_off' | 'cluster_history_unavailable';

export interface RecoveryFailed {
  reason: RecoveryFailureReason;
  /** The channel's position now: events after it arrive live. */
  position: Position | null;
}

/** What the pusher-js plugin emits on a channel as `vestnik:recovery_failed`. */
export interface PluginRecoveryFailed {
  channel: string;
  reason: RecoveryFailureReason;
  position: Position;
}

/** The hook `VestnikRecovery.install` puts on one pusher-js instance. */
export interface RecoveryHook {
  /** The last position seen on `channel`, or null. */
  position(channel: string): Position | null;
  /** Undoes the hook: pusher-js behaves exactly as without the plugin. */
  detach(): void;
}

/** The recovery plugin for stock pusher-js 8 and Laravel Echo (`echo.connector.pusher`). */
export declare const VestnikRecovery: {
  install(pusher: unknown, options?: { onRecoveryFailed?: (e: PluginRecoveryFailed) => void }): RecoveryHook;
  readonly RECOVERY_FAILED: 'vestnik:recovery_failed';
  readonly RECOVERED: 'vestnik:recovered';
};

export type EventCallback<T = any> = (data: T, meta: { userId?: string }) => void;

export interface Channel {
  readonly name: string;
  /** True between `pushler:subscription_succeeded` and a drop or `unsubscribe()`. */
  readonly subscribed: boolean;
  /** Presence channels only. */
  readonly members: Members | null;
  on<E extends keyof ChannelEvents>(event: E, callback: (data: ChannelEvents[E]) => void): this;
  /** An app event; `data` is the decoded JSON payload (or the string, when it is not JSON). */
  on(event: string, callback: EventCallback): this;
  once(event: string, callback: EventCallback): this;
  off(event?: string, callback?: (...args: any[]) => void): this;
  /** Sends a client event (name starting `client-`) on a subscribed private or presence channel. */
  send(event: `client-${string}`, data?: unknown): boolean;
  unsubscribe(): void;
}

declare class PushlerClient {
  constructor(options: PushlerOptions);
  static readonly VERSION: string;
  /** The options in effect (defaults filled in); `authorize` is null when not given. */
  readonly options: Readonly<
    Required<Omit<PushlerOptions, 'key' | 'authorize' | 'autoConnect' | 'authorizer' | 'auth' | 'activityTimeout' | 'pongTimeout'>> & {
      authorize: NonNullable<PushlerOptions['authorize']> | null;
    }
  >;
  readonly state: ConnectionState;
  /** The connection's socket id while connected, else null. */
  readonly socketId: string | null;
  on<E extends keyof ClientEvents>(event: E, callback: (data: ClientEvents[E]) => void): this;
  once<E extends keyof ClientEvents>(event: E, callback: (data: ClientEvents[E]) => void): this;
  off(event?: keyof ClientEvents, callback?: (...args: any[]) => void): this;
  connect(): this;
  disconnect(): this;
  subscribe(name: string): Channel;
  unsubscribe(name: string): void;
  /** The subscription to `name`, or null. */
  getChannel(name: string): Channel | null;
  /** Every current subscription. */
  getChannels(): Channel[];
}

export { PushlerClient };
export default PushlerClient;
