//! The Kubernetes permissions the operator needs: the one list the Helm
//! chart's RBAC is checked against (`redis-cache-operator rbac`).

use k8s_openapi::api::rbac::v1::PolicyRule;

/// One API group, resources and the verbs the code uses on them, and why.
pub struct Permission {
    pub group: &'static str,
    pub resources: &'static [&'static str],
    pub verbs: &'static [&'static str],
    pub why: &'static str,
}

/// Every permission, namespaced or not; nothing else is needed.
pub const PERMISSIONS: &[Permission] = &[
    Permission {
        group: "rediscache.dev",
        resources: &["rediscaches"],
        verbs: &["get", "list", "watch", "patch"],
        why: "watch caches; add and remove the finalizer (JSON patch)",
    },
    Permission {
        group: "rediscache.dev",
        resources: &["rediscaches/status"],
        verbs: &["get", "patch"],
        why: "server-side apply of status",
    },
    Permission {
        group: "rediscache.dev",
        resources: &["rediscaches/finalizers"],
        verbs: &["update"],
        why: "set blockOwnerDeletion on the Secret's owner reference",
    },
    Permission {
        group: "rediscache.dev",
        resources: &["rediscacheclasses"],
        verbs: &["get", "list", "watch"],
        why: "resolve each cache's class (cluster-scoped: always a ClusterRole)",
    },
    Permission {
        group: "rediscache.dev",
        resources: &["rediscacheclasses/status"],
        verbs: &["get", "patch"],
        why: "server-side apply of class status (Ready, caches)",
    },
    Permission {
        group: "",
        resources: &["namespaces"],
        verbs: &["get"],
        why: "labels of a cache's namespace, for a class's allowedNamespaceSelector (cluster-scoped: always a ClusterRole)",
    },
    Permission {
        group: "",
        resources: &["secrets"],
        verbs: &["get", "list", "watch", "create", "patch"],
        why: "read, create and server-side apply the connection Secrets (watched metadata-only, by label) and the in-cluster backend's TLS and ACL Secrets (deleted by garbage collection with their cache)",
    },
    Permission {
        group: "apps",
        resources: &["statefulsets"],
        verbs: &["get", "list", "watch", "patch", "delete"],
        why: "in-cluster backend: server-side apply of the data and Sentinel StatefulSets (watched metadata-only, by label, to repair edits)",
    },
    Permission {
        group: "",
        resources: &["services", "configmaps"],
        verbs: &["get", "list", "watch", "patch", "delete"],
        why: "in-cluster backend: server-side apply of the Services and the config (watched metadata-only, by label)",
    },
    Permission {
        group: "",
        resources: &["pods"],
        verbs: &["list", "patch", "delete"],
        why: "in-cluster backend: find the data pods, label the primary (Service selector), restart outdated pods one at a time (OnDelete rollout); no pods/exec",
    },
    Permission {
        group: "",
        resources: &["persistentvolumeclaims"],
        verbs: &["list", "delete"],
        why: "in-cluster backend: delete a cache's data volumes (deletionPolicy Delete)",
    },
    Permission {
        group: "cert-manager.io",
        resources: &["certificates"],
        verbs: &["get", "patch"],
        why: "in-cluster backend with kubernetes.tls.issuerRef: server-side apply of each cache's cert-manager Certificate",
    },
    Permission {
        group: "policy",
        resources: &["poddisruptionbudgets"],
        verbs: &["get", "patch", "delete"],
        why: "in-cluster backend: server-side apply of the PodDisruptionBudgets",
    },
    Permission {
        group: "networking.k8s.io",
        resources: &["networkpolicies"],
        verbs: &["get", "patch", "delete"],
        why: "in-cluster backend: server-side apply of the NetworkPolicy from network.allowedCidrs",
    },
    Permission {
        group: "events.k8s.io",
        resources: &["events"],
        verbs: &["create", "patch"],
        why: "publish Events on RedisCaches",
    },
    Permission {
        group: "coordination.k8s.io",
        resources: &["leases"],
        verbs: &["get", "create", "patch"],
        why: "leader election",
    },
];

/// The permissions as RBAC rules.
pub fn policy_rules() -> Vec<PolicyRule> {
    PERMISSIONS
        .iter()
        .map(|p| PolicyRule {
            api_groups: Some(vec![p.group.to_string()]),
            resources: Some(p.resources.iter().map(|r| r.to_string()).collect()),
            verbs: p.verbs.iter().map(|v| v.to_string()).collect(),
            ..PolicyRule::default()
        })
        .collect()
}
