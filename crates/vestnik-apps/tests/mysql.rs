//! The store suite against the shared MariaDB (127.0.0.1:3306, root, empty password); each
//! test creates and drops its own database.

mod common;

use common::{suite, TestDb};

#[tokio::test]
async fn migrate_twice_is_a_no_op() {
    suite::migrate_twice_is_a_no_op(&TestDb::mysql().await).await;
}

#[tokio::test]
async fn crud() {
    suite::crud(&TestDb::mysql().await).await;
}

#[tokio::test]
async fn duplicates_are_refused() {
    suite::duplicates_are_refused(&TestDb::mysql().await).await;
}

#[tokio::test]
async fn rotation_keeps_the_old_secret_for_the_grace() {
    suite::rotation_keeps_the_old_secret_for_the_grace(&TestDb::mysql().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_sql_changes_reach_the_feed() {
    suite::raw_sql_changes_reach_the_feed(&TestDb::mysql().await).await;
}

#[tokio::test]
async fn a_slow_consumer_gets_a_resync() {
    suite::a_slow_consumer_gets_a_resync(&TestDb::mysql().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_merges_under_concurrent_increments() {
    suite::usage_merges_under_concurrent_increments(&TestDb::mysql().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_converges() {
    suite::every_node_converges(&TestDb::mysql().await).await;
}
