//! The security group `R` in the subnets' VPC: found by name and VPC,
//! created with tags, ingress on the cache port only from the allowed CIDRs
//! and security groups. Missing rules are authorized, any other ingress rule
//! is revoked; egress is left as AWS made it. Our groups come from the
//! shared listing ([`Inventory`]), which our own changes keep current.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_ec2::types::{
    Filter, IpPermission, IpRange, Ipv6Range, PrefixListId, ResourceType, SecurityGroup,
    UserIdGroupPair,
};

use super::clients::Api;
use super::errors::{AwsError, Verdict};
use super::inventory::{security_group_key, Inventory};
use super::operations::Operation;
use super::tags;
use crate::backends::elasticache::desired::DesiredSecurityGroup;
use crate::backends::BackendError;
use crate::backends::Ownership;
use crate::backends::{Deletion, ErrorClass};

const WHAT: &str = "security group";

/// Where ingress comes from.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Source {
    Cidr(String),
    Ipv6Cidr(String),
    SecurityGroup(String),
    PrefixList(String),
}

/// One ingress rule.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Rule {
    pub protocol: String,
    pub from_port: Option<i32>,
    pub to_port: Option<i32>,
    pub source: Source,
}

impl Rule {
    fn permission(&self) -> IpPermission {
        let mut p = IpPermission::builder()
            .ip_protocol(&self.protocol)
            .set_from_port(self.from_port)
            .set_to_port(self.to_port);
        p = match &self.source {
            Source::Cidr(c) => p.ip_ranges(IpRange::builder().cidr_ip(c).build()),
            Source::Ipv6Cidr(c) => p.ipv6_ranges(Ipv6Range::builder().cidr_ipv6(c).build()),
            Source::SecurityGroup(g) => {
                p.user_id_group_pairs(UserIdGroupPair::builder().group_id(g).build())
            }
            Source::PrefixList(id) => {
                p.prefix_list_ids(PrefixListId::builder().prefix_list_id(id).build())
            }
        };
        p.build()
    }
}

/// The ingress rules the spec asks for.
pub fn desired_rules(desired: &DesiredSecurityGroup) -> BTreeSet<Rule> {
    let rule = |source| Rule {
        protocol: "tcp".into(),
        from_port: Some(desired.port),
        to_port: Some(desired.port),
        source,
    };
    desired
        .allowed_cidrs
        .iter()
        .map(|c| {
            if c.contains(':') {
                rule(Source::Ipv6Cidr(c.clone()))
            } else {
                rule(Source::Cidr(c.clone()))
            }
        })
        .chain(
            desired
                .allowed_security_group_ids
                .iter()
                .map(|g| rule(Source::SecurityGroup(g.clone()))),
        )
        .collect()
}

/// The ingress rules a security group has now, one per source.
pub fn current_rules(group: &SecurityGroup) -> BTreeSet<Rule> {
    let mut rules = BTreeSet::new();
    for p in group.ip_permissions() {
        let protocol = match p.ip_protocol().unwrap_or("-1") {
            "6" => "tcp".to_string(),
            other => other.to_string(),
        };
        let rule = |source| Rule {
            protocol: protocol.clone(),
            from_port: p.from_port(),
            to_port: p.to_port(),
            source,
        };
        rules.extend(
            p.ip_ranges()
                .iter()
                .filter_map(|r| r.cidr_ip())
                .map(|c| rule(Source::Cidr(c.to_string()))),
        );
        rules.extend(
            p.ipv6_ranges()
                .iter()
                .filter_map(|r| r.cidr_ipv6())
                .map(|c| rule(Source::Ipv6Cidr(c.to_string()))),
        );
        rules.extend(
            p.user_id_group_pairs()
                .iter()
                .filter_map(|g| g.group_id())
                .map(|g| rule(Source::SecurityGroup(g.to_string()))),
        );
        rules.extend(
            p.prefix_list_ids()
                .iter()
                .filter_map(|l| l.prefix_list_id())
                .map(|l| rule(Source::PrefixList(l.to_string()))),
        );
    }
    rules
}

/// Creates or checks the group and brings its ingress to the spec; returns its id.
pub async fn ensure(
    api: &Api,
    inventory: &Inventory,
    owner: &Ownership,
    desired: &DesiredSecurityGroup,
    vpc_id: &str,
    tags: &BTreeMap<String, String>,
) -> Result<String, BackendError> {
    let name = &desired.name;
    let group = match inventory.security_group(name, vpc_id).await? {
        Some(group) => group,
        None => match create(api, desired, vpc_id, tags).await {
            Ok(id) => SecurityGroup::builder()
                .group_id(id)
                .group_name(name)
                .vpc_id(vpc_id)
                .set_tags(Some(
                    tags.iter()
                        .map(|(k, v)| aws_sdk_ec2::types::Tag::builder().key(k).value(v).build())
                        .collect(),
                ))
                .build(),
            Err(e) if e.is_already_exists() => find(api, name, Some(vpc_id))
                .await?
                .into_iter()
                .next()
                .ok_or_else(|| BackendError::from(e))?,
            Err(e) => return Err(e.into()),
        },
    };
    let current_tags = tags::from_ec2(group.tags());
    tags::check_owner(WHAT, name, owner, &current_tags)?;
    let id = group.group_id().unwrap_or_default().to_string();
    if id.is_empty() {
        return Err(BackendError::new(
            ErrorClass::Transient,
            None,
            format!("AWS described {WHAT} {name} without an id"),
        ));
    }
    tags::sync_ec2(api, &id, &current_tags, tags).await?;
    let wanted = desired_rules(desired);
    sync_rules(api, &id, &current_rules(&group), &wanted).await?;
    // What AWS has now: the listing needs no read to know it.
    let mut now = group;
    now.tags = Some(
        tags.iter()
            .chain(current_tags.iter().filter(|(k, _)| k.starts_with("aws:")))
            .map(|(k, v)| aws_sdk_ec2::types::Tag::builder().key(k).value(v).build())
            .collect(),
    );
    now.ip_permissions = Some(wanted.iter().map(Rule::permission).collect());
    inventory
        .security_groups
        .put(&security_group_key(name, vpc_id), now);
    Ok(id)
}

/// Security groups named `name` (in `vpc_id` when given).
async fn find(api: &Api, name: &str, vpc_id: Option<&str>) -> Result<Vec<SecurityGroup>, AwsError> {
    let mut filters = vec![Filter::builder().name("group-name").values(name).build()];
    if let Some(vpc) = vpc_id {
        filters.push(Filter::builder().name("vpc-id").values(vpc).build());
    }
    let out = api
        .call(
            Operation::DescribeSecurityGroups,
            api.ec2
                .describe_security_groups()
                .set_filters(Some(filters))
                .send(),
        )
        .await?;
    Ok(out
        .security_groups()
        .iter()
        .filter(|g| g.group_name() == Some(name))
        .cloned()
        .collect())
}

async fn create(
    api: &Api,
    desired: &DesiredSecurityGroup,
    vpc_id: &str,
    tags: &BTreeMap<String, String>,
) -> Result<String, AwsError> {
    let out = api
        .call(
            Operation::CreateSecurityGroup,
            api.ec2
                .create_security_group()
                .group_name(&desired.name)
                .description(&desired.description)
                .vpc_id(vpc_id)
                .tag_specifications(tags::ec2_tag_specification(
                    ResourceType::SecurityGroup,
                    tags,
                ))
                .send(),
        )
        .await?;
    Ok(out.group_id().unwrap_or_default().to_string())
}

/// Authorizes what is missing and revokes what is extra.
async fn sync_rules(
    api: &Api,
    group_id: &str,
    current: &BTreeSet<Rule>,
    desired: &BTreeSet<Rule>,
) -> Result<(), AwsError> {
    let missing: Vec<&Rule> = desired.difference(current).collect();
    let extra: Vec<&Rule> = current.difference(desired).collect();
    if !missing.is_empty() {
        change_rules(
            api,
            Operation::AuthorizeSecurityGroupIngress,
            group_id,
            &missing,
        )
        .await?;
    }
    if !extra.is_empty() {
        change_rules(api, Operation::RevokeSecurityGroupIngress, group_id, &extra).await?;
    }
    if !missing.is_empty() || !extra.is_empty() {
        tracing::info!(
            security_group = group_id,
            authorized = missing.len(),
            revoked = extra.len(),
            "ingress brought to the spec"
        );
    }
    Ok(())
}

/// Sends all rules in one call. A duplicate (or already revoked) rule fails
/// the whole call, so then each rule is sent alone and that answer counts
/// as done.
async fn change_rules(
    api: &Api,
    op: Operation,
    group_id: &str,
    rules: &[&Rule],
) -> Result<(), AwsError> {
    match send_rules(api, op, group_id, rules).await {
        Err(e) if e.verdict == Verdict::AlreadyDone && rules.len() > 1 => {
            for rule in rules {
                match send_rules(api, op, group_id, std::slice::from_ref(rule)).await {
                    Err(e) if e.verdict == Verdict::AlreadyDone => {}
                    other => other?,
                }
            }
            Ok(())
        }
        Err(e) if e.verdict == Verdict::AlreadyDone => Ok(()),
        other => other,
    }
}

async fn send_rules(
    api: &Api,
    op: Operation,
    group_id: &str,
    rules: &[&Rule],
) -> Result<(), AwsError> {
    let permissions: Vec<IpPermission> = rules.iter().map(|r| r.permission()).collect();
    if op == Operation::AuthorizeSecurityGroupIngress {
        api.call(
            op,
            api.ec2
                .authorize_security_group_ingress()
                .group_id(group_id)
                .set_ip_permissions(Some(permissions))
                .send(),
        )
        .await
        .map(|_| ())
    } else {
        api.call(
            op,
            api.ec2
                .revoke_security_group_ingress()
                .group_id(group_id)
                .set_ip_permissions(Some(permissions))
                .send(),
        )
        .await
        .map(|_| ())
    }
}

/// Deletes the groups named `name` that are ours. AWS refuses
/// (`DependencyViolation`, transient) while the cache's network interfaces
/// still use the group.
pub async fn delete(
    api: &Api,
    inventory: &Inventory,
    owner: &Ownership,
    name: &str,
) -> Result<Deletion, BackendError> {
    // Owner-tagged groups come from a listing at most a minute old; only
    // when none of them is ours is AWS asked for any group of that name, to
    // tell "gone" from "someone else's".
    let listed: Vec<SecurityGroup> = inventory
        .security_groups_for_delete(name)
        .await?
        .into_iter()
        .filter(|g| owner.owns(&tags::from_ec2(g.tags())))
        .collect();
    let ours = if listed.is_empty() {
        let groups = find(api, name, None).await?;
        let (ours, foreign): (Vec<_>, Vec<_>) = groups
            .into_iter()
            .partition(|g| owner.owns(&tags::from_ec2(g.tags())));
        if ours.is_empty() {
            return Ok(if foreign.is_empty() {
                Deletion::Gone
            } else {
                Deletion::NotOwned
            });
        }
        ours
    } else {
        listed
    };
    for group in ours {
        let Some(id) = group.group_id() else { continue };
        let result = api
            .call(
                Operation::DeleteSecurityGroup,
                api.ec2.delete_security_group().group_id(id).send(),
            )
            .await;
        match result {
            Ok(_) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e.into()),
        }
        if let Some(vpc) = group.vpc_id() {
            inventory
                .security_groups
                .remove(&security_group_key(name, vpc));
        }
    }
    Ok(Deletion::Gone)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desired() -> DesiredSecurityGroup {
        DesiredSecurityGroup {
            name: "k8s-shop-sessions".into(),
            description: "d".into(),
            port: 6379,
            allowed_cidrs: vec!["10.0.0.0/16".into(), "fd00::/8".into()],
            allowed_security_group_ids: vec!["sg-0123".into()],
        }
    }

    #[test]
    fn rules_compare_by_source_and_port() {
        let group = SecurityGroup::builder()
            .ip_permissions(
                IpPermission::builder()
                    .ip_protocol("tcp")
                    .from_port(6379)
                    .to_port(6379)
                    .ip_ranges(IpRange::builder().cidr_ip("10.0.0.0/16").build())
                    .ip_ranges(IpRange::builder().cidr_ip("0.0.0.0/0").build())
                    .build(),
            )
            .ip_permissions(
                IpPermission::builder()
                    .ip_protocol("tcp")
                    .from_port(22)
                    .to_port(22)
                    .user_id_group_pairs(UserIdGroupPair::builder().group_id("sg-0123").build())
                    .build(),
            )
            .build();
        let current = current_rules(&group);
        let desired = desired_rules(&desired());
        let missing: Vec<_> = desired
            .difference(&current)
            .map(|r| r.source.clone())
            .collect();
        let extra: Vec<_> = current
            .difference(&desired)
            .map(|r| (r.source.clone(), r.from_port))
            .collect();
        assert_eq!(
            missing,
            vec![
                Source::Ipv6Cidr("fd00::/8".into()),
                Source::SecurityGroup("sg-0123".into())
            ]
        );
        assert_eq!(
            extra,
            vec![
                (Source::SecurityGroup("sg-0123".into()), Some(22)),
                (Source::Cidr("0.0.0.0/0".into()), Some(6379)),
            ]
        );
    }
}
