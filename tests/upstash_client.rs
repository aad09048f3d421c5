//! The Upstash client against the stateful emulator: the whole database
//! lifecycle, error classification, redaction, and the call gate.

#[path = "support/upstash.rs"]
mod upstash;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis_cache_operator::backends::upstash::client::{
    CreateDatabaseRequest, CredentialsView, UpstashClient,
};
use redis_cache_operator::backends::upstash::plan::{connection_values, smallest_fixed_plan};
use redis_cache_operator::backends::{BackendError, CallGate, Credential, ErrorClass};
use upstash::UpstashEmulator;
use upstash::EMAIL;

/// Records what the client tells the gate.
#[derive(Default)]
struct RecordingGate {
    acquired: AtomicUsize,
    successes: AtomicUsize,
    throttled: AtomicUsize,
    records: Mutex<Vec<(&'static str, &'static str)>>,
}

impl RecordingGate {
    fn records(&self) -> Vec<(&'static str, &'static str)> {
        self.records.lock().expect("records lock").clone()
    }
}

#[async_trait::async_trait]
impl CallGate for RecordingGate {
    async fn acquire(&self) {
        self.acquired.fetch_add(1, Ordering::SeqCst);
    }
    fn on_success(&self) {
        self.successes.fetch_add(1, Ordering::SeqCst);
    }
    fn on_throttled(&self) {
        self.throttled.fetch_add(1, Ordering::SeqCst);
    }
    fn record(&self, operation: &'static str, outcome: &'static str) {
        self.records
            .lock()
            .expect("records lock")
            .push((operation, outcome));
    }
}

fn client(emu: &UpstashEmulator, gate: Arc<RecordingGate>) -> UpstashClient {
    UpstashClient::with_base_url(
        emu.base_url(),
        emu.email(),
        Credential::new(emu.api_key()),
        gate,
    )
    .expect("client builds")
}

fn request(name: &str) -> CreateDatabaseRequest {
    let mut r = CreateDatabaseRequest::global(name, "us-east-1");
    r.read_regions = vec!["us-west-1".to_string()];
    r.plan = Some("fixed_1gb".to_string());
    r
}

/// Asserts no known secret appears in the error's Display or Debug.
fn assert_clean(e: &BackendError, secrets: &[&str]) {
    let shown = format!("{e} {e:?}");
    for s in secrets {
        assert!(!shown.contains(s), "secret leaked into {shown}");
    }
}

#[tokio::test]
async fn full_lifecycle() {
    let emu = UpstashEmulator::start().await;
    let gate = Arc::new(RecordingGate::default());
    let c = client(&emu, gate.clone());

    let created = c
        .create_database(&request("shop-sessions"))
        .await
        .expect("create");
    assert_eq!(created.database_name, "shop-sessions");
    assert!(created.is_active());
    assert!(created.tls);
    assert_eq!(created.port, 6379);
    assert_eq!(created.primary_region.as_deref(), Some("us-east-1"));
    assert_eq!(created.read_regions, ["us-west-1"]);
    let stored = emu.database(&created.database_id).expect("stored");
    assert_eq!(stored.plan, "fixed_1gb");
    let password = created
        .password
        .clone()
        .expect("create answers the password");
    assert_eq!(password.expose(), stored.password);
    assert!(!format!("{created:?}").contains(&stored.password));

    let listed = c.list_databases().await.expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].database_id, created.database_id);

    let hidden = c
        .get_database(&created.database_id, CredentialsView::Hide)
        .await
        .expect("get hidden");
    assert!(hidden.password.is_none() && hidden.rest_token.is_none());
    assert!(hidden.read_only_rest_token.is_none());
    let shown = c
        .get_database(&created.database_id, CredentialsView::Show)
        .await
        .expect("get shown");
    assert_eq!(shown.password, created.password);
    assert_eq!(shown.rest_token, created.rest_token);
    assert_eq!(emu.count("GET", "/v2/redis/database/"), 2);
    assert!(emu
        .requests()
        .iter()
        .any(|(_, p)| p.ends_with("?credentials=hide")));

    // The connection values come straight from the answer.
    let values = connection_values(
        &shown.endpoint,
        shown.port,
        &password,
        shown.rest_token.as_ref().expect("rest token"),
        shown.read_only_rest_token.as_ref().expect("ro token"),
    );
    assert_eq!(values.host, format!("{}.upstash.io", stored.endpoint));
    assert_eq!(
        values.uri.expose(),
        format!("rediss://default:{}@{}:6379", stored.password, values.host)
    );

    let id = created.database_id.clone();
    let renamed = c
        .rename_database(&id, "shop-sessions-2")
        .await
        .expect("rename");
    assert_eq!(renamed.database_name, "shop-sessions-2");

    let reset = c.reset_password(&id).await.expect("reset");
    assert_ne!(reset.password, created.password, "password changes");
    assert_ne!(reset.rest_token, created.rest_token, "REST token changes");
    assert_ne!(reset.read_only_rest_token, created.read_only_rest_token);
    assert_eq!(
        reset.password.as_ref().map(Credential::expose),
        Some(emu.database(&id).expect("db").password.as_str())
    );

    c.enable_eviction(&id).await.expect("enable eviction");
    assert!(emu.database(&id).expect("db").eviction);
    c.enable_eviction(&id).await.expect("enable eviction twice");
    c.disable_eviction(&id).await.expect("disable eviction");
    assert!(!emu.database(&id).expect("db").eviction);

    let cidrs = vec!["10.0.0.0/8".to_string(), "203.0.113.7".to_string()];
    c.update_allowlist(&id, &cidrs).await.expect("allowlist");
    assert_eq!(emu.database(&id).expect("db").allowlist, cidrs);

    let plan = smallest_fixed_plan(5 * 1024 * 1024 * 1024).expect("plan");
    c.change_plan(&id, plan.api_name())
        .await
        .expect("change plan");
    assert_eq!(emu.database(&id).expect("db").plan, "fixed_5gb");

    c.update_budget(&id, 120).await.expect("budget");
    assert_eq!(emu.database(&id).expect("db").budget, 120);

    let regions = vec!["eu-west-1".to_string(), "ap-southeast-1".to_string()];
    c.update_regions(&id, &regions).await.expect("regions");
    assert_eq!(emu.database(&id).expect("db").read_regions, regions);

    c.create_backup(&id, "before-delete").await.expect("backup");
    assert_eq!(emu.database(&id).expect("db").backups, ["before-delete"]);

    c.delete_database(&id).await.expect("delete");
    assert!(emu.database(&id).is_none());
    let gone = c
        .get_database(&id, CredentialsView::Hide)
        .await
        .expect_err("gone");
    assert_eq!(gone.class, ErrorClass::NotFound);
    assert_eq!(gone.code.as_deref(), Some("404"));
    let again = c.delete_database(&id).await.expect_err("delete again");
    assert_eq!(again.class, ErrorClass::NotFound);
    assert!(c.list_databases().await.expect("list").is_empty());

    // The gate saw every call, in order, with its outcome.
    let records = gate.records();
    let ops: Vec<_> = records.iter().map(|(op, _)| *op).collect();
    assert_eq!(
        ops,
        [
            "create_database",
            "list_databases",
            "get_database",
            "get_database",
            "rename_database",
            "reset_password",
            "enable_eviction",
            "enable_eviction",
            "disable_eviction",
            "update_allowlist",
            "change_plan",
            "update_budget",
            "update_regions",
            "create_backup",
            "delete_database",
            "get_database",
            "delete_database",
            "list_databases",
        ]
    );
    let failures: Vec<_> = records.iter().filter(|(_, o)| *o != "success").collect();
    assert_eq!(
        failures,
        [
            &("get_database", "not_found"),
            &("delete_database", "not_found")
        ]
    );
    assert_eq!(gate.acquired.load(Ordering::SeqCst), records.len());
    assert_eq!(emu.requests().len(), records.len(), "one request per call");
    assert_eq!(gate.successes.load(Ordering::SeqCst), records.len() - 2);
    assert_eq!(gate.throttled.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn create_is_not_idempotent() {
    let emu = UpstashEmulator::start().await;
    let c = client(&emu, Arc::new(RecordingGate::default()));
    let a = c.create_database(&request("same")).await.expect("first");
    let b = c.create_database(&request("same")).await.expect("second");
    assert_ne!(a.database_id, b.database_id);
    let named: Vec<_> = c
        .list_databases()
        .await
        .expect("list")
        .into_iter()
        .filter(|d| d.database_name == "same")
        .collect();
    assert_eq!(named.len(), 2, "two creates make two databases");
    assert_eq!(emu.count("POST", "/v2/redis/database"), 2);
}

#[tokio::test]
async fn wrong_credentials_are_credentials_invalid() {
    let emu = UpstashEmulator::start().await;
    let gate = Arc::new(RecordingGate::default());
    let c = UpstashClient::with_base_url(
        emu.base_url(),
        EMAIL,
        Credential::new("not-the-key-0123456789"),
        gate.clone(),
    )
    .expect("client");
    let e = c.list_databases().await.expect_err("401");
    assert_eq!(e.class, ErrorClass::CredentialsInvalid);
    assert_eq!(e.code.as_deref(), Some("401"));
    assert!(e.message.contains("Unauthorized"), "{}", e.message);
    assert_clean(&e, &["not-the-key-0123456789"]);
    assert_eq!(gate.records(), [("list_databases", "credentials_invalid")]);
    assert!(
        !format!("{c:?}").contains("not-the-key"),
        "client Debug redacts"
    );
}

#[tokio::test]
async fn statuses_are_classified() {
    let emu = UpstashEmulator::start().await;
    let gate = Arc::new(RecordingGate::default());
    let c = client(&emu, gate.clone());
    let cases = [
        (400, ErrorClass::Rejected, "rejected"),
        (401, ErrorClass::CredentialsInvalid, "credentials_invalid"),
        (403, ErrorClass::CredentialsInvalid, "credentials_invalid"),
        (404, ErrorClass::NotFound, "not_found"),
        (500, ErrorClass::Transient, "transient"),
        (503, ErrorClass::Transient, "transient"),
    ];
    for (status, class, label) in cases {
        emu.fail_next(status, 1);
        let e = c.list_databases().await.expect_err("injected");
        assert_eq!(e.class, class, "status {status}");
        assert_eq!(e.code, Some(status.to_string()));
        assert_eq!(e.retry_after, None);
        // The JSON string body becomes the message, unquoted.
        assert!(
            e.message.contains(&format!("injected failure {status}")),
            "{}",
            e.message
        );
        assert!(!e.message.contains('"'), "{}", e.message);
        assert_eq!(gate.records().last(), Some(&("list_databases", label)));
    }
    assert_eq!(gate.throttled.load(Ordering::SeqCst), 0);
    assert_eq!(gate.successes.load(Ordering::SeqCst), 0);

    emu.fail_next_with_body(400, "\"invalid primary region: mars-1\"");
    let e = c
        .create_database(&request("x"))
        .await
        .expect_err("rejected");
    assert_eq!(e.class, ErrorClass::Rejected);
    assert!(
        e.message.ends_with("invalid primary region: mars-1"),
        "{}",
        e.message
    );
    assert!(
        emu.databases().is_empty(),
        "an injected failure changes nothing"
    );

    // A proxy's HTML 502 is transient and kept short.
    emu.fail_next_with_body(502, &format!("<html>{}</html>", "x".repeat(5000)));
    let e = c.list_databases().await.expect_err("502");
    assert_eq!(e.class, ErrorClass::Transient);
    assert!(e.message.len() < 700, "{}", e.message.len());
}

#[tokio::test]
async fn throttling_honours_retry_after() {
    let emu = UpstashEmulator::start().await;
    let gate = Arc::new(RecordingGate::default());
    let c = client(&emu, gate.clone());

    emu.throttle_next(1, Some(Duration::from_secs(7)));
    let e = c.list_databases().await.expect_err("429");
    assert_eq!(e.class, ErrorClass::Throttled);
    assert_eq!(e.retry_after, Some(Duration::from_secs(7)));

    emu.throttle_next(2, None);
    for _ in 0..2 {
        let e = c.list_databases().await.expect_err("429");
        assert_eq!(e.class, ErrorClass::Throttled);
        assert_eq!(e.retry_after, None);
    }
    assert_eq!(gate.throttled.load(Ordering::SeqCst), 3);
    assert_eq!(emu.pending_faults(), 0);
    c.list_databases().await.expect("recovers");
    assert_eq!(gate.successes.load(Ordering::SeqCst), 1);
    assert_eq!(
        gate.records(),
        [
            ("list_databases", "throttled"),
            ("list_databases", "throttled"),
            ("list_databases", "throttled"),
            ("list_databases", "success"),
        ]
    );
}

#[tokio::test]
async fn already_toggled_is_success() {
    let emu = UpstashEmulator::start().await;
    let gate = Arc::new(RecordingGate::default());
    let c = client(&emu, gate.clone());
    let db = c.create_database(&request("evict")).await.expect("create");
    emu.fail_next_with_body(400, "\"Eviction is already enabled for this database\"");
    c.enable_eviction(&db.database_id)
        .await
        .expect("already enabled");
    emu.fail_next_with_body(400, "\"eviction is already disabled\"");
    c.disable_eviction(&db.database_id)
        .await
        .expect("already disabled");
    assert_eq!(
        &gate.records()[1..],
        [
            ("enable_eviction", "success"),
            ("disable_eviction", "success")
        ]
    );
    // Only the eviction toggles read the text; elsewhere a 400 stays a 400.
    emu.fail_next_with_body(400, "\"already enabled\"");
    let e = c
        .rename_database(&db.database_id, "y")
        .await
        .expect_err("rename 400");
    assert_eq!(e.class, ErrorClass::Rejected);
    // A different 400 on the toggle is still rejected.
    emu.fail_next_with_body(400, "\"database is being modified\"");
    let e = c.enable_eviction(&db.database_id).await.expect_err("400");
    assert_eq!(e.class, ErrorClass::Rejected);
}

#[tokio::test]
async fn errors_never_show_credentials() {
    let emu = UpstashEmulator::start().await;
    let c = client(&emu, Arc::new(RecordingGate::default()));
    let db = c.create_database(&request("secret")).await.expect("create");
    let stored = emu.database(&db.database_id).expect("stored");
    let api_key = emu.api_key();
    let basic = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        format!("{EMAIL}:{api_key}"),
    );
    let secrets = [
        stored.password.as_str(),
        stored.rest_token.as_str(),
        stored.read_only_rest_token.as_str(),
        api_key.as_str(),
        basic.as_str(),
    ];
    // A hostile body echoing every secret we know, as a JSON string…
    let echo = format!(
        "\"bad request: password={} token={} ro={} key={} auth=Basic {}\"",
        stored.password, stored.rest_token, stored.read_only_rest_token, api_key, basic
    );
    for status in [400, 401, 403, 404, 429, 500, 503] {
        emu.fail_next_with_body(status, &echo);
        let e = c.list_databases().await.expect_err("echo");
        assert_clean(&e, &secrets);
        assert!(e.message.contains("[redacted]"), "{}", e.message);
    }
    // …and as an object and as plain text.
    emu.fail_next_with_body(400, &format!("{{\"error\":\"pw {}\"}}", stored.password));
    assert_clean(&c.list_databases().await.expect_err("obj"), &secrets);
    emu.fail_next_with_body(500, &format!("key {api_key}"));
    assert_clean(&c.list_databases().await.expect_err("text"), &secrets);

    // After a reset the new values are known too.
    let reset = c.reset_password(&db.database_id).await.expect("reset");
    let new_pw = reset.password.expect("new password");
    emu.fail_next_with_body(400, &format!("\"{}\"", new_pw.expose()));
    assert_clean(
        &c.list_databases().await.expect_err("new"),
        &[new_pw.expose()],
    );

    // A transport failure (nothing listening) is transient and clean.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let dead = UpstashClient::with_base_url(
        format!("http://127.0.0.1:{port}/v2"),
        EMAIL,
        Credential::new(api_key.clone()),
        Arc::new(RecordingGate::default()),
    )
    .expect("client");
    let e = dead.list_databases().await.expect_err("refused");
    assert_eq!(e.class, ErrorClass::Transient);
    assert_eq!(e.code, None);
    assert_clean(&e, &secrets);
}

#[tokio::test]
async fn request_log_has_no_bodies() {
    let emu = UpstashEmulator::start().await;
    let c = client(&emu, Arc::new(RecordingGate::default()));
    let db = c.create_database(&request("log")).await.expect("create");
    c.update_budget(&db.database_id, 55).await.expect("budget");
    let log = emu.requests();
    assert_eq!(
        log,
        [
            ("POST".to_string(), "/v2/redis/database".to_string()),
            (
                "PATCH".to_string(),
                format!("/v2/redis/update-budget/{}", db.database_id)
            ),
        ]
    );
}
