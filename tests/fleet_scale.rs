//! The fleet at scale, counted: the real operator binary with the real AWS
//! backend against the project's Kubernetes API and ElastiCache emulators
//! (tests/support/fleet_bench.rs, the benchmark's scenario), with every
//! interval divided by 60 so one minute is a simulated hour. It checks call
//! counts, not times (times are for `scripts/bench`, docs/performance.md):
//!
//! - a created cache costs at most 10 AWS calls, fleet reads included;
//! - in steady state 250 caches cost at most 0.5 calls per cache-hour, and
//!   only shared fleet reads are made (a settled reconcile makes none);
//! - a burst of throttled answers (at the start of the deletion) is
//!   followed by the client rate climbing back to the configured one;
//! - deleting every cache leaves nothing behind in AWS.

#[path = "support/apiserver.rs"]
mod apiserver;
#[path = "support/elasticache.rs"]
mod elasticache;
#[path = "support/fleet_bench.rs"]
mod fleet_bench;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use fleet_bench::Scenario;

/// One real minute is a simulated hour.
const SCALE: u32 = 60;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_of_250_caches_costs_few_calls_to_create_and_almost_none_to_keep() {
    let operator = PathBuf::from(env!("CARGO_BIN_EXE_redis-cache-operator"));
    let realistic = Scenario::realistic(operator, 250);
    let scenario = Scenario {
        create: Duration::from_secs(2),
        modify: Duration::from_secs(1),
        delete: Duration::from_secs(1),
        // Fast enough to create 250 caches in a test, and still a limit.
        rate_limit: 100.0,
        burst: 20,
        concurrency: 16,
        transition: Duration::from_secs(1),
        settled: realistic.settled / SCALE,
        companion_refresh: realistic.companion_refresh / SCALE,
        parameter_recheck: realistic.parameter_recheck / SCALE,
        steady: Duration::from_secs(62),
        time_scale: f64::from(SCALE),
        throttle_burst: 40,
        deadline: Duration::from_secs(600),
        ..realistic
    };
    let report = fleet_bench::run(&scenario).await;
    println!("{report}");

    assert!(
        report.calls_per_created_cache() <= 10.0,
        "a created cache costs {:.1} AWS calls (at most 10): {:?}",
        report.calls_per_created_cache(),
        report.ramp_calls
    );
    let shared_reads = [
        "DescribeReplicationGroups",
        "DescribeCacheParameterGroups",
        "DescribeCacheSubnetGroups",
        "DescribeSecurityGroups",
        "GetResources",
        "DescribeCacheParameters",
    ];
    for op in report.steady_calls.keys() {
        assert!(
            shared_reads.contains(&op.as_str()),
            "{op} in steady state: a settled cache must not cost calls of its own ({:?})",
            report.steady_calls
        );
    }
    let per_cache_hour = report.steady_per_cache_hour + report.parameter_rereads_per_cache_hour;
    assert!(
        per_cache_hour <= 0.5,
        "steady state costs {per_cache_hour:.3} calls per cache-hour (at most 0.5): {:?}",
        report.steady_calls
    );
    assert_eq!(
        report.throttle_answered,
        u64::from(scenario.throttle_burst),
        "the deletion's calls met the whole burst"
    );
    assert!(
        report.lowest_rate.is_some_and(|r| r < scenario.rate_limit),
        "throttling lowered the client rate: {:?}",
        report.lowest_rate
    );
    assert!(
        report.throttle_recovery.is_some(),
        "the client rate came back to the configured {}/s after the burst",
        scenario.rate_limit
    );
    assert_eq!(
        report.left_over,
        Some((0, 0, 0, 0)),
        "deleting every cache leaves nothing in AWS"
    );
}

#[test]
fn requests_are_counted_by_verb() {
    let r = |m: &str, p: &str| (m.to_string(), p.to_string(), String::new());
    let got = fleet_bench::verbs(&[
        r("GET", "/api/v1/namespaces/shop/secrets/cache-0001-redis"),
        r("GET", "/api/v1/namespaces/shop/secrets?labelSelector=x"),
        r("GET", "/apis/rediscache.dev/v1alpha1/rediscacheclasses"),
        r(
            "GET",
            "/apis/rediscache.dev/v1alpha1/namespaces/shop/rediscaches/sessions",
        ),
        r(
            "GET",
            "/apis/rediscache.dev/v1alpha1/rediscaches?watch=true&timeoutSeconds=290",
        ),
        r("GET", "/api/v1/namespaces/shop"),
        r(
            "PATCH",
            "/apis/rediscache.dev/v1alpha1/namespaces/shop/rediscaches/sessions/status",
        ),
    ]);
    let want: BTreeMap<String, usize> = [("GET", 3), ("LIST", 2), ("WATCH", 1), ("PATCH", 1)]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    assert_eq!(got, want);
}
