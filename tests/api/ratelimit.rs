//! The shared token bucket and concurrency slots, spent by two "processes" (separate
//! connection pools, or Redis connections) at once, in every store: SQLite, PostgreSQL and
//! Redis.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use synchub::ratelimit::{Feedback, Limit, RateLimiter, Take};

use crate::helpers::{Backend, TestDatabase};

/// Where the buckets live for one test.
pub enum Store {
    Database(Backend),
    Redis(String),
}

/// Two independent limiters on one store (as two processes have), and the key prefix that
/// keeps this test's buckets apart from any other's on a shared Redis. Bind `_database`
/// for the test's length: the database is dropped with it.
struct Processes {
    limiters: [RateLimiter; 2],
    prefix: String,
    _database: Option<TestDatabase>,
}

async fn processes(store: Store) -> Processes {
    let prefix = format!("t{}:", uuid::Uuid::now_v7().simple());
    match store {
        Store::Database(backend) => {
            let database = TestDatabase::create(&backend).await;
            Processes {
                limiters: [
                    RateLimiter::new(database.connect().await),
                    RateLimiter::new(database.connect().await),
                ],
                prefix,
                _database: Some(database),
            }
        }
        Store::Redis(url) => Processes {
            limiters: [
                RateLimiter::redis(&url).await.unwrap(),
                RateLimiter::redis(&url).await.unwrap(),
            ],
            prefix,
            _database: None,
        },
    }
}

/// Runs a scenario on SQLite, on PostgreSQL and on Redis when configured
/// (`SYNCHUB_TEST_REDIS_URL`).
macro_rules! on_every_store {
    ($scenario:ident) => {
        mod $scenario {
            use super::Store;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$scenario(Store::Database($crate::helpers::Backend::Sqlite)).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            #[cfg_attr(
                not(synchub_postgres_tests),
                ignore = "SYNCHUB_TEST_DATABASE_URL is not set"
            )]
            async fn postgres() {
                super::$scenario(Store::Database($crate::helpers::Backend::postgres())).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            #[cfg_attr(not(synchub_redis_tests), ignore = "SYNCHUB_TEST_REDIS_URL is not set")]
            async fn redis() {
                let url = std::env::var("SYNCHUB_TEST_REDIS_URL")
                    .expect("SYNCHUB_TEST_REDIS_URL was set when the tests were built");
                super::$scenario(Store::Redis(url)).await;
            }
        }
    };
}

/// Two processes with four tasks each never spend more than the bucket allows, and spend
/// most of it.
async fn processes_share_one_budget(store: Store) {
    let Processes {
        limiters,
        prefix,
        _database: _kept,
    } = processes(store).await;
    let key = format!("{prefix}con_1:orders");
    let limit = Limit {
        rate: 20.0,
        burst: 10.0,
    };
    let granted = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let run_for = Duration::from_secs(2);
    let mut tasks = Vec::new();
    for process in &limiters {
        for _ in 0..4 {
            let (limiter, key) = (process.clone(), key.clone());
            let granted = granted.clone();
            tasks.push(tokio::spawn(async move {
                while started.elapsed() < run_for {
                    match limiter.try_take(&key, limit).await.unwrap() {
                        Take::Granted => {
                            granted.fetch_add(1, Ordering::Relaxed);
                        }
                        Take::RetryAfter(wait) => {
                            tokio::time::sleep(wait.min(run_for.saturating_sub(started.elapsed())))
                                .await
                        }
                    }
                }
            }));
        }
    }
    for task in tasks {
        task.await.unwrap();
    }
    let elapsed = started.elapsed().as_secs_f64();
    let allowed = limit.burst + limit.rate * elapsed;
    let granted = granted.load(Ordering::Relaxed) as f64;
    assert!(
        granted <= allowed + 1.0,
        "granted {granted}, allowed {allowed:.1}"
    );
    // Utilisation proper is measured by `synchub bench quota` on a quiet machine (99.7%);
    // beside the rest of the suite this only checks the budget is not left mostly unused.
    assert!(
        granted >= 0.75 * allowed,
        "granted only {granted} of {allowed:.1}"
    );
}
on_every_store!(processes_share_one_budget);

/// Retry-After stops everyone until it passes; a platform's lower count and rate win.
async fn platform_feedback_corrects_the_bucket(store: Store) {
    let Processes {
        limiters: [limiter, _],
        prefix,
        _database: _kept,
    } = processes(store).await;
    let shop = format!("{prefix}shop:rest");
    let seller = format!("{prefix}seller:getOrders");
    let limit = Limit {
        rate: 2.0,
        burst: 40.0,
    };
    assert_eq!(limiter.try_take(&shop, limit).await.unwrap(), Take::Granted);

    // Shopify says 39 of 40 calls are used: one token left, whatever we thought.
    limiter
        .apply_feedback(
            &shop,
            Feedback {
                remaining: Some(1.0),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(limiter.try_take(&shop, limit).await.unwrap(), Take::Granted);
    assert!(matches!(
        limiter.try_take(&shop, limit).await.unwrap(),
        Take::RetryAfter(_)
    ));

    limiter
        .apply_feedback(
            &shop,
            Feedback {
                retry_after: Some(Duration::from_millis(1500)),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    match limiter.try_take(&shop, limit).await.unwrap() {
        Take::RetryAfter(wait) => assert!(
            wait >= Duration::from_millis(1200),
            "waits out Retry-After: {wait:?}"
        ),
        Take::Granted => panic!("a token was granted during Retry-After"),
    }
    let waited = limiter
        .take(&shop, limit, Duration::from_secs(5))
        .await
        .unwrap()
        .expect("granted in time");
    assert!(waited >= Duration::from_millis(1200), "{waited:?}");

    // Amazon says the rate is 0.5/s: after the burst, tokens come every 2 s.
    let amazon = Limit {
        rate: 10.0,
        burst: 1.0,
    };
    assert_eq!(
        limiter.try_take(&seller, amazon).await.unwrap(),
        Take::Granted
    );
    limiter
        .apply_feedback(
            &seller,
            Feedback {
                rate: Some(0.5),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    match limiter.try_take(&seller, amazon).await.unwrap() {
        Take::RetryAfter(wait) => assert!(wait > Duration::from_millis(1500), "{wait:?}"),
        Take::Granted => panic!("the advertised rate was ignored"),
    }
}
on_every_store!(platform_feedback_corrects_the_bucket);

/// However many tasks in however many processes ask, no more than the cap hold a slot at
/// once; every task gets one in the end.
async fn the_concurrency_cap_holds_across_processes(store: Store) {
    let Processes {
        limiters,
        prefix,
        _database: _kept,
    } = processes(store).await;
    let key = format!("{prefix}erp:con_1");
    let (in_flight, most, served) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let mut tasks = Vec::new();
    for process in &limiters {
        for _ in 0..6 {
            let (limiter, key) = (process.clone(), key.clone());
            let (in_flight, most, served) = (in_flight.clone(), most.clone(), served.clone());
            tasks.push(tokio::spawn(async move {
                for _ in 0..3 {
                    let slot = limiter
                        .acquire(&key, 3, Duration::from_secs(30), Duration::from_secs(30))
                        .await
                        .unwrap()
                        .expect("a slot within the deadline");
                    let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    in_flight.fetch_sub(1, Ordering::SeqCst);
                    limiter.release(slot).await.unwrap();
                    served.fetch_add(1, Ordering::SeqCst);
                }
            }));
        }
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(served.load(Ordering::SeqCst), 36);
    let most = most.load(Ordering::SeqCst);
    assert!(most <= 3, "{most} requests were in flight at once");
    assert!(most >= 2, "the slots were not used concurrently: {most}");
}
on_every_store!(the_concurrency_cap_holds_across_processes);

/// A cap a tenant's setting makes absurd (`max_concurrent_requests` = 4 billion) is bounded:
/// the store makes at most `MOST_SLOTS` rows, and slots are still handed out.
async fn an_absurd_cap_is_bounded(store: Store) {
    let Processes {
        limiters: [limiter, _],
        prefix,
        _database: _kept,
    } = processes(store).await;
    let key = format!("{prefix}erp:con_huge");
    let lease = Duration::from_secs(30);
    let taken = tokio::time::timeout(
        Duration::from_secs(20),
        limiter.try_acquire(&key, u32::MAX, lease),
    )
    .await
    .expect("made at most MOST_SLOTS rows, quickly")
    .unwrap();
    assert!(taken.is_some());
    let mut held = vec![taken];
    for _ in 1..synchub::ratelimit::MOST_SLOTS {
        held.push(limiter.try_acquire(&key, u32::MAX, lease).await.unwrap());
    }
    assert!(held.iter().all(Option::is_some), "MOST_SLOTS of them");
    assert!(
        limiter
            .try_acquire(&key, u32::MAX, lease)
            .await
            .unwrap()
            .is_none(),
        "and no more"
    );
}
on_every_store!(an_absurd_cap_is_bounded);

/// A process that dies holding a slot does not hold it forever: the lease runs out.
async fn a_dead_holders_slot_frees_itself(store: Store) {
    let Processes {
        limiters: [dead, alive],
        prefix,
        _database: _kept,
    } = processes(store).await;
    let key = format!("{prefix}erp:con_2");
    let held = dead
        .try_acquire(&key, 1, Duration::from_secs(2))
        .await
        .unwrap();
    assert!(held.is_some());
    std::mem::forget(held);
    let lease = Duration::from_secs(30);
    assert!(alive.try_acquire(&key, 1, lease).await.unwrap().is_none());
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    let taken = alive.try_acquire(&key, 1, lease).await.unwrap();
    assert!(taken.is_some(), "the expired lease was taken over");
}
on_every_store!(a_dead_holders_slot_frees_itself);

/// A slot freed in this process goes to a waiter of this process at once, not at its next
/// poll: with polls an hour apart, the waiter still has the slot as soon as it is released.
/// (Slots freed by other processes are found by polling, as above.)
async fn a_freed_slot_wakes_its_waiter(store: Store) {
    let Processes {
        limiters: [limiter, _],
        prefix,
        _database: _kept,
    } = processes(store).await;
    let hour = Duration::from_secs(3600);
    let limiter = limiter.with_polling(hour, hour);
    let key = format!("{prefix}erp:con_3");
    let held = limiter
        .try_acquire(&key, 1, Duration::from_secs(30))
        .await
        .unwrap()
        .expect("the only slot");
    let mut waiter = tokio::spawn({
        let (limiter, key) = (limiter.clone(), key.clone());
        async move {
            limiter
                .acquire(&key, 1, Duration::from_secs(30), hour)
                .await
        }
    });
    assert!(
        tokio::time::timeout(Duration::from_millis(100), &mut waiter)
            .await
            .is_err(),
        "the waiter waits while the slot is held"
    );
    limiter.release(held).await.unwrap();
    let slot = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .expect("woken by the release, not by an hourly poll")
        .unwrap()
        .unwrap();
    assert!(slot.is_some());
}
on_every_store!(a_freed_slot_wakes_its_waiter);

/// The limiter's own pool commits without the flush to disk (its rows are leases and token
/// counts); the main pool keeps it, which the webhook ack depends on.
async fn leases_skip_the_flush_and_the_rest_keeps_it(backend: Backend) {
    use sea_orm::{ConnectionTrait, Statement};
    use synchub::config::{Overrides, Settings};
    let database = TestDatabase::create(&backend).await;
    let settings = Settings::from_layers(&database.env(), &Overrides::default()).unwrap();
    let main = synchub::store::connect(&settings).await.unwrap();
    let leases = synchub::store::connect_leases(&settings).await.unwrap();
    let setting = |db: sea_orm::DatabaseConnection| async move {
        let backend = db.get_database_backend();
        let sql = match backend {
            sea_orm::DatabaseBackend::Sqlite => "PRAGMA synchronous",
            _ => "SHOW synchronous_commit",
        };
        let row = db
            .query_one_raw(Statement::from_string(backend, sql))
            .await
            .unwrap()
            .unwrap();
        match backend {
            // 2 = FULL, 1 = NORMAL.
            sea_orm::DatabaseBackend::Sqlite => row.try_get_by_index::<i64>(0).unwrap().to_string(),
            _ => row.try_get_by_index::<String>(0).unwrap(),
        }
    };
    let (main, leases) = (setting(main).await, setting(leases).await);
    match backend {
        Backend::Sqlite => assert_eq!((main.as_str(), leases.as_str()), ("2", "1")),
        _ => assert_eq!((main.as_str(), leases.as_str()), ("on", "off")),
    }
}
crate::on_both_backends!(leases_skip_the_flush_and_the_rest_keeps_it);
