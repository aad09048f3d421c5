//! `memory` → node type: the smallest node type of a family whose memory is
//! at least the asked-for `maxmemory`.
//!
//! Memory per node type (GiB) as AWS lists it in the ElastiCache pricing page
//! and in the node-type-specific `maxmemory` table of the parameter group
//! reference (<https://docs.aws.amazon.com/AmazonElastiCache/latest/dg/ParameterGroups.Engine.html>,
//! "Redis OSS node-type specific parameters"). ElastiCache keeps
//! `reserved-memory-percent` (25 % by default) of it for the engine's own
//! use; the table is the node's memory, as the DESIGN's mapping asks.

/// `(family, size, memory in MiB)`, each family from small to large.
const NODE_TYPES: &[(&str, &str, u64)] = &[
    ("t4g", "micro", 512),
    ("t4g", "small", 1403),
    ("t4g", "medium", 3164),
    ("t3", "micro", 512),
    ("t3", "small", 1403),
    ("t3", "medium", 3164),
    ("m7g", "large", 6533),
    ("m7g", "xlarge", 13240),
    ("m7g", "2xlarge", 26665),
    ("m7g", "4xlarge", 53514),
    ("m7g", "8xlarge", 106168),
    ("m7g", "12xlarge", 160891),
    ("m7g", "16xlarge", 214579),
    ("m6g", "large", 6533),
    ("m6g", "xlarge", 13240),
    ("m6g", "2xlarge", 26665),
    ("m6g", "4xlarge", 53514),
    ("m6g", "8xlarge", 106168),
    ("m6g", "12xlarge", 160891),
    ("m6g", "16xlarge", 214579),
    ("r7g", "large", 13384),
    ("r7g", "xlarge", 26952),
    ("r7g", "2xlarge", 54088),
    ("r7g", "4xlarge", 108349),
    ("r7g", "8xlarge", 214579),
    ("r7g", "12xlarge", 325396),
    ("r7g", "16xlarge", 429148),
    ("r6g", "large", 13384),
    ("r6g", "xlarge", 26952),
    ("r6g", "2xlarge", 54088),
    ("r6g", "4xlarge", 108349),
    ("r6g", "8xlarge", 214579),
    ("r6g", "12xlarge", 325396),
    ("r6g", "16xlarge", 429148),
];

/// Families used, in order, when the class names none: burstable first,
/// then memory-optimised.
const DEFAULT_FAMILIES: [&str; 2] = ["t4g", "r7g"];

/// The smallest node type holding `bytes` in `family` (or the default
/// families); `Err` says what the largest is.
pub fn for_memory(bytes: u64, family: Option<&str>) -> Result<String, String> {
    let families: Vec<&str> = match family {
        Some(f) => vec![f],
        None => DEFAULT_FAMILIES.to_vec(),
    };
    if let Some(f) = family {
        if !NODE_TYPES.iter().any(|(fam, _, _)| *fam == f) {
            let known: Vec<&str> = dedup(NODE_TYPES.iter().map(|(f, _, _)| *f));
            return Err(format!(
                "node family {f:?} is not known; use one of {}",
                known.join(", ")
            ));
        }
    }
    let mib = bytes.div_ceil(1 << 20);
    for f in &families {
        if let Some((_, size, _)) = NODE_TYPES.iter().find(|(fam, _, m)| fam == f && *m >= mib) {
            return Ok(format!("cache.{f}.{size}"));
        }
    }
    let largest = NODE_TYPES
        .iter()
        .filter(|(fam, _, _)| families.contains(fam))
        .max_by_key(|(_, _, m)| *m)
        .map(|(f, s, m)| format!("cache.{f}.{s} ({m}Mi)"))
        .unwrap_or_default();
    Err(format!(
        "more memory than one node of the family holds (largest: {largest}); use clusterMode: Enabled with more shards, or a larger family"
    ))
}

/// Memory of `node_type` in MiB, when the table has it.
pub fn memory_mib(node_type: &str) -> Option<u64> {
    let mut parts = node_type.split('.');
    let (_, family, size) = (parts.next()?, parts.next()?, parts.next()?);
    NODE_TYPES
        .iter()
        .find(|(f, s, _)| *f == family && *s == size)
        .map(|(_, _, m)| *m)
}

fn dedup<'a>(it: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut out: Vec<&str> = Vec::new();
    for x in it {
        if !out.contains(&x) {
            out.push(x);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const MI: u64 = 1 << 20;

    #[test]
    fn smallest_type_holding_the_memory_at_the_boundaries() {
        assert_eq!(for_memory(512 * MI, None).as_deref(), Ok("cache.t4g.micro"));
        assert_eq!(
            for_memory(512 * MI + 1, None).as_deref(),
            Ok("cache.t4g.small")
        );
        assert_eq!(for_memory(1 << 30, None).as_deref(), Ok("cache.t4g.small"));
        assert_eq!(
            for_memory(3164 * MI, None).as_deref(),
            Ok("cache.t4g.medium")
        );
        assert_eq!(
            for_memory(3165 * MI, None).as_deref(),
            Ok("cache.r7g.large")
        );
        assert_eq!(
            for_memory(429148 * MI, None).as_deref(),
            Ok("cache.r7g.16xlarge")
        );
        let e = for_memory(429149 * MI, None).expect_err("too big");
        assert!(e.contains("cache.r7g.16xlarge"), "{e}");
    }

    #[test]
    fn a_named_family_is_used_alone() {
        assert_eq!(
            for_memory(1 << 30, Some("m7g")).as_deref(),
            Ok("cache.m7g.large")
        );
        assert_eq!(
            for_memory(6534 * MI, Some("m7g")).as_deref(),
            Ok("cache.m7g.xlarge")
        );
        assert!(for_memory(4 << 30, Some("t4g")).is_err());
        assert!(for_memory(1 << 30, Some("x9"))
            .expect_err("unknown")
            .contains("not known"));
        assert_eq!(memory_mib("cache.r7g.large"), Some(13384));
        assert_eq!(memory_mib("cache.z1.huge"), None);
    }
}
