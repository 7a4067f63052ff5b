/*!
 * PushlerClient for Vestnik: the Pushler JS SDK's API (new PushlerClient({appKey, authEndpoint}),
 * on('connected'), subscribe, channel.on, unsubscribe, disconnect, `pushler:` presence events) spoken
 * over the Pusher Channels protocol v7 to a Vestnik broker.
 *
 * One readable file with no dependencies and no build step. Loaded with a <script> tag it defines the
 * global `PushlerClient`; under CommonJS it is `module.exports`; the ES entry (index.js) re-exports it.
 * It reconnects with backoff and resubscribes every channel, asking the broker to replay what the
 * channel missed meanwhile (`recover`: `pushler:recovered`, or `pushler:recovery_failed` with a reason
 * when the app must reload its state), pings after a quiet spell and abandons a
 * connection whose pong does not come, and maps Pusher's close and error codes onto the `error`,
 * `disconnected` and `failed` events (`failed`: a 4000-4099 refusal, after which it does not retry).
 * It never exposes pusher-js's API names (bind, trigger, connection.bind, channel(), allChannels(),
 * authorizer, auth: {headers, params}, activityTimeout, pongTimeout, state_change; only the connection
 * options wsHost, wsPort, wsPath and forceTLS keep their names, as issue 8 asks) and never logs a
 * payload or an auth signature.
 */
(function (root, factory) {
  'use strict';
  var PushlerClient = factory(root);
  if (typeof module === 'object' && module && module.exports) module.exports = PushlerClient;
  root.PushlerClient = PushlerClient;
})(typeof globalThis !== 'undefined' ? globalThis : this, function (root) {
  'use strict';

  var VERSION = '0.1.0';

  /**
   * Defaults, each with its source. A page that loads this file from the broker (`/pushler.js`)
   * connects back to that broker unless told otherwise.
   */
  var DEFAULTS = {
    // Vestnik's default listen port (`vestnik` with no flags).
    wsPort: 6001,
    // Ping after this much silence unless the server's connection_established asks for less (the
    // value of pusher-js defaults.ts activityTimeout, and the protocol's 120 s activity_timeout).
    heartbeatIdle: 120000,
    // Give up on a connection whose pong takes longer (the value of pusher-js defaults.ts pongTimeout).
    heartbeatTimeout: 30000,
    // Protocol: 4100-4199 "reconnect after at least 1 s"; back off exponentially up to half a minute.
    minReconnectDelay: 1000,
    maxReconnectDelay: 30000,
  };

  var scriptOrigin = (function () {
    try {
      var s = root.document && root.document.currentScript;
      if (s && s.src) {
        var u = new URL(s.src);
        return { wsHost: u.hostname, wsPort: Number(u.port) || (u.protocol === 'https:' ? 443 : 80), forceTLS: u.protocol === 'https:' };
      }
    } catch (e) {
      /* not a browser, or an inline script */
    }
    return null;
  })();

  // --------------------------------------------------------------------------------------------
  // A minimal event emitter shared by the client and its channels.

  function Emitter() {
    this._handlers = Object.create(null);
  }
  Emitter.prototype.on = function (event, callback) {
    if (typeof callback !== 'function') throw new TypeError('on(' + event + ', callback): callback must be a function');
    (this._handlers[event] || (this._handlers[event] = [])).push(callback);
    return this;
  };
  Emitter.prototype.once = function (event, callback) {
    var self = this;
    function wrapper(a, b) {
      self.off(event, wrapper);
      callback.call(self, a, b);
    }
    wrapper.original = callback;
    return this.on(event, wrapper);
  };
  Emitter.prototype.off = function (event, callback) {
    if (event === undefined) {
      this._handlers = Object.create(null);
    } else if (callback === undefined) {
      delete this._handlers[event];
    } else if (this._handlers[event]) {
      this._handlers[event] = this._handlers[event].filter(function (h) {
        return h !== callback && h.original !== callback;
      });
    }
    return this;
  };
  Emitter.prototype._emit = function (event, a, b) {
    var list = this._handlers[event];
    if (!list) return;
    list.slice().forEach(function (h) {
      try {
        h(a, b);
      } catch (e) {
        // A failing app handler must not break the connection or the other handlers.
        setTimeout(function () {
          throw e;
        }, 0);
      }
    });
  };

  function decode(data) {
    if (typeof data !== 'string') return data;
    try {
      return JSON.parse(data);
    } catch (e) {
      return data;
    }
  }

  // --------------------------------------------------------------------------------------------
  // Presence members

  /** The members of a presence channel: `count`, `me`, `list()`, `get(id)`. */
  function Members() {
    this._map = new Map();
    this.me = null;
  }
  Object.defineProperty(Members.prototype, 'count', {
    get: function () {
      return this._map.size;
    },
  });
  Members.prototype.list = function () {
    var out = [];
    this._map.forEach(function (info, id) {
      out.push({ id: id, info: info });
    });
    return out;
  };
  Members.prototype.get = function (id) {
    return this._map.has(String(id)) ? { id: String(id), info: this._map.get(String(id)) } : null;
  };
  Members.prototype._reset = function (presence, myId) {
    this._map = new Map();
    var hash = (presence && presence.hash) || {};
    ((presence && presence.ids) || Object.keys(hash)).forEach(
      function (id) {
        this._map.set(String(id), hash[id] === undefined ? null : hash[id]);
      }.bind(this),
    );
    this.me = myId !== null && this._map.has(myId) ? { id: myId, info: this._map.get(myId) } : null;
  };

  // --------------------------------------------------------------------------------------------
  // Channels

  /** A subscription: `on(event, cb)`, `off`, `send(client-event, data)`, `unsubscribe()`. */
  function Channel(client, name) {
    Emitter.call(this);
    this.name = name;
    this.subscribed = false;
    this.members = name.indexOf('presence-') === 0 ? new Members() : null;
    this._client = client;
    this._myUserId = null;
    // A pusher:subscribe went out on the current connection (the answer may still be on its way).
    this._requested = false;
    // The last position `{epoch, offset}` seen on this channel: sent as `recover` when the client
    // resubscribes after a reconnect, so the broker replays what was missed (docs/recovery.md).
    this._position = null;
  }
  Channel.prototype = Object.create(Emitter.prototype);
  Channel.prototype.constructor = Channel;

  Channel.prototype.unsubscribe = function () {
    this._client.unsubscribe(this.name);
  };

  /**
   * Sends a client event to the other subscribers. The name must start with `client-` and the channel
   * must be private or presence and subscribed. Returns false when it could not be sent now.
   */
  Channel.prototype.send = function (event, data) {
    if (typeof event !== 'string' || event.indexOf('client-') !== 0) {
      throw new TypeError('client event names start with "client-": ' + event);
    }
    if (!this.subscribed) return false;
    return this._client._send({ event: event, channel: this.name, data: data === undefined ? {} : data });
  };

  /** Takes a frame's position as the channel's last one; false for an event already seen. */
  Channel.prototype._advance = function (position) {
    if (!position || typeof position.epoch !== 'string' || typeof position.offset !== 'number') return true;
    var last = this._position;
    // The broker sends each event once; this only guards the app against a replay overlapping it.
    if (last && last.epoch === position.epoch && position.offset <= last.offset) return false;
    this._position = { epoch: position.epoch, offset: position.offset };
    return true;
  };

  /**
   * The answer to a subscribe: where to go on from, and what became of a `recover`. Recovered: the
   * missed events follow and move the position on. Not recovered: `pushler:recovery_failed` with the
   * `reason`, and the app reloads its state; the channel goes on from the answer's position.
   */
  Channel.prototype._subscribed = function (message, data) {
    var recovery = data && data.recovery;
    if (recovery && recovery.recovered === true) {
      this._emit('pushler:recovered', { missed: recovery.missed });
      return;
    }
    var p = message.position;
    this._position = p && typeof p.epoch === 'string' ? { epoch: p.epoch, offset: p.offset } : null;
    if (recovery && recovery.recovered === false) {
      this._emit('pushler:recovery_failed', { reason: recovery.reason, position: this._position });
    }
  };

  Channel.prototype._handle = function (message) {
    var data = decode(message.data);
    switch (message.event) {
      case 'pusher_internal:subscription_succeeded':
        this.subscribed = true;
        this._subscribed(message, data);
        if (this.members) {
          this.members._reset(data && data.presence, this._myUserId);
          this._emit('pushler:subscription_succeeded', this.members);
        } else {
          this._emit('pushler:subscription_succeeded', {});
        }
        return;
      case 'pusher:subscription_error':
        this.subscribed = false;
        this._emit('pushler:subscription_error', data);
        return;
      case 'pusher_internal:member_added':
        if (!this.members || !data) return;
        this.members._map.set(String(data.user_id), data.user_info === undefined ? null : data.user_info);
        this._emit('pushler:member_added', { id: String(data.user_id), info: data.user_info === undefined ? null : data.user_info });
        return;
      case 'pusher_internal:member_removed': {
        if (!this.members || !data) return;
        var id = String(data.user_id);
        var info = this.members._map.has(id) ? this.members._map.get(id) : null;
        this.members._map.delete(id);
        this._emit('pushler:member_removed', { id: id, info: info });
        return;
      }
      case 'pusher:cache_miss':
        this._emit('pushler:cache_miss', {});
        return;
      case 'pusher_internal:subscription_count':
        this._emit('pushler:subscription_count', { count: data && data.subscription_count });
        return;
      default:
        // Other protocol events are the client's business, never the app's.
        if (message.event.indexOf('pusher:') === 0 || message.event.indexOf('pusher_internal:') === 0) return;
        if (!this._advance(message.position)) return;
        this._emit(message.event, data, message.user_id !== undefined ? { userId: message.user_id } : {});
    }
  };

  // --------------------------------------------------------------------------------------------
  // The client

  /**
   * pusher-js option names this client does not take, with the ones to use instead: passing one is a
   * TypeError rather than an option silently ignored.
   */
  var RENAMED_OPTIONS = {
    authorizer: 'authorize',
    auth: 'authHeaders / authParams',
    activityTimeout: 'heartbeatIdle',
    pongTimeout: 'heartbeatTimeout',
  };

  function PushlerClient(options) {
    if (!(this instanceof PushlerClient)) throw new TypeError('PushlerClient is a constructor: use new PushlerClient({...})');
    Emitter.call(this);
    var o = options || {};
    Object.keys(RENAMED_OPTIONS).forEach(function (name) {
      if (o[name] !== undefined) throw new TypeError('PushlerClient has no option ' + name + ' (a pusher-js name): use ' + RENAMED_OPTIONS[name]);
    });
    var appKey = o.appKey || o.key;
    if (!appKey || typeof appKey !== 'string') throw new TypeError('PushlerClient needs options.appKey');
    var origin = scriptOrigin || {};
    var location = root.location || {};
    var forceTLS = o.forceTLS !== undefined ? !!o.forceTLS : origin.forceTLS !== undefined ? origin.forceTLS : location.protocol === 'https:';
    this.options = {
      appKey: appKey,
      wsHost: o.wsHost || origin.wsHost || location.hostname || '127.0.0.1',
      wsPort: Number(o.wsPort || origin.wsPort || DEFAULTS.wsPort),
      wsPath: o.wsPath || '',
      forceTLS: forceTLS,
      authEndpoint: o.authEndpoint || '/pushler/auth',
      authHeaders: o.authHeaders || {},
      authParams: o.authParams || {},
      authorize: o.authorize || null,
      heartbeatIdle: o.heartbeatIdle || DEFAULTS.heartbeatIdle,
      heartbeatTimeout: o.heartbeatTimeout || DEFAULTS.heartbeatTimeout,
      minReconnectDelay: o.minReconnectDelay !== undefined ? o.minReconnectDelay : DEFAULTS.minReconnectDelay,
      maxReconnectDelay: o.maxReconnectDelay !== undefined ? o.maxReconnectDelay : DEFAULTS.maxReconnectDelay,
      WebSocket: o.WebSocket || root.WebSocket,
    };
    if (typeof this.options.WebSocket !== 'function') {
      throw new TypeError('no WebSocket implementation: pass options.WebSocket (e.g. the `ws` package in Node)');
    }
    this.state = 'initialized';
    this.socketId = null;
    this._channels = new Map();
    this._ws = null;
    this._generation = 0;
    this._attempt = 0;
    this._everConnected = false;
    this._retryTimer = null;
    this._activityTimer = null;
    this._pongTimer = null;
    this._serverActivityTimeout = null;
    this._lastErrorCode = null;
    this._manual = false;
    if (o.autoConnect !== false) {
      // On the next microtask, so that handlers bound right after `new` see `connecting` too.
      var self = this;
      Promise.resolve().then(function () {
        if (self.state === 'initialized' && !self._manual) self.connect();
      });
    }
  }
  PushlerClient.prototype = Object.create(Emitter.prototype);
  PushlerClient.prototype.constructor = PushlerClient;
  PushlerClient.VERSION = VERSION;
  PushlerClient.DEFAULTS = DEFAULTS;

  /** Opens the connection (done by the constructor unless `autoConnect: false`). */
  PushlerClient.prototype.connect = function () {
    if (this.state === 'connecting' || this.state === 'connected') return this;
    // A connect() while an automatic retry is pending only hurries it: the next connection is still
    // a `reconnected` one.
    if (this._manual || this.state === 'initialized' || this.state === 'failed') this._everConnected = false;
    this._manual = false;
    this._attempt = 0;
    clearTimeout(this._retryTimer);
    this._open();
    return this;
  };

  /** Closes the connection for good (no reconnect); `connect()` opens it again. */
  PushlerClient.prototype.disconnect = function () {
    var wasManual = this._manual;
    this._manual = true;
    clearTimeout(this._retryTimer);
    this._stopTimers();
    var ws = this._ws;
    this._detach();
    if (ws) {
      try {
        ws.close(1000, 'client disconnect');
      } catch (e) {
        /* already closed */
      }
    }
    this._markUnsubscribed();
    this.socketId = null;
    if (!wasManual && this.state !== 'initialized' && this.state !== 'failed') {
      this._setState('disconnected');
      this._emit('disconnected', { code: 1000, reason: 'client disconnect', willReconnect: false });
    }
    return this;
  };

  /** Subscribes (or returns the existing subscription); sent as soon as the connection is up. */
  PushlerClient.prototype.subscribe = function (name) {
    if (typeof name !== 'string' || name === '') throw new TypeError('subscribe(name): name must be a non-empty string');
    var channel = this._channels.get(name);
    if (!channel) {
      channel = new Channel(this, name);
      this._channels.set(name, channel);
      if (this.state === 'connected') this._subscribe(channel);
    }
    return channel;
  };

  /** Leaves a channel; its handlers are dropped with it. */
  PushlerClient.prototype.unsubscribe = function (name) {
    var channel = this._channels.get(name);
    if (!channel) return;
    this._channels.delete(name);
    // Also when the subscribe is still in flight, or the broker would keep this socket on the channel.
    if (channel.subscribed || channel._requested) this._send({ event: 'pusher:unsubscribe', data: { channel: name } });
    channel.subscribed = false;
    channel._requested = false;
  };

  /** The subscription to `name`, or null. */
  PushlerClient.prototype.getChannel = function (name) {
    return this._channels.get(name) || null;
  };

  /** Every current subscription. */
  PushlerClient.prototype.getChannels = function () {
    return Array.from(this._channels.values());
  };

  PushlerClient.prototype._url = function () {
    var o = this.options;
    var scheme = o.forceTLS ? 'wss' : 'ws';
    return scheme + '://' + o.wsHost + ':' + o.wsPort + o.wsPath + '/app/' + encodeURIComponent(o.appKey) +
      '?protocol=7&client=vestnik-pushler-js&version=' + VERSION;
  };

  PushlerClient.prototype._setState = function (next) {
    var previous = this.state;
    if (previous === next) return;
    this.state = next;
    this._emit('stateChanged', { previous: previous, current: next });
    if (next === 'connecting') this._emit('connecting', {});
  };

  PushlerClient.prototype._open = function () {
    var self = this;
    var generation = ++this._generation;
    this._lastErrorCode = null;
    this._setState('connecting');
    var ws;
    try {
      ws = new this.options.WebSocket(this._url());
    } catch (e) {
      this._emit('error', { code: null, message: 'cannot open a WebSocket: ' + (e && e.message) });
      this._closed(1006, 'cannot open');
      return;
    }
    this._ws = ws;
    ws.onmessage = function (ev) {
      if (generation === self._generation) self._message(ev.data);
    };
    ws.onclose = function (ev) {
      if (generation === self._generation) self._closed(ev.code, ev.reason);
    };
    ws.onerror = function () {
      /* a close event follows and carries the code */
    };
  };

  PushlerClient.prototype._detach = function () {
    var ws = this._ws;
    this._ws = null;
    this._generation++;
    if (ws) ws.onmessage = ws.onclose = ws.onerror = null;
  };

  PushlerClient.prototype._send = function (frame) {
    if (!this._ws || this.state !== 'connected') return false;
    this._ws.send(JSON.stringify(frame));
    return true;
  };

  PushlerClient.prototype._message = function (raw) {
    this._resetActivity();
    var message;
    try {
      message = JSON.parse(typeof raw === 'string' ? raw : String(raw));
    } catch (e) {
      this._emit('error', { code: null, message: 'frame is not JSON' });
      return;
    }
    if (!message || typeof message.event !== 'string') return;
    switch (message.event) {
      case 'pusher:connection_established': {
        var data = decode(message.data) || {};
        this.socketId = data.socket_id;
        this._serverActivityTimeout = data.activity_timeout ? data.activity_timeout * 1000 : null;
        this._attempt = 0;
        this._setState('connected');
        var reconnected = this._everConnected;
        this._everConnected = true;
        this._resetActivity();
        var self = this;
        this._channels.forEach(function (channel) {
          self._subscribe(channel);
        });
        // `connected` once per connect(): Pushler's examples subscribe inside it, and the client
        // resubscribes by itself after a reconnect, so a second `connected` would double their handlers.
        this._emit(reconnected ? 'reconnected' : 'connected', { socketId: this.socketId });
        return;
      }
      case 'pusher:error': {
        var err = decode(message.data) || {};
        this._lastErrorCode = err.code === undefined ? null : err.code;
        this._emit('error', { code: this._lastErrorCode, message: err.message || 'error' });
        return;
      }
      case 'pusher:ping':
        this._send({ event: 'pusher:pong', data: {} });
        return;
      case 'pusher:pong':
        return;
      default:
        if (message.channel) {
          var channel = this._channels.get(message.channel);
          if (channel) channel._handle(message);
        }
    }
  };

  PushlerClient.prototype._subscribe = function (channel) {
    var self = this;
    var name = channel.name;
    var generation = this._generation;
    var send = function (auth) {
      // The connection this was for is gone, or the app left the channel meanwhile.
      if (generation !== self._generation || self._channels.get(name) !== channel) return;
      var data = { channel: name };
      // Set only by an earlier subscription of this channel object: a resubscribe after a reconnect.
      if (channel._position) data.recover = { epoch: channel._position.epoch, offset: channel._position.offset };
      if (auth) {
        data.auth = auth.auth;
        if (auth.channel_data !== undefined) data.channel_data = auth.channel_data;
      }
      if (self._send({ event: 'pusher:subscribe', data: data })) channel._requested = true;
    };
    if (name.indexOf('private-encrypted-') === 0) {
      channel._emit('pushler:subscription_error', { type: 'UnsupportedFeature', error: 'encrypted channels are not supported by this client', status: null });
      return;
    }
    if (name.indexOf('private-') !== 0 && name.indexOf('presence-') !== 0) {
      send(null);
      return;
    }
    this._authorize(name).then(
      function (auth) {
        if (auth.channel_data !== undefined) {
          var member = decode(auth.channel_data);
          channel._myUserId = member && member.user_id !== undefined ? String(member.user_id) : null;
        }
        send(auth);
      },
      function (e) {
        if (generation !== self._generation) return;
        channel._emit('pushler:subscription_error', { type: 'AuthError', error: e.message, status: e.status === undefined ? null : e.status });
      },
    );
  };

  /** Resolves with `{auth, channel_data?}` from the `authorize` option or the authEndpoint. */
  PushlerClient.prototype._authorize = function (channelName) {
    var o = this.options;
    var socketId = this.socketId;
    if (o.authorize) {
      return Promise.resolve().then(function () {
        return o.authorize({ socketId: socketId, channelName: channelName });
      }).then(checkAuth);
    }
    var params = new URLSearchParams();
    Object.keys(o.authParams).forEach(function (k) {
      params.set(k, o.authParams[k]);
    });
    // Last, so that an extra field can never replace what the endpoint signs.
    params.set('socket_id', socketId);
    params.set('channel_name', channelName);
    var headers = { 'Content-Type': 'application/x-www-form-urlencoded' };
    Object.keys(o.authHeaders).forEach(function (k) {
      headers[k] = o.authHeaders[k];
    });
    return root
      .fetch(o.authEndpoint, { method: 'POST', headers: headers, body: params.toString(), credentials: 'same-origin' })
      .then(function (res) {
        return res.text().then(function (text) {
          var body = decode(text);
          if (!res.ok) {
            var e = new Error((body && body.error) || 'auth endpoint ' + o.authEndpoint + ' answered ' + res.status);
            e.status = res.status;
            throw e;
          }
          return checkAuth(body);
        });
      });
  };

  function checkAuth(auth) {
    if (!auth || typeof auth.auth !== 'string') throw new Error('the auth response has no "auth" string');
    return auth;
  }

  PushlerClient.prototype._markUnsubscribed = function () {
    this._channels.forEach(function (channel) {
      channel.subscribed = false;
      channel._requested = false;
    });
  };

  PushlerClient.prototype._closed = function (code, reason) {
    this._stopTimers();
    this._detach();
    this._markUnsubscribed();
    this.socketId = null;
    if (this._manual) return;
    code = code || 1006;
    // 4000: the app wants TLS. 4001-4099: refused, reconnecting unchanged would be refused again.
    if (code === 4000 && !this.options.forceTLS) {
      this.options.forceTLS = true;
      return this._retry(code, reason, 0);
    }
    if (code >= 4000 && code <= 4099) {
      // The broker usually said why in a pusher:error just before closing; report it once.
      if (this._lastErrorCode !== code) this._emit('error', { code: code, message: reason || 'connection refused' });
      this._emit('disconnected', { code: code, reason: reason, willReconnect: false });
      this._setState('failed');
      // Terminal: no retry until the app calls connect() again.
      this._emit('failed', { code: code, reason: reason || 'connection refused' });
      return;
    }
    // 4200-4299: reconnect at once (the first time); everything else backs off.
    var immediate = code >= 4200 && code <= 4299 && this._attempt === 0;
    this._retry(code, reason, immediate ? 0 : this._backoff());
  };

  PushlerClient.prototype._backoff = function () {
    var o = this.options;
    var base = Math.min(o.maxReconnectDelay, o.minReconnectDelay * Math.pow(2, this._attempt));
    // Jitter in [base/2, base], never below the protocol's minimum, so that clients dropped together
    // do not come back together.
    return Math.max(o.minReconnectDelay, Math.round(base / 2 + (Math.random() * base) / 2));
  };

  PushlerClient.prototype._retry = function (code, reason, delay) {
    var self = this;
    this._attempt++;
    this._setState('disconnected');
    this._emit('disconnected', { code: code, reason: reason, willReconnect: true, delay: delay });
    clearTimeout(this._retryTimer);
    this._retryTimer = setTimeout(function () {
      if (!self._manual) self._open();
    }, delay);
  };

  PushlerClient.prototype._stopTimers = function () {
    clearTimeout(this._activityTimer);
    clearTimeout(this._pongTimer);
    this._activityTimer = this._pongTimer = null;
  };

  PushlerClient.prototype._resetActivity = function () {
    var self = this;
    this._stopTimers();
    if (this.state !== 'connected') return;
    var quiet = Math.min(this.options.heartbeatIdle, this._serverActivityTimeout || Infinity);
    this._activityTimer = setTimeout(function () {
      self._send({ event: 'pusher:ping', data: {} });
      self._pongTimer = setTimeout(function () {
        // No answer: abandon the socket (a close handshake with a dead peer may never finish).
        var ws = self._ws;
        self._detach();
        try {
          if (ws) ws.close();
        } catch (e) {
          /* already closed */
        }
        self._closed(4201, 'pong not received');
      }, self.options.heartbeatTimeout);
    }, quiet);
  };

  return PushlerClient;
});
