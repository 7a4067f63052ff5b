//! The task gauges the soak run reads: `vestnik_connection_tasks` follows the sockets up and back
//! to 0 once they leave, and `vestnik_runtime_alive_tasks` rises with them and settles back, so a
//! connection whose tasks outlive its socket shows on the scrape.

mod common;

use common::*;

#[tokio::test]
async fn task_gauges_follow_sockets_and_return_to_idle() {
    let b = BrokerProcess::spawn(bin(), &format!("[server]\nmetrics_port = 0\n{APPS}"));
    let port = metrics_port(&b).await;
    let idle = scrape(port).await;
    assert_eq!(value(&idle, "vestnik_connection_tasks"), 0.0, "{idle}");
    let idle_tasks = value(&idle, "vestnik_runtime_alive_tasks");
    assert!(idle_tasks >= 1.0, "{idle}");
    assert!(
        idle.contains("vestnik_runtime_global_queue_depth"),
        "{idle}"
    );

    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(WsClient::connect(&b.ws_url(KEY)).await);
    }
    let body = scrape(port).await;
    assert_eq!(value(&body, "vestnik_connection_tasks"), 3.0, "{body}");
    assert!(
        value(&body, "vestnik_runtime_alive_tasks") >= idle_tasks + 3.0,
        "{body}"
    );

    drop(clients);
    wait_until("the connection tasks to end", WAIT, || async {
        let body = scrape(port).await;
        value(&body, "vestnik_connection_tasks") == 0.0
            && value(&body, "vestnik_runtime_alive_tasks") <= idle_tasks
    })
    .await;
}
