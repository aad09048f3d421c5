//! AWS errors classified by their wire code (DESIGN §5), never by message
//! text. EC2's errors are untyped in the Rust SDK and ElastiCache's typed ones
//! differ per operation, so everything goes through the code string.

use std::fmt;

use aws_sdk_elasticache::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_smithy_runtime_api::client::interceptors::context::InterceptorContext;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::retries::classifiers::{
    ClassifyRetry, RetryAction, RetryClassifierPriority,
};

use super::operations::Operation;
use crate::backends::redact::redact;
use crate::backends::BackendError;
use crate::backends::ErrorClass;

/// What a wire error code means for the provider.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// An error of this class.
    Class(ErrorClass),
    /// A create found the name taken: the caller checks the owner tag and
    /// either continues (ours) or reports a conflict.
    AlreadyExists,
    /// The rule to authorize is there already, or the rule to revoke is gone:
    /// the desired state holds, so the call counts as a success.
    AlreadyDone,
}

/// Codes AWS uses for rate limiting. ElastiCache's own
/// `APICallRateForCustomerExceeded` is missing from the SDK's list.
const THROTTLING: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottled",
    "RequestThrottledException",
    "TooManyRequestsException",
    "APICallRateForCustomerExceeded",
    "RequestLimitExceeded",
    "EC2ThrottledException",
    "SlowDown",
    "PriorRequestNotComplete",
];

/// Classifies a wire error code. `None` (no code: a 5xx with an HTML body, a
/// timeout, a dropped connection) is always transient and never "not found",
/// because nothing says the resource is missing.
pub fn classify(code: Option<&str>) -> Verdict {
    use ErrorClass::*;
    let Some(code) = code.filter(|c| !c.is_empty()) else {
        return Verdict::Class(Transient);
    };
    if THROTTLING.contains(&code) {
        return Verdict::Class(Throttled);
    }
    let class = match code {
        "InvalidPermission.Duplicate" | "InvalidPermission.NotFound" => {
            return Verdict::AlreadyDone
        }
        "ReplicationGroupAlreadyExists"
        | "CacheParameterGroupAlreadyExists"
        | "CacheSubnetGroupAlreadyExists"
        | "InvalidGroup.Duplicate" => return Verdict::AlreadyExists,
        "ReplicationGroupNotFoundFault"
        | "CacheParameterGroupNotFound"
        | "CacheSubnetGroupNotFoundFault"
        | "CacheClusterNotFound"
        | "InvalidGroup.NotFound" => NotFound,
        // Ids the user gave us that do not exist: a spec problem, not a
        // resource of ours to create.
        "InvalidSubnetID.NotFound" | "InvalidSubnet" | "InvalidVpcID.NotFound" => Rejected,
        "InvalidReplicationGroupState"
        | "InvalidCacheParameterGroupState"
        | "InvalidCacheClusterState"
        | "CacheSubnetGroupInUse"
        | "DependencyViolation"
        | "InvalidGroup.InUse"
        | "SubnetInUse"
        | "InternalFailure"
        | "InternalError"
        | "ServiceUnavailable"
        | "ServiceUnavailableException"
        | "Unavailable"
        | "RequestTimeout"
        | "RequestTimeoutException"
        | "RequestExpired" => Transient,
        // Missing permissions are fixed by the operator's admin, not by the
        // cache's spec: keep retrying (with backoff) so the cache recovers on
        // its own once IAM is right.
        "AccessDenied" | "AccessDeniedException" | "UnauthorizedOperation" => Transient,
        // Credentials AWS does not accept: the class shows it, and caches
        // retry slowly until the identity is fixed.
        "AuthFailure"
        | "InvalidClientTokenId"
        | "UnrecognizedClientException"
        | "ExpiredToken"
        | "ExpiredTokenException"
        | "SignatureDoesNotMatch" => CredentialsInvalid,
        "InvalidParameterValue"
        | "InvalidParameterCombination"
        | "InvalidParameter"
        | "MissingParameter"
        | "ValidationError"
        | "InvalidKMSKeyFault"
        | "InvalidVPCNetworkStateFault"
        | "InvalidARN"
        | "InvalidPermission.Malformed"
        | "InvalidGroupId.Malformed"
        | "TagQuotaPerResource.Exceeded"
        | "SnapshotAlreadyExistsFault" => Rejected,
        "InsufficientCacheClusterCapacity"
        | "NodeQuotaForCustomerExceeded"
        | "NodeQuotaForClusterExceeded"
        | "ClusterQuotaForCustomerExceeded"
        | "NodeGroupsPerReplicationGroupQuotaExceeded"
        | "CacheParameterGroupQuotaExceeded"
        | "CacheSubnetGroupQuotaExceeded"
        | "CacheSubnetQuotaExceededFault"
        | "SnapshotQuotaExceededFault"
        | "SecurityGroupLimitExceeded"
        | "RulesPerSecurityGroupLimitExceeded" => Capacity,
        other => return classify_by_shape(other),
    };
    Verdict::Class(class)
}

/// Codes not in the table, by the naming conventions AWS follows.
fn classify_by_shape(code: &str) -> Verdict {
    use ErrorClass::*;
    let class = if code.ends_with("AlreadyExists")
        || code.ends_with("AlreadyExistsFault")
        || code.ends_with(".Duplicate")
    {
        return Verdict::AlreadyExists;
    } else if code.contains("Throttl") {
        Throttled
    } else if code.ends_with("InUse")
        || code.ends_with("InUseFault")
        || (code.starts_with("Invalid")
            && (code.ends_with("State") || code.ends_with("StateFault")))
    {
        Transient
    } else if code.ends_with("NotFound") || code.ends_with("NotFoundFault") {
        NotFound
    } else if code.contains("QuotaExceeded")
        || code.contains("QuotaForCustomerExceeded")
        || code.contains("LimitExceeded")
        || code.starts_with("Insufficient")
    {
        Capacity
    } else if code.starts_with("Invalid") {
        Rejected
    } else {
        // Unknown: retrying with a capped backoff costs little, while
        // "rejected" would stall the cache until someone edits its spec.
        Transient
    };
    Verdict::Class(class)
}

/// A failed AWS call, classified, with the AWS message (tokens redacted).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AwsError {
    pub operation: Operation,
    pub verdict: Verdict,
    pub code: Option<String>,
    pub message: String,
    /// When to try again, for a call the operator's own rate limiter deferred
    /// (set only by [`AwsError::deferred`]).
    pub retry_after: Option<std::time::Duration>,
}

impl fmt::Display for AwsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.code {
            Some(code) => write!(f, "{}: {code}: {}", self.operation.name(), self.message),
            None => write!(f, "{}: {}", self.operation.name(), self.message),
        }
    }
}

impl std::error::Error for AwsError {}

/// A describe's answer with "not found" as `None`.
pub fn found<T>(result: Result<T, AwsError>) -> Result<Option<T>, AwsError> {
    match result {
        Ok(out) => Ok(Some(out)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

impl AwsError {
    /// Classifies an SDK error.
    pub fn from_sdk<E>(operation: Operation, err: &SdkError<E, HttpResponse>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        let code = err.code().map(str::to_string);
        let verdict = match err {
            // The request could not even be built: retrying cannot help.
            SdkError::ConstructionFailure(_) => Verdict::Class(ErrorClass::Rejected),
            _ => classify(code.as_deref()),
        };
        let message = match err.message() {
            Some(m) if !m.is_empty() => m.to_string(),
            _ => match err.raw_response() {
                Some(r) => format!("HTTP {} without an AWS error code", r.status().as_u16()),
                None => DisplayErrorContext(err).to_string(),
            },
        };
        Self {
            operation,
            verdict,
            code,
            message: redact(&message),
            retry_after: None,
        }
    }

    /// A change not sent because other caches are ahead of this one in
    /// line for the rate limit; the reconcile returns and is woken at its turn.
    pub fn deferred(operation: Operation, place: crate::backends::turns::Place) -> Self {
        Self {
            operation,
            verdict: Verdict::Class(ErrorClass::Throttled),
            code: None,
            message: format!(
                "waiting for the AWS rate limit, about {} calls queued ({} caches ahead, about {} s); not sent yet",
                place.calls,
                place.ahead,
                place.wait.as_secs().max(1)
            ),
            retry_after: Some(place.retry_after),
        }
    }

    /// Whether AWS said the resource does not exist.
    pub fn is_not_found(&self) -> bool {
        self.verdict == Verdict::Class(ErrorClass::NotFound)
    }

    /// Whether a create found the name taken.
    pub fn is_already_exists(&self) -> bool {
        self.verdict == Verdict::AlreadyExists
    }

    /// Short label for the metrics' `outcome`.
    pub fn outcome(&self) -> &'static str {
        match self.verdict {
            Verdict::Class(ErrorClass::Throttled) => "throttled",
            Verdict::Class(ErrorClass::Transient) => "transient",
            Verdict::Class(ErrorClass::Rejected) => "rejected",
            Verdict::Class(ErrorClass::Capacity) => "capacity",
            Verdict::Class(ErrorClass::NotFound) => "not_found",
            Verdict::Class(ErrorClass::Conflict) | Verdict::AlreadyExists => "already_exists",
            Verdict::Class(ErrorClass::CredentialsInvalid) => "credentials_invalid",
            Verdict::Class(ErrorClass::Immutable) => "rejected",
            Verdict::AlreadyDone => "already_done",
        }
    }
}

impl From<AwsError> for BackendError {
    fn from(e: AwsError) -> Self {
        let class = match e.verdict {
            Verdict::Class(class) => class,
            // Reaching the reconciler means the name is taken and the
            // caller could not show it is ours.
            Verdict::AlreadyExists => ErrorClass::Conflict,
            // Callers treat these as success; if one slips through, looking
            // again is the safe reaction.
            Verdict::AlreadyDone => ErrorClass::Transient,
        };
        let message = format!(
            "{} {}: {}",
            e.operation.service().label(),
            e.operation.name(),
            e.message
        );
        let mut out = BackendError::new(class, e.code.as_deref(), message);
        out.retry_after = e.retry_after;
        // Only a deferral says when to come back.
        out.queued = e.retry_after.is_some();
        out
    }
}

/// Marks ElastiCache's `APICallRateForCustomerExceeded` (HTTP 400) as a
/// throttling error so the SDK's standard retry backs off and retries it,
/// like the throttling codes the SDK knows. Reads the code from the raw
/// error body, which the SDK has buffered by the time classifiers run.
#[derive(Debug, Default)]
pub struct ElastiCacheThrottlingClassifier;

impl ClassifyRetry for ElastiCacheThrottlingClassifier {
    fn classify_retry(&self, ctx: &InterceptorContext) -> RetryAction {
        let Some(Err(_)) = ctx.output_or_error() else {
            return RetryAction::NoActionIndicated;
        };
        let body = ctx.response().and_then(|r| r.body().bytes());
        match body {
            Some(b) if contains(b, b"<Code>APICallRateForCustomerExceeded</Code>") => {
                RetryAction::throttling_error()
            }
            _ => RetryAction::NoActionIndicated,
        }
    }

    fn name(&self) -> &'static str {
        "ElastiCacheThrottling"
    }

    fn priority(&self) -> RetryClassifierPriority {
        RetryClassifierPriority::run_after(RetryClassifierPriority::transient_error_classifier())
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ErrorClass::*;

    #[test]
    fn every_class_of_design_section_5_by_code() {
        let table: &[(Option<&str>, Verdict)] = &[
            // throttled
            (Some("Throttling"), Verdict::Class(Throttled)),
            (Some("ThrottlingException"), Verdict::Class(Throttled)),
            (
                Some("APICallRateForCustomerExceeded"),
                Verdict::Class(Throttled),
            ),
            (Some("RequestLimitExceeded"), Verdict::Class(Throttled)),
            // transient
            (None, Verdict::Class(Transient)),
            (Some(""), Verdict::Class(Transient)),
            (
                Some("InvalidReplicationGroupState"),
                Verdict::Class(Transient),
            ),
            (
                Some("InvalidCacheParameterGroupState"),
                Verdict::Class(Transient),
            ),
            (Some("CacheSubnetGroupInUse"), Verdict::Class(Transient)),
            (Some("DependencyViolation"), Verdict::Class(Transient)),
            (Some("InternalFailure"), Verdict::Class(Transient)),
            (Some("AccessDenied"), Verdict::Class(Transient)),
            (Some("UnauthorizedOperation"), Verdict::Class(Transient)),
            // rejected
            (Some("InvalidParameterValue"), Verdict::Class(Rejected)),
            (
                Some("InvalidParameterCombination"),
                Verdict::Class(Rejected),
            ),
            (Some("InvalidKMSKeyFault"), Verdict::Class(Rejected)),
            (
                Some("InvalidVPCNetworkStateFault"),
                Verdict::Class(Rejected),
            ),
            (Some("InvalidSubnetID.NotFound"), Verdict::Class(Rejected)),
            // capacity / quota
            (
                Some("InsufficientCacheClusterCapacity"),
                Verdict::Class(Capacity),
            ),
            (
                Some("NodeQuotaForCustomerExceeded"),
                Verdict::Class(Capacity),
            ),
            (
                Some("ClusterQuotaForCustomerExceeded"),
                Verdict::Class(Capacity),
            ),
            (
                Some("RulesPerSecurityGroupLimitExceeded"),
                Verdict::Class(Capacity),
            ),
            // gone
            (
                Some("ReplicationGroupNotFoundFault"),
                Verdict::Class(NotFound),
            ),
            (Some("InvalidGroup.NotFound"), Verdict::Class(NotFound)),
            (
                Some("CacheParameterGroupNotFound"),
                Verdict::Class(NotFound),
            ),
            (
                Some("CacheSubnetGroupNotFoundFault"),
                Verdict::Class(NotFound),
            ),
            // duplicates on rules
            (Some("InvalidPermission.Duplicate"), Verdict::AlreadyDone),
            (Some("InvalidPermission.NotFound"), Verdict::AlreadyDone),
            // creates that find the name taken
            (
                Some("ReplicationGroupAlreadyExists"),
                Verdict::AlreadyExists,
            ),
            (
                Some("CacheParameterGroupAlreadyExists"),
                Verdict::AlreadyExists,
            ),
            (
                Some("CacheSubnetGroupAlreadyExists"),
                Verdict::AlreadyExists,
            ),
            (Some("InvalidGroup.Duplicate"), Verdict::AlreadyExists),
            // unknown codes by their shape
            (Some("UserGroupNotFoundFault"), Verdict::Class(NotFound)),
            (
                Some("InvalidUserGroupStateFault"),
                Verdict::Class(Transient),
            ),
            (
                Some("ReservedCacheNodeQuotaExceeded"),
                Verdict::Class(Capacity),
            ),
            (
                Some("InvalidCredentialsException"),
                Verdict::Class(Rejected),
            ),
            (Some("SomethingNew"), Verdict::Class(Transient)),
        ];
        for (code, want) in table {
            assert_eq!(classify(*code), *want, "code {code:?}");
        }
    }

    #[test]
    fn converted_errors_keep_code_and_message_without_tokens() {
        let token = "Ab1".repeat(22);
        // A token the operator holds is known, whatever its shape.
        let _known = crate::backends::Credential::new(token.clone());
        let e = AwsError {
            operation: Operation::CreateReplicationGroup,
            verdict: Verdict::Class(Rejected),
            code: Some("InvalidParameterValue".into()),
            message: redact(&format!("Invalid AuthToken {token}")),
            retry_after: None,
        };
        let p = BackendError::from(e.clone());
        assert_eq!(p.class, Rejected);
        assert_eq!(p.code.as_deref(), Some("InvalidParameterValue"));
        assert!(
            p.message.contains("CreateReplicationGroup"),
            "{}",
            p.message
        );
        assert!(!p.to_string().contains(&token));
        assert!(!e.to_string().contains(&token));
        let taken = AwsError {
            verdict: Verdict::AlreadyExists,
            ..e
        };
        assert_eq!(BackendError::from(taken).class, Conflict);
    }
}
