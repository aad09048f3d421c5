//! Memory → Azure SKU, pure.
//!
//! Sizes are Azure's "GB", taken as decimal gigabytes (10^9 bytes). That is
//! the conservative reading: if Azure's GB is really GiB the chosen SKU is
//! only ever larger than needed, never too small. A request of `6Gi`
//! (6.44 × 10^9 bytes) therefore gets Balanced_B10, not B5.
//!
//! Sources:
//! - SKU names: the `SkuName` enum of `Microsoft.Cache/redisEnterprise`
//!   2026-08-01 (azure-rest-api-specs, RedisEnterprise/stable/2026-08-01).
//! - Balanced memory sizes: https://learn.microsoft.com/azure/redis/overview
//!   (tier table; Balanced_B5 = 6 GB also appears in the spec's
//!   `RedisEnterpriseListSkusForScaling` example, `sizeInGB: 6.0`).
//! - Premium P1–P5 sizes: https://learn.microsoft.com/azure/azure-cache-for-redis/cache-overview
//!   (service tiers: 6, 13, 26, 53, 120 GB).

use std::fmt;

const GB: u64 = 1_000_000_000;

/// An Azure Managed Redis Balanced SKU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BalancedSku {
    /// The ARM SKU name, e.g. `Balanced_B5`.
    pub name: &'static str,
    /// The memory it holds, in bytes.
    pub memory_bytes: u64,
}

/// Balanced SKUs, smallest first.
pub const BALANCED_SKUS: &[BalancedSku] = &[
    BalancedSku {
        name: "Balanced_B0",
        memory_bytes: GB / 2,
    },
    BalancedSku {
        name: "Balanced_B1",
        memory_bytes: GB,
    },
    BalancedSku {
        name: "Balanced_B3",
        memory_bytes: 3 * GB,
    },
    BalancedSku {
        name: "Balanced_B5",
        memory_bytes: 6 * GB,
    },
    BalancedSku {
        name: "Balanced_B10",
        memory_bytes: 12 * GB,
    },
    BalancedSku {
        name: "Balanced_B20",
        memory_bytes: 24 * GB,
    },
    BalancedSku {
        name: "Balanced_B50",
        memory_bytes: 60 * GB,
    },
    BalancedSku {
        name: "Balanced_B100",
        memory_bytes: 120 * GB,
    },
    BalancedSku {
        name: "Balanced_B150",
        memory_bytes: 180 * GB,
    },
    BalancedSku {
        name: "Balanced_B250",
        memory_bytes: 240 * GB,
    },
    BalancedSku {
        name: "Balanced_B350",
        memory_bytes: 360 * GB,
    },
    BalancedSku {
        name: "Balanced_B500",
        memory_bytes: 480 * GB,
    },
    BalancedSku {
        name: "Balanced_B700",
        memory_bytes: 720 * GB,
    },
    BalancedSku {
        name: "Balanced_B1000",
        memory_bytes: 960 * GB,
    },
];

/// A Premium (Azure Cache for Redis) size: `Premium` / family `P` / capacity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PremiumSku {
    /// 1..=5 (P1..P5).
    pub capacity: u8,
    /// Memory of one shard, in bytes.
    pub memory_bytes: u64,
}

impl PremiumSku {
    /// `P1`..`P5`.
    pub fn label(&self) -> String {
        format!("P{}", self.capacity)
    }
}

/// Premium sizes, smallest first.
pub const PREMIUM_SKUS: &[PremiumSku] = &[
    PremiumSku {
        capacity: 1,
        memory_bytes: 6 * GB,
    },
    PremiumSku {
        capacity: 2,
        memory_bytes: 13 * GB,
    },
    PremiumSku {
        capacity: 3,
        memory_bytes: 26 * GB,
    },
    PremiumSku {
        capacity: 4,
        memory_bytes: 53 * GB,
    },
    PremiumSku {
        capacity: 5,
        memory_bytes: 120 * GB,
    },
];

/// Why no SKU fits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SkuError {
    /// Zero bytes asked.
    Zero,
    /// More than the largest SKU holds.
    TooLarge {
        /// Asked, in bytes.
        requested: u64,
        /// The largest SKU's capacity, in bytes.
        largest: u64,
        /// The largest SKU's name.
        largest_name: String,
    },
    /// A Premium shard count outside 1..=30.
    ShardCount(u32),
}

impl fmt::Display for SkuError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SkuError::Zero => f.write_str("memory must be more than 0 bytes"),
            SkuError::TooLarge {
                requested,
                largest,
                largest_name,
            } => write!(
                f,
                "memory {requested} bytes is more than the largest SKU {largest_name} holds ({largest} bytes)"
            ),
            SkuError::ShardCount(n) => {
                write!(f, "shard count {n} is outside what Premium allows (1 to 30)")
            }
        }
    }
}

impl std::error::Error for SkuError {}

/// The smallest Balanced SKU holding `memory_bytes`.
pub fn balanced_sku_for(memory_bytes: u64) -> Result<&'static BalancedSku, SkuError> {
    if memory_bytes == 0 {
        return Err(SkuError::Zero);
    }
    BALANCED_SKUS
        .iter()
        .find(|s| s.memory_bytes >= memory_bytes)
        .ok_or_else(|| {
            let largest = BALANCED_SKUS[BALANCED_SKUS.len() - 1];
            SkuError::TooLarge {
                requested: memory_bytes,
                largest: largest.memory_bytes,
                largest_name: largest.name.to_string(),
            }
        })
}

/// The smallest Premium size whose `shard_count` shards together hold
/// `memory_bytes` (a non-clustered cache is one shard).
pub fn premium_sku_for(memory_bytes: u64, shard_count: u32) -> Result<PremiumSku, SkuError> {
    if memory_bytes == 0 {
        return Err(SkuError::Zero);
    }
    if !(1..=30).contains(&shard_count) {
        return Err(SkuError::ShardCount(shard_count));
    }
    let shards = u64::from(shard_count);
    PREMIUM_SKUS
        .iter()
        .copied()
        .find(|s| s.memory_bytes.saturating_mul(shards) >= memory_bytes)
        .ok_or_else(|| {
            let largest = PREMIUM_SKUS[PREMIUM_SKUS.len() - 1];
            SkuError::TooLarge {
                requested: memory_bytes,
                largest: largest.memory_bytes.saturating_mul(shards),
                largest_name: format!("{} x {shard_count} shards", largest.label()),
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    #[test]
    fn balanced_boundaries() {
        for (i, sku) in BALANCED_SKUS.iter().enumerate() {
            assert_eq!(
                balanced_sku_for(sku.memory_bytes).expect("fits").name,
                sku.name
            );
            if let Some(next) = BALANCED_SKUS.get(i + 1) {
                assert_eq!(
                    balanced_sku_for(sku.memory_bytes + 1).expect("fits").name,
                    next.name
                );
            }
        }
        assert_eq!(balanced_sku_for(1).expect("fits").name, "Balanced_B0");
        assert_eq!(
            balanced_sku_for(256 << 20).expect("fits").name,
            "Balanced_B0"
        );
        assert_eq!(balanced_sku_for(GIB).expect("fits").name, "Balanced_B3");
        assert_eq!(
            balanced_sku_for(6 * GIB).expect("fits").name,
            "Balanced_B10"
        );
        assert_eq!(balanced_sku_for(0), Err(SkuError::Zero));
        let err = balanced_sku_for(960 * GB + 1).expect_err("too large");
        assert!(err.to_string().contains("Balanced_B1000"), "{err}");
    }

    #[test]
    fn balanced_table_is_sorted_and_complete() {
        assert_eq!(BALANCED_SKUS.len(), 14);
        assert!(BALANCED_SKUS
            .windows(2)
            .all(|w| w[0].memory_bytes < w[1].memory_bytes));
    }

    #[test]
    fn premium_boundaries() {
        for (i, sku) in PREMIUM_SKUS.iter().enumerate() {
            assert_eq!(premium_sku_for(sku.memory_bytes, 1).expect("fits"), *sku);
            if let Some(next) = PREMIUM_SKUS.get(i + 1) {
                assert_eq!(
                    premium_sku_for(sku.memory_bytes + 1, 1).expect("fits"),
                    *next
                );
            }
        }
        assert_eq!(premium_sku_for(1, 1).expect("fits").label(), "P1");
        assert_eq!(
            premium_sku_for(120 * GB + 1, 1).map(|_| ()),
            Err(SkuError::TooLarge {
                requested: 120 * GB + 1,
                largest: 120 * GB,
                largest_name: "P5 x 1 shards".into(),
            })
        );
        // 20 GB over 2 shards: 10 GB a shard → P2 (13 GB).
        assert_eq!(premium_sku_for(20 * GB, 2).expect("fits").label(), "P2");
        assert_eq!(premium_sku_for(12 * GB, 2).expect("fits").label(), "P1");
        assert_eq!(premium_sku_for(3600 * GB, 30).expect("fits").label(), "P5");
        assert_eq!(premium_sku_for(GB, 0), Err(SkuError::ShardCount(0)));
        assert_eq!(premium_sku_for(GB, 31), Err(SkuError::ShardCount(31)));
        assert_eq!(premium_sku_for(0, 1), Err(SkuError::Zero));
    }
}
