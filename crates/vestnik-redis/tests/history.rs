//! The Redis history store against the shared Redis: an append asked again with the same ids
//! (as the numbering does after a lost answer) answers the positions it got and keeps the events
//! once. A test that cannot reach Redis fails and says how to start it; none is skipped.

use vestnik_broker::adapter::Adapter;
use vestnik_redis::RedisAdapter;
use vestnik_testkit::conformance::{store, unique_prefix};

#[tokio::test]
async fn appends_are_idempotent() {
    let url =
        std::env::var("VESTNIK_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let prefix = unique_prefix("redis-history");
    let adapter = RedisAdapter::connect(&url, &prefix, 1)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "cannot reach Redis at {url}: {e}\nstart one with `redis-server --port 6379`, or \
                 set VESTNIK_TEST_REDIS_URL to another"
            )
        });
    let history = adapter.history().expect("the Redis adapter keeps history");
    store::appends_are_idempotent(history.as_ref(), "app").await;
}
