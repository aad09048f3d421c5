//! A small, stateful, in-process emulator of the Upstash Developer API v2 for
//! integration tests, written from the public docs
//! (https://upstash.com/docs/devops/developer-api; the shapes are listed in
//! `src/client.rs`).
//!
//! It speaks HTTP Basic auth (wrong credentials → 401 with a JSON string
//! body), keeps databases in memory with generated ids, passwords and REST
//! tokens, and serves: create (not idempotent, like the real API), list, get
//! (with `?credentials=hide`), delete, rename, reset-password, enable/disable
//! eviction, update-allowlist, change-plan, update-budget, update-regions and
//! create-backup. Tests can inject failures and throttling and read a request
//! log (method + path, never bodies).
//!
//! Deliberately left out: teams, stats, backups beyond "create", TLS toggles,
//! auto-upgrade, real Redis servers behind the databases, and asynchronous
//! state changes (everything applies at once and `state` is always `active`).
//! Documented answers are `"OK"` for the toggles whatever the current state;
//! the real API's wording for "already enabled" is not public, so the
//! emulator never says it unless a test injects it with
//! [`UpstashEmulator::fail_next_with_body`].
//!
//! Include it from a test file with `#[path = "support/upstash.rs"] mod upstash;`.
#![allow(dead_code)] // each test binary uses a different subset

use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, VecDeque};
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::Response;
use base64::Engine as _;
use serde_json::{json, Value};

/// The account email the emulator accepts.
pub const EMAIL: &str = "ops@example.com";

const MAX_BODY_BYTES: usize = 1 << 20;
const MIB: u64 = 1024 * 1024;
const GIB: u64 = 1024 * MIB;
/// Plan names the API accepts (docs: change_plan `plan_name` enum).
const PLANS: [(&str, u64); 9] = [
    ("free", 256 * MIB),
    ("payg", 100 * GIB),
    ("fixed_250mb", 250 * MIB),
    ("fixed_1gb", GIB),
    ("fixed_5gb", 5 * GIB),
    ("fixed_10gb", 10 * GIB),
    ("fixed_50gb", 50 * GIB),
    ("fixed_100gb", 100 * GIB),
    ("fixed_500gb", 500 * GIB),
];

/// One database as the emulator stores it (for assertions).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmuDatabase {
    /// Generated UUID-shaped id.
    pub id: String,
    /// Current name.
    pub name: String,
    /// Primary region given at creation.
    pub primary_region: String,
    /// Read regions.
    pub read_regions: Vec<String>,
    /// Bare endpoint slug, as newer API answers give it.
    pub endpoint: String,
    /// Redis password.
    pub password: String,
    /// Read-write REST token.
    pub rest_token: String,
    /// Read-only REST token.
    pub read_only_rest_token: String,
    /// Eviction switch.
    pub eviction: bool,
    /// Plan name (`payg`, `fixed_1gb`, …).
    pub plan: String,
    /// Monthly budget.
    pub budget: u64,
    /// IP allowlist.
    pub allowlist: Vec<String>,
    /// Names of backups created.
    pub backups: Vec<String>,
    /// Creation time (Unix seconds, fake but increasing).
    pub creation_time: u64,
}

impl EmuDatabase {
    fn to_json(&self, show_credentials: bool) -> Value {
        let memory = PLANS
            .iter()
            .find(|(p, _)| *p == self.plan)
            .map_or(0, |(_, m)| *m);
        let mut v = json!({
            "database_id": self.id,
            "database_name": self.name,
            // Documented values are "Free", "Pay as You Go", "Enterprise";
            // what fixed plans show is not documented, so the plan name is used.
            "database_type": if self.plan == "payg" { "Pay as You Go".to_string() } else { self.plan.clone() },
            "region": "global",
            "type": if self.plan == "free" { "free" } else { "paid" },
            "port": 6379,
            "creation_time": self.creation_time,
            "budget": self.budget,
            "state": "active",
            "endpoint": self.endpoint,
            "tls": true,
            "eviction": self.eviction,
            "db_eviction": self.eviction,
            "auto_upgrade": false,
            "consistent": false,
            "modifying_state": "",
            "primary_region": self.primary_region,
            "primary_members": [self.primary_region],
            "all_members": std::iter::once(self.primary_region.clone()).chain(self.read_regions.iter().cloned()).collect::<Vec<_>>(),
            "read_regions": self.read_regions,
            "db_memory_threshold": memory,
            "db_max_clients": 10000,
            "db_request_limit": 9223372036854775808u64,
            "securityAddons": {
                "ipWhitelisting": !self.allowlist.is_empty(),
                "vpcPeering": false,
                "privateLink": false,
                "tlsMutualAuth": false,
                "encryptionAtRest": false
            },
        });
        if show_credentials {
            v["password"] = json!(self.password);
            v["rest_token"] = json!(self.rest_token);
            v["read_only_rest_token"] = json!(self.read_only_rest_token);
        }
        v
    }
}

/// An injected answer: `status` with `body`, and `Retry-After` if set.
#[derive(Clone, Debug)]
struct Fault {
    status: u16,
    body: String,
    retry_after: Option<Duration>,
}

#[derive(Default)]
struct Store {
    databases: BTreeMap<String, EmuDatabase>,
    requests: Vec<(String, String)>,
    faults: VecDeque<Fault>,
    clock: u64,
}

struct Shared {
    store: Mutex<Store>,
    api_key: String,
    random: RandomState,
    counter: AtomicU64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn random_hex(&self, len: usize) -> String {
        random_hex(&self.random, &self.counter, len)
    }

    fn new_credentials(&self) -> (String, String, String) {
        // Shapes of the docs' examples: 32 hex password, tokens starting with
        // "AX" (read-write) and "An" (read-only).
        (
            self.random_hex(32),
            format!("AX{}", self.random_hex(62)),
            format!("An{}", self.random_hex(62)),
        )
    }
}

/// `len` hex digits from a per-emulator random hasher (no `rand` needed).
fn random_hex(random: &RandomState, counter: &AtomicU64, len: usize) -> String {
    let mut out = String::with_capacity(len + 16);
    while out.len() < len {
        let mut h = random.build_hasher();
        h.write_u64(counter.fetch_add(1, Ordering::Relaxed));
        out.push_str(&format!("{:016x}", h.finish()));
    }
    out.truncate(len);
    out
}

/// A running emulator. Dropping it stops the server.
pub struct UpstashEmulator {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl UpstashEmulator {
    /// Binds 127.0.0.1:0 and serves in a background tokio task.
    pub async fn start() -> UpstashEmulator {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind emulator to 127.0.0.1:0");
        let addr = listener.local_addr().expect("emulator local address");
        let random = RandomState::new();
        let counter = AtomicU64::new(0);
        // The API key is random per emulator so no test can pass by a constant.
        let api_key = random_hex(&random, &counter, 40);
        let shared = Arc::new(Shared {
            store: Mutex::new(Store {
                clock: 1_752_649_602,
                ..Store::default()
            }),
            api_key,
            random,
            counter,
        });
        let handler_state = shared.clone();
        let app = axum::Router::new().fallback(move |req: Request| {
            let shared = handler_state.clone();
            async move { handle(&shared, req).await }
        });
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
        });
        UpstashEmulator {
            addr,
            shared,
            stop: Some(stop),
        }
    }

    /// `http://127.0.0.1:PORT/v2`, the client's base URL.
    pub fn base_url(&self) -> String {
        format!("http://{}/v2", self.addr)
    }

    /// The account email to authenticate with.
    pub fn email(&self) -> &'static str {
        EMAIL
    }

    /// The API key to authenticate with.
    pub fn api_key(&self) -> String {
        self.shared.api_key.clone()
    }

    /// The next `n` requests fail with `status` and a JSON string body, and
    /// change nothing.
    pub fn fail_next(&self, status: u16, n: usize) {
        let mut store = self.shared.lock();
        for _ in 0..n {
            store.faults.push_back(Fault {
                status,
                body: json!(format!("injected failure {status}")).to_string(),
                retry_after: None,
            });
        }
    }

    /// The next request fails with `status` and exactly `body` (raw, so a test
    /// can send a JSON string, an object or HTML).
    pub fn fail_next_with_body(&self, status: u16, body: &str) {
        self.shared.lock().faults.push_back(Fault {
            status,
            body: body.to_string(),
            retry_after: None,
        });
    }

    /// The next `n` requests get 429, with `Retry-After: <secs>` when given.
    pub fn throttle_next(&self, n: usize, retry_after: Option<Duration>) {
        let mut store = self.shared.lock();
        for _ in 0..n {
            store.faults.push_back(Fault {
                status: 429,
                body: json!("Too many requests").to_string(),
                retry_after,
            });
        }
    }

    /// Injected answers not yet given.
    pub fn pending_faults(&self) -> usize {
        self.shared.lock().faults.len()
    }

    /// Every request so far: (method, path with query). Bodies are never kept.
    pub fn requests(&self) -> Vec<(String, String)> {
        self.shared.lock().requests.clone()
    }

    /// How many `method` requests had a path starting with `path_prefix`
    /// (e.g. `("POST", "/v2/redis/database")`).
    pub fn count(&self, method: &str, path_prefix: &str) -> usize {
        self.shared
            .lock()
            .requests
            .iter()
            .filter(|(m, p)| m == method && p.starts_with(path_prefix))
            .count()
    }

    /// A stored database, or `None` once deleted.
    pub fn database(&self, id: &str) -> Option<EmuDatabase> {
        self.shared.lock().databases.get(id).cloned()
    }

    /// All stored databases.
    pub fn databases(&self) -> Vec<EmuDatabase> {
        self.shared.lock().databases.values().cloned().collect()
    }
}

impl Drop for UpstashEmulator {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A JSON answer; `body` is already serialised.
fn reply(status: u16, body: String, retry_after: Option<Duration>) -> Response {
    let mut builder = Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header(header::CONTENT_TYPE, "application/json");
    if let Some(d) = retry_after {
        builder = builder.header(header::RETRY_AFTER, d.as_secs().to_string());
    }
    builder
        .body(Body::from(body))
        .expect("valid emulator response")
}

fn ok_json(v: Value) -> Response {
    reply(200, v.to_string(), None)
}

/// Error bodies are JSON strings, as on the real API.
fn err(status: u16, message: &str) -> Response {
    reply(status, json!(message).to_string(), None)
}

fn authorized(shared: &Shared, headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let Some(encoded) = value.strip_prefix("Basic ") else {
        return false;
    };
    let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded.trim()) else {
        return false;
    };
    decoded == format!("{EMAIL}:{}", shared.api_key).as_bytes()
}

async fn handle(shared: &Shared, req: Request) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or_default().to_string();
    let path_and_query = req
        .uri()
        .path_and_query()
        .map_or(path.clone(), |p| p.as_str().to_string());
    let headers = req.headers().clone();
    let fault = {
        let mut store = shared.lock();
        store.requests.push((method.to_string(), path_and_query));
        store.faults.pop_front()
    };
    if let Some(f) = fault {
        return reply(f.status, f.body, f.retry_after);
    }
    if !authorized(shared, &headers) {
        return err(401, "Unauthorized");
    }
    let body = match axum::body::to_bytes(req.into_body(), MAX_BODY_BYTES).await {
        Ok(b) => b,
        Err(_) => return err(400, "request body too large"),
    };
    let body: Value = if body.is_empty() {
        Value::Null
    } else {
        match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(_) => return err(400, "invalid JSON body"),
        }
    };
    let Some(rest) = path.strip_prefix("/v2/redis/") else {
        return err(404, "Not Found");
    };
    let parts: Vec<&str> = rest.split('/').collect();
    let hide = query.split('&').any(|kv| kv == "credentials=hide");
    match (method, parts.as_slice()) {
        (Method::POST, ["database"]) => create(shared, &body),
        (Method::GET, ["databases"]) => {
            let store = shared.lock();
            ok_json(Value::Array(
                store.databases.values().map(|d| d.to_json(true)).collect(),
            ))
        }
        (Method::GET, ["database", id]) => with_db(shared, id, |db, _| ok_json(db.to_json(!hide))),
        (Method::DELETE, ["database", id]) => {
            if shared.lock().databases.remove(*id).is_some() {
                ok_json(json!("OK"))
            } else {
                err(404, "database not found")
            }
        }
        (Method::POST, ["rename", id]) => match string_field(&body, "name") {
            Some(name) => with_db(shared, id, |db, _| {
                db.name = name;
                ok_json(db.to_json(true))
            }),
            None => err(400, "name is required"),
        },
        (Method::POST, ["reset-password", id]) => with_db(shared, id, |db, shared| {
            (db.password, db.rest_token, db.read_only_rest_token) = shared.new_credentials();
            ok_json(db.to_json(true))
        }),
        (Method::POST, ["enable-eviction", id]) => with_db(shared, id, |db, _| {
            db.eviction = true;
            ok_json(json!("OK"))
        }),
        (Method::POST, ["disable-eviction", id]) => with_db(shared, id, |db, _| {
            db.eviction = false;
            ok_json(json!("OK"))
        }),
        (Method::POST, ["update-allowlist", id]) => match string_list(&body, "allowlist") {
            Some(list) => with_db(shared, id, |db, _| {
                db.allowlist = list;
                ok_json(json!("OK"))
            }),
            None => err(400, "allowlist must be an array of strings"),
        },
        (Method::POST, ["change-plan", id]) => match string_field(&body, "plan_name") {
            Some(plan) if PLANS.iter().any(|(p, _)| *p == plan) => with_db(shared, id, |db, _| {
                db.plan = plan;
                ok_json(json!("OK"))
            }),
            Some(plan) => err(400, &format!("invalid plan name: {plan}")),
            None => err(400, "plan_name is required"),
        },
        (Method::PATCH, ["update-budget", id]) => {
            match body.get("budget").and_then(Value::as_u64) {
                Some(budget) => with_db(shared, id, |db, _| {
                    db.budget = budget;
                    ok_json(json!("OK"))
                }),
                None => err(400, "budget must be an integer"),
            }
        }
        (Method::POST, ["update-regions", id]) => match string_list(&body, "read_regions") {
            Some(regions) => with_db(shared, id, |db, _| {
                db.read_regions = regions;
                ok_json(db.to_json(true))
            }),
            None => err(400, "read_regions must be an array of strings"),
        },
        (Method::POST, ["create-backup", id]) => match string_field(&body, "name") {
            Some(name) => with_db(shared, id, |db, _| {
                db.backups.push(name);
                ok_json(json!("OK"))
            }),
            None => err(400, "name is required"),
        },
        (_, ["database"] | ["databases"] | [_, _]) => err(405, "Method Not Allowed"),
        _ => err(404, "Not Found"),
    }
}

fn string_field(body: &Value, key: &str) -> Option<String> {
    body.get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

fn string_list(body: &Value, key: &str) -> Option<Vec<String>> {
    body.get(key)?
        .as_array()?
        .iter()
        .map(|v| v.as_str().map(str::to_string))
        .collect()
}

fn with_db(
    shared: &Shared,
    id: &str,
    f: impl FnOnce(&mut EmuDatabase, &Shared) -> Response,
) -> Response {
    let mut store = shared.lock();
    match store.databases.get_mut(id) {
        Some(db) => f(db, shared),
        None => err(404, "database not found"),
    }
}

fn create(shared: &Shared, body: &Value) -> Response {
    let Some(name) = string_field(body, "name") else {
        return err(400, "name is required");
    };
    if body.get("region").and_then(Value::as_str) != Some("global") {
        return err(400, "regional databases are deprecated, use region: global");
    }
    let Some(primary_region) = string_field(body, "primary_region") else {
        return err(400, "primary_region is required");
    };
    let read_regions = match body.get("read_regions") {
        None | Some(Value::Null) => Vec::new(),
        Some(_) => match string_list(body, "read_regions") {
            Some(r) => r,
            None => return err(400, "read_regions must be an array of strings"),
        },
    };
    let plan = match body.get("plan").and_then(Value::as_str) {
        None => "payg".to_string(),
        Some(p) if PLANS.iter().any(|(n, _)| *n == p) => p.to_string(),
        Some(p) => return err(400, &format!("invalid plan name: {p}")),
    };
    let h = shared.random_hex(32);
    let id = format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    );
    let (password, rest_token, read_only_rest_token) = shared.new_credentials();
    let serial = shared.counter.fetch_add(1, Ordering::Relaxed) % 100_000;
    let mut store = shared.lock();
    store.clock += 1;
    let db = EmuDatabase {
        id: id.clone(),
        name,
        primary_region,
        read_regions,
        endpoint: format!("emu-cache-{serial:05}"),
        password,
        rest_token,
        read_only_rest_token,
        eviction: body
            .get("eviction")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        plan,
        budget: body.get("budget").and_then(Value::as_u64).unwrap_or(0),
        allowlist: Vec::new(),
        backups: Vec::new(),
        creation_time: store.clock,
    };
    let answer = db.to_json(true);
    store.databases.insert(id, db);
    ok_json(answer)
}
