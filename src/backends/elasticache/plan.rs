//! What `plan` prints for an ElastiCache cache.

use super::desired::{DesiredCache, DesiredSubnetGroup};
use crate::backends::Planned;

/// One line per AWS object (indented details under it).
pub fn render(d: &DesiredCache) -> Planned {
    let mut lines = Vec::new();
    let rg = &d.replication_group;
    lines.push(format!("replication group  {}", rg.id));
    lines.push(format!(
        "  engine           {} {} on {}",
        rg.engine, rg.engine_version, rg.node_type
    ));
    let failover = match (rg.multi_az, rg.automatic_failover) {
        (true, _) => "Multi-AZ with automatic failover",
        (false, true) => "automatic failover, single AZ",
        (false, false) => "single AZ, no automatic failover",
    };
    lines.push(format!(
        "  topology         cluster mode {}, {} shard(s) x {} replica(s), {failover}",
        rg.cluster_mode.as_str(),
        rg.shards,
        rg.replicas_per_shard
    ));
    let at_rest = match (rg.at_rest_encryption, &rg.kms_key_id) {
        (false, _) => "no at-rest encryption".to_string(),
        (true, None) => "at-rest encryption (AWS-managed key)".to_string(),
        (true, Some(k)) => format!("at-rest encryption (KMS key {k})"),
    };
    lines.push(format!(
        "  security         port {}, TLS in transit, AUTH token, {at_rest}",
        rg.port
    ));
    let window = rg.snapshot_window.as_deref().unwrap_or("chosen by AWS");
    lines.push(format!(
        "  snapshots        keep {} day(s), window {window}",
        rg.snapshot_retention_days
    ));
    lines.push(format!(
        "  maintenance      {}, changes applied {}",
        rg.maintenance_window
            .as_deref()
            .unwrap_or("window chosen by AWS"),
        if rg.apply_immediately {
            "immediately"
        } else {
            "in the maintenance window"
        }
    ));
    let pg = &d.parameter_group;
    lines.push(format!(
        "parameter group    {} (family {})",
        pg.name, pg.family
    ));
    for (k, v) in &pg.parameters {
        lines.push(format!("  {k} = {v}"));
    }
    match &d.network.subnet_group {
        DesiredSubnetGroup::Managed {
            name, subnet_ids, ..
        } => lines.push(format!(
            "subnet group       {name} from {}",
            subnet_ids.join(", ")
        )),
        DesiredSubnetGroup::Existing { name } => lines.push(format!(
            "subnet group       {name} (existing, not modified)"
        )),
    }
    let sg = &d.network.security_group;
    lines.push(format!(
        "security group     {} in the subnets' VPC",
        sg.name
    ));
    for source in sg
        .allowed_cidrs
        .iter()
        .chain(&sg.allowed_security_group_ids)
    {
        lines.push(format!("  ingress tcp/{} from {source}", sg.port));
    }
    if !d.network.extra_security_group_ids.is_empty() {
        lines.push(format!(
            "also attached      {}",
            d.network.extra_security_group_ids.join(", ")
        ));
    }
    let tags: Vec<String> = d.tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
    lines.push(format!("tags               {}", tags.join(", ")));
    Planned {
        objects: lines,
        detail: serde_json::to_value(d).unwrap_or_default(),
        notes: Vec::new(),
    }
}
