//! A small test "kubelet" (and StatefulSet controller) for the API emulator:
//! for every data and Sentinel StatefulSet of a cache it
//! creates pods `<name>-<i>` from the template, and for each pod starts a
//! real `redis-server` the way the pod would: the ConfigMap and Secret
//! volumes written to a directory per pod (paths in the files rewritten to
//! it), the pod's own start script run with the image's binary names
//! replaced by Debian's, on a loopback address of its own (the pod IP).
//! A pod whose server accepts connections is marked Ready with that IP.
//! A deleted pod's server is killed and the pod recreated (OnDelete), with
//! the revision of the current template. Sentinel pods run `redis-sentinel`
//! the same way. Each pod keeps its address across restarts (as its DNS name
//! does in a cluster), and the scripts get their peers as addresses
//! (`PODS`, `FIRST_POD`, `SENTINELS`, `ANNOUNCE_HOST`), since the pods' DNS
//! names do not resolve here.
//!
//! Include it with `#[path = "support/kubelet.rs"] mod kubelet;` next to
//! the apiserver module.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use base64::Engine as _;
use serde_json::{json, Value};
use tokio::process::{Child, Command};

use super::apiserver::ApiServer;

static NEXT_IP: AtomicU32 = AtomicU32::new(0);

/// The loopback address of a pod (127.77.x.y), the same for every
/// incarnation of `namespace/name`, as the pod's DNS name is; distinct per
/// pod, so every pod can use the same port.
fn ip_of(kubelet: u32, key: &str) -> Ipv4Addr {
    static IPS: OnceLock<Mutex<HashMap<String, Ipv4Addr>>> = OnceLock::new();
    let mut ips = IPS
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    *ips.entry(format!("{kubelet}:{key}")).or_insert_with(|| {
        let n = NEXT_IP.fetch_add(1, Ordering::Relaxed);
        Ipv4Addr::new(127, 77, (n / 250) as u8, (n % 250 + 1) as u8)
    })
}

/// `ip:port` of every pod of the StatefulSet `ns/name`, space-separated
/// (what the scripts reach through the pods' DNS names in a cluster).
fn peers(kubelet: u32, ns: &str, name: &str, count: i64, port: u16) -> String {
    (0..count)
        .map(|i| format!("{}:{port}", ip_of(kubelet, &format!("{ns}/{name}-{i}"))))
        .collect::<Vec<_>>()
        .join(" ")
}

struct Running {
    uid: String,
    ip: Ipv4Addr,
    child: Child,
    _dir: tempfile::TempDir,
}

/// The running pods; dropping it kills every server.
pub struct Kubelet {
    pods: Arc<Mutex<HashMap<String, Running>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Kubelet {
    fn drop(&mut self) {
        self.task.abort();
        if let Ok(mut pods) = self.pods.lock() {
            for (_, mut r) in pods.drain() {
                let _ = r.child.start_kill();
            }
        }
    }
}

fn s(v: &Value, pointer: &str) -> String {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

fn revision(sts: &Value) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    sts["spec"]["template"].to_string().hash(&mut h);
    format!("rev-{:x}", h.finish())
}

impl Kubelet {
    /// Starts acting on `server`'s StatefulSets every 200 ms.
    pub fn start(server: &ApiServer) -> Kubelet {
        server.register_status_subresource("", "v1", "pods");
        server.register_status_subresource("apps", "v1", "statefulsets");
        static KUBELETS: AtomicU32 = AtomicU32::new(0);
        let kubelet = KUBELETS.fetch_add(1, Ordering::Relaxed);
        let pods: Arc<Mutex<HashMap<String, Running>>> = Arc::default();
        let state = pods.clone();
        let client = server.client();
        let server_list = server.snapshotter();
        let task = tokio::spawn(async move {
            loop {
                step(kubelet, &client, &server_list, &state).await;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        Kubelet { pods, task }
    }

    /// What a running pod's server printed, by `namespace/name`.
    pub fn log(&self, key: &str) -> String {
        self.pods
            .lock()
            .ok()
            .and_then(|p| {
                p.get(key)
                    .and_then(|r| std::fs::read_to_string(r._dir.path().join("server.log")).ok())
            })
            .unwrap_or_default()
    }

    /// The address of a running pod, by `namespace/name`.
    pub fn pod_ip(&self, key: &str) -> Option<IpAddr> {
        self.pods.lock().ok()?.get(key).map(|r| IpAddr::V4(r.ip))
    }
}

async fn step(
    kubelet: u32,
    client: &kube::Client,
    snap: &super::apiserver::Snapshotter,
    state: &Arc<Mutex<HashMap<String, Running>>>,
) {
    let statefulsets = snap.list("apps", "statefulsets");
    let pods = snap.list("", "pods");
    let live: HashMap<String, Value> = pods
        .iter()
        .map(|p| {
            (
                format!("{}/{}", s(p, "/metadata/namespace"), s(p, "/metadata/name")),
                p.clone(),
            )
        })
        .collect();
    // Kill servers whose pod is gone or was replaced.
    {
        let mut running = state.lock().expect("kubelet state");
        running.retain(|key, r| {
            let keep = live
                .get(key)
                .is_some_and(|p| s(p, "/metadata/uid") == r.uid);
            if !keep {
                let _ = r.child.start_kill();
            }
            keep
        });
    }
    for sts in &statefulsets {
        let component = sts
            .pointer("/spec/template/metadata/labels/app.kubernetes.io~1component")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if component != "server" && component != "sentinel" {
            continue;
        }
        let ns = s(sts, "/metadata/namespace");
        let name = s(sts, "/metadata/name");
        let rev = revision(sts);
        let replicas = sts["spec"]["replicas"].as_i64().unwrap_or(1);
        // Scale down: pods beyond `replicas` go, highest ordinal first.
        for (key, p) in &live {
            let Some(ord) = key
                .strip_prefix(&format!("{ns}/{name}-"))
                .and_then(|o| o.parse::<i64>().ok())
            else {
                continue;
            };
            if ord >= replicas {
                let _ =
                    kube::Api::<k8s_openapi::api::core::v1::Pod>::namespaced(client.clone(), &ns)
                        .delete(&s(p, "/metadata/name"), &Default::default())
                        .await;
            }
        }
        let mut ready = 0;
        for i in 0..replicas {
            let pod_name = format!("{name}-{i}");
            let key = format!("{ns}/{pod_name}");
            let pod = match live.get(&key) {
                Some(p) => p.clone(),
                None => match create_pod(client, sts, &ns, &pod_name, &rev).await {
                    Some(p) => p,
                    None => continue,
                },
            };
            let uid = s(&pod, "/metadata/uid");
            let started = state.lock().expect("kubelet state").get(&key).map(|r| r.ip);
            let ip = match started {
                Some(ip) => ip,
                None => match start_server(kubelet, snap, &ns, &pod, &statefulsets).await {
                    Some((child, dir, ip)) => {
                        state.lock().expect("kubelet state").insert(
                            key.clone(),
                            Running {
                                uid: uid.clone(),
                                ip,
                                child,
                                _dir: dir,
                            },
                        );
                        ip
                    }
                    None => continue,
                },
            };
            let port = pod
                .pointer("/spec/containers/0/ports/0/containerPort")
                .and_then(Value::as_u64)
                .unwrap_or(6379) as u16;
            let up = tokio::net::TcpStream::connect((ip, port)).await.is_ok();
            let was_ready = pod
                .pointer("/status/conditions/0/status")
                .and_then(Value::as_str)
                == Some("True");
            if up {
                ready += 1;
            }
            if up != was_ready || s(&pod, "/status/podIP").is_empty() {
                let status = json!({"status": {
                    "phase": "Running",
                    "podIP": ip.to_string(),
                    "conditions": [{"type": "Ready", "status": if up { "True" } else { "False" }}],
                }});
                let _ =
                    kube::Api::<k8s_openapi::api::core::v1::Pod>::namespaced(client.clone(), &ns)
                        .patch_status(
                            &pod_name,
                            &Default::default(),
                            &kube::api::Patch::Merge(&status),
                        )
                        .await;
            }
        }
        let generation = sts["metadata"]["generation"].as_i64().unwrap_or(1);
        let want = json!({"status": {
            "observedGeneration": generation,
            "replicas": replicas,
            "readyReplicas": ready,
            "updateRevision": rev,
        }});
        if sts["status"]["readyReplicas"] != want["status"]["readyReplicas"]
            || sts["status"]["updateRevision"] != want["status"]["updateRevision"]
            || sts["status"]["observedGeneration"] != want["status"]["observedGeneration"]
        {
            let _ = kube::Api::<k8s_openapi::api::apps::v1::StatefulSet>::namespaced(
                client.clone(),
                &ns,
            )
            .patch_status(&name, &Default::default(), &kube::api::Patch::Merge(&want))
            .await;
        }
    }
}

async fn create_pod(
    client: &kube::Client,
    sts: &Value,
    ns: &str,
    name: &str,
    rev: &str,
) -> Option<Value> {
    let mut labels = sts["spec"]["template"]["metadata"]["labels"].clone();
    labels["controller-revision-hash"] = rev.into();
    let pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": ns,
            "labels": labels,
            "annotations": sts["spec"]["template"]["metadata"]["annotations"].clone(),
            "ownerReferences": [{
                "apiVersion": "apps/v1", "kind": "StatefulSet",
                "name": s(sts, "/metadata/name"), "uid": s(sts, "/metadata/uid"),
                "controller": true,
            }],
        },
        "spec": sts["spec"]["template"]["spec"].clone(),
    });
    // The StatefulSet controller's part: a claim per volumeClaimTemplate.
    for claim in sts["spec"]["volumeClaimTemplates"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let mut pvc = claim.clone();
        pvc["apiVersion"] = "v1".into();
        pvc["kind"] = "PersistentVolumeClaim".into();
        pvc["metadata"]["name"] = format!("{}-{name}", s(claim, "/metadata/name")).into();
        pvc["metadata"]["namespace"] = ns.into();
        if let Ok(pvc) =
            serde_json::from_value::<k8s_openapi::api::core::v1::PersistentVolumeClaim>(pvc)
        {
            let _ = kube::Api::<k8s_openapi::api::core::v1::PersistentVolumeClaim>::namespaced(
                client.clone(),
                ns,
            )
            .create(&Default::default(), &pvc)
            .await;
        }
    }
    let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(pod).ok()?;
    let created = kube::Api::<k8s_openapi::api::core::v1::Pod>::namespaced(client.clone(), ns)
        .create(&Default::default(), &pod)
        .await
        .ok()?;
    serde_json::to_value(created).ok()
}

fn decode(data: &Value) -> Vec<(String, Vec<u8>)> {
    data.as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| {
                    let b = base64::engine::general_purpose::STANDARD
                        .decode(v.as_str()?)
                        .ok()?;
                    Some((k.clone(), b))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Writes the pod's volumes and runs its start script; `None` while a
/// volume's source does not exist yet (the kubelet retries).
async fn start_server(
    kubelet: u32,
    snap: &super::apiserver::Snapshotter,
    ns: &str,
    pod: &Value,
    statefulsets: &[Value],
) -> Option<(Child, tempfile::TempDir, Ipv4Addr)> {
    let dir = tempfile::tempdir().ok()?;
    let root = dir.path().to_path_buf();
    let container = pod.pointer("/spec/containers/0")?;
    let volumes = pod.pointer("/spec/volumes")?.as_array()?.clone();
    let mounts = container["volumeMounts"].as_array()?.clone();
    let mut files: Vec<PathBuf> = Vec::new();
    let mut paths: Vec<(String, PathBuf)> = Vec::new();
    for m in &mounts {
        let mount_path = s(m, "/mountPath");
        let target = root.join(mount_path.trim_start_matches('/'));
        std::fs::create_dir_all(&target).ok()?;
        paths.push((mount_path.clone(), target.clone()));
        let Some(vol) = volumes.iter().find(|v| v["name"] == m["name"]) else {
            continue; // a PVC from the claim templates: an empty directory here
        };
        let entries: Vec<(String, Vec<u8>)> = if let Some(cm) = vol.get("configMap") {
            let obj = snap.get("", "configmaps", ns, &s(cm, "/name"))?;
            obj["data"]
                .as_object()
                .map(|d| {
                    d.iter()
                        .map(|(k, v)| {
                            (
                                k.clone(),
                                v.as_str().unwrap_or_default().as_bytes().to_vec(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default()
        } else if let Some(sec) = vol.get("secret") {
            let obj = snap.get("", "secrets", ns, &s(sec, "/secretName"))?;
            decode(&obj["data"])
        } else {
            Vec::new()
        };
        for (k, v) in entries {
            let f = target.join(&k);
            std::fs::write(&f, v).ok()?;
            files.push(f);
        }
    }
    // The files name the pod's paths: point them at this directory.
    paths.sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
    for f in &files {
        let Ok(mut text) = std::fs::read_to_string(f) else {
            continue;
        };
        // Two passes through placeholders, so a replaced path (which may
        // itself contain `/tmp/`) is never replaced again.
        for (i, (from, _)) in paths.iter().enumerate() {
            text = text.replace(&format!("{from}/"), &format!("\u{1}{i}\u{2}/"));
            text = text.replace(&format!(" {from}\n"), &format!(" \u{1}{i}\u{2}\n"));
            text = text.replace(&format!("{from}}}"), &format!("\u{1}{i}\u{2}}}"));
            text = text.replace(&format!("{from}\""), &format!("\u{1}{i}\u{2}\""));
        }
        for (i, (_, to)) in paths.iter().enumerate() {
            text = text.replace(&format!("\u{1}{i}\u{2}"), &to.display().to_string());
        }
        std::fs::write(f, text).ok()?;
    }
    let pod_name = s(pod, "/metadata/name");
    let ip = ip_of(kubelet, &format!("{ns}/{pod_name}"));
    let conf_dir = paths
        .iter()
        .find(|(p, _)| p == "/etc/redis/conf")
        .map(|(_, t)| t.clone())?;
    for conf in ["server.conf", "sentinel.conf"] {
        if let Ok(mut text) = std::fs::read_to_string(conf_dir.join(conf)) {
            text.push_str(&format!("bind {ip}\n"));
            std::fs::write(conf_dir.join(conf), text).ok()?;
        }
    }
    // The cache's StatefulSets: the data pods and (with replicas) the Sentinels.
    let cache = s(pod, "/metadata/labels/rediscache.dev~1cache");
    let of = |component: &str| {
        statefulsets.iter().find(|x| {
            s(x, "/metadata/namespace") == ns
                && s(x, "/spec/template/metadata/labels/rediscache.dev~1cache") == cache
                && s(
                    x,
                    "/spec/template/metadata/labels/app.kubernetes.io~1component",
                ) == component
        })
    };
    // Peers are addresses here: wait until the data StatefulSet exists, so
    // a Sentinel never starts without knowing where the data pods are.
    of("server")?;
    let server_port = of("server")
        .and_then(|x| x.pointer("/spec/template/spec/containers/0/ports/0/containerPort"))
        .and_then(Value::as_u64)
        .unwrap_or(6379) as u16;
    let (pods, first) = of("server")
        .map(|x| {
            let name = s(x, "/metadata/name");
            let n = x["spec"]["replicas"].as_i64().unwrap_or(1);
            (
                peers(kubelet, ns, &name, n, server_port),
                peers(kubelet, ns, &name, 1, server_port),
            )
        })
        .unwrap_or_default();
    let sentinels = of("sentinel")
        .map(|x| {
            let n = x["spec"]["replicas"].as_i64().unwrap_or(3);
            peers(kubelet, ns, &s(x, "/metadata/name"), n, 26379)
        })
        .unwrap_or_default();
    let env_of = |name: &str| -> Option<String> {
        let e = container["env"]
            .as_array()?
            .iter()
            .find(|e| e["name"] == name)?;
        if let Some(v) = e["value"].as_str() {
            return Some(v.replace("$(POD_NAME)", &s(pod, "/metadata/name")));
        }
        let r = e.pointer("/valueFrom/secretKeyRef")?;
        let obj = snap.get("", "secrets", ns, &s(r, "/name"))?;
        decode(&obj["data"])
            .into_iter()
            .find(|(k, _)| *k == s(r, "/key"))
            .and_then(|(_, v)| String::from_utf8(v).ok())
    };
    let script = container["command"]
        .as_array()?
        .get(1)?
        .as_str()?
        .to_string();
    let script = paths
        .iter()
        .find(|(p, _)| script.starts_with(p.as_str()))
        .map(|(p, t)| {
            t.join(
                script
                    .trim_start_matches(p.as_str())
                    .trim_start_matches('/'),
            )
        })?;
    let dirs = |p: &str| {
        paths
            .iter()
            .find(|(m, _)| m == p)
            .map(|(_, t)| t.display().to_string())
            .unwrap_or_default()
    };
    let log = std::fs::File::create(root.join("server.log")).ok()?;
    let child = Command::new("sh")
        .arg(&script)
        .env("SERVER", "redis-server")
        .env("SENTINEL_BIN", "redis-sentinel")
        .env("CLI", "redis-cli")
        // Peers by address: the pods' DNS names do not resolve here.
        .env("ANNOUNCE_HOST", ip.to_string())
        .env("PODS", pods)
        .env("FIRST_POD", first)
        .env("SENTINELS", sentinels)
        .env("WAIT_SECONDS", "60")
        .env("REDISCLI_AUTH", env_of("REDISCLI_AUTH").unwrap_or_default())
        .env("CONFIG_DIR", dirs("/etc/redis/conf"))
        .env("TLS_DIR", dirs("/etc/redis/tls"))
        .env("ACL_DIR", dirs("/etc/redis/acl"))
        .env("DATA_DIR", dirs("/data"))
        .env("RUN_DIR", dirs("/tmp"))
        .stdout(log.try_clone().ok()?)
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .ok()?;
    Some((child, dir, ip))
}
