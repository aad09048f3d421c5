//! Azure Managed Redis (`Microsoft.Cache/redisEnterprise` 2026-08-01): a
//! cluster `R` with the smallest Balanced SKU holding `memory`, and its
//! database `default` (TLS on port 10000, access keys on). Each converge
//! reads both, creates what is missing, and sends at most one change, only
//! when both are `Succeeded`.

use std::collections::BTreeMap;

use super::arm::{self, ArmClient, Cluster, ClusterProperties, ClusterUpdate, Database};
use super::{config, fail, key_pair, persistence, sku, user_parameters, AzureBackend};
use super::{CACHE_READY, DATABASE_READY};
use crate::api::conditions::{self, Cond};
use crate::api::validation::PortableSpec;
use crate::api::{BackendDetails, ClusterMode};
use crate::backends::{
    BackendError, CacheRequest, Connection, Converged, Endpoint, ErrorClass, Lifecycle, Next, Note,
    Observed, StepFailure, TAG_RESOURCE,
};

/// Memory of a cache that sets none (and whose class sets no default).
const DEFAULT_MEMORY: u64 = 1_000_000_000;

/// The database every cluster gets (Azure Managed Redis has one).
const DATABASE: &str = "default";

/// The ARM id of a cluster's database.
pub(super) fn database_id(cluster_id: &str) -> String {
    arm::database_id(cluster_id, DATABASE)
}

fn chosen_sku(spec: &PortableSpec) -> &'static sku::BalancedSku {
    let bytes = spec.memory.unwrap_or(DEFAULT_MEMORY);
    // validate() refused what does not fit; the largest is the fallback.
    sku::balanced_sku_for(bytes).unwrap_or(&sku::BALANCED_SKUS[sku::BALANCED_SKUS.len() - 1])
}

fn clustering_policy(spec: &PortableSpec) -> &'static str {
    if spec.cluster_mode == ClusterMode::Enabled {
        "OSSCluster"
    } else {
        "EnterpriseCluster"
    }
}

fn high_availability(spec: &PortableSpec) -> &'static str {
    if spec.replicas_per_shard > 0 {
        "Enabled"
    } else {
        "Disabled"
    }
}

/// What `plan` prints for a Managed cache; the first line gets the id.
pub(super) fn plan(spec: &PortableSpec) -> Vec<String> {
    let sku = chosen_sku(spec);
    let mut lines = vec![
        format!(
            "Azure Managed Redis cluster ({}, high availability {}, TLS 1.2)",
            sku.name,
            high_availability(spec)
        ),
        format!(
            "  database default  port 10000, {}, eviction {}, access keys on",
            clustering_policy(spec),
            spec.eviction_policy.as_str()
        ),
    ];
    if let Ok((db, _)) = desired_database(spec) {
        if let Some(p) = db.properties.persistence {
            if p.aof_enabled == Some(true) {
                lines.push("  persistence       AOF every second".into());
            } else if p.rdb_enabled == Some(true) {
                lines.push(format!(
                    "  persistence       RDB every {}",
                    p.rdb_frequency.unwrap_or_default()
                ));
            }
        }
    }
    lines
}

fn desired_cluster(b: &AzureBackend, req: &CacheRequest<'_>) -> Cluster {
    let spec = req.spec;
    Cluster {
        location: b.class.location.clone(),
        sku: arm::EnterpriseSku {
            name: chosen_sku(spec).name.to_string(),
            capacity: None,
        },
        zones: b.class.zones.clone(),
        tags: b.tags(spec, req.owner),
        properties: ClusterProperties {
            high_availability: Some(high_availability(spec).into()),
            minimum_tls_version: Some("1.2".into()),
            public_network_access: Some(if b.public() { "Enabled" } else { "Disabled" }.into()),
            ..Default::default()
        },
        ..Default::default()
    }
}

fn desired_database(
    spec: &PortableSpec,
) -> Result<(Database, Option<config::Snapped>), BackendError> {
    let (mut properties, snapped) = config::managed_database(&config::ManagedDatabaseInput {
        cluster_mode: spec.cluster_mode == ClusterMode::Enabled,
        eviction_policy: spec.eviction_policy.as_str().to_string(),
        persistence: persistence(spec),
    })
    .map_err(|e| BackendError::new(ErrorClass::Rejected, Some("InvalidSpec"), e.to_string()))?;
    properties.notify_keyspace_events =
        user_parameters(spec).get("notify-keyspace-events").cloned();
    Ok((
        Database {
            properties,
            ..Default::default()
        },
        snapped,
    ))
}

/// One converge step of a Managed cache.
pub(super) async fn converge(
    b: &AzureBackend,
    arm: &ArmClient,
    req: &CacheRequest<'_>,
) -> Result<Converged, StepFailure> {
    let id = b.resource_id(req.backend_id);
    let name = id.rsplit('/').next().unwrap_or_default().to_string();
    let learned = (req.backend_id != id).then(|| id.clone());
    let mut notes = Vec::new();
    let cluster = b
        .find_cluster(arm, req, &id)
        .await
        .map_err(|e| fail(CACHE_READY, "read", e))?;
    let Some(cluster) = cluster else {
        let body = desired_cluster(b, req);
        arm.put_cluster(&id, &body)
            .await
            .map_err(|e| fail(CACHE_READY, "create", e))?;
        b.changed();
        if learned.is_none() {
            notes.push(Note::warning(
                "Recreated",
                format!("Azure Managed Redis cluster {name} was deleted outside the operator; creating it again"),
            ));
        }
        notes.push(Note::normal(
            "CreatingCluster",
            format!(
                "creating Azure Managed Redis cluster {name} ({})",
                body.sku.name
            ),
        ));
        return Ok(waiting(
            Lifecycle::Creating,
            "Creating",
            format!("Azure Managed Redis cluster {name} is being created"),
            notes,
            learned.or(Some(id)),
        ));
    };
    if !req.owner.owns(&cluster.tags) {
        return Err(fail(
            CACHE_READY,
            "ownership",
            BackendError::conflict(
                "Azure Managed Redis cluster",
                &name,
                cluster.tags.get(TAG_RESOURCE).map(String::as_str),
            ),
        ));
    }
    let state = cluster
        .properties
        .provisioning_state
        .clone()
        .unwrap_or_default();
    if let Some(w) = not_serving(
        &state,
        &format!("Azure Managed Redis cluster {name}"),
        learned.clone(),
    ) {
        return Ok(w);
    }
    let db_id = database_id(&id);
    let (desired_db, snapped) =
        desired_database(req.spec).map_err(|e| fail(DATABASE_READY, "database", e))?;
    let db = arm
        .get_database(&db_id)
        .await
        .map_err(|e| fail(DATABASE_READY, "read", e))?;
    let Some(db) = db else {
        if state != "Succeeded" {
            return Ok(not_settled(
                &state,
                &format!("Azure Managed Redis cluster {name}"),
                learned.clone(),
            )
            .unwrap_or_else(|| {
                waiting(
                    Lifecycle::Changing,
                    "Updating",
                    name.clone(),
                    Vec::new(),
                    learned.clone(),
                )
            }));
        }
        arm.put_database(&db_id, &desired_db)
            .await
            .map_err(|e| fail(DATABASE_READY, "create", e))?;
        notes.push(Note::normal(
            "CreatingDatabase",
            format!("creating database default of Azure Managed Redis cluster {name}"),
        ));
        return Ok(waiting(
            Lifecycle::Creating,
            "Creating",
            format!("database default of Azure Managed Redis cluster {name} is being created"),
            notes,
            learned,
        ));
    };
    let db_state = db.properties.provisioning_state.clone().unwrap_or_default();
    if let Some(w) = not_serving(
        &db_state,
        &format!("database default of {name}"),
        learned.clone(),
    ) {
        return Ok(w);
    }
    // Azure is applying a change: the cache serves, nothing more is sent.
    let settled = state == "Succeeded" && db_state == "Succeeded";
    let have_policy = db.properties.clustering_policy.as_deref().unwrap_or("");
    if have_policy != clustering_policy(req.spec) {
        return Err(fail(
            DATABASE_READY,
            "clustering policy",
            BackendError::new(
                ErrorClass::Immutable,
                None,
                format!(
                    "spec.clusterMode: database default of Azure Managed Redis cluster {name} has clustering policy {have_policy}, which cannot change; set clusterMode back to {}, or create a new RedisCache",
                    if have_policy == "OSSCluster" { "Enabled" } else { "Disabled" }
                ),
            ),
        ));
    }
    // The keys first: a failed change below still leaves a working Secret.
    let keys = arm
        .list_database_keys(&db_id)
        .await
        .and_then(key_pair)
        .map_err(|e| fail(DATABASE_READY, "listKeys", e))?;
    let credential = super::active_key(&keys, req);
    let day2 = if settled {
        day2(b, arm, req, &id, &db_id, &cluster, &db, &desired_db).await
    } else {
        Ok(None)
    };
    let (updating, failure) = match day2 {
        Ok(Some(what)) => {
            b.changed();
            if req.synced_before {
                notes.push(Note::warning(
                    "DriftDetected",
                    format!(
                        "{what}: Azure differed from the spec without a spec change; correcting it"
                    ),
                ));
            }
            (Some(what), None)
        }
        Ok(None) => (None, None),
        Err(e) => (None, Some(fail(CACHE_READY, "change", e))),
    };
    let sku = cluster.sku.name.clone();
    let memory = sku::BALANCED_SKUS
        .iter()
        .find(|s| s.name == sku)
        .map(|s| crate::api::quantity::format_bytes(s.memory_bytes));
    let endpoint = cluster.properties.host_name.clone().map(|host| Endpoint {
        host,
        port: db.properties.port.unwrap_or(super::config::MANAGED_PORT),
    });
    let mut conds = vec![
        Cond::yes(
            CACHE_READY,
            "Succeeded",
            format!("Azure Managed Redis cluster {name} ({sku}) is provisioned"),
        ),
        Cond::yes(
            DATABASE_READY,
            "Succeeded",
            format!("database default of {name} is provisioned"),
        ),
    ];
    conds.push(match snapped.filter(|s| s.changed) {
        Some(s) => Cond::yes(
            conditions::SPEC_APPROXIMATED,
            "SnapshotIntervalApproximated",
            format!(
                "spec.persistence.snapshotInterval: Azure Managed Redis snapshots every 1h, 6h or 12h; snapshots are taken every {} minutes",
                s.minutes
            ),
        ),
        None => Cond::no(
            conditions::SPEC_APPROXIMATED,
            "Exact",
            "the spec maps to Azure Managed Redis exactly",
        ),
    });
    let changing = updating.is_some() || !settled;
    Ok(Converged {
        observed: Observed {
            lifecycle: if changing {
                Lifecycle::Changing
            } else {
                Lifecycle::Serving
            },
            reason: if changing { "Updating" } else { "Available" },
            message: format!(
                "Azure Managed Redis cluster {name} is {}",
                if changing { "being changed" } else { "running" }
            ),
            engine: Some("redis".into()),
            engine_version: cluster.properties.redis_version.clone(),
            memory,
            size: Some(sku),
            shards: Some(1),
            replicas_per_shard: Some(i32::from(
                cluster.properties.high_availability.as_deref() != Some("Disabled"),
            )),
            endpoint: endpoint.clone(),
            reader_endpoint: None,
            busy: changing,
            credential_changed_at: None,
        },
        connection: endpoint.map(|endpoint| Connection {
            endpoint,
            reader: None,
            cluster_mode: req.spec.cluster_mode,
            provider: "azure-managed-redis",
            username: "",
            extra: BTreeMap::new(),
        }),
        conditions: conds,
        details: BackendDetails::default(),
        notes,
        updating,
        next: if changing {
            Next::Soon
        } else {
            Next::Within(None)
        },
        failure,
        credential: Some(credential),
        backend_id: learned,
    })
}

/// A converge result while Azure is still working on something.
pub(super) fn waiting(
    lifecycle: Lifecycle,
    reason: &'static str,
    message: String,
    notes: Vec<Note>,
    backend_id: Option<String>,
) -> Converged {
    Converged {
        observed: Observed {
            lifecycle,
            reason,
            message: message.clone(),
            engine: Some("redis".into()),
            engine_version: None,
            memory: None,
            size: None,
            shards: None,
            replicas_per_shard: None,
            endpoint: None,
            reader_endpoint: None,
            busy: true,
            credential_changed_at: None,
        },
        connection: None,
        conditions: vec![Cond::no(CACHE_READY, reason, message)],
        details: BackendDetails::default(),
        notes,
        updating: None,
        next: Next::Soon,
        failure: None,
        credential: None,
        backend_id,
    }
}

/// `None` when the resource serves (`Succeeded`, or a change on its way);
/// else what to report meanwhile (being created, failed, deleting).
pub(super) fn not_serving(
    state: &str,
    what: &str,
    backend_id: Option<String>,
) -> Option<Converged> {
    match state {
        "Creating" | "Failed" | "Canceled" | "Deleting" | "" => {
            not_settled(state, what, backend_id)
        }
        _ => None,
    }
}

/// `None` when `state` is `Succeeded`; else what to report meanwhile.
pub(super) fn not_settled(
    state: &str,
    what: &str,
    backend_id: Option<String>,
) -> Option<Converged> {
    match state {
        "Succeeded" => None,
        "Failed" | "Canceled" => Some(Converged {
            next: Next::Within(None),
            ..waiting(
                Lifecycle::Failed,
                "ProvisioningFailed",
                format!("{what}: Azure reports provisioningState {state}; look at the resource's activity log, then delete and recreate the RedisCache"),
                Vec::new(),
                backend_id,
            )
        }),
        "Creating" => Some(waiting(
            Lifecycle::Creating,
            "Creating",
            format!("{what} is being created"),
            Vec::new(),
            backend_id,
        )),
        other => Some(waiting(
            Lifecycle::Changing,
            "Updating",
            format!("{what} is {}", if other.is_empty() { "in an unknown state" } else { other }),
            Vec::new(),
            backend_id,
        )),
    }
}

/// At most one change, in a fixed order: SKU, high availability, tags,
/// then the database settings. Returns what was sent.
#[allow(clippy::too_many_arguments)]
async fn day2(
    b: &AzureBackend,
    arm: &ArmClient,
    req: &CacheRequest<'_>,
    id: &str,
    db_id: &str,
    cluster: &Cluster,
    db: &Database,
    desired_db: &Database,
) -> Result<Option<String>, BackendError> {
    let want = desired_cluster(b, req);
    let name = id.rsplit('/').next().unwrap_or_default();
    if cluster.sku.name != want.sku.name {
        arm.patch_cluster(
            id,
            &ClusterUpdate {
                sku: Some(want.sku.clone()),
                ..Default::default()
            },
        )
        .await?;
        return Ok(Some(format!(
            "scaling Azure Managed Redis cluster {name} from {} to {}",
            cluster.sku.name, want.sku.name
        )));
    }
    if cluster.properties.high_availability != want.properties.high_availability {
        arm.patch_cluster(
            id,
            &ClusterUpdate {
                properties: Some(ClusterProperties {
                    high_availability: want.properties.high_availability.clone(),
                    ..Default::default()
                }),
                ..Default::default()
            },
        )
        .await?;
        return Ok(Some(format!(
            "setting high availability of {name} to {}",
            want.properties
                .high_availability
                .as_deref()
                .unwrap_or_default()
        )));
    }
    if cluster.tags != want.tags {
        arm.patch_cluster(
            id,
            &ClusterUpdate {
                tags: Some(want.tags.clone()),
                ..Default::default()
            },
        )
        .await?;
        return Ok(Some(format!("setting the tags of {name}")));
    }
    let (have, want) = (&db.properties, &desired_db.properties);
    let persistence_differs = {
        let on = |p: &Option<arm::Persistence>| {
            p.as_ref()
                .map(|p| {
                    (
                        p.aof_enabled == Some(true),
                        p.rdb_enabled == Some(true),
                        p.aof_enabled.filter(|x| *x).and(p.aof_frequency.clone()),
                        p.rdb_enabled.filter(|x| *x).and(p.rdb_frequency.clone()),
                    )
                })
                .unwrap_or((false, false, None, None))
        };
        on(&have.persistence) != on(&want.persistence)
    };
    if have.eviction_policy != want.eviction_policy
        || persistence_differs
        || have.notify_keyspace_events.as_deref().unwrap_or("")
            != want.notify_keyspace_events.as_deref().unwrap_or("")
        || have.access_keys_authentication.as_deref() != Some("Enabled")
    {
        let patch = Database {
            properties: arm::DatabaseProperties {
                eviction_policy: want.eviction_policy.clone(),
                persistence: want.persistence.clone(),
                notify_keyspace_events: Some(
                    want.notify_keyspace_events.clone().unwrap_or_default(),
                ),
                access_keys_authentication: Some("Enabled".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        arm.patch_database(db_id, &patch).await?;
        return Ok(Some(format!(
            "updating the settings of database default of {name}"
        )));
    }
    Ok(None)
}
