//! Request shapes of the Day-2 calls: replica and shard counts, node-type
//! limits, AUTH token ROTATE/SET, tags, and an engine upgrade; and the
//! Day-2 facts read back from AWS.

use std::collections::BTreeMap;

use redis_cache_operator::backends::elasticache::api::{
    AuthTokenStrategy, ElastiCacheApi, GroupStatus, ReplicationGroupChange, TagChange,
};
use redis_cache_operator::backends::Credential;

use super::scripted::{Reply, Scripted};
use super::{group_tags_reply, group_xml, groups_reply, member_reply, owner, provider, ID};

/// A script where the group exists, is ours and is available.
fn available() -> Scripted {
    let aws = Scripted::new();
    aws.always(
        "DescribeReplicationGroups",
        groups_reply(&[group_xml(ID, "available", "")], None),
    )
    .always("ListTagsForResource", group_tags_reply())
    .always("DescribeCacheClusters", member_reply(""));
    aws
}

/// The request's parameters other than Action and Version.
fn keys(r: &super::scripted::Recorded) -> Vec<String> {
    r.params
        .keys()
        .filter(|k| !matches!(k.as_str(), "Action" | "Version"))
        .cloned()
        .collect()
}

#[tokio::test]
async fn replica_count_goes_up_and_down_immediately() {
    let aws = available();
    aws.once(
        "IncreaseReplicaCount",
        Reply::ok(group_xml(ID, "modifying", "")),
    )
    .once(
        "DecreaseReplicaCount",
        Reply::ok(group_xml(ID, "modifying", "")),
    );
    let (p, _) = provider(&aws);
    // The scripted group has two replicas per shard.
    let state = p
        .modify_replica_count(&owner(), ID, 3)
        .await
        .expect("increase");
    assert_eq!(state.status, GroupStatus::Modifying);
    let r = &aws.calls("IncreaseReplicaCount")[0];
    assert_eq!(
        keys(r),
        ["ApplyImmediately", "NewReplicaCount", "ReplicationGroupId"]
    );
    assert_eq!(r.get("NewReplicaCount"), Some("3"));
    assert_eq!(r.get("ApplyImmediately"), Some("true"));

    p.modify_replica_count(&owner(), ID, 1)
        .await
        .expect("decrease");
    let r = &aws.calls("DecreaseReplicaCount")[0];
    assert_eq!(r.get("NewReplicaCount"), Some("1"));
    assert_eq!(r.get("ApplyImmediately"), Some("true"));
}

#[tokio::test]
async fn shard_decrease_names_the_node_groups_to_remove() {
    let aws = available();
    aws.always(
        "ModifyReplicationGroupShardConfiguration",
        Reply::ok(group_xml(ID, "modifying", "")),
    );
    let (p, _) = provider(&aws);
    p.modify_shard_count(&owner(), ID, 2, &["0003".into(), "0004".into()])
        .await
        .expect("decrease");
    let r = &aws.calls("ModifyReplicationGroupShardConfiguration")[0];
    assert_eq!(r.get("NodeGroupCount"), Some("2"));
    assert_eq!(r.get("ApplyImmediately"), Some("true"));
    assert_eq!(
        r.list("NodeGroupsToRemove.NodeGroupToRemove"),
        ["0003", "0004"]
    );

    p.modify_shard_count(&owner(), ID, 5, &[])
        .await
        .expect("increase");
    let r = &aws.calls("ModifyReplicationGroupShardConfiguration")[1];
    assert_eq!(
        keys(r),
        ["ApplyImmediately", "NodeGroupCount", "ReplicationGroupId"]
    );
}

#[tokio::test]
async fn allowed_node_types_are_scale_up_and_scale_down() {
    let aws = available();
    aws.once(
        "ListAllowedNodeTypeModifications",
        Reply::ok(
            "<ScaleUpModifications><member>cache.r7g.large</member><member>cache.r7g.xlarge</member></ScaleUpModifications>\
<ScaleDownModifications><member>cache.t4g.micro</member></ScaleDownModifications>",
        ),
    );
    let (p, _) = provider(&aws);
    let allowed = p.allowed_node_types(&owner(), ID).await.expect("list");
    assert_eq!(
        allowed,
        ["cache.r7g.large", "cache.r7g.xlarge", "cache.t4g.micro"]
    );
    let r = &aws.calls("ListAllowedNodeTypeModifications")[0];
    assert_eq!(r.get("ReplicationGroupId"), Some(ID));
}

#[tokio::test]
async fn auth_token_rotate_and_set_are_applied_immediately() {
    let aws = available();
    aws.always(
        "ModifyReplicationGroup",
        Reply::ok(group_xml(ID, "modifying", "")),
    );
    let (p, _) = provider(&aws);
    let token = Credential::new("n".repeat(64));
    p.update_auth_token(&owner(), ID, &token, AuthTokenStrategy::Rotate)
        .await
        .expect("rotate");
    p.update_auth_token(&owner(), ID, &token, AuthTokenStrategy::Set)
        .await
        .expect("set");
    let calls = aws.calls("ModifyReplicationGroup");
    for (r, strategy) in calls.iter().zip(["ROTATE", "SET"]) {
        assert_eq!(
            keys(r),
            [
                "ApplyImmediately",
                "AuthToken",
                "AuthTokenUpdateStrategy",
                "ReplicationGroupId"
            ]
        );
        assert_eq!(r.get("AuthTokenUpdateStrategy"), Some(strategy));
        assert_eq!(r.get("ApplyImmediately"), Some("true"));
        assert!(
            r.get("AuthToken") == Some(token.expose()),
            "the new token is sent"
        );
    }
}

#[tokio::test]
async fn engine_upgrade_carries_engine_version_and_parameter_group() {
    let aws = available();
    aws.once(
        "ModifyReplicationGroup",
        Reply::ok(group_xml(ID, "modifying", "")),
    );
    let (p, _) = provider(&aws);
    let change = ReplicationGroupChange {
        engine: Some("valkey".into()),
        engine_version: Some("8.0".into()),
        parameter_group: Some(format!("{ID}-params-valkey8")),
        apply_immediately: false,
        ..Default::default()
    };
    p.modify_replication_group(&owner(), ID, &change)
        .await
        .expect("modify");
    let r = &aws.calls("ModifyReplicationGroup")[0];
    assert_eq!(
        keys(r),
        [
            "ApplyImmediately",
            "CacheParameterGroupName",
            "Engine",
            "EngineVersion",
            "ReplicationGroupId"
        ]
    );
    assert_eq!(r.get("ApplyImmediately"), Some("false"));
    assert_eq!(r.get("Engine"), Some("valkey"));
    assert_eq!(r.get("EngineVersion"), Some("8.0"));
}

#[tokio::test]
async fn tags_are_added_and_removed_on_the_group_arn() {
    let aws = available();
    aws.once("AddTagsToResource", Reply::ok("<TagList/>"))
        .once("RemoveTagsFromResource", Reply::ok("<TagList/>"));
    let (p, _) = provider(&aws);
    let change = TagChange {
        add: BTreeMap::from([("team".to_string(), "checkout".to_string())]),
        remove: vec!["cost-center".into()],
    };
    p.update_tags(&owner(), ID, &change).await.expect("tags");
    let add = &aws.calls("AddTagsToResource")[0];
    assert!(add
        .get("ResourceName")
        .is_some_and(|arn| arn.ends_with(&format!(":replicationgroup:{ID}"))));
    assert_eq!(
        add.tags("Tags.Tag"),
        BTreeMap::from([("team".to_string(), "checkout".to_string())])
    );
    let remove = &aws.calls("RemoveTagsFromResource")[0];
    assert_eq!(remove.list("TagKeys.member"), ["cost-center"]);
}

#[tokio::test]
async fn day2_facts_are_read_from_the_group_and_its_members() {
    let aws = Scripted::new();
    aws.always(
        "DescribeReplicationGroups",
        groups_reply(
            &[group_xml(
                ID,
                "available",
                "<SnapshotRetentionLimit>7</SnapshotRetentionLimit><SnapshotWindow>03:00-04:00</SnapshotWindow>\
<KmsKeyId>arn:aws:kms:us-east-1:123456789012:key/abcd</KmsKeyId>\
<AuthTokenLastModifiedDate>2026-11-20T10:00:00Z</AuthTokenLastModifiedDate>\
<PendingModifiedValues><AuthTokenStatus>ROTATING</AuthTokenStatus></PendingModifiedValues>",
            )],
            None,
        ),
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
    assert_eq!(g.node_group_ids, ["0001"]);
    assert_eq!(g.snapshot_retention_days, Some(7));
    assert_eq!(g.snapshot_window.as_deref(), Some("03:00-04:00"));
    assert!(g
        .kms_key_id
        .as_deref()
        .is_some_and(|k| k.ends_with("key/abcd")));
    assert_eq!(
        g.auth_token_last_modified.map(|t| t.as_second()),
        Some(
            "2026-11-20T10:00:00Z"
                .parse::<jiff::Timestamp>()
                .expect("time")
                .as_second()
        )
    );
    assert!(g.is_pending("authToken"));
    assert!(g.is_pending("nodeType"));
    assert_eq!(g.tags, super::tags());
}

#[tokio::test]
async fn parameter_group_tags_follow_the_spec() {
    let aws = Scripted::new();
    aws.always(
        "DescribeCacheParameterGroups",
        Reply::ok(format!(
            "<CacheParameterGroups>{}</CacheParameterGroups>",
            super::pg_xml("valkey8")
        )),
    )
    .always("ListTagsForResource", group_tags_reply())
    .always("DescribeCacheParameters", super::user_params(&[]))
    .always(
        "ModifyCacheParameterGroup",
        Reply::ok("<CacheParameterGroupName>x</CacheParameterGroupName>"),
    )
    .once("AddTagsToResource", Reply::ok("<TagList/>"))
    .once("RemoveTagsFromResource", Reply::ok("<TagList/>"));
    let (p, _) = provider(&aws);
    // `team` goes, `env` comes; the ownership tags stay.
    let mut wanted = owner().tags();
    wanted.insert("env".into(), "prod".into());
    let desired = super::desired_pg(&[("cluster-enabled", "no")]);
    p.ensure_parameter_group(&owner(), &desired, &wanted)
        .await
        .expect("ensure");
    let add = &aws.calls("AddTagsToResource")[0];
    assert!(add
        .get("ResourceName")
        .is_some_and(|arn| arn.ends_with(&format!(":parametergroup:{ID}-params"))));
    assert_eq!(
        add.tags("Tags.Tag"),
        BTreeMap::from([("env".to_string(), "prod".to_string())])
    );
    let remove = &aws.calls("RemoveTagsFromResource")[0];
    assert_eq!(remove.list("TagKeys.member"), ["team"]);
    // The cache knows the new tags: no tag call the next time.
    p.ensure_parameter_group(&owner(), &desired, &wanted)
        .await
        .expect("ensure again");
    assert_eq!(aws.count("AddTagsToResource"), 1);
    assert_eq!(aws.count("RemoveTagsFromResource"), 1);
}

#[tokio::test]
async fn tags_are_read_again_after_the_refresh_so_console_changes_are_seen() {
    let aws = available();
    let settings = redis_cache_operator::backends::elasticache::aws::AwsSettings {
        rate_limit: 10_000.0,
        burst: 10_000,
        tag_refresh: std::time::Duration::ZERO,
        ..Default::default()
    };
    let p = redis_cache_operator::backends::elasticache::aws::AwsElastiCache::new(
        &aws.sdk_config(aws_sdk_elasticache::config::retry::RetryConfig::disabled()),
        settings,
        redis_cache_operator::backends::elasticache::aws::metrics::AwsCallMetrics::new(),
    );
    for _ in 0..3 {
        p.observe_replication_group(&owner(), ID)
            .await
            .expect("observe");
    }
    assert_eq!(aws.count("ListTagsForResource"), 3);

    // With the default refresh one read serves every observation.
    let aws = available();
    let (p, _) = provider(&aws);
    for _ in 0..3 {
        p.observe_replication_group(&owner(), ID)
            .await
            .expect("observe");
    }
    assert_eq!(aws.count("ListTagsForResource"), 1);
}
