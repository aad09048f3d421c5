//! The fleet benchmark (`scripts/bench`): N caches (default 1,000) through
//! the real operator binary and the real AWS backend against the project's
//! Kubernetes API and ElastiCache emulators; prints what
//! tests/support/fleet_bench.rs measures. docs/performance.md has the
//! results and how to read them.
//!
//! `cargo bench --bench fleet -- --caches 1000` (scripts/bench passes its
//! arguments through). Without `--bench` (as `cargo test --all-targets`
//! runs it) it only says how to run it.

#[path = "../tests/support/apiserver.rs"]
mod apiserver;
#[path = "../tests/support/elasticache.rs"]
mod elasticache;
#[path = "../tests/support/fleet_bench.rs"]
mod fleet_bench;

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

/// Runs N caches through the operator against the emulators and prints times,
/// AWS calls, memory and Kubernetes API requests.
#[derive(Parser, Debug)]
struct Args {
    /// Set by `cargo bench`; without it nothing runs.
    #[arg(long = "bench", hide = true)]
    #[allow(dead_code)]
    bench: bool,
    /// Caches applied at once.
    #[arg(long, default_value_t = 1000)]
    caches: usize,
    /// Seconds until the emulator makes a new replication group available.
    #[arg(long, default_value_t = 30.0)]
    create: f64,
    /// Seconds a modification takes.
    #[arg(long, default_value_t = 10.0)]
    modify: f64,
    /// Seconds a deletion takes.
    #[arg(long, default_value_t = 20.0)]
    delete: f64,
    /// The operator's --aws-rate-limit.
    #[arg(long, default_value_t = 5.0)]
    rate_limit: f64,
    /// The operator's --aws-burst.
    #[arg(long, default_value_t = 10)]
    burst: u32,
    /// The operator's --concurrency.
    #[arg(long, default_value_t = 8)]
    concurrency: u16,
    /// Throttled answers injected once a tenth of the caches are Ready (0: none).
    #[arg(long, default_value_t = 300)]
    throttle_burst: u32,
    /// An AWS-side limit in calls per second (with --server-burst), like an account's.
    #[arg(long)]
    server_rate: Option<f64>,
    #[arg(long, default_value_t = 20)]
    server_burst: u32,
    /// Divide every operator interval (transition, settled, refreshes) by
    /// this and count the steady state in simulated hours.
    #[arg(long, default_value_t = 1)]
    scale: u32,
    /// Seconds the steady state is watched (default: one settled interval).
    #[arg(long)]
    steady: Option<f64>,
    /// Keep the caches at the end (skip the deletion phase).
    #[arg(long)]
    no_delete: bool,
    /// Also append the report to this file.
    #[arg(long)]
    out: Option<PathBuf>,
    /// The operator's --log-level.
    #[arg(long, default_value = "warn")]
    log_level: String,
}

fn main() {
    // `cargo test --all-targets` runs this target too, with test flags.
    if !std::env::args().any(|a| a == "--bench") {
        println!(
            "the fleet benchmark runs with scripts/bench (cargo bench --bench fleet -- --caches N)"
        );
        return;
    }
    let args = Args::parse();
    let operator = PathBuf::from(env!("CARGO_BIN_EXE_redis-cache-operator"));
    let base = fleet_bench::Scenario::realistic(operator, args.caches);
    let scale = args.scale.max(1);
    let settled = base.settled / scale;
    let scenario = fleet_bench::Scenario {
        create: Duration::from_secs_f64(args.create),
        modify: Duration::from_secs_f64(args.modify),
        delete: Duration::from_secs_f64(args.delete),
        server_throttle: args.server_rate.map(|r| (r, args.server_burst)),
        rate_limit: args.rate_limit,
        burst: args.burst,
        concurrency: args.concurrency,
        transition: base.transition / scale,
        settled,
        companion_refresh: base.companion_refresh / scale,
        parameter_recheck: base.parameter_recheck / scale,
        steady: args.steady.map(Duration::from_secs_f64).unwrap_or(settled),
        time_scale: f64::from(scale),
        throttle_burst: args.throttle_burst,
        delete_all: !args.no_delete,
        log_level: args.log_level,
        ..base
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let report = runtime.block_on(fleet_bench::run(&scenario));
    println!("{report}");
    if let Some(out) = &args.out {
        fleet_bench::append(out, &report);
    }
}
