//! The rendered configuration, ACLs, certificates and scripts, run by real
//! Redis 7.0 processes on loopback (`apt-get install -y redis-server redis-sentinel`).

#[path = "support/dataplane.rs"]
mod dataplane;

use std::collections::HashMap;
use std::time::Duration;

use dataplane::{eventually, parse_uri, Deployment, Topology, APP_PASSWORD};
use redis_cache_operator::backends::kubernetes::acl::{rotation_step, Password, RotationStep};
use redis_cache_operator::backends::kubernetes::config;
use redis_cache_operator::backends::kubernetes::input::Persistence;
use redis_cache_operator::backends::kubernetes::primary::{
    self, decide, Outcome, PodFacts, SentinelView, ServerRole,
};
use redis_cache_operator::backends::kubernetes::render::connection_uri;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const STARTUP: Duration = Duration::from_secs(20);

async fn ping(d: &Deployment, port: u16, creds: &primary::Credentials) -> Result<String, String> {
    let mut c = primary::connect(
        &Deployment::endpoint(port),
        &d.tls,
        creds,
        dataplane::CALL_TIMEOUT,
    )
    .await
    .map_err(|e| e.to_string())?;
    c.query::<String>(&redis::cmd("PING"))
        .await
        .map_err(|e| e.to_string())
}

async fn run_id(d: &Deployment, port: u16) -> String {
    let info = info(d, port).await.expect("INFO");
    info.lines()
        .find_map(|l| l.trim_end().strip_prefix("run_id:").map(String::from))
        .expect("run_id")
}

async fn info(d: &Deployment, port: u16) -> Option<String> {
    let mut c = primary::connect(
        &Deployment::endpoint(port),
        &d.tls,
        &Deployment::replication(),
        dataplane::CALL_TIMEOUT,
    )
    .await
    .ok()?;
    c.query::<String>(&redis::cmd("INFO")).await.ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_acl_and_config_are_enforced() {
    tokio::time::timeout(Duration::from_secs(60), async {
        let d = Deployment::new(dataplane::cache(0, Persistence::None));
        let topo = Topology::new(1, 0);
        let server = d.start_server(0, &topo);
        assert!(
            server.wait_listening(STARTUP),
            "server did not start:\n{}",
            d.log("server-0")
        );

        // The connection Secret's URI, as an application would use it.
        let uri = connection_uri(
            "localhost",
            server.port,
            &Password::new(APP_PASSWORD).expect("pw"),
        );
        let (user, password, host, port) = parse_uri(&uri);
        assert_eq!((user.as_str(), host.as_str()), ("default", "localhost"));
        let creds = Deployment::app(&password);
        assert_eq!(ping(&d, port, &creds).await.as_deref(), Ok("PONG"));

        // Plain TCP gets no answer: the only listener is TLS.
        let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("tcp");
        let _ = tcp.write_all(b"PING\r\n").await;
        let mut buf = [0u8; 64];
        let read = tokio::time::timeout(Duration::from_secs(3), tcp.read(&mut buf)).await;
        let answered_pong = matches!(read, Ok(Ok(n)) if buf[..n].starts_with(b"+PONG"));
        assert!(!answered_pong, "plain TCP must not be served");

        // A wrong password is refused.
        let wrong = ping(&d, port, &Deployment::app("not-the-password")).await;
        let refused_auth = wrong.as_ref().is_err_and(|e| {
            let e = e.to_lowercase();
            e.contains("wrongpass") || e.contains("authentication")
        });
        assert!(
            refused_auth,
            "wrong password not refused by AUTH: {wrong:?}"
        );

        // The eviction policy and memory of the spec are applied.
        let mut c = primary::connect(
            &Deployment::endpoint(port),
            &d.tls,
            &creds,
            dataplane::CALL_TIMEOUT,
        )
        .await
        .expect("connect");
        let policy: Vec<String> = c
            .query(redis::cmd("CONFIG").arg("GET").arg("maxmemory-policy"))
            .await
            .expect("CONFIG GET");
        assert_eq!(policy, ["maxmemory-policy", "allkeys-lfu"]);
        let mem: Vec<String> = c
            .query(redis::cmd("CONFIG").arg("GET").arg("maxmemory"))
            .await
            .expect("CONFIG GET");
        assert_eq!(mem[1], (64 * 1024 * 1024).to_string());

        // The replication user may not touch data.
        let mut r = primary::connect(
            &Deployment::endpoint(port),
            &d.tls,
            &Deployment::replication(),
            dataplane::CALL_TIMEOUT,
        )
        .await
        .expect("replication user connects");
        let denied = r.query::<Option<String>>(redis::cmd("GET").arg("k")).await;
        let refused = denied.as_ref().is_err_and(|e| {
            let e = e.to_string().to_lowercase();
            e.contains("noperm") || e.contains("permission")
        });
        assert!(refused, "the replication user read a key: {denied:?}");

        // The rendered probes pass against the real server.
        assert!(
            d.run_probe(config::READINESS_KEY, 0, &topo),
            "readiness failed"
        );
        assert!(
            d.run_probe(config::LIVENESS_KEY, 0, &topo),
            "liveness failed"
        );
    })
    .await
    .expect("test took longer than 60 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dual_password_rotation_without_restart() {
    tokio::time::timeout(Duration::from_secs(60), async {
        let d = Deployment::new(dataplane::cache(0, Persistence::None));
        let topo = Topology::new(1, 0);
        let server = d.start_server(0, &topo);
        assert!(
            server.wait_listening(STARTUP),
            "server did not start:\n{}",
            d.log("server-0")
        );
        let port = server.port;
        let before = run_id(&d, port).await;

        let old = Password::new(APP_PASSWORD).expect("pw");
        let new = Password::new("NewAppPassword0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKL")
            .expect("pw");
        let repl = Password::new(dataplane::REPLICATION_PASSWORD).expect("pw");
        let old_creds = Deployment::app(old.expose());
        let new_creds = Deployment::app(new.expose());

        let send = |plan: redis_cache_operator::backends::kubernetes::acl::RotationPlan,
                    creds: primary::Credentials| {
            let d = &d;
            async move {
                let mut c = primary::connect(
                    &Deployment::endpoint(port),
                    &d.tls,
                    &creds,
                    dataplane::CALL_TIMEOUT,
                )
                .await
                .expect("connect");
                for command in &plan.live_commands {
                    let mut cmd = redis::cmd(&command.args()[0]);
                    for a in &command.args()[1..] {
                        cmd.arg(a);
                    }
                    let _: () = c.query(&cmd).await.expect("ACL SETUSER");
                }
                d.write_acl_file(&plan.acl_file);
                // The stored file is valid and says the same as the live state.
                let _: () = c
                    .query(redis::cmd("ACL").arg("LOAD"))
                    .await
                    .expect("ACL LOAD");
            }
        };

        let add = rotation_step(&old, &new, &repl, RotationStep::AddNew).expect("add");
        send(add, old_creds.clone()).await;
        assert_eq!(
            ping(&d, port, &old_creds).await.as_deref(),
            Ok("PONG"),
            "old must still work"
        );
        assert_eq!(
            ping(&d, port, &new_creds).await.as_deref(),
            Ok("PONG"),
            "new must work"
        );

        let remove = rotation_step(&old, &new, &repl, RotationStep::RemoveOld).expect("remove");
        send(remove, new_creds.clone()).await;
        assert!(
            ping(&d, port, &old_creds).await.is_err(),
            "old must be refused"
        );
        assert_eq!(ping(&d, port, &new_creds).await.as_deref(), Ok("PONG"));

        assert_eq!(run_id(&d, port).await, before, "the server was restarted");
    })
    .await
    .expect("test took longer than 60 s");
}

async fn facts(d: &Deployment, topo: &Topology, labels: &[Option<&str>]) -> Vec<PodFacts> {
    let mut out = Vec::new();
    for (i, port) in topo.server_ports.iter().enumerate() {
        let replication = primary::replication_info(
            &Deployment::endpoint(*port),
            &d.tls,
            &Deployment::replication(),
            dataplane::CALL_TIMEOUT,
        )
        .await
        .ok();
        out.push(PodFacts {
            name: format!("a-redis-{i}"),
            host: "127.0.0.1".into(),
            ip: Some("127.0.0.1".into()),
            port: *port,
            ready: replication.is_some(),
            role_label: labels[i].map(String::from),
            replication,
        });
    }
    out
}

async fn view(d: &Deployment, topo: &Topology) -> SentinelView {
    let sentinels: Vec<_> = topo
        .sentinel_ports
        .iter()
        .map(|p| Deployment::endpoint(*p))
        .collect();
    primary::sentinel_view(
        &sentinels,
        &d.tls,
        &Deployment::replication(),
        "a",
        dataplane::CALL_TIMEOUT,
    )
    .await
}

async fn sentinel_master(d: &Deployment, port: u16) -> Option<HashMap<String, String>> {
    let mut c = primary::connect(
        &Deployment::endpoint(port),
        &d.tls,
        &Deployment::replication(),
        dataplane::CALL_TIMEOUT,
    )
    .await
    .ok()?;
    c.query(redis::cmd("SENTINEL").arg("master").arg("a"))
        .await
        .ok()
}

async fn replica_synced(d: &Deployment, port: u16, primary_port: u16) -> bool {
    let Some(text) = info(d, port).await else {
        return false;
    };
    let Some(r) = primary::parse_info(&text) else {
        return false;
    };
    r.role == ServerRole::Replica
        && r.master_link_up
        && r.master_port == Some(primary_port)
        && r.keys >= 1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_failover_and_empty_primary_restart() {
    tokio::time::timeout(Duration::from_secs(170), async {
        let d = Deployment::new(dataplane::cache(2, Persistence::AppendOnly));
        let topo = Topology::new(3, 3);
        let p = &topo.server_ports;

        let mut servers = Vec::new();
        for i in 0..3 {
            let s = d.start_server(i, &topo);
            assert!(
                s.wait_listening(STARTUP),
                "server {i} did not start:\n{}",
                d.log(&format!("server-{i}"))
            );
            servers.push(s);
        }
        // Write through the primary, read on the replicas: replication runs
        // with the replication user over TLS.
        let app = Deployment::app(APP_PASSWORD);
        let mut c = primary::connect(
            &Deployment::endpoint(p[0]),
            &d.tls,
            &app,
            dataplane::CALL_TIMEOUT,
        )
        .await
        .expect("primary");
        let _: () = c
            .query(redis::cmd("SET").arg("k").arg("v"))
            .await
            .expect("SET");
        drop(c);
        for i in 1..3 {
            let ok = eventually(Duration::from_secs(20), || async {
                replica_synced(&d, p[i], p[0]).await.then_some(())
            })
            .await;
            assert!(
                ok.is_some(),
                "replica {i} did not sync:\n{}",
                d.log(&format!("server-{i}"))
            );
        }

        let mut sentinels = Vec::new();
        for i in 0..3 {
            let s = d.start_sentinel(i, &topo);
            assert!(
                s.wait_listening(STARTUP),
                "sentinel {i} did not start:\n{}",
                d.log(&format!("sentinel-{i}"))
            );
            sentinels.push(s);
        }
        for (i, port) in topo.sentinel_ports.iter().enumerate() {
            let known = eventually(Duration::from_secs(30), || async {
                let m = sentinel_master(&d, *port).await?;
                (m.get("num-other-sentinels").map(String::as_str) == Some("2")
                    && m.get("num-slaves").map(String::as_str) == Some("2"))
                .then_some(())
            })
            .await;
            assert!(
                known.is_some(),
                "sentinel {i} did not see its peers:\n{}",
                d.log(&format!("sentinel-{i}"))
            );
        }
        let labels = [None, None, None];
        let first = decide(&view(&d, &topo).await, &facts(&d, &topo, &labels).await);
        assert_eq!(first.outcome, Outcome::Primary("a-redis-0".into()));

        // The primary crashes: Sentinel promotes a replica, and so do we.
        servers[0].kill();
        let promoted = eventually(Duration::from_secs(60), || async {
            match view(&d, &topo).await {
                SentinelView::Primary { port, .. } if port != p[0] => Some(port),
                _ => None,
            }
        })
        .await
        .unwrap_or_else(|| panic!("no failover:\n{}", d.log("sentinel-0")));
        let new_index = p.iter().position(|x| *x == promoted).expect("a known pod");
        let labels = [Some("primary"), Some("replica"), Some("replica")];
        let after = eventually(Duration::from_secs(20), || async {
            let d = decide(&view(&d, &topo).await, &facts(&d, &topo, &labels).await);
            matches!(d.outcome, Outcome::Primary(_)).then_some(d)
        })
        .await
        .expect("a decision after the failover");
        assert_eq!(
            after.outcome,
            Outcome::Primary(format!("a-redis-{new_index}"))
        );
        assert!(after
            .relabel
            .iter()
            .any(|r| r.pod == "a-redis-0" && r.role == "replica"));

        // The old primary comes back with an empty data dir: the startup
        // script makes it a replica of the new primary.
        let data0 = d.dir("server-0/data");
        std::fs::remove_dir_all(&data0).expect("wipe data");
        std::fs::create_dir_all(&data0).expect("data dir");
        servers[0] = d.start_server(0, &topo);
        assert!(
            servers[0].wait_listening(STARTUP),
            "old primary did not restart:\n{}",
            d.log("server-0")
        );
        let synced = eventually(Duration::from_secs(40), || async {
            replica_synced(&d, p[0], promoted).await.then_some(())
        })
        .await;
        assert!(
            synced.is_some(),
            "old primary is not a synced replica:\n{}",
            d.log("server-0")
        );
        assert!(std::fs::read_to_string(d.root.path().join("server-0.log"))
            .unwrap_or_default()
            .contains(&format!("starting as a replica of 127.0.0.1 {promoted}")));

        let mut labels = [Some("replica"), Some("replica"), Some("replica")];
        labels[new_index] = Some("primary");
        let last = decide(&view(&d, &topo).await, &facts(&d, &topo, &labels).await);
        assert_eq!(
            last.outcome,
            Outcome::Primary(format!("a-redis-{new_index}"))
        );
        assert!(
            last.relabel.is_empty(),
            "labels already right: {:?}",
            last.relabel
        );

        // Had Sentinel named the empty pod, it would have been refused.
        let mut pods = facts(&d, &topo, &labels).await;
        if let Some(r) = pods[0].replication.as_mut() {
            r.role = ServerRole::Primary;
            r.keys = 0;
            r.master_repl_offset = 0;
        }
        let forced = SentinelView::Primary {
            host: "127.0.0.1".into(),
            port: p[0],
        };
        assert_eq!(
            decide(&forced, &pods).outcome,
            Outcome::RefusedEmptyPrimary("a-redis-0".into())
        );
        drop(sentinels);
        drop(servers);
    })
    .await
    .expect("test took longer than 170 s");
}
