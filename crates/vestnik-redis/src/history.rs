//! [`RedisHistory`]: the cluster's channel history kept in Redis, so positions are cluster-wide
//! and a client recovers on any node (see `vestnik_broker::adapter::HistoryStore`).
//!
//! Each channel has two keys sharing one hash tag (so a Redis Cluster keeps them on one slot): `{prefix:h:app:channel}:m`, a hash with the epoch (`e`) and the last offset (`o`), and
//! `{…}:s`, a Redis stream of the kept events, entry id `offset-1`, fields `v` (the event as the
//! cluster layer encoded it) and `t` (Redis's clock when it was appended, in ms). One Lua script
//! appends a whole batch (for each event the next offset, the entry, the bounds, the expiries),
//! atomically, so two nodes
//! publishing to one channel at once get consecutive offsets; another reads the epoch, the bounds
//! and a range. The hash lives for the quiet keep (24 h) after the channel's last event, the stream
//! for the channel's `ttl`; a hash that is gone (expired, evicted, a Redis restarted without
//! persistence) starts the channel over under a new epoch, so offsets are never reused.
//!
//! Appends are idempotent: each script call also gets `{…}:a:<id>` (the hash tag of its first
//! append's channel, the id of that append), which remembers the call's answer for
//! [`DEDUPE_KEEP`]; a call asked again (its answer was lost to a timeout or a dropped connection)
//! answers that and appends nothing, so the numbering can ask again without keeping an event twice.
//!
//! Calls go over multiplexed connections of their own (one; on a Redis Cluster one per master,
//! each call sent to the master of its keys' slot, a batch of appends split into one script call
//! per slot, and the slot map asked for again after a failure), made on first use and again
//! after a failure (after a timeout, only at the second in a row: a call sent on the same
//! connection after one that timed out runs after it, so the numbering can read back an append
//! whose answer it missed); while the adapter knows Redis is down, they fail at once rather than
//! wait. This
//! module must never block and never panic on a Redis failure: it answers an error.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, RedisError, Script, Value};
use vestnik_broker::adapter::{
    new_epoch, Adapter, Append, Appended, HistoryStore, StoreError, StoredPage, StreamRef,
    DEDUPE_KEEP,
};
use vestnik_broker::history::QUIET_KEEP;
use vestnik_broker::hook::HookFuture;

use crate::slots;
use crate::target::{Target, Topology};
use crate::RedisAdapter;

/// The longest a history call waits for Redis: a trigger waits this long at most before it goes
/// out without positions.
const CALL_TIMEOUT: Duration = Duration::from_secs(1);

/// KEYS: the call's id key, then hash and stream of each append, in order. ARGV: the id key's ttl
/// ms, then six per append: event, epoch if new, size, ttl ms, hash ttl ms, restart (0/1).
/// Returns `{epoch, offset, epoch, offset, …}`. A call whose id key exists was run before (its
/// answer was lost): it answers what it answered then and appends nothing.
const APPEND: &str = r"
local done = redis.call('GET', KEYS[1])
if done then
  return cjson.decode(done)
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {}
for i = 1, (#KEYS - 1) / 2 do
  local h, s, a = KEYS[2 * i], KEYS[2 * i + 1], 1 + (i - 1) * 6
  local epoch = redis.call('HGET', h, 'e')
  if (not epoch) or ARGV[a + 6] == '1' then
    epoch = ARGV[a + 2]
    redis.call('DEL', s)
    redis.call('HSET', h, 'e', epoch, 'o', 0)
  end
  local offset = redis.call('HINCRBY', h, 'o', 1)
  redis.call('XADD', s, 'MAXLEN', ARGV[a + 3], offset .. '-1', 'v', ARGV[a + 1], 't', now)
  redis.call('PEXPIRE', s, ARGV[a + 4])
  redis.call('PEXPIRE', h, ARGV[a + 5])
  out[#out + 1] = epoch
  out[#out + 1] = offset
end
redis.call('SET', KEYS[1], cjson.encode(out), 'PX', ARGV[1])
return out
";

/// KEYS: hash, stream. ARGV: after, limit, ttl ms, epoch if new, hash ttl ms.
/// Returns `{epoch, top, first, {offset, event, offset, event, …}}`; a channel Redis does not
/// know is started (epoch, offset 0), so its position holds from now on.
const READ: &str = r"
local epoch = redis.call('HGET', KEYS[1], 'e')
if not epoch then
  epoch = ARGV[4]
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'e', epoch, 'o', 0)
  redis.call('PEXPIRE', KEYS[1], ARGV[5])
end
local top = tonumber(redis.call('HGET', KEYS[1], 'o'))
local t = redis.call('TIME')
local cutoff = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) - tonumber(ARGV[3])
local after = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local first = top + 1
local out = {}
local n = 0
for _, e in ipairs(redis.call('XRANGE', KEYS[2], '-', '+')) do
  local offset = tonumber(string.match(e[1], '^(%d+)'))
  local f = e[2]
  local value, at = nil, 0
  for i = 1, #f, 2 do
    if f[i] == 'v' then value = f[i + 1] elseif f[i] == 't' then at = tonumber(f[i + 1]) end
  end
  if at >= cutoff and value then
    if first > top then first = offset end
    if offset > after and n < limit then
      out[#out + 1] = offset
      out[#out + 1] = value
      n = n + 1
    end
  end
end
return {epoch, top, first, out}
";

/// The Redis [`HistoryStore`]. See the module documentation.
pub struct RedisHistory {
    target: tokio::sync::Mutex<Target>,
    /// The open connections, by server (`host:port` of a cluster master; "" for a single Redis).
    conns: parking_lot::Mutex<HashMap<String, MultiplexedConnection>>,
    /// A cluster's slot map, asked for on first use and again after a failure.
    topology: parking_lot::Mutex<Option<Topology>>,
    /// Whether `target` is a Redis Cluster.
    clustered: bool,
    prefix: String,
    adapter: Weak<RedisAdapter>,
    append: Script,
    read: Script,
    /// Calls that timed out in a row. The first timeout keeps the connections: a call sent next
    /// on the same connection runs after the one that timed out, if that one ever runs, which is
    /// what lets the numbering read back an append whose answer it missed (a node stopped with
    /// the answer in its socket) without racing it. The second drops them.
    timeouts: AtomicU32,
}

impl std::fmt::Debug for RedisHistory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisHistory")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisHistory {
    /// The store of cluster `prefix` on `target`, failing fast while `adapter` is disconnected.
    pub(crate) fn new(target: Target, prefix: &str, adapter: Weak<RedisAdapter>) -> Self {
        Self {
            clustered: matches!(target, Target::Cluster(_)),
            target: tokio::sync::Mutex::new(target),
            conns: parking_lot::Mutex::new(HashMap::new()),
            topology: parking_lot::Mutex::new(None),
            prefix: prefix.to_owned(),
            adapter,
            append: Script::new(APPEND),
            read: Script::new(READ),
            timeouts: AtomicU32::new(0),
        }
    }

    /// The hash and stream keys of a channel.
    fn keys(&self, s: &StreamRef<'_>) -> (String, String) {
        let tag = self.tag(s);
        (format!("{tag}:m"), format!("{tag}:s"))
    }

    /// A channel's hash tag: its keys share it, so a Redis Cluster keeps them on one slot.
    fn tag(&self, s: &StreamRef<'_>) -> String {
        format!("{{{}:h:{}:{}}}", self.prefix, s.app, s.channel)
    }

    /// The key that remembers a script call by its first append's id (in that append's channel's
    /// slot, which every append of the call shares), for [`DEDUPE_KEEP`].
    fn id_key(&self, first: &Append<'_>) -> String {
        format!("{}:a:{:016x}", self.tag(&first.stream), first.id)
    }

    /// The connection to the server owning `slot` (a single Redis owns them all), made now if
    /// there is none (for a cluster, after asking for the slot map when it is not known).
    async fn conn(&self, slot: u16) -> Result<MultiplexedConnection, StoreError> {
        if let Some(adapter) = self.adapter.upgrade() {
            if !adapter.is_connected() {
                return Err(StoreError::unsent("redis is unreachable"));
            }
        }
        if let Some(c) = self.cached(slot) {
            return Ok(c);
        }
        let mut target = self.target.lock().await;
        if let Some(c) = self.cached(slot) {
            return Ok(c);
        }
        let (addr, client) = match &mut *target {
            Target::Cluster(cluster) => {
                let known = self.topology.lock().clone();
                let topology = match known {
                    Some(t) => t,
                    None => {
                        let t = cluster
                            .topology(CALL_TIMEOUT)
                            .await
                            .map_err(|e| self.unmade(&e))?;
                        *self.topology.lock() = Some(t.clone());
                        t
                    }
                };
                let Some(addr) = topology.master(slot).map(str::to_owned) else {
                    self.forget();
                    return Err(StoreError::unsent(format!(
                        "redis: no master owns slot {slot}"
                    )));
                };
                let client = cluster.client(&addr).map_err(|e| self.unmade(&e))?;
                (addr, client)
            }
            other => (
                String::new(),
                other.client().await.map_err(|e| self.unmade(&e))?,
            ),
        };
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CALL_TIMEOUT))
            .set_response_timeout(Some(CALL_TIMEOUT));
        let c = client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(|e| self.unmade(&e))?;
        self.conns.lock().insert(addr, c.clone());
        Ok(c)
    }

    /// The open connection to the server owning `slot`, if there is one.
    fn cached(&self, slot: u16) -> Option<MultiplexedConnection> {
        let addr = if self.clustered {
            self.topology.lock().as_ref()?.master(slot)?.to_owned()
        } else {
            String::new()
        };
        self.conns.lock().get(&addr).cloned()
    }

    /// Drops the connections (and a cluster's slot map) after a failure that may have broken
    /// them or shows the map is stale (`MOVED`, `CLUSTERDOWN`…), and says why.
    fn failed(&self, e: &RedisError) -> StoreError {
        if e.is_timeout() {
            self.timed_out();
        } else if e.is_io_error()
            || e.is_connection_dropped()
            || e.is_connection_refusal()
            || e.is_cluster_error()
        {
            self.forget();
        }
        let message = format!("redis: {e}");
        // An error Redis answered (`MOVED`, `CLUSTERDOWN`, `NOSCRIPT`…) came before the script
        // acted; a timeout or a dropped connection may have come after.
        if e.code().is_some() {
            StoreError::unsent(message)
        } else {
            StoreError::unknown(message)
        }
    }

    /// [`failed`](Self::failed) for a connection that could not be made: nothing was sent.
    fn unmade(&self, e: &RedisError) -> StoreError {
        StoreError::unsent(self.failed(e).message)
    }

    /// Counts a call that timed out; drops the connections at the second in a row (see
    /// `timeouts`).
    fn timed_out(&self) {
        if self.timeouts.fetch_add(1, Ordering::AcqRel) >= 1 {
            self.forget();
        }
    }

    /// Forgets every connection and the slot map: the next call makes them anew.
    fn forget(&self) {
        self.conns.lock().clear();
        *self.topology.lock() = None;
    }

    /// Runs one call within [`CALL_TIMEOUT`].
    async fn timed<T>(
        &self,
        call: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(CALL_TIMEOUT, call).await {
            Ok(r) => {
                if r.is_ok() {
                    self.timeouts.store(0, Ordering::Release);
                }
                r
            }
            Err(_) => {
                self.timed_out();
                Err(StoreError::unknown(format!(
                    "redis did not answer within {CALL_TIMEOUT:?}"
                )))
            }
        }
    }
}

/// `d` in whole milliseconds, at least 1 (Redis refuses an expiry of 0).
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// Reads the read script's answer.
fn page_of(value: Value) -> Result<StoredPage, StoreError> {
    let bad = || StoreError::unknown("redis: unexpected answer to the history read");
    let Value::Array(parts) = value else {
        return Err(bad());
    };
    let [epoch, top, first, events]: [Value; 4] = parts.try_into().map_err(|_| bad())?;
    let epoch: String = redis::from_redis_value(epoch).map_err(|_| bad())?;
    let top: u64 = redis::from_redis_value(top).map_err(|_| bad())?;
    let first: u64 = redis::from_redis_value(first).map_err(|_| bad())?;
    let Value::Array(flat) = events else {
        return Err(bad());
    };
    let mut out = Vec::with_capacity(flat.len() / 2);
    let mut it = flat.into_iter();
    while let (Some(offset), Some(event)) = (it.next(), it.next()) {
        let offset: u64 = redis::from_redis_value(offset).map_err(|_| bad())?;
        let event: Vec<u8> = redis::from_redis_value(event).map_err(|_| bad())?;
        out.push((offset, Bytes::from(event)));
    }
    Ok(StoredPage {
        epoch: Some(Arc::from(epoch)),
        top,
        first,
        events: out,
    })
}

impl HistoryStore for RedisHistory {
    fn append<'a>(
        &'a self,
        appends: &'a [Append<'a>],
    ) -> HookFuture<'a, Result<Vec<Appended>, StoreError>> {
        Box::pin(self.timed(async move {
            if appends.is_empty() {
                return Ok(Vec::new());
            }
            // One script call per hash slot (a Redis Cluster runs a script only on keys of one
            // slot; a single Redis has one group per slot too, which costs nothing when, as
            // usual, a batch is one channel's): one round trip each, numbered in order.
            let mut groups: Vec<(u16, Vec<usize>)> = Vec::new();
            for (i, a) in appends.iter().enumerate() {
                let slot = slots::slot(self.keys(&a.stream).0.as_bytes());
                match groups.iter_mut().find(|(s, _)| *s == slot) {
                    Some((_, members)) => members.push(i),
                    None => groups.push((slot, vec![i])),
                }
            }
            let bad = || StoreError::unknown("redis: unexpected answer to the history append");
            let mut out: Vec<Option<Appended>> = vec![None; appends.len()];
            for (n, (slot, members)) in groups.into_iter().enumerate() {
                // A failure after an earlier group was kept leaves the batch half kept.
                let acted = |e: StoreError| {
                    if n > 0 {
                        StoreError::unknown(e.message)
                    } else {
                        e
                    }
                };
                let mut conn = self.conn(slot).await.map_err(acted)?;
                let mut call = self.append.prepare_invoke();
                call.key(self.id_key(&appends[members[0]]))
                    .arg(millis(DEDUPE_KEEP));
                for &i in &members {
                    let a = &appends[i];
                    let (hash, stream) = self.keys(&a.stream);
                    call.key(hash).key(stream);
                    call.arg(a.event.as_ref())
                        .arg(new_epoch().as_ref())
                        .arg(a.stream.size.max(1))
                        .arg(millis(a.stream.ttl))
                        .arg(millis(QUIET_KEEP + a.stream.ttl))
                        .arg(u8::from(a.stream.restart));
                }
                let flat: Vec<Value> = call
                    .invoke_async(&mut conn)
                    .await
                    .map_err(|e| acted(self.failed(&e)))?;
                let mut it = flat.into_iter();
                for &i in &members {
                    let (Some(epoch), Some(offset)) = (it.next(), it.next()) else {
                        return Err(bad());
                    };
                    let epoch: String = redis::from_redis_value(epoch).map_err(|_| bad())?;
                    let offset: u64 = redis::from_redis_value(offset).map_err(|_| bad())?;
                    out[i] = Some(Appended {
                        epoch: Arc::from(epoch),
                        offset,
                    });
                }
            }
            let out: Vec<Appended> = out.into_iter().flatten().collect();
            Ok(out)
        }))
    }

    fn read<'a>(
        &'a self,
        stream: StreamRef<'a>,
        after: u64,
        limit: usize,
    ) -> HookFuture<'a, Result<StoredPage, StoreError>> {
        Box::pin(self.timed(async move {
            let (hash, key) = self.keys(&stream);
            let mut conn = self.conn(slots::slot(hash.as_bytes())).await?;
            let value: Value = self
                .read
                .key(hash)
                .key(key)
                .arg(after)
                .arg(limit)
                .arg(millis(stream.ttl))
                .arg(new_epoch().as_ref())
                .arg(millis(QUIET_KEEP + stream.ttl))
                .invoke_async(&mut conn)
                .await
                .map_err(|e| self.failed(&e))?;
            page_of(value)
        }))
    }
}
