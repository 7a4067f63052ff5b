/*!
 * Vestnik recovery for stock pusher-js 8 and Laravel Echo: nothing published while the connection
 * was down is lost (docs/recovery.md).
 *
 * Vestnik puts a position `{epoch, offset}` on every event of a channel and keeps the channel's
 * recent events. This plugin remembers the last position seen per subscribed channel and, when
 * pusher-js resubscribes after a reconnect, adds `recover` to its `pusher:subscribe`: the broker
 * then replays the missed events, in order and exactly once, before the live ones. When it cannot
 * (too old, another epoch, history off), the channel gets a `vestnik:recovery_failed` event with
 * the `reason`, and the app reloads its state; a recovery that worked gives `vestnik:recovered`
 * with the number of events replayed.
 *
 *   var pusher = new Pusher(key, options);
 *   VestnikRecovery.install(pusher);                       // or install(echo.connector.pusher)
 *   pusher.subscribe('orders').bind('vestnik:recovery_failed', function (e) { reload(e.reason); });
 *
 * It only wraps this one instance's `send_event` (for `pusher:subscribe` and `pusher:unsubscribe`)
 * and reads the raw frames of its connection (pusher-js drops unknown fields such as `position`
 * when it decodes). pusher-js without it behaves exactly as before. No dependencies, no build step:
 * loaded with a <script> tag (the broker serves it at /vestnik-recovery.js) it defines the global
 * `VestnikRecovery`; under CommonJS it is `module.exports`; the ES entry (index.js) re-exports it.
 * It never logs a payload or an auth signature.
 */
(function (root, factory) {
  var api = factory();
  if (typeof module === 'object' && module.exports) module.exports = api;
  root.VestnikRecovery = api;
})(typeof globalThis !== 'undefined' ? globalThis : this, function () {
  'use strict';

  /** The event a channel gets when the broker could not recover what it missed. */
  var RECOVERY_FAILED = 'vestnik:recovery_failed';
  /** The event a channel gets when the broker replayed what it missed. */
  var RECOVERED = 'vestnik:recovered';

  function decode(data) {
    if (typeof data !== 'string') return data;
    try {
      return JSON.parse(data);
    } catch (e) {
      return data;
    }
  }

  function isPosition(p) {
    return !!p && typeof p.epoch === 'string' && typeof p.offset === 'number';
  }

  /**
   * Hooks one pusher-js instance. Returns `{position(channel), detach()}`: the last position seen on
   * a channel (or null), and a way to undo the hook. Installing twice on one instance returns the
   * first hook.
   */
  function install(pusher, options) {
    if (!pusher || typeof pusher.send_event !== 'function' || !pusher.connection) {
      throw new TypeError('VestnikRecovery.install(pusher): a pusher-js 8 instance is needed');
    }
    if (pusher.__vestnikRecovery) return pusher.__vestnikRecovery;
    var onFailed = options && options.onRecoveryFailed;
    var positions = new Map();
    var hooked = typeof WeakSet === 'function' ? new WeakSet() : null;
    var originalSend = pusher.send_event;

    pusher.send_event = function (name, data, channel) {
      if (name === 'pusher:subscribe' && data && typeof data.channel === 'string') {
        var last = positions.get(data.channel);
        // Only a resubscribe knows a position: a first subscribe (or one after an unsubscribe) asks
        // for nothing, and its answer gives the channel's position to start from.
        if (last) data = Object.assign({}, data, { recover: { epoch: last.epoch, offset: last.offset } });
      } else if (name === 'pusher:unsubscribe' && data && typeof data.channel === 'string') {
        positions.delete(data.channel);
      }
      return originalSend.call(this, name, data, channel);
    };

    function emit(channelName, event, payload) {
      var channel = pusher.channel(channelName);
      if (channel) channel.emit(event, payload);
    }

    function onFrame(messageEvent) {
      var frame;
      try {
        frame = JSON.parse(messageEvent && messageEvent.data);
      } catch (e) {
        return;
      }
      if (!frame || typeof frame.channel !== 'string' || !isPosition(frame.position)) return;
      if (frame.event === 'pusher_internal:subscription_succeeded') {
        var data = decode(frame.data) || {};
        var recovery = data.recovery;
        if (recovery && recovery.recovered === true) {
          // The missed events follow and move the position on; it stays where it was until then.
          emit(frame.channel, RECOVERED, { missed: recovery.missed });
          return;
        }
        positions.set(frame.channel, { epoch: frame.position.epoch, offset: frame.position.offset });
        if (recovery && recovery.recovered === false) {
          var failure = { channel: frame.channel, reason: recovery.reason, position: frame.position };
          emit(frame.channel, RECOVERY_FAILED, failure);
          if (typeof onFailed === 'function') onFailed(failure);
        }
        return;
      }
      // Other protocol frames carry no event of the app's.
      if (frame.event.indexOf('pusher:') === 0 || frame.event.indexOf('pusher_internal:') === 0) return;
      positions.set(frame.channel, { epoch: frame.position.epoch, offset: frame.position.offset });
    }

    // Each new connection brings a new transport: read its raw frames, before any subscribe answer
    // (pusher-js resubscribes on the same `connected` event, and answers come later).
    function hookTransport() {
      var transport = pusher.connection.connection && pusher.connection.connection.transport;
      if (!transport || typeof transport.bind !== 'function') return;
      if (hooked) {
        if (hooked.has(transport)) return;
        hooked.add(transport);
      } else if (transport.__vestnikRecovery) {
        return;
      }
      transport.__vestnikRecovery = true;
      transport.bind('message', onFrame);
    }
    pusher.connection.bind('connected', hookTransport);
    hookTransport();

    var hook = {
      position: function (channel) {
        var p = positions.get(channel);
        return p ? { epoch: p.epoch, offset: p.offset } : null;
      },
      detach: function () {
        pusher.send_event = originalSend;
        pusher.connection.unbind('connected', hookTransport);
        var transport = pusher.connection.connection && pusher.connection.connection.transport;
        if (transport && typeof transport.unbind === 'function') transport.unbind('message', onFrame);
        delete pusher.__vestnikRecovery;
      },
    };
    pusher.__vestnikRecovery = hook;
    return hook;
  }

  return { install: install, RECOVERY_FAILED: RECOVERY_FAILED, RECOVERED: RECOVERED };
});
