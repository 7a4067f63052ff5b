//! What a person finds at the broker's address: `GET /` names the server and its version and links
//! to the console (when enabled) and the docs; the start-up log names the address once and the
//! console's URL once.
#![allow(missing_docs)]

mod common;

use common::*;

#[tokio::test]
async fn the_root_page_names_the_server_and_links_to_the_console() {
    let b = spawn();
    let r = raw_http(b.port, "GET", "/", "").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("Vestnik"), "{}", r.body);
    assert!(r.body.contains(env!("CARGO_PKG_VERSION")), "{}", r.body);
    assert!(r.body.contains("href=\"/console\""), "{}", r.body);
    assert!(r.body.contains("docs"), "{}", r.body);
}

#[tokio::test]
async fn without_the_console_the_root_page_does_not_link_to_it() {
    let b = BrokerProcess::spawn(bin(), &format!("[console]\nenabled = false\n{APPS}"));
    let r = raw_http(b.port, "GET", "/", "").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(!r.body.contains("href=\"/console\""), "{}", r.body);
}

#[tokio::test]
async fn the_start_up_log_names_the_address_once_and_the_console_url_once() {
    let b = spawn();
    let logs = b.startup_logs();
    let address = format!("127.0.0.1:{}", b.port);
    let naming: Vec<&String> = logs
        .iter()
        .filter(|l| l.contains("accepting on") || l.contains("listening on"))
        .collect();
    assert_eq!(naming.len(), 1, "one line names the address: {logs:#?}");
    assert!(naming[0].contains(&address), "{logs:#?}");
    let console = format!("http://{address}/console");
    assert_eq!(
        logs.iter().filter(|l| l.contains(&console)).count(),
        1,
        "the console URL once: {logs:#?}"
    );
}
