//! Azure credentials for ARM calls, through `azure_identity` 1.x.
//!
//! Two sources: workload identity (the AKS webhook sets `AZURE_CLIENT_ID`,
//! `AZURE_TENANT_ID`, `AZURE_FEDERATED_TOKEN_FILE`, `AZURE_AUTHORITY_HOST`) or
//! a client secret from the cache class. Both credentials of azure_identity
//! 1.0 cache their tokens themselves (per scope, refreshed when less than five
//! minutes remain), so [`TokenProvider`] keeps no cache of its own.
//!
//! azure_identity accepts only an `https` authority host. To reach a test
//! token endpoint (or a private sovereign-cloud endpoint) signed by a CA that
//! is not in the system store, the credential's HTTP transport is our own
//! `reqwest` client built by [`http_client`] with the extra CA bundle merged
//! into the platform roots: certificate verification stays on. This works
//! because azure_core 1.x implements its `HttpClient` trait for the same
//! `reqwest` 0.13 client we use for ARM (`ClientOptions::transport`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use azure_core::cloud::{CloudConfiguration, CustomConfiguration};
use azure_core::credentials::{Secret, TokenCredential};
use azure_core::error::ErrorKind;
use azure_core::http::{ClientOptions, RetryOptions, Transport};
use azure_identity::{
    ClientAssertionCredentialOptions, ClientSecretCredential, ClientSecretCredentialOptions,
    WorkloadIdentityCredential, WorkloadIdentityCredentialOptions,
};
use url::Url;

use crate::backends::{BackendError, Credential, ErrorClass};

/// The scope of every ARM token.
pub const ARM_SCOPE: &str = "https://management.azure.com/.default";

/// Where the credential comes from.
#[derive(Clone, Debug)]
pub enum CredentialSource {
    /// Entra workload identity. Each `None` falls back to the variable the
    /// AKS webhook sets (`AZURE_CLIENT_ID`, `AZURE_TENANT_ID`,
    /// `AZURE_FEDERATED_TOKEN_FILE`).
    WorkloadIdentity {
        /// Client (application) id.
        client_id: Option<String>,
        /// Tenant id.
        tenant_id: Option<String>,
        /// Path of the projected service-account token.
        token_file: Option<PathBuf>,
    },
    /// A service principal with a client secret.
    ClientSecret {
        /// Tenant id.
        tenant_id: String,
        /// Client (application) id.
        client_id: String,
        /// The client secret.
        secret: Credential,
    },
}

/// How to build the credential.
#[derive(Clone, Debug)]
pub struct IdentityConfig {
    /// Where the credential comes from.
    pub source: CredentialSource,
    /// Overrides the Entra authority host (must be `https`). `None` uses
    /// `AZURE_AUTHORITY_HOST` when set, else the public cloud.
    pub authority_host: Option<Url>,
}

/// Builds the HTTPS client shared by the credential and the ARM client:
/// rustls, HTTPS only, the platform's roots plus `extra_ca_pem` (a PEM
/// bundle) when given. Verification is never switched off.
pub fn http_client(extra_ca_pem: Option<&[u8]>) -> Result<reqwest::Client, BackendError> {
    let mut builder = reqwest::Client::builder()
        .https_only(true)
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(60));
    if let Some(pem) = extra_ca_pem {
        let certs = reqwest::Certificate::from_pem_bundle(pem).map_err(|e| {
            BackendError::new(
                ErrorClass::Rejected,
                None,
                format!("the extra CA bundle is not valid PEM: {e}"),
            )
        })?;
        if certs.is_empty() {
            return Err(BackendError::new(
                ErrorClass::Rejected,
                None,
                "the extra CA bundle holds no certificate",
            ));
        }
        builder = builder.tls_certs_merge(certs);
    }
    builder.build().map_err(|e| {
        BackendError::new(
            ErrorClass::Rejected,
            None,
            format!("cannot build the HTTPS client: {e}"),
        )
    })
}

/// Hands out ARM bearer tokens.
#[derive(Clone)]
pub struct TokenProvider {
    credential: Arc<dyn TokenCredential>,
}

impl std::fmt::Debug for TokenProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenProvider").finish_non_exhaustive()
    }
}

impl TokenProvider {
    /// Builds the credential. `http` is the client from [`http_client`], so
    /// token requests trust the same extra CA as ARM calls.
    pub fn new(config: &IdentityConfig, http: reqwest::Client) -> Result<Self, BackendError> {
        let client_options = ClientOptions {
            transport: Some(Transport::new(Arc::new(http))),
            // The reconciler retries with its own backoff; a second retry
            // loop inside the SDK would hide throttling from it.
            retry: RetryOptions::none(),
            cloud: config.authority_host.as_ref().map(|host| {
                let mut custom = CustomConfiguration::default();
                custom.authority_host = host.as_str().trim_end_matches('/').to_string();
                Arc::new(CloudConfiguration::Custom(custom))
            }),
            ..Default::default()
        };
        let credential: Arc<dyn TokenCredential> = match &config.source {
            CredentialSource::WorkloadIdentity {
                client_id,
                tenant_id,
                token_file,
            } => WorkloadIdentityCredential::new(Some(WorkloadIdentityCredentialOptions {
                credential_options: ClientAssertionCredentialOptions { client_options },
                client_id: client_id.clone(),
                tenant_id: tenant_id.clone(),
                token_file_path: token_file.clone(),
            }))
            .map_err(|e| credential_setup_error(&e))?,
            CredentialSource::ClientSecret {
                tenant_id,
                client_id,
                secret,
            } => ClientSecretCredential::new(
                tenant_id,
                client_id.clone(),
                Secret::new(secret.expose().to_string()),
                Some(ClientSecretCredentialOptions { client_options }),
            )
            .map_err(|e| credential_setup_error(&e))?,
        };
        Ok(Self { credential })
    }

    /// Wraps any `azure_core` credential (e.g. a test double).
    pub fn from_credential(credential: Arc<dyn TokenCredential>) -> Self {
        Self { credential }
    }

    /// A bearer token for ARM; the credential serves it from its cache until
    /// close to expiry.
    pub async fn token(&self) -> Result<Credential, BackendError> {
        match self.credential.get_token(&[ARM_SCOPE], None).await {
            Ok(token) => Ok(Credential::new(token.token.secret().to_string())),
            Err(e) => Err(classify_token_error(&e)),
        }
    }
}

/// The credential could not even be built (missing variable, bad tenant id):
/// the operator's configuration, not the cache spec, must change.
fn credential_setup_error(e: &azure_core::Error) -> BackendError {
    BackendError::new(
        ErrorClass::CredentialsInvalid,
        None,
        format!("cannot set up the Azure credential: {}", first_line(e)),
    )
}

/// Classifies a failed token request by the innermost HTTP status or
/// transport failure in the error chain. The message is ours plus Entra's
/// description, which never contains the secret or the assertion.
fn classify_token_error(e: &azure_core::Error) -> BackendError {
    let mut current: Option<&azure_core::Error> = Some(e);
    let mut class = ErrorClass::CredentialsInvalid;
    let mut code = None;
    while let Some(err) = current {
        match err.kind() {
            ErrorKind::HttpResponse {
                status, error_code, ..
            } => {
                let status = u16::from(*status);
                class = match status {
                    429 => ErrorClass::Throttled,
                    500..=599 => ErrorClass::Transient,
                    // 400 invalid_client / unauthorized_client, 401: the
                    // secret, the federation or the app registration is wrong.
                    _ => ErrorClass::CredentialsInvalid,
                };
                code = error_code.clone();
            }
            // TLS failures (an untrusted certificate included) and refused
            // connections land here: the endpoint may come back.
            ErrorKind::Connection | ErrorKind::Io => class = ErrorClass::Transient,
            _ => {}
        }
        current = std::error::Error::source(err).and_then(|s| s.downcast_ref());
    }
    BackendError {
        class,
        code,
        message: crate::backends::redact::redact(&format!(
            "Azure token request failed: {}",
            first_line(e)
        )),
        retry_after: None,
        reason: None,
        queued: false,
    }
}

/// The first line of an SDK error (the rest is a troubleshooting link).
fn first_line(e: &azure_core::Error) -> String {
    let text = e.to_string();
    let line = text.lines().next().unwrap_or_default().trim();
    // Bounded: the message ends up in a Kubernetes condition.
    line.chars().take(512).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_pem_is_rejected() {
        let err = http_client(Some(b"not a certificate")).expect_err("invalid pem");
        assert_eq!(err.class, ErrorClass::Rejected);
    }

    #[test]
    fn client_without_extra_ca_builds() {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        http_client(None).expect("client");
    }

    #[test]
    fn http_authority_host_is_refused_by_azure_identity() {
        let config = IdentityConfig {
            source: CredentialSource::ClientSecret {
                tenant_id: "tenant".into(),
                client_id: "client".into(),
                secret: Credential::new("s3cret-value"),
            },
            authority_host: Some(Url::parse("http://127.0.0.1:1").expect("url")),
        };
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let err = TokenProvider::new(&config, http_client(None).expect("client"))
            .expect_err("http authority");
        assert_eq!(err.class, ErrorClass::CredentialsInvalid);
        assert!(!err.message.contains("s3cret-value"));
    }

    #[test]
    fn debug_hides_the_secret() {
        let source = CredentialSource::ClientSecret {
            tenant_id: "t".into(),
            client_id: "c".into(),
            secret: Credential::new("s3cret-value"),
        };
        assert!(!format!("{source:?}").contains("s3cret-value"));
    }
}
