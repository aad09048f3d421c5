//! The AWS ElastiCache/EC2 provider.

use std::sync::Arc;

use crate::cli::AwsArgs;
use crate::provider::Provider;

/// Builds the AWS provider from the standard credential chain.
pub async fn provider(_args: &AwsArgs) -> anyhow::Result<Arc<dyn Provider>> {
    anyhow::bail!("the AWS provider is not implemented yet (issue #3); only the in-memory provider used by the tests exists")
}
