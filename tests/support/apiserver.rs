//! A small, stateful, in-process Kubernetes API server emulator for integration tests.
//!
//! It speaks just enough of the Kubernetes REST protocol (plain HTTP, JSON only) for kube-rs
//! clients to run against it: `Api<K>` CRUD, merge / JSON / server-side-apply patches, the
//! status subresource, finalizers and owner-reference garbage collection, list + watch (including
//! streaming lists and metadata-only requests), so `kube::runtime` watchers, controllers, the
//! finalizer helper and the events `Recorder` work unchanged.
//!
//! Deliberately left out: discovery, schema validation and defaulting, RBAC, SSA field-ownership
//! conflicts and `managedFields`, `dryRun`, pagination (everything comes in one page), 410 Gone,
//! orphan/foreground propagation (dependents are always deleted in the background way), and
//! watch events for objects that stop matching a label selector.
//!
//! Include it from any test file with `#[path = "support/apiserver.rs"] mod apiserver;`.
#![allow(dead_code)] // each test binary uses a different subset

use std::collections::{BTreeMap, HashMap, HashSet};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{header, Method, StatusCode};
use axum::response::Response;
use futures::SinkExt;
use serde_json::{json, Map, Value};

/// kube-rs's own default, used when a watch names no `timeoutSeconds`.
const DEFAULT_WATCH_TIMEOUT_SECS: u64 = 290;
const MAX_BODY_BYTES: usize = 16 << 20;
/// Metadata the client may send but the server alone decides.
const SERVER_OWNED_METADATA: [&str; 7] = [
    "name",
    "namespace",
    "uid",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "generation",
];

/// Reads the emulator's store (cloneable, for helper tasks such as the test kubelet).
#[derive(Clone)]
pub struct Snapshotter(Arc<Shared>);

impl Snapshotter {
    /// A stored object, `None` if absent.
    pub fn get(&self, group: &str, plural: &str, namespace: &str, name: &str) -> Option<Value> {
        let key = (
            resource_key(group, plural),
            namespace.to_string(),
            name.to_string(),
        );
        self.0.lock().objects.get(&key).cloned()
    }

    /// All stored objects of a kind, in all namespaces.
    pub fn list(&self, group: &str, plural: &str) -> Vec<Value> {
        let resource = resource_key(group, plural);
        let store = self.0.lock();
        store.objects_of(&resource).cloned().collect()
    }
}

/// A running emulator. Dropping it stops the server and ends open watches.
pub struct ApiServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl ApiServer {
    /// Binds 127.0.0.1:0 and serves in a background tokio task.
    pub async fn start() -> ApiServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind emulator to 127.0.0.1:0");
        let addr = listener.local_addr().expect("emulator local address");
        let shared = Arc::new(Shared {
            store: Mutex::new(Store::default()),
            changed: tokio::sync::watch::channel(0).0,
        });
        let handler_state = shared.clone();
        let app = axum::Router::new().fallback(move |req: Request| {
            let shared = handler_state.clone();
            async move { handle(shared, req).await }
        });
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
        });
        ApiServer {
            addr,
            shared,
            stop: Some(stop),
        }
    }

    /// `http://127.0.0.1:PORT`
    /// The address the emulator listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A client for this server whose default namespace is `default`.
    pub fn client(&self) -> kube::Client {
        // kube builds a rustls connector even for plain-http URLs, which needs a crypto provider.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let uri: axum::http::Uri = self.url().parse().expect("emulator url is a valid URI");
        kube::Client::try_from(kube::Config::new(uri)).expect("build kube client for emulator")
    }

    /// Declares that a kind has a status subresource: main-resource writes then keep `.status`,
    /// and `/status` writes only change `.status`.
    pub fn register_status_subresource(&self, group: &str, _version: &str, plural: &str) {
        self.shared
            .lock()
            .status_kinds
            .insert(resource_key(group, plural));
    }

    /// Direct read of a stored object (for assertions); `None` if absent. Like a real server, the
    /// emulator stores one copy per group and resource, so `version` does not matter.
    pub fn get(
        &self,
        group: &str,
        _version: &str,
        plural: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Option<Value> {
        let key = (
            resource_key(group, plural),
            namespace.unwrap_or_default().to_string(),
            name.to_string(),
        );
        self.shared.lock().objects.get(&key).cloned()
    }

    /// A handle that reads the store from another task.
    pub fn snapshotter(&self) -> Snapshotter {
        Snapshotter(self.shared.clone())
    }

    /// All stored objects of a kind, in all namespaces.
    pub fn list(&self, group: &str, _version: &str, plural: &str) -> Vec<Value> {
        let resource = resource_key(group, plural);
        let store = self.shared.lock();
        store.objects_of(&resource).cloned().collect()
    }

    /// Every write to objects of a kind after resourceVersion `after`, in
    /// order, each with the moment it was made: the objects as written, and
    /// the latest resourceVersion to pass next time.
    pub fn changes_since(
        &self,
        group: &str,
        plural: &str,
        after: u64,
    ) -> (Vec<(std::time::Instant, Value)>, u64) {
        let resource = resource_key(group, plural);
        let store = self.shared.lock();
        let start = store.history.partition_point(|c| c.rv <= after);
        let changes = store.history[start..]
            .iter()
            .filter(|c| c.resource == resource)
            .map(|c| (c.at, c.object.clone()))
            .collect();
        (changes, store.rv)
    }

    /// The next `method` request whose path contains `path_contains` fails
    /// with a 500 and changes nothing (a crash or outage at that point).
    pub fn fail_next(&self, method: &str, path_contains: &str) {
        self.shared
            .lock()
            .faults
            .push((method.to_string(), path_contains.to_string()));
    }

    /// Every request for `group`/`plural` gets a 404, as for a kind whose
    /// CRD is not installed.
    pub fn refuse_resource(&self, group: &str, plural: &str) {
        self.shared
            .lock()
            .refused
            .insert(resource_key(group, plural));
    }

    /// Injected failures not yet triggered.
    pub fn pending_faults(&self) -> usize {
        self.shared.lock().faults.len()
    }

    /// Every request seen so far: (method, path+query, content-type).
    pub fn requests(&self) -> Vec<(String, String, String)> {
        self.shared.lock().requests.clone()
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        let rv = {
            let mut store = self.shared.lock();
            store.stopped = true;
            store.rv
        };
        // Wakes every open watch so it sees `stopped` and ends its response.
        self.shared.changed.send_replace(rv);
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

struct Shared {
    store: Mutex<Store>,
    /// Latest resourceVersion; open watches wait on it instead of polling.
    changed: tokio::sync::watch::Sender<u64>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// (group/plural, namespace or "" when cluster-scoped, name)
type ObjKey = (String, String, String);
type Reply = Result<(u16, Value), ApiError>;

/// One entry of the watch history.
struct Change {
    rv: u64,
    resource: String,
    kind: &'static str,
    object: Value,
    /// When the write was made (for benchmarks that time what clients do).
    at: std::time::Instant,
}

struct Store {
    rv: u64,
    objects: BTreeMap<ObjKey, Value>,
    /// Every change ever made, in resourceVersion order, so a watch can resume from any version.
    history: Vec<Change>,
    /// Last object applied per (uid, fieldManager, via /status): what SSA may remove next time.
    applied: HashMap<(String, String, bool), Value>,
    status_kinds: HashSet<String>,
    /// Resources served as not installed (see `refuse_resource`).
    refused: HashSet<String>,
    /// (apiVersion, kind) seen per resource, for list kinds and bookmarks.
    kinds: HashMap<String, (String, String)>,
    requests: Vec<(String, String, String)>,
    /// Injected failures: (method, path substring), each answered once with a 500.
    faults: Vec<(String, String)>,
    stopped: bool,
}

impl Default for Store {
    fn default() -> Self {
        Store {
            // Real servers never hand out "0", which clients treat as "any version".
            rv: 1,
            objects: BTreeMap::new(),
            history: Vec::new(),
            applied: HashMap::new(),
            status_kinds: HashSet::new(),
            refused: HashSet::new(),
            kinds: HashMap::new(),
            requests: Vec::new(),
            faults: Vec::new(),
            stopped: false,
        }
    }
}

/// A parsed request path.
#[derive(Clone)]
struct Route {
    group: String,
    version: String,
    plural: String,
    namespace: Option<String>,
    name: Option<String>,
    status: bool,
}

impl Route {
    fn parse(path: &str) -> Option<Route> {
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        let (group, version, rest) = match segments.as_slice() {
            ["api", version, rest @ ..] => ("", *version, rest),
            ["apis", group, version, rest @ ..] => (*group, *version, rest),
            _ => return None,
        };
        // `namespaces/{ns}/status` is the Namespace object's own status, not a kind called "status".
        let namespaced =
            rest.len() >= 3 && rest[0] == "namespaces" && !(rest.len() == 3 && rest[2] == "status");
        let (namespace, rest) = if namespaced {
            (Some(rest[1].to_string()), &rest[2..])
        } else {
            (None, rest)
        };
        let (plural, name, status) = match rest {
            [plural] => (plural, None, false),
            [plural, name] => (plural, Some(name.to_string()), false),
            [plural, name, "status"] => (plural, Some(name.to_string()), true),
            _ => return None,
        };
        Some(Route {
            group: group.to_string(),
            version: version.to_string(),
            plural: plural.to_string(),
            namespace,
            name,
            status,
        })
    }

    fn resource(&self) -> String {
        resource_key(&self.group, &self.plural)
    }

    fn key(&self, name: &str) -> ObjKey {
        (
            self.resource(),
            self.namespace.clone().unwrap_or_default(),
            name.to_string(),
        )
    }

    fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `widgets.example.dev "name"`, as real error messages say.
    fn describe(&self, name: &str) -> String {
        if self.group.is_empty() {
            format!("{} \"{name}\"", self.plural)
        } else {
            format!("{}.{} \"{name}\"", self.plural, self.group)
        }
    }
}

fn resource_key(group: &str, plural: &str) -> String {
    // Versions share storage, as on a real server.
    format!("{group}/{plural}")
}

/// An error answered as a `metav1.Status`, which kube-rs turns into `kube::Error::Api`.
#[derive(Debug)]
struct ApiError {
    code: u16,
    reason: &'static str,
    message: String,
}

fn fail(code: u16, reason: &'static str, message: impl Into<String>) -> ApiError {
    ApiError {
        code,
        reason,
        message: message.into(),
    }
}

fn bad_request(message: impl Into<String>) -> ApiError {
    fail(400, "BadRequest", message)
}

fn not_found(route: &Route, name: &str) -> ApiError {
    fail(
        404,
        "NotFound",
        format!("{} not found", route.describe(name)),
    )
}

fn conflict(route: &Route, name: &str) -> ApiError {
    fail(
        409,
        "Conflict",
        format!(
            "Operation cannot be fulfilled on {}: the object has been modified; please apply your changes to the latest version and try again",
            route.describe(name)
        ),
    )
}

impl ApiError {
    fn into_response(self) -> Response {
        let status = json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": self.message, "reason": self.reason, "code": self.code,
        });
        json_response(self.code, &status)
    }
}

fn json_response(code: u16, body: &Value) -> Response {
    Response::builder()
        .status(StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(
            serde_json::to_vec(body).expect("serialize JSON response"),
        ))
        .expect("build response")
}

async fn handle(shared: Arc<Shared>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let header_str = |name| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let content_type = header_str(header::CONTENT_TYPE);
    // kube-rs asks for `application/json;as=PartialObjectMetadata[List];g=meta.k8s.io;v=v1`.
    let meta_only = header_str(header::ACCEPT).contains("as=PartialObjectMetadata");
    let path_and_query = parts.uri.path_and_query().map_or_else(
        || parts.uri.path().to_string(),
        |pq| pq.as_str().to_string(),
    );
    let injected = {
        let mut store = shared.lock();
        store.requests.push((
            parts.method.to_string(),
            path_and_query.clone(),
            content_type.clone(),
        ));
        let hit = store
            .faults
            .iter()
            .position(|(m, p)| *m == parts.method.as_str() && path_and_query.contains(p.as_str()));
        hit.map(|i| store.faults.remove(i))
    };
    if let Some((method, path)) = injected {
        return fail(
            500,
            "InternalError",
            format!("injected failure of {method} {path}"),
        )
        .into_response();
    }
    let query = parse_query(parts.uri.query().unwrap_or_default());
    let body = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(body) => body,
        Err(e) => return bad_request(format!("reading body: {e}")).into_response(),
    };
    let request = Incoming {
        method: parts.method,
        query,
        content_type,
        body,
        meta_only,
    };
    let response =
        dispatch(&shared, parts.uri.path(), &request).unwrap_or_else(ApiError::into_response);
    // Wake open watches after any write; only ever move forward, whatever order requests end in.
    let rv = shared.lock().rv;
    shared.changed.send_if_modified(|seen| {
        let newer = rv > *seen;
        if newer {
            *seen = rv;
        }
        newer
    });
    response
}

struct Incoming {
    method: Method,
    query: HashMap<String, String>,
    content_type: String,
    body: Bytes,
    meta_only: bool,
}

impl Incoming {
    fn json(&self) -> Result<Value, ApiError> {
        let value: Value = serde_json::from_slice(&self.body)
            .map_err(|e| bad_request(format!("invalid JSON body: {e}")))?;
        if value.is_object() {
            Ok(value)
        } else {
            Err(bad_request("the body must be a JSON object"))
        }
    }
}

fn dispatch(shared: &Arc<Shared>, path: &str, req: &Incoming) -> Result<Response, ApiError> {
    let route = Route::parse(path).ok_or_else(|| {
        fail(
            404,
            "NotFound",
            format!("the server could not find the requested resource ({path})"),
        )
    })?;
    if shared.lock().refused.contains(&route.resource()) {
        return Err(fail(
            404,
            "NotFound",
            format!("the server could not find the requested resource ({path})"),
        ));
    }
    let watching = matches!(
        req.query.get("watch").map(String::as_str),
        Some("true" | "1")
    );
    if req.method == Method::GET && watching && route.name.is_none() {
        return watch(shared.clone(), route, req);
    }
    let mut store = shared.lock();
    let (code, body) = match (&req.method, route.name.as_deref()) {
        (&Method::GET, Some(name)) => {
            let object = store.objects.get(&route.key(name)).cloned();
            (200, object.ok_or_else(|| not_found(&route, name))?)
        }
        (&Method::GET, None) => {
            let filter = Filter::new(&route, &req.query)?;
            let items = store
                .objects_of(&route.resource())
                .filter(|o| filter.matches(o))
                .cloned()
                .collect();
            (200, store.list_body(&route, items, req.meta_only))
        }
        (&Method::POST, None) => store.create(&route, req.json()?)?,
        (&Method::PUT, Some(name)) => {
            let old = store.objects.get(&route.key(name)).cloned();
            let old = old.ok_or_else(|| not_found(&route, name))?;
            store.update(&route, &old, req.json()?)?
        }
        (&Method::PATCH, Some(name)) => store.patch(&route, name, req)?,
        (&Method::DELETE, Some(name)) => store.delete(&route, name, &req.body)?,
        (&Method::DELETE, None) => {
            let filter = Filter::new(&route, &req.query)?;
            let keys: Vec<ObjKey> = store
                .objects
                .iter()
                .filter(|(k, o)| k.0 == route.resource() && filter.matches(o))
                .map(|(k, _)| k.clone())
                .collect();
            let items = keys.iter().filter_map(|k| store.delete_object(k)).collect();
            (200, store.list_body(&route, items, req.meta_only))
        }
        (method, _) => {
            return Err(fail(
                405,
                "MethodNotAllowed",
                format!("{method} is not supported on {path}"),
            ))
        }
    };
    let body = if req.meta_only && body.get("items").is_none() {
        to_meta(&body)
    } else {
        body
    };
    Ok(json_response(code, &body))
}

impl Store {
    fn next_rv(&mut self) -> String {
        self.rv += 1;
        self.rv.to_string()
    }

    fn record(&mut self, kind: &'static str, resource: &str, object: Value) {
        self.history.push(Change {
            rv: self.rv,
            resource: resource.to_string(),
            kind,
            object,
            at: std::time::Instant::now(),
        });
    }

    fn objects_of<'a>(&'a self, resource: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
        self.objects
            .iter()
            .filter(move |(k, _)| k.0 == resource)
            .map(|(_, o)| o)
    }

    /// (apiVersion, kind) for a route: as last seen in a body, else guessed from the plural.
    fn kind_of(&self, route: &Route) -> (String, String) {
        self.kinds
            .get(&route.resource())
            .cloned()
            .unwrap_or_else(|| {
                let singular = route.plural.strip_suffix('s').unwrap_or(&route.plural);
                let mut chars = singular.chars();
                let kind = chars
                    .next()
                    .map(|c| c.to_uppercase().chain(chars).collect())
                    .unwrap_or_default();
                (route.api_version(), kind)
            })
    }

    /// Learns apiVersion/kind from a body, or fills them in when the client left them out.
    fn fill_type(&mut self, route: &Route, obj: &mut Value) {
        let (api_version, kind) = (str_at(obj, "/apiVersion"), str_at(obj, "/kind"));
        if !api_version.is_empty() && !kind.is_empty() {
            self.kinds.insert(route.resource(), (api_version, kind));
        } else {
            let (api_version, kind) = self.kind_of(route);
            let root = obj
                .as_object_mut()
                .expect("stored objects are JSON objects");
            root.insert("apiVersion".into(), api_version.into());
            root.insert("kind".into(), kind.into());
        }
    }

    fn list_body(&self, route: &Route, items: Vec<Value>, meta_only: bool) -> Value {
        let (api_version, kind, items) = if meta_only {
            let items = items.iter().map(to_meta).collect();
            (
                "meta.k8s.io/v1".to_string(),
                "PartialObjectMetadataList".to_string(),
                items,
            )
        } else {
            let (api_version, kind) = self.kind_of(route);
            (api_version, format!("{kind}List"), items)
        };
        json!({
            "apiVersion": api_version, "kind": kind,
            "metadata": {"resourceVersion": self.rv.to_string()},
            "items": items,
        })
    }

    fn create(&mut self, route: &Route, mut obj: Value) -> Reply {
        let mut name = str_at(&obj, "/metadata/name");
        if name.is_empty() {
            let prefix = str_at(&obj, "/metadata/generateName");
            if prefix.is_empty() {
                return Err(fail(
                    422,
                    "Invalid",
                    "metadata.name: Required value: name or generateName is required",
                ));
            }
            name = format!("{prefix}{}", random_suffix());
        }
        let key = route.key(&name);
        if self.objects.contains_key(&key) {
            return Err(fail(
                409,
                "AlreadyExists",
                format!("{} already exists", route.describe(&name)),
            ));
        }
        let rv = self.next_rv();
        let meta = meta_mut(&mut obj);
        for field in [
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "managedFields",
            "selfLink",
        ] {
            meta.remove(field);
        }
        meta.insert("name".into(), name.into());
        match &route.namespace {
            Some(ns) => meta.insert("namespace".into(), ns.clone().into()),
            None => meta.remove("namespace"),
        };
        meta.insert("uid".into(), new_uid().into());
        meta.insert("creationTimestamp".into(), now().into());
        meta.insert("generation".into(), 1.into());
        meta.insert("resourceVersion".into(), rv.into());
        if self.status_kinds.contains(&key.0) {
            // With a status subresource, status can only be written through /status.
            obj.as_object_mut()
                .expect("checked object")
                .remove("status");
        }
        self.fill_type(route, &mut obj);
        normalize_meta(&mut obj);
        self.objects.insert(key.clone(), obj.clone());
        self.record("ADDED", &key.0, obj.clone());
        Ok((201, obj))
    }

    /// Stores `new` as the next version of the existing `old`, applying the server's rules for
    /// optimistic concurrency, the status subresource, generation, and finalizers.
    fn update(&mut self, route: &Route, old: &Value, mut new: Value) -> Reply {
        let name = str_at(old, "/metadata/name");
        let key = route.key(&name);
        let old_rv = str_at(old, "/metadata/resourceVersion");
        let sent_rv = str_at(&new, "/metadata/resourceVersion");
        if !sent_rv.is_empty() && sent_rv != old_rv {
            return Err(conflict(route, &name));
        }
        if self.status_kinds.contains(&key.0) {
            let (mut merged, status_source) = if route.status {
                (old.clone(), &new)
            } else {
                (new.clone(), old)
            };
            let status = status_source.get("status").cloned();
            let root = merged.as_object_mut().expect("checked object");
            match status {
                Some(status) => root.insert("status".into(), status),
                None => root.remove("status"),
            };
            new = merged;
        }
        let old_meta = old
            .get("metadata")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let meta = meta_mut(&mut new);
        for field in SERVER_OWNED_METADATA {
            match old_meta.get(field) {
                Some(value) => meta.insert(field.into(), value.clone()),
                None => meta.remove(field),
            };
        }
        meta.remove("managedFields");
        meta.insert("resourceVersion".into(), old_rv.into());
        // An object never changes kind; this also keeps `PartialObjectMetadata` bodies harmless.
        let root = new.as_object_mut().expect("checked object");
        for field in ["apiVersion", "kind"] {
            root.insert(field.into(), old[field].clone());
        }
        normalize_meta(&mut new);

        let deleting = old.pointer("/metadata/deletionTimestamp").is_some();
        let finalizers_before = finalizers(old);
        if deleting
            && finalizers(&new)
                .iter()
                .any(|f| !finalizers_before.contains(f))
        {
            return Err(fail(
                422,
                "Invalid",
                format!("{} is invalid: metadata.finalizers: Forbidden: no new finalizers can be added if the object is being deleted", route.describe(&name)),
            ));
        }
        // Like the real server, a write that changes nothing keeps the resourceVersion and emits
        // no event, so reconcilers that re-apply the same state don't trigger themselves forever.
        if new == *old {
            return Ok((200, new));
        }
        let generation = old
            .pointer("/metadata/generation")
            .and_then(Value::as_i64)
            .unwrap_or(1);
        let generation = if without_meta_and_status(&new) != without_meta_and_status(old) {
            generation + 1
        } else {
            generation
        };
        let rv = self.next_rv();
        let meta = meta_mut(&mut new);
        meta.insert("generation".into(), generation.into());
        meta.insert("resourceVersion".into(), rv.into());
        if deleting && finalizers(&new).is_empty() {
            self.remove(&key, new.clone());
        } else {
            self.objects.insert(key.clone(), new.clone());
            self.record("MODIFIED", &key.0, new.clone());
        }
        Ok((200, new))
    }

    fn patch(&mut self, route: &Route, name: &str, req: &Incoming) -> Reply {
        let patch: Value = serde_json::from_slice(&req.body)
            .map_err(|e| bad_request(format!("invalid patch body: {e}")))?;
        let old = self.objects.get(&route.key(name)).cloned();
        let content_type = req.content_type.as_str();
        if content_type.starts_with("application/apply-patch") {
            return self.apply(route, name, req, patch, old);
        }
        let old = old.ok_or_else(|| not_found(route, name))?;
        let mut doc = old.clone();
        if content_type.starts_with("application/json-patch+json") {
            apply_json_patch(&mut doc, &patch)?;
        } else if content_type.starts_with("application/merge-patch+json")
            || content_type.starts_with("application/strategic-merge-patch+json")
        {
            // Strategic merge needs per-field schema knowledge; plain merge is close enough here.
            json_patch::merge(&mut doc, &patch);
        } else {
            return Err(fail(
                415,
                "UnsupportedMediaType",
                format!("unsupported patch type {content_type:?}"),
            ));
        }
        if !doc.is_object() {
            return Err(bad_request("the patched object is not a JSON object"));
        }
        self.update(route, &old, doc)
    }

    /// Server-side apply without field ownership: merges the applied object into the live one and
    /// removes fields this manager applied last time but omits now.
    fn apply(
        &mut self,
        route: &Route,
        name: &str,
        req: &Incoming,
        mut applied: Value,
        old: Option<Value>,
    ) -> Reply {
        let manager = req
            .query
            .get("fieldManager")
            .filter(|m| !m.is_empty())
            .cloned();
        let manager = manager.ok_or_else(|| {
            bad_request("PATCH, application/apply-patch+yaml requires fieldManager")
        })?;
        if !applied.is_object() {
            return Err(bad_request(
                "an applied configuration must be a JSON object",
            ));
        }
        let meta = meta_mut(&mut applied);
        meta.remove("managedFields");
        let Some(old) = old else {
            if route.status {
                return Err(not_found(route, name));
            }
            meta.entry("name").or_insert_with(|| name.into());
            let (code, created) = self.create(route, applied.clone())?;
            self.applied
                .insert((str_at(&created, "/metadata/uid"), manager, false), applied);
            return Ok((code, created));
        };
        let slot = (str_at(&old, "/metadata/uid"), manager, route.status);
        let mut doc = old.clone();
        if let Some(previous) = self.applied.get(&slot) {
            let now: HashSet<Vec<String>> = leaf_paths(&applied).into_iter().collect();
            for path in leaf_paths(previous) {
                if !now.contains(&path) && !is_identity(&path) {
                    remove_path(&mut doc, &path);
                }
            }
        }
        json_patch::merge(&mut doc, &applied);
        let reply = self.update(route, &old, doc)?;
        if self.objects.contains_key(&route.key(name)) {
            self.applied.insert(slot, applied);
        }
        Ok(reply)
    }

    fn delete(&mut self, route: &Route, name: &str, body: &[u8]) -> Reply {
        let key = route.key(name);
        let current = self
            .objects
            .get(&key)
            .ok_or_else(|| not_found(route, name))?;
        let options: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        for (field, pointer) in [
            ("uid", "/metadata/uid"),
            ("resourceVersion", "/metadata/resourceVersion"),
        ] {
            if let Some(expected) = options
                .get("preconditions")
                .and_then(|p| p.get(field))
                .and_then(Value::as_str)
            {
                if expected != str_at(current, pointer) {
                    return Err(conflict(route, name));
                }
            }
        }
        let object = self
            .delete_object(&key)
            .ok_or_else(|| not_found(route, name))?;
        Ok((200, object))
    }

    /// Deletes now, or only marks for deletion while finalizers remain. Returns the object.
    fn delete_object(&mut self, key: &ObjKey) -> Option<Value> {
        let mut obj = self.objects.get(key)?.clone();
        if !finalizers(&obj).is_empty() {
            if obj.pointer("/metadata/deletionTimestamp").is_none() {
                let rv = self.next_rv();
                let meta = meta_mut(&mut obj);
                meta.insert("deletionTimestamp".into(), now().into());
                meta.insert("deletionGracePeriodSeconds".into(), 0.into());
                meta.insert("resourceVersion".into(), rv.into());
                self.objects.insert(key.clone(), obj.clone());
                self.record("MODIFIED", &key.0, obj.clone());
            }
            return Some(obj);
        }
        let rv = self.next_rv();
        meta_mut(&mut obj).insert("resourceVersion".into(), rv.into());
        self.remove(key, obj.clone());
        Some(obj)
    }

    /// Removes an object for good (its `resourceVersion` already bumped), then its dependents.
    fn remove(&mut self, key: &ObjKey, obj: Value) {
        self.objects.remove(key);
        let uid = str_at(&obj, "/metadata/uid");
        self.applied.retain(|slot, _| slot.0 != uid);
        self.record("DELETED", &key.0, obj);
        if uid.is_empty() {
            return;
        }
        // Background garbage collection: dependents whose owners are now all gone are deleted,
        // honouring their own finalizers (and recursing through `remove`).
        let live: HashSet<String> = self
            .objects
            .values()
            .map(|o| str_at(o, "/metadata/uid"))
            .collect();
        let orphans: Vec<ObjKey> = self
            .objects
            .iter()
            .filter(|(_, o)| {
                let owners = owner_uids(o);
                owners.contains(&uid) && owners.iter().all(|u| !live.contains(u))
            })
            .map(|(k, _)| k.clone())
            .collect();
        for orphan in orphans {
            self.delete_object(&orphan);
        }
    }
}

/// Serves a watch as newline-delimited JSON events until the timeout, the client leaves, or the
/// server stops. Replays history after `resourceVersion`, then follows live changes.
fn watch(shared: Arc<Shared>, route: Route, req: &Incoming) -> Result<Response, ApiError> {
    let filter = Filter::new(&route, &req.query)?;
    let since = match req.query.get("resourceVersion").map(String::as_str) {
        None | Some("" | "0") => None,
        Some(rv) => Some(
            rv.parse::<u64>()
                .map_err(|_| bad_request(format!("invalid resourceVersion {rv:?}")))?,
        ),
    };
    let initial_events_end = req
        .query
        .get("sendInitialEvents")
        .is_some_and(|v| v == "true");
    let timeout = req
        .query
        .get("timeoutSeconds")
        .and_then(|s| s.parse::<u64>().ok())
        .filter(|s| *s > 0)
        .unwrap_or(DEFAULT_WATCH_TIMEOUT_SECS);
    let meta_only = req.meta_only;
    let line = move |kind: &str, object: &Value| {
        let object = if meta_only {
            to_meta(object)
        } else {
            object.clone()
        };
        let mut bytes = serde_json::to_vec(&json!({"type": kind, "object": object}))
            .expect("serialize watch event");
        bytes.push(b'\n');
        Bytes::from(bytes)
    };
    let (mut tx, rx) = futures::channel::mpsc::channel::<Result<Bytes, Infallible>>(16);
    // Subscribed before the snapshot below, so no change can slip between the two.
    let mut changes = shared.changed.subscribe();
    tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout);
        let resource = route.resource();
        let (mut pending, mut seen) = {
            let store = shared.lock();
            match since {
                Some(rv) => (Vec::new(), rv),
                None => {
                    // "0"/unset means "current state first": synthetic ADDED events, as the real
                    // server sends, then (for streaming lists) a bookmark marking their end.
                    let mut lines: Vec<Bytes> = store
                        .objects_of(&resource)
                        .filter(|o| filter.matches(o))
                        .map(|o| line("ADDED", o))
                        .collect();
                    if initial_events_end {
                        // `line` turns this into a PartialObjectMetadata for metadata-only watches.
                        let (api_version, kind) = store.kind_of(&route);
                        let bookmark = json!({
                            "apiVersion": api_version, "kind": kind,
                            "metadata": {
                                "resourceVersion": store.rv.to_string(),
                                "annotations": {"k8s.io/initial-events-end": "true"},
                            },
                        });
                        lines.push(line("BOOKMARK", &bookmark));
                    }
                    (lines, store.rv)
                }
            }
        };
        loop {
            {
                let store = shared.lock();
                if store.stopped {
                    return;
                }
                let start = store.history.partition_point(|c| c.rv <= seen);
                let newer = store.history[start..].iter();
                let matching =
                    newer.filter(|c| c.resource == resource && filter.matches(&c.object));
                pending.extend(matching.map(|c| line(c.kind, &c.object)));
                seen = store.rv;
            }
            for bytes in pending.drain(..) {
                if tx.send(Ok(bytes)).await.is_err() {
                    return; // client went away
                }
            }
            tokio::select! {
                changed = changes.changed() => if changed.is_err() { return },
                () = tokio::time::sleep_until(deadline) => return,
            }
        }
    });
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(rx))
        .expect("build watch response"))
}

/// Namespace, label selector and field selector of a list or watch.
struct Filter {
    namespace: Option<String>,
    labels: Vec<LabelRequirement>,
    /// (dotted field path, value, whether it must equal)
    fields: Vec<(String, String, bool)>,
}

enum LabelRequirement {
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

impl Filter {
    fn new(route: &Route, query: &HashMap<String, String>) -> Result<Filter, ApiError> {
        let labels = parse_label_selector(query.get("labelSelector").map_or("", String::as_str))?;
        let mut fields = Vec::new();
        for term in query
            .get("fieldSelector")
            .map_or("", String::as_str)
            .split(',')
        {
            let term = term.trim();
            if term.is_empty() {
                continue;
            }
            let (path, value, equal) = if let Some((p, v)) = term.split_once("!=") {
                (p, v, false)
            } else if let Some((p, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                (p, v, true)
            } else {
                return Err(bad_request(format!("invalid field selector {term:?}")));
            };
            fields.push((path.trim().to_string(), value.trim().to_string(), equal));
        }
        Ok(Filter {
            namespace: route.namespace.clone(),
            labels,
            fields,
        })
    }

    fn matches(&self, obj: &Value) -> bool {
        if let Some(ns) = &self.namespace {
            if str_at(obj, "/metadata/namespace") != *ns {
                return false;
            }
        }
        let label = |key: &str| {
            obj.pointer("/metadata/labels")
                .and_then(|l| l.get(key))
                .and_then(Value::as_str)
        };
        let labels_match = self.labels.iter().all(|req| match req {
            LabelRequirement::In(k, values) => {
                label(k).is_some_and(|v| values.iter().any(|x| x == v))
            }
            LabelRequirement::NotIn(k, values) => {
                label(k).is_none_or(|v| !values.iter().any(|x| x == v))
            }
            LabelRequirement::Exists(k) => label(k).is_some(),
            LabelRequirement::NotExists(k) => label(k).is_none(),
        });
        labels_match
            && self.fields.iter().all(|(path, value, equal)| {
                let actual = match obj.pointer(&format!("/{}", path.replace('.', "/"))) {
                    Some(Value::String(s)) => s.clone(),
                    None | Some(Value::Null) => String::new(),
                    Some(other) => other.to_string(),
                };
                (actual == *value) == *equal
            })
    }
}

/// `k=v`, `k==v`, `k!=v`, `k`, `!k`, `k in (a,b)`, `k notin (a,b)`; commas outside parentheses AND.
fn parse_label_selector(selector: &str) -> Result<Vec<LabelRequirement>, ApiError> {
    let invalid = |term: &str| {
        bad_request(format!(
            "unable to parse requirement {term:?} in label selector"
        ))
    };
    let mut terms = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    for (i, c) in selector.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                terms.push(&selector[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    terms.push(&selector[start..]);
    let mut requirements = Vec::new();
    for term in terms.into_iter().map(str::trim).filter(|t| !t.is_empty()) {
        let requirement = if let Some(open) = term.find('(') {
            let close = term
                .rfind(')')
                .filter(|c| *c > open)
                .ok_or_else(|| invalid(term))?;
            let values = term[open + 1..close]
                .split(',')
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
                .collect();
            match term[..open]
                .split_whitespace()
                .collect::<Vec<_>>()
                .as_slice()
            {
                [key, "in"] => LabelRequirement::In(key.to_string(), values),
                [key, "notin"] => LabelRequirement::NotIn(key.to_string(), values),
                _ => return Err(invalid(term)),
            }
        } else if let Some(key) = term.strip_prefix('!') {
            LabelRequirement::NotExists(key.trim().to_string())
        } else if let Some((k, v)) = term.split_once("!=") {
            LabelRequirement::NotIn(k.trim().to_string(), vec![v.trim().to_string()])
        } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
            LabelRequirement::In(k.trim().to_string(), vec![v.trim().to_string()])
        } else if term.contains(char::is_whitespace) {
            return Err(invalid(term));
        } else {
            LabelRequirement::Exists(term.to_string())
        };
        requirements.push(requirement);
    }
    Ok(requirements)
}

/// RFC 6902, one operation at a time so a `test` of a missing path against `null` can pass:
/// kube-apiserver's patch library allows that, and kube-runtime's `finalizer()` relies on it
/// when it adds the first finalizer.
fn apply_json_patch(doc: &mut Value, operations: &Value) -> Result<(), ApiError> {
    let operations = operations
        .as_array()
        .ok_or_else(|| bad_request("a JSON patch must be an array"))?;
    for op in operations {
        let path = op.get("path").and_then(Value::as_str).unwrap_or_default();
        let null_test = op.get("op").and_then(Value::as_str) == Some("test")
            && op.get("value").is_none_or(Value::is_null);
        if null_test && doc.pointer(path).is_none() {
            continue;
        }
        let single: json_patch::Patch = serde_json::from_value(json!([op]))
            .map_err(|e| bad_request(format!("invalid JSON patch: {e}")))?;
        // Any failure, including a failed `test`, is 422 like the real server.
        json_patch::patch(doc, &single).map_err(|e| {
            fail(
                422,
                "Invalid",
                format!("the server rejected our request due to an error in our request: {e}"),
            )
        })?;
    }
    Ok(())
}

/// Paths of all leaves (scalars, lists, empty objects) of an object.
fn leaf_paths(value: &Value) -> Vec<Vec<String>> {
    fn walk(value: &Value, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
        match value {
            Value::Object(map) if !map.is_empty() => {
                for (key, child) in map {
                    prefix.push(key.clone());
                    walk(child, prefix, out);
                    prefix.pop();
                }
            }
            _ if !prefix.is_empty() => out.push(prefix.clone()),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(value, &mut Vec::new(), &mut out);
    out
}

/// Fields SSA must never drop, even if an applied configuration stops mentioning them.
fn is_identity(path: &[String]) -> bool {
    matches!(
        path.iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .as_slice(),
        ["apiVersion"] | ["kind"] | ["metadata", "name" | "namespace" | "uid" | "resourceVersion"]
    )
}

fn remove_path(doc: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut current = doc;
    for key in parents {
        match current.get_mut(key) {
            Some(next) => current = next,
            None => return,
        }
    }
    if let Some(map) = current.as_object_mut() {
        map.remove(last);
    }
}

fn meta_mut(obj: &mut Value) -> &mut Map<String, Value> {
    let root = obj
        .as_object_mut()
        .expect("request bodies are checked to be JSON objects");
    let meta = root.entry("metadata").or_insert_with(|| json!({}));
    if !meta.is_object() {
        *meta = json!({});
    }
    meta.as_object_mut()
        .expect("metadata was just made an object")
}

/// Drops null and empty metadata fields as Go's `omitempty` does; kube-runtime's `finalizer()`
/// tests `/metadata/finalizers` against null when an object has none, so `[]` must not linger.
fn normalize_meta(obj: &mut Value) {
    meta_mut(obj).retain(|_, v| {
        !(v.is_null()
            || v.as_array().is_some_and(Vec::is_empty)
            || v.as_object().is_some_and(Map::is_empty))
    });
}

fn without_meta_and_status(obj: &Value) -> Value {
    let mut copy = obj.clone();
    if let Some(root) = copy.as_object_mut() {
        root.remove("metadata");
        root.remove("status");
    }
    copy
}

fn to_meta(obj: &Value) -> Value {
    json!({
        "apiVersion": "meta.k8s.io/v1",
        "kind": "PartialObjectMetadata",
        "metadata": obj.get("metadata").cloned().unwrap_or_else(|| json!({})),
    })
}

fn str_at(obj: &Value, pointer: &str) -> String {
    obj.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

fn finalizers(obj: &Value) -> Vec<String> {
    let list = obj
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array);
    list.into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect()
}

fn owner_uids(obj: &Value) -> Vec<String> {
    let refs = obj
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array);
    refs.into_iter()
        .flatten()
        .map(|r| str_at(r, "/uid"))
        .collect()
}

fn parse_query(query: &str) -> HashMap<String, String> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
                continue;
            }
            (b'+', _) => out.push(b' '),
            (byte, _) => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    // Every RandomState is freshly keyed, which is all the randomness tests need.
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.finish()
}

fn new_uid() -> String {
    let (a, b) = (random_u64(), random_u64());
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        ((b >> 48) & 0x3fff) | 0x8000,
        b & 0xffff_ffff_ffff
    )
}

/// Five characters from the alphabet the real server uses for `generateName`.
fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut n = random_u64();
    (0..5)
        .map(|_| {
            let c = ALPHABET[(n % ALPHABET.len() as u64) as usize] as char;
            n /= ALPHABET.len() as u64;
            c
        })
        .collect()
}

/// RFC 3339 in whole seconds, as Kubernetes serializes `metav1.Time`.
fn now() -> String {
    let now = k8s_openapi::jiff::Timestamp::now();
    k8s_openapi::jiff::Timestamp::from_second(now.as_second())
        .unwrap_or(now)
        .to_string()
}
