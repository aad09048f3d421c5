//! A small typed client for the Upstash Developer API v2 (DESIGN §4.3).
//!
//! Every call goes through a [`CallGate`] (rate limiter + metrics) and every
//! failure becomes a [`BackendError`] classified by HTTP status, never by
//! message text — with one documented exception: eviction toggles that answer
//! "already enabled"/"already disabled" count as success, because the desired
//! state holds.
//!
//! Wire shapes, as documented (checked 2026; "docs" = https://upstash.com/docs/devops/developer-api):
//! - Base URL `https://api.upstash.com/v2` (the OpenAPI spec's `servers` entry,
//!   docs `.../redis/rename_database.md`). HTTP Basic auth: account email as
//!   user, API key as password (docs `/authentication`). JSON bodies.
//! - `POST /redis/database` — body `{"name", "region": "global", "primary_region",
//!   "read_regions"?, "plan"?, "budget"?, "tls"?}`; answers the database object
//!   (docs `/redis/create_database_global`; `plan` is one of `payg`, `fixed_250mb`
//!   … `fixed_500gb`).
//! - `GET /redis/databases` — array of database objects (docs `/redis/list_databases`).
//! - `GET /redis/database/{id}[?credentials=hide]` — the database object; `hide`
//!   drops `password`, `rest_token`, `read_only_rest_token` (docs `/redis/get_database`).
//! - `DELETE /redis/database/{id}` — `"OK"` (docs `/redis/delete_database`).
//! - `POST /redis/rename/{id}` — body `{"name"}`; answers the database object
//!   (docs `/redis/rename_database`).
//! - `POST /redis/reset-password/{id}` — no body; answers the database object with
//!   the new `password` and REST tokens (docs `/redis/reset_password`).
//! - `POST /redis/enable-eviction/{id}`, `POST /redis/disable-eviction/{id}` — no
//!   body; `"OK"` (docs `/redis/enable_eviction`, `/redis/disable_eviction`).
//! - `POST /redis/change-plan/{id}` — body `{"plan_name", "database_id"?,
//!   "auto_upgrade"?, "prod_pack_enabled"?}`; `"OK"` (docs `/redis/change_plan`;
//!   the rendered page's curl uses this path, the raw OpenAPI excerpt says
//!   `/redis/{id}/change-plan`; the official CLI uses `change-plan/{id}`).
//! - `PATCH /redis/update-budget/{id}` — body `{"budget": int}` (monthly budget);
//!   `"OK"` (docs `/redis/update_budget`).
//! - `POST /redis/update-regions/{id}` — body `{"read_regions": [..]}`, replaces the
//!   read regions (docs `/redis/update_regions`; the MCP server reads a database
//!   object back, so the answer is not relied on).
//! - `POST /redis/create-backup/{id}` — body `{"name"}` (docs `/redis/backup/create_backup`).
//! - `POST /redis/update-allowlist/{id}` — body `{"allowlist": [cidr, ..]}`.
//!   UNVERIFIED: no public page for an allowlist endpoint could be found; the path
//!   and field name are a guess kept in one place ([`ALLOWLIST_PATH`],
//!   [`UpdateAllowlistRequest`]) so they are easy to correct.
//! - Errors: status codes per docs `/http_status_codes` (400, 401, 403, 404, 405,
//!   406, 429, 500, 503); the body is a JSON string.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use base64::Engine as _;
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};

use crate::backends::{BackendError, CallGate, Credential, ErrorClass};

/// The Developer API's documented base URL.
pub const DEFAULT_BASE_URL: &str = "https://api.upstash.com/v2";

/// Path prefix of the (unverified, see module docs) allowlist endpoint.
pub const ALLOWLIST_PATH: &str = "/redis/update-allowlist";

/// A hung API must not stall a reconcile forever; Upstash calls are small.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Error bodies are short JSON strings; anything larger is cut so a broken
/// proxy page cannot flood Events.
const MAX_MESSAGE_CHARS: usize = 512;

/// How many credential values the client remembers for redaction. Bounded so
/// a long-running operator does not grow without limit; a reconcile only ever
/// needs the few values of the database it works on.
const REMEMBERED_SECRETS: usize = 256;

/// Whether `get_database` asks Upstash to leave the credentials out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CredentialsView {
    /// `?credentials=hide`: for state checks, so secrets do not travel needlessly.
    Hide,
    /// Full object with `password`, `rest_token`, `read_only_rest_token`.
    Show,
}

/// Body of `POST /redis/database`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CreateDatabaseRequest {
    /// Database name (the operator's backend identity `R`).
    pub name: String,
    /// Always `"global"`: regional creation is deprecated in the docs.
    pub region: String,
    /// Primary region, e.g. `us-east-1`.
    pub primary_region: String,
    /// Read replica regions.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub read_regions: Vec<String>,
    /// Fixed plan name or `payg`; omitted means the account's default plan.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan: Option<String>,
    /// Monthly budget (pay-as-you-go).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget: Option<u64>,
    /// TLS is always on for caches we create (DESIGN §4.3).
    pub tls: bool,
    /// Eviction at creation time, saving a later call. Not in the current
    /// OpenAPI page but sent by the official Terraform provider.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eviction: Option<bool>,
}

impl CreateDatabaseRequest {
    /// A global TLS database in `primary_region` with no read regions and the
    /// account's default plan.
    pub fn global(name: impl Into<String>, primary_region: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            region: "global".to_string(),
            primary_region: primary_region.into(),
            read_regions: Vec::new(),
            plan: None,
            budget: None,
            tls: true,
            eviction: None,
        }
    }
}

/// Body of `POST /redis/rename/{id}` and `POST /redis/create-backup/{id}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NameRequest {
    /// The new database name, or the backup name.
    pub name: String,
}

/// Body of `POST /redis/change-plan/{id}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangePlanRequest {
    /// `payg`, `fixed_250mb`, … (see `plan.rs`).
    pub plan_name: String,
    /// The database id, repeated in the body as the docs' example does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database_id: Option<String>,
    /// Whether Upstash may move the database to a bigger plan on its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_upgrade: Option<bool>,
    /// Whether the Prod Pack add-on is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prod_pack_enabled: Option<bool>,
}

/// Body of `PATCH /redis/update-budget/{id}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateBudgetRequest {
    /// New monthly budget.
    pub budget: u64,
}

/// Body of `POST /redis/update-regions/{id}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateRegionsRequest {
    /// The complete new set of read regions (replaces the old one).
    pub read_regions: Vec<String>,
}

/// Body of the allowlist update (UNVERIFIED shape, see module docs).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateAllowlistRequest {
    /// IPv4 addresses or CIDR blocks; empty means no restriction.
    pub allowlist: Vec<String>,
}

/// A database as the API describes it. Unknown fields are ignored: the
/// object has grown many `db_*` limits over time and will keep growing.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Database {
    /// Upstash's id (a UUID); stored in the cache's status as soon as known.
    pub database_id: String,
    /// The name given at creation or by rename.
    pub database_name: String,
    /// Pricing model as text: `Free`, `Pay as You Go`, `Enterprise`, …
    #[serde(default, deserialize_with = "null_as_default")]
    pub database_type: Option<String>,
    /// `type` in the API: `free`, `paid`, … (the plan family).
    #[serde(rename = "type", default, deserialize_with = "null_as_default")]
    pub plan_type: Option<String>,
    /// `global` for current databases, a region for old regional ones.
    #[serde(default, deserialize_with = "null_as_default")]
    pub region: Option<String>,
    /// Primary region of a global database.
    #[serde(default, deserialize_with = "null_as_default")]
    pub primary_region: Option<String>,
    /// Read replica regions.
    #[serde(default, deserialize_with = "null_as_default")]
    pub read_regions: Vec<String>,
    /// TCP port for Redis clients.
    pub port: u16,
    /// Endpoint: a full host (`x.upstash.io`) or, in newer answers, a bare slug.
    pub endpoint: String,
    /// `active` or `deleted`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub state: Option<String>,
    /// Non-empty while a change is being applied.
    #[serde(default, deserialize_with = "null_as_default")]
    pub modifying_state: Option<String>,
    /// Creation time, Unix seconds.
    #[serde(default, deserialize_with = "null_as_default")]
    pub creation_time: Option<i64>,
    /// TLS on or off.
    #[serde(default, deserialize_with = "null_as_default")]
    pub tls: bool,
    /// Eviction on or off.
    #[serde(default, deserialize_with = "null_as_default")]
    pub eviction: bool,
    /// Whether Upstash upgrades the plan by itself when limits are hit.
    #[serde(default, deserialize_with = "null_as_default")]
    pub auto_upgrade: bool,
    /// Monthly budget.
    #[serde(default, deserialize_with = "null_as_default")]
    pub budget: Option<u64>,
    /// The plan's memory limit in bytes.
    #[serde(default, deserialize_with = "null_as_default")]
    pub db_memory_threshold: Option<u64>,
    /// Redis password; absent with `?credentials=hide`.
    #[serde(default, deserialize_with = "opt_credential")]
    pub password: Option<Credential>,
    /// REST token (read-write); absent with `?credentials=hide`.
    #[serde(default, deserialize_with = "opt_credential")]
    pub rest_token: Option<Credential>,
    /// Read-only REST token; absent with `?credentials=hide`.
    #[serde(default, deserialize_with = "opt_credential")]
    pub read_only_rest_token: Option<Credential>,
    /// Security add-ons; the API says whether an IP allowlist is set, not which.
    #[serde(
        default,
        rename = "securityAddons",
        deserialize_with = "null_as_default"
    )]
    pub security_addons: SecurityAddons,
}

/// The `securityAddons` object of a database.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct SecurityAddons {
    /// Whether an IP allowlist restricts who may connect.
    #[serde(default, rename = "ipWhitelisting")]
    pub ip_allowlist: bool,
}

impl Database {
    /// Whether the database is usable (`state` is `active`).
    pub fn is_active(&self) -> bool {
        self.state.as_deref() == Some("active")
    }

    fn credentials(&self) -> impl Iterator<Item = &Credential> {
        [&self.password, &self.rest_token, &self.read_only_rest_token]
            .into_iter()
            .flatten()
    }
}

/// `null` and a missing field mean the same thing to us.
fn null_as_default<'de, D, T>(de: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(de)?.unwrap_or_default())
}

/// Reads a secret straight into a [`Credential`]; empty means absent.
fn opt_credential<'de, D>(de: D) -> Result<Option<Credential>, D::Error>
where
    D: Deserializer<'de>,
{
    Ok(Option::<String>::deserialize(de)?
        .filter(|s| !s.is_empty())
        .map(Credential::new))
}

/// HTTP status → error class (DESIGN §4.3, §5).
pub fn classify_status(status: u16) -> ErrorClass {
    match status {
        401 | 403 => ErrorClass::CredentialsInvalid,
        404 => ErrorClass::NotFound,
        429 => ErrorClass::Throttled,
        409 => ErrorClass::Conflict,
        // 400 is the API's "your request is invalid"; 405/406/413/422 likewise
        // mean our request cannot succeed as sent.
        400..=499 => ErrorClass::Rejected,
        // 500, 502, 503 (maintenance), 504 and anything else: try again later.
        _ => ErrorClass::Transient,
    }
}

/// Metrics label of an error class.
pub fn outcome_label(class: ErrorClass) -> &'static str {
    match class {
        ErrorClass::Throttled => "throttled",
        ErrorClass::Transient => "transient",
        ErrorClass::Rejected => "rejected",
        ErrorClass::Capacity => "capacity",
        ErrorClass::NotFound => "not_found",
        ErrorClass::Conflict => "conflict",
        ErrorClass::CredentialsInvalid => "credentials_invalid",
        ErrorClass::Immutable => "immutable",
    }
}

/// `Retry-After` in delta-seconds. The HTTP-date form is not parsed (no date
/// crate here); the caller's own jittered backoff applies then.
fn parse_retry_after(value: Option<&reqwest::header::HeaderValue>) -> Option<Duration> {
    let secs: u64 = value?.to_str().ok()?.trim().parse().ok()?;
    Some(Duration::from_secs(secs))
}

/// The message inside an error body: a JSON string per the docs, tolerating
/// `{"error": ".."}`/`{"message": ".."}` and plain text.
fn error_message(body: &str) -> String {
    let text = match serde_json::from_str::<serde_json::Value>(body) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(serde_json::Value::Object(map)) => match map.get("error").or_else(|| map.get("message"))
        {
            Some(serde_json::Value::String(s)) => s.clone(),
            _ => body.trim().to_string(),
        },
        _ => body.trim().to_string(),
    };
    let mut text: String = text.chars().take(MAX_MESSAGE_CHARS).collect();
    if text.is_empty() {
        text.push_str("no error message");
    }
    text
}

/// Whether an answer says the toggle was already in the wanted state.
fn says_already_done(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("already enabled") || m.contains("already disabled")
}

/// A typed client for the Upstash Developer API v2.
pub struct UpstashClient {
    http: reqwest::Client,
    base_url: String,
    email: String,
    api_key: Credential,
    gate: Arc<dyn CallGate>,
    /// Credential values seen in answers, redacted from later error messages
    /// (an error body could echo them).
    seen_secrets: Mutex<VecDeque<Credential>>,
}

impl std::fmt::Debug for UpstashClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstashClient")
            .field("base_url", &self.base_url)
            .field("email", &self.email)
            .field("api_key", &self.api_key)
            .finish_non_exhaustive()
    }
}

/// What a request expects back on success.
enum Expect {
    /// A JSON value to deserialize.
    Json,
    /// Anything (usually `"OK"`); the body is not read as data.
    Ignore,
}

impl UpstashClient {
    /// A client for the real API at [`DEFAULT_BASE_URL`].
    pub fn new(
        email: impl Into<String>,
        api_key: Credential,
        gate: Arc<dyn CallGate>,
    ) -> Result<Self, BackendError> {
        Self::with_base_url(DEFAULT_BASE_URL, email, api_key, gate)
    }

    /// A client for another base URL (an emulator in tests), including the
    /// `/v2` prefix, e.g. `http://127.0.0.1:1234/v2`.
    pub fn with_base_url(
        base_url: impl Into<String>,
        email: impl Into<String>,
        api_key: Credential,
        gate: Arc<dyn CallGate>,
    ) -> Result<Self, BackendError> {
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .user_agent(concat!("redis-cache-operator/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| BackendError {
                class: ErrorClass::Transient,
                code: None,
                message: format!("building the HTTP client failed: {e}"),
                retry_after: None,
                reason: None,
                queued: false,
            })?;
        Ok(Self {
            http,
            base_url: base_url.into().trim_end_matches('/').to_string(),
            email: email.into(),
            api_key,
            gate,
            seen_secrets: Mutex::new(VecDeque::new()),
        })
    }

    /// Creates a database. Not idempotent: two calls make two databases, so
    /// callers list first and adopt a database named `R` (DESIGN §4.3).
    pub async fn create_database(
        &self,
        request: &CreateDatabaseRequest,
    ) -> Result<Database, BackendError> {
        let db: Database = self
            .call_json(
                "create_database",
                Method::POST,
                "/redis/database".to_string(),
                Some(request),
            )
            .await?;
        self.remember(&db);
        Ok(db)
    }

    /// All databases of the account (or team) the API key belongs to.
    pub async fn list_databases(&self) -> Result<Vec<Database>, BackendError> {
        let dbs: Vec<Database> = self
            .call_json::<(), _>(
                "list_databases",
                Method::GET,
                "/redis/databases".to_string(),
                None,
            )
            .await?;
        dbs.iter().for_each(|db| self.remember(db));
        Ok(dbs)
    }

    /// One database; `CredentialsView::Hide` when only its state is needed.
    pub async fn get_database(
        &self,
        id: &str,
        view: CredentialsView,
    ) -> Result<Database, BackendError> {
        let mut path = format!("/redis/database/{}", segment(id));
        if view == CredentialsView::Hide {
            path.push_str("?credentials=hide");
        }
        let db: Database = self
            .call_json::<(), _>("get_database", Method::GET, path, None)
            .await?;
        self.remember(&db);
        Ok(db)
    }

    /// Deletes a database (and, on Upstash, its backups).
    pub async fn delete_database(&self, id: &str) -> Result<(), BackendError> {
        self.call_ignore::<()>(
            "delete_database",
            Method::DELETE,
            format!("/redis/database/{}", segment(id)),
            None,
            false,
        )
        .await
    }

    /// Renames a database.
    pub async fn rename_database(&self, id: &str, name: &str) -> Result<Database, BackendError> {
        let db: Database = self
            .call_json(
                "rename_database",
                Method::POST,
                format!("/redis/rename/{}", segment(id)),
                Some(&NameRequest {
                    name: name.to_string(),
                }),
            )
            .await?;
        self.remember(&db);
        Ok(db)
    }

    /// Resets the password; the answer carries the new password and REST
    /// tokens. A hard cut-over: the old password stops working at once.
    pub async fn reset_password(&self, id: &str) -> Result<Database, BackendError> {
        let db: Database = self
            .call_json::<(), _>(
                "reset_password",
                Method::POST,
                format!("/redis/reset-password/{}", segment(id)),
                None,
            )
            .await?;
        self.remember(&db);
        Ok(db)
    }

    /// Turns eviction on; "already enabled" counts as success.
    pub async fn enable_eviction(&self, id: &str) -> Result<(), BackendError> {
        self.call_ignore::<()>(
            "enable_eviction",
            Method::POST,
            format!("/redis/enable-eviction/{}", segment(id)),
            None,
            true,
        )
        .await
    }

    /// Turns eviction off; "already disabled" counts as success.
    pub async fn disable_eviction(&self, id: &str) -> Result<(), BackendError> {
        self.call_ignore::<()>(
            "disable_eviction",
            Method::POST,
            format!("/redis/disable-eviction/{}", segment(id)),
            None,
            true,
        )
        .await
    }

    /// Replaces the IP allowlist (UNVERIFIED endpoint, see module docs).
    pub async fn update_allowlist(&self, id: &str, cidrs: &[String]) -> Result<(), BackendError> {
        self.call_ignore(
            "update_allowlist",
            Method::POST,
            format!("{ALLOWLIST_PATH}/{}", segment(id)),
            Some(&UpdateAllowlistRequest {
                allowlist: cidrs.to_vec(),
            }),
            false,
        )
        .await
    }

    /// Moves the database to another plan (`payg`, `fixed_1gb`, …).
    pub async fn change_plan(&self, id: &str, plan_name: &str) -> Result<(), BackendError> {
        self.call_ignore(
            "change_plan",
            Method::POST,
            format!("/redis/change-plan/{}", segment(id)),
            Some(&ChangePlanRequest {
                plan_name: plan_name.to_string(),
                database_id: Some(id.to_string()),
                auto_upgrade: None,
                prod_pack_enabled: None,
            }),
            false,
        )
        .await
    }

    /// Sets the monthly budget (pay-as-you-go).
    pub async fn update_budget(&self, id: &str, budget: u64) -> Result<(), BackendError> {
        self.call_ignore(
            "update_budget",
            Method::PATCH,
            format!("/redis/update-budget/{}", segment(id)),
            Some(&UpdateBudgetRequest { budget }),
            false,
        )
        .await
    }

    /// Replaces the read regions.
    pub async fn update_regions(
        &self,
        id: &str,
        read_regions: &[String],
    ) -> Result<(), BackendError> {
        self.call_ignore(
            "update_regions",
            Method::POST,
            format!("/redis/update-regions/{}", segment(id)),
            Some(&UpdateRegionsRequest {
                read_regions: read_regions.to_vec(),
            }),
            false,
        )
        .await
    }

    /// Starts a backup named `name`.
    pub async fn create_backup(&self, id: &str, name: &str) -> Result<(), BackendError> {
        self.call_ignore(
            "create_backup",
            Method::POST,
            format!("/redis/create-backup/{}", segment(id)),
            Some(&NameRequest {
                name: name.to_string(),
            }),
            false,
        )
        .await
    }

    fn remember(&self, db: &Database) {
        let mut seen = self
            .seen_secrets
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for c in db.credentials() {
            if !seen.contains(c) {
                if seen.len() == REMEMBERED_SECRETS {
                    seen.pop_front();
                }
                seen.push_back(c.clone());
            }
        }
    }

    /// Replaces every credential value we know with `[redacted]`.
    fn redact(&self, text: &str) -> String {
        let mut known: Vec<String> =
            vec![self.api_key.expose().to_string(), self.basic_auth_token()];
        known.extend(
            self.seen_secrets
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .iter()
                .map(|c| c.expose().to_string()),
        );
        // Longest first, so a value containing another is replaced whole.
        known.sort_by_key(|k| std::cmp::Reverse(k.len()));
        let mut out = text.to_string();
        for k in known.iter().filter(|k| !k.is_empty()) {
            out = out.replace(k.as_str(), "[redacted]");
        }
        out
    }

    fn basic_auth_token(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            self.email,
            self.api_key.expose()
        ))
    }

    async fn call_json<B: Serialize, T: DeserializeOwned>(
        &self,
        op: &'static str,
        method: Method,
        path: String,
        body: Option<&B>,
    ) -> Result<T, BackendError> {
        let bytes = self
            .call(op, method, path, body, Expect::Json, false)
            .await?;
        serde_json::from_slice(&bytes.unwrap_or_default()).map_err(|e| {
            // Never echo the body: a success body holds the credentials.
            let err = BackendError {
                class: ErrorClass::Transient,
                code: None,
                message: format!(
                    "{op}: unexpected response shape (line {}, column {})",
                    e.line(),
                    e.column()
                ),
                retry_after: None,
                reason: None,
                queued: false,
            };
            tracing::warn!(operation = op, "upstash answer did not parse");
            err
        })
    }

    async fn call_ignore<B: Serialize>(
        &self,
        op: &'static str,
        method: Method,
        path: String,
        body: Option<&B>,
        already_is_success: bool,
    ) -> Result<(), BackendError> {
        self.call(op, method, path, body, Expect::Ignore, already_is_success)
            .await
            .map(|_| ())
    }

    /// One gated request: `acquire` → send → `record`, `on_throttled` on 429.
    async fn call<B: Serialize>(
        &self,
        op: &'static str,
        method: Method,
        path: String,
        body: Option<&B>,
        expect: Expect,
        already_is_success: bool,
    ) -> Result<Option<Vec<u8>>, BackendError> {
        self.gate.acquire().await;
        let result = self
            .send(op, method, &path, body, expect, already_is_success)
            .await;
        match &result {
            Ok(_) => {
                self.gate.on_success();
                self.gate.record(op, "success");
            }
            Err(e) => {
                if e.class == ErrorClass::Throttled {
                    self.gate.on_throttled();
                }
                self.gate.record(op, outcome_label(e.class));
            }
        }
        result
    }

    async fn send<B: Serialize>(
        &self,
        op: &'static str,
        method: Method,
        path: &str,
        body: Option<&B>,
        expect: Expect,
        already_is_success: bool,
    ) -> Result<Option<Vec<u8>>, BackendError> {
        let url = format!("{}{}", self.base_url, path);
        let mut req = self
            .http
            .request(method.clone(), &url)
            .basic_auth(&self.email, Some(self.api_key.expose()));
        if let Some(b) = body {
            req = req.json(b);
        }
        let transport = |e: reqwest::Error| BackendError {
            class: ErrorClass::Transient,
            code: None,
            message: self.redact(&format!("{op}: {}", e.without_url())),
            retry_after: None,
            reason: None,
            queued: false,
        };
        let resp = req.send().await.map_err(transport)?;
        let status = resp.status();
        tracing::debug!(operation = op, %method, path, status = status.as_u16(), "upstash call");
        if status.is_success() {
            let bytes = resp.bytes().await.map_err(transport)?;
            return Ok(match expect {
                Expect::Json => Some(bytes.to_vec()),
                Expect::Ignore => None,
            });
        }
        let retry_after = parse_retry_after(resp.headers().get(reqwest::header::RETRY_AFTER));
        let text = resp.text().await.unwrap_or_default();
        let message = self.redact(&error_message(&text));
        if already_is_success && status == StatusCode::BAD_REQUEST && says_already_done(&message) {
            return Ok(None);
        }
        Err(BackendError {
            class: classify_status(status.as_u16()),
            code: Some(status.as_u16().to_string()),
            message: crate::backends::redact::redact(&format!(
                "{op}: HTTP {}: {message}",
                status.as_u16()
            )),
            retry_after,
            reason: None,
            queued: false,
        })
    }
}

/// Percent-encodes a path segment so an odd id cannot change the path.
fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_classes() {
        assert_eq!(classify_status(400), ErrorClass::Rejected);
        assert_eq!(classify_status(401), ErrorClass::CredentialsInvalid);
        assert_eq!(classify_status(403), ErrorClass::CredentialsInvalid);
        assert_eq!(classify_status(404), ErrorClass::NotFound);
        assert_eq!(classify_status(405), ErrorClass::Rejected);
        assert_eq!(classify_status(409), ErrorClass::Conflict);
        assert_eq!(classify_status(429), ErrorClass::Throttled);
        assert_eq!(classify_status(500), ErrorClass::Transient);
        assert_eq!(classify_status(503), ErrorClass::Transient);
        assert_eq!(classify_status(599), ErrorClass::Transient);
    }

    #[test]
    fn error_bodies() {
        assert_eq!(
            error_message("\"database not found\""),
            "database not found"
        );
        assert_eq!(error_message("{\"error\":\"bad\"}"), "bad");
        assert_eq!(error_message("<html>oops</html>"), "<html>oops</html>");
        assert_eq!(error_message(""), "no error message");
        assert_eq!(error_message(&"x".repeat(2000)).len(), MAX_MESSAGE_CHARS);
    }

    #[test]
    fn already_done() {
        assert!(says_already_done("Eviction is already enabled"));
        assert!(says_already_done("eviction already disabled for db"));
        assert!(!says_already_done("invalid database id"));
    }

    #[test]
    fn retry_after_seconds_only() {
        use reqwest::header::HeaderValue;
        assert_eq!(
            parse_retry_after(Some(&HeaderValue::from_static("7"))),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            parse_retry_after(Some(&HeaderValue::from_static(
                "Wed, 21 Oct 2015 07:28:00 GMT"
            ))),
            None
        );
        assert_eq!(parse_retry_after(None), None);
    }

    #[test]
    fn segments_are_encoded() {
        assert_eq!(segment("96ad0856-03b1"), "96ad0856-03b1");
        assert_eq!(segment("a/../b?x"), "a%2F..%2Fb%3Fx");
    }

    #[test]
    fn database_parses_documented_get_answer() {
        // Shape of the docs' get_database example (trimmed), with an unknown
        // field, a null and a number beyond i64.
        let json = r#"{
            "database_id": "96ad0856-03b1-4ee7-9666-e81abd0349e1",
            "database_name": "MyRedis", "region": "global", "port": 6379,
            "creation_time": 1752649602, "state": "active",
            "endpoint": "beloved-stallion-58500", "tls": true, "type": "paid",
            "budget": 360, "primary_region": "us-east-1", "eviction": false,
            "read_regions": null, "db_request_limit": 9223372036854775808,
            "securityAddons": {"ipWhitelisting": false},
            "password": "038a8e27c45e43068d5f186085399884"
        }"#;
        let db: Database = serde_json::from_str(json).expect("parses");
        assert_eq!(db.database_name, "MyRedis");
        assert!(db.is_active());
        assert!(db.read_regions.is_empty());
        assert_eq!(db.plan_type.as_deref(), Some("paid"));
        assert_eq!(
            db.password.as_ref().map(Credential::expose),
            Some("038a8e27c45e43068d5f186085399884")
        );
        assert!(db.rest_token.is_none());
        let debug = format!("{db:?}");
        assert!(!debug.contains("038a8e27"), "{debug}");
    }
}
