//! The AWS provider against the moto emulator (real HTTP, real SDK
//! serialization, moto's own state) for what moto implements: VPC subnets,
//! security groups and their rules, cache subnet groups, replication group
//! create → describe → modify (node type) → delete, and tags.
//!
//! The tests start `moto_server` themselves on a free 127.0.0.1 port and stop
//! it when the last test is done. Each test gets its own moto account through
//! the `x-moto-account-id` header, so tests running in parallel share nothing.
//! SDK retries are off: moto answers what it lacks with HTTP 500.
//!
//! moto is found at `$MOTO_SERVER`, else `.venv/bin/moto_server` in the
//! repository; `scripts/test` installs it there (pinned in requirements-test.txt).
//!
//! Not covered here (moto lacks them; see tests/aws_mocked): parameter
//! groups and parameters, subnet group modify/delete, deletion reaching
//! "gone" (moto keeps a deleted group `deleting` forever), reader endpoints.

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_elasticache::config::retry::RetryConfig;
use aws_sdk_elasticache::config::{Credentials, Intercept, SharedCredentialsProvider};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextMut;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use redis_cache_operator::api::{ClusterMode, Engine};
use redis_cache_operator::backends::elasticache::api::{
    Companions, ElastiCacheApi, GroupStatus, ReplicationGroupChange,
};
use redis_cache_operator::backends::elasticache::aws::clients::ClientConfigs;
use redis_cache_operator::backends::elasticache::aws::metrics::AwsCallMetrics;
use redis_cache_operator::backends::elasticache::aws::operations::Operation;
use redis_cache_operator::backends::elasticache::aws::{AwsElastiCache, AwsSettings};
use redis_cache_operator::backends::elasticache::desired::{
    DesiredNetwork, DesiredReplicationGroup, DesiredSecurityGroup, DesiredSubnetGroup,
};
use redis_cache_operator::backends::Credential;
use redis_cache_operator::backends::{Deletion, ErrorClass};
use redis_cache_operator::backends::{Ownership, TAG_OWNER_UID, TAG_RESOURCE};

// ---------------------------------------------------------------- the server

struct Server {
    child: Child,
    addr: SocketAddr,
    users: usize,
}

static SERVER: Mutex<Option<Server>> = Mutex::new(None);

fn moto_binary() -> PathBuf {
    match std::env::var_os("MOTO_SERVER") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/moto_server"),
    }
}

/// Holds the shared moto server while a test runs.
struct Moto {
    addr: SocketAddr,
}

impl Moto {
    fn start() -> Moto {
        let mut slot = SERVER.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(server) = slot.as_mut() {
            server.users += 1;
            return Moto { addr: server.addr };
        }
        let binary = moto_binary();
        assert!(
            binary.exists(),
            "moto_server not found at {}: run scripts/test (it installs the pinned moto[server] into .venv), or point MOTO_SERVER at a moto_server binary",
            binary.display()
        );
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new(&binary)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", binary.display()));
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            assert!(
                Instant::now() < deadline,
                "moto_server did not listen on {addr} within 30 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        *slot = Some(Server {
            child,
            addr,
            users: 1,
        });
        Moto { addr }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let mut slot = SERVER.lock().unwrap_or_else(|e| e.into_inner());
        let last = match slot.as_mut() {
            Some(server) => {
                server.users -= 1;
                server.users == 0
            }
            None => false,
        };
        if last {
            if let Some(mut server) = slot.take() {
                let _ = server.child.kill();
                let _ = server.child.wait();
            }
        }
    }
}

/// Puts every request of one test into its own moto account.
#[derive(Debug)]
struct MotoAccount(String);

impl Intercept for MotoAccount {
    fn name(&self) -> &'static str {
        "MotoAccount"
    }

    fn modify_before_transmit(
        &self,
        context: &mut BeforeTransmitInterceptorContextMut<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        context
            .request_mut()
            .headers_mut()
            .insert("x-moto-account-id", self.0.clone());
        Ok(())
    }
}

static NEXT_ACCOUNT: AtomicU64 = AtomicU64::new(100_000_000_001);

/// One test's world: the server, its account, the provider and raw clients
/// for setting up and checking.
struct World {
    _moto: Moto,
    provider: AwsElastiCache,
    metrics: AwsCallMetrics,
    ec2: aws_sdk_ec2::Client,
    elasticache: aws_sdk_elasticache::Client,
}

fn world() -> World {
    let moto = Moto::start();
    let account = format!("{:012}", NEXT_ACCOUNT.fetch_add(1, Ordering::SeqCst));
    let config = SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
            "testing", "testing", None, None, "moto",
        )))
        .endpoint_url(format!("http://{}", moto.addr))
        .retry_config(RetryConfig::disabled())
        .build();
    let mut configs = ClientConfigs::from(&config);
    configs.elasticache = configs
        .elasticache
        .interceptor(MotoAccount(account.clone()));
    configs.ec2 = configs.ec2.interceptor(MotoAccount(account.clone()));
    configs.tagging = configs.tagging.interceptor(MotoAccount(account));
    let metrics = AwsCallMetrics::new();
    // Companion listings are read again after half a second, so a change
    // made behind the operator's back is seen within a test.
    let settings = AwsSettings {
        rate_limit: 1000.0,
        burst: 1000,
        companion_refresh: LISTING_REFRESH,
        ..AwsSettings::default()
    };
    World {
        _moto: moto,
        provider: AwsElastiCache::from_configs(configs.clone(), settings, metrics.clone()),
        metrics,
        ec2: aws_sdk_ec2::Client::from_conf(configs.ec2.build()),
        elasticache: aws_sdk_elasticache::Client::from_conf(configs.elasticache.build()),
    }
}

// ---------------------------------------------------------------- fixtures

const ID: &str = "k8s-shop-sessions";

/// How long the provider trusts its companion listings in these tests.
const LISTING_REFRESH: Duration = Duration::from_millis(500);

fn owner() -> Ownership {
    Ownership {
        owner_uid: "uid-sessions".into(),
        resource: "shop/sessions".into(),
        cluster: "k8s".into(),
    }
}

fn tags() -> BTreeMap<String, String> {
    let mut t = owner().tags();
    t.insert("team".into(), "payments".into());
    t
}

struct Vpc {
    id: String,
    subnets: Vec<String>,
}

async fn vpc(w: &World) -> Vpc {
    let vpc = w
        .ec2
        .create_vpc()
        .cidr_block("10.20.0.0/16")
        .send()
        .await
        .expect("create vpc");
    let id = vpc
        .vpc()
        .and_then(|v| v.vpc_id())
        .expect("vpc id")
        .to_string();
    let mut subnets = Vec::new();
    for (cidr, az) in [
        ("10.20.1.0/24", "us-east-1a"),
        ("10.20.2.0/24", "us-east-1b"),
    ] {
        let s = w
            .ec2
            .create_subnet()
            .vpc_id(&id)
            .cidr_block(cidr)
            .availability_zone(az)
            .send()
            .await
            .expect("create subnet");
        subnets.push(
            s.subnet()
                .and_then(|s| s.subnet_id())
                .expect("subnet id")
                .to_string(),
        );
    }
    Vpc { id, subnets }
}

fn network(subnet_group: DesiredSubnetGroup, cidrs: &[&str], groups: &[&str]) -> DesiredNetwork {
    DesiredNetwork {
        subnet_group,
        security_group: DesiredSecurityGroup {
            name: ID.into(),
            description: "redis-cache-operator: RedisCache shop/sessions".into(),
            port: 6379,
            allowed_cidrs: cidrs.iter().map(|s| s.to_string()).collect(),
            allowed_security_group_ids: groups.iter().map(|s| s.to_string()).collect(),
        },
        extra_security_group_ids: vec![],
    }
}

fn managed(vpc: &Vpc) -> DesiredSubnetGroup {
    DesiredSubnetGroup::Managed {
        name: ID.into(),
        subnet_ids: vpc.subnets.clone(),
        description: "redis-cache-operator: RedisCache shop/sessions".into(),
    }
}

/// The ingress of a security group as (port, source) pairs.
async fn ingress(w: &World, group_id: &str) -> Vec<(i32, String)> {
    let out = w
        .ec2
        .describe_security_groups()
        .group_ids(group_id)
        .send()
        .await
        .expect("describe sg");
    let group = &out.security_groups()[0];
    let mut rules = Vec::new();
    for p in group.ip_permissions() {
        let port = p.from_port().unwrap_or(-1);
        rules.extend(
            p.ip_ranges()
                .iter()
                .filter_map(|r| r.cidr_ip())
                .map(|c| (port, c.to_string())),
        );
        rules.extend(
            p.user_id_group_pairs()
                .iter()
                .filter_map(|g| g.group_id())
                .map(|g| (port, g.to_string())),
        );
    }
    rules.sort();
    rules
}

async fn elasticache_tags(w: &World, arn: &str) -> BTreeMap<String, String> {
    let out = w
        .elasticache
        .list_tags_for_resource()
        .resource_name(arn)
        .send()
        .await
        .expect("list tags");
    out.tag_list()
        .iter()
        .map(|t| {
            (
                t.key().unwrap_or_default().to_string(),
                t.value().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

fn desired_group(cluster_mode: ClusterMode, shards: i32, replicas: i32) -> DesiredReplicationGroup {
    DesiredReplicationGroup {
        id: ID.into(),
        description: "redis-cache-operator: RedisCache shop/sessions".into(),
        engine: Engine::Redis,
        engine_version: "7.1".into(),
        node_type: "cache.t3.micro".into(),
        cluster_mode,
        shards,
        replicas_per_shard: replicas,
        multi_az: replicas > 0,
        automatic_failover: replicas > 0 || cluster_mode == ClusterMode::Enabled,
        port: 6379,
        transit_encryption: true,
        at_rest_encryption: true,
        kms_key_id: None,
        snapshot_retention_days: 1,
        snapshot_window: Some("03:00-04:00".into()),
        maintenance_window: Some("sun:05:00-sun:06:00".into()),
        apply_immediately: true,
    }
}

// ---------------------------------------------------------------- tests

#[tokio::test]
async fn network_is_created_synced_and_deleted() {
    let w = world();
    let vpc = vpc(&w).await;
    let other = w
        .ec2
        .create_security_group()
        .group_name("app")
        .description("the app")
        .vpc_id(&vpc.id)
        .send()
        .await
        .expect("app sg");
    let app_sg = other.group_id().expect("id").to_string();

    let desired = network(
        managed(&vpc),
        &["10.20.0.0/16", "192.168.0.0/24"],
        &[&app_sg],
    );
    let state = w
        .provider
        .ensure_network(&owner(), &desired, &tags())
        .await
        .expect("network");
    assert_eq!(state.subnet_group_name, ID);
    let sg = state.security_group_id.clone();

    // The subnet group: our subnets, our VPC, our tags.
    let groups = w
        .elasticache
        .describe_cache_subnet_groups()
        .cache_subnet_group_name(ID)
        .send()
        .await
        .expect("subnet group");
    let group = &groups.cache_subnet_groups()[0];
    assert_eq!(group.vpc_id(), Some(vpc.id.as_str()));
    let mut subnets: Vec<&str> = group
        .subnets()
        .iter()
        .filter_map(|s| s.subnet_identifier())
        .collect();
    subnets.sort();
    let mut want: Vec<&str> = vpc.subnets.iter().map(String::as_str).collect();
    want.sort();
    assert_eq!(subnets, want);
    assert_eq!(
        elasticache_tags(&w, group.arn().expect("arn")).await,
        tags()
    );

    // The security group: in the VPC, tagged, ingress on 6379 from exactly the sources.
    let described = w
        .ec2
        .describe_security_groups()
        .group_ids(&sg)
        .send()
        .await
        .expect("sg");
    let group = &described.security_groups()[0];
    assert_eq!(group.vpc_id(), Some(vpc.id.as_str()));
    assert_eq!(group.group_name(), Some(ID));
    let sg_tags: BTreeMap<String, String> = group
        .tags()
        .iter()
        .map(|t| {
            (
                t.key().unwrap_or_default().to_string(),
                t.value().unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert_eq!(sg_tags, tags());
    assert_eq!(
        ingress(&w, &sg).await,
        vec![
            (6379, "10.20.0.0/16".to_string()),
            (6379, "192.168.0.0/24".to_string()),
            (6379, app_sg.clone()),
        ]
    );
    let egress = group.ip_permissions_egress().len();

    // Someone opens port 22 by hand; the spec drops a CIDR and the SG source.
    w.ec2
        .authorize_security_group_ingress()
        .group_id(&sg)
        .ip_permissions(
            aws_sdk_ec2::types::IpPermission::builder()
                .ip_protocol("tcp")
                .from_port(22)
                .to_port(22)
                .ip_ranges(
                    aws_sdk_ec2::types::IpRange::builder()
                        .cidr_ip("0.0.0.0/0")
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .expect("manual rule");
    // The change is seen once the listing is read again.
    tokio::time::sleep(LISTING_REFRESH).await;
    let desired = network(managed(&vpc), &["10.20.0.0/16", "172.16.0.0/12"], &[]);
    let again = w
        .provider
        .ensure_network(&owner(), &desired, &tags())
        .await
        .expect("network again");
    assert_eq!(
        again.security_group_id, sg,
        "found by name and VPC, not created twice"
    );
    assert_eq!(
        ingress(&w, &sg).await,
        vec![
            (6379, "10.20.0.0/16".to_string()),
            (6379, "172.16.0.0/12".to_string())
        ]
    );
    let described = w
        .ec2
        .describe_security_groups()
        .group_ids(&sg)
        .send()
        .await
        .expect("sg");
    assert_eq!(
        described.security_groups()[0].ip_permissions_egress().len(),
        egress,
        "egress untouched"
    );

    // Settled: a third ensure changes nothing.
    let authorized = w
        .metrics
        .count(Operation::AuthorizeSecurityGroupIngress, "success");
    let revoked = w
        .metrics
        .count(Operation::RevokeSecurityGroupIngress, "success");
    w.provider
        .ensure_network(&owner(), &desired, &tags())
        .await
        .expect("network settled");
    assert_eq!(
        w.metrics
            .count(Operation::AuthorizeSecurityGroupIngress, "success"),
        authorized
    );
    assert_eq!(
        w.metrics
            .count(Operation::RevokeSecurityGroupIngress, "success"),
        revoked
    );
    assert_eq!(
        w.metrics
            .count(Operation::CreateCacheSubnetGroup, "success"),
        1
    );
    assert_eq!(
        w.metrics.count(Operation::CreateSecurityGroup, "success"),
        1
    );

    assert_eq!(
        w.provider
            .delete_security_group(&owner(), ID)
            .await
            .expect("delete"),
        Deletion::Gone
    );
    let left = w
        .ec2
        .describe_security_groups()
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("group-name")
                .values(ID)
                .build(),
        )
        .send()
        .await
        .expect("describe");
    assert!(left.security_groups().is_empty());
    assert_eq!(
        w.provider
            .delete_security_group(&owner(), ID)
            .await
            .expect("again"),
        Deletion::Gone
    );
}

#[tokio::test]
async fn network_tags_follow_the_spec() {
    let w = world();
    let vpc = vpc(&w).await;
    let desired = network(managed(&vpc), &["10.20.0.0/16"], &[]);
    let state = w
        .provider
        .ensure_network(&owner(), &desired, &tags())
        .await
        .expect("network");
    // `team` goes, `env` comes; the ownership tags stay.
    let mut wanted = owner().tags();
    wanted.insert("env".into(), "prod".into());
    w.provider
        .ensure_network(&owner(), &desired, &wanted)
        .await
        .expect("network with new tags");
    let described = w
        .ec2
        .describe_security_groups()
        .group_ids(&state.security_group_id)
        .send()
        .await
        .expect("sg");
    let sg_tags: BTreeMap<String, String> = described.security_groups()[0]
        .tags()
        .iter()
        .map(|t| {
            (
                t.key().unwrap_or_default().to_string(),
                t.value().unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert_eq!(sg_tags, wanted);
    let groups = w
        .elasticache
        .describe_cache_subnet_groups()
        .cache_subnet_group_name(ID)
        .send()
        .await
        .expect("subnet group");
    let arn = groups.cache_subnet_groups()[0]
        .arn()
        .expect("arn")
        .to_string();
    assert_eq!(elasticache_tags(&w, &arn).await, wanted);
    // Settled: no tag call the next time.
    let calls = |w: &World| {
        w.metrics.count(Operation::CreateTags, "success")
            + w.metrics.count(Operation::DeleteTags, "success")
            + w.metrics.count(Operation::AddTagsToResource, "success")
            + w.metrics
                .count(Operation::RemoveTagsFromResource, "success")
    };
    let before = calls(&w);
    w.provider
        .ensure_network(&owner(), &desired, &wanted)
        .await
        .expect("settled");
    assert_eq!(calls(&w), before);
}

#[tokio::test]
async fn foreign_security_group_and_subnet_group_are_never_touched() {
    let w = world();
    let vpc = vpc(&w).await;
    let foreign = BTreeMap::from([
        (TAG_OWNER_UID.to_string(), "someone-else".to_string()),
        (TAG_RESOURCE.to_string(), "other/cache".to_string()),
    ]);
    w.ec2
        .create_security_group()
        .group_name(ID)
        .description("not ours")
        .vpc_id(&vpc.id)
        .tag_specifications(
            aws_sdk_ec2::types::TagSpecification::builder()
                .resource_type(aws_sdk_ec2::types::ResourceType::SecurityGroup)
                .set_tags(Some(
                    foreign
                        .iter()
                        .map(|(k, v)| aws_sdk_ec2::types::Tag::builder().key(k).value(v).build())
                        .collect(),
                ))
                .build(),
        )
        .send()
        .await
        .expect("foreign sg");
    let err = w
        .provider
        .ensure_network(
            &owner(),
            &network(managed(&vpc), &["10.20.0.0/16"], &[]),
            &tags(),
        )
        .await
        .expect_err("conflict");
    assert_eq!(err.class, ErrorClass::Conflict, "{err}");
    assert!(err.message.contains("other/cache"), "{err}");
    assert_eq!(
        w.metrics
            .count(Operation::AuthorizeSecurityGroupIngress, "success"),
        0
    );
    assert_eq!(
        w.provider
            .delete_security_group(&owner(), ID)
            .await
            .expect("delete"),
        Deletion::NotOwned
    );

    // A subnet group someone else made under our name.
    w.elasticache
        .create_cache_subnet_group()
        .cache_subnet_group_name("k8s-shop-other")
        .cache_subnet_group_description("not ours")
        .set_subnet_ids(Some(vpc.subnets.clone()))
        .tags(
            aws_sdk_elasticache::types::Tag::builder()
                .key(TAG_OWNER_UID)
                .value("someone-else")
                .build(),
        )
        .send()
        .await
        .expect("foreign subnet group");
    let theirs = DesiredSubnetGroup::Managed {
        name: "k8s-shop-other".into(),
        subnet_ids: vpc.subnets.clone(),
        description: "d".into(),
    };
    let err = w
        .provider
        .ensure_network(&owner(), &network(theirs, &["10.20.0.0/16"], &[]), &tags())
        .await
        .expect_err("conflict");
    assert_eq!(err.class, ErrorClass::Conflict, "{err}");
    assert!(err.message.contains("subnet group"), "{err}");
    assert_eq!(
        w.provider
            .delete_subnet_group(&owner(), "k8s-shop-other")
            .await
            .expect("delete"),
        Deletion::NotOwned
    );
}

#[tokio::test]
async fn an_existing_subnet_group_is_used_as_it_is() {
    let w = world();
    let vpc = vpc(&w).await;
    w.elasticache
        .create_cache_subnet_group()
        .cache_subnet_group_name("platform-cache-subnets")
        .cache_subnet_group_description("made by the platform team")
        .set_subnet_ids(Some(vec![vpc.subnets[0].clone()]))
        .send()
        .await
        .expect("subnet group");
    let existing = DesiredSubnetGroup::Existing {
        name: "platform-cache-subnets".into(),
    };
    let state = w
        .provider
        .ensure_network(
            &owner(),
            &network(existing, &["10.20.0.0/16"], &[]),
            &tags(),
        )
        .await
        .expect("network");
    assert_eq!(state.subnet_group_name, "platform-cache-subnets");
    let sg = w
        .ec2
        .describe_security_groups()
        .group_ids(&state.security_group_id)
        .send()
        .await
        .expect("sg");
    assert_eq!(
        sg.security_groups()[0].vpc_id(),
        Some(vpc.id.as_str()),
        "in the group's VPC"
    );
    assert_eq!(
        w.metrics
            .count(Operation::CreateCacheSubnetGroup, "success"),
        0
    );
    assert_eq!(
        w.metrics.count(Operation::ListTagsForResource, "success"),
        0,
        "not ours, not checked"
    );

    let missing = DesiredSubnetGroup::Existing {
        name: "nope".into(),
    };
    let err = w
        .provider
        .ensure_network(&owner(), &network(missing, &["10.20.0.0/16"], &[]), &tags())
        .await
        .expect_err("missing");
    assert_eq!(err.class, ErrorClass::Rejected, "{err}");
}

#[tokio::test]
async fn replication_group_create_describe_modify_delete() {
    let w = world();
    let vpc = vpc(&w).await;
    let net = w
        .provider
        .ensure_network(
            &owner(),
            &network(managed(&vpc), &["10.20.0.0/16"], &[]),
            &tags(),
        )
        .await
        .expect("network");
    let companions = Companions {
        parameter_group: "default.redis7".into(),
        subnet_group: net.subnet_group_name.clone(),
        security_group_ids: vec![net.security_group_id.clone()],
    };
    let desired = desired_group(ClusterMode::Disabled, 1, 1);
    let token = Credential::new("a1B2c3D4".repeat(8));
    assert_eq!(
        w.provider
            .observe_replication_group(&owner(), ID)
            .await
            .expect("observe"),
        None
    );
    let created = w
        .provider
        .create_replication_group(&owner(), &desired, &companions, &token, &tags())
        .await
        .expect("create");
    assert_eq!(created.id, ID);

    let seen = w
        .provider
        .observe_replication_group(&owner(), ID)
        .await
        .expect("observe")
        .expect("exists");
    assert_eq!(
        seen.status,
        GroupStatus::Available,
        "moto is available at once"
    );
    assert_eq!(seen.cluster_mode, Some(ClusterMode::Disabled));
    assert_eq!(seen.node_type.as_deref(), Some("cache.t3.micro"));
    assert_eq!(seen.engine.as_deref(), Some("redis"));
    assert_eq!((seen.shards, seen.replicas_per_shard), (1, 1));
    assert!(seen.multi_az && seen.automatic_failover);
    assert!(seen.transit_encryption && seen.at_rest_encryption && seen.auth_token_enabled);
    let endpoint = seen.endpoint.clone().expect("primary endpoint");
    assert!(
        endpoint.host.starts_with(&format!("master.{ID}.")),
        "{endpoint:?}"
    );
    assert_eq!(endpoint.port, 6379);
    let arn = seen.arn.clone().expect("arn");
    assert_eq!(elasticache_tags(&w, &arn).await, tags());

    // A create repeated after a crash finds its own group and continues.
    let again = w
        .provider
        .create_replication_group(&owner(), &desired, &companions, &token, &tags())
        .await
        .expect("ours: continue");
    assert_eq!(again.arn.as_deref(), Some(arn.as_str()));

    let modified = w
        .provider
        .modify_replication_group(
            &owner(),
            ID,
            &ReplicationGroupChange {
                node_type: Some("cache.t3.small".into()),
                apply_immediately: true,
                ..Default::default()
            },
        )
        .await
        .expect("modify");
    assert_eq!(modified.node_type.as_deref(), Some("cache.t3.small"));

    // Day 2 against moto: Multi-AZ and retention in one Modify, then tags
    // follow the spec (ownership tags kept), read back from moto itself.
    let modified = w
        .provider
        .modify_replication_group(
            &owner(),
            ID,
            &ReplicationGroupChange {
                multi_az: Some(false),
                automatic_failover: Some(false),
                snapshot_retention_days: Some(5),
                apply_immediately: true,
                ..Default::default()
            },
        )
        .await
        .expect("modify multi-AZ and retention");
    assert!(!modified.multi_az && !modified.automatic_failover);
    assert_eq!(modified.snapshot_retention_days, Some(5));
    // `team` goes, `env` comes.
    let mut wanted = owner().tags();
    wanted.insert("env".into(), "prod".into());
    let change = redis_cache_operator::backends::elasticache::diff::tag_change(&wanted, &tags());
    assert_eq!(change.remove, ["team"]);
    w.provider
        .update_tags(&owner(), ID, &change)
        .await
        .expect("update tags");
    assert_eq!(elasticache_tags(&w, &arn).await, wanted);

    let snapshot = format!("{ID}-final-20261122t101500z");
    assert_eq!(
        w.provider
            .delete_replication_group(&owner(), ID, Some(&snapshot))
            .await
            .expect("delete"),
        Deletion::InProgress
    );
    let seen = w
        .provider
        .observe_replication_group(&owner(), ID)
        .await
        .expect("observe")
        .expect("still there while deleting");
    assert_eq!(seen.status, GroupStatus::Deleting);
    assert_eq!(
        w.provider
            .delete_replication_group(&owner(), ID, Some(&snapshot))
            .await
            .expect("delete"),
        Deletion::InProgress
    );
    assert_eq!(
        w.metrics
            .count(Operation::DeleteReplicationGroup, "success"),
        1,
        "a deleting group is not deleted again"
    );
}

#[tokio::test]
async fn cluster_mode_group_has_a_configuration_endpoint() {
    let w = world();
    let vpc = vpc(&w).await;
    let net = w
        .provider
        .ensure_network(
            &owner(),
            &network(managed(&vpc), &["10.20.0.0/16"], &[]),
            &tags(),
        )
        .await
        .expect("network");
    let companions = Companions {
        parameter_group: "default.redis7.cluster.on".into(),
        subnet_group: net.subnet_group_name,
        security_group_ids: vec![net.security_group_id],
    };
    let state = w
        .provider
        .create_replication_group(
            &owner(),
            &desired_group(ClusterMode::Enabled, 3, 1),
            &companions,
            &Credential::new("x".repeat(64)),
            &tags(),
        )
        .await
        .expect("create");
    assert_eq!(state.cluster_mode, Some(ClusterMode::Enabled));
    assert_eq!((state.shards, state.replicas_per_shard), (3, 1));
    let endpoint = state.endpoint.expect("configuration endpoint");
    assert!(
        endpoint.host.starts_with(&format!("clustercfg.{ID}.")),
        "{endpoint:?}"
    );
    assert_eq!(state.reader_endpoint, None);
}

#[tokio::test]
async fn foreign_replication_group_is_a_conflict() {
    let w = world();
    w.elasticache
        .create_replication_group()
        .replication_group_id(ID)
        .replication_group_description("not ours")
        .engine("redis")
        .cache_node_type("cache.t3.micro")
        .tags(
            aws_sdk_elasticache::types::Tag::builder()
                .key(TAG_OWNER_UID)
                .value("someone-else")
                .build(),
        )
        .send()
        .await
        .expect("foreign group");
    let err = w
        .provider
        .observe_replication_group(&owner(), ID)
        .await
        .expect_err("conflict");
    assert_eq!(err.class, ErrorClass::Conflict, "{err}");
    let err = w
        .provider
        .create_replication_group(
            &owner(),
            &desired_group(ClusterMode::Disabled, 1, 0),
            &Companions {
                parameter_group: "default.redis7".into(),
                subnet_group: "x".into(),
                security_group_ids: vec![],
            },
            &Credential::new("y".repeat(64)),
            &tags(),
        )
        .await
        .expect_err("conflict");
    assert_eq!(err.class, ErrorClass::Conflict, "{err}");
    assert_eq!(
        w.provider
            .delete_replication_group(&owner(), ID, None)
            .await
            .expect("delete"),
        Deletion::NotOwned
    );
    let still = w
        .elasticache
        .describe_replication_groups()
        .replication_group_id(ID)
        .send()
        .await
        .expect("describe");
    assert_eq!(still.replication_groups()[0].status(), Some("available"));
}

#[tokio::test]
async fn what_moto_lacks_is_transient_never_not_found() {
    // moto answers parameter group calls with an HTML 500 and no code: the
    // provider must not take that for "not found" and create blindly.
    let w = world();
    let desired = redis_cache_operator::backends::elasticache::desired::DesiredParameterGroup {
        name: format!("{ID}-params"),
        family: "redis7".into(),
        description: "d".into(),
        parameters: BTreeMap::new(),
    };
    let err = w
        .provider
        .ensure_parameter_group(&owner(), &desired, &tags())
        .await
        .expect_err("moto lacks it");
    assert_eq!(err.class, ErrorClass::Transient, "{err}");
    assert_eq!(err.code, None);
    assert_eq!(
        w.metrics
            .count(Operation::CreateCacheParameterGroup, "success"),
        0
    );
}
