//! A scripted AWS endpoint for the SDK: an `HttpClient` that records every
//! request (form-decoded, as it went over the wire) and answers with the XML
//! the test scripted for its `Action` (for the JSON protocol of the tagging
//! API: the operation in `X-Amz-Target`, answered with scripted JSON). Real
//! serialization and real deserialization run, and errors carry real wire
//! codes.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_elasticache::config::retry::RetryConfig;
use aws_sdk_elasticache::config::{
    AsyncSleep, Credentials, SharedAsyncSleep, SharedCredentialsProvider, Sleep,
};
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;

const ELASTICACHE_VERSION: &str = "2015-02-02";

/// One request as AWS would have received it.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub action: String,
    pub params: BTreeMap<String, String>,
}

impl Recorded {
    /// A parameter's value.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.params.get(key).map(String::as_str)
    }

    /// The values of a list parameter `prefix.1`, `prefix.2`, ….
    pub fn list(&self, prefix: &str) -> Vec<String> {
        (1..)
            .map_while(|i| self.params.get(&format!("{prefix}.{i}")).cloned())
            .collect()
    }

    /// Key/value pairs of a tag list whose entries are at `prefix.N.Key`/`.Value`.
    pub fn tags(&self, prefix: &str) -> BTreeMap<String, String> {
        (1..)
            .map_while(|i| {
                let k = self.params.get(&format!("{prefix}.{i}.Key"))?;
                let v = self.params.get(&format!("{prefix}.{i}.Value"))?;
                Some((k.clone(), v.clone()))
            })
            .collect()
    }
}

/// A scripted answer.
#[derive(Clone, Debug)]
pub enum Reply {
    /// Success with this XML inside the result element.
    Ok(String),
    /// An AWS error with a wire code.
    Error {
        status: u16,
        code: String,
        message: String,
    },
    /// Any status and body, e.g. a 500 with HTML and no code.
    Raw { status: u16, body: String },
}

impl Reply {
    pub fn ok(xml: impl Into<String>) -> Self {
        Reply::Ok(xml.into())
    }
    pub fn error(status: u16, code: &str, message: &str) -> Self {
        Reply::Error {
            status,
            code: code.into(),
            message: message.into(),
        }
    }
}

#[derive(Debug, Default)]
struct Inner {
    once: HashMap<String, VecDeque<Reply>>,
    always: HashMap<String, Reply>,
    requests: Vec<Recorded>,
}

/// The scripted endpoint. Clones share the script and the record.
#[derive(Clone, Debug, Default)]
pub struct Scripted {
    inner: Arc<Mutex<Inner>>,
}

impl Scripted {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Answers the next call of `action` with `reply` (queued in order).
    pub fn once(&self, action: &str, reply: Reply) -> &Self {
        self.lock()
            .once
            .entry(action.to_string())
            .or_default()
            .push_back(reply);
        self
    }

    /// Answers every call of `action` that has no queued reply with `reply`.
    pub fn always(&self, action: &str, reply: Reply) -> &Self {
        self.lock().always.insert(action.to_string(), reply);
        self
    }

    /// Drops the replies still queued for `action`.
    pub fn drop_queued(&self, action: &str) {
        self.lock().once.remove(action);
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.lock().requests.clone()
    }

    /// The requests of `action`.
    pub fn calls(&self, action: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.action == action)
            .collect()
    }

    /// How many calls of `action` were made.
    pub fn count(&self, action: &str) -> usize {
        self.calls(action).len()
    }

    /// The actions called, in order.
    pub fn actions(&self) -> Vec<String> {
        self.requests().into_iter().map(|r| r.action).collect()
    }

    /// Forgets the record (not the script).
    pub fn clear_record(&self) {
        self.lock().requests.clear();
    }

    /// An SDK configuration whose every request goes to this script.
    pub fn sdk_config(&self, retry: RetryConfig) -> SdkConfig {
        SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
                "AKIDTEST", "secret", None, None, "scripted",
            )))
            .endpoint_url("http://aws.scripted")
            .http_client(self.clone())
            .retry_config(retry)
            .sleep_impl(SharedAsyncSleep::new(TokioSleep))
            .build()
    }

    fn answer(&self, request: &HttpRequest) -> (u16, String) {
        let body = request
            .body()
            .bytes()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .unwrap_or_default();
        let target = request
            .headers()
            .get("x-amz-target")
            .and_then(|t| t.rsplit('.').next())
            .map(str::to_string);
        let (params, action) = match target {
            // JSON: the operation names itself in the header; the body is
            // kept whole under "json".
            Some(op) => (BTreeMap::from([("json".to_string(), body.clone())]), op),
            None => {
                let params = decode_form(&body);
                let action = params.get("Action").cloned().unwrap_or_default();
                (params, action)
            }
        };
        let json = params.contains_key("json");
        let elasticache = params.get("Version").map(String::as_str) == Some(ELASTICACHE_VERSION);
        let mut inner = self.lock();
        inner.requests.push(Recorded {
            action: action.clone(),
            params,
        });
        let reply = inner
            .once
            .get_mut(&action)
            .and_then(VecDeque::pop_front)
            .or_else(|| inner.always.get(&action).cloned());
        drop(inner);
        match reply {
            Some(Reply::Ok(body)) if json => (200, body),
            Some(Reply::Ok(xml)) => (200, success_body(&action, &xml, elasticache)),
            Some(Reply::Error {
                status,
                code,
                message,
            }) if json => (
                status,
                serde_json::json!({"__type": code, "Message": message}).to_string(),
            ),
            Some(Reply::Error {
                status,
                code,
                message,
            }) => (status, error_body(&code, &message, elasticache)),
            Some(Reply::Raw { status, body }) => (status, body),
            None => (599, format!("<html>no scripted reply for {action}</html>")),
        }
    }
}

impl HttpConnector for Scripted {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let (status, body) = self.answer(&request);
        let status = aws_smithy_runtime_api::http::StatusCode::try_from(status)
            .expect("a valid status code");
        HttpConnectorFuture::ready(Ok(HttpResponse::new(status, SdkBody::from(body))))
    }
}

impl HttpClient for Scripted {
    fn http_connector(
        &self,
        _settings: &HttpConnectorSettings,
        _components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(self.clone())
    }
}

#[derive(Debug)]
struct TokioSleep;

impl AsyncSleep for TokioSleep {
    fn sleep(&self, duration: Duration) -> Sleep {
        Sleep::new(tokio::time::sleep(duration))
    }
}

fn success_body(action: &str, xml: &str, elasticache: bool) -> String {
    if elasticache {
        format!(
            r#"<{action}Response xmlns="http://elasticache.amazonaws.com/doc/2015-02-02/"><{action}Result>{xml}</{action}Result><ResponseMetadata><RequestId>req-1</RequestId></ResponseMetadata></{action}Response>"#
        )
    } else {
        format!(
            r#"<{action}Response xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><requestId>req-1</requestId>{xml}</{action}Response>"#
        )
    }
}

fn error_body(code: &str, message: &str, elasticache: bool) -> String {
    if elasticache {
        format!(
            "<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error><RequestId>req-1</RequestId></ErrorResponse>"
        )
    } else {
        format!(
            "<Response><Errors><Error><Code>{code}</Code><Message>{message}</Message></Error></Errors><RequestID>req-1</RequestID></Response>"
        )
    }
}

/// Decodes `application/x-www-form-urlencoded`.
pub fn decode_form(body: &str) -> BTreeMap<String, String> {
    body.split('&')
        .filter(|p| !p.is_empty())
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
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
