//! The web console in a real browser: headless Chromium, driven over WebDriver, against an
//! in-process broker's admin listener.
//!
//! Needs Debian's chromium and chromium-driver; without them the test says SKIPPED on stderr
//! and passes. `SLUICE_CONSOLE_SCREENSHOT=1` also saves the queue table as docs/console.png.

#![allow(clippy::unwrap_used)] // a test, bench or tool: a panic here is a failed run, not a broker down

mod support;

use std::time::{Duration, Instant};

use fantoccini::Locator;
use fe2o3_amqp::link::receiver::CreditMode;
use fe2o3_amqp::session::SessionHandle;
use fe2o3_amqp::{Connection, Receiver, Sender, Session};
use support::broker::{start, test_config};
use support::browser::{self, Browser, WAIT};

const QUEUE: &str = "console-test";
/// A name that must be percent-encoded in URLs and escaped in HTML.
const ODD_QUEUE: &str = "console/<b>odd</b> & \"quoted\"";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_shows_queues_purges_and_deletes() {
    if !browser::available("console browser test") {
        return;
    }
    let mut config = test_config();
    config.admin.listen = "127.0.0.1:0".parse().unwrap();
    config.admin.enabled = true;
    let (broker, url) = start(config).await;
    let admin = broker.admin_addr().expect("the admin listener is enabled");

    let mut conn = Connection::open("console-test", url.as_str())
        .await
        .unwrap();
    let mut session = Session::begin(&mut conn).await.unwrap();
    send(&mut session, QUEUE, 5).await;
    send(&mut session, ODD_QUEUE, 1).await;

    let browser = Browser::start().await;
    let page = &browser.client;
    page.goto(&format!("http://{admin}/")).await.unwrap();

    // The table: a row per queue, keyed by name, with the broker's figures.
    let row = format!("#queues tr[data-queue=\"{QUEUE}\"]");
    browser.wait_for_text(&format!("{row} td.ready"), "5").await;
    browser
        .wait_for_text(&format!("{row} td.unacked"), "0")
        .await;
    browser
        .wait_for_text_that("#version", "show a version", |v| v.starts_with('v'))
        .await;

    // An awkward name is shown as text, and its link is percent-encoded: the page it opens is
    // that queue's (the server decodes what the console encodes).
    let odd = wait_for_row(&browser, ODD_QUEUE).await;
    let name_cell = odd.find(Locator::Css("td.name")).await.unwrap();
    assert_eq!(name_cell.text().await.unwrap(), ODD_QUEUE);
    odd.find(Locator::Css("td.name a"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    browser.wait_for_text("#queue-name", ODD_QUEUE).await;
    browser.wait_for_text("#queue-stats dd.ready", "1").await;
    assert_eq!(page.title().await.unwrap(), format!("{ODD_QUEUE} · sluice"));

    // Delete asks, deletes, and goes back to the table, which says what happened.
    browser.click("#delete").await;
    let question = browser.accept_confirm().await;
    assert!(
        question.contains(ODD_QUEUE),
        "names the queue: {question:?}"
    );
    browser
        .wait_for_text(
            "#result",
            &format!("Deleted queue \"{ODD_QUEUE}\" and 1 message."),
        )
        .await;
    assert_eq!(page.current_url().await.unwrap().fragment(), Some("/"));
    wait_for_rows(&browser, &[QUEUE]).await;
    assert!(broker.queue_stats(ODD_QUEUE).is_none(), "the queue is gone");

    // Purge, from the queue's page reached through the table: asks first, then says what it
    // did and shows the new figures.
    browser.click(&format!("{row} td.name a")).await;
    browser.wait_for_text("#queue-name", QUEUE).await;
    browser.wait_for_text("#queue-stats dd.ready", "5").await;
    browser.click("#purge").await;
    let question = browser.accept_confirm().await;
    assert!(question.contains(QUEUE), "names the queue: {question:?}");
    browser
        .wait_for_text("#result", &format!("Purged 5 messages from \"{QUEUE}\"."))
        .await;
    browser.wait_for_text("#queue-stats dd.ready", "0").await;
    assert_eq!(broker.queue_stats(QUEUE).unwrap().ready, 0);

    if std::env::var_os("SLUICE_CONSOLE_SCREENSHOT").is_some_and(|v| v == "1") {
        screenshot(&browser, &mut session).await;
    }

    browser.close().await;
    session.end().await.unwrap();
    conn.close().await.unwrap();
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_shows_exchanges_and_bindings() {
    if !browser::available("console exchanges test") {
        return;
    }
    let broker = support::broker::start_with_toml(
        "[exchanges.\"logs\"]\ntype = \"topic\"\n\n[[bindings]]\nexchange = \"logs\"\nqueue = \"audit\"\nkey = \"log.#\"\n",
    )
    .await;
    let admin = broker.admin_addr().expect("the admin listener is enabled");
    let browser = Browser::start().await;
    browser
        .client
        .goto(&format!("http://{admin}/#/exchanges"))
        .await
        .unwrap();
    browser
        .wait_for_text("#exchanges tr[data-exchange=\"logs\"] td.type", "topic")
        .await;
    browser
        .wait_for_text("#exchanges tr[data-exchange=\"logs\"] td.bindings", "1")
        .await;
    browser
        .wait_for_text(
            "#exchanges tr[data-exchange=\"amq.topic\"] td.type",
            "topic",
        )
        .await;
    browser
        .wait_for_text("#bindings tbody td.key", "log.#")
        .await;
    browser
        .wait_for_text("#bindings tbody td.queue", "audit")
        .await;
    browser.close().await;
    broker.shutdown().await;
}

async fn send(session: &mut SessionHandle<()>, queue: &str, n: usize) {
    let mut sender = Sender::attach(session, format!("sender-{queue}"), queue)
        .await
        .unwrap();
    for i in 0..n {
        let outcome = sender.send(format!("message {i}")).await.unwrap();
        assert!(outcome.is_accepted(), "{outcome:?}");
    }
    sender.close().await.unwrap();
}

/// The names in the queue table, in order (read from data-queue: a name may need escaping
/// in a CSS selector).
async fn rows(browser: &Browser) -> Vec<String> {
    let mut names = Vec::new();
    let rows = browser
        .client
        .find_all(Locator::Css("#queues tr[data-queue]"))
        .await;
    for row in rows.unwrap_or_default() {
        if let Ok(Some(name)) = row.attr("data-queue").await {
            names.push(name);
        }
    }
    names
}

async fn wait_for_rows(browser: &Browser, expected: &[&str]) {
    let deadline = Instant::now() + WAIT;
    loop {
        let names = rows(browser).await;
        if names == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the table shows {names:?}, not {expected:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_for_row(browser: &Browser, name: &str) -> fantoccini::elements::Element {
    let deadline = Instant::now() + WAIT;
    loop {
        let rows = browser
            .client
            .find_all(Locator::Css("#queues tr[data-queue]"))
            .await;
        for row in rows.unwrap_or_default() {
            if row.attr("data-queue").await.ok().flatten().as_deref() == Some(name) {
                return row;
            }
        }
        assert!(Instant::now() < deadline, "no row for {name:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// docs/console.png for the README: the queue table with a few busy queues in it.
async fn screenshot(browser: &Browser, session: &mut SessionHandle<()>) {
    send(session, "orders", 240).await;
    send(session, "invoices", 35).await;
    send(session, "audit.log", 1200).await;
    // A consumer holding messages unacknowledged, so not every column is zeros.
    let mut receiver = Receiver::builder()
        .name("orders-worker")
        .source("orders")
        .credit_mode(CreditMode::Manual)
        .attach(session)
        .await
        .unwrap();
    receiver.set_credit(40).await.unwrap();
    for _ in 0..40 {
        let delivery = tokio::time::timeout(WAIT, receiver.recv::<String>())
            .await
            .expect("a delivery")
            .unwrap();
        drop(delivery);
    }

    browser.click("#nav-queues").await;
    let orders = "#queues tr[data-queue=\"orders\"]";
    browser
        .wait_for_text(&format!("{orders} td.unacked"), "40")
        .await;
    // Rates are sampled once a second: wait for the one that shows those deliveries.
    browser
        .wait_for_text_that(&format!("{orders} td.deliver-rate"), "be non-zero", |r| {
            r != "0"
        })
        .await;
    // The page's body only: header and table, without the empty window below them.
    let body = browser.client.find(Locator::Css("body")).await.unwrap();
    let png = body.screenshot().await.expect("screenshot");
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/console.png");
    std::fs::write(path, png).expect("write docs/console.png");
    eprintln!("saved {path}");
    receiver.close().await.unwrap();
}
