//! Load tool: drives the release binary against in-process fakes and prints what it measured
//! against the targets of the "Operations and performance" issue as a Markdown table.
//!
//! `cargo build --release && cargo run --release --example load [-- --events 20000 …]`
//!
//! It builds nothing itself: it starts `target/release/feedback-dispatch serve` (or `--bin`)
//! on a temporary config (SQLite file in a temp dir, `slack.mode = "api"` with pacing off),
//! with two fakes served from this process on 127.0.0.1:
//! - a Slack Web API that answers `chat.postMessage` at once and counts what it received, and
//!   can be stalled (answering only when released) so that jobs stay queued;
//! - the crate's own embedded LangSmith token service (the code `langsmith.endpoint = "embedded"`
//!   runs), behind a counter of `POST …/feedback/tokens`. The app reaches it as a remote
//!   LangSmith (`LANGSMITH_ENDPOINT`), so every mint request it makes crosses HTTP and is counted.
//!   (A proxy in front of the app's own embedded service cannot work: with a remote endpoint
//!   the app does not mount that service.)
//!
//! Phases, each bounded in count and time (`--timeout`), all traffic to 127.0.0.1:
//! 1. `batch_runs = 1`: `--events` runs posted in batches of `--batch` over `--connections`
//!    connections (intake throughput while workers deliver), until the fake Slack has them all
//!    (end-to-end rate, LangSmith requests and CPU per run); then single-event posts at `--rate`
//!    per second for `--duration` seconds, scheduled open-loop (ack latency).
//! 2. `batch_runs = 10`: the same end-to-end run.
//! 3. Slack stalled, `workers.concurrency = 1`: `--queued` runs posted (intake throughput with
//!    idle workers), then the peak RSS with them all queued.
//! 4. Retention (`--only-retention` runs it alone).
//! 5. PostgreSQL (`--only-postgres` runs it alone, beside phase 1's end-to-end run on SQLite
//!    for comparison): the end-to-end run of phase 1 on one replica, then on three replicas
//!    sharing one database, the posts spread round-robin over them; CPU per run summed over
//!    the replicas, and peak RSS per replica. The cluster is `--postgres URL` (an admin URL),
//!    or a throwaway one `scripts/postgres` starts and stops.
//!
//! `--only-console` runs a phase of its own: the console's pages (overview, votes, a filtered
//! votes page, dead letters, a run) over a SQLite store filled with `--console-jobs` jobs and
//! `--console-votes` votes, each fetched `--console-rounds` times (median and slowest).
//!
//! `--only-redaction` runs a phase of its own instead: hostile run text against a route that
//! redacts every built-in kind. Digit groups that start a card everywhere and finish one nowhere
//! (`1 1 1 …`): one run of 1 MB posted alone, a 30-run webhook of 12 KB runs, and `/healthz`
//! probed while two such webhooks are in flight.
//!
//! CPU time is the child's utime + stime from `/proc/<pid>/stat`; peak RSS is `VmHWM` from
//! `/proc/<pid>/status`. The fakes and the load generator share the machine's cores with the
//! app, so every figure is a lower bound of what the app does alone.

use anyhow::{Context, bail};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use clap::Parser;
use feedback_dispatch::SqliteStore;
use feedback_dispatch::{EmbeddedState, embedded_router};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// Most single-event requests in flight in the latency phase. Past it the service is not
/// keeping up at all; sending more would only measure the load tool's own queue.
const MAX_IN_FLIGHT: usize = 2_000;
/// How often the fake Slack's counter is read while waiting for deliveries: small against the
/// seconds a phase takes, large enough not to steal the app's CPU.
const POLL: Duration = Duration::from_millis(5);
/// How long the app gets to log its address and become ready.
const STARTUP: Duration = Duration::from_secs(30);
/// How long the app gets to stop on SIGTERM (its own grace period is 10 s) before SIGKILL.
const STOP: Duration = Duration::from_secs(20);
/// The channel every run is routed to (the fake accepts any).
const CHANNEL: &str = "C0LOADTEST";
/// When the retention phase's pruning starts: once the first delivered jobs are a minute old
/// (`sent = "1m"`), at the next 5 s interval.
const PRUNING_FROM_SECS: u64 = 65;

/// Options.
#[derive(Parser, Debug)]
#[command(about = "Load-test the release binary against in-process fakes")]
struct Args {
    /// The binary under test.
    #[arg(long, default_value = "target/release/feedback-dispatch")]
    bin: PathBuf,
    /// Runs posted in each end-to-end phase.
    #[arg(long, default_value_t = 20_000)]
    events: usize,
    /// Runs per intake request in the throughput phases (the endpoint takes up to 1,000).
    #[arg(long, default_value_t = 100)]
    batch: usize,
    /// Concurrent intake connections in the throughput phases.
    #[arg(long, default_value_t = 8)]
    connections: usize,
    /// Offered load of the ack-latency phase, in single-event requests per second.
    #[arg(long, default_value_t = 1_000)]
    rate: u64,
    /// Length of the ack-latency phase, in seconds.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// `workers.concurrency` of the end-to-end phases.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Runs queued in the memory phase.
    #[arg(long, default_value_t = 100_000)]
    queued: usize,
    /// Longest wait of any one phase, in seconds.
    #[arg(long, default_value_t = 180)]
    timeout: u64,
    /// Keep the temporary folders (configs, databases, the app's logs) and print where.
    #[arg(long)]
    keep: bool,
    /// Runs pushed through the retention phase (`store.retention.sent = "1m"`).
    #[arg(long, default_value_t = 200_000)]
    retention_runs: usize,
    /// Runs per second offered in the retention phase (in batches of `--batch`).
    #[arg(long, default_value_t = 1_000)]
    retention_rate: u64,
    /// Run only the retention phase.
    #[arg(long)]
    only_retention: bool,
    /// The PostgreSQL cluster of phase 5, as an admin URL (`postgres://postgres@host:port/postgres`);
    /// without it a throwaway cluster is started with `scripts/postgres`.
    #[arg(long)]
    postgres: Option<String>,
    /// Run only phase 5 (PostgreSQL), with phase 1's end-to-end run on SQLite beside it.
    #[arg(long)]
    only_postgres: bool,
    /// Replicas in phase 5's second run.
    #[arg(long, default_value_t = 3)]
    replicas: usize,
    /// Run only the CPU phase: the app's own defaults (no `batch_runs` set) end to end, the
    /// ack latency of single-event posts at `--rate`, and the time from intake to Slack at 100
    /// and 1,000 runs/s. Run it against two builds back to back to compare them.
    #[arg(long)]
    only_cpu: bool,
    /// Length of each intake-to-Slack measurement of the CPU phase, in seconds (0 skips them).
    #[arg(long, default_value_t = 5)]
    delivery_seconds: u64,
    /// Run only the redaction phase: hostile run text (a megabyte of near-card digit groups, and
    /// webhooks of 30 such runs) against a route redacting every built-in kind; ack times, and
    /// `/healthz` while two webhooks are in flight.
    #[arg(long)]
    only_redaction: bool,
    /// Rounds of each measurement of the redaction phase (the slowest is reported).
    #[arg(long, default_value_t = 5)]
    redaction_rounds: usize,
    /// Run only the console phase: the console's pages over a store of `--console-jobs` jobs
    /// and `--console-votes` votes (written straight into the SQLite file), each page fetched
    /// `--console-rounds` times.
    #[arg(long)]
    only_console: bool,
    /// Jobs in the console phase's store.
    #[arg(long, default_value_t = 100_000)]
    console_jobs: usize,
    /// Votes in the console phase's store.
    #[arg(long, default_value_t = 200_000)]
    console_votes: usize,
    /// Fetches of each page in the console phase.
    #[arg(long, default_value_t = 20)]
    console_rounds: usize,
    /// Internal: run as the CPU phase's floor client (a bare reqwest client posting one Slack
    /// message body to this `chat.postMessage` URL), print its CPU per request and exit.
    #[arg(long, hide = true)]
    floor_client: Option<String>,
    /// Internal: the body the floor client posts.
    #[arg(long, hide = true)]
    floor_body: Option<PathBuf>,
    /// How run ids are made: `v4` (random, as older SDKs made them) or `v7` (time-ordered, as
    /// the LangSmith SDK and LangChain make them since late 2025). Random ids put each run's
    /// entry in the job key index at a random place.
    #[arg(long, value_enum, default_value_t = RunIds::V4)]
    run_ids: RunIds,
}

/// See `Args::run_ids`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq)]
enum RunIds {
    V4,
    V7,
}

/// Set from `--run-ids v7`.
static TIME_ORDERED_RUN_IDS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// A fresh run id: random, or with `--run-ids v7` a UUIDv7 (RFC 9562) whose 48-bit millisecond
/// time starts when this process did and whose 12-bit `rand_a` is a counter (the RFC's method
/// 1), so each id is greater than the one before, as a stream of runs' ids over real time is.
fn run_id() -> uuid::Uuid {
    use std::sync::atomic::{AtomicU64, Ordering};
    static START_MS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    if !TIME_ORDERED_RUN_IDS.load(Ordering::Relaxed) {
        return uuid::Uuid::new_v4();
    }
    let start = *START_MS.get_or_init(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    });
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let ms = start + n / 4096;
    let mut bytes = *uuid::Uuid::new_v4().as_bytes();
    bytes[..6].copy_from_slice(&ms.to_be_bytes()[2..]);
    bytes[6] = 0x70 | ((n >> 8) & 0x0f) as u8;
    bytes[7] = (n & 0xff) as u8;
    // Bytes 8.. keep v4's variant bits (RFC 4122/9562) and its randomness.
    uuid::Uuid::from_bytes(bytes)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    TIME_ORDERED_RUN_IDS.store(args.run_ids == RunIds::V7, std::sync::atomic::Ordering::Relaxed);
    if let (Some(url), Some(body)) = (&args.floor_client, &args.floor_body) {
        return floor_client(url, body, args.events, args.concurrency).await;
    }
    anyhow::ensure!(
        args.events > 0 && args.queued > 0 && args.rate > 0 && args.duration > 0,
        "--events, --queued, --rate and --duration must be positive"
    );
    anyhow::ensure!((1..=1_000).contains(&args.batch), "--batch must be 1 to 1000");
    // The retention phase compares intake before and while pruning, so it must post past then.
    let retention_least = (PRUNING_FROM_SECS + 5) * args.retention_rate;
    anyhow::ensure!(
        args.retention_rate > 0 && args.retention_runs as u64 >= retention_least,
        "--retention-runs must last past the start of pruning ({PRUNING_FROM_SECS} s in): at {}/s, at least {retention_least}",
        args.retention_rate
    );
    anyhow::ensure!((1..=256).contains(&args.connections), "--connections must be 1 to 256");
    if !args.bin.is_file() {
        eprintln!(
            "error: {} not found. Build it first with `cargo build --release`, or pass --bin PATH.",
            args.bin.display()
        );
        std::process::exit(2);
    }
    // The app runs in its own folder, so a relative path would no longer point at it.
    let bin = std::fs::canonicalize(&args.bin)?;
    // reqwest is built without a default TLS provider; the load tool only speaks plain HTTP,
    // but the client builder still wants one installed.
    let _ = rustls::crypto::ring::default_provider().install_default();

    let work = tempfile::Builder::new().prefix("feedback-dispatch-load-").tempdir()?;
    let slack = FakeSlack::start().await?;
    let langsmith = FakeLangSmith::start(work.path()).await?;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(args.connections.max(64))
        .build()?;
    let limit = Duration::from_secs(args.timeout);
    let load_cpu_start = cpu_seconds("self")?;
    let started = Instant::now();
    let mut report = Report::default();

    // The end-to-end phases: the defaults but for `batch_runs`.
    let delivering = |batch_runs: usize| AppConfig {
        route_slack: "",
        batch_runs: Some(batch_runs),
        concurrency: args.concurrency,
        slack_timeout: "15s",
        lease: "60s",
        extra: "",
        store: None,
    };

    if args.only_redaction {
        let hostile = redaction_phase(&bin, work.path(), &args, &client, &slack, &langsmith).await?;
        let mut hostile = hostile;
        hostile.emit();
        return Ok(());
    }
    if args.only_console {
        let pages = console_phase(&bin, work.path(), &args, &client, &slack, &langsmith).await?;
        let mut pages = pages;
        pages.emit();
        return Ok(());
    }
    if args.only_retention {
        let kept = retention_phase(&bin, work.path(), &args, &client, &slack, &langsmith, limit).await?;
        println!("{}", kept.markdown());
        return Ok(());
    }
    if args.only_cpu {
        let defaults = AppConfig {
            route_slack: "",
            batch_runs: None,
            ..delivering(1)
        };
        let mut r = Report::default();
        eprintln!("cpu phase: the app's defaults, {} runs end to end", args.events);
        let app = App::start(&bin, &work.path().join("defaults"), &defaults, &slack, &langsmith)?;
        let e2e = end_to_end(std::slice::from_ref(&app), &client, &slack, &langsmith, &args, limit).await?;

        r.row(
            format!(
                "CPU per delivered run, defaults, {} runs in batches of {}",
                args.events, args.batch
            ),
            format!("{:.0} µs", e2e.cpu_per_run_us()),
            "≤ 120 µs",
            Some(e2e.cpu_per_run_us() <= 120.0),
        );
        r.usage_rows(&e2e.used, e2e.delivered, "delivered run");
        let (kib, calls) = e2e.written_per_run();
        r.row(
            "written by the app per delivered run (WAL, checkpoints, logs, HTTP), same phase".into(),
            format!("{kib:.1} KiB in {calls:.1} write calls"),
            "—",
            None,
        );
        r.row(
            "intake, workers delivering".into(),
            format!("{:.0} runs/s", e2e.intake_rate()),
            "—",
            None,
        );
        r.row(
            "end-to-end delivered to Slack".into(),
            format!("{:.0} runs/s", e2e.delivered_rate()),
            "—",
            None,
        );
        r.row(
            "LangSmith requests per run".into(),
            format!("{:.3} ({} requests)", e2e.mints_per_run(), e2e.mint_requests),
            "≤ 0.2",
            Some(e2e.mints_per_run() <= 0.2),
        );
        // Connections are reused: about one per worker task. The HTTP clients' pools may open one
        // more while a request waits for a busy connection (hyper races a new connect against the
        // pool's give-back and keeps the winner and the loser), hence twice the task count.
        let (to_slack, to_langsmith) = e2e.connections;
        r.row(
            "TCP connections opened, to Slack / to LangSmith".into(),
            format!(
                "{to_slack} for {} messages / {to_langsmith} for {} requests",
                e2e.delivered, e2e.mint_requests
            ),
            format!("≤ {} each (2 × workers.concurrency)", 2 * args.concurrency),
            Some(to_slack.max(to_langsmith) <= 2 * args.concurrency as u64),
        );
        r.emit();
        eprintln!("cpu phase: the floor, {} messages from a bare HTTP client", args.events);
        let floor = slack_floor(&slack, work.path(), &args).await?;
        r.row(
            "floor: the same Slack messages posted by a bare reqwest client (same concurrency), CPU per message".into(),
            format!("{floor:.0} µs"),
            "—",
            None,
        );
        r.emit();
        eprintln!("cpu phase: ack latency at {}/s for {} s", args.rate, args.duration);
        let ack = ack_latency(&app, &client, &slack, &args, limit).await?;
        r.row(
            format!("CPU per run, single-event posts at {}/s", args.rate),
            format!("{:.0} µs", ack.used.cpu_per_run_us(ack.answered)),
            "—",
            None,
        );
        r.usage_rows(&ack.used, ack.answered, "run");
        r.row(
            format!(
                "ack latency p50 / p99 / max at {}/s (achieved {:.0}/s)",
                args.rate, ack.achieved_rate
            ),
            format!("{} / {} / {}", ms(ack.p50), ms(ack.p99), ms(ack.max)),
            "p99 ≤ 10 ms",
            Some(ack.p99 <= Duration::from_millis(10) && ack.failed == 0),
        );
        r.emit();
        for rate in [100, 1_000].into_iter().filter(|_| args.delivery_seconds > 0) {
            eprintln!("cpu phase: intake to Slack at {rate}/s for {} s", args.delivery_seconds);
            let d = delivery_latency(&app, &client, &slack, rate, args.delivery_seconds, limit).await?;
            r.row(
                format!("intake to Slack p50 / p99 at {rate} runs/s"),
                format!("{} / {}", ms(d.0), ms(d.1)),
                "—",
                None,
            );
            r.emit();
        }
        let rss = peak_rss_kib(app.pid)?;
        let log = app.stop()?;
        r.row("peak RSS".into(), mib(rss), "—", None);
        r.emit();
        let warnings = std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("WARN") || l.contains("ERROR"))
            .count();
        println!("The app logged {warnings} warnings or errors.");
        return Ok(());
    }
    if args.only_postgres {
        eprintln!("phase 1 (for comparison): SQLite, {} runs end to end", args.events);
        let app = App::start(&bin, &work.path().join("batch1"), &delivering(1), &slack, &langsmith)?;
        let e2e = end_to_end(std::slice::from_ref(&app), &client, &slack, &langsmith, &args, limit).await?;
        let rss = peak_rss_kib(app.pid)?;
        app.stop()?;
        let shared = postgres_phase(&bin, work.path(), &args, &client, &slack, &langsmith, limit).await?;
        println!("{}", shared.markdown(&e2e, rss));
        return Ok(());
    }

    eprintln!("phase 1: batch_runs = 1, {} runs end to end", args.events);
    let app = App::start(&bin, &work.path().join("batch1"), &delivering(1), &slack, &langsmith)?;
    let e2e1 = end_to_end(std::slice::from_ref(&app), &client, &slack, &langsmith, &args, limit).await?;
    eprintln!("phase 1: ack latency at {}/s for {} s", args.rate, args.duration);
    let ack = ack_latency(&app, &client, &slack, &args, limit).await?;
    let rss_busy = peak_rss_kib(app.pid)?;
    let log1 = app.stop()?;

    report.row(
        format!(
            "intake throughput, {} runs in batches of {}, workers delivering",
            args.events, args.batch
        ),
        format!("{:.0} runs/s", e2e1.intake_rate()),
        "≥ 5,000 runs/s",
        Some(e2e1.intake_rate() >= 5_000.0),
    );
    e2e_rows(&mut report, "batch_runs = 1", &e2e1, 1.0);
    report.row(
        format!(
            "ack latency p50, {}/s offered (achieved {:.0}/s)",
            args.rate, ack.achieved_rate
        ),
        ms(ack.p50),
        "—",
        None,
    );
    report.row(
        format!("ack latency p99, {}/s offered", args.rate),
        ms(ack.p99),
        "< 25 ms",
        Some(ack.p99 < Duration::from_millis(25) && ack.failed == 0),
    );
    report.row(
        format!("ack latency max, {}/s offered", args.rate),
        ms(ack.max),
        "—",
        None,
    );
    report.row(
        "deliveries still owed when the offered load stopped".to_string(),
        format!(
            "{} (all delivered {:.2} s later)",
            ack.backlog_at_end,
            ack.drained_after.as_secs_f64()
        ),
        "—",
        None,
    );
    report.row(
        format!("CPU per delivered run, single-event posts at {}/s", args.rate),
        format!("{:.0} µs", ack.used.cpu_per_run_us(ack.answered)),
        "≤ 200 µs",
        Some(ack.used.cpu_per_run_us(ack.answered) <= 200.0),
    );
    report.row(
        "peak RSS, phase 1 (end-to-end + latency)".to_string(),
        mib(rss_busy),
        "—",
        None,
    );
    report.emit();

    eprintln!("phase 2: batch_runs = 10, {} runs end to end", args.events);
    let app = App::start(&bin, &work.path().join("batch10"), &delivering(10), &slack, &langsmith)?;
    let e2e10 = end_to_end(std::slice::from_ref(&app), &client, &slack, &langsmith, &args, limit).await?;
    let log2 = app.stop()?;

    e2e_rows(&mut report, "batch_runs = 10", &e2e10, 0.1);
    report.emit();

    eprintln!("phase 3: Slack stalled, {} runs queued", args.queued);
    slack.stall();
    let app = App::start(
        &bin,
        &work.path().join("queued"),
        &AppConfig {
            route_slack: "",
            batch_runs: Some(1),
            concurrency: 1,
            // Longer than the phase, so the one stalled send holds its worker throughout.
            slack_timeout: "1h",
            // A lease must hold one send at its timeout.
            lease: "2h",
            extra: "",
            store: None,
        },
        &slack,
        &langsmith,
    )?;
    let queued = queue_up(&app, &client, &slack, &args, limit).await;
    slack.release();
    let log3 = app.stop()?;
    let queued = queued?;

    report.row(
        format!("intake throughput, {} runs, workers idle (Slack stalled)", args.queued),
        format!("{:.0} runs/s", queued.intake_rate),
        "≥ 5,000 runs/s",
        Some(queued.intake_rate >= 5_000.0),
    );
    report.row(
        format!("peak RSS, {} jobs queued", queued.queued),
        mib(queued.peak_rss_kib),
        "< 64 MiB",
        Some(queued.peak_rss_kib < 64 * 1024),
    );
    report.emit();
    println!();

    let kept = retention_phase(&bin, work.path(), &args, &client, &slack, &langsmith, limit).await?;
    println!("{}", kept.markdown());
    println!();
    let shared = postgres_phase(&bin, work.path(), &args, &client, &slack, &langsmith, limit).await?;

    let load_cpu = cpu_seconds("self")? - load_cpu_start;
    let wall = started.elapsed().as_secs_f64();
    println!("{}", shared.markdown(&e2e1, rss_busy));
    println!();
    println!(
        "Machine: {} cores. The load tool and its fakes used {load_cpu:.1} s of CPU over {wall:.1} s of wall time \
         on the same cores (about {:.0}% of one core).",
        std::thread::available_parallelism().map_or(0, usize::from),
        100.0 * load_cpu / wall
    );
    println!(
        "Intake errors: {} (phase 1), {} (phase 2), {} (phase 3); latency-phase failures: {}, not sent (more than \
         {MAX_IN_FLIGHT} in flight): {}.",
        e2e1.failures, e2e10.failures, queued.failures, ack.failed, ack.skipped
    );
    for (phase, log) in [("1", &log1), ("2", &log2), ("3", &log3)] {
        let warnings = log
            .lines()
            .filter(|l| l.contains("WARN") || l.contains("ERROR"))
            .count();
        if warnings > 0 {
            let first = log.lines().find(|l| l.contains("WARN") || l.contains("ERROR"));
            println!("Phase {phase}: the app logged {warnings} warnings or errors; first: {first:?}");
        }
    }
    if args.keep {
        println!("Kept {}", work.keep().display());
    }
    Ok(())
}

/// What an end-to-end phase measured.
struct EndToEnd {
    /// Runs the app answered 202 `accepted` for.
    accepted: usize,
    /// Requests that failed or were not 202.
    failures: usize,
    /// From the first POST to the last 202.
    intake_after: Duration,
    /// Slack messages received for the phase's runs.
    delivered: usize,
    /// From the first POST to the last Slack message.
    delivered_after: Duration,
    /// Token requests the app made meanwhile.
    mint_requests: u64,
    /// TCP connections the app opened meanwhile, to Slack and to LangSmith.
    connections: (u64, u64),
    /// The apps' CPU time and context switches meanwhile.
    used: Used,
    /// Bytes the apps wrote meanwhile and their write calls (`io_written`).
    written: (u64, u64),
}

impl EndToEnd {
    fn intake_rate(&self) -> f64 {
        self.accepted as f64 / self.intake_after.as_secs_f64()
    }
    fn delivered_rate(&self) -> f64 {
        self.delivered as f64 / self.delivered_after.as_secs_f64()
    }
    fn mints_per_run(&self) -> f64 {
        self.mint_requests as f64 / self.delivered.max(1) as f64
    }
    fn cpu_per_run_us(&self) -> f64 {
        self.used.cpu_per_run_us(self.delivered)
    }
    /// KiB written and write calls per delivered run.
    fn written_per_run(&self) -> (f64, f64) {
        let runs = self.delivered.max(1) as f64;
        (self.written.0 as f64 / 1024.0 / runs, self.written.1 as f64 / runs)
    }
}

/// Posts `--events` runs, spread round-robin over `apps` (replicas of one store), and waits
/// until the fake Slack has a message for each; CPU is summed over the apps.
async fn end_to_end(
    apps: &[App],
    client: &reqwest::Client,
    slack: &FakeSlack,
    langsmith: &FakeLangSmith,
    args: &Args,
    limit: Duration,
) -> anyhow::Result<EndToEnd> {
    let bodies = batch_bodies(args.events, args.batch);
    let slack_before = slack.received();
    let mints_before = langsmith.requests();
    let connections_before = (slack.connections(), langsmith.connections());
    let usage_of = || -> anyhow::Result<Vec<Usage>> { apps.iter().map(|a| Usage::of(&a.pid.to_string())).collect() };
    let usage_before = usage_of()?;
    let written_of = || -> anyhow::Result<(u64, u64)> {
        apps.iter()
            .map(|a| io_written(&a.pid.to_string()))
            .try_fold((0, 0), |(b, c), w| w.map(|(wb, wc)| (b + wb, c + wc)))
    };
    let written_before = written_of()?;
    let urls: Vec<String> = apps.iter().map(App::events_url).collect();
    let start = Instant::now();
    let intake = post_all(client, &urls, bodies, args.connections, limit).await;
    let intake_after = start.elapsed();
    let target = slack_before + intake.accepted as u64;
    let deadline = start + limit;
    while slack.received() < target && Instant::now() < deadline {
        tokio::time::sleep(POLL).await;
    }
    let delivered_after = start.elapsed();
    let delivered = (slack.received() - slack_before) as usize;
    let used = usage_before
        .iter()
        .zip(usage_of()?)
        .map(|(before, after)| after.since(before))
        .fold(Used::default(), |sum, used| sum + used);
    let written = written_of()?;
    if delivered < intake.accepted {
        bail!(
            "only {delivered} of {} accepted runs reached Slack within {limit:?}; see {}",
            intake.accepted,
            apps[0].log.display()
        );
    }
    Ok(EndToEnd {
        accepted: intake.accepted,
        failures: intake.failures,
        intake_after,
        delivered,
        delivered_after,
        mint_requests: langsmith.requests() - mints_before,
        connections: (
            slack.connections() - connections_before.0,
            langsmith.connections() - connections_before.1,
        ),
        used,
        written: (written.0 - written_before.0, written.1 - written_before.1),
    })
}

/// What the ack-latency phase measured.
struct AckLatency {
    /// Median, from the scheduled send time to the 202.
    p50: Duration,
    /// 99th percentile, likewise.
    p99: Duration,
    /// Slowest, likewise.
    max: Duration,
    /// Requests answered per second over the phase.
    achieved_rate: f64,
    /// Requests that failed or were not 202.
    failed: usize,
    /// Requests not sent because too many were in flight.
    skipped: usize,
    /// Accepted runs not yet in Slack when the last request was answered.
    backlog_at_end: u64,
    /// How long after that the last of them arrived.
    drained_after: Duration,
    /// Requests answered 202 `accepted`.
    answered: usize,
    /// The app's CPU time and context switches from the first request until all were delivered.
    used: Used,
}

/// Single-event POSTs at a fixed rate, each sent at its scheduled time whatever the previous
/// ones are doing (open loop), so a slow answer cannot hide the ones that would queue behind it.
/// Latency is counted from the scheduled time, so a load tool that falls behind shows as latency
/// rather than vanishing (coordinated omission).
async fn ack_latency(
    app: &App,
    client: &reqwest::Client,
    slack: &FakeSlack,
    args: &Args,
    limit: Duration,
) -> anyhow::Result<AckLatency> {
    let total = (args.rate * args.duration) as usize;
    let bodies: Vec<Bytes> = (0..total)
        .map(|_| Bytes::from(serde_json::to_vec(&event()).expect("events serialize")))
        .collect();
    let interval = Duration::from_secs_f64(1.0 / args.rate as f64);
    let url = app.events_url();
    let slack_before = slack.received();
    let usage_before = Usage::of(&app.pid.to_string())?;
    let in_flight = Arc::new(AtomicUsize::new(0));
    let mut tasks: JoinSet<Option<Duration>> = JoinSet::new();
    let mut skipped = 0;
    let start = tokio::time::Instant::now() + Duration::from_millis(50);
    for (i, body) in bodies.into_iter().enumerate() {
        let scheduled = start + interval * i as u32;
        tokio::time::sleep_until(scheduled).await;
        if in_flight.load(Ordering::Relaxed) >= MAX_IN_FLIGHT {
            skipped += 1;
            continue;
        }
        in_flight.fetch_add(1, Ordering::Relaxed);
        let (client, url, in_flight) = (client.clone(), url.clone(), in_flight.clone());
        tasks.spawn(async move {
            let ok = post_json(&client, &url, body).await.is_ok_and(|c| c.accepted == 1);
            in_flight.fetch_sub(1, Ordering::Relaxed);
            ok.then(|| scheduled.elapsed())
        });
    }
    let mut latencies = Vec::with_capacity(total);
    let mut failed = 0;
    let collected = tokio::time::timeout(limit, async {
        while let Some(done) = tasks.join_next().await {
            match done {
                Ok(Some(latency)) => latencies.push(latency),
                _ => failed += 1,
            }
        }
    })
    .await;
    if collected.is_err() {
        tasks.abort_all();
        bail!("the latency phase did not finish within {limit:?}");
    }
    let answered_after = start.elapsed();
    let backlog_at_end = (slack_before + latencies.len() as u64).saturating_sub(slack.received());
    let target = slack_before + latencies.len() as u64;
    let drain_start = Instant::now();
    let deadline = drain_start + limit;
    while slack.received() < target && Instant::now() < deadline {
        tokio::time::sleep(POLL).await;
    }
    if slack.received() < target {
        bail!("the runs of the latency phase did not all reach Slack within {limit:?}");
    }
    let drained_after = drain_start.elapsed();
    let used = Usage::of(&app.pid.to_string())?.since(&usage_before);
    anyhow::ensure!(!latencies.is_empty(), "no request of the latency phase succeeded");
    latencies.sort_unstable();
    Ok(AckLatency {
        p50: percentile(&latencies, 0.50),
        p99: percentile(&latencies, 0.99),
        max: *latencies.last().expect("not empty"),
        achieved_rate: latencies.len() as f64 / answered_after.as_secs_f64(),
        failed,
        skipped,
        backlog_at_end,
        drained_after,
        answered: latencies.len(),
        used,
    })
}

/// Intake-to-Slack latency of single-event posts offered at `rate` for `seconds`: (p50, p99)
/// from each post's send to its message's arrival at the fake Slack.
async fn delivery_latency(
    app: &App,
    client: &reqwest::Client,
    slack: &FakeSlack,
    rate: u64,
    seconds: u64,
    limit: Duration,
) -> anyhow::Result<(Duration, Duration)> {
    let total = (rate * seconds) as usize;
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let names: Vec<String> = (0..total).map(|i| format!("lat-{}-{i}", &tag[..8])).collect();
    let bodies: Vec<Bytes> = names
        .iter()
        .map(|name| {
            let mut e = event();
            e["run_name"] = json!(name);
            Bytes::from(serde_json::to_vec(&e).expect("events serialize"))
        })
        .collect();
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let url = app.events_url();
    let mut tasks: JoinSet<(usize, bool)> = JoinSet::new();
    let mut sent_at = Vec::with_capacity(total);
    let start = Instant::now() + Duration::from_millis(50);
    for (i, body) in bodies.into_iter().enumerate() {
        let scheduled = start + interval * i as u32;
        tokio::time::sleep_until(scheduled.into()).await;
        sent_at.push(Instant::now());
        let (client, url) = (client.clone(), url.clone());
        tasks.spawn(async move { (i, post_json(&client, &url, body).await.is_ok_and(|a| a.accepted == 1)) });
    }
    // Only the runs that got their 202 are waited for.
    let mut accepted = vec![false; total];
    while let Some(done) = tasks.join_next().await {
        if let Ok((i, ok)) = done {
            accepted[i] = ok;
        }
    }
    let expected = accepted.iter().filter(|a| **a).count();
    anyhow::ensure!(expected > 0, "no run of the intake-to-Slack phase was accepted");
    let deadline = Instant::now() + limit;
    let mut latencies = Vec::with_capacity(total);
    loop {
        latencies.clear();
        {
            let arrivals = slack.arrivals.lock().expect("arrivals");
            for ((name, sent), _) in names.iter().zip(&sent_at).zip(&accepted).filter(|(_, a)| **a) {
                if let Some(at) = arrivals.get(name) {
                    latencies.push(at.saturating_duration_since(*sent));
                }
            }
        }
        if latencies.len() == total {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "only {} of {total} runs reached Slack within {limit:?}",
                latencies.len()
            );
        }
        tokio::time::sleep(POLL).await;
    }
    latencies.sort_unstable();
    Ok((percentile(&latencies, 0.50), percentile(&latencies, 0.99)))
}

/// What the queued-memory phase measured.
struct Queued {
    /// Runs accepted and not delivered.
    queued: usize,
    /// Accepted runs per second, from the first POST to the last 202.
    intake_rate: f64,
    /// `VmHWM` after they were all queued.
    peak_rss_kib: u64,
    /// Requests that failed or were not 202.
    failures: usize,
}

/// Posts `--queued` runs while the fake Slack holds the one worker's send, so they stay queued.
async fn queue_up(
    app: &App,
    client: &reqwest::Client,
    slack: &FakeSlack,
    args: &Args,
    limit: Duration,
) -> anyhow::Result<Queued> {
    let bodies = batch_bodies(args.queued, args.batch);
    let slack_before = slack.received();
    let start = Instant::now();
    let intake = post_all(client, &[app.events_url()], bodies, args.connections, limit).await;
    let intake_rate = intake.accepted as f64 / start.elapsed().as_secs_f64();
    // Let the workers look at the queue (claim, mint, stall) before reading the peak.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let delivered = (slack.received() - slack_before) as usize;
    Ok(Queued {
        queued: intake.accepted.saturating_sub(delivered),
        intake_rate,
        peak_rss_kib: peak_rss_kib(app.pid)?,
        failures: intake.failures,
    })
}

/// What the retention phase measured: the database's size over time and intake's latency while
/// the pruner works.
struct Kept {
    /// (seconds since the start, runs accepted so far, rows of jobs, MiB on disk).
    samples: Vec<(f64, usize, i64, f64)>,
    /// Ack latency of the batches posted once pruning had begun (p50, p99)…
    pruning: (Duration, Duration),
    /// …and of those posted before (p50, p99), for comparison.
    before: (Duration, Duration),
    /// Runs accepted and requests that failed.
    accepted: usize,
    failures: usize,
}

impl Kept {
    fn markdown(&self) -> String {
        let mut out =
            String::from("| seconds | runs accepted | job rows | database on disk |\n| --- | --- | --- | --- |\n");
        for (t, runs, rows, mib) in &self.samples {
            out.push_str(&format!("| {t:.0} | {runs} | {rows} | {mib:.1} MiB |\n"));
        }
        out.push_str(&format!(
            "\nRetention phase: {} runs accepted ({} failed requests); ack latency of a batch of runs while the pruner works: p50 {}, p99 {} (before pruning began: p50 {}, p99 {}).",
            self.accepted,
            self.failures,
            ms(self.pruning.0),
            ms(self.pruning.1),
            ms(self.before.0),
            ms(self.before.1)
        ));
        out
    }
}

/// Pushes `--retention-runs` runs through at `--retention-rate` with delivered jobs kept a
/// minute and the pruner every 5 seconds, sampling the database's size every 10 seconds.
async fn retention_phase(
    bin: &Path,
    work: &Path,
    args: &Args,
    client: &reqwest::Client,
    slack: &FakeSlack,
    langsmith: &FakeLangSmith,
    limit: Duration,
) -> anyhow::Result<Kept> {
    eprintln!(
        "phase 4: retention, {} runs at {}/s with sent = 1m",
        args.retention_runs, args.retention_rate
    );
    let dir = work.join("retention");
    let app = App::start(
        bin,
        &dir,
        &AppConfig {
            // A sent message whose close is still queued is kept for its close (which re-renders
            // it), so with closes on (api mode's default) nothing would be pruned until the
            // links expire: this phase measures the pruner, so its route does not close.
            route_slack: ", close = false",
            batch_runs: Some(1),
            concurrency: args.concurrency,
            slack_timeout: "15s",
            lease: "60s",
            extra: "[store.retention]\nsent = \"1m\"\ninterval = \"5s\"\n",
            store: None,
        },
        slack,
        langsmith,
    )?;
    let db = dir.join("db/load.db");
    let disk_mib = || {
        let size = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.len());
        (size(&db) + size(&dir.join("db/load.db-wal"))) as f64 / (1024.0 * 1024.0)
    };
    let mut rows_db =
        <sqlx::SqliteConnection as sqlx::Connection>::connect(&format!("sqlite://{}?mode=ro", db.display())).await?;
    let bodies = batch_bodies(args.retention_runs, args.batch);
    let interval = Duration::from_secs_f64(args.batch as f64 / args.retention_rate as f64);
    let url = app.events_url();
    let start = tokio::time::Instant::now();
    // Each request: (latency from its scheduled time, when it was scheduled, runs accepted).
    let mut tasks: JoinSet<(Duration, Duration, Option<usize>)> = JoinSet::new();
    let mut samples = Vec::new();
    let mut next_sample = start;
    let mut accepted = 0;
    let mut failures = 0;
    let mut latencies = Vec::new();
    let mut before = Vec::new();
    let pruning_from = Duration::from_secs(PRUNING_FROM_SECS);
    let mut collect = |(latency, sent_at, got): (Duration, Duration, Option<usize>)| {
        match got {
            Some(n) => accepted += n,
            None => failures += 1,
        }
        if sent_at >= pruning_from {
            latencies.push(latency);
        } else {
            before.push(latency);
        }
    };
    for (i, body) in bodies.into_iter().enumerate() {
        let scheduled = start + interval * i as u32;
        tokio::time::sleep_until(scheduled).await;
        if tokio::time::Instant::now() >= next_sample {
            next_sample += Duration::from_secs(10);
            let rows = job_rows(&mut rows_db).await;
            samples.push((start.elapsed().as_secs_f64(), i * args.batch, rows, disk_mib()));
        }
        let (client, url) = (client.clone(), url.clone());
        let sent_at = scheduled - start;
        tasks.spawn(async move {
            let got = post_json(&client, &url, body).await.ok().map(|a| a.accepted);
            (scheduled.elapsed(), sent_at, got)
        });
        while let Some(done) = tasks.try_join_next() {
            if let Ok(done) = done {
                collect(done);
            }
        }
        if start.elapsed() > limit * 4 {
            bail!("the retention phase took longer than {:?}", limit * 4);
        }
    }
    while let Some(done) = tasks.join_next().await {
        if let Ok(done) = done {
            collect(done);
        }
    }
    // Then past the retention, for the last delivered jobs to be pruned too.
    let settle = tokio::time::Instant::now() + Duration::from_secs(75);
    while tokio::time::Instant::now() < settle {
        tokio::time::sleep_until(next_sample.min(settle)).await;
        if tokio::time::Instant::now() >= next_sample {
            next_sample += Duration::from_secs(10);
            let rows = job_rows(&mut rows_db).await;
            samples.push((start.elapsed().as_secs_f64(), accepted, rows, disk_mib()));
        }
    }
    let rows = job_rows(&mut rows_db).await;
    samples.push((start.elapsed().as_secs_f64(), accepted, rows, disk_mib()));
    drop(rows_db);
    let log = app.stop()?;
    if log.contains("cannot prune") {
        eprintln!("phase 4: the app could not prune; see its log");
    }
    anyhow::ensure!(
        !latencies.is_empty() && !before.is_empty(),
        "no batch was posted while pruning (or before)"
    );
    latencies.sort_unstable();
    before.sort_unstable();
    Ok(Kept {
        samples,
        pruning: (percentile(&latencies, 0.50), percentile(&latencies, 0.99)),
        before: (percentile(&before, 0.50), percentile(&before, 0.99)),
        accepted,
        failures,
    })
}

/// Rows in the jobs table (-1 when the database cannot be read).
async fn job_rows(db: &mut sqlx::SqliteConnection) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM jobs")
        .fetch_one(db)
        .await
        .unwrap_or(-1)
}

/// What a burst of intake requests got back.
#[derive(Default)]
struct Intake {
    /// The sum of the 202s' `accepted`.
    accepted: usize,
    /// Requests that failed or were not 202 (after retrying the 503s).
    failures: usize,
    /// 503s ("retry later") answered by posting the body again.
    retried: usize,
}

/// Posts every body over `connections` concurrent connections, each taking the next unsent
/// body (the i-th to `urls[i % urls.len()]`), until all are sent or `limit` passes.
async fn post_all(
    client: &reqwest::Client,
    urls: &[String],
    bodies: Vec<Bytes>,
    connections: usize,
    limit: Duration,
) -> Intake {
    let bodies = Arc::new(bodies);
    let next = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + limit;
    let mut tasks = JoinSet::new();
    for _ in 0..connections {
        let (client, urls, bodies, next) = (client.clone(), urls.to_vec(), bodies.clone(), next.clone());
        tasks.spawn(async move {
            let mut mine = Intake::default();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= bodies.len() || Instant::now() > deadline {
                    return mine;
                }
                // A 503 is intake's "retry later" (its store did not answer in time): the
                // runs may still be committed, and a sender retries (the idempotency keys make
                // that safe). Counting them lost would leave the app delivering them during
                // the next phase.
                let mut retries = 0;
                let answer = loop {
                    match post_json(&client, &urls[i % urls.len()], bodies[i].clone()).await {
                        Err(e)
                            if retries < 10
                                && Instant::now() < deadline
                                && e.downcast_ref::<RetryLater>().is_some() =>
                        {
                            retries += 1;
                            mine.retried += 1;
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                        other => break other,
                    }
                };
                match answer {
                    // A retry's duplicates are this request's runs, committed after intake
                    // had answered 503: they count, or the phase would not wait for them.
                    Ok(c) if retries > 0 => mine.accepted += c.accepted + c.duplicates,
                    Ok(c) => mine.accepted += c.accepted,
                    Err(e) => {
                        if mine.failures == 0 {
                            eprintln!("intake request failed: {e:#}");
                        }
                        mine.failures += 1;
                    }
                }
            }
        });
    }
    let mut total = Intake::default();
    while let Some(done) = tasks.join_next().await {
        if let Ok(part) = done {
            total.accepted += part.accepted;
            total.failures += part.failures;
            total.retried += part.retried;
        }
    }
    if total.retried > 0 {
        eprintln!(
            "requests posted again after intake's 503 (its store did not answer in time): {}",
            total.retried
        );
    }
    total
}

/// Runs of `1 1 1 …` of this many bytes: every group could start a card, none finishes one.
fn near_card_digits(bytes: usize) -> String {
    "1 ".repeat(bytes / 2)
}

/// A LangSmith rule webhook of `runs` fresh runs, each with `text` as its input.
fn rule_webhook(runs: usize, text: &str) -> Bytes {
    let runs: Vec<Value> = (0..runs)
        .map(|_| {
            json!({
                "id": run_id(),
                "name": "support_agent",
                "session_name": "load-test",
                "status": "success",
                "inputs": {"question": text},
                "outputs": {"answer": "ok"},
            })
        })
        .collect();
    Bytes::from(json!({"rule_id": "load", "runs": runs}).to_string())
}

/// How long one POST took to be answered 202.
async fn timed_post(client: &reqwest::Client, url: &str, body: Bytes) -> anyhow::Result<Duration> {
    let started = Instant::now();
    post_json(client, url, body).await?;
    Ok(started.elapsed())
}

/// The redaction phase: hostile run text against a route that redacts every built-in kind.
/// Each measurement is taken `--redaction-rounds` times and the slowest is reported.
async fn redaction_phase(
    bin: &Path,
    work: &Path,
    args: &Args,
    client: &reqwest::Client,
    slack: &FakeSlack,
    langsmith: &FakeLangSmith,
) -> anyhow::Result<Report> {
    let rounds = args.redaction_rounds.max(1);
    let config = AppConfig {
        route_slack: "",
        batch_runs: None,
        concurrency: args.concurrency,
        slack_timeout: "15s",
        lease: "60s",
        extra: r#"redact = ["email", "phone", "card", "secret"]"#,
        store: None,
    };
    let app = App::start(bin, &work.join("redaction"), &config, slack, langsmith)?;
    let events = app.events_url();
    let webhooks = format!("{}/v1/webhooks/langsmith", app.url);
    let healthz = format!("{}/healthz", app.url);
    // A connection and the app's first request out of the way.
    post_json(client, &events, Bytes::from(serde_json::to_vec(&[event()])?)).await?;

    let megabyte = near_card_digits(1 << 20);
    let mut one_run = Duration::ZERO;
    for _ in 0..rounds {
        let run = json!([{
            "run_id": run_id(),
            "status": "success",
            "inputs": {"question": megabyte},
            "outputs": {"answer": "ok"},
            "feedback_keys": ["thumbs_up"],
        }]);
        one_run = one_run.max(timed_post(client, &events, Bytes::from(run.to_string())).await?);
    }

    let run_text = near_card_digits(12 * 1024);
    let mut one_webhook = Duration::ZERO;
    for _ in 0..rounds {
        let took = timed_post(client, &webhooks, rule_webhook(30, &run_text)).await?;
        one_webhook = one_webhook.max(took);
    }

    // Two webhooks in flight, `/healthz` probed until both are answered.
    let (mut both, mut health, mut probes) = (Duration::ZERO, Duration::ZERO, 0);
    for _ in 0..rounds {
        let bodies = [rule_webhook(30, &run_text), rule_webhook(30, &run_text)];
        let mut in_flight = JoinSet::new();
        for body in bodies {
            let (client, url) = (client.clone(), webhooks.clone());
            in_flight.spawn(async move { timed_post(&client, &url, body).await });
        }
        while in_flight.len() == 2 {
            let started = Instant::now();
            let res = client.get(&healthz).send().await?;
            anyhow::ensure!(res.status() == StatusCode::OK, "/healthz answered {}", res.status());
            health = health.max(started.elapsed());
            probes += 1;
            while let Some(done) = in_flight.try_join_next() {
                both = both.max(done??);
            }
        }
        while let Some(done) = in_flight.join_next().await {
            both = both.max(done??);
        }
    }
    app.stop()?;

    let mut r = Report::default();
    r.row(
        format!("ack of one run of 1 MB of near-card digit groups (slowest of {rounds})"),
        ms(one_run),
        "< 100 ms",
        Some(one_run < Duration::from_millis(100)),
    );
    r.row(
        format!("ack of a 30-run webhook of such text, 12 KB a run (slowest of {rounds})"),
        ms(one_webhook),
        "well inside 5 s (LangSmith's wait): < 1 s",
        Some(one_webhook < Duration::from_secs(1)),
    );
    r.row(
        format!("ack of each of two such webhooks posted at once (slowest of {rounds} pairs)"),
        ms(both),
        "< 1 s",
        Some(both < Duration::from_secs(1)),
    );
    r.row(
        format!("/healthz while two such webhooks are in flight (slowest of {probes} probes)"),
        ms(health),
        "< 1 s",
        Some(health < Duration::from_secs(1)),
    );
    Ok(r)
}

/// The counts of a 202.
struct Accepted {
    /// Runs with at least one new job.
    accepted: usize,
    /// Runs whose jobs were all there already.
    duplicates: usize,
}

/// Intake answered 503: retry later (its body says why).
#[derive(Debug)]
struct RetryLater(String);

impl std::fmt::Display for RetryLater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "intake answered 503 Service Unavailable: {}", self.0)
    }
}

impl std::error::Error for RetryLater {}

async fn post_json(client: &reqwest::Client, url: &str, body: Bytes) -> anyhow::Result<Accepted> {
    let res = client
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await?;
    let status = res.status();
    let text = res.text().await?;
    if status == StatusCode::SERVICE_UNAVAILABLE {
        return Err(RetryLater(text).into());
    }
    if status != StatusCode::ACCEPTED {
        bail!("intake answered {status}: {text}");
    }
    let counts: Value = serde_json::from_str(&text)?;
    Ok(Accepted {
        accepted: counts["accepted"].as_u64().context("202 without `accepted`")? as usize,
        duplicates: counts["duplicates"].as_u64().unwrap_or(0) as usize,
    })
}

/// `count` fresh runs as JSON arrays of `batch`, built before the clock starts.
fn batch_bodies(count: usize, batch: usize) -> Vec<Bytes> {
    let events: Vec<Value> = (0..count).map(|_| event()).collect();
    events
        .chunks(batch)
        .map(|chunk| Bytes::from(serde_json::to_vec(chunk).expect("events serialize")))
        .collect()
}

/// A generic event shaped like a chat run: a question, a paragraph of answer, two keys.
fn event() -> Value {
    json!({
        "run_id": run_id(),
        "project": "load-test",
        "run_name": "support_agent",
        "inputs": {"messages": [{"role": "user", "content": "How do I rotate my API key without downtime?"}]},
        "outputs": {"answer": "Create a second key under Settings → API Keys, deploy it to your services and \
            check that traffic uses it, then revoke the old key once its \"last used\" time stops changing. \
            Keys can't be edited after creation, so rotating always means creating a new one."},
        "tags": ["load"],
        "feedback_keys": ["thumbs_up", "thumbs_down"],
    })
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// The settings that differ between phases.
struct AppConfig {
    /// `langsmith.batch_runs`; `None` leaves the app's default.
    batch_runs: Option<usize>,
    /// `workers.concurrency`.
    concurrency: usize,
    /// `slack.timeout`.
    slack_timeout: &'static str,
    /// `workers.lease`.
    lease: &'static str,
    /// More TOML, appended.
    extra: &'static str,
    /// `store.url`; `None` is a SQLite file in the app's folder.
    store: Option<String>,
    /// More settings of the route's `slack` table (`, close = false`), or empty.
    route_slack: &'static str,
}

/// The binary under test, running; SIGKILLed if dropped while still running.
struct App {
    /// The `serve` process.
    child: Child,
    /// Its pid, for `/proc`.
    pid: u32,
    /// `http://127.0.0.1:PORT`.
    url: String,
    /// Its stderr.
    log: PathBuf,
}

impl App {
    /// Writes the config into `dir`, starts `serve`, and waits until it is ready.
    fn start(
        bin: &Path,
        dir: &Path,
        config: &AppConfig,
        slack: &FakeSlack,
        langsmith: &FakeLangSmith,
    ) -> anyhow::Result<App> {
        std::fs::create_dir_all(dir)?;
        let settings = format!(
            r#"[server]
listen = "127.0.0.1:0"
[store]
url = "{db}"
[langsmith]
{batch_runs}
[slack]
mode = "api"
api_url = "{slack}/api"
pace_per_channel = "0s"
timeout = "{slack_timeout}"
[workers]
concurrency = {concurrency}
lease = "{lease}"
[log]
level = "info"
[[keys]]
name = "thumbs_up"
buttons = [{{ label = "👍 Helpful", score = 1, style = "primary" }}]
[[keys]]
name = "thumbs_down"
buttons = [{{ label = "👎 Not helpful", score = 0, style = "danger" }}]
[[routes]]
name = "load"
keys = ["thumbs_up", "thumbs_down"]
slack = {{ channel = "{CHANNEL}"{route_slack} }}
{extra}
"#,
            db = config
                .store
                .clone()
                .unwrap_or_else(|| format!("sqlite://{}", dir.join("db/load.db").display())),
            batch_runs = config
                .batch_runs
                .map(|n| format!("batch_runs = {n}"))
                .unwrap_or_default(),
            slack = slack.address,
            slack_timeout = config.slack_timeout,
            concurrency = config.concurrency,
            lease = config.lease,
            extra = config.extra,
            route_slack = config.route_slack,
        );
        let config_path = dir.join("settings.toml");
        std::fs::write(&config_path, settings)?;
        let log = dir.join("serve.log");
        let child = Command::new(bin)
            .args(["serve", "--config"])
            .arg(&config_path)
            .current_dir(dir)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            // The operator's default: every intake request and delivery logs a line, and that
            // is part of what a run costs.
            .env(
                "RUST_LOG",
                std::env::var("LOAD_APP_LOG").unwrap_or_else(|_| "info".into()),
            )
            .env("LANGSMITH_ENDPOINT", &langsmith.address)
            .env("LANGSMITH_API_KEY", LANGSMITH_KEY)
            .env("SLACK_BOT_TOKEN", "xoxb-load-test")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        let pid = child.id();
        let mut app = App {
            child,
            pid,
            url: String::new(),
            log,
        };
        app.url = app.wait_for_address()?;
        Ok(app)
    }

    /// Reads the bound address from the log, then waits for `/readyz`.
    fn wait_for_address(&mut self) -> anyhow::Result<String> {
        let deadline = Instant::now() + STARTUP;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "the app exited with {status} at start-up:\n{}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            if let Some(address) = log
                .lines()
                .find(|l| l.contains("feedback-dispatch listening"))
                .and_then(|l| l.split("address=").nth(1))
                .and_then(|rest| rest.split_whitespace().next())
            {
                let url = format!("http://{address}");
                while Instant::now() < deadline {
                    let ready = std::net::TcpStream::connect(address).is_ok_and(|mut s| {
                        use std::io::{Read, Write};
                        let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
                        let mut answer = String::new();
                        s.write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                            .is_ok()
                            && s.read_to_string(&mut answer).is_ok()
                            && answer.starts_with("HTTP/1.1 200")
                    });
                    if ready {
                        return Ok(url);
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                bail!("the app did not become ready within {STARTUP:?}");
            }
            if Instant::now() > deadline {
                bail!("the app did not log its address within {STARTUP:?}: {log}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn events_url(&self) -> String {
        format!("{}/v1/events", self.url)
    }

    /// SIGTERM, then SIGKILL if it has not stopped within [`STOP`]; returns its log.
    fn stop(mut self) -> anyhow::Result<String> {
        let _ = Command::new("kill").args(["-TERM", &self.pid.to_string()]).status();
        let deadline = Instant::now() + STOP;
        while self.child.try_wait()?.is_none() {
            if Instant::now() > deadline {
                eprintln!("the app did not stop within {STOP:?} of SIGTERM; killing it");
                self.child.kill()?;
                self.child.wait()?;
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(std::fs::read_to_string(&self.log).unwrap_or_default())
    }
}

impl Drop for App {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The floor of CPU per delivered run on this machine: the app's first Slack message, posted
/// `--events` times by a bare reqwest client in a process of its own (this tool, run again as
/// `--floor-client`) over `--concurrency` tasks, to the same fake Slack. One `chat.postMessage`
/// per run is what the app cannot do without; everything else it does is above this.
async fn slack_floor(slack: &FakeSlack, work: &Path, args: &Args) -> anyhow::Result<f64> {
    let sample = slack
        .sample
        .lock()
        .expect("sample")
        .clone()
        .context("the fake Slack has no message to post for the floor")?;
    let body = work.join("floor-body.json");
    std::fs::write(&body, &sample)?;
    let before = slack.received();
    let mut client = Command::new(std::env::current_exe()?);
    client
        .arg("--floor-client")
        .arg(format!("{}/api/chat.postMessage", slack.address))
        .arg("--floor-body")
        .arg(&body)
        .arg("--events")
        .arg(args.events.to_string())
        .arg("--concurrency")
        .arg(args.concurrency.to_string())
        .stdin(Stdio::null())
        .stderr(Stdio::inherit());
    // The fake Slack answers from this process's runtime meanwhile.
    let out = tokio::task::spawn_blocking(move || client.output()).await??;
    anyhow::ensure!(out.status.success(), "the floor client failed: {}", out.status);
    let posted = slack.received() - before;
    anyhow::ensure!(
        posted == args.events as u64,
        "the floor client posted {posted} of {} messages",
        args.events
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("cpu_us_per_request "))
        .and_then(|v| v.trim().parse().ok())
        .context("the floor client printed no figure")
}

/// The floor client: posts `body` to `url` `messages` times over `concurrency` tasks, as the
/// app's Slack client does (JSON body, bearer authorization, the answer read and parsed), and
/// prints its own CPU time per request.
async fn floor_client(url: &str, body: &Path, messages: usize, concurrency: usize) -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let url = reqwest::Url::parse(url)?;
    let body = Bytes::from(std::fs::read(body)?);
    let http = reqwest::Client::builder().timeout(Duration::from_secs(15)).build()?;
    let authorization = reqwest::header::HeaderValue::from_static("Bearer xoxb-floor");
    let next = Arc::new(AtomicUsize::new(0));
    let cpu_before = cpu_seconds("self")?;
    let mut tasks: JoinSet<anyhow::Result<()>> = JoinSet::new();
    for _ in 0..concurrency.max(1) {
        let (http, url, body, authorization, next) = (
            http.clone(),
            url.clone(),
            body.clone(),
            authorization.clone(),
            next.clone(),
        );
        tasks.spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < messages {
                let answer = http
                    .post(url.clone())
                    .header(reqwest::header::AUTHORIZATION, authorization.clone())
                    .header(reqwest::header::CONTENT_TYPE, "application/json; charset=utf-8")
                    .body(body.clone())
                    .send()
                    .await?
                    .bytes()
                    .await?;
                let answer: Value = serde_json::from_slice(&answer)?;
                anyhow::ensure!(answer["ok"] == true, "the fake Slack refused a message: {answer}");
            }
            Ok(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    let cpu = cpu_seconds("self")? - cpu_before;
    println!("cpu_us_per_request {:.1}", cpu * 1e6 / messages.max(1) as f64);
    Ok(())
}

/// Bytes a process wrote so far and its write calls (`wchar`, `syscw` in `/proc/<pid>/io`): for
/// the app, its WAL frames, the checkpoints' copies, its log lines and its HTTP traffic (the
/// Slack and LangSmith requests, the answers to intake). Unlike CPU time, this hardly varies
/// between rounds of the same build, so it shows a change in what the store writes per run that
/// the CPU figure's noise hides.
fn io_written(pid: &str) -> anyhow::Result<(u64, u64)> {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).context("cannot read /proc/<pid>/io")?;
    let field = |name: &str| -> anyhow::Result<u64> {
        io.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
            .with_context(|| format!("no {name} in /proc/<pid>/io"))
    };
    Ok((field("wchar:")?, field("syscw:")?))
}

/// A process's CPU times and its live threads' context switches (voluntary and not, by thread
/// id, from `/proc/<pid>/task/*/status`) at one moment.
struct Usage {
    user: f64,
    system: f64,
    switches: std::collections::HashMap<u64, u64>,
}

impl Usage {
    fn of(pid: &str) -> anyhow::Result<Usage> {
        let (user, system) = cpu_times(pid)?;
        let mut switches = std::collections::HashMap::new();
        for task in std::fs::read_dir(format!("/proc/{pid}/task")).context("cannot read /proc/<pid>/task")? {
            let task = task?;
            let Some(tid) = task.file_name().to_str().and_then(|t| t.parse::<u64>().ok()) else {
                continue;
            };
            let Ok(status) = std::fs::read_to_string(task.path().join("status")) else {
                continue;
            };
            let n = status
                .lines()
                .filter(|l| l.starts_with("voluntary_ctxt_switches:") || l.starts_with("nonvoluntary_ctxt_switches:"))
                .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum::<u64>();
            switches.insert(tid, n);
        }
        Ok(Usage { user, system, switches })
    }

    /// What the process used since `before`. Switches are the growth of each thread alive now
    /// (a thread started meanwhile counts whole); a thread of `before` that exited meanwhile is
    /// counted as exited, its switches missing (Linux drops them with it).
    fn since(&self, before: &Usage) -> Used {
        Used {
            cpu: self.user + self.system - before.user - before.system,
            system: self.system - before.system,
            switches: self
                .switches
                .iter()
                .map(|(tid, n)| n.saturating_sub(before.switches.get(tid).copied().unwrap_or(0)))
                .sum(),
            threads_exited: before
                .switches
                .keys()
                .filter(|tid| !self.switches.contains_key(tid))
                .count(),
        }
    }
}

/// CPU seconds, kernel seconds and context switches a process used over a phase ([`Usage::since`]).
#[derive(Default, Clone, Copy)]
struct Used {
    cpu: f64,
    system: f64,
    switches: u64,
    threads_exited: usize,
}

impl std::ops::Add for Used {
    type Output = Used;
    fn add(self, other: Used) -> Used {
        Used {
            cpu: self.cpu + other.cpu,
            system: self.system + other.system,
            switches: self.switches + other.switches,
            threads_exited: self.threads_exited + other.threads_exited,
        }
    }
}

impl Used {
    fn cpu_per_run_us(&self, runs: usize) -> f64 {
        self.cpu * 1e6 / runs.max(1) as f64
    }
    fn system_per_run_us(&self, runs: usize) -> f64 {
        self.system * 1e6 / runs.max(1) as f64
    }
    /// Context switches per run, with a note when threads exited during the phase.
    fn switches_per_run(&self, runs: usize) -> String {
        let figure = format!("{:.1}", self.switches as f64 / runs.max(1) as f64);
        match self.threads_exited {
            0 => figure,
            n => format!("{figure} (and {n} threads that exited meanwhile, not counted)"),
        }
    }
}

/// CPU seconds (user + system) of a process, `"self"` or a pid, from `/proc/<pid>/stat`.
fn cpu_seconds(pid: &str) -> anyhow::Result<f64> {
    cpu_times(pid).map(|(user, system)| user + system)
}

/// CPU seconds of a process in user space and in the kernel, from `/proc/<pid>/stat`.
fn cpu_times(pid: &str) -> anyhow::Result<(f64, f64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).context("cannot read /proc/<pid>/stat")?;
    // The command name (field 2) is in parentheses and may hold spaces: count from after it.
    let after_name = stat.rsplit_once(')').context("unexpected /proc/<pid>/stat")?.1;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // Fields 14 (utime) and 15 (stime), counted from 1 with the state (field 3) first here.
    let ticks = |i: usize| -> anyhow::Result<f64> {
        let f = fields.get(i).context("unexpected /proc/<pid>/stat")?;
        Ok(f.parse::<u64>()? as f64 / clock_ticks_per_second())
    };
    Ok((ticks(11)?, ticks(12)?))
}

fn clock_ticks_per_second() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            // Linux's USER_HZ on every mainstream architecture.
            .unwrap_or(100.0)
    })
}

/// `VmHWM` (peak resident set) of `pid`, in KiB.
fn peak_rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmHWM in /proc/<pid>/status")
}

/// A Slack Web API that answers `chat.postMessage` at once (or, while stalled, only when
/// released) and counts the messages it accepted.
#[derive(Clone)]
struct FakeSlack {
    /// `http://127.0.0.1:PORT`.
    address: String,
    /// Messages answered `ok`.
    received: Arc<AtomicU64>,
    /// While true, sends wait for release and then get a 503.
    stalled: Arc<AtomicBool>,
    /// Turns true to let stalled sends go.
    released: watch::Sender<bool>,
    /// When each message whose run is named `lat-…` arrived, by that name.
    arrivals: Arc<std::sync::Mutex<std::collections::HashMap<String, Instant>>>,
    /// TCP connections accepted so far.
    connections: Arc<AtomicU64>,
    /// The first message answered `ok`, as it came: the body the floor client posts.
    sample: Arc<std::sync::Mutex<Option<Bytes>>>,
}

impl FakeSlack {
    async fn start() -> anyhow::Result<Self> {
        let (released, _) = watch::channel(false);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let fake = FakeSlack {
            address: format!("http://{}", listener.local_addr()?),
            received: Arc::default(),
            stalled: Arc::default(),
            released,
            arrivals: Arc::default(),
            connections: Arc::default(),
            sample: Arc::default(),
        };
        let app = Router::new()
            .route("/api/chat.postMessage", axum::routing::post(post_message))
            .with_state(fake.clone());
        let listener = counting(listener, fake.connections.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(fake)
    }

    fn received(&self) -> u64 {
        self.received.load(Ordering::SeqCst)
    }

    fn connections(&self) -> u64 {
        self.connections.load(Ordering::SeqCst)
    }

    fn stall(&self) {
        self.released.send_replace(false);
        self.stalled.store(true, Ordering::SeqCst);
    }

    fn release(&self) {
        self.stalled.store(false, Ordering::SeqCst);
        self.released.send_replace(true);
    }
}

async fn post_message(State(fake): State<FakeSlack>, body: Bytes) -> Response {
    let at = Instant::now();
    // The header block carries the run's name: a latency run is named "lat-<tag>-<n>".
    if let Some(from) = body.windows(4).position(|w| w == b"lat-") {
        let name: Vec<u8> = body[from..]
            .iter()
            .take_while(|b| b.is_ascii_alphanumeric() || **b == b'-')
            .copied()
            .collect();
        fake.arrivals
            .lock()
            .expect("arrivals")
            .entry(String::from_utf8_lossy(&name).into_owned())
            .or_insert(at);
    }
    if fake.stalled.load(Ordering::SeqCst) {
        let mut released = fake.released.subscribe();
        let _ = released.wait_for(|r| *r).await;
        return (StatusCode::SERVICE_UNAVAILABLE, "stalled by the load tool").into_response();
    }
    fake.received.fetch_add(1, Ordering::SeqCst);
    fake.sample.lock().expect("sample").get_or_insert(body);
    axum::Json(json!({"ok": true, "channel": CHANNEL, "ts": "1.2", "message": {"ts": "1.2"}})).into_response()
}

/// The API key of the fake LangSmith.
const LANGSMITH_KEY: &str = "load-test";

/// The crate's embedded LangSmith token service on its own port and SQLite file, counting the
/// token-creation requests it answers.
struct FakeLangSmith {
    /// `http://127.0.0.1:PORT`.
    address: String,
    /// `POST …/feedback/tokens` requests so far.
    requests: Arc<AtomicU64>,
    /// TCP connections accepted so far.
    connections: Arc<AtomicU64>,
}

impl FakeLangSmith {
    async fn start(dir: &Path) -> anyhow::Result<Self> {
        let store = SqliteStore::open(&format!("sqlite://{}", dir.join("langsmith/tokens.db").display()))
            .await
            .context("cannot open the fake LangSmith's store")?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let address = format!("http://{}", listener.local_addr()?);
        let requests = Arc::new(AtomicU64::new(0));
        let app = embedded_router(EmbeddedState {
            store: Arc::new(store),
            public_url: url::Url::parse(&address)?,
            // The key the app under load is started with (LANGSMITH_API_KEY).
            api_key: secrecy::SecretString::from(LANGSMITH_KEY),
        })
        .layer(axum::middleware::from_fn_with_state(
            requests.clone(),
            count_token_requests,
        ));
        let connections = Arc::new(AtomicU64::new(0));
        let listener = counting(listener, connections.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(FakeLangSmith {
            address,
            requests,
            connections,
        })
    }

    fn requests(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }

    fn connections(&self) -> u64 {
        self.connections.load(Ordering::SeqCst)
    }
}

/// `listener`, counting the connections it accepts in `count`.
fn counting(
    listener: tokio::net::TcpListener,
    count: Arc<AtomicU64>,
) -> impl axum::serve::Listener<Addr = std::net::SocketAddr> {
    use axum::serve::ListenerExt;
    listener.tap_io(move |_| {
        count.fetch_add(1, Ordering::SeqCst);
    })
}

async fn count_token_requests(State(count): State<Arc<AtomicU64>>, req: Request, next: Next) -> Response {
    if req.method() == Method::POST && req.uri().path().ends_with("/feedback/tokens") {
        count.fetch_add(1, Ordering::SeqCst);
    }
    next.run(req).await
}

/// Rows of the result table.
#[derive(Default)]
struct Report {
    /// Metric, measured, target, met.
    rows: Vec<[String; 4]>,
    /// Rows printed so far.
    emitted: usize,
}

impl Report {
    fn row(&mut self, metric: String, measured: String, target: impl Into<String>, met: Option<bool>) {
        let met = match met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "—",
        };
        self.rows.push([metric, measured, target.into(), met.into()]);
    }

    /// The rows under a phase's CPU row: its kernel share and its threads' context switches,
    /// per `per` (one of `runs`).
    fn usage_rows(&mut self, used: &Used, runs: usize, per: &str) {
        self.row(
            "of which in the kernel (system time), same phase".into(),
            format!("{:.0} µs", used.system_per_run_us(runs)),
            "—",
            None,
        );
        self.row(
            format!("context switches of the app's threads per {per}, same phase"),
            used.switches_per_run(runs),
            "—",
            None,
        );
    }

    /// Prints the rows added since the last call (the table's header first), as a phase
    /// finishes: a later phase that fails keeps the earlier figures on the screen.
    fn emit(&mut self) {
        use std::io::Write;
        let mut out = String::new();
        if self.emitted == 0 {
            out.push_str("| metric | measured | target | met? |\n| --- | --- | --- | --- |\n");
        }
        for [metric, measured, target, met] in &self.rows[self.emitted..] {
            out.push_str(&format!("| {metric} | {measured} | {target} | {met} |\n"));
        }
        self.emitted = self.rows.len();
        let mut stdout = std::io::stdout().lock();
        let _ = stdout.write_all(out.as_bytes());
        let _ = stdout.flush();
    }
}

/// The rows of one end-to-end run: delivered rate, LangSmith requests per run (target
/// `mints`), CPU per run.
fn e2e_rows(report: &mut Report, label: &str, e2e: &EndToEnd, mints: f64) {
    report.row(
        format!("end-to-end delivered to Slack, {label}"),
        format!(
            "{:.0} runs/s ({} runs in {:.2} s)",
            e2e.delivered_rate(),
            e2e.delivered,
            e2e.delivered_after.as_secs_f64()
        ),
        "≥ 1,000 runs/s",
        Some(e2e.delivered_rate() >= 1_000.0),
    );
    report.row(
        format!("LangSmith requests per run, {label}"),
        format!("{:.3} ({} requests)", e2e.mints_per_run(), e2e.mint_requests),
        format!("≤ {mints}"),
        Some(e2e.mints_per_run() <= mints + 1e-9),
    );
    report.row(
        format!("CPU per delivered run (intake + delivery), {label}"),
        format!("{:.0} µs", e2e.cpu_per_run_us()),
        "≤ 200 µs",
        Some(e2e.cpu_per_run_us() <= 200.0),
    );
}

/// What phase 5 measured: the end-to-end run on PostgreSQL with one replica and with several.
struct Shared {
    /// (replicas, the run, peak RSS of each replica in KiB).
    runs: Vec<(usize, EndToEnd, Vec<u64>)>,
}

impl Shared {
    /// The PostgreSQL runs beside phase 1's SQLite run (`sqlite`, its peak RSS `sqlite_rss`).
    fn markdown(&self, sqlite: &EndToEnd, sqlite_rss: u64) -> String {
        let mut out = String::from(
            "| store | replicas | intake | delivered to Slack | CPU per delivered run (all replicas) | peak RSS per replica |\n|---|---|---|---|---|---|\n",
        );
        let row = |store: &str, replicas: usize, e: &EndToEnd, rss: &[u64]| {
            format!(
                "| {store} | {replicas} | {:.0} runs/s | {:.0} runs/s ({} runs in {:.2} s) | {:.0} µs | {} |\n",
                e.intake_rate(),
                e.delivered_rate(),
                e.delivered,
                e.delivered_after.as_secs_f64(),
                e.cpu_per_run_us(),
                rss.iter().map(|k| mib(*k)).collect::<Vec<_>>().join(", ")
            )
        };
        out.push_str(&row("SQLite", 1, sqlite, &[sqlite_rss]));
        for (replicas, e, rss) in &self.runs {
            out.push_str(&row("PostgreSQL", *replicas, e, rss));
        }
        out
    }
}

/// Phase 5: phase 1's end-to-end run on PostgreSQL, with one replica and with `--replicas`.
async fn postgres_phase(
    bin: &Path,
    work: &Path,
    args: &Args,
    client: &reqwest::Client,
    slack: &FakeSlack,
    langsmith: &FakeLangSmith,
    limit: Duration,
) -> anyhow::Result<Shared> {
    let cluster = match &args.postgres {
        Some(url) => Cluster::Given(url.clone()),
        None => Cluster::start()?,
    };
    let mut runs = Vec::new();
    for replicas in [1, args.replicas.max(2)] {
        eprintln!(
            "phase 5: PostgreSQL, {replicas} replica(s), {} runs end to end",
            args.events
        );
        let db = cluster
            .fresh_database(&format!("load_{replicas}_{}", std::process::id()))
            .await?;
        let mut apps = Vec::new();
        for i in 0..replicas {
            let config = AppConfig {
                route_slack: "",
                batch_runs: Some(1),
                concurrency: args.concurrency,
                slack_timeout: "15s",
                lease: "60s",
                extra: "",
                store: Some(db.clone()),
            };
            apps.push(App::start(
                bin,
                &work.join(format!("postgres-{replicas}-{i}")),
                &config,
                slack,
                langsmith,
            )?);
        }
        let e2e = end_to_end(&apps, client, slack, langsmith, args, limit).await?;
        let rss = apps
            .iter()
            .map(|a| peak_rss_kib(a.pid))
            .collect::<anyhow::Result<Vec<_>>>()?;
        for app in apps {
            let log = app.stop()?;
            if let Some(first) = log.lines().find(|l| l.contains("WARN") || l.contains("ERROR")) {
                println!("Phase 5 ({replicas} replicas): the app logged a warning or error; first: {first:?}");
            }
        }
        runs.push((replicas, e2e, rss));
    }
    Ok(Shared { runs })
}

/// The PostgreSQL cluster of phase 5.
enum Cluster {
    /// `--postgres`.
    Given(String),
    /// Started by `scripts/postgres`, stopped on drop.
    Started {
        /// Its admin URL.
        url: String,
        /// Its folder.
        dir: tempfile::TempDir,
    },
}

impl Cluster {
    fn start() -> anyhow::Result<Cluster> {
        let dir = tempfile::Builder::new()
            .prefix("feedback-dispatch-load-pg-")
            .tempdir()?;
        // As root the cluster runs as `postgres`, which must reach its folder.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/postgres");
        let out = Command::new(&script)
            .arg("start")
            .arg(dir.path().join("cluster"))
            .stderr(Stdio::inherit())
            .output()
            .with_context(|| format!("cannot run {}", script.display()))?;
        anyhow::ensure!(out.status.success(), "scripts/postgres start failed");
        let url = String::from_utf8(out.stdout)?.trim().to_string();
        eprintln!("phase 5: a throwaway PostgreSQL cluster at {url}");
        Ok(Cluster::Started { url, dir })
    }

    fn url(&self) -> &str {
        match self {
            Cluster::Given(url) | Cluster::Started { url, .. } => url,
        }
    }

    /// Makes the database `name` (dropping one left from an earlier run); returns its URL.
    async fn fresh_database(&self, name: &str) -> anyhow::Result<String> {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(self.url())
            .await
            .context("cannot reach the PostgreSQL cluster")?;
        for sql in [
            format!("DROP DATABASE IF EXISTS {name}"),
            format!("CREATE DATABASE {name}"),
        ] {
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&mut conn).await?;
        }
        let base = self.url().rsplit_once('/').map_or(self.url(), |(base, _)| base);
        Ok(format!("{base}/{name}"))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Cluster::Started { dir, .. } = self {
            let _ = Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/postgres"))
                .arg("stop")
                .arg(dir.path().join("cluster"))
                .status();
        }
    }
}

/// The console phase: a store of `args.console_jobs` jobs (most sent over the last week, some
/// scheduled, pending and dead) and `args.console_votes` votes over 30 days, written straight
/// into the app's SQLite file while it is stopped; then each page's time.
async fn console_phase(
    bin: &Path,
    work: &Path,
    args: &Args,
    client: &reqwest::Client,
    slack: &FakeSlack,
    langsmith: &FakeLangSmith,
) -> anyhow::Result<Report> {
    let dir = work.join("console");
    let config = AppConfig {
        route_slack: "",
        batch_runs: None,
        concurrency: args.concurrency,
        slack_timeout: "15s",
        lease: "60s",
        extra: "[console]\nenabled = true\n[[routes]]\nname = \"billing\"\nkeys = [\"thumbs_up\", \"thumbs_down\"]\nslack = { channel = \"C0BILLING\" }\n",
        store: None,
    };
    // Started once so that it creates and migrates the database, then stopped.
    App::start(bin, &dir, &config, slack, langsmith)?.stop()?;
    eprintln!(
        "console phase: writing {} jobs and {} votes",
        args.console_jobs, args.console_votes
    );
    let db = dir.join("db/load.db");
    let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(&format!("sqlite://{}", db.display())).await?;
    let now = chrono::Utc::now().timestamp_millis();
    let event = |run: &str, i: usize| -> anyhow::Result<String> {
        let body = json!({"run_id": run, "run_name": "answer", "project": "support-bot",
            "inputs": {"question": format!("Question {i}: how do I export my data as CSV?")},
            "outputs": {"answer": format!("Answer {i}: open Reports, choose Export, then CSV. Large exports arrive by email.")},
            "tags": ["prod"]});
        let events = feedback_dispatch::parse_generic(&body).map_err(|e| anyhow::anyhow!("{e:?}"))?;
        let payload = json!({"event": serde_json::to_value(&events[0])?, "keys": ["thumbs_up", "thumbs_down"],
            "channel": "C0LOAD", "thread_ts": null, "link_ttl_secs": 604_800});
        Ok(payload.to_string())
    };
    let routes = ["load", "billing"];
    let errors = [
        "the channel refused: channel_not_found",
        "the channel refused: is_archived",
        "gave up after 5 attempts: Slack answered 503",
    ];
    let started = Instant::now();
    let mut tx = sqlx::Connection::begin(&mut conn).await?;
    let mut sent_ids = Vec::new();
    let mut runs = Vec::new();
    for i in 0..args.console_jobs {
        let run = uuid::Uuid::from_u128(0xC0_0000_0000_0000_0000 + i as u128).to_string();
        let (state, sent_at, error) = match i % 100 {
            0..=94 => ("sent", Some(now - (i as i64 * 6_000) % (7 * 86_400_000)), None),
            95..=97 => ("scheduled", None, None),
            98 => ("pending", None, None),
            _ => ("dead", None, Some(errors[i % errors.len()])),
        };
        let created = sent_at.unwrap_or(now) - 500;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO jobs (kind, route, target, run_id, idempotency_key, payload, state, attempts, next_attempt_at, last_error, created_at, updated_at, sent_at)
             VALUES ('slack', ?, 'C0LOAD', ?, ?, ?, ?, 1, ?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(routes[i % 2])
        .bind(&run)
        .bind(format!("slack:{run}:{}:C0LOAD", routes[i % 2]))
        .bind(event(&run, i)?)
        .bind(state)
        .bind(now + 3_600_000)
        .bind(error)
        .bind(created)
        .bind(sent_at.unwrap_or(created))
        .bind(sent_at)
        .fetch_one(&mut *tx)
        .await?;
        if state == "sent" {
            sent_ids.push((id, run.clone(), routes[i % 2]));
        }
        runs.push(run);
    }
    for v in 0..args.console_votes {
        let (job, run, route) = &sent_ids[(v * 7_919) % sent_ids.len()];
        let up = v % 3 != 0;
        sqlx::query(
            "INSERT INTO votes (job_id, run_id, route, feedback_key, choice, label, score, source, voter, team, channel, message_ts, action_key, once_key, created_at, reasons)
             VALUES (?, ?, ?, ?, 0, ?, ?, 'slack', ?, 'T0001', 'C0LOAD', '1700000000.000100', ?, NULL, ?, ?)",
        )
        .bind(job)
        .bind(run)
        .bind(route)
        .bind(if up { "thumbs_up" } else { "thumbs_down" })
        .bind(if up { "👍 Helpful" } else { "👎 Not helpful" })
        .bind(if up { 1.0 } else { 0.0 })
        .bind(format!("U{:05}", v % 500))
        .bind(format!("load-console-vote:{v}"))
        .bind(now - (v as i64 * 12_960) % (30 * 86_400_000))
        .bind((!up).then_some(if v % 2 == 0 { r#"["Incomplete"]"# } else { r#"["Wrong", "Too slow"]"# }))
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    drop(conn);
    eprintln!("console phase: written in {:.1} s", started.elapsed().as_secs_f64());
    let app = App::start(bin, &dir, &config, slack, langsmith)?;
    let run = &runs[runs.len() / 2];
    let pages = [
        ("overview", "/console".to_string()),
        ("votes, newest 50", "/console/votes".to_string()),
        (
            "votes of a route with a reason",
            "/console/votes?route=billing&reason=Incomplete".to_string(),
        ),
        (
            "votes.csv of a route and a day",
            format!(
                "/console/votes.csv?route=load&since={}",
                chrono::Utc::now().format("%Y-%m-%d")
            ),
        ),
        ("dead letters", "/console/dead".to_string()),
        ("a run", format!("/console/runs/{run}")),
    ];
    let mut report = Report::default();
    for (name, path) in pages {
        let url = format!("{}{path}", app.url);
        // The first fetch computes the figures the console keeps for 10 s (the overview's
        // funnels, the votes per day) on a cold page cache: reported apart.
        let t = Instant::now();
        let first = client.get(&url).send().await?;
        anyhow::ensure!(first.status().is_success(), "{path} answered {}", first.status());
        let bytes = first.bytes().await?.len();
        let cold = t.elapsed();
        let mut times = Vec::with_capacity(args.console_rounds);
        for _ in 0..args.console_rounds.max(1) {
            let t = Instant::now();
            let res = client.get(&url).send().await?;
            anyhow::ensure!(res.status().is_success(), "{path} answered {}", res.status());
            res.bytes().await?;
            times.push(t.elapsed());
        }
        times.sort_unstable();
        let median = percentile(&times, 0.5);
        let worst = *times.last().unwrap_or(&Duration::ZERO);
        report.row(
            format!(
                "{name} ({} jobs, {} votes; {} KiB)",
                args.console_jobs,
                args.console_votes,
                bytes / 1024
            ),
            format!("first {}; then median {}, slowest {}", ms(cold), ms(median), ms(worst)),
            "well under 100 ms",
            Some(median < Duration::from_millis(100)),
        );
    }
    app.stop()?;
    Ok(report)
}
