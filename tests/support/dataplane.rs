//! Real `redis-server` and `redis-sentinel` processes on 127.0.0.1, started
//! with exactly the rendered config, ACL Secret and certificates. Only what
//! cannot be the same on loopback is rewritten: paths, ports, bind address,
//! and (through the scripts' environment) the peers' host names.
//!
//! Include it with `#[path = "support/dataplane.rs"] mod dataplane;`.
#![allow(dead_code)] // each test uses a different subset

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis_cache_operator::backends::kubernetes::acl::{self, AclUsers, Password};
use redis_cache_operator::backends::kubernetes::config::{
    self, ACL_DIR, CONFIG_DIR, DATA_DIR, RUN_DIR, TLS_DIR,
};
use redis_cache_operator::backends::kubernetes::input::{
    CacheInput, Engine, Persistence, DEFAULT_REDIS_IMAGE, SENTINEL_PORT,
};
use redis_cache_operator::backends::kubernetes::primary::{self, Credentials, Endpoint};
use redis_cache_operator::backends::kubernetes::render::{self};
use redis_cache_operator::backends::kubernetes::tls;
use rustls::ClientConfig;
use tempfile::TempDir;

/// The application password the tests start with (never printed).
pub const APP_PASSWORD: &str = "AppPassw0rdForDataPlaneTests0123456789abcdefghijklmnopqrstuvwx";
/// The replication password (never printed).
pub const REPLICATION_PASSWORD: &str =
    "Rep1icationPasswordForTests0123456789abcdefghijklmnopqrstuvwxy";
/// Bound for one network call.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// A cache like the ones the operator renders.
pub fn cache(replicas: u8, persistence: Persistence) -> CacheInput {
    CacheInput {
        name: "a".into(),
        namespace: "team".into(),
        owner_uid: "uid-1".into(),
        engine: Engine::Redis,
        engine_version: "7.0".into(),
        image: DEFAULT_REDIS_IMAGE.into(),
        memory_bytes: 64 * 1024 * 1024,
        replicas,
        multi_az: replicas > 0,
        port: 6379,
        eviction_policy: "allkeys-lfu".into(),
        parameters: BTreeMap::from([
            ("tcp-keepalive".to_string(), "300".to_string()),
            ("timeout".to_string(), "0".to_string()),
        ]),
        persistence,
        storage_class_name: None,
        storage_size: "1Gi".into(),
        resources: None,
        node_selector: BTreeMap::new(),
        tolerations: Vec::new(),
        exporter: None,
        allowed_cidrs: Vec::new(),
        operator_namespace: "redis-cache-operator".into(),
        config_hash: "h".into(),
        generation: 1,
    }
}

/// Fails the test early, with the way to fix it, when Redis is not installed.
pub fn require_redis() {
    for bin in ["redis-server", "redis-sentinel", "redis-cli"] {
        let ok = Command::new(bin)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            ok,
            "{bin} is not installed: apt-get install -y redis-server redis-sentinel"
        );
    }
}

/// A free port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// The Secrets and ConfigMap of one cache, as files.
pub struct Deployment {
    pub input: CacheInput,
    pub root: TempDir,
    pub ca_pem: String,
    pub tls: Arc<ClientConfig>,
    pub config_map: BTreeMap<String, String>,
}

impl Deployment {
    /// Renders everything and writes the TLS and ACL Secrets' files.
    pub fn new(input: CacheInput) -> Self {
        require_redis();
        let root = tempfile::tempdir().expect("tempdir");
        let now = jiff::Timestamp::now();
        let ca = tls::new_ca(&input, now).expect("ca");
        let server = tls::issue_server(&input, &ca, now).expect("server cert");
        let tls_dir = root.path().join("tls");
        std::fs::create_dir_all(&tls_dir).expect("tls dir");
        std::fs::write(tls_dir.join(tls::CA_CERT_KEY), &server.ca_pem).expect("ca.crt");
        std::fs::write(tls_dir.join(tls::TLS_CERT_KEY), &server.cert_pem).expect("tls.crt");
        std::fs::write(tls_dir.join(tls::TLS_KEY_KEY), &server.key_pem).expect("tls.key");
        let owner = k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
            api_version: "rediscache.dev/v1alpha1".into(),
            kind: "RedisCache".into(),
            name: input.name.clone(),
            uid: input.owner_uid.clone(),
            ..Default::default()
        };
        let users = AclUsers {
            default: vec![Password::new(APP_PASSWORD).expect("pw")],
            replication: Password::new(REPLICATION_PASSWORD).expect("pw"),
        };
        let acl_secret = render::acl_secret(&input, &users, &owner).expect("acl secret");
        let acl_dir = root.path().join("acl");
        std::fs::create_dir_all(&acl_dir).expect("acl dir");
        for (k, v) in acl_secret.data.expect("acl data") {
            std::fs::write(acl_dir.join(k), v.0).expect("acl file");
        }
        let config_map = render::config_map(&input, &owner)
            .expect("config map")
            .data
            .expect("config data");
        let tls = primary::client_config(&server.ca_pem).expect("client config");
        Self {
            input,
            root,
            ca_pem: server.ca_pem,
            tls,
            config_map,
        }
    }

    pub fn dir(&self, name: &str) -> PathBuf {
        let d = self.root.path().join(name);
        std::fs::create_dir_all(&d).expect("dir");
        d
    }

    /// Rewrites a rendered file for loopback: paths, bind address, port.
    fn loopback(
        &self,
        text: &str,
        conf_dir: &Path,
        work_dir: &Path,
        from_port: u16,
        to_port: u16,
    ) -> String {
        text.replace("bind * -::*", "bind 127.0.0.1")
            .replace(CONFIG_DIR, &conf_dir.display().to_string())
            .replace(TLS_DIR, &self.dir("tls").display().to_string())
            .replace(ACL_DIR, &self.dir("acl").display().to_string())
            .replace(
                &format!("dir {DATA_DIR}\n"),
                &format!("dir {}\n", work_dir.display()),
            )
            .replace(
                &format!("dir {RUN_DIR}\n"),
                &format!("dir {}\n", work_dir.display()),
            )
            .replace(
                &format!("tls-port {from_port}\n"),
                &format!("tls-port {to_port}\n"),
            )
    }

    /// Writes the ACL file (as the operator would update the Secret).
    pub fn write_acl_file(&self, content: &str) {
        std::fs::write(self.dir("acl").join(acl::ACL_FILE_KEY), content).expect("acl file");
    }

    /// Environment for the rendered scripts, pointing them at loopback.
    fn script_env(
        &self,
        cmd: &mut Command,
        conf: &Path,
        data: &Path,
        run: &Path,
        port: u16,
        topology: &Topology,
    ) {
        cmd.env("CONFIG_DIR", conf)
            .env("TLS_DIR", self.dir("tls"))
            .env("ACL_DIR", self.dir("acl"))
            .env("DATA_DIR", data)
            .env("RUN_DIR", run)
            .env("PORT", port.to_string())
            .env("ANNOUNCE_HOST", "127.0.0.1")
            .env("REDISCLI_AUTH", REPLICATION_PASSWORD)
            .env("SENTINELS", topology.sentinels())
            .env("PODS", topology.pods())
            .env(
                "FIRST_POD",
                format!("127.0.0.1:{}", topology.server_ports[0]),
            )
            .env("WAIT_SECONDS", "30");
    }

    /// Starts data pod `i` through the rendered startup script.
    pub fn start_server(&self, i: usize, topology: &Topology) -> Proc {
        let port = topology.server_ports[i];
        let conf = self.dir(&format!("server-{i}/conf"));
        let data = self.dir(&format!("server-{i}/data"));
        let run = self.dir(&format!("server-{i}/run"));
        for (k, v) in &self.config_map {
            let text = if k == config::SERVER_CONFIG_KEY {
                self.loopback(v, &conf, &data, self.input.port, port)
            } else {
                v.clone()
            };
            std::fs::write(conf.join(k), text).expect("config file");
        }
        let mut cmd = Command::new("sh");
        cmd.arg(conf.join(config::START_SERVER_KEY));
        self.script_env(&mut cmd, &conf, &data, &run, port, topology);
        cmd.env("SENTINEL_PORT", "0");
        Proc::spawn(cmd, self.root.path().join(format!("server-{i}.log")), port)
    }

    /// Starts Sentinel `i` through the rendered startup script.
    pub fn start_sentinel(&self, i: usize, topology: &Topology) -> Proc {
        let port = topology.sentinel_ports[i];
        let conf = self.dir(&format!("sentinel-{i}/conf"));
        let run = self.dir(&format!("sentinel-{i}/run"));
        for (k, v) in &self.config_map {
            let text = if k == config::SENTINEL_CONFIG_KEY {
                self.loopback(v, &conf, &run, SENTINEL_PORT, port)
            } else {
                v.clone()
            };
            std::fs::write(conf.join(k), text).expect("config file");
        }
        let mut cmd = Command::new("sh");
        cmd.arg(conf.join(config::START_SENTINEL_KEY));
        self.script_env(
            &mut cmd,
            &conf,
            &run,
            &run,
            topology.server_ports[0],
            topology,
        );
        cmd.env("SENTINEL_PORT", port.to_string());
        Proc::spawn(
            cmd,
            self.root.path().join(format!("sentinel-{i}.log")),
            port,
        )
    }

    /// Runs a rendered probe script against data pod `i`; its exit status.
    pub fn run_probe(&self, key: &str, i: usize, topology: &Topology) -> bool {
        let conf = self.dir(&format!("server-{i}/conf"));
        let data = self.dir(&format!("server-{i}/data"));
        let run = self.dir(&format!("server-{i}/run"));
        let mut cmd = Command::new("timeout");
        cmd.arg("30").arg("sh").arg(conf.join(key));
        self.script_env(
            &mut cmd,
            &conf,
            &data,
            &run,
            topology.server_ports[i],
            topology,
        );
        cmd.stdout(Stdio::null()).stderr(Stdio::null());
        cmd.status().is_ok_and(|s| s.success())
    }

    /// The endpoint of a local process, verified as `localhost`.
    pub fn endpoint(port: u16) -> Endpoint {
        Endpoint {
            host: "127.0.0.1".into(),
            port,
            server_name: "localhost".into(),
        }
    }

    /// Credentials of the replication user.
    pub fn replication() -> Credentials {
        Credentials {
            user: acl::REPLICATION_USER.into(),
            password: Password::new(REPLICATION_PASSWORD).expect("pw"),
        }
    }

    /// Credentials of `default` with `password`.
    pub fn app(password: &str) -> Credentials {
        Credentials {
            user: "default".into(),
            password: Password::new(password).expect("pw"),
        }
    }

    /// The log of a process, for a failure message; passwords removed.
    pub fn log(&self, name: &str) -> String {
        let text = std::fs::read_to_string(self.root.path().join(format!("{name}.log")))
            .unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(30).collect();
        tail.into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n")
            .replace(APP_PASSWORD, "<app>")
            .replace(REPLICATION_PASSWORD, "<repl>")
    }
}

/// Ports of the data pods and Sentinels.
pub struct Topology {
    pub server_ports: Vec<u16>,
    pub sentinel_ports: Vec<u16>,
}

impl Topology {
    pub fn new(servers: usize, sentinels: usize) -> Self {
        Self {
            server_ports: (0..servers).map(|_| free_port()).collect(),
            sentinel_ports: (0..sentinels).map(|_| free_port()).collect(),
        }
    }
    fn sentinels(&self) -> String {
        self.sentinel_ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(" ")
    }
    fn pods(&self) -> String {
        self.server_ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// A started process, killed on drop.
pub struct Proc {
    child: Option<Child>,
    pub port: u16,
}

impl Proc {
    fn spawn(mut cmd: Command, log: PathBuf, port: u16) -> Self {
        let out = std::fs::File::create(&log).expect("log file");
        let err = out.try_clone().expect("log file");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("spawn");
        Self {
            child: Some(child),
            port,
        }
    }

    /// Kills the process (SIGKILL: a crash, not a clean shutdown).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Waits until the port accepts TCP connections.
    pub fn wait_listening(&self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Polls `check` until it returns `Some` or `within` passes.
pub async fn eventually<T, F, Fut>(within: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(v) = check().await {
            return Some(v);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Splits `rediss://user:password@host:port`.
pub fn parse_uri(uri: &str) -> (String, String, String, u16) {
    let rest = uri.strip_prefix("rediss://").expect("rediss scheme");
    let (auth, hostport) = rest.rsplit_once('@').expect("userinfo");
    let (user, password) = auth.split_once(':').expect("user:password");
    let (host, port) = hostport.rsplit_once(':').expect("host:port");
    (
        user.to_string(),
        password.to_string(),
        host.to_string(),
        port.parse().expect("port"),
    )
}
