//! A real `redis-server` with TLS (certificates from a test CA made with
//! rcgen) and `requirepass`, for the health probe tests.
//!
//! Include it with `#[path = "support/redis.rs"] mod redis_support;`.
#![allow(dead_code)] // each test binary uses a different subset

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, RedisConnectionInfo};
use redis_cache_operator::backends::Credential;
use redis_cache_operator::health::{client_config, roots_from_pem, ProbeTarget};
use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use tempfile::TempDir;

/// The password a server starts with.
pub const TEST_PASSWORD: &str = "s3cr3tHealthToken0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJ";

/// A test CA and a server certificate for `localhost` and 127.0.0.1, as files.
pub struct Pki {
    dir: TempDir,
    ca_pem: String,
}

impl Pki {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let (ca, ca_pem) = ca("health-test CA");
        let key = KeyPair::generate().expect("server key");
        let params = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .expect("server params");
        let cert = params.signed_by(&key, &ca).expect("server certificate");
        std::fs::write(dir.path().join("server.crt"), cert.pem()).expect("write cert");
        std::fs::write(dir.path().join("server.key"), key.serialize_pem()).expect("write key");
        std::fs::write(dir.path().join("ca.crt"), &ca_pem).expect("write ca");
        Self { dir, ca_pem }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn client(&self) -> Arc<ClientConfig> {
        client_config(roots_from_pem(self.ca_pem.as_bytes()).expect("roots")).expect("config")
    }
}

pub fn ca(name: &str) -> (CertifiedIssuer<'static, KeyPair>, String) {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().expect("ca key"))
        .expect("ca certificate");
    let pem = issuer.pem();
    (issuer, pem)
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// A `redis-server` with TLS on a free port, killed on drop.
pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    password: String,
    _data: TempDir,
}

impl RedisServer {
    pub fn start(pki: &Pki, extra: &str) -> Self {
        let installed = Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            installed,
            "redis-server is not installed: run ./scripts/test (it installs the Debian package), or apt-get install redis-server"
        );
        let data = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        // In a file, so the password is not on a command line.
        let conf = format!(
            "bind 127.0.0.1\nport 0\ntls-port {port}\ntls-cert-file {}\ntls-key-file {}\n\
             tls-ca-cert-file {}\ntls-auth-clients no\nrequirepass {TEST_PASSWORD}\nsave \"\"\n\
             appendonly no\ndir {}\nmaxmemory 100mb\n{extra}\n",
            pki.path("server.crt").display(),
            pki.path("server.key").display(),
            pki.path("ca.crt").display(),
            data.path().display(),
        );
        let conf_path = data.path().join("redis.conf");
        std::fs::write(&conf_path, conf).expect("write redis.conf");
        let child = Command::new("redis-server")
            .arg(&conf_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        let server = Self {
            child: Some(child),
            port,
            password: TEST_PASSWORD.to_string(),
            _data: data,
        };
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return server;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("redis-server did not listen on {port} within 5 s");
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn target(&self, token: &str) -> ProbeTarget {
        ProbeTarget {
            host: "localhost".into(),
            port: self.port,
            tls: true,
            token: Some(Credential::new(token)),
            cluster: false,
            ca_pem: None,
            connect_to: None,
        }
    }

    /// A client for seeding data (same TLS and AUTH path as the probe).
    pub async fn client(&self, tls: &Arc<ClientConfig>) -> MultiplexedConnection {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .expect("tcp");
        let name = ServerName::try_from("localhost").expect("name");
        let stream = tokio_rustls::TlsConnector::from(tls.clone())
            .connect(name, tcp)
            .await
            .expect("tls");
        let info = RedisConnectionInfo::default().set_password(self.password.clone());
        let (conn, driver) =
            MultiplexedConnection::new_with_config(&info, stream, AsyncConnectionConfig::default())
                .await
                .expect("auth");
        tokio::spawn(driver);
        conn
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

impl RedisServer {
    /// Changes the server's password (`CONFIG SET requirepass`), e.g. to the
    /// token an operator generated.
    pub async fn set_password(&mut self, tls: &Arc<ClientConfig>, password: &str) {
        let mut c = self.client(tls).await;
        let _: () = redis::cmd("CONFIG")
            .arg("SET")
            .arg("requirepass")
            .arg(password)
            .query_async(&mut c)
            .await
            .expect("CONFIG SET requirepass");
        self.password = password.to_string();
    }
}
