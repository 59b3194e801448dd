//! The `Store` contract, one file per role of the store (as the trait is split): every method,
//! plus claim exclusivity under two concurrent claimers, each with its own connections to one
//! database. Each case runs on SQLite and, in the same run, on PostgreSQL when
//! `FEEDBACK_DISPATCH_TEST_POSTGRES` names a test cluster (scripts/test sets it): `case::sqlite`
//! and `case::postgres` (see [`contract_case`]). The suite chooses its backends itself, so
//! scripts/test's PostgreSQL pass skips it.

mod digests;
mod embedded;
mod events;
mod maintenance;
mod queue;
mod review;
mod shared;
mod votes;

use chrono::{DateTime, Duration as Days, Utc};
use feedback_dispatch::RunId;
use feedback_dispatch::{
    ConfirmLink, ConfirmVoter, DigestItem, JobKind, JobState, NewJob, NewVote, Prunable, Store, StoredFeedback,
    StoredToken,
};
use serde_json::json;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

/// The backends a contract case runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    /// A SQLite file in the case's folder.
    Sqlite,
    /// A fresh database on the test cluster.
    Postgres,
}

/// One case's store, on one backend.
struct Contract {
    /// The folder of the SQLite file (kept for the case's life).
    _dir: tempfile::TempDir,
    /// The store's URL, for a second store on the same database.
    url: String,
    /// The store under test.
    store: Arc<dyn Store>,
    /// Its backend.
    backend: Backend,
}

impl Contract {
    /// Whether this case runs on PostgreSQL.
    fn on_postgres(&self) -> bool {
        self.backend == Backend::Postgres
    }
}

/// A fresh store on `backend`; `None` for PostgreSQL when no test cluster is given.
async fn contract(backend: Backend) -> Option<Contract> {
    crate::helpers::init();
    let dir = tempfile::tempdir().unwrap();
    let url = match backend {
        Backend::Sqlite => format!("sqlite://{}/contract.db", dir.path().display()),
        Backend::Postgres => {
            std::env::var_os("FEEDBACK_DISPATCH_TEST_POSTGRES")?;
            crate::helpers::backend::fresh_database()
        }
    };
    let store = crate::helpers::backend::open_store(&url).await;
    Some(Contract {
        _dir: dir,
        url,
        store,
        backend,
    })
}

/// A contract case, `async fn name(c) { … }` with `c` its [`Contract`]: a module `name` with
/// two tests, `sqlite` and `postgres`, the second a no-op unless `FEEDBACK_DISPATCH_TEST_POSTGRES`
/// names a test cluster.
macro_rules! contract_case {
    ($(#[$doc:meta])* async fn $name:ident($c:ident) $body:block) => {
        $(#[$doc])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn case($c: Contract) $body

            #[tokio::test]
            async fn sqlite() {
                case(contract(Backend::Sqlite).await.expect("SQLite is always there")).await;
            }

            #[tokio::test]
            async fn postgres() {
                match contract(Backend::Postgres).await {
                    Some(c) => case(c).await,
                    None => eprintln!("FEEDBACK_DISPATCH_TEST_POSTGRES is not set: the PostgreSQL case is not run"),
                }
            }
        }
    };
}
use contract_case;

/// Whole milliseconds, so times compare equal on both backends (PostgreSQL keeps
/// microseconds, SQLite milliseconds).
fn at(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(1_800_000_000_000 + ms).unwrap()
}

fn run(n: u128) -> RunId {
    uuid::Uuid::from_u128(0x5703e000_0000_4000_8000_000000000000 | n).into()
}

fn job(key: &str, due: DateTime<Utc>) -> NewJob {
    NewJob {
        kind: JobKind::Slack,
        route: "support".into(),
        target: "C1".into(),
        run_id: Some(run(1)),
        idempotency_key: key.into(),
        payload: json!({"key": key}).into(),
        due_at: due,
    }
}
