//! The fleet scenario behind the benchmark (`scripts/bench`, benches/fleet.rs)
//! and the scale test (tests/fleet_scale.rs): the project's Kubernetes API
//! emulator and ElastiCache emulator in this process, the real operator
//! binary (`redis-cache-operator run`, real AWS SDK backend) as a child
//! process against them, N caches applied at once, then measured:
//!
//! - apply → Ready and AWS-available → Ready per cache (p50, p90, max), time
//!   until every cache is Ready, how soon each cache had a status;
//! - AWS calls by operation during the ramp, and per cache-hour over a
//!   steady window (scaled by [`Scenario::time_scale`] when the intervals are
//!   shortened), plus what the parameter re-reads add on average;
//! - an optional burst of throttled answers at the start of the deletion
//!   and how long the client rate takes to return to the configured one
//!   after the burst ends;
//! - the operator's peak RSS and CPU, the emulators' CPU, and the
//!   Kubernetes API requests by verb;
//! - deletion of every cache: time until all are gone and what is left.
//!
//! Times are exact: apply, status and Ready are the moments the API server
//! stored those writes (from its history), and AWS-available is the moment
//! the emulator ended the group's `creating`.
//!
//! Include it with `#[path = "support/fleet_bench.rs"] mod fleet_bench;`
//! next to `apiserver` and `elasticache`.
#![allow(dead_code)] // the bench and the test use different parts

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kube::api::{DeleteParams, PostParams};
use kube::Api;
use redis_cache_operator::api::{
    ElastiCacheClass, ProviderKind, RedisCache, RedisCacheClass, RedisCacheClassSpec,
    RedisCacheSpec, DEFAULT_CLASS_ANNOTATION,
};
use serde_json::Value;

use super::apiserver::ApiServer;
use super::elasticache::{ElastiCacheEmulator, EmulatorOptions};

/// How often the run says how far it is (on stderr).
const PROGRESS_EVERY: Duration = Duration::from_secs(60);

/// What to run.
#[derive(Clone, Debug)]
pub struct Scenario {
    /// The operator binary.
    pub operator: PathBuf,
    pub caches: usize,
    /// Caches are spread over this many namespaces.
    pub namespaces: usize,
    /// ElastiCache emulator lifecycle.
    pub create: Duration,
    pub modify: Duration,
    pub delete: Duration,
    /// AWS-side throttling (calls per second, burst), like an account limit.
    pub server_throttle: Option<(f64, u32)>,
    /// Operator flags.
    pub rate_limit: f64,
    pub burst: u32,
    pub concurrency: u16,
    pub transition: Duration,
    pub settled: Duration,
    pub companion_refresh: Duration,
    pub parameter_recheck: Duration,
    /// How long the steady state is watched (at least one settled interval).
    pub steady: Duration,
    /// Real seconds × this = simulated seconds (the intervals above were
    /// divided by it); 1 for a real-time run.
    pub time_scale: f64,
    /// Throttled answers injected when the deletion starts (the busiest
    /// stretch of changing calls), so the ramp's times stay unthrottled.
    pub throttle_burst: u32,
    /// Delete every cache at the end and wait for them.
    pub delete_all: bool,
    /// Longest the whole ramp (or the deletion) may take.
    pub deadline: Duration,
    /// `--log-level` of the operator.
    pub log_level: String,
}

impl Scenario {
    /// The defaults of the benchmark: the operator's own flags, AWS-like
    /// create (30 s), modify and delete times.
    pub fn realistic(operator: PathBuf, caches: usize) -> Self {
        Self {
            operator,
            caches,
            namespaces: 10,
            create: Duration::from_secs(30),
            modify: Duration::from_secs(10),
            delete: Duration::from_secs(20),
            server_throttle: None,
            rate_limit: 5.0,
            burst: 10,
            concurrency: 8,
            transition: Duration::from_secs(15),
            settled: Duration::from_secs(300),
            companion_refresh: Duration::from_secs(25 * 60),
            parameter_recheck: Duration::from_secs(12 * 3600),
            steady: Duration::from_secs(300),
            time_scale: 1.0,
            throttle_burst: 0,
            delete_all: true,
            deadline: Duration::from_secs(3 * 3600),
            log_level: "warn".into(),
        }
    }
}

/// p50, p90 and max of some durations.
#[derive(Clone, Copy, Debug, Default)]
pub struct Spread {
    pub p50: f64,
    pub p90: f64,
    pub max: f64,
}

impl Spread {
    fn of(mut v: Vec<f64>) -> Self {
        if v.is_empty() {
            return Self::default();
        }
        v.sort_by(f64::total_cmp);
        let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
        Self {
            p50: at(0.5),
            p90: at(0.9),
            max: at(1.0),
        }
    }
}

impl fmt::Display for Spread {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "p50 {:.1} s, p90 {:.1} s, max {:.1} s",
            self.p50, self.p90, self.max
        )
    }
}

/// What a run measured.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub caches: usize,
    pub all_ready: f64,
    pub apply_to_ready: Spread,
    pub available_to_ready: Spread,
    /// Longest time from apply to the first status.
    pub first_status_max: f64,
    /// Caches that had no status 5 s after apply.
    pub without_status_after_5s: usize,
    /// Caches that showed `Ready=False, reason=Throttled` at some sample.
    pub shown_throttled: usize,
    pub ramp_calls: BTreeMap<String, u64>,
    pub ramp_throttled: u64,
    pub steady_window: f64,
    pub steady_calls: BTreeMap<String, u64>,
    /// Calls per cache-hour in the steady window (simulated hours).
    pub steady_per_cache_hour: f64,
    /// What the parameter re-reads add per cache-hour on average.
    pub parameter_rereads_per_cache_hour: f64,
    pub throttle_injected: u32,
    /// Throttled answers the operator's calls got during the burst.
    pub throttle_answered: u64,
    /// Seconds from the last throttled answer to the configured rate.
    pub throttle_recovery: Option<f64>,
    pub lowest_rate: Option<f64>,
    pub peak_rss_mib: f64,
    pub operator_cpu: f64,
    pub emulators_cpu: f64,
    pub wall: f64,
    pub kube_requests: BTreeMap<String, usize>,
    pub all_gone: Option<f64>,
    pub left_over: Option<(usize, usize, usize, usize)>,
    pub settings: String,
}

impl Report {
    /// Ramp calls per created cache.
    pub fn calls_per_created_cache(&self) -> f64 {
        self.ramp_calls.values().sum::<u64>() as f64 / self.caches.max(1) as f64
    }
}

fn table(f: &mut fmt::Formatter<'_>, calls: &BTreeMap<String, u64>) -> fmt::Result {
    for (op, n) in calls {
        writeln!(f, "      {op:<44} {n:>8}")?;
    }
    Ok(())
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "fleet benchmark: {} caches", self.caches)?;
        writeln!(f, "  settings: {}", self.settings)?;
        writeln!(f, "  all Ready after          {:.1} s", self.all_ready)?;
        writeln!(f, "  apply -> Ready           {}", self.apply_to_ready)?;
        writeln!(f, "  AWS available -> Ready   {}", self.available_to_ready)?;
        writeln!(
            f,
            "  first status             at most {:.1} s after apply; {} caches had none after 5 s",
            self.first_status_max, self.without_status_after_5s
        )?;
        writeln!(
            f,
            "  shown Throttled          {} caches",
            self.shown_throttled
        )?;
        writeln!(
            f,
            "  AWS calls during the ramp: {} ({:.1} per created cache), {} answered throttled",
            self.ramp_calls.values().sum::<u64>(),
            self.calls_per_created_cache(),
            self.ramp_throttled
        )?;
        table(f, &self.ramp_calls)?;
        writeln!(
            f,
            "  steady state over {:.0} s: {} calls = {:.3} per cache-hour (+ {:.3} for parameter re-reads on average)",
            self.steady_window,
            self.steady_calls.values().sum::<u64>(),
            self.steady_per_cache_hour,
            self.parameter_rereads_per_cache_hour
        )?;
        table(f, &self.steady_calls)?;
        if self.throttle_injected > 0 {
            writeln!(
                f,
                "  throttling burst at the deletion's start: {} of {} throttled answers used, rate down to {:.2}/s, back to the configured rate {} after the burst",
                self.throttle_answered,
                self.throttle_injected,
                self.lowest_rate.unwrap_or_default(),
                match self.throttle_recovery {
                    Some(s) => format!("{s:.1} s"),
                    None => "NOT".to_string(),
                }
            )?;
        }
        writeln!(
            f,
            "  operator: peak RSS {:.1} MiB, CPU {:.1} s; emulators (this process): CPU {:.1} s; wall {:.1} s",
            self.peak_rss_mib, self.operator_cpu, self.emulators_cpu, self.wall
        )?;
        writeln!(
            f,
            "  Kubernetes API requests: {} ({})",
            self.kube_requests.values().sum::<usize>(),
            self.kube_requests
                .iter()
                .map(|(v, n)| format!("{v} {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        )?;
        if let Some(gone) = self.all_gone {
            writeln!(f, "  delete all: gone after {gone:.1} s")?;
        }
        if let Some((g, p, s, sg)) = self.left_over {
            writeln!(
                f,
                "  left in AWS: {g} replication groups, {p} parameter groups, {s} subnet groups, {sg} security groups"
            )?;
        }
        Ok(())
    }
}

#[derive(Clone, Debug, Default)]
struct Track {
    /// When the API server stored the create (until the bench has read
    /// that: when the client's create returned).
    applied: Option<Instant>,
    /// Whether `applied` is the server's time.
    stored: bool,
    first_status: Option<Instant>,
    available: Option<Instant>,
    ready: Option<Instant>,
    backend_id: Option<String>,
    throttled: bool,
}

/// The operator as a child process; killed when dropped.
struct Operator {
    child: Child,
    metrics: String,
    log: PathBuf,
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Operator {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The last lines of its log, to explain a failure.
    fn tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// The lower of the two client rates in effect (reads, changes).
    async fn rate(&self) -> Option<f64> {
        let text = reqwest::get(&self.metrics).await.ok()?.text().await.ok()?;
        text.lines()
            .filter(|l| l.starts_with("redis_cache_operator_aws_rate_limit{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .reduce(f64::min)
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn secs(d: Duration) -> String {
    format!("{}ms", d.as_millis())
}

/// CPU seconds (user + system) of a process from /proc.
fn cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses.
    let rest = stat.rsplit(')').next().unwrap_or_default();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the line, 12 and 13 here.
    (ticks(11) + ticks(12)) / 100.0
}

fn peak_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

fn class(endpoint: &str) -> RedisCacheClass {
    let mut class = RedisCacheClass::new(
        "bench",
        RedisCacheClassSpec {
            provider: ProviderKind::ElastiCache,
            defaults: None,
            allowed_namespaces: Vec::new(),
            allowed_namespace_selector: None,
            elasti_cache: Some(ElastiCacheClass {
                region: "us-east-1".into(),
                endpoint_url: Some(endpoint.to_string()),
                subnet_ids: vec!["subnet-a".into(), "subnet-b".into()],
                allowed_cidrs: vec!["10.0.0.0/16".into()],
                ..ElastiCacheClass::default()
            }),
            kubernetes: None,
            upstash: None,
            azure: None,
        },
    );
    class.metadata.annotations =
        Some([(DEFAULT_CLASS_ANNOTATION.to_string(), "true".to_string())].into());
    class
}

/// Namespace and name of cache `i`.
fn name_of(i: usize, namespaces: usize) -> (String, String) {
    (
        format!("bench-{:02}", i % namespaces.max(1)),
        format!("cache-{i:04}"),
    )
}

fn ready_condition(cache: &Value) -> Option<(&str, &str)> {
    let c = cache["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "Ready")?;
    Some((
        c["status"].as_str()?,
        c["reason"].as_str().unwrap_or_default(),
    ))
}

/// Requests by verb, as an API server would log them.
pub fn verbs(requests: &[(String, String, String)]) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for (method, path, _) in requests {
        let (path, query) = path.split_once('?').unwrap_or((path, ""));
        let verb = match method.as_str() {
            "GET"
                if query
                    .split('&')
                    .any(|q| q == "watch=true" || q == "watch=1") =>
            {
                "WATCH"
            }
            "GET" if names_a_collection(path) => "LIST",
            m => m,
        };
        *out.entry(verb.to_string()).or_insert(0) += 1;
    }
    out
}

/// Whether `path` is `/api/v1/[namespaces/NS/]PLURAL` or
/// `/apis/GROUP/VERSION/[namespaces/NS/]PLURAL` (no object name).
fn names_a_collection(path: &str) -> bool {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let rest = match parts.first() {
        Some(&"api") => &parts[2.min(parts.len())..],
        Some(&"apis") => &parts[3.min(parts.len())..],
        _ => return false,
    };
    let rest = match rest {
        ["namespaces", _, tail @ ..] if !tail.is_empty() => tail,
        other => other,
    };
    rest.len() == 1
}

fn diff(after: &BTreeMap<String, u64>, before: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0)))
        .filter(|(_, v)| *v > 0)
        .collect()
}

/// Runs the scenario; panics with the operator's log tail when it cannot
/// finish within its deadline.
pub async fn run(s: &Scenario) -> Report {
    let started = Instant::now();
    let self_cpu_start = cpu_seconds("self");
    let server = ApiServer::start().await;
    server.register_status_subresource("rediscache.dev", "v1alpha1", "rediscaches");
    server.register_status_subresource("rediscache.dev", "v1alpha1", "rediscacheclasses");
    let aws = ElastiCacheEmulator::start(EmulatorOptions {
        region: "us-east-1".into(),
        create: s.create,
        modify: s.modify,
        delete: s.delete,
        throttle: s.server_throttle,
    })
    .await;
    let client = server.client();
    let classes: Api<RedisCacheClass> = Api::all(client.clone());
    classes
        .create(&PostParams::default(), &class(&aws.endpoint()))
        .await
        .expect("create the class");

    let dir = tempfile::tempdir().expect("temp dir");
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: emulator\n  cluster:\n    server: {}\nusers:\n- name: emulator\n  user: {{}}\ncontexts:\n- name: emulator\n  context:\n    cluster: emulator\n    user: emulator\n    namespace: default\ncurrent-context: emulator\n",
            server.url()
        ),
    )
    .expect("write kubeconfig");
    let port = free_port();
    let log = dir.path().join("operator.log");
    let log_file = std::fs::File::create(&log).expect("log file");
    let settings = format!(
        "--aws-rate-limit {} --aws-burst {} --concurrency {} --poll-interval-transition {} --poll-interval-settled {} --aws-companion-refresh {} --aws-parameter-recheck {}; emulator create {} s, modify {} s, delete {} s{}",
        s.rate_limit,
        s.burst,
        s.concurrency,
        secs(s.transition),
        secs(s.settled),
        secs(s.companion_refresh),
        secs(s.parameter_recheck),
        s.create.as_secs_f64(),
        s.modify.as_secs_f64(),
        s.delete.as_secs_f64(),
        match s.server_throttle {
            Some((r, b)) => format!(", AWS-side limit {r}/s burst {b}"),
            None => String::new(),
        }
    );
    let child = Command::new(&s.operator)
        .args([
            "run",
            "--cluster-name",
            "bench",
            "--leader-election",
            "false",
        ])
        .args(["--health-probe", "false"])
        .args(["--http-addr", &format!("127.0.0.1:{port}")])
        .args(["--aws-rate-limit", &s.rate_limit.to_string()])
        .args(["--aws-burst", &s.burst.to_string()])
        .args(["--concurrency", &s.concurrency.to_string()])
        .args(["--poll-interval-transition", &secs(s.transition)])
        .args(["--poll-interval-settled", &secs(s.settled)])
        .args(["--aws-companion-refresh", &secs(s.companion_refresh)])
        .args(["--aws-parameter-recheck", &secs(s.parameter_recheck)])
        .args(["--log-level", &s.log_level])
        .env("KUBECONFIG", &kubeconfig)
        .env("AWS_ACCESS_KEY_ID", "bench")
        .env("AWS_SECRET_ACCESS_KEY", "bench")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_ENDPOINT_URL")
        .env_remove("AWS_PROFILE")
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().expect("log file"))
        .stderr(log_file)
        .spawn()
        .expect("start the operator");
    let operator = Operator {
        child,
        metrics: format!("http://127.0.0.1:{port}/metrics"),
        log,
    };
    let operator_pid = operator.pid();

    // The class is checked (one call) before any cache is applied.
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let ready = server
            .get(
                "rediscache.dev",
                "v1alpha1",
                "rediscacheclasses",
                None,
                "bench",
            )
            .and_then(|c| ready_condition(&c).map(|(st, _)| st == "True"))
            .unwrap_or(false);
        if ready {
            break;
        }
        assert!(
            Instant::now() < until,
            "the class never became Ready; operator log:\n{}",
            operator.tail()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let calls_before = aws.calls();
    let throttled_before = aws.throttled();

    // Apply every cache at once.
    let mut tracks: HashMap<(String, String), Track> = HashMap::new();
    let apply_start = Instant::now();
    let mut creates = futures::stream::FuturesUnordered::new();
    for i in 0..s.caches {
        let (ns, name) = name_of(i, s.namespaces);
        let api: Api<RedisCache> = Api::namespaced(client.clone(), &ns);
        let spec: RedisCacheSpec = serde_json::from_str("{}").expect("defaults");
        let cache = RedisCache::new(&name, spec);
        let key = (ns, name);
        tracks.insert(key.clone(), Track::default());
        creates.push(async move {
            api.create(&PostParams::default(), &cache)
                .await
                .expect("apply a RedisCache");
            (key, Instant::now())
        });
    }
    {
        use futures::StreamExt;
        while let Some((key, at)) = creates.next().await {
            if let Some(t) = tracks.get_mut(&key) {
                t.applied = Some(at);
            }
        }
    }

    // The ramp: until every cache is Ready. Each write to a RedisCache is
    // read from the API server's history with the moment it was made, and
    // the moment a group became available from the ElastiCache emulator, so
    // the times below are exact, not rounded up to a sampling step.
    let mut next_progress = Instant::now() + PROGRESS_EVERY;
    let ramp_deadline = apply_start + s.deadline;
    let mut seen_rv = 0;
    let all_ready_at = loop {
        let now = Instant::now();
        let (changes, rv) = server.changes_since("rediscache.dev", "rediscaches", seen_rv);
        seen_rv = rv;
        for (at, cache) in changes {
            let key = (
                cache["metadata"]["namespace"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                cache["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            );
            let Some(t) = tracks.get_mut(&key) else {
                continue;
            };
            // The first write is the create itself.
            if !t.stored {
                t.stored = true;
                t.applied = Some(at);
            }
            if t.first_status.is_none() && cache["status"]["phase"].is_string() {
                t.first_status = Some(at);
            }
            if t.backend_id.is_none() {
                t.backend_id = cache["status"]["backendId"].as_str().map(str::to_string);
            }
            if let Some((st, reason)) = ready_condition(&cache) {
                if reason == "Throttled" {
                    t.throttled = true;
                }
                if st == "True" && t.ready.is_none() {
                    t.ready = Some(at);
                }
            }
        }
        for t in tracks.values_mut() {
            if t.available.is_none() {
                if let Some(id) = &t.backend_id {
                    t.available = aws.available_at(id);
                }
            }
        }
        let ready = tracks.values().filter(|t| t.ready.is_some()).count();
        if ready == s.caches {
            eprintln!(
                "[{:>6.0} s] all {} caches Ready; AWS calls so far: {}",
                started.elapsed().as_secs_f64(),
                s.caches,
                diff(&aws.calls(), &calls_before).values().sum::<u64>()
            );
            break tracks.values().filter_map(|t| t.ready).max().unwrap_or(now);
        }
        if now >= next_progress {
            next_progress = now + PROGRESS_EVERY;
            eprintln!(
                "[{:>6.0} s] {ready} of {} caches Ready",
                started.elapsed().as_secs_f64(),
                s.caches
            );
        }
        assert!(
            now < ramp_deadline,
            "{ready} of {} caches Ready after {:?}; operator log:\n{}",
            s.caches,
            s.deadline,
            operator.tail()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // The caches made Ready last still have their follow-up reconcile to
    // come (it reads the member facts that the create request stood in
    // for): one transition interval belongs to the ramp.
    tokio::time::sleep(s.transition).await;
    let ramp_calls = diff(&aws.calls(), &calls_before);
    let ramp_throttled = aws.throttled() - throttled_before;
    // The ramp's times now, in case a long deletion is cut short.
    let since =
        |t: &Track, from: Option<Instant>| Some(t.ready?.duration_since(from?).as_secs_f64());
    eprintln!(
        "[{:>6.0} s] apply -> Ready {}; AWS available -> Ready {}; {} caches without a status 5 s after apply; {} shown Throttled; calls {:?}",
        started.elapsed().as_secs_f64(),
        Spread::of(tracks.values().filter_map(|t| since(t, t.applied)).collect()),
        Spread::of(tracks.values().filter_map(|t| since(t, t.available)).collect()),
        tracks
            .values()
            .filter(|t| match (t.first_status, t.applied) {
                (Some(f), Some(a)) => f.duration_since(a) > Duration::from_secs(5),
                _ => true,
            })
            .count(),
        tracks.values().filter(|t| t.throttled).count(),
        ramp_calls
    );

    // The three slowest, to look up in the operator's log.
    let mut slowest: Vec<(&(String, String), &Track)> = tracks
        .iter()
        .filter(|(_, t)| since(t, t.available).is_some())
        .collect();
    slowest.sort_by(|a, b| {
        since(b.1, b.1.available)
            .partial_cmp(&since(a.1, a.1.available))
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    for ((ns, name), t) in slowest.iter().take(3) {
        let at = |i: Option<Instant>| {
            i.map_or(f64::NAN, |i| i.duration_since(apply_start).as_secs_f64())
        };
        eprintln!(
            "  slowest available -> Ready: {ns}/{name} ({}): applied {:.1} s, first status {:.1} s, available {:.1} s, Ready {:.1} s",
            t.backend_id.as_deref().unwrap_or("?"),
            at(t.applied), at(t.first_status), at(t.available), at(t.ready)
        );
    }

    // Steady state: everything settled; count over the window.
    let steady_before = aws.calls();
    let steady_start = Instant::now();
    tokio::time::sleep(s.steady).await;
    let steady_window = steady_start.elapsed().as_secs_f64();
    let steady_calls = diff(&aws.calls(), &steady_before);
    eprintln!(
        "[{:>6.0} s] steady state: {} AWS calls in {steady_window:.0} s ({steady_calls:?})",
        started.elapsed().as_secs_f64(),
        steady_calls.values().sum::<u64>()
    );
    let simulated_hours = steady_window * s.time_scale / 3600.0;
    let steady_per_cache_hour =
        steady_calls.values().sum::<u64>() as f64 / (s.caches as f64 * simulated_hours);
    // One DescribeCacheParameters per group per recheck on average.
    let parameter_rereads_per_cache_hour =
        3600.0 / (s.parameter_recheck.as_secs_f64() * s.time_scale);

    let peak_rss = peak_rss_mib(operator_pid);
    let operator_cpu = cpu_seconds(&operator_pid.to_string());

    let mut all_gone = None;
    let mut left_over = None;
    let mut burst_done: Option<Instant> = None;
    let mut recovery: Option<f64> = None;
    let mut lowest: Option<f64> = None;
    let mut burst_throttled = 0;
    if s.delete_all {
        let delete_start = Instant::now();
        for (ns, name) in tracks.keys() {
            let api: Api<RedisCache> = Api::namespaced(client.clone(), ns);
            api.delete(name, &DeleteParams::default())
                .await
                .expect("delete a RedisCache");
        }
        let throttled_at_start = aws.throttled();
        if s.throttle_burst > 0 {
            aws.throttle_next(s.throttle_burst);
        }
        let until = delete_start + s.deadline;
        let mut gone_at = None;
        loop {
            let now = Instant::now();
            if s.throttle_burst > 0 && recovery.is_none() {
                burst_throttled = aws.throttled() - throttled_at_start;
                if burst_done.is_none() && burst_throttled >= u64::from(s.throttle_burst) {
                    burst_done = Some(now);
                }
                if let Some(rate) = operator.rate().await {
                    lowest = Some(lowest.map_or(rate, |l: f64| l.min(rate)));
                    if burst_done.is_some() && rate >= s.rate_limit * 0.999 {
                        recovery = burst_done.map(|d| now.duration_since(d).as_secs_f64());
                    }
                }
            }
            let left = server
                .list("rediscache.dev", "v1alpha1", "rediscaches")
                .len();
            if left == 0 && gone_at.is_none() {
                gone_at = Some(now);
                eprintln!(
                    "[{:>6.0} s] every cache deleted",
                    started.elapsed().as_secs_f64()
                );
            }
            if now >= next_progress {
                next_progress = now + PROGRESS_EVERY;
                eprintln!(
                    "[{:>6.0} s] {left} caches still being deleted",
                    started.elapsed().as_secs_f64()
                );
            }
            // Done when every cache is gone and the burst, if it was used
            // up, is recovered from.
            if left == 0 && (burst_done.is_none() || recovery.is_some()) {
                break;
            }
            assert!(
                Instant::now() < until,
                "{left} caches still there after {:?}; operator log:\n{}",
                s.deadline,
                operator.tail()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        all_gone = gone_at.map(|g| g.duration_since(delete_start).as_secs_f64());
        left_over = Some(aws.resource_counts());
    }
    let operator_cpu_total = cpu_seconds(&operator_pid.to_string()).max(operator_cpu);
    let peak_rss = peak_rss_mib(operator_pid).max(peak_rss);
    drop(operator);

    let since =
        |t: &Track, from: Option<Instant>| Some(t.ready?.duration_since(from?).as_secs_f64());
    let first_status: Vec<f64> = tracks
        .values()
        .filter_map(|t| Some(t.first_status?.duration_since(t.applied?).as_secs_f64()))
        .collect();
    Report {
        caches: s.caches,
        all_ready: all_ready_at.duration_since(apply_start).as_secs_f64(),
        apply_to_ready: Spread::of(
            tracks
                .values()
                .filter_map(|t| since(t, t.applied))
                .collect(),
        ),
        available_to_ready: Spread::of(
            tracks
                .values()
                .filter_map(|t| since(t, t.available))
                .map(|d| d.max(0.0))
                .collect(),
        ),
        first_status_max: first_status.iter().copied().fold(0.0, f64::max),
        without_status_after_5s: tracks
            .values()
            .filter(|t| match (t.first_status, t.applied) {
                (Some(f), Some(a)) => f.duration_since(a) > Duration::from_secs(5),
                _ => true,
            })
            .count(),
        shown_throttled: tracks.values().filter(|t| t.throttled).count(),
        ramp_calls,
        ramp_throttled,
        steady_window,
        steady_calls,
        steady_per_cache_hour,
        parameter_rereads_per_cache_hour,
        throttle_injected: s.throttle_burst,
        throttle_answered: burst_throttled,
        throttle_recovery: recovery,
        lowest_rate: lowest,
        peak_rss_mib: peak_rss,
        operator_cpu: operator_cpu_total,
        emulators_cpu: cpu_seconds("self") - self_cpu_start,
        wall: started.elapsed().as_secs_f64(),
        kube_requests: verbs(&server.requests()),
        all_gone,
        left_over,
        settings,
    }
}

/// Appends `report` to the file at `path` (the benchmark's `--out`).
pub fn append(path: &std::path::Path, report: &Report) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open the report file");
    writeln!(f, "{report}").expect("write the report");
}
