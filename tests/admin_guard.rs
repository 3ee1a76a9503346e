//! The admin API cannot be driven from a web page (issue 16): a cross-origin `text/plain`
//! POST — what any page can send without a CORS preflight — is refused, as is a request
//! whose `Host` is a name that merely resolves to the broker (DNS rebinding), while the
//! broker's own clients (JSON, or `X-Requested-With`) go through.

#![allow(clippy::unwrap_used)] // a test, bench or tool: a panic here is a failed run, not a broker down

mod support;

use std::net::SocketAddr;

use support::admin::broker;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sends `POST /api/queues/q/purge` with `headers`; the status.
async fn purge(admin: SocketAddr, host: &str, headers: &[&str]) -> u16 {
    let mut stream = TcpStream::connect(admin).await.unwrap();
    let mut head = format!(
        "POST /api/queues/q/purge HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\ncontent-length: 0\r\n"
    );
    for h in headers {
        head.push_str(h);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    answer.split(' ').nth(1).unwrap().parse().unwrap()
}

#[tokio::test]
async fn a_web_page_cannot_change_the_broker_through_the_admin_api() {
    let (broker, _url, admin) = broker().await;
    let declared = support::http::request(admin, "PUT", "/api/queues/q", Some("{}"), None).await;
    assert!(declared.status < 300, "{}", declared.status);
    let own = admin.to_string();
    // What a page can send cross-origin without asking first.
    assert_eq!(
        purge(
            admin,
            &own,
            &["content-type: text/plain", "origin: http://evil.example"]
        )
        .await,
        403
    );
    assert_eq!(purge(admin, &own, &["content-type: text/plain"]).await, 415);
    assert_eq!(purge(admin, &own, &[]).await, 415);
    // A page on a name that resolves to this machine.
    assert_eq!(
        purge(
            admin,
            "rebound.example.net:8672",
            &["content-type: application/json"]
        )
        .await,
        403
    );
    // The broker's own clients.
    assert_eq!(
        purge(admin, &own, &["content-type: application/json"]).await,
        200
    );
    assert_eq!(
        purge(admin, &own, &["x-requested-with: sluice-console"]).await,
        200
    );
    assert_eq!(
        purge(
            admin,
            &own,
            &[
                "content-type: application/json",
                &format!("origin: http://{own}")
            ]
        )
        .await,
        200
    );
    assert_eq!(
        purge(
            admin,
            &format!("localhost:{}", admin.port()),
            &["content-type: application/json"]
        )
        .await,
        200
    );
    broker.shutdown().await;
}
