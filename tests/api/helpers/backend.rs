//! The store the suite runs on: SQLite files by default; PostgreSQL databases when
//! `FEEDBACK_DISPATCH_TEST_STORE=postgres`, on the cluster `FEEDBACK_DISPATCH_TEST_POSTGRES`
//! names (an admin URL). `scripts/test` starts a throwaway cluster and runs the suite on both.

use feedback_dispatch::Store;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Whether apps and stores of this run use PostgreSQL.
pub fn on_postgres() -> bool {
    std::env::var("FEEDBACK_DISPATCH_TEST_STORE").is_ok_and(|v| v == "postgres")
}

/// The admin URL of the test cluster; tests that need PostgreSQL whatever the backend
/// (several replicas on one database) call this.
pub fn admin_url() -> String {
    std::env::var("FEEDBACK_DISPATCH_TEST_POSTGRES").unwrap_or_else(|_| {
        panic!("this test needs PostgreSQL: run scripts/test, which starts a throwaway cluster and sets FEEDBACK_DISPATCH_TEST_POSTGRES")
    })
}

/// A store URL for `name` in `dir`: the SQLite file `dir/name.db`, or on PostgreSQL a database
/// made for it (once per folder and name: the URL is kept in `dir/name.pg-url`, so an app
/// started again in the folder finds its data).
pub fn store_url(dir: &Path, name: &str) -> String {
    if !on_postgres() {
        return format!("sqlite://{}/{name}.db", dir.display());
    }
    let kept = dir.join(format!("{name}.pg-url"));
    if let Ok(url) = std::fs::read_to_string(&kept) {
        return url;
    }
    let url = fresh_database();
    std::fs::write(&kept, &url).expect("keep the database URL");
    url
}

/// A new, empty PostgreSQL database on the test cluster; returns its URL.
pub fn fresh_database() -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let admin = admin_url();
    let name = format!(
        "fd_test_{}_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed),
        fastrand::u32(..)
    );
    let create = format!("CREATE DATABASE {name}");
    // Its own thread and runtime: callers may be sync code inside a test's runtime.
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async move {
                use sqlx::Connection;
                let mut conn = sqlx::PgConnection::connect(&admin)
                    .await
                    .expect("the test cluster answers");
                sqlx::raw_sql(sqlx::AssertSqlSafe(create))
                    .execute(&mut conn)
                    .await
                    .expect("create a test database");
            });
    })
    .join()
    .expect("database made");
    let admin = admin_url();
    let base = admin.rsplit_once('/').map_or(admin.as_str(), |(base, _)| base);
    format!("{base}/{name}")
}

/// Opens (and migrates) the store at `url`.
pub async fn open_store(url: &str) -> Arc<dyn Store> {
    let url = feedback_dispatch::StoreUrl::parse(url).expect("a store URL");
    feedback_dispatch::open_store(&url).await.expect("the store opens")
}
