use std::time::Duration;

use crate::helpers::{assert_one_order, page_cursor, TestApp};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_pollers_get_all_300_fast_posts_exactly_once_in_order() {
    let app = TestApp::spawn().await;
    let poster = app.login(Some("poster")).await;
    let mut pollers = Vec::new();
    for i in 0..5 {
        let reader = app.login(Some(&format!("reader {i}"))).await;
        let cursor = page_cursor(&reader.page().await);
        pollers.push(tokio::spawn(async move {
            reader.follow_polls(cursor, 300).await
        }));
    }
    let mut posted = Vec::new();
    for i in 0..300 {
        posted.push(poster.say_ok(&format!("fast {i}")).await.id);
    }
    for poller in pollers {
        let seen = tokio::time::timeout(Duration::from_secs(60), poller)
            .await
            .expect("pollers finish")
            .unwrap();
        assert_eq!(seen, posted, "every message once, in order");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_posters_are_seen_in_one_order_by_everyone() {
    let app = TestApp::spawn().await;
    let mut readers = Vec::new();
    for _ in 0..3 {
        let reader = app.login(None).await;
        let cursor = page_cursor(&reader.page().await);
        readers.push(tokio::spawn(async move {
            reader.follow_polls(cursor, 120).await
        }));
    }
    let mut posters = Vec::new();
    for p in 0..4 {
        let poster = app.login(None).await;
        posters.push(tokio::spawn(async move {
            for i in 0..30 {
                poster.say_ok(&format!("{p}/{i}")).await;
            }
        }));
    }
    for poster in posters {
        poster.await.unwrap();
    }
    let mut orders = Vec::new();
    for reader in readers {
        orders.push(
            tokio::time::timeout(Duration::from_secs(60), reader)
                .await
                .unwrap()
                .unwrap(),
        );
    }
    assert_one_order(&orders, 120);
}
