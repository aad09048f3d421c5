//! A stateful AWS emulator for the ElastiCache backend: one HTTP endpoint
//! that answers the three services the operator talks to, the way the AWS
//! Rust SDK sends them.
//!
//! * **ElastiCache** (awsQuery, API version `2015-02-02`): cache parameter
//!   groups and their parameters, cache subnet groups, replication groups
//!   (with their member cache clusters), tags on all three, replica and
//!   shard counts, node type modifications.
//! * **EC2** (ec2Query, API version `2016-11-15`): subnets (preloaded
//!   `subnet-a`/`b`/`c` in `vpc-1`, one per availability zone), security
//!   groups with their ingress rules, and EC2 tags.
//! * **Resource Groups Tagging API** (awsJson1_1, `GetResources`) over the
//!   three ElastiCache resource kinds.
//!
//! The semantics, error codes and HTTP statuses follow the AWS API
//! references of the three services (ElastiCache API Reference, Amazon EC2
//! API Reference, Resource Groups Tagging API Reference); the wire names
//! follow the SDK's own serializers. Lifecycles are computed lazily from
//! timestamps: a replication group is `creating` for
//! [`EmulatorOptions::create`], `modifying` for [`EmulatorOptions::modify`]
//! after a change and `deleting` for [`EmulatorOptions::delete`] before it is
//! gone. Throttling is a server-side token bucket shared by every call.
//!
//! Deliberately left out: request signatures and credentials (anything is
//! accepted), global datastores, snapshots (a final snapshot's name is only
//! recorded), users and user groups, serverless caches, log delivery, cache
//! node details (`ShowCacheNodeInfo`), egress rules beyond the default
//! allow-all, prefix lists, IPv6 ranges, filter wildcards, parameter name
//! and value validation (any parameter name is accepted), the parameter
//! group's `cluster-enabled` check against the cluster mode, and the default
//! VPC. Names of replication groups, parameter groups and subnet groups are
//! lowercased, as ElastiCache does.

#![allow(dead_code)]

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};
use std::fmt::{Display, Write as _};
use std::net::SocketAddr;
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

/// The account every ARN names.
pub const ACCOUNT: &str = "123456789012";
/// The VPC of the preloaded subnets.
pub const VPC: &str = "vpc-1";

const ELASTICACHE_VERSION: &str = "2015-02-02";
const EC2_VERSION: &str = "2016-11-15";
const ELASTICACHE_NS: &str = "http://elasticache.amazonaws.com/doc/2015-02-02/";
const EC2_NS: &str = "http://ec2.amazonaws.com/doc/2016-11-15/";
const TAGGING_TARGET: &str = "ResourceGroupsTaggingAPI_20170126.";

/// How the emulator behaves.
#[derive(Clone, Debug)]
pub struct EmulatorOptions {
    /// The region of ARNs, availability zones and endpoints.
    pub region: String,
    /// How long a replication group stays `creating`.
    pub create: Duration,
    /// How long a replication group stays `modifying` after a change.
    pub modify: Duration,
    /// How long a replication group stays `deleting` before it is gone.
    pub delete: Duration,
    /// A token bucket over all calls: (calls per second, burst).
    pub throttle: Option<(f64, u32)>,
}

impl Default for EmulatorOptions {
    fn default() -> Self {
        Self {
            region: "us-east-1".into(),
            create: Duration::from_secs(2),
            modify: Duration::from_secs(1),
            delete: Duration::from_secs(1),
            throttle: None,
        }
    }
}

/// The running emulator; dropping it stops the server.
pub struct ElastiCacheEmulator {
    addr: SocketAddr,
    world: Arc<Mutex<World>>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for ElastiCacheEmulator {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl ElastiCacheEmulator {
    /// Binds a port on 127.0.0.1 and serves until dropped.
    pub async fn start(opts: EmulatorOptions) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the emulator's port");
        let addr = listener.local_addr().expect("the emulator's address");
        let world = Arc::new(Mutex::new(World::new(opts)));
        let app = axum::Router::new()
            .fallback(serve)
            .with_state(world.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            addr,
            world,
            server,
        }
    }

    /// `http://127.0.0.1:<port>`, the `endpoint_url` of all three services.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn world(&self) -> MutexGuard<'_, World> {
        let mut w = lock(&self.world);
        w.settle_due(Instant::now());
        w
    }

    /// Answered calls by action (throttled ones are not counted here).
    pub fn calls(&self) -> BTreeMap<String, u64> {
        self.world().calls.clone()
    }

    /// Calls answered with a throttling error.
    pub fn throttled(&self) -> u64 {
        self.world().throttled
    }

    /// Forgets the call and throttle counts.
    pub fn reset_counts(&self) {
        let mut w = self.world();
        w.calls.clear();
        w.throttled = 0;
    }

    /// Throttles the next `n` calls whatever the bucket says.
    pub fn throttle_next(&self, n: u32) {
        self.world().throttle_next += n;
    }

    /// Replaces the token bucket (full at once); `None` turns it off.
    pub fn set_throttle(&self, throttle: Option<(f64, u32)>) {
        let mut w = self.world();
        w.bucket = throttle.map(Bucket::new);
    }
}

fn lock(world: &Mutex<World>) -> MutexGuard<'_, World> {
    world
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

async fn serve(
    State(world): State<Arc<Mutex<World>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (status, content_type, body) = lock(&world).handle(&headers, &body);
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        [(header::CONTENT_TYPE, content_type)],
        body,
    )
        .into_response()
}

// ------------------------------------------------------------ wire helpers

/// A decoded query request.
type Form = BTreeMap<String, String>;

/// The members of the query list `prefix`, each as its own form: scalars
/// under the key `""`, structure fields under their names. Takes every
/// spelling the SDK writes: `P.N` (EC2's flattened lists), `P.member.N` and
/// `P.<Member>.N`, with `.<Field>` after the index for structures.
fn members(form: &Form, prefix: &str) -> Vec<Form> {
    let start = format!("{prefix}.");
    let mut by_index: BTreeMap<u32, Form> = BTreeMap::new();
    for (key, value) in form.range(start.clone()..) {
        let Some(rest) = key.strip_prefix(&start) else {
            break;
        };
        let (first, tail) = rest.split_once('.').unwrap_or((rest, ""));
        let (index, tail) = match first.parse::<u32>() {
            Ok(i) => (i, tail),
            Err(_) => {
                let (second, tail) = tail.split_once('.').unwrap_or((tail, ""));
                match second.parse::<u32>() {
                    Ok(i) => (i, tail),
                    Err(_) => continue,
                }
            }
        };
        by_index
            .entry(index)
            .or_default()
            .insert(tail.to_string(), value.clone());
    }
    by_index.into_values().collect()
}

/// The scalar members of the query list `prefix`.
fn scalars(form: &Form, prefix: &str) -> Vec<String> {
    members(form, prefix)
        .into_iter()
        .filter_map(|mut m| m.remove(""))
        .collect()
}

/// Tags from `P.N.Key`/`P.N.Value` (any list spelling).
fn tag_list(form: &Form, prefix: &str) -> Vec<(String, String)> {
    members(form, prefix)
        .into_iter()
        .filter_map(|mut m| {
            let key = m.remove("Key")?;
            Some((key, m.remove("Value").unwrap_or_default()))
        })
        .collect()
}

fn get<'a>(form: &'a Form, key: &str) -> Option<&'a str> {
    form.get(key).map(String::as_str)
}

fn flag(form: &Form, key: &str) -> Option<bool> {
    get(form, key).map(|v| v.eq_ignore_ascii_case("true"))
}

fn int(form: &Form, key: &str) -> Result<Option<i64>, Fault> {
    match get(form, key) {
        None => Ok(None),
        Some(v) => v.parse().map(Some).map_err(|_| {
            Fault::bad(
                "InvalidParameterValue",
                format!("Value {v} for parameter {key} is invalid"),
            )
        }),
    }
}

fn required<'a>(form: &'a Form, key: &str) -> Result<&'a str, Fault> {
    match get(form, key) {
        Some(v) if !v.is_empty() => Ok(v),
        _ => Err(Fault::bad(
            "MissingParameter",
            format!("The request must contain the parameter {key}"),
        )),
    }
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// A small XML writer.
#[derive(Default)]
struct Xml(String);

impl Xml {
    fn open(&mut self, tag: &str) -> &mut Self {
        let _ = write!(self.0, "<{tag}>");
        self
    }

    fn close(&mut self, tag: &str) -> &mut Self {
        let _ = write!(self.0, "</{tag}>");
        self
    }

    fn leaf(&mut self, tag: &str, value: impl Display) -> &mut Self {
        let _ = write!(self.0, "<{tag}>{}</{tag}>", escape(&value.to_string()));
        self
    }

    fn opt(&mut self, tag: &str, value: Option<impl Display>) -> &mut Self {
        if let Some(v) = value {
            self.leaf(tag, v);
        }
        self
    }

    /// `<outer><item>v</item>…</outer>`.
    fn list<I: Display>(
        &mut self,
        outer: &str,
        item: &str,
        values: impl IntoIterator<Item = I>,
    ) -> &mut Self {
        self.open(outer);
        for v in values {
            self.leaf(item, v);
        }
        self.close(outer)
    }
}

fn timestamp(t: jiff::Timestamp) -> String {
    format!("{:.3}", t.round(jiff::Unit::Millisecond).unwrap_or(t))
}

/// An AWS error answer.
#[derive(Debug)]
struct Fault {
    status: u16,
    code: String,
    message: String,
}

impl Fault {
    fn new(status: u16, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            code: code.to_string(),
            message: message.into(),
        }
    }

    fn bad(code: &str, message: impl Into<String>) -> Self {
        Self::new(400, code, message)
    }
}

type Answer = Result<String, Fault>;

/// Validates an ElastiCache `MaxRecords` (20 to 100, default 100).
fn max_records(form: &Form) -> Result<usize, Fault> {
    match int(form, "MaxRecords")? {
        None => Ok(100),
        Some(n) if (20..=100).contains(&n) => Ok(n as usize),
        Some(n) => Err(Fault::bad(
            "InvalidParameterValue",
            format!("Value {n} for parameter MaxRecords is invalid: it must be between 20 and 100"),
        )),
    }
}

/// One page of `map` after `marker`, and the marker of the next page.
fn page<'a, V>(
    map: &'a BTreeMap<String, V>,
    marker: Option<&str>,
    max: usize,
    mut keep: impl FnMut(&V) -> bool,
) -> (Vec<(&'a String, &'a V)>, Option<String>) {
    let lower = match marker {
        Some(m) => Bound::Excluded(m.to_string()),
        None => Bound::Unbounded,
    };
    let mut out = Vec::new();
    let mut last = None;
    for (key, value) in map.range((lower, Bound::Unbounded)) {
        if !keep(value) {
            continue;
        }
        if out.len() == max {
            return (out, last);
        }
        out.push((key, value));
        last = Some(key.clone());
    }
    (out, None)
}

// ------------------------------------------------------------------ state

struct Bucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn new((rate, burst): (f64, u32)) -> Self {
        Self {
            rate,
            burst: f64::from(burst),
            tokens: f64::from(burst),
            at: Instant::now(),
        }
    }

    fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Service {
    ElastiCache,
    Ec2,
    Tagging,
}

struct ParameterGroup {
    name: String,
    family: String,
    description: String,
    /// Parameters set by the user (`Source=user`).
    user: BTreeMap<String, String>,
    tags: BTreeMap<String, String>,
    builtin: bool,
}

struct World {
    opts: EmulatorOptions,
    calls: BTreeMap<String, u64>,
    throttled: u64,
    throttle_next: u32,
    bucket: Option<Bucket>,
    requests: u64,
    parameter_groups: BTreeMap<String, ParameterGroup>,
    subnet_groups: BTreeMap<String, SubnetGroup>,
    subnets: BTreeMap<String, Subnet>,
    security_groups: BTreeMap<String, SecurityGroup>,
    /// Security group ids by (VPC, name).
    sg_names: HashMap<(String, String), String>,
    sg_seq: u64,
    groups: BTreeMap<String, ReplicationGroup>,
    /// Final snapshots: (name, replication group id).
    final_snapshots: Vec<(String, String)>,
    /// Lifecycle deadlines: (when, replication group id).
    deadlines: BinaryHeap<Reverse<(Instant, String)>>,
}

/// Defaults of every parameter group: (name, value, data type).
const DEFAULT_PARAMETERS: &[(&str, &str, &str)] = &[
    ("activedefrag", "no", "string"),
    ("appendonly", "no", "string"),
    ("cluster-enabled", "no", "string"),
    ("lazyfree-lazy-eviction", "no", "string"),
    ("maxmemory-policy", "volatile-lru", "string"),
    ("maxmemory-samples", "3", "integer"),
    ("notify-keyspace-events", "", "string"),
    ("reserved-memory-percent", "25", "integer"),
    ("tcp-keepalive", "300", "integer"),
    ("timeout", "0", "integer"),
];

const BUILTIN_FAMILIES: &[&str] = &["redis6.x", "redis7", "valkey7", "valkey8"];

impl World {
    fn new(opts: EmulatorOptions) -> Self {
        let bucket = opts.throttle.map(Bucket::new);
        let mut world = Self {
            opts,
            calls: BTreeMap::new(),
            throttled: 0,
            throttle_next: 0,
            bucket,
            requests: 0,
            parameter_groups: BTreeMap::new(),
            subnet_groups: BTreeMap::new(),
            subnets: BTreeMap::new(),
            security_groups: BTreeMap::new(),
            sg_names: HashMap::new(),
            sg_seq: 0,
            groups: BTreeMap::new(),
            final_snapshots: Vec::new(),
            deadlines: BinaryHeap::new(),
        };
        world.add_builtin_network();
        for family in BUILTIN_FAMILIES {
            for suffix in ["", ".cluster.on"] {
                let name = format!("default.{family}{suffix}");
                let mut user = BTreeMap::new();
                if !suffix.is_empty() {
                    user.insert("cluster-enabled".to_string(), "yes".to_string());
                }
                world.parameter_groups.insert(
                    name.clone(),
                    ParameterGroup {
                        name,
                        family: family.to_string(),
                        description: format!("Default parameter group for {family}"),
                        user,
                        tags: BTreeMap::new(),
                        builtin: true,
                    },
                );
            }
        }
        world
    }

    fn arn(&self, kind: &str, name: &str) -> String {
        format!(
            "arn:aws:elasticache:{}:{ACCOUNT}:{kind}:{name}",
            self.opts.region
        )
    }

    fn request_id(&mut self) -> String {
        self.requests += 1;
        format!("e0000000-0000-4000-8000-{:012x}", self.requests)
    }

    /// Applies every lifecycle step that is due.
    fn settle_due(&mut self, now: Instant) {
        while let Some(Reverse((at, _))) = self.deadlines.peek() {
            if *at > now {
                break;
            }
            let Some(Reverse((_, id))) = self.deadlines.pop() else {
                break;
            };
            self.settle(&id, now);
        }
    }

    /// Answers one HTTP request: (status, content type, body).
    fn handle(&mut self, headers: &HeaderMap, body: &[u8]) -> (u16, &'static str, String) {
        let now = Instant::now();
        self.settle_due(now);
        let target = headers
            .get("x-amz-target")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let (service, action, form, json) = match target {
            Some(target) => {
                let action = target
                    .strip_prefix(TAGGING_TARGET)
                    .unwrap_or(&target)
                    .to_string();
                let json = serde_json::from_slice::<serde_json::Value>(body)
                    .unwrap_or(serde_json::Value::Null);
                (Service::Tagging, action, Form::new(), json)
            }
            None => {
                let form: Form = url::form_urlencoded::parse(body).into_owned().collect();
                let service = match get(&form, "Version") {
                    Some(EC2_VERSION) => Service::Ec2,
                    _ => Service::ElastiCache,
                };
                let action = get(&form, "Action").unwrap_or_default().to_string();
                (service, action, form, serde_json::Value::Null)
            }
        };
        let request_id = self.request_id();
        if self.throttle(now) {
            self.throttled += 1;
            let fault = match service {
                Service::ElastiCache => Fault::bad("Throttling", "Rate exceeded"),
                Service::Ec2 => Fault::new(503, "RequestLimitExceeded", "Request limit exceeded."),
                Service::Tagging => Fault::bad("ThrottledException", "Rate exceeded"),
            };
            return render_fault(service, &fault, &request_id);
        }
        *self.calls.entry(action.clone()).or_default() += 1;
        let answer = match service {
            Service::ElastiCache => match get(&form, "Version") {
                Some(ELASTICACHE_VERSION) => self.elasticache(&action, &form, now),
                other => Err(Fault::bad(
                    "InvalidAction",
                    format!(
                        "Could not find operation {action} for version {}",
                        other.unwrap_or("NO_VERSION_SPECIFIED")
                    ),
                )),
            },
            Service::Ec2 => self.ec2(&action, &form, now),
            Service::Tagging => self.tagging(&action, &json),
        };
        match answer {
            Err(fault) => render_fault(service, &fault, &request_id),
            Ok(inner) => match service {
                Service::ElastiCache => {
                    let result = if inner.is_empty() {
                        String::new()
                    } else {
                        format!("<{action}Result>{inner}</{action}Result>")
                    };
                    (
                        200,
                        "text/xml",
                        format!(
                            "<{action}Response xmlns=\"{ELASTICACHE_NS}\">{result}<ResponseMetadata><RequestId>{request_id}</RequestId></ResponseMetadata></{action}Response>"
                        ),
                    )
                }
                Service::Ec2 => (
                    200,
                    "text/xml;charset=UTF-8",
                    format!(
                        "<{action}Response xmlns=\"{EC2_NS}\"><requestId>{request_id}</requestId>{inner}</{action}Response>"
                    ),
                ),
                Service::Tagging => (200, "application/x-amz-json-1.1", inner),
            },
        }
    }

    fn throttle(&mut self, now: Instant) -> bool {
        if self.throttle_next > 0 {
            self.throttle_next -= 1;
            return true;
        }
        match &mut self.bucket {
            Some(bucket) => !bucket.take(now),
            None => false,
        }
    }

    fn elasticache(&mut self, action: &str, form: &Form, now: Instant) -> Answer {
        match action {
            "CreateReplicationGroup" => self.create_replication_group(form, now),
            "DescribeReplicationGroups" => self.describe_replication_groups(form),
            "DescribeCacheClusters" => self.describe_cache_clusters(form),
            "ModifyReplicationGroup" => self.modify_replication_group(form, now),
            "DeleteReplicationGroup" => self.delete_replication_group(form, now),
            "IncreaseReplicaCount" => self.change_replica_count(form, true, now),
            "DecreaseReplicaCount" => self.change_replica_count(form, false, now),
            "ModifyReplicationGroupShardConfiguration" => {
                self.modify_shard_configuration(form, now)
            }
            "ListAllowedNodeTypeModifications" => self.allowed_node_type_modifications(form),
            "ListTagsForResource" => self.list_tags_for_resource(form),
            "AddTagsToResource" => self.add_tags_to_resource(form),
            "RemoveTagsFromResource" => self.remove_tags_from_resource(form),
            "CreateCacheParameterGroup" => self.create_cache_parameter_group(form),
            "DescribeCacheParameterGroups" => self.describe_cache_parameter_groups(form),
            "DescribeCacheParameters" => self.describe_cache_parameters(form),
            "ModifyCacheParameterGroup" => self.modify_cache_parameter_group(form),
            "ResetCacheParameterGroup" => self.reset_cache_parameter_group(form),
            "DeleteCacheParameterGroup" => self.delete_cache_parameter_group(form),
            "CreateCacheSubnetGroup" => self.create_cache_subnet_group(form),
            "DescribeCacheSubnetGroups" => self.describe_cache_subnet_groups(form),
            "ModifyCacheSubnetGroup" => self.modify_cache_subnet_group(form),
            "DeleteCacheSubnetGroup" => self.delete_cache_subnet_group(form),
            other => Err(unknown_action(other)),
        }
    }
}

fn unknown_action(action: &str) -> Fault {
    Fault::bad(
        "InvalidAction",
        format!("The action {action} is not valid for this web service"),
    )
}

fn render_fault(service: Service, fault: &Fault, request_id: &str) -> (u16, &'static str, String) {
    let code = escape(&fault.code);
    let message = escape(&fault.message);
    match service {
        Service::ElastiCache => (
            fault.status,
            "text/xml",
            format!(
                "<ErrorResponse xmlns=\"{ELASTICACHE_NS}\"><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error><RequestId>{request_id}</RequestId></ErrorResponse>"
            ),
        ),
        Service::Ec2 => (
            fault.status,
            "text/xml;charset=UTF-8",
            format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Errors><Error><Code>{code}</Code><Message>{message}</Message></Error></Errors><RequestID>{request_id}</RequestID></Response>"
            ),
        ),
        Service::Tagging => (
            fault.status,
            "application/x-amz-json-1.1",
            serde_json::json!({"__type": fault.code, "Message": fault.message}).to_string(),
        ),
    }
}

// --------------------------------------------------------- parameter groups

fn parameter_group_not_found(name: &str) -> Fault {
    Fault::new(
        404,
        "CacheParameterGroupNotFound",
        format!("CacheParameterGroup {name} not found."),
    )
}

impl World {
    fn write_parameter_group(&self, x: &mut Xml, g: &ParameterGroup) {
        x.open("CacheParameterGroup")
            .leaf("CacheParameterGroupName", &g.name)
            .leaf("CacheParameterGroupFamily", &g.family)
            .leaf("Description", &g.description)
            .leaf("IsGlobal", false)
            .leaf("ARN", self.arn("parametergroup", &g.name))
            .close("CacheParameterGroup");
    }

    fn create_cache_parameter_group(&mut self, form: &Form) -> Answer {
        let name = required(form, "CacheParameterGroupName")?.to_ascii_lowercase();
        let family = required(form, "CacheParameterGroupFamily")?.to_string();
        let description = required(form, "Description")?.to_string();
        if self.parameter_groups.contains_key(&name) {
            return Err(Fault::bad(
                "CacheParameterGroupAlreadyExists",
                format!("Parameter group {name} already exists."),
            ));
        }
        let group = ParameterGroup {
            name: name.clone(),
            family,
            description,
            user: BTreeMap::new(),
            tags: tag_list(form, "Tags").into_iter().collect(),
            builtin: false,
        };
        let mut x = Xml::default();
        self.write_parameter_group(&mut x, &group);
        self.parameter_groups.insert(name, group);
        Ok(x.0)
    }

    fn describe_cache_parameter_groups(&mut self, form: &Form) -> Answer {
        self.describe_named(
            form,
            &self.parameter_groups,
            ("CacheParameterGroupName", "CacheParameterGroups"),
            parameter_group_not_found,
            Self::write_parameter_group,
        )
    }

    /// A Describe of one kind of named group: the one named in the request
    /// (`key`), else a page of all, inside `wrapper`.
    fn describe_named<T>(
        &self,
        form: &Form,
        map: &BTreeMap<String, T>,
        (key, wrapper): (&str, &str),
        not_found: fn(&str) -> Fault,
        write: fn(&Self, &mut Xml, &T),
    ) -> Answer {
        let max = max_records(form)?;
        let mut x = Xml::default();
        if let Some(name) = get(form, key) {
            let name = name.to_ascii_lowercase();
            let g = map.get(&name).ok_or_else(|| not_found(&name))?;
            x.open(wrapper);
            write(self, &mut x, g);
            x.close(wrapper);
            return Ok(x.0);
        }
        let (groups, next) = page(map, get(form, "Marker"), max, |_| true);
        x.opt("Marker", next.as_deref());
        x.open(wrapper);
        for (_, g) in groups {
            write(self, &mut x, g);
        }
        x.close(wrapper);
        Ok(x.0)
    }

    fn describe_cache_parameters(&mut self, form: &Form) -> Answer {
        let name = required(form, "CacheParameterGroupName")?.to_ascii_lowercase();
        let max = max_records(form)?;
        let g = self
            .parameter_groups
            .get(&name)
            .ok_or_else(|| parameter_group_not_found(&name))?;
        let source = get(form, "Source");
        // (value, source, data type) by name.
        let mut all: BTreeMap<String, (String, &str, &str)> = BTreeMap::new();
        for (n, v, t) in DEFAULT_PARAMETERS {
            all.insert(n.to_string(), (v.to_string(), "system", t));
        }
        for (n, v) in &g.user {
            let source = if g.builtin { "system" } else { "user" };
            let t = all.get(n).map(|(_, _, t)| *t).unwrap_or("string");
            all.insert(n.clone(), (v.clone(), source, t));
        }
        let wanted = |s: &str| match source {
            None => true,
            Some("user") => s == "user",
            Some(_) => s == "system",
        };
        let (params, next) = page(&all, get(form, "Marker"), max, |(_, s, _)| wanted(s));
        let mut x = Xml::default();
        x.opt("Marker", next.as_deref());
        x.open("Parameters");
        for (name, (value, source, data_type)) in params {
            x.open("Parameter")
                .leaf("ParameterName", name)
                .leaf("ParameterValue", value)
                .leaf("Description", "")
                .leaf("Source", source)
                .leaf("DataType", data_type)
                .leaf("IsModifiable", true)
                .leaf("MinimumEngineVersion", "2.6.13")
                .leaf("ChangeType", "immediate")
                .close("Parameter");
        }
        x.close("Parameters");
        Ok(x.0)
    }

    fn user_parameter_group(&mut self, form: &Form) -> Result<&mut ParameterGroup, Fault> {
        let name = required(form, "CacheParameterGroupName")?.to_ascii_lowercase();
        let g = self
            .parameter_groups
            .get_mut(&name)
            .ok_or_else(|| parameter_group_not_found(&name))?;
        if g.builtin {
            return Err(Fault::bad(
                "InvalidParameterValue",
                format!("Default parameter group {name} cannot be modified."),
            ));
        }
        Ok(g)
    }

    fn modify_cache_parameter_group(&mut self, form: &Form) -> Answer {
        let values = members(form, "ParameterNameValues");
        if values.is_empty() {
            return Err(Fault::bad(
                "MissingParameter",
                "The request must contain the parameter ParameterNameValues",
            ));
        }
        if values.len() > 20 {
            return Err(Fault::bad(
                "InvalidParameterValue",
                "At most 20 parameters can be modified in one request",
            ));
        }
        let g = self.user_parameter_group(form)?;
        for mut v in values {
            let Some(name) = v.remove("ParameterName") else {
                continue;
            };
            g.user
                .insert(name, v.remove("ParameterValue").unwrap_or_default());
        }
        let name = g.name.clone();
        Ok(Xml::default()
            .leaf("CacheParameterGroupName", name)
            .0
            .clone())
    }

    fn reset_cache_parameter_group(&mut self, form: &Form) -> Answer {
        let all = flag(form, "ResetAllParameters").unwrap_or(false);
        let names: Vec<String> = members(form, "ParameterNameValues")
            .into_iter()
            .filter_map(|mut v| v.remove("ParameterName"))
            .collect();
        if !all && names.is_empty() {
            return Err(Fault::bad(
                "InvalidParameterCombination",
                "Either ResetAllParameters or ParameterNameValues must be given",
            ));
        }
        let g = self.user_parameter_group(form)?;
        if all {
            g.user.clear();
        } else {
            for n in names {
                g.user.remove(&n);
            }
        }
        let name = g.name.clone();
        Ok(Xml::default()
            .leaf("CacheParameterGroupName", name)
            .0
            .clone())
    }

    fn delete_cache_parameter_group(&mut self, form: &Form) -> Answer {
        let name = required(form, "CacheParameterGroupName")?.to_ascii_lowercase();
        let g = self
            .parameter_groups
            .get(&name)
            .ok_or_else(|| parameter_group_not_found(&name))?;
        if g.builtin {
            return Err(Fault::bad(
                "InvalidCacheParameterGroupState",
                format!("Default parameter group {name} cannot be deleted."),
            ));
        }
        if self.parameter_group_in_use(&name) {
            return Err(Fault::bad(
                "InvalidCacheParameterGroupState",
                format!("Parameter group {name} is in use by a replication group."),
            ));
        }
        self.parameter_groups.remove(&name);
        Ok(String::new())
    }

    fn parameter_group_in_use(&self, name: &str) -> bool {
        self.groups.values().any(|g| g.parameter_group == name)
    }
}

// ------------------------------------------------------------ EC2 state

struct Subnet {
    id: String,
    vpc: String,
    az: String,
    cidr: String,
}

/// Where an ingress rule lets traffic in from.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Source {
    Cidr(String),
    Group(String),
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Rule {
    protocol: String,
    from: Option<i64>,
    to: Option<i64>,
    source: Source,
}

struct SecurityGroup {
    id: String,
    name: String,
    description: String,
    vpc: String,
    tags: BTreeMap<String, String>,
    rules: BTreeSet<Rule>,
    builtin: bool,
}

/// The most ingress rules a security group holds (AWS's default quota).
const RULES_PER_GROUP: usize = 60;
/// The most tags a resource holds.
const TAGS_PER_RESOURCE: usize = 50;

fn sg_not_found(id: &str) -> Fault {
    Fault::bad(
        "InvalidGroup.NotFound",
        format!("The security group '{id}' does not exist"),
    )
}

/// EC2's `MaxResults`: 5 to 1000.
fn max_results(form: &Form) -> Result<Option<usize>, Fault> {
    match int(form, "MaxResults")? {
        None => Ok(None),
        Some(n) if (5..=1000).contains(&n) => Ok(Some(n as usize)),
        Some(n) => Err(Fault::bad(
            "InvalidParameterValue",
            format!("Value ( {n} ) for parameter maxResults is invalid. Expecting a value between 5 and 1000."),
        )),
    }
}

/// EC2 filters: (name, values).
fn filters(form: &Form) -> Vec<(String, Vec<String>)> {
    members(form, "Filter")
        .into_iter()
        .filter_map(|f| {
            let name = f.get("Name")?.clone();
            Some((name, scalars(&f, "Value")))
        })
        .collect()
}

fn protocol(p: &str) -> String {
    match p.to_ascii_lowercase().as_str() {
        "6" => "tcp".into(),
        "17" => "udp".into(),
        "1" => "icmp".into(),
        "all" | "-1" => "-1".into(),
        other => other.to_string(),
    }
}

fn write_tag_set(x: &mut Xml, tags: &BTreeMap<String, String>) {
    x.open("tagSet");
    for (k, v) in tags {
        x.open("item").leaf("key", k).leaf("value", v).close("item");
    }
    x.close("tagSet");
}

impl World {
    fn sg_arn(&self, id: &str) -> String {
        format!(
            "arn:aws:ec2:{}:{ACCOUNT}:security-group/{id}",
            self.opts.region
        )
    }

    fn add_builtin_network(&mut self) {
        for (i, letter) in ["a", "b", "c"].iter().enumerate() {
            let id = format!("subnet-{letter}");
            self.subnets.insert(
                id.clone(),
                Subnet {
                    id,
                    vpc: VPC.into(),
                    az: format!("{}{letter}", self.opts.region),
                    cidr: format!("10.0.{i}.0/24"),
                },
            );
        }
        self.insert_security_group(SecurityGroup {
            id: "sg-00000000000000000".into(),
            name: "default".into(),
            description: "default VPC security group".into(),
            vpc: VPC.into(),
            tags: BTreeMap::new(),
            rules: BTreeSet::new(),
            builtin: true,
        });
    }

    fn insert_security_group(&mut self, g: SecurityGroup) {
        self.sg_names
            .insert((g.vpc.clone(), g.name.clone()), g.id.clone());
        self.security_groups.insert(g.id.clone(), g);
    }

    fn ec2(&mut self, action: &str, form: &Form, _now: Instant) -> Answer {
        match action {
            "DescribeSubnets" => self.describe_subnets(form),
            "DescribeSecurityGroups" => self.describe_security_groups(form),
            "CreateSecurityGroup" => self.create_security_group(form),
            "AuthorizeSecurityGroupIngress" => self.change_ingress(form, true),
            "RevokeSecurityGroupIngress" => self.change_ingress(form, false),
            "DeleteSecurityGroup" => self.delete_security_group(form),
            "CreateTags" => self.ec2_tags(form, true),
            "DeleteTags" => self.ec2_tags(form, false),
            other => Err(Fault::bad(
                "InvalidAction",
                format!("The action {other} is not valid for this web service."),
            )),
        }
    }

    fn describe_subnets(&mut self, form: &Form) -> Answer {
        let ids = scalars(form, "SubnetId");
        for id in &ids {
            if !self.subnets.contains_key(id) {
                return Err(Fault::bad(
                    "InvalidSubnetID.NotFound",
                    format!("The subnet ID '{id}' does not exist"),
                ));
            }
        }
        let filters = filters(form);
        for (name, _) in &filters {
            if !matches!(
                name.as_str(),
                "vpc-id" | "subnet-id" | "availability-zone" | "cidr-block"
            ) {
                return Err(Fault::bad(
                    "InvalidParameterValue",
                    format!("The filter '{name}' is invalid"),
                ));
            }
        }
        let max = max_results(form)?.unwrap_or(usize::MAX);
        let wanted: BTreeSet<&String> = ids.iter().collect();
        let (subnets, next) = page(&self.subnets, get(form, "NextToken"), max, |s| {
            (wanted.is_empty() || wanted.contains(&s.id))
                && filters.iter().all(|(name, values)| {
                    let have = match name.as_str() {
                        "vpc-id" => &s.vpc,
                        "subnet-id" => &s.id,
                        "availability-zone" => &s.az,
                        _ => &s.cidr,
                    };
                    values.iter().any(|v| v == have)
                })
        });
        let mut x = Xml::default();
        x.open("subnetSet");
        for (_, s) in subnets {
            x.open("item")
                .leaf("subnetId", &s.id)
                .leaf(
                    "subnetArn",
                    format!("arn:aws:ec2:{}:{ACCOUNT}:subnet/{}", self.opts.region, s.id),
                )
                .leaf("state", "available")
                .leaf("ownerId", ACCOUNT)
                .leaf("vpcId", &s.vpc)
                .leaf("cidrBlock", &s.cidr)
                .leaf("availableIpAddressCount", 251)
                .leaf("availabilityZone", &s.az)
                .leaf("defaultForAz", false)
                .leaf("mapPublicIpOnLaunch", false)
                .open("tagSet")
                .close("tagSet")
                .close("item");
        }
        x.close("subnetSet");
        x.opt("nextToken", next.as_deref());
        Ok(x.0)
    }

    fn write_security_group(&self, x: &mut Xml, g: &SecurityGroup) {
        x.open("item")
            .leaf("ownerId", ACCOUNT)
            .leaf("groupId", &g.id)
            .leaf("groupName", &g.name)
            .leaf("groupDescription", &g.description)
            .leaf("vpcId", &g.vpc)
            .leaf("securityGroupArn", self.sg_arn(&g.id));
        x.open("ipPermissions");
        let mut rules = g.rules.iter().peekable();
        while let Some(first) = rules.next() {
            let mut same = vec![first];
            while let Some(next) = rules.peek() {
                if (&next.protocol, next.from, next.to) == (&first.protocol, first.from, first.to) {
                    same.push(next);
                    rules.next();
                } else {
                    break;
                }
            }
            x.open("item")
                .leaf("ipProtocol", &first.protocol)
                .opt("fromPort", first.from)
                .opt("toPort", first.to);
            x.open("groups");
            for r in &same {
                if let Source::Group(id) = &r.source {
                    x.open("item")
                        .leaf("userId", ACCOUNT)
                        .leaf("groupId", id)
                        .close("item");
                }
            }
            x.close("groups").open("ipRanges");
            for r in &same {
                if let Source::Cidr(cidr) = &r.source {
                    x.open("item").leaf("cidrIp", cidr).close("item");
                }
            }
            x.close("ipRanges").close("item");
        }
        x.close("ipPermissions");
        x.open("ipPermissionsEgress")
            .open("item")
            .leaf("ipProtocol", "-1")
            .open("groups")
            .close("groups")
            .open("ipRanges")
            .open("item")
            .leaf("cidrIp", "0.0.0.0/0")
            .close("item")
            .close("ipRanges")
            .close("item")
            .close("ipPermissionsEgress");
        write_tag_set(x, &g.tags);
        x.close("item");
    }

    fn describe_security_groups(&mut self, form: &Form) -> Answer {
        let ids = scalars(form, "GroupId");
        let names = scalars(form, "GroupName");
        let max = max_results(form)?;
        if max.is_some() && (!ids.is_empty() || !names.is_empty()) {
            return Err(Fault::bad(
                "InvalidParameterCombination",
                "The parameter groupIds cannot be used with the parameter maxResults",
            ));
        }
        for id in &ids {
            if !self.security_groups.contains_key(id) {
                return Err(sg_not_found(id));
            }
        }
        for name in &names {
            if !self.security_groups.values().any(|g| &g.name == name) {
                return Err(sg_not_found(name));
            }
        }
        let filters = filters(form);
        for (name, _) in &filters {
            let known = matches!(
                name.as_str(),
                "group-name" | "group-id" | "vpc-id" | "tag-key" | "description" | "owner-id"
            ) || name.starts_with("tag:");
            if !known {
                return Err(Fault::bad(
                    "InvalidParameterValue",
                    format!("The filter '{name}' is invalid"),
                ));
            }
        }
        let keep = |g: &SecurityGroup| {
            (ids.is_empty() || ids.contains(&g.id))
                && (names.is_empty() || names.contains(&g.name))
                && filters.iter().all(|(name, values)| match name.as_str() {
                    "group-name" => values.contains(&g.name),
                    "group-id" => values.contains(&g.id),
                    "vpc-id" => values.contains(&g.vpc),
                    "description" => values.contains(&g.description),
                    "owner-id" => values.iter().any(|v| v == ACCOUNT),
                    "tag-key" => values.iter().any(|k| g.tags.contains_key(k)),
                    tag => {
                        let key = tag.strip_prefix("tag:").unwrap_or(tag);
                        g.tags.get(key).is_some_and(|v| values.contains(v))
                    }
                })
        };
        let (groups, next) = page(
            &self.security_groups,
            get(form, "NextToken"),
            max.unwrap_or(usize::MAX),
            keep,
        );
        let mut x = Xml::default();
        x.open("securityGroupInfo");
        for (_, g) in groups {
            self.write_security_group(&mut x, g);
        }
        x.close("securityGroupInfo");
        x.opt("nextToken", next.as_deref());
        Ok(x.0)
    }

    fn create_security_group(&mut self, form: &Form) -> Answer {
        let name = required(form, "GroupName")?.to_string();
        let description = required(form, "GroupDescription")?.to_string();
        let Some(vpc) = get(form, "VpcId").map(str::to_string) else {
            return Err(Fault::bad(
                "VPCIdNotSpecified",
                "No default VPC for this user. GroupName is only supported for EC2-Classic and default VPC.",
            ));
        };
        if !self.subnets.values().any(|s| s.vpc == vpc) {
            return Err(Fault::bad(
                "InvalidVpcID.NotFound",
                format!("The vpc ID '{vpc}' does not exist"),
            ));
        }
        if name == "default" || name.starts_with("sg-") {
            return Err(Fault::bad(
                "InvalidParameterValue",
                format!("Invalid security group name {name}: reserved"),
            ));
        }
        if self.sg_names.contains_key(&(vpc.clone(), name.clone())) {
            return Err(Fault::bad(
                "InvalidGroup.Duplicate",
                format!("The security group '{name}' already exists for VPC '{vpc}'"),
            ));
        }
        let mut tags = BTreeMap::new();
        for spec in members(form, "TagSpecification") {
            if spec.get("ResourceType").map(String::as_str) != Some("security-group") {
                return Err(Fault::bad(
                    "InvalidParameterValue",
                    "'security-group' is the only resource type a security group is tagged as",
                ));
            }
            tags.extend(tag_list(&spec, "Tag"));
        }
        if tags.len() > TAGS_PER_RESOURCE {
            return Err(Fault::bad(
                "TagLimitExceeded",
                "The maximum number of tags for the resource has been reached.",
            ));
        }
        self.sg_seq += 1;
        let id = format!("sg-{:017x}", 0x0e1a_57ca_c4e0_0000_u64 + self.sg_seq);
        let mut x = Xml::default();
        x.leaf("return", true)
            .leaf("groupId", &id)
            .leaf("securityGroupArn", self.sg_arn(&id));
        write_tag_set(&mut x, &tags);
        self.insert_security_group(SecurityGroup {
            id,
            name,
            description,
            vpc,
            tags,
            rules: BTreeSet::new(),
            builtin: false,
        });
        Ok(x.0)
    }

    /// The rules of an Authorize/Revoke request.
    fn requested_rules(&self, form: &Form) -> Result<Vec<Rule>, Fault> {
        let mut rules = Vec::new();
        let mut perms = members(form, "IpPermissions");
        if let Some(cidr) = get(form, "CidrIp") {
            let mut legacy = Form::new();
            for key in ["IpProtocol", "FromPort", "ToPort"] {
                if let Some(v) = form.get(key) {
                    legacy.insert(key.into(), v.clone());
                }
            }
            legacy.insert("IpRanges.1.CidrIp".into(), cidr.to_string());
            perms.push(legacy);
        }
        for p in perms {
            let proto = protocol(p.get("IpProtocol").map(String::as_str).unwrap_or("-1"));
            let (from, to) = if proto == "-1" {
                (None, None)
            } else {
                (int(&p, "FromPort")?, int(&p, "ToPort")?)
            };
            let mut sources: Vec<Source> = members(&p, "IpRanges")
                .into_iter()
                .filter_map(|mut r| r.remove("CidrIp"))
                .map(Source::Cidr)
                .collect();
            for pair in members(&p, "Groups") {
                let Some(id) = pair.get("GroupId") else {
                    continue;
                };
                if !self.security_groups.contains_key(id) {
                    return Err(sg_not_found(id));
                }
                sources.push(Source::Group(id.clone()));
            }
            if sources.is_empty() {
                return Err(Fault::bad(
                    "InvalidParameterValue",
                    "A rule needs an IP range or a source security group",
                ));
            }
            for source in sources {
                if let Source::Cidr(c) = &source {
                    if !c.contains('/') {
                        return Err(Fault::bad(
                            "InvalidParameterValue",
                            format!("CIDR block {c} is malformed"),
                        ));
                    }
                }
                rules.push(Rule {
                    protocol: proto.clone(),
                    from,
                    to,
                    source,
                });
            }
        }
        if rules.is_empty() {
            return Err(Fault::bad(
                "MissingParameter",
                "The request must contain the parameter ipPermissions",
            ));
        }
        Ok(rules)
    }

    fn change_ingress(&mut self, form: &Form, authorize: bool) -> Answer {
        let id = required(form, "GroupId")?.to_string();
        if !self.security_groups.contains_key(&id) {
            return Err(sg_not_found(&id));
        }
        let rules = self.requested_rules(form)?;
        let g = self
            .security_groups
            .get_mut(&id)
            .ok_or_else(|| sg_not_found(&id))?;
        if authorize {
            if let Some(r) = rules.iter().find(|r| g.rules.contains(r)) {
                let peer = match &r.source {
                    Source::Cidr(c) => c.clone(),
                    Source::Group(s) => s.clone(),
                };
                return Err(Fault::bad(
                    "InvalidPermission.Duplicate",
                    format!(
                        "the specified rule \"peer: {peer}, {}, from port: {}, to port: {}, ALLOW\" already exists",
                        r.protocol.to_ascii_uppercase(),
                        r.from.unwrap_or(-1),
                        r.to.unwrap_or(-1)
                    ),
                ));
            }
            if g.rules.len() + rules.len() > RULES_PER_GROUP {
                return Err(Fault::bad(
                    "RulesPerSecurityGroupLimitExceeded",
                    "The maximum number of rules per security group has been reached.",
                ));
            }
            g.rules.extend(rules);
        } else {
            if rules.iter().any(|r| !g.rules.contains(r)) {
                return Err(Fault::bad(
                    "InvalidPermission.NotFound",
                    "The specified rule does not exist in this security group.",
                ));
            }
            for r in &rules {
                g.rules.remove(r);
            }
        }
        Ok(Xml::default().leaf("return", true).0.clone())
    }

    fn delete_security_group(&mut self, form: &Form) -> Answer {
        let id = match (get(form, "GroupId"), get(form, "GroupName")) {
            (Some(id), _) => id.to_string(),
            (None, Some(name)) => self
                .security_groups
                .values()
                .find(|g| g.name == name)
                .map(|g| g.id.clone())
                .ok_or_else(|| sg_not_found(name))?,
            (None, None) => {
                return Err(Fault::bad(
                    "MissingParameter",
                    "The request must contain the parameter groupId",
                ))
            }
        };
        let g = self
            .security_groups
            .get(&id)
            .ok_or_else(|| sg_not_found(&id))?;
        if g.builtin {
            return Err(Fault::bad(
                "CannotDelete",
                format!(
                    "the specified group: \"{id}\" name: \"default\" cannot be deleted by a user"
                ),
            ));
        }
        let referenced = self.security_group_in_use(&id)
            || self.security_groups.values().any(|o| {
                o.id != id
                    && o.rules
                        .iter()
                        .any(|r| r.source == Source::Group(id.clone()))
            });
        if referenced {
            return Err(Fault::bad(
                "DependencyViolation",
                format!("resource {id} has a dependent object"),
            ));
        }
        if let Some(g) = self.security_groups.remove(&id) {
            self.sg_names.remove(&(g.vpc, g.name));
        }
        Ok(Xml::default()
            .leaf("return", true)
            .leaf("groupId", &id)
            .0
            .clone())
    }

    fn ec2_tags(&mut self, form: &Form, create: bool) -> Answer {
        let ids = scalars(form, "ResourceId");
        if ids.is_empty() {
            return Err(Fault::bad(
                "MissingParameter",
                "The request must contain the parameter resourceIdSet",
            ));
        }
        let tags: Vec<(String, Option<String>)> = members(form, "Tag")
            .into_iter()
            .filter_map(|mut t| Some((t.remove("Key")?, t.remove("Value"))))
            .collect();
        if create && tags.is_empty() {
            return Err(Fault::bad(
                "MissingParameter",
                "The request must contain the parameter tagSet",
            ));
        }
        if tags.iter().any(|(k, _)| k.starts_with("aws:")) {
            return Err(Fault::bad(
                "InvalidParameterValue",
                "Tag keys starting with 'aws:' are reserved for internal use",
            ));
        }
        for id in &ids {
            if !id.starts_with("sg-") {
                return Err(Fault::bad(
                    "InvalidID",
                    format!("The ID '{id}' is not valid"),
                ));
            }
            let g = self
                .security_groups
                .get(id)
                .ok_or_else(|| sg_not_found(id))?;
            if create {
                let added = tags.iter().filter(|(k, _)| !g.tags.contains_key(k)).count();
                if g.tags.len() + added > TAGS_PER_RESOURCE {
                    return Err(Fault::bad(
                        "TagLimitExceeded",
                        "The maximum number of tags for the resource has been reached.",
                    ));
                }
            }
        }
        for id in &ids {
            let Some(g) = self.security_groups.get_mut(id) else {
                continue;
            };
            for (k, v) in &tags {
                if create {
                    g.tags.insert(k.clone(), v.clone().unwrap_or_default());
                } else if v.is_none() || g.tags.get(k) == v.as_ref() {
                    g.tags.remove(k);
                }
            }
        }
        Ok(Xml::default().leaf("return", true).0.clone())
    }

    fn security_group_in_use(&self, id: &str) -> bool {
        self.groups
            .values()
            .any(|g| g.security_groups.iter().any(|s| s == id))
    }
}

// ------------------------------------------------------------ subnet groups

struct SubnetGroup {
    name: String,
    description: String,
    vpc: String,
    subnets: Vec<String>,
    tags: BTreeMap<String, String>,
}

fn subnet_group_not_found(name: &str) -> Fault {
    Fault::bad(
        "CacheSubnetGroupNotFoundFault",
        format!("Cache subnet group {name} not found."),
    )
}

impl World {
    fn write_subnet_group(&self, x: &mut Xml, g: &SubnetGroup) {
        x.open("CacheSubnetGroup")
            .leaf("CacheSubnetGroupName", &g.name)
            .leaf("CacheSubnetGroupDescription", &g.description)
            .leaf("VpcId", &g.vpc)
            .open("Subnets");
        for id in &g.subnets {
            let az = self
                .subnets
                .get(id)
                .map(|s| s.az.as_str())
                .unwrap_or_default();
            x.open("Subnet")
                .leaf("SubnetIdentifier", id)
                .open("SubnetAvailabilityZone")
                .leaf("Name", az)
                .close("SubnetAvailabilityZone")
                .close("Subnet");
        }
        x.close("Subnets")
            .leaf("ARN", self.arn("subnetgroup", &g.name))
            .close("CacheSubnetGroup");
    }

    /// The VPC of `ids`, all of which must exist and share it.
    fn vpc_of(&self, ids: &[String]) -> Result<String, Fault> {
        if ids.is_empty() {
            return Err(Fault::bad(
                "MissingParameter",
                "The request must contain the parameter SubnetIds",
            ));
        }
        let mut vpcs = BTreeSet::new();
        for id in ids {
            let s = self.subnets.get(id).ok_or_else(|| {
                Fault::bad(
                    "InvalidSubnet",
                    format!("The subnet ID {id} does not exist"),
                )
            })?;
            vpcs.insert(s.vpc.clone());
        }
        if vpcs.len() > 1 {
            return Err(Fault::bad(
                "InvalidParameterValue",
                "All subnets of a cache subnet group must be in the same VPC",
            ));
        }
        Ok(vpcs.into_iter().next().unwrap_or_default())
    }

    fn create_cache_subnet_group(&mut self, form: &Form) -> Answer {
        let name = required(form, "CacheSubnetGroupName")?.to_ascii_lowercase();
        let description = required(form, "CacheSubnetGroupDescription")?.to_string();
        let subnets = scalars(form, "SubnetIds");
        if self.subnet_groups.contains_key(&name) {
            return Err(Fault::bad(
                "CacheSubnetGroupAlreadyExists",
                format!("Cache subnet group {name} already exists."),
            ));
        }
        let vpc = self.vpc_of(&subnets)?;
        let group = SubnetGroup {
            name: name.clone(),
            description,
            vpc,
            subnets,
            tags: tag_list(form, "Tags").into_iter().collect(),
        };
        let mut x = Xml::default();
        self.write_subnet_group(&mut x, &group);
        self.subnet_groups.insert(name, group);
        Ok(x.0)
    }

    fn describe_cache_subnet_groups(&mut self, form: &Form) -> Answer {
        self.describe_named(
            form,
            &self.subnet_groups,
            ("CacheSubnetGroupName", "CacheSubnetGroups"),
            subnet_group_not_found,
            Self::write_subnet_group,
        )
    }

    fn modify_cache_subnet_group(&mut self, form: &Form) -> Answer {
        let name = required(form, "CacheSubnetGroupName")?.to_ascii_lowercase();
        let current_vpc = self
            .subnet_groups
            .get(&name)
            .ok_or_else(|| subnet_group_not_found(&name))?
            .vpc
            .clone();
        let subnets = scalars(form, "SubnetIds");
        let vpc = if subnets.is_empty() {
            current_vpc.clone()
        } else {
            self.vpc_of(&subnets)?
        };
        if vpc != current_vpc && self.subnet_group_in_use(&name) {
            return Err(Fault::bad(
                "SubnetInUse",
                format!("Cache subnet group {name} is in use and cannot move to {vpc}"),
            ));
        }
        let g = self
            .subnet_groups
            .get_mut(&name)
            .ok_or_else(|| subnet_group_not_found(&name))?;
        if !subnets.is_empty() {
            g.subnets = subnets;
            g.vpc = vpc;
        }
        if let Some(d) = get(form, "CacheSubnetGroupDescription") {
            g.description = d.to_string();
        }
        let mut x = Xml::default();
        if let Some(g) = self.subnet_groups.get(&name) {
            self.write_subnet_group(&mut x, g);
        }
        Ok(x.0)
    }

    fn delete_cache_subnet_group(&mut self, form: &Form) -> Answer {
        let name = required(form, "CacheSubnetGroupName")?.to_ascii_lowercase();
        if !self.subnet_groups.contains_key(&name) {
            return Err(subnet_group_not_found(&name));
        }
        if self.subnet_group_in_use(&name) {
            return Err(Fault::bad(
                "CacheSubnetGroupInUse",
                format!("Cache subnet group {name} is currently in use by a cache cluster."),
            ));
        }
        self.subnet_groups.remove(&name);
        Ok(String::new())
    }

    fn subnet_group_in_use(&self, name: &str) -> bool {
        self.groups.values().any(|g| g.subnet_group == name)
    }
}

// ------------------------------------------------------- replication groups

/// Node types and their memory in MiB (a subset of AWS's table).
const NODE_TYPES: &[(&str, u32)] = &[
    ("cache.t2.micro", 568),
    ("cache.t2.small", 1587),
    ("cache.t2.medium", 3297),
    ("cache.t3.micro", 512),
    ("cache.t3.small", 1403),
    ("cache.t3.medium", 3164),
    ("cache.t4g.micro", 512),
    ("cache.t4g.small", 1403),
    ("cache.t4g.medium", 3164),
    ("cache.m5.large", 6533),
    ("cache.m5.xlarge", 13240),
    ("cache.m5.2xlarge", 26665),
    ("cache.m5.4xlarge", 53514),
    ("cache.m5.12xlarge", 160891),
    ("cache.m5.24xlarge", 321864),
    ("cache.m6g.large", 6533),
    ("cache.m6g.xlarge", 13240),
    ("cache.m6g.2xlarge", 26665),
    ("cache.m6g.4xlarge", 53514),
    ("cache.m6g.8xlarge", 106168),
    ("cache.m6g.12xlarge", 160891),
    ("cache.m6g.16xlarge", 214579),
    ("cache.m7g.large", 6533),
    ("cache.m7g.xlarge", 13240),
    ("cache.m7g.2xlarge", 26665),
    ("cache.m7g.4xlarge", 53514),
    ("cache.m7g.8xlarge", 106168),
    ("cache.m7g.12xlarge", 160891),
    ("cache.m7g.16xlarge", 214579),
    ("cache.r5.large", 13384),
    ("cache.r5.xlarge", 26952),
    ("cache.r5.2xlarge", 54088),
    ("cache.r5.4xlarge", 108349),
    ("cache.r5.12xlarge", 325396),
    ("cache.r5.24xlarge", 650864),
    ("cache.r6g.large", 13384),
    ("cache.r6g.xlarge", 26952),
    ("cache.r6g.2xlarge", 54088),
    ("cache.r6g.4xlarge", 108349),
    ("cache.r6g.8xlarge", 214579),
    ("cache.r6g.12xlarge", 325396),
    ("cache.r6g.16xlarge", 429148),
    ("cache.r7g.large", 13384),
    ("cache.r7g.xlarge", 26952),
    ("cache.r7g.2xlarge", 54088),
    ("cache.r7g.4xlarge", 108349),
    ("cache.r7g.8xlarge", 214579),
    ("cache.r7g.12xlarge", 325396),
    ("cache.r7g.16xlarge", 429148),
];

const MAX_REPLICAS: usize = 5;
const MAX_SHARDS: usize = 500;
const SLOTS: u32 = 16384;

fn node_memory(node_type: &str) -> Option<u32> {
    NODE_TYPES
        .iter()
        .find(|(n, _)| *n == node_type)
        .map(|(_, m)| *m)
}

/// Effects of the running lifecycle step, applied when it ends.
#[derive(Default)]
struct Done {
    node_type: Option<String>,
    engine: Option<String>,
    engine_version: Option<String>,
    /// (strategy, token).
    auth: Option<(String, String)>,
    resharding: bool,
}

/// Changes waiting for the maintenance window (`ApplyImmediately=false`).
#[derive(Default)]
struct Pending {
    node_type: Option<String>,
    engine: Option<String>,
    engine_version: Option<String>,
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.node_type.is_none() && self.engine.is_none() && self.engine_version.is_none()
    }
}

struct ReplicationGroup {
    id: String,
    description: String,
    engine: String,
    engine_version: String,
    node_type: String,
    cluster_enabled: bool,
    /// Node group ids, `0001`, ….
    shards: Vec<String>,
    replicas: usize,
    multi_az: bool,
    automatic_failover: bool,
    transit: bool,
    at_rest: bool,
    kms_key_id: Option<String>,
    auth_tokens: Vec<String>,
    auth_last_modified: Option<jiff::Timestamp>,
    parameter_group: String,
    subnet_group: String,
    /// The availability zones members are spread over.
    zones: Vec<String>,
    security_groups: Vec<String>,
    snapshot_retention: i64,
    snapshot_window: String,
    maintenance_window: String,
    port: i64,
    tags: BTreeMap<String, String>,
    created: jiff::Timestamp,
    /// The end of `creating`/`modifying`.
    busy: Option<(Instant, &'static str)>,
    /// When `creating` ended.
    available_at: Option<Instant>,
    /// When a deleting group is gone.
    deleting: Option<Instant>,
    done: Done,
    pending: Pending,
}

impl ReplicationGroup {
    fn status(&self) -> &'static str {
        if self.deleting.is_some() {
            "deleting"
        } else if let Some((_, s)) = self.busy {
            s
        } else {
            "available"
        }
    }

    /// Member cache cluster ids, shard by shard.
    fn members(&self) -> Vec<String> {
        let mut out = Vec::new();
        for shard in &self.shards {
            for n in 1..=1 + self.replicas {
                out.push(self.member_id(shard, n));
            }
        }
        out
    }

    fn member_id(&self, shard: &str, n: usize) -> String {
        if self.cluster_enabled {
            format!("{}-{shard}-{n:03}", self.id)
        } else {
            format!("{}-{n:03}", self.id)
        }
    }

    fn zone(&self, index: usize) -> String {
        if self.zones.is_empty() {
            String::new()
        } else {
            self.zones[index % self.zones.len()].clone()
        }
    }
}

/// A wall-clock time for the monotonic instant `at`.
fn wall(at: Instant) -> jiff::Timestamp {
    let now = Instant::now();
    let now_wall = jiff::Timestamp::now();
    if at <= now {
        let ago = jiff::SignedDuration::try_from(now - at).unwrap_or_default();
        now_wall.checked_sub(ago).unwrap_or(now_wall)
    } else {
        let ahead = jiff::SignedDuration::try_from(at - now).unwrap_or_default();
        now_wall.checked_add(ahead).unwrap_or(now_wall)
    }
}

fn group_not_found(id: &str) -> Fault {
    Fault::new(
        404,
        "ReplicationGroupNotFoundFault",
        format!("ReplicationGroup {id} not found."),
    )
}

fn invalid_state(id: &str, status: &str) -> Fault {
    Fault::bad(
        "InvalidReplicationGroupState",
        format!(
            "Replication group {id} has status {status} which is not valid for this operation."
        ),
    )
}

fn combination(message: impl Into<String>) -> Fault {
    Fault::bad("InvalidParameterCombination", message)
}

fn invalid(message: impl Into<String>) -> Fault {
    Fault::bad("InvalidParameterValue", message)
}

fn check_token(token: &str) -> Result<(), Fault> {
    let printable = token
        .chars()
        .all(|c| c.is_ascii_graphic() && !matches!(c, '@' | '"' | '/'));
    if (16..=128).contains(&token.len()) && printable {
        Ok(())
    } else {
        Err(invalid(
            "The AUTH token must be 16 to 128 printable characters other than @, \" and /.",
        ))
    }
}

fn check_id(id: &str) -> Result<(), Fault> {
    let ok = (1..=40).contains(&id.len())
        && id.starts_with(|c: char| c.is_ascii_lowercase())
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !id.ends_with('-')
        && !id.contains("--");
    if ok {
        Ok(())
    } else {
        Err(invalid(format!(
            "Invalid replication group identifier {id}: 1 to 40 letters, digits or hyphens, starting with a letter, without two consecutive hyphens or a trailing one"
        )))
    }
}

/// `hh:mm-hh:mm`.
fn check_snapshot_window(w: &str) -> Result<(), Fault> {
    let hm = |s: &str| s.len() == 5 && s.as_bytes()[2] == b':';
    match w.split_once('-') {
        Some((a, b)) if hm(a) && hm(b) => Ok(()),
        _ => Err(invalid(format!("Invalid snapshot window {w}"))),
    }
}

/// `ddd:hh:mm-ddd:hh:mm`.
fn check_maintenance_window(w: &str) -> Result<(), Fault> {
    const DAYS: &[&str] = &["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
    let part = |s: &str| {
        s.len() == 9
            && DAYS.contains(&&s[..3])
            && s.as_bytes()[3] == b':'
            && s.as_bytes()[6] == b':'
    };
    match w.to_ascii_lowercase().split_once('-') {
        Some((a, b)) if part(a) && part(b) => Ok(()),
        _ => Err(invalid(format!("Invalid maintenance window {w}"))),
    }
}

fn region_code(region: &str) -> String {
    let parts: Vec<&str> = region.split('-').collect();
    let mut code: String = parts
        .iter()
        .take(parts.len().saturating_sub(1))
        .filter_map(|p| p.chars().next())
        .collect();
    code.push_str(parts.last().copied().unwrap_or_default());
    code
}

const ENDPOINT_HASH: &str = "x7kq2p";

impl World {
    fn host(&self, left: &str) -> String {
        format!(
            "{left}.{ENDPOINT_HASH}.{}.cache.amazonaws.com",
            region_code(&self.opts.region)
        )
    }

    fn endpoint_xml(x: &mut Xml, tag: &str, address: &str, port: i64) {
        x.open(tag)
            .leaf("Address", address)
            .leaf("Port", port)
            .close(tag);
    }

    fn write_replication_group(&self, x: &mut Xml, g: &ReplicationGroup) {
        let status = g.status();
        let ready = status != "creating";
        let enabled = |b: bool| if b { "enabled" } else { "disabled" };
        x.open("ReplicationGroup")
            .leaf("ReplicationGroupId", &g.id)
            .leaf("Description", &g.description)
            .leaf("Status", status);
        let auth_status = g
            .done
            .auth
            .as_ref()
            .map(|(strategy, _)| match strategy.as_str() {
                "ROTATE" => "ROTATING",
                _ => "SETTING",
            });
        if auth_status.is_some() || g.done.resharding {
            x.open("PendingModifiedValues");
            if g.done.resharding {
                x.open("Resharding")
                    .open("SlotMigration")
                    .leaf("ProgressPercentage", 50.0)
                    .close("SlotMigration")
                    .close("Resharding");
            }
            x.opt("AuthTokenStatus", auth_status);
            x.close("PendingModifiedValues");
        }
        x.list("MemberClusters", "ClusterId", g.members());
        x.open("NodeGroups");
        let per_shard = SLOTS / g.shards.len().max(1) as u32;
        for (s, shard) in g.shards.iter().enumerate() {
            x.open("NodeGroup")
                .leaf("NodeGroupId", shard)
                .leaf("Status", status);
            if !g.cluster_enabled && ready {
                let (primary, reader) = if g.transit {
                    (format!("master.{}", g.id), format!("replica.{}", g.id))
                } else {
                    (format!("{}.ng.0001", g.id), format!("{}-ro.ng.0001", g.id))
                };
                Self::endpoint_xml(x, "PrimaryEndpoint", &self.host(&primary), g.port);
                Self::endpoint_xml(x, "ReaderEndpoint", &self.host(&reader), g.port);
            }
            if g.cluster_enabled {
                let first = per_shard * s as u32;
                let last = if s + 1 == g.shards.len() {
                    SLOTS - 1
                } else {
                    first + per_shard - 1
                };
                x.leaf("Slots", format!("{first}-{last}"));
            }
            x.open("NodeGroupMembers");
            for n in 1..=1 + g.replicas {
                let member = g.member_id(shard, n);
                x.open("NodeGroupMember")
                    .leaf("CacheClusterId", &member)
                    .leaf("CacheNodeId", "0001");
                if !g.cluster_enabled && ready {
                    Self::endpoint_xml(
                        x,
                        "ReadEndpoint",
                        &self.host(&format!("{member}.{}", g.id)),
                        g.port,
                    );
                }
                x.leaf("PreferredAvailabilityZone", g.zone(s + n - 1));
                if !g.cluster_enabled {
                    x.leaf("CurrentRole", if n == 1 { "primary" } else { "replica" });
                }
                x.close("NodeGroupMember");
            }
            x.close("NodeGroupMembers").close("NodeGroup");
        }
        x.close("NodeGroups");
        if g.snapshot_retention > 0 && !g.cluster_enabled {
            x.leaf(
                "SnapshottingClusterId",
                g.member_id("0001", if g.replicas > 0 { 2 } else { 1 }),
            );
        }
        x.leaf("AutomaticFailover", enabled(g.automatic_failover))
            .leaf("MultiAZ", enabled(g.multi_az));
        if g.cluster_enabled && ready {
            let left = if g.transit {
                format!("clustercfg.{}", g.id)
            } else {
                format!("{}.clustercfg", g.id)
            };
            Self::endpoint_xml(x, "ConfigurationEndpoint", &self.host(&left), g.port);
        }
        x.leaf("SnapshotRetentionLimit", g.snapshot_retention)
            .leaf("SnapshotWindow", &g.snapshot_window)
            .leaf("ClusterEnabled", g.cluster_enabled)
            .leaf("CacheNodeType", &g.node_type)
            .leaf("AuthTokenEnabled", !g.auth_tokens.is_empty())
            .opt(
                "AuthTokenLastModifiedDate",
                g.auth_last_modified.map(timestamp),
            )
            .leaf("TransitEncryptionEnabled", g.transit)
            .leaf("AtRestEncryptionEnabled", g.at_rest)
            .opt("KmsKeyId", g.kms_key_id.as_deref())
            .leaf("ARN", self.arn("replicationgroup", &g.id))
            .leaf("ReplicationGroupCreateTime", timestamp(g.created))
            .leaf("DataTiering", "disabled")
            .leaf("AutoMinorVersionUpgrade", true)
            .leaf("NetworkType", "ipv4")
            .leaf("IpDiscovery", "ipv4");
        if g.transit {
            x.leaf("TransitEncryptionMode", "required");
        }
        x.leaf("ClusterMode", enabled(g.cluster_enabled))
            .leaf("Engine", &g.engine)
            .close("ReplicationGroup");
    }

    fn write_cache_cluster(&self, x: &mut Xml, g: &ReplicationGroup, member: &str, index: usize) {
        x.open("CacheCluster")
            .leaf("CacheClusterId", member)
            .leaf("CacheNodeType", &g.node_type)
            .leaf("Engine", &g.engine)
            .leaf("EngineVersion", &g.engine_version)
            .leaf("CacheClusterStatus", g.status())
            .leaf("NumCacheNodes", 1)
            .leaf("PreferredAvailabilityZone", g.zone(index))
            .leaf("CacheClusterCreateTime", timestamp(g.created))
            .leaf("PreferredMaintenanceWindow", &g.maintenance_window);
        let node_type = g.done.node_type.as_ref().or(g.pending.node_type.as_ref());
        let version = g
            .done
            .engine_version
            .as_ref()
            .or(g.pending.engine_version.as_ref());
        if node_type.is_some() || version.is_some() {
            x.open("PendingModifiedValues")
                .opt("EngineVersion", version)
                .opt("CacheNodeType", node_type)
                .close("PendingModifiedValues");
        }
        x.open("CacheParameterGroup")
            .leaf("CacheParameterGroupName", &g.parameter_group)
            .leaf("ParameterApplyStatus", "in-sync")
            .close("CacheParameterGroup")
            .leaf("CacheSubnetGroupName", &g.subnet_group)
            .leaf("AutoMinorVersionUpgrade", true)
            .open("SecurityGroups");
        for sg in &g.security_groups {
            x.open("member")
                .leaf("SecurityGroupId", sg)
                .leaf("Status", "active")
                .close("member");
        }
        x.close("SecurityGroups")
            .leaf("ReplicationGroupId", &g.id)
            .leaf("SnapshotRetentionLimit", g.snapshot_retention)
            .leaf("SnapshotWindow", &g.snapshot_window)
            .leaf("AuthTokenEnabled", !g.auth_tokens.is_empty())
            .opt(
                "AuthTokenLastModifiedDate",
                g.auth_last_modified.map(timestamp),
            )
            .leaf("TransitEncryptionEnabled", g.transit)
            .leaf("AtRestEncryptionEnabled", g.at_rest)
            .leaf("ARN", self.arn("cluster", member))
            .leaf("ReplicationGroupLogDeliveryEnabled", false)
            .leaf("NetworkType", "ipv4")
            .leaf("IpDiscovery", "ipv4");
        if g.transit {
            x.leaf("TransitEncryptionMode", "required");
        }
        x.close("CacheCluster");
    }

    /// Starts a `creating`/`modifying` step of `for_`.
    fn busy(&mut self, id: &str, status: &'static str, for_: Duration, now: Instant) {
        let until = now + for_;
        if let Some(g) = self.groups.get_mut(id) {
            g.busy = Some((until, status));
            self.deadlines.push(Reverse((until, id.to_string())));
        }
    }

    fn settle(&mut self, id: &str, now: Instant) {
        let Some(g) = self.groups.get_mut(id) else {
            return;
        };
        if let Some(gone) = g.deleting {
            if gone <= now {
                self.groups.remove(id);
            }
            return;
        }
        let Some((until, step)) = g.busy else {
            return;
        };
        if until > now {
            return;
        }
        g.busy = None;
        if step == "creating" {
            g.available_at = Some(until);
        }
        let done = std::mem::take(&mut g.done);
        if let Some(t) = done.node_type {
            g.node_type = t;
        }
        if let Some(e) = done.engine {
            g.engine = e;
        }
        if let Some(v) = done.engine_version {
            g.engine_version = v;
        }
        if let Some((strategy, token)) = done.auth {
            match strategy.as_str() {
                "ROTATE" => {
                    g.auth_tokens.push(token);
                    let extra = g.auth_tokens.len().saturating_sub(2);
                    g.auth_tokens.drain(..extra);
                }
                "DELETE" => g.auth_tokens.clear(),
                _ => g.auth_tokens = vec![token],
            }
            g.auth_last_modified = Some(wall(until));
        }
    }

    fn group(&self, form: &Form) -> Result<&ReplicationGroup, Fault> {
        let id = required(form, "ReplicationGroupId")?.to_ascii_lowercase();
        self.groups.get(&id).ok_or_else(|| group_not_found(&id))
    }

    /// The group of `form`, which must be `available`.
    fn available_group(&mut self, form: &Form) -> Result<&mut ReplicationGroup, Fault> {
        let id = required(form, "ReplicationGroupId")?.to_ascii_lowercase();
        let g = self
            .groups
            .get_mut(&id)
            .ok_or_else(|| group_not_found(&id))?;
        match g.status() {
            "available" => Ok(g),
            other => Err(invalid_state(&id, other)),
        }
    }

    fn group_answer(&self, id: &str) -> Answer {
        let mut x = Xml::default();
        if let Some(g) = self.groups.get(id) {
            self.write_replication_group(&mut x, g);
        }
        Ok(x.0)
    }

    /// Checks security group ids against EC2 and the subnet group's VPC.
    fn check_security_groups(&self, ids: &[String], vpc: &str) -> Result<(), Fault> {
        for id in ids {
            let sg = self.security_groups.get(id).ok_or_else(|| {
                invalid(format!(
                    "Some security group Id not recognized by EC2: {id}"
                ))
            })?;
            if sg.vpc != vpc {
                return Err(Fault::bad(
                    "InvalidVPCNetworkStateFault",
                    format!("Security group {id} is not in the VPC {vpc} of the subnet group"),
                ));
            }
        }
        Ok(())
    }

    fn create_replication_group(&mut self, form: &Form, now: Instant) -> Answer {
        let id = required(form, "ReplicationGroupId")?.to_ascii_lowercase();
        check_id(&id)?;
        let description = required(form, "ReplicationGroupDescription")?.to_string();
        if self.groups.contains_key(&id) {
            return Err(Fault::bad(
                "ReplicationGroupAlreadyExists",
                format!("Replication group {id} already exists."),
            ));
        }
        let engine = get(form, "Engine").unwrap_or("redis").to_ascii_lowercase();
        if engine != "redis" && engine != "valkey" {
            return Err(invalid(format!(
                "Invalid engine {engine} for a replication group"
            )));
        }
        let engine_version = get(form, "EngineVersion")
            .unwrap_or(if engine == "valkey" { "8.0" } else { "7.1" })
            .to_string();
        let node_type = required(form, "CacheNodeType")?.to_string();
        if node_memory(&node_type).is_none() {
            return Err(invalid(format!("Invalid Cache Node Type: {node_type}")));
        }
        let major = engine_version.split('.').next().unwrap_or("7");
        let family = match (engine.as_str(), major) {
            ("valkey", m) => format!("valkey{m}"),
            (_, "6") => "redis6.x".to_string(),
            (_, m) => format!("redis{m}"),
        };
        let parameter_group = get(form, "CacheParameterGroupName")
            .map(str::to_ascii_lowercase)
            .unwrap_or_else(|| format!("default.{family}"));
        let Some(pg) = self.parameter_groups.get(&parameter_group) else {
            return Err(parameter_group_not_found(&parameter_group));
        };
        let pg_cluster = pg.user.get("cluster-enabled").map(String::as_str) == Some("yes");
        let shards = int(form, "NumNodeGroups")?.unwrap_or(1);
        let cluster_enabled = match get(form, "ClusterMode") {
            Some("enabled") => true,
            Some("disabled") => false,
            Some("compatible") => return Err(invalid("ClusterMode compatible is not emulated")),
            Some(other) => return Err(invalid(format!("Invalid ClusterMode {other}"))),
            None => shards > 1 || pg_cluster,
        };
        if !(1..=MAX_SHARDS as i64).contains(&shards) {
            return Err(Fault::bad(
                "NodeGroupsPerReplicationGroupQuotaExceeded",
                format!("A replication group has 1 to {MAX_SHARDS} node groups"),
            ));
        }
        if !cluster_enabled && shards > 1 {
            return Err(combination(
                "Cluster mode disabled replication groups have exactly one node group",
            ));
        }
        let replicas = match (
            int(form, "ReplicasPerNodeGroup")?,
            int(form, "NumCacheClusters")?,
        ) {
            (Some(r), None) => r,
            (None, Some(n)) if !cluster_enabled => n - 1,
            (None, None) => 0,
            _ => {
                return Err(combination(
                    "ReplicasPerNodeGroup and NumCacheClusters cannot be used together",
                ))
            }
        };
        if !(0..=MAX_REPLICAS as i64).contains(&replicas) {
            return Err(invalid(format!(
                "A node group has 0 to {MAX_REPLICAS} replicas, not {replicas}"
            )));
        }
        let automatic_failover = flag(form, "AutomaticFailoverEnabled").unwrap_or(false);
        let multi_az = flag(form, "MultiAZEnabled").unwrap_or(false);
        if automatic_failover && !cluster_enabled && replicas == 0 {
            return Err(combination(
                "Automatic failover needs at least one replica in a cluster mode disabled replication group",
            ));
        }
        if multi_az && !automatic_failover {
            return Err(combination("Multi-AZ needs automatic failover"));
        }
        if cluster_enabled && !automatic_failover {
            return Err(combination(
                "Automatic failover must be enabled for a cluster mode enabled replication group",
            ));
        }
        let transit = flag(form, "TransitEncryptionEnabled").unwrap_or(false);
        let at_rest = flag(form, "AtRestEncryptionEnabled").unwrap_or(false);
        let kms_key_id = get(form, "KmsKeyId").map(str::to_string);
        if kms_key_id.is_some() && !at_rest {
            return Err(combination("KmsKeyId needs AtRestEncryptionEnabled"));
        }
        let mut auth_tokens = Vec::new();
        if let Some(token) = get(form, "AuthToken") {
            if !transit {
                return Err(combination(
                    "AuthToken can only be used with TransitEncryptionEnabled",
                ));
            }
            check_token(token)?;
            auth_tokens.push(token.to_string());
        }
        let (subnet_group, vpc, zones) = match get(form, "CacheSubnetGroupName") {
            Some(name) => {
                let name = name.to_ascii_lowercase();
                let sg = self
                    .subnet_groups
                    .get(&name)
                    .ok_or_else(|| subnet_group_not_found(&name))?;
                let zones: BTreeSet<String> = sg
                    .subnets
                    .iter()
                    .filter_map(|s| self.subnets.get(s))
                    .map(|s| s.az.clone())
                    .collect();
                (name, sg.vpc.clone(), zones)
            }
            None => {
                let zones = self
                    .subnets
                    .values()
                    .filter(|s| s.vpc == VPC)
                    .map(|s| s.az.clone())
                    .collect();
                ("default".to_string(), VPC.to_string(), zones)
            }
        };
        let security_groups = scalars(form, "SecurityGroupIds");
        self.check_security_groups(&security_groups, &vpc)?;
        let snapshot_retention = int(form, "SnapshotRetentionLimit")?.unwrap_or(0);
        if !(0..=35).contains(&snapshot_retention) {
            return Err(invalid("SnapshotRetentionLimit is 0 to 35 days"));
        }
        let snapshot_window = get(form, "SnapshotWindow")
            .unwrap_or("03:00-04:00")
            .to_string();
        check_snapshot_window(&snapshot_window)?;
        let maintenance_window = get(form, "PreferredMaintenanceWindow")
            .unwrap_or("sun:05:00-sun:06:00")
            .to_ascii_lowercase();
        check_maintenance_window(&maintenance_window)?;
        let port = int(form, "Port")?.unwrap_or(6379);
        let tags: BTreeMap<String, String> = tag_list(form, "Tags").into_iter().collect();
        if tags.len() > TAGS_PER_RESOURCE {
            return Err(tag_quota());
        }
        let group = ReplicationGroup {
            id: id.clone(),
            description,
            engine,
            engine_version,
            node_type,
            cluster_enabled,
            shards: (1..=shards).map(|s| format!("{s:04}")).collect(),
            replicas: replicas as usize,
            multi_az,
            automatic_failover,
            transit,
            at_rest,
            kms_key_id,
            auth_tokens,
            auth_last_modified: None,
            parameter_group,
            subnet_group,
            zones: zones.into_iter().collect(),
            security_groups,
            snapshot_retention,
            snapshot_window,
            maintenance_window,
            port,
            tags,
            created: jiff::Timestamp::now(),
            busy: None,
            available_at: None,
            deleting: None,
            done: Done::default(),
            pending: Pending::default(),
        };
        self.groups.insert(id.clone(), group);
        self.busy(&id, "creating", self.opts.create, now);
        self.group_answer(&id)
    }

    fn describe_replication_groups(&mut self, form: &Form) -> Answer {
        let max = max_records(form)?;
        let mut x = Xml::default();
        if get(form, "ReplicationGroupId").is_some() {
            let g = self.group(form)?;
            x.open("ReplicationGroups");
            self.write_replication_group(&mut x, g);
            x.close("ReplicationGroups");
            return Ok(x.0);
        }
        let (groups, next) = page(&self.groups, get(form, "Marker"), max, |_| true);
        x.opt("Marker", next.as_deref());
        x.open("ReplicationGroups");
        for (_, g) in groups {
            self.write_replication_group(&mut x, g);
        }
        x.close("ReplicationGroups");
        Ok(x.0)
    }

    /// The group and index of the member cache cluster `member`.
    fn member(&self, member: &str) -> Option<(&ReplicationGroup, usize)> {
        let (rest, _) = member.rsplit_once('-')?;
        let candidates = [Some(rest), rest.rsplit_once('-').map(|(g, _)| g)];
        for id in candidates.into_iter().flatten() {
            if let Some(g) = self.groups.get(id) {
                if let Some(i) = g.members().iter().position(|m| m == member) {
                    return Some((g, i));
                }
            }
        }
        None
    }

    fn describe_cache_clusters(&mut self, form: &Form) -> Answer {
        let max = max_records(form)?;
        let mut x = Xml::default();
        if let Some(id) = get(form, "CacheClusterId") {
            let id = id.to_ascii_lowercase();
            let (g, i) = self.member(&id).ok_or_else(|| {
                Fault::new(
                    404,
                    "CacheClusterNotFound",
                    format!("CacheCluster {id} not found."),
                )
            })?;
            x.open("CacheClusters");
            self.write_cache_cluster(&mut x, g, &id, i);
            x.close("CacheClusters");
            return Ok(x.0);
        }
        let marker = get(form, "Marker").map(str::to_string);
        let start = marker
            .as_deref()
            .and_then(|m| self.member(m))
            .map(|(g, _)| g.id.clone());
        let lower = match &start {
            Some(id) => Bound::Included(id.clone()),
            None => Bound::Unbounded,
        };
        let mut written = 0;
        let mut last: Option<String> = None;
        let mut more = false;
        x.open("CacheClusters");
        'groups: for (_, g) in self.groups.range((lower, Bound::Unbounded)) {
            let members = g.members();
            let skip = match (&start, &marker) {
                (Some(first), Some(m)) if *first == g.id => {
                    members.iter().position(|x| x == m).map_or(0, |p| p + 1)
                }
                _ => 0,
            };
            for (i, member) in members.iter().enumerate().skip(skip) {
                if written == max {
                    more = true;
                    break 'groups;
                }
                self.write_cache_cluster(&mut x, g, member, i);
                written += 1;
                last = Some(member.clone());
            }
        }
        x.close("CacheClusters");
        x.opt("Marker", if more { last.as_deref() } else { None });
        Ok(x.0)
    }

    fn modify_replication_group(&mut self, form: &Form, now: Instant) -> Answer {
        let id = required(form, "ReplicationGroupId")?.to_ascii_lowercase();
        let immediately = flag(form, "ApplyImmediately").unwrap_or(false);
        let known = [
            "ReplicationGroupDescription",
            "CacheNodeType",
            "Engine",
            "EngineVersion",
            "CacheParameterGroupName",
            "SnapshotRetentionLimit",
            "SnapshotWindow",
            "PreferredMaintenanceWindow",
            "MultiAZEnabled",
            "AutomaticFailoverEnabled",
            "AuthToken",
            "AuthTokenUpdateStrategy",
        ];
        let asked = known.iter().any(|k| form.contains_key(*k))
            || form.keys().any(|k| k.starts_with("SecurityGroupIds."));
        if !asked {
            return Err(combination("No modifications were requested."));
        }
        // Validate everything before touching anything.
        let (vpc, current_failover, cluster_enabled, replicas, transit) = {
            let g = self.groups.get(&id).ok_or_else(|| group_not_found(&id))?;
            if g.status() != "available" {
                return Err(invalid_state(&id, g.status()));
            }
            let vpc = self
                .subnet_groups
                .get(&g.subnet_group)
                .map(|s| s.vpc.clone())
                .unwrap_or_else(|| VPC.to_string());
            (
                vpc,
                g.automatic_failover,
                g.cluster_enabled,
                g.replicas,
                g.transit,
            )
        };
        let node_type = get(form, "CacheNodeType").map(str::to_string);
        if let Some(t) = &node_type {
            if node_memory(t).is_none() {
                return Err(invalid(format!("Invalid Cache Node Type: {t}")));
            }
        }
        let engine = get(form, "Engine").map(str::to_ascii_lowercase);
        if let Some(e) = &engine {
            if e != "redis" && e != "valkey" {
                return Err(invalid(format!("Invalid engine {e}")));
            }
        }
        let parameter_group = get(form, "CacheParameterGroupName").map(str::to_ascii_lowercase);
        if let Some(p) = &parameter_group {
            if !self.parameter_groups.contains_key(p) {
                return Err(parameter_group_not_found(p));
            }
        }
        let security_groups = scalars(form, "SecurityGroupIds");
        self.check_security_groups(&security_groups, &vpc)?;
        let failover = flag(form, "AutomaticFailoverEnabled").unwrap_or(current_failover);
        if failover && !cluster_enabled && replicas == 0 {
            return Err(combination("Automatic failover needs at least one replica"));
        }
        if !failover && cluster_enabled {
            return Err(combination(
                "Automatic failover cannot be disabled for a cluster mode enabled replication group",
            ));
        }
        let multi_az = flag(form, "MultiAZEnabled");
        if multi_az == Some(true) && !failover {
            return Err(combination("Multi-AZ needs automatic failover"));
        }
        let retention = int(form, "SnapshotRetentionLimit")?;
        if let Some(r) = retention {
            if !(0..=35).contains(&r) {
                return Err(invalid("SnapshotRetentionLimit is 0 to 35 days"));
            }
        }
        if let Some(w) = get(form, "SnapshotWindow") {
            check_snapshot_window(w)?;
        }
        if let Some(w) = get(form, "PreferredMaintenanceWindow") {
            check_maintenance_window(w)?;
        }
        let strategy = get(form, "AuthTokenUpdateStrategy").map(str::to_ascii_uppercase);
        let auth = match (get(form, "AuthToken"), strategy.as_deref()) {
            (None, None) => None,
            (Some(_), None) => return Err(combination("AuthToken needs AuthTokenUpdateStrategy")),
            (None, Some("DELETE")) => Some(("DELETE".to_string(), String::new())),
            (None, Some(_)) => return Err(combination("AuthTokenUpdateStrategy needs AuthToken")),
            (Some(_), Some("DELETE")) => {
                return Err(combination(
                    "AuthTokenUpdateStrategy DELETE takes no AuthToken",
                ))
            }
            (Some(token), Some(s @ ("ROTATE" | "SET"))) => {
                check_token(token)?;
                Some((s.to_string(), token.to_string()))
            }
            (Some(_), Some(other)) => {
                return Err(invalid(format!("Invalid AuthTokenUpdateStrategy {other}")))
            }
        };
        if auth.is_some() && !transit {
            return Err(combination(
                "The AUTH token can only be changed with encryption in transit",
            ));
        }
        if auth.is_some() && !immediately {
            return Err(combination("AUTH token changes need ApplyImmediately"));
        }
        let g = self
            .groups
            .get_mut(&id)
            .ok_or_else(|| group_not_found(&id))?;
        let mut changed = false;
        let mut set = |field: &mut String, value: Option<String>| {
            if let Some(v) = value {
                if *field != v {
                    *field = v;
                    changed = true;
                }
            }
        };
        set(
            &mut g.description,
            get(form, "ReplicationGroupDescription").map(str::to_string),
        );
        set(&mut g.parameter_group, parameter_group);
        set(
            &mut g.snapshot_window,
            get(form, "SnapshotWindow").map(str::to_string),
        );
        set(
            &mut g.maintenance_window,
            get(form, "PreferredMaintenanceWindow").map(str::to_ascii_lowercase),
        );
        if let Some(r) = retention {
            changed |= g.snapshot_retention != r;
            g.snapshot_retention = r;
        }
        if !security_groups.is_empty() && g.security_groups != security_groups {
            g.security_groups = security_groups;
            changed = true;
        }
        if failover != g.automatic_failover {
            g.automatic_failover = failover;
            changed = true;
        }
        if let Some(m) = multi_az {
            changed |= g.multi_az != m;
            g.multi_az = m;
        }
        let node_type = node_type.filter(|t| *t != g.node_type);
        let engine = engine.filter(|e| *e != g.engine);
        let version = get(form, "EngineVersion")
            .map(str::to_string)
            .filter(|v| *v != g.engine_version);
        if immediately {
            if node_type.is_some() || engine.is_some() || version.is_some() {
                changed = true;
            }
            g.done.node_type = node_type;
            g.done.engine = engine;
            g.done.engine_version = version;
        } else {
            if node_type.is_some() {
                g.pending.node_type = node_type;
            }
            if engine.is_some() {
                g.pending.engine = engine;
            }
            if version.is_some() {
                g.pending.engine_version = version;
            }
        }
        if auth.is_some() {
            g.done.auth = auth;
            changed = true;
        }
        if changed {
            self.busy(&id, "modifying", self.opts.modify, now);
        }
        self.group_answer(&id)
    }

    fn delete_replication_group(&mut self, form: &Form, now: Instant) -> Answer {
        let id = required(form, "ReplicationGroupId")?.to_ascii_lowercase();
        let snapshot = get(form, "FinalSnapshotIdentifier").map(str::to_string);
        if let Some(s) = &snapshot {
            if self.final_snapshots.iter().any(|(name, _)| name == s) {
                return Err(Fault::bad(
                    "SnapshotAlreadyExistsFault",
                    format!("Snapshot {s} already exists."),
                ));
            }
        }
        let until = now + self.opts.delete;
        self.available_group(form)?.deleting = Some(until);
        self.deadlines.push(Reverse((until, id.clone())));
        if let Some(s) = snapshot {
            self.final_snapshots.push((s, id.clone()));
        }
        self.group_answer(&id)
    }

    fn change_replica_count(&mut self, form: &Form, increase: bool, now: Instant) -> Answer {
        let id = required(form, "ReplicationGroupId")?.to_ascii_lowercase();
        if flag(form, "ApplyImmediately") != Some(true) {
            return Err(invalid("ApplyImmediately must be true"));
        }
        let Some(new) = int(form, "NewReplicaCount")? else {
            return Err(Fault::bad(
                "MissingParameter",
                "The request must contain the parameter NewReplicaCount",
            ));
        };
        let g = self.available_group(form)?;
        let current = g.replicas as i64;
        if increase && !(current + 1..=MAX_REPLICAS as i64).contains(&new) {
            return Err(invalid(format!(
                "NewReplicaCount {new} must be more than {current} and at most {MAX_REPLICAS}"
            )));
        }
        if !increase && !(0..current).contains(&new) {
            return Err(invalid(format!(
                "NewReplicaCount {new} must be less than {current} and at least 0"
            )));
        }
        if new == 0 && g.automatic_failover && !g.cluster_enabled {
            return Err(combination(
                "A replication group with automatic failover keeps at least one replica",
            ));
        }
        g.replicas = new as usize;
        self.busy(&id, "modifying", self.opts.modify, now);
        self.group_answer(&id)
    }

    fn modify_shard_configuration(&mut self, form: &Form, now: Instant) -> Answer {
        let id = required(form, "ReplicationGroupId")?.to_ascii_lowercase();
        if flag(form, "ApplyImmediately") != Some(true) {
            return Err(invalid("ApplyImmediately must be true"));
        }
        let Some(count) = int(form, "NodeGroupCount")? else {
            return Err(Fault::bad(
                "MissingParameter",
                "The request must contain the parameter NodeGroupCount",
            ));
        };
        let remove = scalars(form, "NodeGroupsToRemove");
        let retain = scalars(form, "NodeGroupsToRetain");
        let g = self.available_group(form)?;
        if !g.cluster_enabled {
            return Err(invalid(
                "Shards can only be changed in a cluster mode enabled replication group",
            ));
        }
        if !(1..=MAX_SHARDS as i64).contains(&count) {
            return Err(Fault::bad(
                "NodeGroupsPerReplicationGroupQuotaExceeded",
                format!("A replication group has 1 to {MAX_SHARDS} node groups"),
            ));
        }
        let count = count as usize;
        let current = g.shards.len();
        if count == current {
            return Err(invalid(format!(
                "The replication group already has {count} node groups"
            )));
        }
        if count > current {
            let mut next = g
                .shards
                .iter()
                .filter_map(|s| s.parse::<u32>().ok())
                .max()
                .unwrap_or(0);
            while g.shards.len() < count {
                next += 1;
                g.shards.push(format!("{next:04}"));
            }
        } else {
            let removed: Vec<String> = if !remove.is_empty() {
                remove
            } else if !retain.is_empty() {
                g.shards
                    .iter()
                    .filter(|s| !retain.contains(s))
                    .cloned()
                    .collect()
            } else {
                return Err(invalid(
                    "NodeGroupsToRemove or NodeGroupsToRetain is required to remove node groups",
                ));
            };
            if let Some(unknown) = removed.iter().find(|r| !g.shards.contains(r)) {
                return Err(invalid(format!("Node group {unknown} does not exist")));
            }
            if current - removed.len() != count {
                return Err(combination(format!(
                    "Removing {} node groups from {current} does not leave {count}",
                    removed.len()
                )));
            }
            g.shards.retain(|s| !removed.contains(s));
        }
        g.done.resharding = true;
        self.busy(&id, "modifying", self.opts.modify, now);
        self.group_answer(&id)
    }

    fn allowed_node_type_modifications(&mut self, form: &Form) -> Answer {
        let node_type = if let Some(member) = get(form, "CacheClusterId") {
            let member = member.to_ascii_lowercase();
            self.member(&member)
                .map(|(g, _)| g.node_type.clone())
                .ok_or_else(|| {
                    Fault::new(
                        404,
                        "CacheClusterNotFound",
                        format!("CacheCluster {member} not found."),
                    )
                })?
        } else {
            self.group(form)?.node_type.clone()
        };
        let memory = node_memory(&node_type).unwrap_or(0);
        let mut up = Vec::new();
        let mut down = Vec::new();
        for (name, m) in NODE_TYPES {
            if *m > memory {
                up.push(*name);
            } else if *m < memory {
                down.push(*name);
            }
        }
        let mut x = Xml::default();
        x.list("ScaleUpModifications", "member", up)
            .list("ScaleDownModifications", "member", down);
        Ok(x.0)
    }
}

fn tag_quota() -> Fault {
    Fault::bad(
        "TagQuotaPerResourceExceeded",
        format!("A resource holds at most {TAGS_PER_RESOURCE} tags."),
    )
}

// --------------------------------------------------------------------- tags

/// The ElastiCache resource kinds that carry tags, in ARN order.
const TAGGED_KINDS: &[&str] = &["parametergroup", "replicationgroup", "subnetgroup"];

impl World {
    /// (kind, name) of an ElastiCache ARN of this region and account.
    fn parse_arn<'a>(&self, arn: &'a str) -> Result<(&'a str, &'a str), Fault> {
        let parts: Vec<&str> = arn.splitn(7, ':').collect();
        match parts.as_slice() {
            ["arn", "aws", "elasticache", region, account, kind, name]
                if *region == self.opts.region
                    && *account == ACCOUNT
                    && TAGGED_KINDS.contains(kind)
                    && !name.is_empty() =>
            {
                Ok((kind, name))
            }
            _ => Err(Fault::bad(
                "InvalidARN",
                format!("The ARN {arn} is not valid."),
            )),
        }
    }

    fn tags_of(&mut self, arn: &str) -> Result<&mut BTreeMap<String, String>, Fault> {
        let (kind, name) = self.parse_arn(arn)?;
        let name = name.to_ascii_lowercase();
        match kind {
            "replicationgroup" => self
                .groups
                .get_mut(&name)
                .map(|g| &mut g.tags)
                .ok_or_else(|| group_not_found(&name)),
            "parametergroup" => self
                .parameter_groups
                .get_mut(&name)
                .map(|g| &mut g.tags)
                .ok_or_else(|| parameter_group_not_found(&name)),
            _ => self
                .subnet_groups
                .get_mut(&name)
                .map(|g| &mut g.tags)
                .ok_or_else(|| subnet_group_not_found(&name)),
        }
    }

    fn tag_answer(tags: &BTreeMap<String, String>) -> String {
        let mut x = Xml::default();
        x.open("TagList");
        for (k, v) in tags {
            x.open("Tag").leaf("Key", k).leaf("Value", v).close("Tag");
        }
        x.close("TagList");
        x.0
    }

    fn list_tags_for_resource(&mut self, form: &Form) -> Answer {
        let arn = required(form, "ResourceName")?.to_string();
        Ok(Self::tag_answer(self.tags_of(&arn)?))
    }

    fn add_tags_to_resource(&mut self, form: &Form) -> Answer {
        let arn = required(form, "ResourceName")?.to_string();
        let add = tag_list(form, "Tags");
        if add.is_empty() {
            return Err(Fault::bad(
                "MissingParameter",
                "The request must contain the parameter Tags",
            ));
        }
        if add.iter().any(|(k, _)| k.starts_with("aws:")) {
            return Err(Fault::bad(
                "InvalidTag",
                "Tag keys starting with aws: are reserved",
            ));
        }
        let tags = self.tags_of(&arn)?;
        let new = add.iter().filter(|(k, _)| !tags.contains_key(k)).count();
        if tags.len() + new > TAGS_PER_RESOURCE {
            return Err(tag_quota());
        }
        tags.extend(add);
        Ok(Self::tag_answer(tags))
    }

    fn remove_tags_from_resource(&mut self, form: &Form) -> Answer {
        let arn = required(form, "ResourceName")?.to_string();
        let keys = scalars(form, "TagKeys");
        let tags = self.tags_of(&arn)?;
        if let Some(k) = keys.iter().find(|k| !tags.contains_key(*k)) {
            return Err(Fault::new(
                404,
                "TagNotFound",
                format!("The tag {k} was not found on {arn}"),
            ));
        }
        for k in &keys {
            tags.remove(k);
        }
        Ok(Self::tag_answer(tags))
    }

    /// The Resource Groups Tagging API.
    fn tagging(&mut self, action: &str, json: &serde_json::Value) -> Answer {
        if action != "GetResources" {
            return Err(Fault::bad(
                "InvalidParameterException",
                format!("The action {action} is not emulated"),
            ));
        }
        let bad = |m: &str| Fault::bad("InvalidParameterException", m.to_string());
        let per_page = match json.get("ResourcesPerPage").and_then(|v| v.as_i64()) {
            None => 100,
            Some(n) if (1..=100).contains(&n) => n as usize,
            Some(_) => return Err(bad("ResourcesPerPage must be between 1 and 100")),
        };
        let mut filters: Vec<(String, Vec<String>)> = Vec::new();
        for f in json
            .get("TagFilters")
            .and_then(|v| v.as_array())
            .into_iter()
            .flatten()
        {
            let Some(key) = f.get("Key").and_then(|k| k.as_str()) else {
                return Err(bad("A TagFilter needs a Key"));
            };
            let values = f
                .get("Values")
                .and_then(|v| v.as_array())
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect();
            filters.push((key.to_string(), values));
        }
        let mut kinds: BTreeSet<&str> = BTreeSet::new();
        let types: Vec<&str> = json
            .get("ResourceTypeFilters")
            .and_then(|v| v.as_array())
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str())
            .collect();
        if types.is_empty() {
            kinds.extend(TAGGED_KINDS);
        }
        for t in &types {
            match t.split_once(':') {
                None if *t == "elasticache" => kinds.extend(TAGGED_KINDS),
                None => {}
                Some(("elasticache", kind)) => match TAGGED_KINDS.iter().find(|k| **k == kind) {
                    Some(k) => {
                        kinds.insert(k);
                    }
                    None => {
                        return Err(bad(&format!("Unsupported resource type filter {t}")));
                    }
                },
                Some(_) => {}
            }
        }
        let token = json
            .get("PaginationToken")
            .and_then(|v| v.as_str())
            .filter(|t| !t.is_empty());
        let after = match token {
            Some(t) => {
                let (kind, name) = self
                    .parse_arn(t)
                    .map_err(|_| bad("The PaginationToken is not valid"))?;
                Some((kind.to_string(), name.to_string()))
            }
            None => None,
        };
        let keep = |tags: &BTreeMap<String, String>| {
            !tags.is_empty()
                && filters.iter().all(|(k, values)| match tags.get(k) {
                    Some(v) => values.is_empty() || values.contains(v),
                    None => false,
                })
        };
        let mut out: Vec<(String, &BTreeMap<String, String>)> = Vec::new();
        let mut more = false;
        'kinds: for kind in TAGGED_KINDS {
            if !kinds.contains(kind) {
                continue;
            }
            let lower = match &after {
                Some((k, _)) if k.as_str() > *kind => continue,
                Some((k, name)) if k == kind => Bound::Excluded(name.clone()),
                _ => Bound::Unbounded,
            };
            let range = (lower, Bound::Unbounded);
            let items: Box<dyn Iterator<Item = (&String, &BTreeMap<String, String>)>> = match *kind
            {
                "parametergroup" => Box::new(
                    self.parameter_groups
                        .range::<String, _>(range)
                        .map(|(n, g)| (n, &g.tags)),
                ),
                "replicationgroup" => Box::new(
                    self.groups
                        .range::<String, _>(range)
                        .map(|(n, g)| (n, &g.tags)),
                ),
                _ => Box::new(
                    self.subnet_groups
                        .range::<String, _>(range)
                        .map(|(n, g)| (n, &g.tags)),
                ),
            };
            for (name, tags) in items {
                if !keep(tags) {
                    continue;
                }
                if out.len() == per_page {
                    more = true;
                    break 'kinds;
                }
                out.push((self.arn(kind, name), tags));
            }
        }
        let next = if more {
            out.last().map(|(arn, _)| arn.clone()).unwrap_or_default()
        } else {
            String::new()
        };
        let list: Vec<serde_json::Value> = out
            .iter()
            .map(|(arn, tags)| {
                serde_json::json!({
                    "ResourceARN": arn,
                    "Tags": tags
                        .iter()
                        .map(|(k, v)| serde_json::json!({"Key": k, "Value": v}))
                        .collect::<Vec<_>>(),
                })
            })
            .collect();
        Ok(
            serde_json::json!({"PaginationToken": next, "ResourceTagMappingList": list})
                .to_string(),
        )
    }
}

// ------------------------------------------------- control and inspection

impl ElastiCacheEmulator {
    /// The status of replication group `id`, `None` once it is gone.
    pub fn replication_group_status(&self, id: &str) -> Option<String> {
        self.world().groups.get(id).map(|g| g.status().to_string())
    }

    /// When the group `id` first became available (its create ended).
    pub fn available_at(&self, id: &str) -> Option<Instant> {
        self.world().groups.get(id).and_then(|g| g.available_at)
    }

    /// Every replication group id (deleting ones too).
    pub fn replication_group_ids(&self) -> Vec<String> {
        self.world().groups.keys().cloned().collect()
    }

    /// (replication groups, parameter groups, subnet groups, security
    /// groups), without AWS's own defaults.
    pub fn resource_counts(&self) -> (usize, usize, usize, usize) {
        let w = self.world();
        (
            w.groups.len(),
            w.parameter_groups.values().filter(|g| !g.builtin).count(),
            w.subnet_groups.len(),
            w.security_groups.values().filter(|g| !g.builtin).count(),
        )
    }

    /// Sets a user parameter behind the operator's back, as in the console;
    /// `false` when the group does not exist.
    pub fn set_parameter(&self, group: &str, name: &str, value: &str) -> bool {
        match self.world().parameter_groups.get_mut(group) {
            Some(g) => {
                g.user.insert(name.to_string(), value.to_string());
                true
            }
            None => false,
        }
    }

    /// Sets an ElastiCache tag by ARN; `false` when there is no such resource.
    pub fn set_tag(&self, arn: &str, key: &str, value: &str) -> bool {
        match self.world().tags_of(arn) {
            Ok(tags) => {
                tags.insert(key.to_string(), value.to_string());
                true
            }
            Err(_) => false,
        }
    }

    /// Sets an EC2 tag on a security group; `false` when it does not exist.
    pub fn set_security_group_tag(&self, sg_id: &str, key: &str, value: &str) -> bool {
        match self.world().security_groups.get_mut(sg_id) {
            Some(g) => {
                g.tags.insert(key.to_string(), value.to_string());
                true
            }
            None => false,
        }
    }

    /// Adds a TCP ingress rule from `cidr` to `port`; `false` when the
    /// security group does not exist.
    pub fn add_ingress(&self, sg_id: &str, cidr: &str, port: i32) -> bool {
        match self.world().security_groups.get_mut(sg_id) {
            Some(g) => {
                g.rules.insert(Rule {
                    protocol: "tcp".into(),
                    from: Some(i64::from(port)),
                    to: Some(i64::from(port)),
                    source: Source::Cidr(cidr.to_string()),
                });
                true
            }
            None => false,
        }
    }

    /// Adds a subnet (in a new VPC, if `vpc_id` is new).
    pub fn add_subnet(&self, id: &str, vpc_id: &str, az: &str, cidr: &str) {
        self.world().subnets.insert(
            id.to_string(),
            Subnet {
                id: id.to_string(),
                vpc: vpc_id.to_string(),
                az: az.to_string(),
                cidr: cidr.to_string(),
            },
        );
    }

    /// Runs the maintenance window: every change made with
    /// `ApplyImmediately=false` starts (`modifying`, then applied).
    pub fn run_maintenance(&self) {
        let now = Instant::now();
        let mut w = self.world();
        let due: Vec<String> = w
            .groups
            .values()
            .filter(|g| !g.pending.is_empty() && g.status() == "available")
            .map(|g| g.id.clone())
            .collect();
        let modify = w.opts.modify;
        for id in due {
            if let Some(g) = w.groups.get_mut(&id) {
                let pending = std::mem::take(&mut g.pending);
                g.done.node_type = pending.node_type;
                g.done.engine = pending.engine;
                g.done.engine_version = pending.engine_version;
            }
            w.busy(&id, "modifying", modify, now);
        }
    }

    /// Final snapshots taken by deletions: (snapshot name, replication group).
    pub fn final_snapshots(&self) -> Vec<(String, String)> {
        self.world().final_snapshots.clone()
    }

    /// The AUTH tokens replication group `id` accepts (two while rotating).
    pub fn auth_tokens(&self, id: &str) -> Vec<String> {
        self.world()
            .groups
            .get(id)
            .map(|g| g.auth_tokens.clone())
            .unwrap_or_default()
    }
}
