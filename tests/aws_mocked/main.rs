//! The AWS provider against scripted AWS responses: the request each call
//! puts on the wire, how each answer maps to the domain, every error class,
//! ownership, and the fleet poller's call count. No network, no emulator.

mod day2;
mod log_safety;
mod scripted;

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_elasticache::config::retry::RetryConfig;
use redis_cache_operator::api::{ClusterMode, Engine};
use redis_cache_operator::backends::elasticache::api::{
    Companions, ElastiCacheApi, GroupStatus, ReplicationGroupChange,
};
use redis_cache_operator::backends::elasticache::aws::fleet::PollIntervals;
use redis_cache_operator::backends::elasticache::aws::inventory::DELETE_LISTING_AGE;
use redis_cache_operator::backends::elasticache::aws::metrics::AwsCallMetrics;
use redis_cache_operator::backends::elasticache::aws::operations::Operation;
use redis_cache_operator::backends::elasticache::aws::{AwsElastiCache, AwsSettings};
use redis_cache_operator::backends::elasticache::desired::{
    DesiredNetwork, DesiredParameterGroup, DesiredReplicationGroup, DesiredSecurityGroup,
    DesiredSubnetGroup,
};
use redis_cache_operator::backends::wakeups::Wakeups;
use redis_cache_operator::backends::{turns, Credential};
use redis_cache_operator::backends::{Deletion, ErrorClass};
use redis_cache_operator::backends::{Ownership, TAG_OWNER_UID, TAG_RESOURCE};
use scripted::{Reply, Scripted};

const ID: &str = "k8s-shop-sessions";
const UID: &str = "0b5b4a3e-uid";
const ACCOUNT_ARN: &str = "arn:aws:elasticache:us-east-1:123456789012";

fn owner() -> Ownership {
    Ownership {
        owner_uid: UID.into(),
        resource: "shop/sessions".into(),
        cluster: "k8s".into(),
    }
}

fn tags() -> BTreeMap<String, String> {
    let mut t = owner().tags();
    t.insert("team".into(), "payments".into());
    t
}

fn provider(aws: &Scripted) -> (AwsElastiCache, AwsCallMetrics) {
    provider_with(aws, RetryConfig::disabled())
}

fn provider_with(aws: &Scripted, retry: RetryConfig) -> (AwsElastiCache, AwsCallMetrics) {
    let metrics = AwsCallMetrics::new();
    let settings = AwsSettings {
        rate_limit: 10_000.0,
        burst: 10_000,
        poll: PollIntervals::default(),
        ..AwsSettings::default()
    };
    (
        AwsElastiCache::new(&aws.sdk_config(retry), settings, metrics.clone()),
        metrics,
    )
}

fn tag_list(tags: &BTreeMap<String, String>) -> String {
    let items: String = tags
        .iter()
        .map(|(k, v)| format!("<Tag><Key>{k}</Key><Value>{v}</Value></Tag>"))
        .collect();
    format!("<TagList>{items}</TagList>")
}

fn foreign_tags() -> BTreeMap<String, String> {
    BTreeMap::from([
        (TAG_OWNER_UID.to_string(), "someone-else".to_string()),
        (TAG_RESOURCE.to_string(), "other/cache".to_string()),
    ])
}

/// An empty page of an unfiltered listing.
fn empty_listing() -> Reply {
    Reply::ok("<CacheParameterGroups/>")
}

/// One page of `GetResources` (the tagging API's JSON).
fn bulk_tags_page(resources: &[(String, BTreeMap<String, String>)], token: Option<&str>) -> Reply {
    let list: Vec<serde_json::Value> = resources
        .iter()
        .map(|(arn, tags)| {
            serde_json::json!({
                "ResourceARN": arn,
                "Tags": tags.iter().map(|(k, v)| serde_json::json!({"Key": k, "Value": v})).collect::<Vec<_>>(),
            })
        })
        .collect();
    Reply::ok(
        serde_json::json!({"PaginationToken": token.unwrap_or(""), "ResourceTagMappingList": list})
            .to_string(),
    )
}

fn bulk_tags(resources: &[(String, BTreeMap<String, String>)]) -> Reply {
    bulk_tags_page(resources, None)
}

fn not_found(code: &str) -> Reply {
    Reply::error(404, code, "not found")
}

// ---------------------------------------------------------------- parameter group

fn desired_pg(params: &[(&str, &str)]) -> DesiredParameterGroup {
    DesiredParameterGroup {
        name: format!("{ID}-params"),
        family: "valkey8".into(),
        description: "redis-cache-operator: RedisCache shop/sessions".into(),
        parameters: params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

fn pg_xml(family: &str) -> String {
    format!(
        "<CacheParameterGroup><CacheParameterGroupName>{ID}-params</CacheParameterGroupName><CacheParameterGroupFamily>{family}</CacheParameterGroupFamily><Description>d</Description><ARN>{ACCOUNT_ARN}:parametergroup:{ID}-params</ARN></CacheParameterGroup>"
    )
}

fn user_params(params: &[(&str, &str)]) -> Reply {
    let items: String = params
        .iter()
        .map(|(k, v)| {
            format!("<Parameter><ParameterName>{k}</ParameterName><ParameterValue>{v}</ParameterValue><Source>user</Source></Parameter>")
        })
        .collect();
    Reply::ok(format!("<Parameters>{items}</Parameters>"))
}

#[tokio::test]
async fn parameter_group_is_created_with_family_and_tags_and_set_in_batches_of_20() {
    let aws = Scripted::new();
    aws.once("DescribeCacheParameterGroups", empty_listing())
        .once("CreateCacheParameterGroup", Reply::ok(pg_xml("valkey8")))
        .always("DescribeCacheParameters", user_params(&[]))
        .always(
            "ModifyCacheParameterGroup",
            Reply::ok(format!(
                "<CacheParameterGroupName>{ID}-params</CacheParameterGroupName>"
            )),
        );
    let (p, metrics) = provider(&aws);
    let names: Vec<String> = (0..24).map(|i| format!("param-{i:02}")).collect();
    let params: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "1")).collect();
    let desired = desired_pg(&params);
    let state = p
        .ensure_parameter_group(&owner(), &desired, &tags())
        .await
        .expect("ensure");
    assert_eq!(state.name, format!("{ID}-params"));
    assert_eq!(state.family, "valkey8");

    let create = &aws.calls("CreateCacheParameterGroup")[0];
    assert_eq!(
        create.get("CacheParameterGroupName"),
        Some("k8s-shop-sessions-params")
    );
    assert_eq!(create.get("CacheParameterGroupFamily"), Some("valkey8"));
    assert_eq!(
        create.get("Description"),
        Some(desired.description.as_str())
    );
    assert_eq!(create.tags("Tags.Tag"), tags(), "{create:?}");
    let listing = &aws.calls("DescribeCacheParameterGroups")[0];
    assert_eq!(
        listing.get("MaxRecords"),
        Some("100"),
        "one paged fleet read"
    );
    assert_eq!(listing.get("CacheParameterGroupName"), None);
    assert_eq!(
        aws.count("DescribeCacheParameters"),
        0,
        "a new group's user layer is empty: nothing to read back"
    );
    let modifies = aws.calls("ModifyCacheParameterGroup");
    assert_eq!(modifies.len(), 2, "24 parameters are two batches");
    let batch = |r: &scripted::Recorded| {
        (1..)
            .map_while(|i| {
                r.get(&format!(
                    "ParameterNameValues.ParameterNameValue.{i}.ParameterName"
                ))
                .map(str::to_string)
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(batch(&modifies[0]).len(), 20, "{:?}", modifies[0]);
    assert_eq!(batch(&modifies[1]).len(), 4);
    assert_eq!(
        modifies[0].get("ParameterNameValues.ParameterNameValue.1.ParameterValue"),
        Some("1")
    );
    assert_eq!(aws.count("ResetCacheParameterGroup"), 0);
    assert_eq!(
        aws.count("ListTagsForResource"),
        0,
        "tags known from the create"
    );
    assert_eq!(
        metrics.count(Operation::ModifyCacheParameterGroup, "success"),
        2
    );
    assert_eq!(
        metrics.count(Operation::DescribeCacheParameterGroups, "success"),
        1
    );

    // Settled: the group is in the listing, its values known from our writes.
    aws.clear_record();
    p.ensure_parameter_group(&owner(), &desired, &tags())
        .await
        .expect("ensure again");
    assert_eq!(aws.actions(), Vec::<String>::new(), "no AWS call");
}

#[tokio::test]
async fn a_change_waits_for_its_turn_unsent_and_is_woken_when_it_comes() {
    let aws = Scripted::new();
    aws.once("DescribeCacheParameterGroups", empty_listing())
        .once("CreateCacheParameterGroup", Reply::ok(pg_xml("valkey8")))
        .once(
            "ModifyCacheParameterGroup",
            Reply::ok(
                "<CacheParameterGroupName>k8s-shop-sessions-valkey8</CacheParameterGroupName>",
            ),
        );
    // One reconcile at a time may make changes.
    let settings = AwsSettings {
        turns: 1,
        ..AwsSettings::default()
    };
    let p = std::sync::Arc::new(AwsElastiCache::new(
        &aws.sdk_config(RetryConfig::disabled()),
        settings,
        AwsCallMetrics::new(),
    ));
    let wakeups = Wakeups::default();
    let mut woken = wakeups.subscribe();
    p.turns().announce_on(wakeups);
    // Another cache's reconcile holds the turn.
    let (release, held) = tokio::sync::oneshot::channel::<()>();
    let other = tokio::spawn({
        let p = p.clone();
        turns::pass("k8s-other", async move {
            p.turns().enter().expect("the turn is free");
            let _ = held.await;
        })
    });
    while p.turns().counts().0 == 0 {
        tokio::task::yield_now().await;
    }
    let desired = desired_pg(&[("timeout", "0")]);
    let err = turns::pass(ID, p.ensure_parameter_group(&owner(), &desired, &tags()))
        .await
        .expect_err("waits for its turn");
    assert_eq!(err.class, ErrorClass::Throttled);
    assert!(
        err.message.contains(
            "CreateCacheParameterGroup: waiting for the AWS rate limit, about 4 calls queued (1 caches ahead"
        ),
        "{}",
        err.message
    );
    let retry = err.retry_after.expect("when to come back at the latest");
    assert!(retry >= turns::RESERVED_FOR, "{retry:?}");
    assert_eq!(
        aws.actions(),
        vec!["DescribeCacheParameterGroups"],
        "the read went; the create was not sent"
    );

    // The other's reconcile ends: this cache is woken, and its next pass
    // makes both changes in one turn.
    release.send(()).expect("the other waits");
    other.await.expect("other");
    assert_eq!(woken.recv().await.expect("a wake-up"), ID);
    turns::pass(ID, p.ensure_parameter_group(&owner(), &desired, &tags()))
        .await
        .expect("its turn");
    assert_eq!(
        aws.actions(),
        vec![
            "DescribeCacheParameterGroups",
            "CreateCacheParameterGroup",
            "ModifyCacheParameterGroup"
        ]
    );
}

#[tokio::test]
async fn parameter_drift_is_corrected_and_removed_keys_reset() {
    let aws = Scripted::new();
    aws.always(
        "DescribeCacheParameterGroups",
        Reply::ok(format!(
            "<CacheParameterGroups>{}</CacheParameterGroups>",
            pg_xml("valkey8")
        )),
    )
    .always("ListTagsForResource", Reply::ok(tag_list(&tags())))
    .always(
        "DescribeCacheParameters",
        user_params(&[
            ("maxmemory-policy", "volatile-lru"),
            ("timeout", "0"),
            ("notify-keyspace-events", "Ex"),
        ]),
    )
    .always(
        "ModifyCacheParameterGroup",
        Reply::ok("<CacheParameterGroupName>x</CacheParameterGroupName>"),
    )
    .always(
        "ResetCacheParameterGroup",
        Reply::ok("<CacheParameterGroupName>x</CacheParameterGroupName>"),
    );
    let (p, _) = provider(&aws);
    let desired = desired_pg(&[
        ("maxmemory-policy", "allkeys-lru"),
        ("timeout", "0"),
        ("cluster-enabled", "no"),
    ]);
    p.ensure_parameter_group(&owner(), &desired, &tags())
        .await
        .expect("ensure");
    let modify = &aws.calls("ModifyCacheParameterGroup")[0];
    let prefix = "ParameterNameValues.ParameterNameValue";
    assert_eq!(
        modify.get(&format!("{prefix}.1.ParameterName")),
        Some("cluster-enabled")
    );
    assert_eq!(
        modify.get(&format!("{prefix}.2.ParameterName")),
        Some("maxmemory-policy")
    );
    assert_eq!(
        modify.get(&format!("{prefix}.2.ParameterValue")),
        Some("allkeys-lru")
    );
    assert_eq!(
        modify.get(&format!("{prefix}.3.ParameterName")),
        None,
        "timeout is unchanged"
    );
    let reset = &aws.calls("ResetCacheParameterGroup")[0];
    assert_eq!(reset.get("ResetAllParameters"), Some("false"));
    assert_eq!(
        reset.get(&format!("{prefix}.1.ParameterName")),
        Some("notify-keyspace-events")
    );
    assert_eq!(aws.count("CreateCacheParameterGroup"), 0);

    // A second ensure checks the owner from the cache and knows the values
    // it wrote: nothing is read again.
    aws.clear_record();
    p.ensure_parameter_group(&owner(), &desired, &tags())
        .await
        .expect("ensure");
    assert_eq!(aws.actions(), Vec::<String>::new());
}

#[tokio::test]
async fn foreign_parameter_group_is_a_conflict_and_untouched() {
    let aws = Scripted::new();
    aws.always(
        "DescribeCacheParameterGroups",
        Reply::ok(format!(
            "<CacheParameterGroups>{}</CacheParameterGroups>",
            pg_xml("valkey8")
        )),
    )
    // Another operator's group carries the owner tag key: the bulk read
    // returns its tags, so no ListTagsForResource is needed.
    .once(
        "GetResources",
        bulk_tags(&[(
            format!("{ACCOUNT_ARN}:parametergroup:{ID}-params"),
            foreign_tags(),
        )]),
    );
    let (p, _) = provider(&aws);
    let err = p
        .ensure_parameter_group(&owner(), &desired_pg(&[("timeout", "0")]), &tags())
        .await
        .expect_err("conflict");
    assert_eq!(err.class, ErrorClass::Conflict);
    assert!(err.message.contains("other/cache"), "{}", err.message);
    assert_eq!(
        aws.actions(),
        vec!["DescribeCacheParameterGroups", "GetResources"]
    );
    let bulk: serde_json::Value =
        serde_json::from_str(aws.calls("GetResources")[0].get("json").expect("body"))
            .expect("JSON");
    assert_eq!(bulk["TagFilters"][0]["Key"], TAG_OWNER_UID);
    assert_eq!(bulk["ResourcesPerPage"], 100);
    assert_eq!(
        p.delete_parameter_group(&owner(), &format!("{ID}-params"))
            .await
            .expect("delete"),
        Deletion::NotOwned
    );
    assert_eq!(aws.count("DeleteCacheParameterGroup"), 0);
}

#[tokio::test]
async fn parameter_group_created_before_a_crash_is_ours() {
    let aws = Scripted::new();
    // Not in the listing (read before the crash's create landed).
    aws.once("DescribeCacheParameterGroups", empty_listing())
        .once(
            "CreateCacheParameterGroup",
            Reply::error(400, "CacheParameterGroupAlreadyExists", "exists"),
        )
        .once(
            "DescribeCacheParameterGroups",
            Reply::ok(format!(
                "<CacheParameterGroups>{}</CacheParameterGroups>",
                pg_xml("valkey8")
            )),
        )
        .always("ListTagsForResource", Reply::ok(tag_list(&tags())))
        .always("DescribeCacheParameters", user_params(&[("timeout", "0")]));
    let (p, _) = provider(&aws);
    p.ensure_parameter_group(&owner(), &desired_pg(&[("timeout", "0")]), &tags())
        .await
        .expect("already ours: continue");
    assert_eq!(aws.count("ModifyCacheParameterGroup"), 0);
}

#[tokio::test]
async fn parameter_group_of_another_family_is_rejected() {
    let aws = Scripted::new();
    aws.always(
        "DescribeCacheParameterGroups",
        Reply::ok(format!(
            "<CacheParameterGroups>{}</CacheParameterGroups>",
            pg_xml("redis7")
        )),
    )
    .always("ListTagsForResource", Reply::ok(tag_list(&tags())));
    let (p, _) = provider(&aws);
    let err = p
        .ensure_parameter_group(&owner(), &desired_pg(&[]), &tags())
        .await
        .expect_err("family");
    assert_eq!(err.class, ErrorClass::Rejected);
    assert!(err.message.contains("redis7") && err.message.contains("valkey8"));
}

#[tokio::test(start_paused = true)]
async fn parameter_group_delete_follows_aws() {
    let name = format!("{ID}-params");
    let aws = Scripted::new();
    aws.once("DescribeCacheParameterGroups", empty_listing());
    let (p, _) = provider(&aws);
    assert_eq!(
        p.delete_parameter_group(&owner(), &name)
            .await
            .expect("gone"),
        Deletion::Gone,
        "not in a listing read just now"
    );
    // A deletion trusts a listing at most a minute old, and reads it again
    // once it is older.
    tokio::time::advance(DELETE_LISTING_AGE).await;

    aws.always(
        "DescribeCacheParameterGroups",
        Reply::ok(format!(
            "<CacheParameterGroups>{}</CacheParameterGroups>",
            pg_xml("valkey8")
        )),
    )
    .always("ListTagsForResource", Reply::ok(tag_list(&tags())))
    .once(
        "DeleteCacheParameterGroup",
        Reply::error(
            400,
            "InvalidCacheParameterGroupState",
            "in use by k8s-shop-sessions",
        ),
    )
    .once("DeleteCacheParameterGroup", Reply::ok(""));
    let err = p
        .delete_parameter_group(&owner(), &name)
        .await
        .expect_err("in use");
    assert_eq!(err.class, ErrorClass::Transient);
    assert_eq!(err.code.as_deref(), Some("InvalidCacheParameterGroupState"));
    assert_eq!(
        p.delete_parameter_group(&owner(), &name)
            .await
            .expect("deleted"),
        Deletion::Gone
    );
    assert_eq!(
        aws.calls("DeleteCacheParameterGroup")[1].get("CacheParameterGroupName"),
        Some(name.as_str())
    );
}

// ---------------------------------------------------------------- network

fn desired_network(subnet_group: DesiredSubnetGroup) -> DesiredNetwork {
    DesiredNetwork {
        subnet_group,
        security_group: DesiredSecurityGroup {
            name: ID.into(),
            description: "redis-cache-operator: RedisCache shop/sessions".into(),
            port: 6379,
            allowed_cidrs: vec!["10.0.0.0/16".into(), "10.1.0.0/16".into()],
            allowed_security_group_ids: vec!["sg-app".into()],
        },
        extra_security_group_ids: vec![],
    }
}

fn managed_subnets() -> DesiredSubnetGroup {
    DesiredSubnetGroup::Managed {
        name: ID.into(),
        subnet_ids: vec!["subnet-a".into(), "subnet-b".into()],
        description: "redis-cache-operator: RedisCache shop/sessions".into(),
    }
}

fn subnet_group_xml(subnets: &[&str]) -> String {
    let items: String = subnets
        .iter()
        .map(|s| format!("<Subnet><SubnetIdentifier>{s}</SubnetIdentifier></Subnet>"))
        .collect();
    format!("<CacheSubnetGroup><CacheSubnetGroupName>{ID}</CacheSubnetGroupName><VpcId>vpc-1</VpcId><Subnets>{items}</Subnets><ARN>{ACCOUNT_ARN}:subnetgroup:{ID}</ARN></CacheSubnetGroup>")
}

fn subnets_xml() -> Reply {
    Reply::ok("<subnetSet><item><subnetId>subnet-a</subnetId><vpcId>vpc-1</vpcId></item><item><subnetId>subnet-b</subnetId><vpcId>vpc-1</vpcId></item></subnetSet>")
}

fn security_group_xml(tags: &BTreeMap<String, String>, permissions: &str) -> Reply {
    let tag_items: String = tags
        .iter()
        .map(|(k, v)| format!("<item><key>{k}</key><value>{v}</value></item>"))
        .collect();
    Reply::ok(format!(
        "<securityGroupInfo><item><ownerId>123456789012</ownerId><groupId>sg-1</groupId><groupName>{ID}</groupName><groupDescription>d</groupDescription><vpcId>vpc-1</vpcId><ipPermissions>{permissions}</ipPermissions><tagSet>{tag_items}</tagSet></item></securityGroupInfo>"
    ))
}

#[tokio::test]
async fn network_is_created_in_the_subnets_vpc_with_ingress_only_on_the_port() {
    let aws = Scripted::new();
    aws.once(
        "DescribeCacheSubnetGroups",
        Reply::ok("<CacheSubnetGroups/>"),
    )
    .once("DescribeSubnets", subnets_xml())
    .once(
        "CreateCacheSubnetGroup",
        Reply::ok(subnet_group_xml(&["subnet-a", "subnet-b"])),
    )
    .once("DescribeSecurityGroups", Reply::ok("<securityGroupInfo/>"))
    .once(
        "CreateSecurityGroup",
        Reply::ok("<groupId>sg-new</groupId>"),
    )
    .once(
        "AuthorizeSecurityGroupIngress",
        Reply::ok("<return>true</return>"),
    );
    let (p, _) = provider(&aws);
    let state = p
        .ensure_network(&owner(), &desired_network(managed_subnets()), &tags())
        .await
        .expect("network");
    assert_eq!(state.subnet_group_name, ID);
    assert_eq!(state.security_group_id, "sg-new");

    assert_eq!(
        aws.calls("DescribeSubnets")[0].list("SubnetId"),
        vec!["subnet-a", "subnet-b"]
    );
    let create = &aws.calls("CreateCacheSubnetGroup")[0];
    assert_eq!(create.get("CacheSubnetGroupName"), Some(ID));
    assert_eq!(
        create.list("SubnetIds.SubnetIdentifier"),
        vec!["subnet-a", "subnet-b"]
    );
    assert_eq!(create.tags("Tags.Tag"), tags());

    let listing = &aws.calls("DescribeSecurityGroups")[0];
    assert_eq!(listing.get("Filter.1.Name"), Some("tag-key"), "ours only");
    assert_eq!(listing.get("Filter.1.Value.1"), Some(TAG_OWNER_UID));
    assert_eq!(listing.get("MaxResults"), Some("1000"));
    let sg = &aws.calls("CreateSecurityGroup")[0];
    assert_eq!(sg.get("GroupName"), Some(ID));
    assert_eq!(sg.get("VpcId"), Some("vpc-1"));
    assert_eq!(
        sg.get("GroupDescription"),
        Some("redis-cache-operator: RedisCache shop/sessions")
    );
    assert_eq!(
        sg.get("TagSpecification.1.ResourceType"),
        Some("security-group")
    );
    assert_eq!(sg.tags("TagSpecification.1.Tag"), tags());

    let auth = &aws.calls("AuthorizeSecurityGroupIngress")[0];
    assert_eq!(auth.get("GroupId"), Some("sg-new"));
    let mut sources = Vec::new();
    for i in 1..=3 {
        assert_eq!(
            auth.get(&format!("IpPermissions.{i}.IpProtocol")),
            Some("tcp")
        );
        assert_eq!(
            auth.get(&format!("IpPermissions.{i}.FromPort")),
            Some("6379")
        );
        assert_eq!(auth.get(&format!("IpPermissions.{i}.ToPort")), Some("6379"));
        sources.extend(
            auth.get(&format!("IpPermissions.{i}.IpRanges.1.CidrIp"))
                .map(str::to_string),
        );
        sources.extend(
            auth.get(&format!("IpPermissions.{i}.Groups.1.GroupId"))
                .map(str::to_string),
        );
    }
    assert_eq!(
        sources,
        vec!["10.0.0.0/16", "10.1.0.0/16", "sg-app"],
        "{auth:?}"
    );
    assert_eq!(auth.get("IpPermissions.4.IpProtocol"), None);
    assert_eq!(
        aws.count("RevokeSecurityGroupIngress"),
        0,
        "egress and nothing else is touched"
    );

    // Settled: the listings and what our calls did answer everything.
    aws.clear_record();
    let again = p
        .ensure_network(&owner(), &desired_network(managed_subnets()), &tags())
        .await
        .expect("network again");
    assert_eq!(again, state);
    assert_eq!(aws.actions(), Vec::<String>::new(), "no AWS call");
}

#[tokio::test]
async fn existing_security_group_rules_are_authorized_and_revoked_to_match() {
    let aws = Scripted::new();
    let perms = "<item><ipProtocol>tcp</ipProtocol><fromPort>6379</fromPort><toPort>6379</toPort><ipRanges><item><cidrIp>10.0.0.0/16</cidrIp></item><item><cidrIp>0.0.0.0/0</cidrIp></item></ipRanges><groups><item><groupId>sg-app</groupId><userId>123456789012</userId></item></groups></item>";
    aws.always(
        "DescribeCacheSubnetGroups",
        Reply::ok(format!(
            "<CacheSubnetGroups>{}</CacheSubnetGroups>",
            subnet_group_xml(&["subnet-a", "subnet-b"])
        )),
    )
    .always("ListTagsForResource", Reply::ok(tag_list(&tags())))
    .always("DescribeSecurityGroups", security_group_xml(&tags(), perms))
    // Someone added 10.1.0.0/16 meanwhile: the batch fails as a whole,
    // so the rules go one by one and the duplicate counts as done.
    .once(
        "AuthorizeSecurityGroupIngress",
        Reply::error(
            400,
            "InvalidPermission.Duplicate",
            "the specified rule already exists",
        ),
    )
    .once(
        "AuthorizeSecurityGroupIngress",
        Reply::error(
            400,
            "InvalidPermission.Duplicate",
            "the specified rule already exists",
        ),
    )
    .once(
        "AuthorizeSecurityGroupIngress",
        Reply::ok("<return>true</return>"),
    )
    .once(
        "RevokeSecurityGroupIngress",
        Reply::error(400, "InvalidPermission.NotFound", "gone already"),
    );
    let (p, metrics) = provider(&aws);
    let mut network = desired_network(managed_subnets());
    network.security_group.allowed_cidrs.push("fd00::/8".into());
    let state = p
        .ensure_network(&owner(), &network, &tags())
        .await
        .expect("duplicates and missing rules are success");
    assert_eq!(state.security_group_id, "sg-1");
    assert_eq!(aws.count("CreateCacheSubnetGroup"), 0);
    assert_eq!(aws.count("ModifyCacheSubnetGroup"), 0, "subnets match");
    assert_eq!(aws.count("CreateSecurityGroup"), 0);
    let auths = aws.calls("AuthorizeSecurityGroupIngress");
    assert_eq!(
        auths.len(),
        3,
        "one batch, then each of the two rules alone"
    );
    assert_eq!(
        auths[0].get("IpPermissions.1.IpRanges.1.CidrIp"),
        Some("10.1.0.0/16")
    );
    assert_eq!(
        auths[0].get("IpPermissions.2.Ipv6Ranges.1.CidrIpv6"),
        Some("fd00::/8"),
        "{:?}",
        auths[0]
    );
    assert_eq!(
        auths[2].get("IpPermissions.1.Ipv6Ranges.1.CidrIpv6"),
        Some("fd00::/8")
    );
    let revoke = &aws.calls("RevokeSecurityGroupIngress")[0];
    assert_eq!(revoke.get("GroupId"), Some("sg-1"));
    assert_eq!(
        revoke.get("IpPermissions.1.IpRanges.1.CidrIp"),
        Some("0.0.0.0/0")
    );
    assert_eq!(revoke.get("IpPermissions.2.IpProtocol"), None);
    assert_eq!(
        metrics.count(Operation::AuthorizeSecurityGroupIngress, "already_done"),
        2
    );
}

#[tokio::test]
async fn changed_subnets_are_modified_and_foreign_network_is_a_conflict() {
    let aws = Scripted::new();
    aws.always(
        "DescribeCacheSubnetGroups",
        Reply::ok(format!(
            "<CacheSubnetGroups>{}</CacheSubnetGroups>",
            subnet_group_xml(&["subnet-a", "subnet-old"])
        )),
    )
    .always("ListTagsForResource", Reply::ok(tag_list(&tags())))
    .always("DescribeSubnets", subnets_xml())
    .always(
        "ModifyCacheSubnetGroup",
        Reply::ok(subnet_group_xml(&["subnet-a", "subnet-b"])),
    )
    .always(
        "DescribeSecurityGroups",
        security_group_xml(&foreign_tags(), ""),
    );
    let (p, _) = provider(&aws);
    let err = p
        .ensure_network(&owner(), &desired_network(managed_subnets()), &tags())
        .await
        .expect_err("foreign security group");
    assert_eq!(err.class, ErrorClass::Conflict);
    assert!(err.message.contains("security group"), "{}", err.message);
    let modify = &aws.calls("ModifyCacheSubnetGroup")[0];
    assert_eq!(
        modify.list("SubnetIds.SubnetIdentifier"),
        vec!["subnet-a", "subnet-b"]
    );
    assert_eq!(aws.count("AuthorizeSecurityGroupIngress"), 0);
    assert_eq!(aws.count("RevokeSecurityGroupIngress"), 0);
}

#[tokio::test]
async fn existing_subnet_group_is_only_checked() {
    let aws = Scripted::new();
    aws.always(
        "DescribeCacheSubnetGroups",
        Reply::ok(format!(
            "<CacheSubnetGroups>{}</CacheSubnetGroups>",
            subnet_group_xml(&["subnet-x"])
        )),
    )
    .always("DescribeSecurityGroups", security_group_xml(&tags(), ""))
    .always(
        "AuthorizeSecurityGroupIngress",
        Reply::ok("<return>true</return>"),
    );
    let (p, _) = provider(&aws);
    let existing = DesiredSubnetGroup::Existing { name: ID.into() };
    let state = p
        .ensure_network(&owner(), &desired_network(existing.clone()), &tags())
        .await
        .expect("network");
    assert_eq!(state.subnet_group_name, ID);
    for never in [
        "ListTagsForResource",
        "CreateCacheSubnetGroup",
        "ModifyCacheSubnetGroup",
        "DescribeSubnets",
    ] {
        assert_eq!(aws.count(never), 0, "{never}");
    }
    assert_eq!(
        aws.calls("DescribeSecurityGroups")[0].get("Filter.1.Name"),
        Some("tag-key")
    );

    // Not in the listing, and AWS, asked for it by name, does not have it.
    let aws = Scripted::new();
    aws.once(
        "DescribeCacheSubnetGroups",
        Reply::ok("<CacheSubnetGroups/>"),
    )
    .always(
        "DescribeCacheSubnetGroups",
        not_found("CacheSubnetGroupNotFoundFault"),
    );
    let (p, _) = provider(&aws);
    let err = p
        .ensure_network(&owner(), &desired_network(existing), &tags())
        .await
        .expect_err("missing");
    assert_eq!(err.class, ErrorClass::Rejected);
    assert!(err.message.contains("subnetGroupName"), "{}", err.message);
}

#[tokio::test]
async fn subnets_in_two_vpcs_are_rejected() {
    let aws = Scripted::new();
    aws.always("DescribeCacheSubnetGroups", Reply::ok("<CacheSubnetGroups/>"))
        .always("DescribeSubnets", Reply::ok("<subnetSet><item><subnetId>subnet-a</subnetId><vpcId>vpc-1</vpcId></item><item><subnetId>subnet-b</subnetId><vpcId>vpc-2</vpcId></item></subnetSet>"));
    let (p, _) = provider(&aws);
    let err = p
        .ensure_network(&owner(), &desired_network(managed_subnets()), &tags())
        .await
        .expect_err("two vpcs");
    assert_eq!(err.class, ErrorClass::Rejected);
    assert_eq!(aws.count("CreateCacheSubnetGroup"), 0);

    let aws = Scripted::new();
    aws.always(
        "DescribeCacheSubnetGroups",
        Reply::ok("<CacheSubnetGroups/>"),
    )
    .always(
        "DescribeSubnets",
        Reply::error(
            400,
            "InvalidSubnetID.NotFound",
            "The subnet ID 'subnet-b' does not exist",
        ),
    );
    let (p, _) = provider(&aws);
    let err = p
        .ensure_network(&owner(), &desired_network(managed_subnets()), &tags())
        .await
        .expect_err("unknown subnet");
    assert_eq!(err.class, ErrorClass::Rejected);
    assert!(err.message.contains("subnet-b"), "{}", err.message);
}

#[tokio::test]
async fn security_group_and_subnet_group_deletes() {
    let aws = Scripted::new();
    // The listing (ours, by the owner tag), then two reads by name once
    // the listing has none of ours: nothing left, then someone else's.
    aws.once("DescribeSecurityGroups", security_group_xml(&tags(), ""))
        .once(
            "DeleteSecurityGroup",
            Reply::error(
                400,
                "DependencyViolation",
                "resource sg-1 has a dependent object",
            ),
        )
        .once("DeleteSecurityGroup", Reply::ok("<return>true</return>"))
        .once("DescribeSecurityGroups", Reply::ok("<securityGroupInfo/>"))
        .once(
            "DescribeSecurityGroups",
            security_group_xml(&foreign_tags(), ""),
        );
    let (p, _) = provider(&aws);
    let err = p
        .delete_security_group(&owner(), ID)
        .await
        .expect_err("in use");
    assert_eq!(err.class, ErrorClass::Transient);
    assert_eq!(
        p.delete_security_group(&owner(), ID).await.expect("ok"),
        Deletion::Gone
    );
    assert_eq!(
        aws.calls("DeleteSecurityGroup")[1].get("GroupId"),
        Some("sg-1")
    );
    assert_eq!(
        p.delete_security_group(&owner(), ID).await.expect("ok"),
        Deletion::Gone
    );
    assert_eq!(
        p.delete_security_group(&owner(), ID).await.expect("ok"),
        Deletion::NotOwned
    );
    assert_eq!(aws.count("DeleteSecurityGroup"), 2);
    let reads = aws.calls("DescribeSecurityGroups");
    assert_eq!(reads.len(), 3, "one listing, then two reads by name");
    assert_eq!(reads[0].get("Filter.1.Name"), Some("tag-key"));
    assert_eq!(reads[1].get("Filter.1.Value.1"), Some(ID));
    assert_eq!(reads[1].get("Filter.2.Name"), None, "any VPC on delete");

    let aws = Scripted::new();
    aws.always(
        "DescribeCacheSubnetGroups",
        Reply::ok(format!(
            "<CacheSubnetGroups>{}</CacheSubnetGroups>",
            subnet_group_xml(&["subnet-a"])
        )),
    )
    .always("ListTagsForResource", Reply::ok(tag_list(&tags())))
    .once(
        "DeleteCacheSubnetGroup",
        Reply::error(400, "CacheSubnetGroupInUse", "in use"),
    )
    .once(
        "DeleteCacheSubnetGroup",
        not_found("CacheSubnetGroupNotFoundFault"),
    );
    let (p, _) = provider(&aws);
    let err = p
        .delete_subnet_group(&owner(), ID)
        .await
        .expect_err("in use");
    assert_eq!(err.class, ErrorClass::Transient);
    assert_eq!(
        p.delete_subnet_group(&owner(), ID).await.expect("gone"),
        Deletion::Gone
    );
}

// ---------------------------------------------------------------- replication group

fn desired_group() -> DesiredReplicationGroup {
    DesiredReplicationGroup {
        id: ID.into(),
        description: "redis-cache-operator: RedisCache shop/sessions".into(),
        engine: Engine::Valkey,
        engine_version: "8.0".into(),
        node_type: "cache.t4g.small".into(),
        cluster_mode: ClusterMode::Disabled,
        shards: 1,
        replicas_per_shard: 2,
        multi_az: true,
        automatic_failover: true,
        port: 6380,
        transit_encryption: true,
        at_rest_encryption: true,
        kms_key_id: Some("alias/cache".into()),
        snapshot_retention_days: 7,
        snapshot_window: Some("03:00-04:00".into()),
        maintenance_window: Some("sun:05:00-sun:06:00".into()),
        apply_immediately: true,
    }
}

fn companions() -> Companions {
    Companions {
        parameter_group: format!("{ID}-params"),
        subnet_group: ID.into(),
        security_group_ids: vec!["sg-1".into(), "sg-extra".into()],
    }
}

#[tokio::test]
async fn a_changed_group_is_announced_with_its_page_before_the_rest_are_read() {
    let aws = Scripted::new();
    aws.once(
        "DescribeReplicationGroups",
        groups_reply(&[group_xml(ID, "creating", "")], None),
    )
    .once(
        "DescribeReplicationGroups",
        groups_reply(&[group_xml(ID, "available", "")], Some("page-1")),
    )
    .once(
        "DescribeReplicationGroups",
        Reply::error(500, "InternalFailure", "the second page is lost"),
    );
    let (p, _) = provider(&aws);
    let wakeups = Wakeups::default();
    let mut woken = wakeups.subscribe();
    p.fleet().announce_on(wakeups);
    // A reconcile asked about the group: it is followed.
    let seen = p.fleet().lookup(ID).await.expect("first snapshot");
    assert_eq!(seen.as_ref().and_then(|g| g.status()), Some("creating"));
    p.fleet()
        .refresh()
        .await
        .expect_err("the second page failed");
    assert_eq!(woken.try_recv().expect("announced with its own page"), ID);
    assert_eq!(
        p.fleet().peek(ID).as_ref().and_then(|g| g.status()),
        Some("available"),
        "the woken reconcile sees what the page said"
    );
}

/// A cluster-mode-disabled group with one primary and two replicas.
fn group_xml(id: &str, status: &str, extra: &str) -> String {
    format!(
        "<ReplicationGroup><ReplicationGroupId>{id}</ReplicationGroupId><Description>d</Description><Status>{status}</Status>\
<MemberClusters><ClusterId>{id}-001</ClusterId><ClusterId>{id}-002</ClusterId><ClusterId>{id}-003</ClusterId></MemberClusters>\
<NodeGroups><NodeGroup><NodeGroupId>0001</NodeGroupId><Status>{status}</Status>\
<PrimaryEndpoint><Address>master.{id}.abc.use1.cache.amazonaws.com</Address><Port>6380</Port></PrimaryEndpoint>\
<ReaderEndpoint><Address>replica.{id}.abc.use1.cache.amazonaws.com</Address><Port>6380</Port></ReaderEndpoint>\
<NodeGroupMembers><NodeGroupMember><CacheClusterId>{id}-001</CacheClusterId><CurrentRole>primary</CurrentRole></NodeGroupMember>\
<NodeGroupMember><CacheClusterId>{id}-002</CacheClusterId><CurrentRole>replica</CurrentRole></NodeGroupMember>\
<NodeGroupMember><CacheClusterId>{id}-003</CacheClusterId><CurrentRole>replica</CurrentRole></NodeGroupMember></NodeGroupMembers></NodeGroup></NodeGroups>\
<AutomaticFailover>enabled</AutomaticFailover><MultiAZ>enabled</MultiAZ><ClusterEnabled>false</ClusterEnabled><ClusterMode>disabled</ClusterMode>\
<CacheNodeType>cache.t4g.small</CacheNodeType><AuthTokenEnabled>true</AuthTokenEnabled><TransitEncryptionEnabled>true</TransitEncryptionEnabled>\
<AtRestEncryptionEnabled>true</AtRestEncryptionEnabled><ARN>{ACCOUNT_ARN}:replicationgroup:{id}</ARN><Engine>valkey</Engine>{extra}</ReplicationGroup>"
    )
}

fn groups_reply(groups: &[String], marker: Option<&str>) -> Reply {
    let marker = marker
        .map(|m| format!("<Marker>{m}</Marker>"))
        .unwrap_or_default();
    Reply::ok(format!(
        "{marker}<ReplicationGroups>{}</ReplicationGroups>",
        groups.concat()
    ))
}

fn member_reply(pending: &str) -> Reply {
    Reply::ok(format!(
        "<CacheClusters><CacheCluster><CacheClusterId>{ID}-001</CacheClusterId><Engine>valkey</Engine><EngineVersion>8.0.1</EngineVersion>\
<CacheParameterGroup><CacheParameterGroupName>{ID}-params</CacheParameterGroupName><ParameterApplyStatus>in-sync</ParameterApplyStatus></CacheParameterGroup>\
<PendingModifiedValues>{pending}</PendingModifiedValues></CacheCluster></CacheClusters>"
    ))
}

fn group_tags_reply() -> Reply {
    Reply::ok(tag_list(&tags()))
}

#[tokio::test]
async fn create_sends_every_setting_and_maps_the_answer() {
    let aws = Scripted::new();
    aws.once(
        "CreateReplicationGroup",
        Reply::ok(group_xml(ID, "creating", "")),
    )
    .always("DescribeCacheClusters", member_reply(""));
    let (p, _) = provider(&aws);
    let token = Credential::new("T0ken".repeat(13));
    let state = p
        .create_replication_group(&owner(), &desired_group(), &companions(), &token, &tags())
        .await
        .expect("create");
    assert_eq!(state.status, GroupStatus::Creating);

    let r = &aws.calls("CreateReplicationGroup")[0];
    let expect = [
        ("ReplicationGroupId", ID),
        (
            "ReplicationGroupDescription",
            "redis-cache-operator: RedisCache shop/sessions",
        ),
        ("Engine", "valkey"),
        ("EngineVersion", "8.0"),
        ("CacheNodeType", "cache.t4g.small"),
        ("ClusterMode", "disabled"),
        ("NumNodeGroups", "1"),
        ("ReplicasPerNodeGroup", "2"),
        ("MultiAZEnabled", "true"),
        ("AutomaticFailoverEnabled", "true"),
        ("TransitEncryptionEnabled", "true"),
        ("AtRestEncryptionEnabled", "true"),
        ("KmsKeyId", "alias/cache"),
        ("AuthToken", token.expose()),
        ("CacheParameterGroupName", "k8s-shop-sessions-params"),
        ("CacheSubnetGroupName", ID),
        ("SnapshotRetentionLimit", "7"),
        ("SnapshotWindow", "03:00-04:00"),
        ("PreferredMaintenanceWindow", "sun:05:00-sun:06:00"),
        ("Port", "6380"),
    ];
    for (key, value) in expect {
        assert_eq!(r.get(key), Some(value), "{key} in {:?}", r.params.keys());
    }
    assert_eq!(
        r.list("SecurityGroupIds.SecurityGroupId"),
        vec!["sg-1", "sg-extra"]
    );
    assert_eq!(r.tags("Tags.Tag"), tags());

    // The new group is served from the snapshot: no Describe of its own.
    aws.clear_record();
    aws.always(
        "DescribeReplicationGroups",
        groups_reply(&[group_xml(ID, "creating", "")], None),
    );
    let seen = p
        .observe_replication_group(&owner(), ID)
        .await
        .expect("observe")
        .expect("exists");
    assert_eq!(seen.status, GroupStatus::Creating);
    assert_eq!(
        aws.count("ListTagsForResource"),
        0,
        "tags known from the create"
    );
    assert!(aws
        .calls("DescribeReplicationGroups")
        .iter()
        .all(|r| r.get("ReplicationGroupId").is_none()));

    // AWS makes it available. The reconcile that sees it first is answered
    // from the create request, without waiting for a member read...
    aws.always(
        "DescribeReplicationGroups",
        groups_reply(&[group_xml(ID, "available", "")], None),
    );
    p.fleet().refresh().await.expect("refresh");
    aws.clear_record();
    let first = p
        .observe_replication_group(&owner(), ID)
        .await
        .expect("observe")
        .expect("exists");
    assert_eq!(first.status, GroupStatus::Available);
    assert_eq!(aws.count("DescribeCacheClusters"), 0, "no member read yet");
    assert_eq!(first.engine_version.as_deref(), Some("8.0"), "as requested");
    assert_eq!(
        first.parameter_group.as_deref(),
        Some("k8s-shop-sessions-params")
    );
    assert_eq!(first.security_group_ids, vec!["sg-1", "sg-extra"]);
    assert_eq!(first.subnet_group.as_deref(), Some(ID));
    // ...and the next one reads what the members report.
    let next = p
        .observe_replication_group(&owner(), ID)
        .await
        .expect("observe")
        .expect("exists");
    assert_eq!(aws.count("DescribeCacheClusters"), 1);
    assert_eq!(next.engine_version.as_deref(), Some("8.0.1"));
    assert_eq!(
        next.parameter_group.as_deref(),
        Some(format!("{ID}-params").as_str())
    );
}

#[tokio::test]
async fn described_group_maps_to_the_domain_state() {
    let aws = Scripted::new();
    let pending = "<PendingModifiedValues><AutomaticFailoverStatus>disabled</AutomaticFailoverStatus><AuthTokenStatus>ROTATING</AuthTokenStatus></PendingModifiedValues>";
    aws.always(
        "DescribeReplicationGroups",
        groups_reply(&[group_xml(ID, "available", pending)], None),
    )
    .always("ListTagsForResource", group_tags_reply())
    .always(
        "DescribeCacheClusters",
        member_reply("<CacheNodeType>cache.r7g.large</CacheNodeType>"),
    );
    let (p, _) = provider(&aws);
    let g = p
        .observe_replication_group(&owner(), ID)
        .await
        .expect("observe")
        .expect("exists");
    assert_eq!(g.id, ID);
    assert_eq!(
        g.arn.as_deref(),
        Some(format!("{ACCOUNT_ARN}:replicationgroup:{ID}").as_str())
    );
    assert_eq!(g.status, GroupStatus::Available);
    assert_eq!(g.engine.as_deref(), Some("valkey"));
    assert_eq!(
        g.engine_version.as_deref(),
        Some("8.0.1"),
        "from the member cluster"
    );
    assert_eq!(g.node_type.as_deref(), Some("cache.t4g.small"));
    assert_eq!(g.cluster_mode, Some(ClusterMode::Disabled));
    assert_eq!((g.shards, g.replicas_per_shard), (1, 2));
    assert!(g.multi_az && g.automatic_failover);
    assert!(g.at_rest_encryption && g.transit_encryption && g.auth_token_enabled);
    assert_eq!(g.port, Some(6380));
    assert_eq!(
        g.parameter_group.as_deref(),
        Some("k8s-shop-sessions-params")
    );
    let endpoint = g.endpoint.expect("primary");
    assert_eq!(
        endpoint.host,
        format!("master.{ID}.abc.use1.cache.amazonaws.com")
    );
    assert_eq!(endpoint.port, 6380);
    assert_eq!(
        g.reader_endpoint.expect("reader").host,
        format!("replica.{ID}.abc.use1.cache.amazonaws.com")
    );
    assert_eq!(
        g.pending_changes,
        vec!["authToken", "automaticFailover", "nodeType"]
    );
    let member = &aws.calls("DescribeCacheClusters")[0];
    assert_eq!(
        member.get("CacheClusterId"),
        Some(format!("{ID}-001").as_str())
    );
    let page = &aws.calls("DescribeReplicationGroups")[0];
    assert_eq!(page.get("MaxRecords"), Some("100"));
    assert_eq!(
        page.get("ReplicationGroupId"),
        None,
        "the fleet page, not a single describe"
    );
}

#[tokio::test]
async fn cluster_mode_group_reports_its_configuration_endpoint() {
    let xml = format!(
        "<ReplicationGroup><ReplicationGroupId>{ID}</ReplicationGroupId><Status>available</Status>\
<MemberClusters><ClusterId>{ID}-0001-001</ClusterId><ClusterId>{ID}-0001-002</ClusterId><ClusterId>{ID}-0002-001</ClusterId><ClusterId>{ID}-0002-002</ClusterId></MemberClusters>\
<NodeGroups><NodeGroup><NodeGroupId>0001</NodeGroupId><Slots>0-8191</Slots></NodeGroup><NodeGroup><NodeGroupId>0002</NodeGroupId><Slots>8192-16383</Slots></NodeGroup></NodeGroups>\
<ConfigurationEndpoint><Address>clustercfg.{ID}.abc.use1.cache.amazonaws.com</Address><Port>6379</Port></ConfigurationEndpoint>\
<ClusterEnabled>true</ClusterEnabled><ClusterMode>enabled</ClusterMode><MultiAZ>disabled</MultiAZ><AutomaticFailover>enabled</AutomaticFailover>\
<ARN>{ACCOUNT_ARN}:replicationgroup:{ID}</ARN></ReplicationGroup>"
    );
    let aws = Scripted::new();
    aws.always("DescribeReplicationGroups", groups_reply(&[xml], None))
        .always("ListTagsForResource", group_tags_reply())
        .always("DescribeCacheClusters", not_found("CacheClusterNotFound"));
    let (p, _) = provider(&aws);
    let g = p
        .observe_replication_group(&owner(), ID)
        .await
        .expect("observe")
        .expect("exists");
    assert_eq!(g.cluster_mode, Some(ClusterMode::Enabled));
    assert_eq!(
        (g.shards, g.replicas_per_shard),
        (2, 1),
        "from member clusters"
    );
    assert_eq!(
        g.endpoint.expect("config").host,
        format!("clustercfg.{ID}.abc.use1.cache.amazonaws.com")
    );
    assert_eq!(g.reader_endpoint, None);
    assert!(!g.multi_az && g.automatic_failover);
    assert_eq!(
        g.engine_version, None,
        "member not found: unknown, not an error"
    );
}

#[tokio::test]
async fn foreign_group_is_a_conflict_on_observe_and_create_and_not_owned_on_delete() {
    let aws = Scripted::new();
    aws.always(
        "DescribeReplicationGroups",
        groups_reply(&[group_xml(ID, "available", "")], None),
    )
    .always("ListTagsForResource", Reply::ok(tag_list(&foreign_tags())))
    .always(
        "CreateReplicationGroup",
        Reply::error(
            400,
            "ReplicationGroupAlreadyExists",
            "Replication group already exists",
        ),
    );
    let (p, _) = provider(&aws);
    let err = p
        .observe_replication_group(&owner(), ID)
        .await
        .expect_err("conflict");
    assert_eq!(err.class, ErrorClass::Conflict);
    assert!(err.message.contains("other/cache"), "{}", err.message);
    let err = p
        .create_replication_group(
            &owner(),
            &desired_group(),
            &companions(),
            &Credential::new("t"),
            &tags(),
        )
        .await
        .expect_err("conflict");
    assert_eq!(err.class, ErrorClass::Conflict);
    assert_eq!(
        p.delete_replication_group(&owner(), ID, None)
            .await
            .expect("delete"),
        Deletion::NotOwned
    );
    for never in [
        "DeleteReplicationGroup",
        "ModifyReplicationGroup",
        "DescribeCacheClusters",
    ] {
        assert_eq!(aws.count(never), 0, "{never}");
    }
    let err = p
        .modify_replication_group(
            &owner(),
            ID,
            &ReplicationGroupChange {
                node_type: Some("cache.t4g.medium".into()),
                ..Default::default()
            },
        )
        .await
        .expect_err("conflict");
    assert_eq!(err.class, ErrorClass::Conflict);
    assert_eq!(aws.count("ModifyReplicationGroup"), 0);
}

#[tokio::test]
async fn group_created_before_a_crash_is_ours() {
    let aws = Scripted::new();
    aws.once(
        "CreateReplicationGroup",
        Reply::error(
            400,
            "ReplicationGroupAlreadyExists",
            "Replication group already exists",
        ),
    )
    .always(
        "DescribeReplicationGroups",
        groups_reply(&[group_xml(ID, "creating", "")], None),
    )
    .always("ListTagsForResource", group_tags_reply())
    .always("DescribeCacheClusters", member_reply(""));
    let (p, _) = provider(&aws);
    let state = p
        .create_replication_group(
            &owner(),
            &desired_group(),
            &companions(),
            &Credential::new("t"),
            &tags(),
        )
        .await
        .expect("ours: continue");
    assert_eq!(state.status, GroupStatus::Creating);
    assert_eq!(
        aws.calls("DescribeReplicationGroups")[0].get("ReplicationGroupId"),
        Some(ID)
    );
}

#[tokio::test]
async fn modify_sends_only_the_named_settings() {
    let aws = Scripted::new();
    aws.always(
        "DescribeReplicationGroups",
        groups_reply(&[group_xml(ID, "available", "")], None),
    )
    .always("ListTagsForResource", group_tags_reply())
    .always("DescribeCacheClusters", member_reply(""))
    .once(
        "ModifyReplicationGroup",
        Reply::ok(group_xml(ID, "modifying", "")),
    );
    let (p, _) = provider(&aws);
    p.observe_replication_group(&owner(), ID)
        .await
        .expect("observe")
        .expect("exists");
    let change = ReplicationGroupChange {
        node_type: Some("cache.r7g.large".into()),
        security_group_ids: Some(vec!["sg-1".into(), "sg-2".into()]),
        multi_az: Some(false),
        apply_immediately: true,
        ..Default::default()
    };
    let state = p
        .modify_replication_group(&owner(), ID, &change)
        .await
        .expect("modify");
    assert_eq!(state.status, GroupStatus::Modifying);
    let r = &aws.calls("ModifyReplicationGroup")[0];
    let keys: Vec<&str> = r
        .params
        .keys()
        .map(String::as_str)
        .filter(|k| !matches!(*k, "Action" | "Version"))
        .collect();
    assert_eq!(
        keys,
        vec![
            "ApplyImmediately",
            "CacheNodeType",
            "MultiAZEnabled",
            "ReplicationGroupId",
            "SecurityGroupIds.SecurityGroupId.1",
            "SecurityGroupIds.SecurityGroupId.2",
        ]
    );
    assert_eq!(r.get("ApplyImmediately"), Some("true"));
    assert_eq!(r.get("MultiAZEnabled"), Some("false"));

    // The snapshot now says modifying: the poller goes fast.
    assert!(p.fleet().in_transition());
    // And the member facts are read again after our own change.
    assert_eq!(aws.count("DescribeCacheClusters"), 2);
}

#[tokio::test]
async fn delete_waits_for_aws_to_say_not_found() {
    let snapshot = format!("{ID}-final-20261122T101500Z");
    let aws = Scripted::new();
    aws.always("ListTagsForResource", group_tags_reply())
        .once(
            "DescribeReplicationGroups",
            groups_reply(&[group_xml(ID, "available", "")], None),
        )
        .once(
            "DeleteReplicationGroup",
            Reply::ok(group_xml(ID, "deleting", "")),
        )
        // The fleet poll no longer lists it, then AWS confirms.
        .once("DescribeReplicationGroups", groups_reply(&[], None))
        .once(
            "DescribeReplicationGroups",
            not_found("ReplicationGroupNotFoundFault"),
        );
    let (p, _) = provider(&aws);
    let owner = owner();
    assert_eq!(
        p.delete_replication_group(&owner, ID, Some(&snapshot))
            .await
            .expect("delete"),
        Deletion::InProgress
    );
    let delete = &aws.calls("DeleteReplicationGroup")[0];
    assert_eq!(delete.get("ReplicationGroupId"), Some(ID));
    assert_eq!(
        delete.get("FinalSnapshotIdentifier"),
        Some(snapshot.as_str())
    );
    assert_eq!(
        p.delete_replication_group(&owner, ID, Some("other-name"))
            .await
            .expect("delete"),
        Deletion::InProgress,
        "a group already deleting is not deleted again"
    );
    assert_eq!(aws.count("DeleteReplicationGroup"), 1);
    assert_eq!(
        aws.count("DescribeReplicationGroups"),
        1,
        "while the snapshot says deleting, nothing is read"
    );
    p.fleet().refresh().await.expect("fleet poll");
    assert_eq!(
        p.delete_replication_group(&owner, ID, None)
            .await
            .expect("delete"),
        Deletion::Gone
    );
    // "Gone" comes from AWS itself, asked for this group.
    let reads = aws.calls("DescribeReplicationGroups");
    assert_eq!(reads.len(), 3);
    assert_eq!(reads[2].get("ReplicationGroupId"), Some(ID));
}

#[tokio::test]
async fn delete_without_snapshot_and_in_a_busy_state() {
    let aws = Scripted::new();
    aws.always("ListTagsForResource", group_tags_reply())
        .always(
            "DescribeReplicationGroups",
            groups_reply(&[group_xml(ID, "modifying", "")], None),
        )
        .once(
            "DeleteReplicationGroup",
            Reply::error(
                400,
                "InvalidReplicationGroupState",
                "Replication group must be in available state",
            ),
        )
        .once(
            "DeleteReplicationGroup",
            not_found("ReplicationGroupNotFoundFault"),
        );
    let (p, _) = provider(&aws);
    let err = p
        .delete_replication_group(&owner(), ID, None)
        .await
        .expect_err("busy");
    assert_eq!(err.class, ErrorClass::Transient);
    assert_eq!(
        aws.calls("DeleteReplicationGroup")[0].get("FinalSnapshotIdentifier"),
        None
    );
    assert_eq!(
        p.delete_replication_group(&owner(), ID, None)
            .await
            .expect("gone"),
        Deletion::Gone
    );
}

// ---------------------------------------------------------------- errors

#[tokio::test]
async fn every_error_class_arrives_classified_with_the_aws_message() {
    let token = "Zz9".repeat(22);
    let cases: Vec<(Reply, ErrorClass, Option<&str>)> = vec![
        (
            Reply::error(400, "Throttling", "Rate exceeded"),
            ErrorClass::Throttled,
            Some("Throttling"),
        ),
        (
            Reply::error(400, "APICallRateForCustomerExceeded", "slow down"),
            ErrorClass::Throttled,
            Some("APICallRateForCustomerExceeded"),
        ),
        (
            Reply::error(
                400,
                "InvalidParameterValue",
                &format!("bad AuthToken {token}"),
            ),
            ErrorClass::Rejected,
            Some("InvalidParameterValue"),
        ),
        (
            Reply::error(400, "InvalidParameterCombination", "no"),
            ErrorClass::Rejected,
            Some("InvalidParameterCombination"),
        ),
        (
            Reply::error(400, "InvalidKMSKeyFault", "kms"),
            ErrorClass::Rejected,
            Some("InvalidKMSKeyFault"),
        ),
        (
            Reply::error(400, "InvalidVPCNetworkStateFault", "vpc"),
            ErrorClass::Rejected,
            Some("InvalidVPCNetworkStateFault"),
        ),
        (
            Reply::error(400, "InsufficientCacheClusterCapacity", "none left"),
            ErrorClass::Capacity,
            Some("InsufficientCacheClusterCapacity"),
        ),
        (
            Reply::error(400, "NodeQuotaForCustomerExceeded", "quota"),
            ErrorClass::Capacity,
            Some("NodeQuotaForCustomerExceeded"),
        ),
        (
            Reply::error(400, "ClusterQuotaForCustomerExceeded", "quota"),
            ErrorClass::Capacity,
            Some("ClusterQuotaForCustomerExceeded"),
        ),
        (
            Reply::error(400, "CacheParameterGroupNotFound", "pg"),
            ErrorClass::NotFound,
            Some("CacheParameterGroupNotFound"),
        ),
        (
            Reply::error(503, "ServiceUnavailable", "later"),
            ErrorClass::Transient,
            Some("ServiceUnavailable"),
        ),
        // An HTML 500 (moto for a call it lacks, a proxy): no code, transient.
        (
            Reply::Raw {
                status: 500,
                body: "<html>Internal Server Error</html>".into(),
            },
            ErrorClass::Transient,
            None,
        ),
        // Even a 404 without a code says nothing about our resource.
        (
            Reply::Raw {
                status: 404,
                body: "<html>Not Found</html>".into(),
            },
            ErrorClass::Transient,
            None,
        ),
    ];
    for (reply, class, code) in cases {
        let aws = Scripted::new();
        aws.always("CreateReplicationGroup", reply.clone());
        let (p, _) = provider(&aws);
        let err = p
            .create_replication_group(
                &owner(),
                &desired_group(),
                &companions(),
                &Credential::new(token.clone()),
                &tags(),
            )
            .await
            .expect_err("error");
        assert_eq!(err.class, class, "{reply:?} -> {err}");
        assert_eq!(err.code.as_deref(), code, "{reply:?}");
        assert!(!err.to_string().contains(&token), "token leaked: {err}");
        assert!(err.message.contains("CreateReplicationGroup"), "{err}");
        if let Reply::Error { message, .. } = &reply {
            let shown = message.replace(&token, "[redacted]");
            assert!(err.message.contains(&shown), "AWS message kept: {err}");
        }
    }
}

#[tokio::test]
async fn elasticache_throttling_code_is_retried_by_the_sdk() {
    let aws = Scripted::new();
    aws.once(
        "DescribeCacheSubnetGroups",
        Reply::error(400, "APICallRateForCustomerExceeded", "Rate exceeded"),
    )
    .once(
        "DescribeCacheSubnetGroups",
        Reply::ok("<CacheSubnetGroups/>"),
    );
    let retry = RetryConfig::standard()
        .with_max_attempts(3)
        .with_initial_backoff(Duration::from_millis(1))
        .with_max_backoff(Duration::from_millis(5));
    let (p, _) = provider_with(&aws, retry);
    assert_eq!(
        p.delete_subnet_group(&owner(), ID).await.expect("gone"),
        Deletion::Gone
    );
    assert_eq!(aws.count("DescribeCacheSubnetGroups"), 2, "retried once");

    // Without our classifier a 400 would not be retried: the control case.
    let aws = Scripted::new();
    aws.once(
        "DescribeCacheSubnetGroups",
        Reply::error(400, "InvalidParameterValue", "bad"),
    )
    .once(
        "DescribeCacheSubnetGroups",
        not_found("CacheSubnetGroupNotFoundFault"),
    );
    let (p, _) = provider_with(&aws, retry_config_fast());
    p.delete_subnet_group(&owner(), ID)
        .await
        .expect_err("rejected");
    assert_eq!(aws.count("DescribeCacheSubnetGroups"), 1);
}

fn retry_config_fast() -> RetryConfig {
    RetryConfig::standard()
        .with_max_attempts(3)
        .with_initial_backoff(Duration::from_millis(1))
        .with_max_backoff(Duration::from_millis(5))
}

// ---------------------------------------------------------------- fleet poller

/// A fleet of `n` available groups, its pages scripted for many refreshes.
fn fleet_of(n: usize) -> (Scripted, Vec<String>) {
    let ids: Vec<String> = (0..n).map(|i| format!("k8s-ns-cache{i:04}")).collect();
    let pages: Vec<Reply> = ids
        .chunks(100)
        .enumerate()
        .map(|(page, chunk)| {
            let groups: Vec<String> = chunk
                .iter()
                .map(|id| group_xml(id, "available", ""))
                .collect();
            let marker = (page + 1) * 100 < n;
            groups_reply(
                &groups,
                marker.then(|| format!("page-{}", page + 1)).as_deref(),
            )
        })
        .collect();
    let aws = Scripted::new();
    for _ in 0..20 {
        for page in &pages {
            aws.once("DescribeReplicationGroups", page.clone());
        }
    }
    // Tags in bulk: 100 resources per page.
    let arns: Vec<(String, BTreeMap<String, String>)> = ids
        .iter()
        .map(|id| (format!("{ACCOUNT_ARN}:replicationgroup:{id}"), tags()))
        .collect();
    let pages = arns.chunks(100).count();
    for (i, chunk) in arns.chunks(100).enumerate() {
        let token = (i + 1 < pages).then(|| format!("tags-{}", i + 1));
        aws.once("GetResources", bulk_tags_page(chunk, token.as_deref()));
    }
    aws.always("DescribeCacheClusters", member_reply(""));
    (aws, ids)
}

#[tokio::test]
async fn fleet_observes_cost_one_describe_per_100_caches() {
    let (aws, ids) = fleet_of(250);
    let (p, metrics) = provider(&aws);
    let owner = owner();
    for id in &ids {
        let g = p
            .observe_replication_group(&owner, id)
            .await
            .expect("observe")
            .expect("in the snapshot");
        assert_eq!(&g.id, id);
    }
    let pages_read = aws.calls("DescribeReplicationGroups");
    assert_eq!(pages_read.len(), 3, "one paged read for 250 observes");
    assert_eq!(pages_read[1].get("Marker"), Some("page-1"));
    assert_eq!(pages_read[2].get("Marker"), Some("page-2"));
    assert_eq!(
        aws.count("GetResources"),
        3,
        "owners read in bulk, 100 per page"
    );
    assert_eq!(aws.count("ListTagsForResource"), 0);

    // Steady state: every cache reconciled once per interval, one refresh per interval.
    aws.clear_record();
    for _round in 0..5 {
        p.fleet().refresh().await.expect("refresh");
        for id in &ids {
            p.observe_replication_group(&owner, id)
                .await
                .expect("observe")
                .expect("exists");
        }
    }
    assert_eq!(
        aws.actions()
            .iter()
            .filter(|a| *a == "DescribeReplicationGroups")
            .count(),
        15,
        "5 intervals x 3 pages for 250 caches"
    );
    assert_eq!(
        aws.requests().len(),
        15,
        "nothing else: tags and member facts are cached"
    );
    assert_eq!(
        metrics.count(Operation::DescribeReplicationGroups, "success"),
        18
    );

    // A group missing from the snapshot is absent, with no call of its own
    // (our creates are in the snapshot at once); the next read has it.
    aws.clear_record();
    assert!(p
        .observe_replication_group(&owner, "k8s-ns-new")
        .await
        .expect("observe")
        .is_none());
    assert_eq!(aws.requests().len(), 0);
    aws.drop_queued("DescribeReplicationGroups");
    aws.once(
        "DescribeReplicationGroups",
        groups_reply(&[group_xml("k8s-ns-new", "creating", "")], None),
    )
    .always("ListTagsForResource", group_tags_reply());
    p.fleet().refresh().await.expect("refresh");
    p.observe_replication_group(&owner, "k8s-ns-new")
        .await
        .expect("observe")
        .expect("in the next read");
}

#[tokio::test(start_paused = true)]
async fn poller_is_fast_in_transition_and_slow_when_settled() {
    let (aws, _) = fleet_of(150);
    let (p, _) = provider(&aws);
    let intervals = PollIntervals {
        in_transition: Duration::from_secs(15),
        settled: Duration::from_secs(300),
    };
    assert_eq!(intervals, PollIntervals::default());
    let _poller = p.fleet().spawn_poller();
    // Let the first refresh (at once) run.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        aws.count("DescribeReplicationGroups"),
        2,
        "150 groups: 2 pages"
    );
    p.observe_replication_group(&owner(), "k8s-ns-cache0007")
        .await
        .expect("observe");
    // Settled: the next refresh is 5 minutes after the first.
    tokio::time::sleep(Duration::from_secs(298)).await;
    assert_eq!(aws.count("DescribeReplicationGroups"), 2);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(aws.count("DescribeReplicationGroups"), 4);

    // One of ours starts modifying: refreshes every 15 s.
    aws.once(
        "ModifyReplicationGroup",
        Reply::ok(group_xml("k8s-ns-cache0007", "modifying", "")),
    );
    p.modify_replication_group(
        &owner(),
        "k8s-ns-cache0007",
        &ReplicationGroupChange {
            node_type: Some("cache.t4g.medium".into()),
            apply_immediately: true,
            ..Default::default()
        },
    )
    .await
    .expect("modify");
    assert!(p.fleet().in_transition());
    tokio::time::sleep(Duration::from_secs(16)).await;
    // The refresh read "available" again for it (the script says so):
    // settled, so back to the slow interval.
    assert_eq!(aws.count("DescribeReplicationGroups"), 6);
    assert!(!p.fleet().in_transition());
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(aws.count("DescribeReplicationGroups"), 6);
}
