//! The AWS emulator (tests/support/elasticache.rs) driven by the real SDK
//! clients — every resource kind's lifecycle, paging, tags, throttling and
//! error codes — and the operator's own AWS adapter against it.

#[path = "support/elasticache.rs"]
mod elasticache;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_ec2::types::{Filter, IpPermission, IpRange, ResourceType, TagSpecification};
use aws_sdk_elasticache::config::retry::RetryConfig;
use aws_sdk_elasticache::config::{Credentials, SharedCredentialsProvider};
use aws_sdk_elasticache::types::{AuthTokenUpdateStrategyType, ParameterNameValue, Tag};
use aws_sdk_resourcegroupstagging::types::TagFilter;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use elasticache::{ElastiCacheEmulator, EmulatorOptions, ACCOUNT, VPC};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct World {
    emu: ElastiCacheEmulator,
    config: SdkConfig,
    ec: aws_sdk_elasticache::Client,
    ec2: aws_sdk_ec2::Client,
    tagging: aws_sdk_resourcegroupstagging::Client,
}

fn fast() -> EmulatorOptions {
    EmulatorOptions {
        create: Duration::from_millis(300),
        modify: Duration::from_millis(200),
        delete: Duration::from_millis(200),
        ..EmulatorOptions::default()
    }
}

async fn world(opts: EmulatorOptions) -> World {
    let emu = ElastiCacheEmulator::start(opts).await;
    let config = SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
            "testing", "testing", None, None, "emulator",
        )))
        .endpoint_url(emu.endpoint())
        .retry_config(RetryConfig::disabled())
        .build();
    World {
        ec: aws_sdk_elasticache::Client::new(&config),
        ec2: aws_sdk_ec2::Client::new(&config),
        tagging: aws_sdk_resourcegroupstagging::Client::new(&config),
        config,
        emu,
    }
}

fn code<E: ProvideErrorMetadata>(e: &E) -> String {
    e.code().unwrap_or("<no code>").to_string()
}

fn arn(kind: &str, name: &str) -> String {
    format!("arn:aws:elasticache:us-east-1:{ACCOUNT}:{kind}:{name}")
}

fn tag(k: &str, v: &str) -> Tag {
    Tag::builder().key(k).value(v).build()
}

/// Waits until replication group `id` has `status` (`None`: gone).
async fn wait_for(w: &World, id: &str, status: Option<&str>) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while w.emu.replication_group_status(id).as_deref() != status {
        assert!(
            Instant::now() < deadline,
            "{id} never became {status:?}, is {:?}",
            w.emu.replication_group_status(id)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn subnet_group(w: &World, name: &str) {
    w.ec.create_cache_subnet_group()
        .cache_subnet_group_name(name)
        .cache_subnet_group_description("test")
        .subnet_ids("subnet-a")
        .subnet_ids("subnet-b")
        .send()
        .await
        .expect("create subnet group");
}

async fn security_group(w: &World, name: &str) -> String {
    w.ec2
        .create_security_group()
        .group_name(name)
        .description("test")
        .vpc_id(VPC)
        .send()
        .await
        .expect("create security group")
        .group_id()
        .expect("group id")
        .to_string()
}

/// A small cluster-mode-disabled group with one replica and a token.
async fn create_group(
    w: &World,
    id: &str,
    pg: &str,
    sg: &str,
) -> aws_sdk_elasticache::types::ReplicationGroup {
    w.ec.create_replication_group()
        .replication_group_id(id)
        .replication_group_description("test group")
        .engine("redis")
        .engine_version("7.1")
        .cache_node_type("cache.t3.micro")
        .cluster_mode(aws_sdk_elasticache::types::ClusterMode::Disabled)
        .num_node_groups(1)
        .replicas_per_node_group(1)
        .multi_az_enabled(true)
        .automatic_failover_enabled(true)
        .transit_encryption_enabled(true)
        .at_rest_encryption_enabled(true)
        .auth_token("a1B2c3D4".repeat(4))
        .cache_parameter_group_name(pg)
        .cache_subnet_group_name("sn")
        .security_group_ids(sg)
        .snapshot_retention_limit(1)
        .snapshot_window("03:00-04:00")
        .preferred_maintenance_window("sun:05:00-sun:06:00")
        .port(6379)
        .tags(tag("owner", "t"))
        .send()
        .await
        .expect("create replication group")
        .replication_group()
        .expect("group")
        .clone()
}

async fn describe_group(w: &World, id: &str) -> aws_sdk_elasticache::types::ReplicationGroup {
    w.ec.describe_replication_groups()
        .replication_group_id(id)
        .send()
        .await
        .expect("describe group")
        .replication_groups()[0]
        .clone()
}

async fn member(w: &World, id: &str) -> aws_sdk_elasticache::types::CacheCluster {
    w.ec.describe_cache_clusters()
        .cache_cluster_id(id)
        .send()
        .await
        .expect("describe member")
        .cache_clusters()[0]
        .clone()
}

async fn user_parameters(w: &World, name: &str) -> BTreeMap<String, String> {
    w.ec.describe_cache_parameters()
        .cache_parameter_group_name(name)
        .source("user")
        .max_records(100)
        .send()
        .await
        .expect("describe parameters")
        .parameters()
        .iter()
        .map(|p| {
            (
                p.parameter_name().unwrap_or_default().to_string(),
                p.parameter_value().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

// ------------------------------------------------------------------- tests

#[tokio::test]
async fn parameter_group_lifecycle() {
    let w = world(fast()).await;
    let created =
        w.ec.create_cache_parameter_group()
            .cache_parameter_group_name("pg")
            .cache_parameter_group_family("redis7")
            .description("test")
            .tags(tag("owner", "t"))
            .send()
            .await
            .expect("create");
    let group = created.cache_parameter_group().expect("group");
    assert_eq!(group.arn(), Some(arn("parametergroup", "pg").as_str()));
    let again =
        w.ec.create_cache_parameter_group()
            .cache_parameter_group_name("pg")
            .cache_parameter_group_family("redis7")
            .description("test")
            .send()
            .await
            .expect_err("exists");
    assert_eq!(code(&again), "CacheParameterGroupAlreadyExists");

    let described =
        w.ec.describe_cache_parameter_groups()
            .cache_parameter_group_name("pg")
            .send()
            .await
            .expect("describe");
    let g = &described.cache_parameter_groups()[0];
    assert_eq!(g.cache_parameter_group_family(), Some("redis7"));
    assert_eq!(g.arn(), Some(arn("parametergroup", "pg").as_str()));

    assert!(user_parameters(&w, "pg").await.is_empty());
    let modified =
        w.ec.modify_cache_parameter_group()
            .cache_parameter_group_name("pg")
            .parameter_name_values(
                ParameterNameValue::builder()
                    .parameter_name("maxmemory-policy")
                    .parameter_value("allkeys-lru")
                    .build(),
            )
            .parameter_name_values(
                ParameterNameValue::builder()
                    .parameter_name("timeout")
                    .parameter_value("300")
                    .build(),
            )
            .send()
            .await
            .expect("modify");
    assert_eq!(modified.cache_parameter_group_name(), Some("pg"));
    let params = user_parameters(&w, "pg").await;
    assert_eq!(
        params.get("maxmemory-policy").map(String::as_str),
        Some("allkeys-lru")
    );
    assert_eq!(params.get("timeout").map(String::as_str), Some("300"));
    // Without a source, the system defaults come too.
    let all =
        w.ec.describe_cache_parameters()
            .cache_parameter_group_name("pg")
            .send()
            .await
            .expect("all parameters");
    assert!(all.parameters().len() > params.len());

    w.ec.reset_cache_parameter_group()
        .cache_parameter_group_name("pg")
        .reset_all_parameters(false)
        .parameter_name_values(
            ParameterNameValue::builder()
                .parameter_name("timeout")
                .build(),
        )
        .send()
        .await
        .expect("reset");
    assert_eq!(
        user_parameters(&w, "pg").await.keys().collect::<Vec<_>>(),
        ["maxmemory-policy"]
    );

    // In use by a replication group: refused until the group is gone.
    subnet_group(&w, "sn").await;
    let sg = security_group(&w, "rg").await;
    create_group(&w, "rg", "pg", &sg).await;
    let refused =
        w.ec.delete_cache_parameter_group()
            .cache_parameter_group_name("pg")
            .send()
            .await
            .expect_err("in use");
    assert_eq!(code(&refused), "InvalidCacheParameterGroupState");
    wait_for(&w, "rg", Some("available")).await;
    w.ec.delete_replication_group()
        .replication_group_id("rg")
        .send()
        .await
        .expect("delete group");
    wait_for(&w, "rg", None).await;
    w.ec.delete_cache_parameter_group()
        .cache_parameter_group_name("pg")
        .send()
        .await
        .expect("delete");
    let gone =
        w.ec.describe_cache_parameter_groups()
            .cache_parameter_group_name("pg")
            .send()
            .await
            .expect_err("gone");
    assert_eq!(code(&gone), "CacheParameterGroupNotFound");
    let default =
        w.ec.delete_cache_parameter_group()
            .cache_parameter_group_name("default.redis7")
            .send()
            .await
            .expect_err("a default group stays");
    assert_eq!(code(&default), "InvalidCacheParameterGroupState");
}

#[tokio::test]
async fn subnet_group_lifecycle_and_paging() {
    let w = world(fast()).await;
    let created =
        w.ec.create_cache_subnet_group()
            .cache_subnet_group_name("Main")
            .cache_subnet_group_description("test")
            .subnet_ids("subnet-a")
            .subnet_ids("subnet-b")
            .tags(tag("owner", "t"))
            .send()
            .await
            .expect("create");
    let g = created.cache_subnet_group().expect("group");
    assert_eq!(
        g.cache_subnet_group_name(),
        Some("main"),
        "names are lowercased"
    );
    assert_eq!(g.vpc_id(), Some(VPC));
    assert_eq!(g.arn(), Some(arn("subnetgroup", "main").as_str()));
    let zones: Vec<_> = g
        .subnets()
        .iter()
        .filter_map(|s| s.subnet_availability_zone().and_then(|z| z.name()))
        .collect();
    assert_eq!(zones, ["us-east-1a", "us-east-1b"]);

    let unknown =
        w.ec.create_cache_subnet_group()
            .cache_subnet_group_name("bad")
            .cache_subnet_group_description("test")
            .subnet_ids("subnet-zzz")
            .send()
            .await
            .expect_err("unknown subnet");
    assert_eq!(code(&unknown), "InvalidSubnet");

    for i in 0..129 {
        subnet_group(&w, &format!("sn-{i:03}")).await;
    }
    let first =
        w.ec.describe_cache_subnet_groups()
            .max_records(100)
            .send()
            .await
            .expect("page 1");
    assert_eq!(first.cache_subnet_groups().len(), 100);
    let marker = first.marker().expect("a marker");
    let second =
        w.ec.describe_cache_subnet_groups()
            .max_records(100)
            .marker(marker)
            .send()
            .await
            .expect("page 2");
    assert_eq!(second.cache_subnet_groups().len(), 30);
    assert_eq!(second.marker(), None);
    let too_many =
        w.ec.describe_cache_subnet_groups()
            .max_records(500)
            .send()
            .await
            .expect_err("MaxRecords is at most 100");
    assert_eq!(code(&too_many), "InvalidParameterValue");

    let modified =
        w.ec.modify_cache_subnet_group()
            .cache_subnet_group_name("main")
            .subnet_ids("subnet-c")
            .cache_subnet_group_description("moved")
            .send()
            .await
            .expect("modify");
    let g = modified.cache_subnet_group().expect("group");
    assert_eq!(g.subnets().len(), 1);
    assert_eq!(g.cache_subnet_group_description(), Some("moved"));

    w.ec.delete_cache_subnet_group()
        .cache_subnet_group_name("main")
        .send()
        .await
        .expect("delete");
    let gone =
        w.ec.describe_cache_subnet_groups()
            .cache_subnet_group_name("main")
            .send()
            .await
            .expect_err("gone");
    assert_eq!(code(&gone), "CacheSubnetGroupNotFoundFault");
    assert_eq!(w.emu.resource_counts(), (0, 0, 129, 0));
}

#[tokio::test]
async fn security_group_lifecycle() {
    let w = world(fast()).await;
    let subnets = w
        .ec2
        .describe_subnets()
        .subnet_ids("subnet-a")
        .subnet_ids("subnet-c")
        .send()
        .await
        .expect("subnets");
    let zones: Vec<_> = subnets
        .subnets()
        .iter()
        .map(|s| {
            (
                s.subnet_id().unwrap_or_default(),
                s.vpc_id().unwrap_or_default(),
                s.availability_zone().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        zones,
        [
            ("subnet-a", VPC, "us-east-1a"),
            ("subnet-c", VPC, "us-east-1c")
        ]
    );
    let unknown = w
        .ec2
        .describe_subnets()
        .subnet_ids("subnet-nope")
        .send()
        .await
        .expect_err("unknown subnet");
    assert_eq!(code(&unknown), "InvalidSubnetID.NotFound");

    let created = w
        .ec2
        .create_security_group()
        .group_name("cache")
        .description("cache access")
        .vpc_id(VPC)
        .tag_specifications(
            TagSpecification::builder()
                .resource_type(ResourceType::SecurityGroup)
                .tags(
                    aws_sdk_ec2::types::Tag::builder()
                        .key("owner")
                        .value("uid-1")
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .expect("create");
    let id = created.group_id().expect("id").to_string();
    assert!(id.starts_with("sg-"));
    assert_eq!(created.tags().len(), 1);
    let other = security_group(&w, "app").await;
    let duplicate = w
        .ec2
        .create_security_group()
        .group_name("cache")
        .description("again")
        .vpc_id(VPC)
        .send()
        .await
        .expect_err("duplicate");
    assert_eq!(code(&duplicate), "InvalidGroup.Duplicate");

    let rule = |cidr: &str| {
        IpPermission::builder()
            .ip_protocol("tcp")
            .from_port(6379)
            .to_port(6379)
            .ip_ranges(IpRange::builder().cidr_ip(cidr).build())
            .build()
    };
    w.ec2
        .authorize_security_group_ingress()
        .group_id(&id)
        .ip_permissions(rule("10.0.0.0/16"))
        .ip_permissions(
            IpPermission::builder()
                .ip_protocol("tcp")
                .from_port(6379)
                .to_port(6379)
                .user_id_group_pairs(
                    aws_sdk_ec2::types::UserIdGroupPair::builder()
                        .group_id(&other)
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .expect("authorize");
    let duplicate = w
        .ec2
        .authorize_security_group_ingress()
        .group_id(&id)
        .ip_permissions(rule("10.0.0.0/16"))
        .send()
        .await
        .expect_err("duplicate rule");
    assert_eq!(code(&duplicate), "InvalidPermission.Duplicate");

    let by = |name: &str, value: &str| Filter::builder().name(name).values(value).build();
    let found = w
        .ec2
        .describe_security_groups()
        .filters(by("group-name", "cache"))
        .filters(by("vpc-id", VPC))
        .send()
        .await
        .expect("by name");
    assert_eq!(found.security_groups().len(), 1);
    let g = &found.security_groups()[0];
    assert_eq!(g.group_id(), Some(id.as_str()));
    let perms = g.ip_permissions();
    assert_eq!(perms.len(), 1, "one permission per protocol and port range");
    assert_eq!(perms[0].from_port(), Some(6379));
    assert_eq!(perms[0].ip_ranges()[0].cidr_ip(), Some("10.0.0.0/16"));
    assert_eq!(
        perms[0].user_id_group_pairs()[0].group_id(),
        Some(other.as_str())
    );
    for filter in [
        by("tag-key", "owner"),
        by("tag:owner", "uid-1"),
        by("group-id", &id),
    ] {
        let found = w
            .ec2
            .describe_security_groups()
            .filters(filter)
            .send()
            .await
            .expect("by filter");
        let ids: Vec<_> = found
            .security_groups()
            .iter()
            .filter_map(|g| g.group_id())
            .collect();
        assert_eq!(ids, [id.as_str()]);
    }
    let none = w
        .ec2
        .describe_security_groups()
        .filters(by("tag:owner", "someone-else"))
        .send()
        .await
        .expect("no match");
    assert!(none.security_groups().is_empty());
    let by_ids = w
        .ec2
        .describe_security_groups()
        .group_ids(&id)
        .group_ids(&other)
        .send()
        .await
        .expect("by ids");
    assert_eq!(by_ids.security_groups().len(), 2);
    let bad_filter = w
        .ec2
        .describe_security_groups()
        .filters(by("colour", "blue"))
        .send()
        .await
        .expect_err("unknown filter");
    assert_eq!(code(&bad_filter), "InvalidParameterValue");

    // Paging: 20 more tagged groups at 5 a page.
    for i in 0..20 {
        let sg = security_group(&w, &format!("many-{i}")).await;
        w.ec2
            .create_tags()
            .resources(&sg)
            .tags(
                aws_sdk_ec2::types::Tag::builder()
                    .key("owner")
                    .value("many")
                    .build(),
            )
            .send()
            .await
            .expect("tag");
    }
    let mut token = None;
    let mut seen = 0;
    let mut pages = 0;
    loop {
        let out = w
            .ec2
            .describe_security_groups()
            .filters(by("tag-key", "owner"))
            .max_results(5)
            .set_next_token(token)
            .send()
            .await
            .expect("page");
        pages += 1;
        seen += out.security_groups().len();
        match out.next_token() {
            Some(t) => token = Some(t.to_string()),
            None => break,
        }
    }
    assert_eq!((seen, pages), (21, 5));

    w.ec2
        .delete_tags()
        .resources(&id)
        .tags(aws_sdk_ec2::types::Tag::builder().key("owner").build())
        .send()
        .await
        .expect("delete tags");
    let untagged = w
        .ec2
        .describe_security_groups()
        .group_ids(&id)
        .send()
        .await
        .expect("describe");
    assert!(untagged.security_groups()[0].tags().is_empty());

    // The app group is a source of the cache group's rule.
    let referenced = w
        .ec2
        .delete_security_group()
        .group_id(&other)
        .send()
        .await
        .expect_err("referenced");
    assert_eq!(code(&referenced), "DependencyViolation");
    w.ec2
        .revoke_security_group_ingress()
        .group_id(&id)
        .ip_permissions(rule("10.0.0.0/16"))
        .send()
        .await
        .expect("revoke");
    let again = w
        .ec2
        .revoke_security_group_ingress()
        .group_id(&id)
        .ip_permissions(rule("10.0.0.0/16"))
        .send()
        .await
        .expect_err("already revoked");
    assert_eq!(code(&again), "InvalidPermission.NotFound");
    w.ec2
        .delete_security_group()
        .group_id(&id)
        .send()
        .await
        .expect("delete");
    let gone = w
        .ec2
        .describe_security_groups()
        .group_ids(&id)
        .send()
        .await
        .expect_err("gone");
    assert_eq!(code(&gone), "InvalidGroup.NotFound");
    w.ec2
        .delete_security_group()
        .group_id(&other)
        .send()
        .await
        .expect("no longer referenced");
}

#[tokio::test]
async fn replication_group_lifecycle() {
    let w = world(EmulatorOptions {
        create: Duration::from_millis(500),
        modify: Duration::from_millis(300),
        delete: Duration::from_millis(300),
        ..EmulatorOptions::default()
    })
    .await;
    subnet_group(&w, "sn").await;
    let sg = security_group(&w, "rg").await;
    let created = create_group(&w, "rg", "default.redis7", &sg).await;
    assert_eq!(created.status(), Some("creating"));
    assert_eq!(created.arn(), Some(arn("replicationgroup", "rg").as_str()));
    let again =
        w.ec.create_replication_group()
            .replication_group_id("rg")
            .replication_group_description("again")
            .cache_node_type("cache.t3.micro")
            .send()
            .await
            .expect_err("exists");
    assert_eq!(code(&again), "ReplicationGroupAlreadyExists");
    let early =
        w.ec.modify_replication_group()
            .replication_group_id("rg")
            .cache_node_type("cache.t3.small")
            .apply_immediately(true)
            .send()
            .await
            .expect_err("still creating");
    assert_eq!(code(&early), "InvalidReplicationGroupState");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(describe_group(&w, "rg").await.status(), Some("creating"));
    wait_for(&w, "rg", Some("available")).await;

    let g = describe_group(&w, "rg").await;
    assert_eq!(g.member_clusters(), ["rg-001", "rg-002"]);
    let ng = &g.node_groups()[0];
    let primary = ng
        .primary_endpoint()
        .and_then(|e| e.address())
        .expect("primary");
    assert!(primary.starts_with("master.rg."), "{primary}");
    assert!(ng.reader_endpoint().is_some());
    assert_eq!(ng.node_group_members().len(), 2);
    assert!(g.configuration_endpoint().is_none());
    assert_eq!(g.cache_node_type(), Some("cache.t3.micro"));
    assert_eq!(g.auth_token_enabled(), Some(true));
    assert_eq!(g.transit_encryption_enabled(), Some(true));
    assert!(g.auth_token_last_modified_date().is_none());
    let m = member(&w, "rg-001").await;
    assert_eq!(
        m.cache_parameter_group()
            .and_then(|p| p.cache_parameter_group_name()),
        Some("default.redis7")
    );
    assert_eq!(
        m.security_groups()[0].security_group_id(),
        Some(sg.as_str())
    );
    assert_eq!(m.cache_subnet_group_name(), Some("sn"));
    assert_eq!(
        m.preferred_maintenance_window(),
        Some("sun:05:00-sun:06:00")
    );
    assert_eq!(m.engine_version(), Some("7.1"));
    assert!(m.pending_modified_values().is_none());

    // The companions are in use.
    let in_use = w
        .ec2
        .delete_security_group()
        .group_id(&sg)
        .send()
        .await
        .expect_err("in use");
    assert_eq!(code(&in_use), "DependencyViolation");
    let in_use =
        w.ec.delete_cache_subnet_group()
            .cache_subnet_group_name("sn")
            .send()
            .await
            .expect_err("in use");
    assert_eq!(code(&in_use), "CacheSubnetGroupInUse");

    // Scale up at once: modifying, then the new type.
    let allowed =
        w.ec.list_allowed_node_type_modifications()
            .replication_group_id("rg")
            .send()
            .await
            .expect("allowed");
    assert!(allowed
        .scale_up_modifications()
        .iter()
        .any(|t| t == "cache.t3.small"));
    assert!(!allowed
        .scale_down_modifications()
        .iter()
        .any(|t| t == "cache.t3.small"));
    let modified =
        w.ec.modify_replication_group()
            .replication_group_id("rg")
            .cache_node_type("cache.t3.small")
            .apply_immediately(true)
            .send()
            .await
            .expect("modify");
    assert_eq!(
        modified.replication_group().and_then(|g| g.status()),
        Some("modifying")
    );
    assert_eq!(
        member(&w, "rg-001")
            .await
            .pending_modified_values()
            .and_then(|p| p.cache_node_type()),
        Some("cache.t3.small")
    );
    wait_for(&w, "rg", Some("available")).await;
    assert_eq!(
        describe_group(&w, "rg").await.cache_node_type(),
        Some("cache.t3.small")
    );

    // Later: pending until the maintenance window.
    w.ec.modify_replication_group()
        .replication_group_id("rg")
        .engine_version("7.2")
        .apply_immediately(false)
        .send()
        .await
        .expect("modify later");
    assert_eq!(
        w.emu.replication_group_status("rg").as_deref(),
        Some("available")
    );
    let m = member(&w, "rg-002").await;
    assert_eq!(
        m.pending_modified_values().and_then(|p| p.engine_version()),
        Some("7.2")
    );
    assert_eq!(m.engine_version(), Some("7.1"));
    w.emu.run_maintenance();
    assert_eq!(
        w.emu.replication_group_status("rg").as_deref(),
        Some("modifying")
    );
    wait_for(&w, "rg", Some("available")).await;
    let m = member(&w, "rg-002").await;
    assert_eq!(m.engine_version(), Some("7.2"));
    assert!(m.pending_modified_values().is_none());

    // Token rotation, then SET.
    let rotated =
        w.ec.modify_replication_group()
            .replication_group_id("rg")
            .auth_token("n3wT0ken".repeat(4))
            .auth_token_update_strategy(AuthTokenUpdateStrategyType::Rotate)
            .apply_immediately(true)
            .send()
            .await
            .expect("rotate");
    let pending = rotated
        .replication_group()
        .and_then(|g| g.pending_modified_values())
        .and_then(|p| p.auth_token_status())
        .map(|s| s.as_str().to_string());
    assert_eq!(pending.as_deref(), Some("ROTATING"));
    wait_for(&w, "rg", Some("available")).await;
    assert_eq!(w.emu.auth_tokens("rg").len(), 2, "both tokens work");
    let first = describe_group(&w, "rg")
        .await
        .auth_token_last_modified_date()
        .copied()
        .expect("modified date");
    w.ec.modify_replication_group()
        .replication_group_id("rg")
        .auth_token("n3wT0ken".repeat(4))
        .auth_token_update_strategy(AuthTokenUpdateStrategyType::Set)
        .apply_immediately(true)
        .send()
        .await
        .expect("set");
    wait_for(&w, "rg", Some("available")).await;
    assert_eq!(w.emu.auth_tokens("rg"), ["n3wT0ken".repeat(4)]);
    let second = describe_group(&w, "rg")
        .await
        .auth_token_last_modified_date()
        .copied()
        .expect("modified date");
    assert!(second > first);

    // Replicas.
    w.ec.increase_replica_count()
        .replication_group_id("rg")
        .new_replica_count(2)
        .apply_immediately(true)
        .send()
        .await
        .expect("increase");
    wait_for(&w, "rg", Some("available")).await;
    assert_eq!(describe_group(&w, "rg").await.member_clusters().len(), 3);
    let refused =
        w.ec.decrease_replica_count()
            .replication_group_id("rg")
            .new_replica_count(0)
            .apply_immediately(true)
            .send()
            .await
            .expect_err("automatic failover keeps a replica");
    assert_eq!(code(&refused), "InvalidParameterCombination");

    let deleted =
        w.ec.delete_replication_group()
            .replication_group_id("rg")
            .final_snapshot_identifier("rg-final")
            .send()
            .await
            .expect("delete");
    assert_eq!(
        deleted.replication_group().and_then(|g| g.status()),
        Some("deleting")
    );
    assert_eq!(describe_group(&w, "rg").await.status(), Some("deleting"));
    let twice =
        w.ec.delete_replication_group()
            .replication_group_id("rg")
            .send()
            .await
            .expect_err("already deleting");
    assert_eq!(code(&twice), "InvalidReplicationGroupState");
    wait_for(&w, "rg", None).await;
    let gone =
        w.ec.describe_replication_groups()
            .replication_group_id("rg")
            .send()
            .await
            .expect_err("gone");
    assert_eq!(code(&gone), "ReplicationGroupNotFoundFault");
    assert_eq!(
        w.emu.final_snapshots(),
        [("rg-final".to_string(), "rg".to_string())]
    );
    w.ec2
        .delete_security_group()
        .group_id(&sg)
        .send()
        .await
        .expect("no longer in use");
}

#[tokio::test]
async fn cluster_mode_group_shards() {
    let w = world(fast()).await;
    subnet_group(&w, "sn").await;
    w.ec.create_replication_group()
        .replication_group_id("big")
        .replication_group_description("sharded")
        .engine("valkey")
        .engine_version("8.0")
        .cache_node_type("cache.r7g.large")
        .cluster_mode(aws_sdk_elasticache::types::ClusterMode::Enabled)
        .num_node_groups(3)
        .replicas_per_node_group(1)
        .automatic_failover_enabled(true)
        .cache_parameter_group_name("default.valkey8.cluster.on")
        .cache_subnet_group_name("sn")
        .send()
        .await
        .expect("create");
    wait_for(&w, "big", Some("available")).await;
    let g = describe_group(&w, "big").await;
    assert_eq!(g.node_groups().len(), 3);
    assert_eq!(g.member_clusters().len(), 6);
    assert_eq!(g.member_clusters()[0], "big-0001-001");
    let cfg = g
        .configuration_endpoint()
        .and_then(|e| e.address())
        .expect("config endpoint");
    assert!(cfg.contains("big"), "{cfg}");
    assert!(g.node_groups()[0].primary_endpoint().is_none());
    assert_eq!(member(&w, "big-0002-002").await.engine(), Some("valkey"));
    let resharding =
        w.ec.modify_replication_group_shard_configuration()
            .replication_group_id("big")
            .node_group_count(2)
            .node_groups_to_remove("0002")
            .apply_immediately(true)
            .send()
            .await
            .expect("remove a shard");
    let g = resharding.replication_group().expect("group");
    assert!(g
        .pending_modified_values()
        .and_then(|p| p.resharding())
        .is_some());
    wait_for(&w, "big", Some("available")).await;
    let ids: Vec<_> = describe_group(&w, "big")
        .await
        .node_groups()
        .iter()
        .filter_map(|n| n.node_group_id().map(str::to_string))
        .collect();
    assert_eq!(ids, ["0001", "0003"]);
}

#[tokio::test]
async fn tags_on_all_three_kinds_and_get_resources() {
    let w = world(EmulatorOptions {
        create: Duration::ZERO,
        ..fast()
    })
    .await;
    for i in 0..60 {
        w.ec.create_cache_parameter_group()
            .cache_parameter_group_name(format!("pg-{i:02}"))
            .cache_parameter_group_family("redis7")
            .description("t")
            .tags(tag("owner", &format!("uid-{i}")))
            .send()
            .await
            .expect("pg");
        w.ec.create_cache_subnet_group()
            .cache_subnet_group_name(format!("sn-{i:02}"))
            .cache_subnet_group_description("t")
            .subnet_ids("subnet-a")
            .tags(tag("owner", &format!("uid-{i}")))
            .send()
            .await
            .expect("sn");
    }
    // Untagged and differently tagged ones are not listed.
    subnet_group(&w, "sn").await;
    w.ec.create_cache_parameter_group()
        .cache_parameter_group_name("foreign")
        .cache_parameter_group_family("redis7")
        .description("t")
        .tags(tag("team", "x"))
        .send()
        .await
        .expect("foreign");
    for i in 0..5 {
        w.ec.create_replication_group()
            .replication_group_id(format!("rg-{i}"))
            .replication_group_description("t")
            .cache_node_type("cache.t3.micro")
            .cache_subnet_group_name("sn")
            .tags(tag("owner", &format!("uid-{i}")))
            .send()
            .await
            .expect("rg");
    }

    for (kind, name) in [
        ("replicationgroup", "rg-1"),
        ("parametergroup", "pg-01"),
        ("subnetgroup", "sn-01"),
    ] {
        let resource = arn(kind, name);
        w.ec.add_tags_to_resource()
            .resource_name(&resource)
            .tags(tag("env", "prod"))
            .send()
            .await
            .expect("add");
        let listed =
            w.ec.list_tags_for_resource()
                .resource_name(&resource)
                .send()
                .await
                .expect("list");
        let tags: BTreeMap<_, _> = listed
            .tag_list()
            .iter()
            .map(|t| (t.key().unwrap_or_default(), t.value().unwrap_or_default()))
            .collect();
        assert_eq!(
            tags,
            BTreeMap::from([("env", "prod"), ("owner", "uid-1")]),
            "{kind}"
        );
        let removed =
            w.ec.remove_tags_from_resource()
                .resource_name(&resource)
                .tag_keys("env")
                .send()
                .await
                .expect("remove");
        assert_eq!(removed.tag_list().len(), 1);
    }
    let missing =
        w.ec.list_tags_for_resource()
            .resource_name(arn("replicationgroup", "nope"))
            .send()
            .await
            .expect_err("missing");
    assert_eq!(code(&missing), "ReplicationGroupNotFoundFault");
    let bad =
        w.ec.list_tags_for_resource()
            .resource_name("arn:aws:s3:::bucket")
            .send()
            .await
            .expect_err("not an ElastiCache ARN");
    assert_eq!(code(&bad), "InvalidARN");
    assert!(w.emu.set_tag(&arn("subnetgroup", "sn-02"), "drift", "yes"));

    let types = [
        "elasticache:replicationgroup",
        "elasticache:parametergroup",
        "elasticache:subnetgroup",
    ];
    let mut token: Option<String> = None;
    let mut arns = Vec::new();
    let mut pages = 0;
    loop {
        let out = w
            .tagging
            .get_resources()
            .tag_filters(TagFilter::builder().key("owner").build())
            .set_resource_type_filters(Some(types.iter().map(|t| t.to_string()).collect()))
            .resources_per_page(100)
            .set_pagination_token(token.clone())
            .send()
            .await
            .expect("get resources");
        pages += 1;
        assert!(out.resource_tag_mapping_list().len() <= 100);
        for m in out.resource_tag_mapping_list() {
            assert!(m.tags().iter().any(|t| t.key() == "owner"));
            arns.push(m.resource_arn().unwrap_or_default().to_string());
        }
        match out.pagination_token() {
            Some(t) if !t.is_empty() => token = Some(t.to_string()),
            _ => break,
        }
    }
    assert_eq!((arns.len(), pages), (125, 2));
    let unique: std::collections::BTreeSet<_> = arns.iter().collect();
    assert_eq!(unique.len(), 125);
    assert!(arns.contains(&arn("replicationgroup", "rg-4")));

    let only_groups = w
        .tagging
        .get_resources()
        .tag_filters(TagFilter::builder().key("owner").values("uid-3").build())
        .resource_type_filters("elasticache:replicationgroup")
        .send()
        .await
        .expect("by value and type");
    let arns: Vec<_> = only_groups
        .resource_tag_mapping_list()
        .iter()
        .filter_map(|m| m.resource_arn())
        .collect();
    assert_eq!(arns, [arn("replicationgroup", "rg-3")]);
}

#[tokio::test]
async fn describe_replication_groups_pages_over_250() {
    let w = world(EmulatorOptions {
        create: Duration::ZERO,
        ..fast()
    })
    .await;
    subnet_group(&w, "sn").await;
    for i in 0..250 {
        w.ec.create_replication_group()
            .replication_group_id(format!("g-{i:03}"))
            .replication_group_description("t")
            .cache_node_type("cache.t3.micro")
            .cache_subnet_group_name("sn")
            .send()
            .await
            .expect("create");
    }
    let mut marker: Option<String> = None;
    let mut sizes = Vec::new();
    let mut ids = Vec::new();
    loop {
        let out =
            w.ec.describe_replication_groups()
                .max_records(100)
                .set_marker(marker.clone())
                .send()
                .await
                .expect("page");
        sizes.push(out.replication_groups().len());
        ids.extend(
            out.replication_groups()
                .iter()
                .filter_map(|g| g.replication_group_id().map(str::to_string)),
        );
        match out.marker() {
            Some(m) => marker = Some(m.to_string()),
            None => break,
        }
    }
    assert_eq!(sizes, [100, 100, 50]);
    assert_eq!(ids, w.emu.replication_group_ids());
    assert_eq!(w.emu.calls().get("DescribeReplicationGroups"), Some(&3));
    assert_eq!(w.emu.resource_counts().0, 250);
}

#[tokio::test]
async fn throttling() {
    let w = world(fast()).await;
    w.emu.throttle_next(3);
    for _ in 0..3 {
        let e =
            w.ec.describe_cache_subnet_groups()
                .send()
                .await
                .expect_err("throttled");
        assert_eq!(code(&e), "Throttling");
        assert_eq!(e.raw_response().map(|r| r.status().as_u16()), Some(400));
    }
    w.ec.describe_cache_subnet_groups()
        .send()
        .await
        .expect("through");
    w.emu.throttle_next(2);
    let e = w
        .ec2
        .describe_subnets()
        .send()
        .await
        .expect_err("throttled");
    assert_eq!(code(&e), "RequestLimitExceeded");
    assert_eq!(e.raw_response().map(|r| r.status().as_u16()), Some(503));
    let e = w
        .tagging
        .get_resources()
        .send()
        .await
        .expect_err("throttled");
    assert_eq!(code(&e), "ThrottledException");
    assert_eq!(w.emu.throttled(), 5);

    w.emu.reset_counts();
    w.emu.set_throttle(Some((5.0, 5)));
    let mut ok = 0;
    let mut throttled = 0;
    for _ in 0..20 {
        match w.ec.describe_replication_groups().send().await {
            Ok(_) => ok += 1,
            Err(e) => {
                assert_eq!(code(&e), "Throttling");
                throttled += 1;
            }
        }
    }
    assert!(ok >= 5 && throttled > 0, "ok {ok}, throttled {throttled}");
    assert_eq!(w.emu.throttled(), throttled);
    assert_eq!(w.emu.calls().get("DescribeReplicationGroups"), Some(&ok));
    w.emu.set_throttle(None);
    w.ec.describe_replication_groups()
        .send()
        .await
        .expect("no bucket");
}

#[tokio::test]
async fn not_found_codes_per_kind() {
    let w = world(fast()).await;
    let e =
        w.ec.describe_replication_groups()
            .replication_group_id("nope")
            .send()
            .await
            .expect_err("rg");
    assert_eq!(code(&e), "ReplicationGroupNotFoundFault");
    assert_eq!(e.raw_response().map(|r| r.status().as_u16()), Some(404));
    let e =
        w.ec.describe_cache_clusters()
            .cache_cluster_id("nope-001")
            .send()
            .await
            .expect_err("cc");
    assert_eq!(code(&e), "CacheClusterNotFound");
    let e =
        w.ec.describe_cache_parameter_groups()
            .cache_parameter_group_name("nope")
            .send()
            .await
            .expect_err("pg");
    assert_eq!(code(&e), "CacheParameterGroupNotFound");
    let e =
        w.ec.describe_cache_parameters()
            .cache_parameter_group_name("nope")
            .send()
            .await
            .expect_err("params");
    assert_eq!(code(&e), "CacheParameterGroupNotFound");
    let e =
        w.ec.describe_cache_subnet_groups()
            .cache_subnet_group_name("nope")
            .send()
            .await
            .expect_err("sn");
    assert_eq!(code(&e), "CacheSubnetGroupNotFoundFault");
    let e =
        w.ec.delete_replication_group()
            .replication_group_id("nope")
            .send()
            .await
            .expect_err("delete rg");
    assert_eq!(code(&e), "ReplicationGroupNotFoundFault");
    let e =
        w.ec.delete_cache_subnet_group()
            .cache_subnet_group_name("nope")
            .send()
            .await
            .expect_err("delete sn");
    assert_eq!(code(&e), "CacheSubnetGroupNotFoundFault");
    let e = w
        .ec2
        .describe_security_groups()
        .group_ids("sg-nope")
        .send()
        .await
        .expect_err("sg");
    assert_eq!(code(&e), "InvalidGroup.NotFound");
    let e = w
        .ec2
        .delete_security_group()
        .group_id("sg-nope")
        .send()
        .await
        .expect_err("delete sg");
    assert_eq!(code(&e), "InvalidGroup.NotFound");
    let e = w
        .ec2
        .describe_subnets()
        .subnet_ids("subnet-nope")
        .send()
        .await
        .expect_err("subnet");
    assert_eq!(code(&e), "InvalidSubnetID.NotFound");
    let e =
        w.ec.list_tags_for_resource()
            .resource_name(arn("parametergroup", "nope"))
            .send()
            .await
            .expect_err("tags");
    assert_eq!(code(&e), "CacheParameterGroupNotFound");

    // An unknown action is a 400 naming it, in each protocol.
    for (body, target) in [
        ("Action=Frobnicate&Version=2015-02-02", None),
        ("Action=Frobnicate&Version=2016-11-15", None),
        ("{}", Some("ResourceGroupsTaggingAPI_20170126.Frobnicate")),
    ] {
        let (status, text) = raw_post(&w.emu.endpoint(), body, target).await;
        assert_eq!(status, 400, "{text}");
        assert!(text.contains("Frobnicate"), "{text}");
    }
    assert!(w.emu.calls().contains_key("Frobnicate"));
}

/// One HTTP/1.1 POST by hand: (status, body).
async fn raw_post(endpoint: &str, body: &str, target: Option<&str>) -> (u16, String) {
    let addr = endpoint.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let extra = target
        .map(|t| format!("X-Amz-Target: {t}\r\nContent-Type: application/x-amz-json-1.1\r\n"))
        .unwrap_or_else(|| "Content-Type: application/x-www-form-urlencoded\r\n".into());
    let request = format!(
        "POST / HTTP/1.1\r\nHost: {addr}\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut out = String::new();
    stream.read_to_string(&mut out).await.expect("read");
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, out)
}

// ------------------------------------------------- the operator's adapter

mod adapter {
    use std::collections::BTreeMap;

    use redis_cache_operator::api::{ClusterMode, Engine};
    use redis_cache_operator::backends::elasticache::api::{
        Companions, ElastiCacheApi, GroupStatus, ReplicationGroupChange,
    };
    use redis_cache_operator::backends::elasticache::aws::clients::ClientConfigs;
    use redis_cache_operator::backends::elasticache::aws::metrics::AwsCallMetrics;
    use redis_cache_operator::backends::elasticache::aws::{AwsElastiCache, AwsSettings};
    use redis_cache_operator::backends::elasticache::desired::{
        DesiredNetwork, DesiredParameterGroup, DesiredReplicationGroup, DesiredSecurityGroup,
        DesiredSubnetGroup,
    };
    use redis_cache_operator::backends::{Credential, Deletion, Ownership};

    use super::*;

    const ID: &str = "k8s-shop-sessions";

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

    fn network() -> DesiredNetwork {
        DesiredNetwork {
            subnet_group: DesiredSubnetGroup::Managed {
                name: ID.into(),
                subnet_ids: vec!["subnet-a".into(), "subnet-b".into()],
                description: "redis-cache-operator: RedisCache shop/sessions".into(),
            },
            security_group: DesiredSecurityGroup {
                name: ID.into(),
                description: "redis-cache-operator: RedisCache shop/sessions".into(),
                port: 6379,
                allowed_cidrs: vec!["10.0.0.0/16".into()],
                allowed_security_group_ids: vec![],
            },
            extra_security_group_ids: vec![],
        }
    }

    fn desired_group() -> DesiredReplicationGroup {
        DesiredReplicationGroup {
            id: ID.into(),
            description: "redis-cache-operator: RedisCache shop/sessions".into(),
            engine: Engine::Redis,
            engine_version: "7.1".into(),
            node_type: "cache.t3.micro".into(),
            cluster_mode: ClusterMode::Disabled,
            shards: 1,
            replicas_per_shard: 1,
            multi_az: true,
            automatic_failover: true,
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

    async fn observe(
        provider: &AwsElastiCache,
    ) -> Option<redis_cache_operator::backends::elasticache::api::ReplicationGroupState> {
        provider.fleet().refresh().await.expect("refresh");
        provider
            .observe_replication_group(&owner(), ID)
            .await
            .expect("observe")
    }

    #[tokio::test]
    async fn the_operator_adapter_runs_a_cache_through_its_life() {
        let w = world(fast()).await;
        let settings = AwsSettings {
            rate_limit: 1000.0,
            burst: 1000,
            ..AwsSettings::default()
        };
        let provider = AwsElastiCache::from_configs(
            ClientConfigs::from(&w.config),
            settings,
            AwsCallMetrics::new(),
        );
        let pg = provider
            .ensure_parameter_group(
                &owner(),
                &DesiredParameterGroup {
                    name: ID.into(),
                    family: "redis7".into(),
                    description: "redis-cache-operator: RedisCache shop/sessions".into(),
                    parameters: BTreeMap::from([("maxmemory-policy".into(), "allkeys-lru".into())]),
                },
                &tags(),
            )
            .await
            .expect("parameter group");
        assert_eq!(pg.name, ID);
        assert_eq!(
            user_parameters(&w, ID)
                .await
                .get("maxmemory-policy")
                .map(String::as_str),
            Some("allkeys-lru")
        );
        let net = provider
            .ensure_network(&owner(), &network(), &tags())
            .await
            .expect("network");
        assert_eq!(net.subnet_group_name, ID);
        assert_eq!(w.emu.resource_counts(), (0, 1, 1, 1));
        // A second pass changes nothing.
        w.emu.reset_counts();
        provider
            .ensure_network(&owner(), &network(), &tags())
            .await
            .expect("network again");
        let writes: u64 = w
            .emu
            .calls()
            .iter()
            .filter(|(a, _)| {
                !a.starts_with("Describe") && !a.starts_with("List") && *a != "GetResources"
            })
            .map(|(_, n)| n)
            .sum();
        assert_eq!(writes, 0, "{:?}", w.emu.calls());

        assert_eq!(observe(&provider).await, None);
        let companions = Companions {
            parameter_group: pg.name.clone(),
            subnet_group: net.subnet_group_name.clone(),
            security_group_ids: vec![net.security_group_id.clone()],
        };
        let token = Credential::new("a1B2c3D4".repeat(8));
        provider
            .create_replication_group(&owner(), &desired_group(), &companions, &token, &tags())
            .await
            .expect("create");
        let seen = observe(&provider).await.expect("exists");
        assert_eq!(seen.status, GroupStatus::Creating);
        wait_for(&w, ID, Some("available")).await;
        let seen = observe(&provider).await.expect("exists");
        assert_eq!(seen.status, GroupStatus::Available);
        assert_eq!(seen.cluster_mode, Some(ClusterMode::Disabled));
        assert_eq!((seen.shards, seen.replicas_per_shard), (1, 1));
        assert!(seen.multi_az && seen.automatic_failover && seen.auth_token_enabled);
        assert_eq!(seen.parameter_group.as_deref(), Some(ID));
        assert_eq!(
            seen.security_group_ids,
            std::slice::from_ref(&net.security_group_id)
        );
        assert_eq!(seen.subnet_group.as_deref(), Some(ID));
        assert_eq!(seen.engine_version.as_deref(), Some("7.1"));
        let endpoint = seen.endpoint.clone().expect("endpoint");
        assert!(
            endpoint.host.starts_with(&format!("master.{ID}.")),
            "{endpoint:?}"
        );
        assert_eq!(seen.tags, tags());
        assert!(
            seen.pending_changes.is_empty(),
            "{:?}",
            seen.pending_changes
        );

        provider
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
        assert_eq!(
            observe(&provider).await.expect("exists").status,
            GroupStatus::Modifying
        );
        wait_for(&w, ID, Some("available")).await;
        let seen = observe(&provider).await.expect("exists");
        assert_eq!(seen.node_type.as_deref(), Some("cache.t3.small"));

        // Companions of a live group stay.
        let refused = provider.delete_security_group(&owner(), ID).await;
        assert!(!matches!(refused, Ok(Deletion::Gone)), "{refused:?}");

        assert_eq!(
            provider
                .delete_replication_group(&owner(), ID, Some("k8s-shop-sessions-final"))
                .await
                .expect("delete"),
            Deletion::InProgress
        );
        assert_eq!(
            observe(&provider).await.expect("deleting").status,
            GroupStatus::Deleting
        );
        wait_for(&w, ID, None).await;
        assert_eq!(observe(&provider).await, None);
        assert_eq!(w.emu.final_snapshots().len(), 1);
        assert_eq!(
            provider
                .delete_security_group(&owner(), ID)
                .await
                .expect("sg"),
            Deletion::Gone
        );
        assert_eq!(
            provider
                .delete_parameter_group(&owner(), ID)
                .await
                .expect("pg"),
            Deletion::Gone
        );
        assert_eq!(
            provider
                .delete_subnet_group(&owner(), ID)
                .await
                .expect("sn"),
            Deletion::Gone
        );
        assert_eq!(w.emu.resource_counts(), (0, 0, 0, 0));
    }
}
