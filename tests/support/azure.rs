//! A small, stateful, in-process Azure Resource Manager emulator for
//! integration tests, over HTTPS with a certificate from a CA the emulator
//! makes (azure_identity only talks to an `https` authority host).
//!
//! It serves an Entra token endpoint (`/{tenant}/oauth2/v2.0/token`, grants
//! `client_credentials` with a secret or a federated `client_assertion`),
//! resource groups, `Microsoft.Cache/redis` (Premium) and
//! `Microsoft.Cache/redisEnterprise` (Managed: clusters and databases),
//! long-running operations through `Azure-AsyncOperation` and `Location`
//! monitors that finish after a configurable number of polls, 409 while an
//! operation runs, Premium's 400 for a PATCH changing several field groups,
//! access keys, firewall rules, patch schedules, list by resource group,
//! fault injection (429 with `Retry-After`, 5xx) and a request log (method,
//! path, api-version; never bodies).
//!
//! Deliberately left out: pagination (one page), RBAC, locations/regions
//! validation, most field validation, private endpoints, geo-replication.
//!
//! Operations also advance when the resource they change is read (GET,
//! `listKeys`), as Azure's run on whether or not anyone polls: an operator
//! that only reads `provisioningState` sees them finish.
//!
//! Include it with `#[path = "support/azure.rs"] mod azure;`.
#![allow(dead_code)] // each test binary uses a different subset

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use axum::body::{to_bytes, Body};
use axum::extract::Request;
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::Response;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::{json, Map, Value};

const MAX_BODY_BYTES: usize = 1 << 20;
const LOCATION: &str = "westeurope";

/// Api-versions the emulator accepts, per resource type (the ones the
/// client pins; anything else is `InvalidApiVersionParameter`).
const API_REDIS: &str = "2024-11-01";
const API_REDIS_ENTERPRISE: &str = "2026-08-01";
const API_RESOURCE_GROUPS: &str = "2021-04-01";

/// One logged request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoggedRequest {
    pub method: String,
    pub path: String,
    pub api_version: Option<String>,
}

/// A scripted failure: the next `times` requests whose method matches (if
/// given) and whose lowercased path contains `path_contains` get `status`.
#[derive(Clone, Debug)]
pub struct Fault {
    pub method: Option<Method>,
    pub path_contains: String,
    pub status: u16,
    pub code: String,
    pub retry_after_secs: Option<u64>,
    pub times: u32,
}

impl Fault {
    /// A 429 `TooManyRequests` with `Retry-After`.
    pub fn throttle(path_contains: &str, retry_after_secs: u64) -> Self {
        Self {
            method: None,
            path_contains: path_contains.to_ascii_lowercase(),
            status: 429,
            code: "TooManyRequests".into(),
            retry_after_secs: Some(retry_after_secs),
            times: 1,
        }
    }

    /// A server error with an ARM code.
    pub fn server_error(path_contains: &str, status: u16, code: &str) -> Self {
        Self {
            method: None,
            path_contains: path_contains.to_ascii_lowercase(),
            status,
            code: code.into(),
            retry_after_secs: None,
            times: 1,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Redis,
    Cluster,
    Database,
    FirewallRule,
    PatchSchedule,
}

struct Res {
    kind: Kind,
    body: Value,
    /// The running operation, if any: mutations get 409 meanwhile.
    busy: Option<String>,
    keys: [String; 2],
}

#[derive(Clone, Debug)]
enum Effect {
    Provisioned,
    Deleted,
    RegenerateKey(usize),
}

struct Op {
    resource: String,
    remaining: u32,
    effect: Effect,
    done: bool,
    /// Final body of the `Location` monitor.
    result: Option<Value>,
}

#[derive(Default)]
struct State {
    polls_to_complete: u32,
    clients: HashMap<String, String>,
    federated: HashMap<String, String>,
    tokens: HashSet<String>,
    token_seq: u64,
    token_requests: u32,
    groups: BTreeMap<String, Value>,
    resources: BTreeMap<String, Res>,
    ops: HashMap<String, Op>,
    seq: u64,
    log: Vec<LoggedRequest>,
    faults: Vec<Fault>,
    premium_replaced: u32,
}

struct Shared {
    state: Mutex<State>,
    base: String,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A running emulator. Dropping it stops the server.
pub struct ArmEmulator {
    addr: SocketAddr,
    shared: Arc<Shared>,
    ca_pem: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl ArmEmulator {
    /// Binds 127.0.0.1:0 and serves HTTPS in a background task. Operations
    /// finish on the second poll.
    pub async fn start() -> ArmEmulator {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let (ca, ca_pem) = test_ca();
        let key = KeyPair::generate().expect("server key");
        let params = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .expect("server params");
        let cert = params.signed_by(&key, &ca).expect("server certificate");
        let mut tls = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(
                vec![CertificateDer::from(cert.der().to_vec())],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            )
            .expect("tls config");
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind emulator to 127.0.0.1:0");
        let addr = listener.local_addr().expect("local address");
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                polls_to_complete: 2,
                ..Default::default()
            }),
            base: format!("https://{addr}"),
        });
        let handler_state = shared.clone();
        let app = axum::Router::new().fallback(move |req: Request| {
            let shared = handler_state.clone();
            async move { handle(&shared, req).await }
        });
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    _ = &mut stopped => return,
                    a = listener.accept() => a,
                };
                let Ok((tcp, _)) = accepted else { continue };
                let acceptor = acceptor.clone();
                let app = app.clone();
                tokio::spawn(async move {
                    // A client that refuses our certificate ends here.
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = hyper_util::service::TowerToHyperService::new(app);
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        ArmEmulator {
            addr,
            shared,
            ca_pem,
            stop: Some(stop),
        }
    }

    /// `https://127.0.0.1:PORT` (ARM endpoint and authority host alike).
    pub fn url(&self) -> String {
        self.shared.base.clone()
    }

    /// The test CA's certificate (PEM), to trust.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// Polls before an operation finishes (at least 1).
    pub fn set_polls_to_complete(&self, polls: u32) {
        self.shared.lock().polls_to_complete = polls.max(1);
    }

    /// Accepts `client_credentials` with this id and secret.
    pub fn register_client(&self, client_id: &str, secret: &str) {
        self.shared
            .lock()
            .clients
            .insert(client_id.into(), secret.into());
    }

    /// Accepts a federated `client_assertion` equal to `assertion`.
    pub fn register_federated(&self, client_id: &str, assertion: &str) {
        self.shared
            .lock()
            .federated
            .insert(client_id.into(), assertion.into());
    }

    /// Makes every issued token invalid (ARM then answers 401).
    pub fn revoke_tokens(&self) {
        self.shared.lock().tokens.clear();
    }

    /// How many token requests succeeded or failed so far.
    pub fn token_requests(&self) -> u32 {
        self.shared.lock().token_requests
    }

    /// Creates a resource group directly.
    pub fn create_resource_group(&self, subscription: &str, name: &str) {
        let id = format!("/subscriptions/{subscription}/resourceGroups/{name}");
        let body = json!({
            "id": id, "name": name, "location": LOCATION, "type": "Microsoft.Resources/resourceGroups",
            "properties": {"provisioningState": "Succeeded"}
        });
        self.shared
            .lock()
            .groups
            .insert(id.to_ascii_lowercase(), body);
    }

    /// Scripts a failure.
    pub fn inject(&self, fault: Fault) {
        self.shared.lock().faults.push(fault);
    }

    /// The stored resource (for assertions), by ARM id.
    pub fn resource(&self, id: &str) -> Option<Value> {
        self.shared
            .lock()
            .resources
            .get(&id.to_ascii_lowercase())
            .map(|r| r.body.clone())
    }

    /// The request log.
    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.shared.lock().log.clone()
    }

    /// Requests with this method whose lowercased path ends with `suffix`.
    pub fn count(&self, method: &str, suffix: &str) -> usize {
        let suffix = suffix.to_ascii_lowercase();
        self.shared
            .lock()
            .log
            .iter()
            .filter(|r| r.method == method && r.path.to_ascii_lowercase().ends_with(&suffix))
            .count()
    }

    /// Stores a provisioned Managed cluster with `tags`, as if someone else
    /// (or an earlier process) had created it.
    pub fn insert_cluster(&self, id: &str, tags: Value) {
        let name = id.rsplit('/').next().unwrap_or_default();
        let body = json!({
            "id": id, "name": name, "type": "Microsoft.Cache/redisEnterprise", "kind": "v2",
            "location": LOCATION, "sku": {"name": "Balanced_B1"}, "zones": [], "tags": tags,
            "properties": {"provisioningState": "Succeeded", "resourceState": "Running",
                "hostName": format!("{name}.{LOCATION}.redis.azure.net"), "highAvailability": "Enabled",
                "minimumTlsVersion": "1.2", "publicNetworkAccess": "Disabled"}
        });
        let mut st = self.shared.lock();
        let keys = new_keys(&mut st);
        st.resources.insert(
            id.to_ascii_lowercase(),
            Res {
                kind: Kind::Cluster,
                body,
                busy: None,
                keys,
            },
        );
    }

    /// Changes a stored resource as someone outside the operator would.
    pub fn tamper(&self, id: &str, change: impl FnOnce(&mut Value)) {
        if let Some(r) = self
            .shared
            .lock()
            .resources
            .get_mut(&id.to_ascii_lowercase())
        {
            change(&mut r.body);
        }
    }

    /// The two access keys of a resource (primary, secondary), by ARM id.
    pub fn keys(&self, id: &str) -> Option<[String; 2]> {
        self.shared
            .lock()
            .resources
            .get(&id.to_ascii_lowercase())
            .map(|r| r.keys.clone())
    }

    /// Ids of the stored resources of a kind (`redis`, `cluster`, `database`).
    pub fn ids(&self, kind: &str) -> Vec<String> {
        self.shared
            .lock()
            .resources
            .values()
            .filter(|r| {
                matches!(
                    (kind, r.kind),
                    ("redis", Kind::Redis)
                        | ("cluster", Kind::Cluster)
                        | ("database", Kind::Database)
                )
            })
            .filter_map(|r| r.body["id"].as_str().map(str::to_string))
            .collect()
    }

    /// How often a PUT replaced an existing Premium cache (should stay 0).
    pub fn premium_replacements(&self) -> u32 {
        self.shared.lock().premium_replaced
    }
}

impl Drop for ArmEmulator {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A self-signed test CA.
fn test_ca() -> (CertifiedIssuer<'static, KeyPair>, String) {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "arm-emulator test CA");
    let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().expect("ca key"))
        .expect("ca certificate");
    let pem = issuer.pem();
    (issuer, pem)
}

// ---------------------------------------------------------------------------
// Responses
// ---------------------------------------------------------------------------

fn json_response(status: StatusCode, body: &Value, headers: &[(&str, String)]) -> Response {
    let mut builder = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json");
    for (name, value) in headers {
        builder = builder.header(*name, value.as_str());
    }
    builder
        .body(Body::from(body.to_string()))
        .expect("response")
}

fn empty(status: StatusCode, headers: &[(&str, String)]) -> Response {
    let mut builder = Response::builder().status(status);
    for (name, value) in headers {
        builder = builder.header(*name, value.as_str());
    }
    builder.body(Body::empty()).expect("response")
}

fn arm_error(status: StatusCode, code: &str, message: &str) -> Response {
    json_response(
        status,
        &json!({"error": {"code": code, "message": message}}),
        &[],
    )
}

fn not_found(id: &str) -> Response {
    arm_error(
        StatusCode::NOT_FOUND,
        "ResourceNotFound",
        &format!("The Resource '{id}' was not found."),
    )
}

fn busy(id: &str) -> Response {
    // The Redis RP's wording and code for a resource with a running operation.
    arm_error(
        StatusCode::CONFLICT,
        "Conflict",
        &format!(
            "The resource '{id}' is busy processing a previous update request or is undergoing \
             system maintenance. As such, it is currently unable to accept the update request. \
             Please try again later."
        ),
    )
}

// ---------------------------------------------------------------------------
// Dispatch
// ---------------------------------------------------------------------------

async fn handle(shared: &Shared, req: Request) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query: HashMap<String, String> = req
        .uri()
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
    let headers = req.headers().clone();
    let body = match to_bytes(req.into_body(), MAX_BODY_BYTES).await {
        Ok(b) => b,
        Err(_) => {
            return arm_error(
                StatusCode::BAD_REQUEST,
                "InvalidRequestContent",
                "body too large",
            )
        }
    };
    let api_version = query.get("api-version").cloned();
    let lower = path.to_ascii_lowercase();

    let mut st = shared.lock();
    st.log.push(LoggedRequest {
        method: method.to_string(),
        path: path.clone(),
        api_version: api_version.clone(),
    });

    if method == Method::POST && lower.ends_with("/oauth2/v2.0/token") {
        return token(&mut st, &body);
    }

    if let Some(i) = st.faults.iter().position(|f| {
        f.times > 0
            && f.method.as_ref().is_none_or(|m| *m == method)
            && lower.contains(&f.path_contains)
    }) {
        let fault = st.faults[i].clone();
        st.faults[i].times -= 1;
        let headers: Vec<(&str, String)> = fault
            .retry_after_secs
            .map(|s| ("retry-after", s.to_string()))
            .into_iter()
            .collect();
        return json_response(
            StatusCode::from_u16(fault.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            &json!({"error": {"code": fault.code, "message": "injected fault"}}),
            &headers,
        );
    }

    if !authorized(&st, &headers) {
        return arm_error(
            StatusCode::UNAUTHORIZED,
            "InvalidAuthenticationToken",
            "The access token is invalid.",
        );
    }

    if method == Method::GET {
        let resource = lower.trim_end_matches('/').to_string();
        touch(&mut st, &resource);
    } else if method == Method::POST && lower.ends_with("/listkeys") {
        let resource = lower.trim_end_matches("/listkeys").to_string();
        touch(&mut st, &resource);
    }
    let segs: Vec<&str> = lower.trim_matches('/').split('/').collect();
    let orig: Vec<&str> = path.trim_matches('/').split('/').collect();
    if segs.len() < 2 || segs[0] != "subscriptions" {
        return arm_error(StatusCode::NOT_FOUND, "InvalidResourceType", "unknown path");
    }

    // Operation monitors: /subscriptions/{s}/providers/Microsoft.Cache/locations/{l}/{kind}/{id}
    if segs.len() == 8 && segs[2] == "providers" && segs[4] == "locations" {
        if api_version.is_none() {
            return arm_error(
                StatusCode::BAD_REQUEST,
                "MissingApiVersionParameter",
                "no api-version",
            );
        }
        return monitor(shared, &mut st, segs[6], orig[7]);
    }

    let expected = if lower.contains("/providers/microsoft.cache/redisenterprise") {
        API_REDIS_ENTERPRISE
    } else if lower.contains("/providers/microsoft.cache/redis") {
        API_REDIS
    } else {
        API_RESOURCE_GROUPS
    };
    if api_version.as_deref() != Some(expected) {
        return arm_error(
            StatusCode::BAD_REQUEST,
            "InvalidApiVersionParameter",
            &format!(
                "The api-version '{}' is invalid here; use '{expected}'.",
                api_version.unwrap_or_default()
            ),
        );
    }
    if segs.len() < 4 || segs[2] != "resourcegroups" {
        return arm_error(StatusCode::NOT_FOUND, "InvalidResourceType", "unknown path");
    }
    let rg_id = format!("/subscriptions/{}/resourceGroups/{}", orig[1], orig[3]);
    if segs.len() == 4 {
        return match method {
            Method::GET => match st.groups.get(&rg_id.to_ascii_lowercase()) {
                Some(v) => json_response(StatusCode::OK, v, &[]),
                None => arm_error(
                    StatusCode::NOT_FOUND,
                    "ResourceGroupNotFound",
                    &format!("Resource group '{}' could not be found.", orig[3]),
                ),
            },
            _ => arm_error(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                "not emulated",
            ),
        };
    }
    if !st.groups.contains_key(&rg_id.to_ascii_lowercase()) {
        return arm_error(
            StatusCode::NOT_FOUND,
            "ResourceGroupNotFound",
            &format!("Resource group '{}' could not be found.", orig[3]),
        );
    }
    if segs.len() < 7 || segs[4] != "providers" || segs[5] != "microsoft.cache" {
        return arm_error(StatusCode::NOT_FOUND, "InvalidResourceType", "unknown path");
    }
    let body: Option<Value> = if body.is_empty() {
        None
    } else {
        match serde_json::from_slice(&body) {
            Ok(v) => Some(v),
            Err(_) => {
                return arm_error(
                    StatusCode::BAD_REQUEST,
                    "InvalidRequestContent",
                    "body is not JSON",
                )
            }
        }
    };
    let ctx = Ctx {
        shared,
        method,
        headers,
        body,
        api_version: expected,
    };
    match segs[6] {
        "redis" => redis(&ctx, &mut st, &segs, &orig),
        "redisenterprise" => enterprise(&ctx, &mut st, &segs, &orig),
        _ => arm_error(StatusCode::NOT_FOUND, "InvalidResourceType", "unknown type"),
    }
}

struct Ctx<'a> {
    shared: &'a Shared,
    method: Method,
    headers: HeaderMap,
    body: Option<Value>,
    api_version: &'static str,
}

fn authorized(st: &State, headers: &HeaderMap) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| st.tokens.contains(t))
}

fn token(st: &mut State, body: &[u8]) -> Response {
    st.token_requests += 1;
    let form: HashMap<String, String> = url::form_urlencoded::parse(body).into_owned().collect();
    let client = form.get("client_id").cloned().unwrap_or_default();
    let ok = match form.get("grant_type").map(String::as_str) {
        Some("client_credentials") => {
            if let Some(secret) = form.get("client_secret") {
                st.clients.get(&client) == Some(secret)
            } else if form.get("client_assertion_type").map(String::as_str)
                == Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
            {
                form.get("client_assertion")
                    .is_some_and(|a| st.federated.get(&client) == Some(a))
            } else {
                false
            }
        }
        _ => false,
    };
    if !ok {
        return json_response(
            StatusCode::UNAUTHORIZED,
            &json!({
                "error": "invalid_client",
                "error_description": "AADSTS7000215: Invalid client secret provided.",
                "error_codes": [7000215]
            }),
            &[],
        );
    }
    st.token_seq += 1;
    let token = format!("emu-token-{}-{}", st.token_seq, client);
    st.tokens.insert(token.clone());
    json_response(
        StatusCode::OK,
        &json!({"token_type": "Bearer", "expires_in": 3600, "ext_expires_in": 3600, "access_token": token}),
        &[],
    )
}

/// Starts an operation on `resource`; returns its monitor headers.
fn start_op(
    shared: &Shared,
    st: &mut State,
    resource: &str,
    effect: Effect,
    api_version: &str,
    subscription: &str,
) -> (String, String) {
    st.seq += 1;
    let id = format!("op-{}", st.seq);
    let remaining = st.polls_to_complete;
    st.ops.insert(
        id.clone(),
        Op {
            resource: resource.to_ascii_lowercase(),
            remaining,
            effect,
            done: false,
            result: None,
        },
    );
    if let Some(r) = st.resources.get_mut(&resource.to_ascii_lowercase()) {
        r.busy = Some(id.clone());
    }
    let base = format!(
        "{}/subscriptions/{subscription}/providers/Microsoft.Cache/locations/{LOCATION}",
        shared.base
    );
    (
        format!("{base}/operationsStatus/{id}?api-version={api_version}"),
        format!("{base}/operationResults/{id}?api-version={api_version}"),
    )
}

/// One step of operation `id`: it finishes when no step remains.
fn step_op(st: &mut State, id: &str) {
    let Some(op) = st.ops.get_mut(id) else {
        return;
    };
    if !op.done {
        op.remaining = op.remaining.saturating_sub(1);
        if op.remaining == 0 {
            op.done = true;
            let resource = op.resource.clone();
            let effect = op.effect.clone();
            let result = apply(st, &resource, &effect);
            if let Some(op) = st.ops.get_mut(id) {
                op.result = result;
            }
        }
    }
}

/// A read of `resource` (lowercased id): its running operations advance.
fn touch(st: &mut State, resource: &str) {
    let running: Vec<String> = st
        .ops
        .iter()
        .filter(|(_, op)| !op.done && op.resource == resource)
        .map(|(id, _)| id.clone())
        .collect();
    for id in running {
        step_op(st, &id);
    }
}

fn monitor(shared: &Shared, st: &mut State, kind: &str, id: &str) -> Response {
    if !st.ops.contains_key(id) {
        return arm_error(
            StatusCode::NOT_FOUND,
            "OperationNotFound",
            "no such operation",
        );
    }
    step_op(st, id);
    let Some(op) = st.ops.get(id) else {
        return arm_error(
            StatusCode::NOT_FOUND,
            "OperationNotFound",
            "no such operation",
        );
    };
    let retry = [("retry-after", "1".to_string())];
    match kind {
        "operationsstatus" => json_response(
            StatusCode::OK,
            &json!({
                "id": format!("{}/{id}", shared.base),
                "name": id,
                "status": if op.done { "Succeeded" } else { "InProgress" },
                "startTime": "2026-01-01T00:00:00Z"
            }),
            if op.done { &[] } else { &retry },
        ),
        "operationresults" if op.done => match &op.result {
            Some(v) => json_response(StatusCode::OK, v, &[]),
            None => empty(StatusCode::NO_CONTENT, &[]),
        },
        "operationresults" => empty(StatusCode::ACCEPTED, &retry),
        _ => arm_error(
            StatusCode::NOT_FOUND,
            "InvalidResourceType",
            "unknown monitor",
        ),
    }
}

/// Applies a finished operation; returns the `Location` monitor's final body.
fn apply(st: &mut State, resource: &str, effect: &Effect) -> Option<Value> {
    match effect {
        Effect::Deleted => {
            let prefix = format!("{resource}/");
            st.resources
                .retain(|k, _| k != resource && !k.starts_with(&prefix));
            None
        }
        Effect::Provisioned => {
            let r = st.resources.get_mut(resource)?;
            r.busy = None;
            r.body["properties"]["provisioningState"] = json!("Succeeded");
            if r.kind == Kind::Cluster || r.kind == Kind::Database {
                r.body["properties"]["resourceState"] = json!("Running");
            }
            Some(public_body(r))
        }
        Effect::RegenerateKey(i) => {
            st.seq += 1;
            let fresh = format!("key-{}-{}", st.seq, i);
            let r = st.resources.get_mut(resource)?;
            r.busy = None;
            r.keys[*i] = fresh;
            Some(keys_json(r))
        }
    }
}

fn keys_json(r: &Res) -> Value {
    json!({"primaryKey": r.keys[0], "secondaryKey": r.keys[1]})
}

/// The body a GET shows (Premium never shows keys on GET).
fn public_body(r: &Res) -> Value {
    r.body.clone()
}

fn new_keys(st: &mut State) -> [String; 2] {
    st.seq += 1;
    [
        format!("primary-{}", st.seq),
        format!("secondary-{}", st.seq),
    ]
}

fn list_of(st: &State, prefix: &str, kind: Kind) -> Response {
    let prefix = format!("{}/", prefix.to_ascii_lowercase());
    let value: Vec<Value> = st
        .resources
        .iter()
        .filter(|(k, r)| {
            r.kind == kind && k.starts_with(&prefix) && !k[prefix.len()..].contains('/')
        })
        .map(|(_, r)| public_body(r))
        .collect();
    json_response(StatusCode::OK, &json!({ "value": value }), &[])
}

fn props(v: &Value) -> Option<&Map<String, Value>> {
    v.get("properties").and_then(Value::as_object)
}

// ---------------------------------------------------------------------------
// Microsoft.Cache/redis (Premium)
// ---------------------------------------------------------------------------

fn redis(ctx: &Ctx<'_>, st: &mut State, segs: &[&str], orig: &[&str]) -> Response {
    let rg_prefix = orig[..4].join("/");
    let list_id = format!("/{rg_prefix}/providers/Microsoft.Cache/redis");
    if segs.len() == 7 {
        return match ctx.method {
            Method::GET => list_of(st, &list_id, Kind::Redis),
            _ => arm_error(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                "not emulated",
            ),
        };
    }
    let id = format!("{list_id}/{}", orig[7]);
    let key = id.to_ascii_lowercase();
    let sub = orig[1];
    match (segs.len(), &ctx.method) {
        (8, &Method::GET) => match st.resources.get(&key) {
            Some(r) => json_response(StatusCode::OK, &public_body(r), &[]),
            None => not_found(&id),
        },
        (8, &Method::PUT) => redis_put(ctx, st, &id, orig[7], sub),
        (8, &Method::PATCH) => redis_patch(ctx, st, &id, sub),
        (8, &Method::DELETE) => delete(ctx, st, &id, sub),
        (9, &Method::POST) if segs[8] == "listkeys" => match st.resources.get(&key) {
            Some(r) => json_response(StatusCode::OK, &keys_json(r), &[]),
            None => not_found(&id),
        },
        (9, &Method::POST) if segs[8] == "regeneratekey" => {
            let Some(index) = key_index(ctx.body.as_ref()) else {
                return arm_error(
                    StatusCode::BAD_REQUEST,
                    "InvalidRequestBody",
                    "keyType must be Primary or Secondary",
                );
            };
            st.seq += 1;
            let fresh = format!("key-{}-{index}", st.seq);
            match st.resources.get_mut(&key) {
                None => not_found(&id),
                Some(r) if r.busy.is_some() => busy(&id),
                Some(r) => {
                    // Synchronous on Premium.
                    r.keys[index] = fresh;
                    json_response(StatusCode::OK, &keys_json(r), &[])
                }
            }
        }
        (9, &Method::GET) if segs[8] == "firewallrules" => {
            if !st.resources.contains_key(&key) {
                return not_found(&id);
            }
            list_of(st, &format!("{id}/firewallRules"), Kind::FirewallRule)
        }
        (10, _) if segs[8] == "firewallrules" => {
            if !st.resources.contains_key(&key) {
                return not_found(&id);
            }
            let rule_id = format!("{id}/firewallRules/{}", orig[9]);
            child(
                ctx,
                st,
                &rule_id,
                &format!("{}/{}", orig[7], orig[9]),
                Kind::FirewallRule,
                |p| {
                    p.get("startIP").and_then(Value::as_str).is_some()
                        && p.get("endIP").and_then(Value::as_str).is_some()
                },
                "Microsoft.Cache/Redis/firewallRules",
            )
        }
        (10, _) if segs[8] == "patchschedules" => {
            if !st.resources.contains_key(&key) {
                return not_found(&id);
            }
            if segs[9] != "default" {
                return arm_error(
                    StatusCode::BAD_REQUEST,
                    "InvalidParameter",
                    "The patch schedule name must be 'default'.",
                );
            }
            let schedule_id = format!("{id}/patchSchedules/default");
            child(
                ctx,
                st,
                &schedule_id,
                &format!("{}/default", orig[7]),
                Kind::PatchSchedule,
                |p| {
                    p.get("scheduleEntries")
                        .and_then(Value::as_array)
                        .is_some_and(|e| {
                            e.iter().all(|x| {
                                x.get("dayOfWeek").is_some() && x.get("startHourUtc").is_some()
                            })
                        })
                },
                "Microsoft.Cache/Redis/patchSchedules",
            )
        }
        _ => arm_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "not emulated",
        ),
    }
}

fn key_index(body: Option<&Value>) -> Option<usize> {
    match body?.get("keyType")?.as_str()? {
        "Primary" => Some(0),
        "Secondary" => Some(1),
        _ => None,
    }
}

/// Synchronous child resources (firewall rules, patch schedules).
fn child(
    ctx: &Ctx<'_>,
    st: &mut State,
    id: &str,
    name: &str,
    kind: Kind,
    valid: impl Fn(&Map<String, Value>) -> bool,
    type_name: &str,
) -> Response {
    let key = id.to_ascii_lowercase();
    match ctx.method {
        Method::GET => match st.resources.get(&key) {
            Some(r) => json_response(StatusCode::OK, &r.body, &[]),
            None => not_found(id),
        },
        Method::PUT => {
            let Some(p) = ctx.body.as_ref().and_then(props).filter(|p| valid(p)) else {
                return arm_error(
                    StatusCode::BAD_REQUEST,
                    "InvalidRequestBody",
                    "required properties are missing",
                );
            };
            let body = json!({"id": id, "name": name, "type": type_name, "properties": p});
            let existed = st.resources.contains_key(&key);
            st.resources.insert(
                key,
                Res {
                    kind,
                    body: body.clone(),
                    busy: None,
                    keys: [String::new(), String::new()],
                },
            );
            json_response(
                if existed {
                    StatusCode::OK
                } else {
                    StatusCode::CREATED
                },
                &body,
                &[],
            )
        }
        Method::DELETE => match st.resources.remove(&key) {
            Some(_) => empty(StatusCode::OK, &[]),
            None => empty(StatusCode::NO_CONTENT, &[]),
        },
        _ => arm_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "not emulated",
        ),
    }
}

fn redis_put(ctx: &Ctx<'_>, st: &mut State, id: &str, name: &str, sub: &str) -> Response {
    let key = id.to_ascii_lowercase();
    if let Some(r) = st.resources.get(&key) {
        let if_none_match = ctx
            .headers
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok());
        if if_none_match == Some("*") {
            return arm_error(
                StatusCode::PRECONDITION_FAILED,
                "PreconditionFailed",
                &format!("The resource '{id}' already exists."),
            );
        }
        if r.busy.is_some() {
            return busy(id);
        }
        st.premium_replaced += 1;
    }
    let Some(body) = ctx.body.as_ref() else {
        return arm_error(StatusCode::BAD_REQUEST, "InvalidRequestContent", "no body");
    };
    let Some(p) = props(body).filter(|p| p.get("sku").is_some_and(Value::is_object)) else {
        return arm_error(
            StatusCode::BAD_REQUEST,
            "InvalidRequestBody",
            "properties.sku is required",
        );
    };
    if let Some(config) = p.get("redisConfiguration") {
        if !config
            .as_object()
            .is_some_and(|m| m.values().all(Value::is_string))
        {
            return arm_error(
                StatusCode::BAD_REQUEST,
                "InvalidRequestBody",
                "redisConfiguration values must be strings",
            );
        }
    }
    let mut p = p.clone();
    p.insert("provisioningState".into(), json!("Creating"));
    p.insert(
        "hostName".into(),
        json!(format!("{name}.redis.cache.windows.net")),
    );
    p.insert("port".into(), json!(6379));
    p.insert("sslPort".into(), json!(6380));
    p.insert("redisVersion".into(), json!("6.0"));
    let stored = json!({
        "id": id, "name": name, "type": "Microsoft.Cache/Redis",
        "location": body.get("location").cloned().unwrap_or(json!(LOCATION)),
        "zones": body.get("zones").cloned().unwrap_or(json!([])),
        "tags": body.get("tags").cloned().unwrap_or(json!({})),
        "properties": p,
    });
    let keys = new_keys(st);
    let res = Res {
        kind: Kind::Redis,
        body: stored,
        busy: None,
        keys,
    };
    let mut answer = res.body.clone();
    answer["properties"]["accessKeys"] = keys_json(&res);
    st.resources.insert(key, res);
    let (status_url, result_url) = start_op(
        ctx.shared,
        st,
        id,
        Effect::Provisioned,
        ctx.api_version,
        sub,
    );
    json_response(
        StatusCode::CREATED,
        &answer,
        &[
            ("azure-asyncoperation", status_url),
            ("location", result_url),
            ("retry-after", "1".into()),
        ],
    )
}

fn redis_patch(ctx: &Ctx<'_>, st: &mut State, id: &str, sub: &str) -> Response {
    let key = id.to_ascii_lowercase();
    let Some(r) = st.resources.get(&key) else {
        return not_found(id);
    };
    if r.busy.is_some() {
        return busy(id);
    }
    let Some(body) = ctx.body.as_ref() else {
        return arm_error(StatusCode::BAD_REQUEST, "InvalidRequestContent", "no body");
    };
    let current = props(&r.body).cloned().unwrap_or_default();
    let patch = props(body).cloned().unwrap_or_default();
    // Azure scales one dimension per operation.
    let groups = ["sku", "shardCount", "replicasPerPrimary"];
    let changed: Vec<&str> = groups
        .iter()
        .copied()
        .filter(|g| patch.get(*g).is_some_and(|v| current.get(*g) != Some(v)))
        .collect();
    if changed.len() > 1 {
        return arm_error(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            &format!(
                "Only one of sku, shardCount and replicasPerPrimary can be changed in one update; this request changes {}.",
                changed.join(" and ")
            ),
        );
    }
    let mut merged = current.clone();
    for (k, v) in &patch {
        if k == "redisConfiguration" {
            let mut config = merged
                .get(k)
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            for (ck, cv) in v.as_object().cloned().unwrap_or_default() {
                config.insert(ck, cv);
            }
            merged.insert(k.clone(), Value::Object(config));
        } else {
            merged.insert(k.clone(), v.clone());
        }
    }
    let long_running = merged != current;
    let Some(r) = st.resources.get_mut(&key) else {
        return not_found(id);
    };
    if let Some(tags) = body.get("tags") {
        r.body["tags"] = tags.clone();
    }
    if !long_running {
        return json_response(StatusCode::OK, &r.body, &[]);
    }
    merged.insert(
        "provisioningState".into(),
        json!(if changed.is_empty() {
            "Updating"
        } else {
            "Scaling"
        }),
    );
    r.body["properties"] = Value::Object(merged);
    let answer = r.body.clone();
    let (_, result_url) = start_op(
        ctx.shared,
        st,
        id,
        Effect::Provisioned,
        ctx.api_version,
        sub,
    );
    json_response(
        StatusCode::ACCEPTED,
        &answer,
        &[("location", result_url), ("retry-after", "1".into())],
    )
}

/// DELETE of a long-running resource: 202 + `Location`, gone when it ends.
fn delete(ctx: &Ctx<'_>, st: &mut State, id: &str, sub: &str) -> Response {
    let key = id.to_ascii_lowercase();
    let Some(r) = st.resources.get_mut(&key) else {
        return empty(StatusCode::NO_CONTENT, &[]);
    };
    if r.busy.is_some() {
        return busy(id);
    }
    r.body["properties"]["provisioningState"] = json!("Deleting");
    let (_, result_url) = start_op(ctx.shared, st, id, Effect::Deleted, ctx.api_version, sub);
    empty(
        StatusCode::ACCEPTED,
        &[("location", result_url), ("retry-after", "1".into())],
    )
}

// ---------------------------------------------------------------------------
// Microsoft.Cache/redisEnterprise (Managed)
// ---------------------------------------------------------------------------

fn enterprise(ctx: &Ctx<'_>, st: &mut State, segs: &[&str], orig: &[&str]) -> Response {
    let rg_prefix = orig[..4].join("/");
    let list_id = format!("/{rg_prefix}/providers/Microsoft.Cache/redisEnterprise");
    let sub = orig[1];
    if segs.len() == 7 {
        return match ctx.method {
            Method::GET => list_of(st, &list_id, Kind::Cluster),
            _ => arm_error(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                "not emulated",
            ),
        };
    }
    let cluster_id = format!("{list_id}/{}", orig[7]);
    let cluster_key = cluster_id.to_ascii_lowercase();
    if segs.len() == 8 {
        return match ctx.method {
            Method::GET => match st.resources.get(&cluster_key) {
                Some(r) => json_response(StatusCode::OK, &r.body, &[]),
                None => not_found(&cluster_id),
            },
            Method::PUT => enterprise_put(ctx, st, &cluster_id, orig[7], Kind::Cluster, sub),
            Method::PATCH => enterprise_patch(ctx, st, &cluster_id, sub),
            Method::DELETE => delete(ctx, st, &cluster_id, sub),
            _ => arm_error(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                "not emulated",
            ),
        };
    }
    if segs.len() == 9 && segs[8] == "databases" && ctx.method == Method::GET {
        return list_of(st, &format!("{cluster_id}/databases"), Kind::Database);
    }
    if segs.len() < 10 || segs[8] != "databases" {
        return arm_error(StatusCode::NOT_FOUND, "InvalidResourceType", "unknown path");
    }
    if !st.resources.contains_key(&cluster_key) {
        return arm_error(
            StatusCode::NOT_FOUND,
            "ParentResourceNotFound",
            &format!("Parent resource '{cluster_id}' not found."),
        );
    }
    let db_id = format!("{cluster_id}/databases/{}", orig[9]);
    let db_key = db_id.to_ascii_lowercase();
    match (segs.len(), &ctx.method) {
        (10, &Method::GET) => match st.resources.get(&db_key) {
            Some(r) => json_response(StatusCode::OK, &r.body, &[]),
            None => not_found(&db_id),
        },
        (10, &Method::PUT) => enterprise_put(
            ctx,
            st,
            &db_id,
            &format!("{}/{}", orig[7], orig[9]),
            Kind::Database,
            sub,
        ),
        (10, &Method::PATCH) => enterprise_patch(ctx, st, &db_id, sub),
        (10, &Method::DELETE) => delete(ctx, st, &db_id, sub),
        (11, &Method::POST) if segs[10] == "listkeys" => match st.resources.get(&db_key) {
            Some(r) => json_response(StatusCode::OK, &keys_json(r), &[]),
            None => not_found(&db_id),
        },
        (11, &Method::POST) if segs[10] == "regeneratekey" => {
            let Some(index) = key_index(ctx.body.as_ref()) else {
                return arm_error(
                    StatusCode::BAD_REQUEST,
                    "InvalidRequestBody",
                    "keyType must be Primary or Secondary",
                );
            };
            match st.resources.get(&db_key) {
                None => return not_found(&db_id),
                Some(r) if r.busy.is_some() => return busy(&db_id),
                Some(_) => {}
            }
            // Long-running on Managed.
            let (status_url, result_url) = start_op(
                ctx.shared,
                st,
                &db_id,
                Effect::RegenerateKey(index),
                ctx.api_version,
                sub,
            );
            empty(
                StatusCode::ACCEPTED,
                &[
                    ("azure-asyncoperation", status_url),
                    ("location", result_url),
                ],
            )
        }
        _ => arm_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "not emulated",
        ),
    }
}

fn enterprise_put(
    ctx: &Ctx<'_>,
    st: &mut State,
    id: &str,
    name: &str,
    kind: Kind,
    sub: &str,
) -> Response {
    let key = id.to_ascii_lowercase();
    let existed = match st.resources.get(&key) {
        Some(r) if r.busy.is_some() => return busy(id),
        Some(_) => true,
        None => false,
    };
    let Some(body) = ctx.body.as_ref() else {
        return arm_error(StatusCode::BAD_REQUEST, "InvalidRequestContent", "no body");
    };
    let mut p = props(body).cloned().unwrap_or_default();
    let stored = if kind == Kind::Cluster {
        if !body
            .get("sku")
            .and_then(|s| s.get("name"))
            .is_some_and(Value::is_string)
        {
            return arm_error(
                StatusCode::BAD_REQUEST,
                "InvalidRequestBody",
                "sku.name is required",
            );
        }
        // Required on create since 2025-07-01.
        if p.get("publicNetworkAccess").is_none() {
            return arm_error(
                StatusCode::BAD_REQUEST,
                "InvalidRequestBody",
                "properties.publicNetworkAccess is required",
            );
        }
        let location = body
            .get("location")
            .and_then(Value::as_str)
            .unwrap_or(LOCATION);
        p.insert(
            "hostName".into(),
            json!(format!("{name}.{location}.redis.azure.net")),
        );
        p.insert(
            "provisioningState".into(),
            json!(if existed { "Updating" } else { "Creating" }),
        );
        p.insert(
            "resourceState".into(),
            json!(if existed { "Updating" } else { "Creating" }),
        );
        p.insert("redisVersion".into(), json!("7.4"));
        json!({
            "id": id, "name": name, "type": "Microsoft.Cache/redisEnterprise", "kind": "v2",
            "location": location,
            "sku": body.get("sku").cloned().unwrap_or(json!({})),
            "zones": body.get("zones").cloned().unwrap_or(json!([])),
            "tags": body.get("tags").cloned().unwrap_or(json!({})),
            "properties": p,
        })
    } else {
        if p.get("persistence").is_some_and(|x| {
            x.get("aofEnabled") == Some(&json!(true)) && x.get("rdbEnabled") == Some(&json!(true))
        }) {
            return arm_error(
                StatusCode::BAD_REQUEST,
                "InvalidRequestBody",
                "At most one of AOF or RDB persistence may be enabled.",
            );
        }
        p.insert(
            "provisioningState".into(),
            json!(if existed { "Updating" } else { "Creating" }),
        );
        p.insert(
            "resourceState".into(),
            json!(if existed { "Updating" } else { "Creating" }),
        );
        json!({"id": id, "name": name, "type": "Microsoft.Cache/redisEnterprise/databases", "properties": p})
    };
    let keys = match st.resources.get(&key) {
        Some(r) => r.keys.clone(),
        None => new_keys(st),
    };
    st.resources.insert(
        key,
        Res {
            kind,
            body: stored.clone(),
            busy: None,
            keys,
        },
    );
    let (status_url, _) = start_op(
        ctx.shared,
        st,
        id,
        Effect::Provisioned,
        ctx.api_version,
        sub,
    );
    json_response(
        if existed {
            StatusCode::OK
        } else {
            StatusCode::CREATED
        },
        &stored,
        &[
            ("azure-asyncoperation", status_url),
            ("retry-after", "1".into()),
        ],
    )
}

fn enterprise_patch(ctx: &Ctx<'_>, st: &mut State, id: &str, sub: &str) -> Response {
    let key = id.to_ascii_lowercase();
    let Some(r) = st.resources.get_mut(&key) else {
        return not_found(id);
    };
    if r.busy.is_some() {
        return busy(id);
    }
    let Some(body) = ctx.body.as_ref() else {
        return arm_error(StatusCode::BAD_REQUEST, "InvalidRequestContent", "no body");
    };
    if let Some(sku) = body.get("sku") {
        r.body["sku"] = sku.clone();
    }
    if let Some(tags) = body.get("tags") {
        r.body["tags"] = tags.clone();
    }
    for (k, v) in props(body).cloned().unwrap_or_default() {
        r.body["properties"][k] = v;
    }
    r.body["properties"]["provisioningState"] = json!("Updating");
    let (status_url, result_url) = start_op(
        ctx.shared,
        st,
        id,
        Effect::Provisioned,
        ctx.api_version,
        sub,
    );
    empty(
        StatusCode::ACCEPTED,
        &[
            ("azure-asyncoperation", status_url),
            ("location", result_url),
            ("retry-after", "1".into()),
        ],
    )
}
