//! The cache's credential and its connection Secret: a credential the
//! operator generates is stored in the Secret *before* any backend hears of
//! it, and the Secret is rewritten only when its keys change.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Patch, PatchParams};
use kube::{Api, Resource, ResourceExt};
use serde_json::json;

use super::secret;
use super::status::publish_event;
use super::{Context, Error};
use crate::api::validation::PortableSpec;
use crate::api::{RedisCache, FIELD_MANAGER};
use crate::backends::{Connection, Credential, CredentialOrigin, Ownership};

/// The credential from the Secret (with the Secret as read), or, when the
/// operator makes credentials, a new one written to the Secret first. A
/// backend that makes its own gives none until it has one.
pub async fn ensure(
    cache: &RedisCache,
    ctx: &Context,
    spec: &PortableSpec,
    owner: &Ownership,
    origin: CredentialOrigin,
) -> Result<(Option<Credential>, Option<Secret>), Error> {
    let existing = own_secret(cache, ctx, &spec.secret_name, &owner.owner_uid).await?;
    if let Some(token) = existing.as_ref().and_then(secret::token_of) {
        return Ok((Some(token), existing));
    }
    if origin == CredentialOrigin::Backend {
        return Ok((None, existing));
    }
    let token = secret::generate_token();
    let data = secret::render_data(&token, None, &spec.extra_keys);
    apply_secret(cache, ctx, &spec.secret_name, data, true).await?;
    publish_event(
        ctx,
        cache,
        false,
        "TokenGenerated",
        &format!("stored a new AUTH token in Secret {}", spec.secret_name),
    )
    .await;
    Ok((Some(token), None))
}

/// The Secret `name`, if it exists; `SecretConflict` if it is not ours.
pub async fn own_secret(
    cache: &RedisCache,
    ctx: &Context,
    name: &str,
    owner_uid: &str,
) -> Result<Option<Secret>, Error> {
    let api: Api<Secret> =
        Api::namespaced(ctx.client.clone(), &cache.namespace().unwrap_or_default());
    match api.get_opt(name).await? {
        Some(s) if !secret::belongs_to(&s, owner_uid) => {
            Err(Error::SecretConflict(name.to_string()))
        }
        other => Ok(other),
    }
}

/// Writes the Secret's keys when they differ from `current` (the Secret as
/// read at the start of this reconcile; `None` forces the write).
pub async fn write_secret(
    cache: &RedisCache,
    ctx: &Context,
    spec: &PortableSpec,
    token: &Credential,
    connection: Option<&Connection>,
    current: Option<&Secret>,
) -> Result<(), Error> {
    let data = secret::render_data(token, connection, &spec.extra_keys);
    let uid = cache.uid().unwrap_or_default();
    let stored = current
        .as_ref()
        .and_then(|s| s.data.clone())
        .unwrap_or_default();
    let same_data = stored.len() == data.len()
        && data
            .iter()
            .all(|(k, v)| stored.get(k).is_some_and(|b| b.0 == v.as_bytes()));
    let owned = current
        .and_then(|s| s.metadata.owner_references.as_ref())
        .is_some_and(|refs| refs.iter().any(|r| r.uid == uid));
    if same_data && owned {
        return Ok(());
    }
    apply_secret(cache, ctx, &spec.secret_name, data, true).await
}

/// Server-side applies the Secret with `data` (every key we own).
pub async fn apply_secret(
    cache: &RedisCache,
    ctx: &Context,
    name: &str,
    data: BTreeMap<String, String>,
    owned: bool,
) -> Result<(), Error> {
    apply_secret_annotated(cache, ctx, name, data, owned, Default::default()).await
}

/// [`apply_secret`] with annotations (e.g. the rotation record's state).
pub async fn apply_secret_annotated(
    cache: &RedisCache,
    ctx: &Context,
    name: &str,
    data: BTreeMap<String, String>,
    owned: bool,
    annotations: BTreeMap<String, String>,
) -> Result<(), Error> {
    let namespace = cache
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let uid = cache.uid().ok_or(Error::MissingField("metadata.uid"))?;
    let owner = if owned {
        cache.controller_owner_ref(&())
    } else {
        None
    };
    let mut secret = secret::build(name, &namespace, owner, &uid, data);
    if !annotations.is_empty() {
        secret.metadata.annotations = Some(annotations);
    }
    let mut value = serde_json::to_value(&secret)?;
    value["apiVersion"] = json!("v1");
    value["kind"] = json!("Secret");
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &namespace);
    api.patch(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&value),
    )
    .await?;
    Ok(())
}
