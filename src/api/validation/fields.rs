//! Unknown fields in a manifest, found against the CRD's own OpenAPI schema
//! (what the API server's strict field validation refuses), each with the
//! closest known field as a suggestion.

use serde_json::Value;

use super::FieldError;

/// Fields of `doc` under `path` (e.g. `spec`) that `schema` does not know.
pub fn unknown_fields(doc: &Value, schema: &Value, path: &str) -> Vec<FieldError> {
    let mut out = Vec::new();
    walk(doc, schema, path, &mut out);
    out
}

fn walk(doc: &Value, schema: &Value, path: &str, out: &mut Vec<FieldError>) {
    if schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true)) {
        return;
    }
    match doc {
        Value::Object(map) => {
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                for (key, value) in map {
                    let field = format!("{path}.{key}");
                    match props.get(key) {
                        Some(s) => walk(value, s, &field, out),
                        None => {
                            let hint = closest(key, props.keys().map(String::as_str))
                                .map(|c| format!("; did you mean {path}.{c}?"))
                                .unwrap_or_default();
                            out.push(FieldError::new(field, format!("unknown field{hint}")));
                        }
                    }
                }
            } else if let Some(values) = schema.get("additionalProperties") {
                for (key, value) in map {
                    walk(value, values, &format!("{path}[{key}]"), out);
                }
            }
        }
        Value::Array(items) => {
            if let Some(s) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    walk(item, s, &format!("{path}[{i}]"), out);
                }
            }
        }
        _ => {}
    }
}

/// The candidate closest to `word` by edit distance, when it is close
/// enough to be a typo (at most a third of the word's length, at least 2).
pub fn closest<'a>(word: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (word.chars().count() / 3).max(2);
    candidates
        .map(|c| (distance(&word.to_lowercase(), &c.to_lowercase()), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Levenshtein distance.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = if ca == *cb {
                prev
            } else {
                1 + prev.min(cur).min(row[j])
            };
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn typos_are_named_with_the_closest_field() {
        let schema = json!({"properties": {
            "nodeType": {"type": "string"},
            "network": {"properties": {"allowedCidrs": {"items": {"type": "string"}}}},
            "parameters": {"additionalProperties": {"type": "string"}},
            "free": {"x-kubernetes-preserve-unknown-fields": true}
        }});
        let doc = json!({
            "nodeTyp": "cache.t4g.small",
            "network": {"alowedCidrs": ["10.0.0.0/8"]},
            "parameters": {"anything-goes": "1"},
            "free": {"whatever": 1},
            "zzzzzz": 1
        });
        let errors = unknown_fields(&doc, &schema, "spec");
        let got: Vec<_> = errors
            .iter()
            .map(|e| (e.field.as_str(), e.message.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    "spec.network.alowedCidrs",
                    "unknown field; did you mean spec.network.allowedCidrs?"
                ),
                ("spec.nodeTyp", "unknown field; did you mean spec.nodeType?"),
                ("spec.zzzzzz", "unknown field"),
            ]
        );
    }

    #[test]
    fn distance_counts_edits() {
        assert_eq!(distance("nodeTyp", "nodeType"), 1);
        assert_eq!(distance("kitten", "sitting"), 3);
        assert_eq!(
            closest("shard", ["shards", "port"].into_iter()),
            Some("shards")
        );
        assert_eq!(closest("xyz", ["shards", "port"].into_iter()), None);
    }
}
