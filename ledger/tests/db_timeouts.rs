//! The store against a real Postgres that stops answering (through a blackholing proxy) or
//! answers slowly: every call fails within its configured bound, a connection given up on is
//! never handed out again, Postgres's own session limits are in force, and what is merely
//! slow or streaming is not mistaken for a stall.

#[path = "support/blackhole.rs"]
mod blackhole;

use blackhole::{upstream_of, Blackhole};
use ledger::store::{DbRole, DbTimeouts, PoolOptions, Store, StoreError, DB_STALLS};
use ledger::testing::TestDb;
use std::time::{Duration, Instant};

fn timeouts(connect_ms: u64, pool_wait_ms: u64, response_ms: u64) -> DbTimeouts {
    DbTimeouts {
        connect: Duration::from_millis(connect_ms),
        pool_wait: Duration::from_millis(pool_wait_ms),
        response: Duration::from_millis(response_ms),
        ..DbTimeouts::default()
    }
}

fn store(url: &str, max_size: usize, t: DbTimeouts) -> Store {
    Store::connect(
        url,
        &PoolOptions {
            max_size,
            wait_timeout: t.pool_wait,
            timeouts: t,
            durability: ledger::store::Durability::Local,
        },
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

async fn backend_pid(store: &Store) -> Result<i32, StoreError> {
    let client = store.pool().get().await?;
    Ok(client
        .query_one("SELECT pg_backend_pid()", &[])
        .await?
        .get(0))
}

fn stalls(phase: &str) -> u64 {
    DB_STALLS.with_label_values(&[phase]).get()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_database_fails_each_call_within_its_bound_and_its_connection_is_dropped() {
    let db = TestDb::new().await.unwrap_or_else(|e| panic!("{e}"));
    let url = db.url(DbRole::Portal);
    let proxy = Blackhole::start(upstream_of(&url)).await;
    let t = timeouts(800, 300, 1_000);
    let store = store(&proxy.url(&url), 1, t);
    let before = backend_pid(&store).await.unwrap_or_else(|e| panic!("{e}"));
    assert!(store.scroll("drills").await.is_ok());
    let stalled_before = stalls("response");

    proxy.set_forwarding(false);
    let started = Instant::now();
    let err = match store.scroll("drills").await {
        Ok(s) => panic!("a blackholed database answered {s:?}"),
        Err(e) => e,
    };
    let waited = started.elapsed();
    assert!(err.is_unavailable(), "{err}");
    assert!(
        waited >= Duration::from_millis(900)
            && waited <= t.call_bound() + Duration::from_millis(500),
        "failed after {waited:?} (response timeout 1 s)"
    );
    assert!(stalls("response") > stalled_before);
    let api = ledger::api_error::ApiError::from(err);
    assert_eq!(
        (api.status().as_u16(), api.code()),
        (503, "database_unavailable")
    );

    for _ in 0..3 {
        let started = Instant::now();
        let result = store.scroll("drills").await;
        assert!(
            result.as_ref().is_err_and(StoreError::is_unavailable),
            "{result:?}"
        );
        assert!(
            started.elapsed() <= t.call_bound() + Duration::from_millis(500),
            "a call during the stall took {:?}",
            started.elapsed()
        );
    }

    proxy.set_forwarding(true);
    let recovered = Instant::now();
    let after = loop {
        match backend_pid(&store).await {
            Ok(pid) => break pid,
            Err(e) => assert!(
                recovered.elapsed() < Duration::from_secs(3),
                "no recovery: {e}"
            ),
        }
    };
    assert_ne!(
        before, after,
        "the only pooled connection was given up on, so this must be a new one"
    );
    assert!(store.scroll("drills").await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_whose_startup_stalls_fails_within_the_connect_timeout() {
    let db = TestDb::new().await.unwrap_or_else(|e| panic!("{e}"));
    let url = db.url(DbRole::Portal);
    let proxy = Blackhole::start(upstream_of(&url)).await;
    proxy.set_forwarding(false);
    let t = timeouts(500, 300, 5_000);
    let store = store(&proxy.url(&url), 4, t);
    let connects = stalls("connect");
    let started = Instant::now();
    let result = store.scroll("drills").await;
    let waited = started.elapsed();
    assert!(
        result.as_ref().is_err_and(StoreError::is_unavailable),
        "{result:?}"
    );
    assert!(
        waited >= Duration::from_millis(450) && waited < Duration::from_millis(1_500),
        "startup gave up after {waited:?} (connect timeout 500 ms)"
    );
    assert!(stalls("connect") > connects);
    proxy.set_forwarding(true);
    assert!(store.scroll("drills").await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_ping_gives_up_within_its_deadline_and_drops_its_connection() {
    let db = TestDb::new().await.unwrap_or_else(|e| panic!("{e}"));
    let url = db.url(DbRole::Portal);
    let proxy = Blackhole::start(upstream_of(&url)).await;
    let store = store(&proxy.url(&url), 2, timeouts(2_000, 1_000, 10_000));
    store.ping().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(store.pool().status().size, 1);
    proxy.set_forwarding(false);
    let started = Instant::now();
    let result = store.ping().await;
    let waited = started.elapsed();
    assert!(matches!(result, Err(StoreError::Timeout(_))), "{result:?}");
    assert!(
        waited >= ledger::store::PING_TIMEOUT && waited < Duration::from_millis(2_000),
        "{waited:?}: readiness waits 2 s for the ping"
    );
    assert_eq!(
        store.pool().status().size,
        0,
        "the connection with an unanswered ping left the pool"
    );
    proxy.set_forwarding(true);
    store.ping().await.unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_enforces_the_session_limits_and_the_url_can_override_them() {
    let db = TestDb::new().await.unwrap_or_else(|e| panic!("{e}"));
    let url = db.url(DbRole::Portal);
    let t = DbTimeouts {
        statement: Duration::from_millis(300),
        idle_in_transaction: Duration::from_millis(400),
        ..DbTimeouts::default()
    };
    let store = store(&url, 2, t);
    let client = store.pool().get().await.unwrap_or_else(|e| panic!("{e}"));
    let show = |name: &'static str| {
        let client = &client;
        async move {
            client
                .query_one(&format!("SHOW {name}"), &[])
                .await
                .map(|r| r.get::<_, String>(0))
                .unwrap_or_else(|e| panic!("{e}"))
        }
    };
    assert_eq!(show("statement_timeout").await, "300ms");
    assert_eq!(show("idle_in_transaction_session_timeout").await, "400ms");

    let pid: i32 = client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .get(0);
    let started = Instant::now();
    let slow = client.simple_query("SELECT pg_sleep(2)").await;
    let err = StoreError::Db(match slow {
        Ok(_) => panic!("a 2 s statement ran under a 300 ms statement_timeout"),
        Err(e) => e,
    });
    assert_eq!(err.sqlstate(), Some("57014"), "{err}");
    assert!(err.is_unavailable() && !err.is_data_error());
    assert!(started.elapsed() < Duration::from_millis(1_500));
    let same: i32 = client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap_or_else(|e| panic!("a cancelled statement must leave its connection usable: {e}"))
        .get(0);
    assert_eq!(pid, same);
    drop(client);

    let mut client = store.pool().get().await.unwrap_or_else(|e| panic!("{e}"));
    let tx = client.transaction().await.unwrap_or_else(|e| panic!("{e}"));
    tx.execute("SELECT 1", &[])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    tokio::time::sleep(Duration::from_millis(900)).await;
    let ended = tx.execute("SELECT 1", &[]).await;
    let err = StoreError::Db(match ended {
        Ok(_) => panic!("a transaction idle for 900 ms survived a 400 ms limit"),
        Err(e) => e,
    });
    assert!(err.is_unavailable(), "{err}");
    drop(tx);
    drop(client);

    let overridden = format!("{url}?options=-c%20statement_timeout%3D0");
    let store = self::store(&overridden, 1, t);
    let client = store.pool().get().await.unwrap_or_else(|e| panic!("{e}"));
    let value: String = client
        .query_one("SHOW statement_timeout", &[])
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .get(0);
    assert_eq!(value, "0", "the URL's own options win");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_and_pauses_are_not_mistaken_for_stalls() {
    use futures_util::StreamExt;
    let db = TestDb::new().await.unwrap_or_else(|e| panic!("{e}"));
    let store = store(
        &db.url(DbRole::Portal),
        1,
        DbTimeouts {
            response: Duration::from_millis(300),
            statement: Duration::ZERO,
            ..DbTimeouts::default()
        },
    );
    let client = store.pool().get().await.unwrap_or_else(|e| panic!("{e}"));
    let stream = client
        .copy_out("COPY (SELECT g, repeat('x', 200) FROM generate_series(1, 300000) g) TO STDOUT")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    futures_util::pin_mut!(stream);
    let (mut bytes, mut chunks) = (0usize, 0usize);
    let started = Instant::now();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap_or_else(|e| panic!("a streaming read was cut off: {e}"));
        bytes += chunk.len();
        chunks += 1;
        if chunks == 10 {
            tokio::time::sleep(Duration::from_millis(800)).await;
        }
    }
    assert!(bytes > 60_000_000 && started.elapsed() > Duration::from_millis(800));
    let idle_then_used = async {
        tokio::time::sleep(Duration::from_millis(700)).await;
        client.query_one("SELECT 1", &[]).await
    };
    assert!(
        idle_then_used.await.is_ok(),
        "an idle connection is not a stalled one"
    );
    let pipelined = tokio::join!(
        client.query_one("SELECT pg_sleep(0.2)::text", &[]),
        client.query_one("SELECT pg_sleep(0.2)::text", &[]),
        client.query_one("SELECT pg_sleep(0.2)::text", &[]),
    );
    assert!(pipelined.0.is_ok() && pipelined.1.is_ok() && pipelined.2.is_ok());
    assert!(!client.is_closed(), "nothing was given up on");
}
