//! The API reference (`docs/api-reference.md`), rendered from the CRD's
//! OpenAPI v3 schema so it cannot drift from what the API server enforces.
//!
//! `tests/api_reference.rs` compares the committed file with [`reference`];
//! `UPDATE_API_REFERENCE=1 cargo test --test api_reference` rewrites it.

use std::fmt::Write as _;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde_json::Value;

/// The command that regenerates `docs/api-reference.md`.
pub const UPDATE_COMMAND: &str = "UPDATE_API_REFERENCE=1 cargo test --test api_reference";

/// Why a CRD could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum ApiDocError {
    /// The CRD could not be turned into JSON.
    #[error("serializing the CRD: {0}")]
    Serialize(#[from] serde_json::Error),
    /// The CRD declares no version.
    #[error("the CRD has no version")]
    NoVersion,
    /// The first version has no `schema.openAPIV3Schema`.
    #[error("version {0} has no openAPIV3Schema")]
    NoSchema(String),
}

/// The Markdown reference of the `RedisCache` and `RedisCacheClass` CRDs,
/// as committed in `docs/`.
pub fn reference() -> Result<String, ApiDocError> {
    use kube::CustomResourceExt;
    let cache = render_crd(&crate::api::RedisCache::crd())?;
    let class = render_crd(&crate::api::RedisCacheClass::crd())?;
    Ok(format!("{cache}\n{class}"))
}

/// Renders the first version of `crd` as Markdown: printer columns, then one
/// section per object with a table of its fields and the CEL rules declared on it.
pub fn render_crd(crd: &CustomResourceDefinition) -> Result<String, ApiDocError> {
    render(&serde_json::to_value(crd)?)
}

/// [`render_crd`] on the CRD as JSON (a `CustomResourceDefinition` object).
pub fn render(crd: &Value) -> Result<String, ApiDocError> {
    let spec = &crd["spec"];
    let version = spec["versions"].get(0).ok_or(ApiDocError::NoVersion)?;
    let version_name = str_of(&version["name"]);
    let schema = version["schema"]
        .get("openAPIV3Schema")
        .ok_or_else(|| ApiDocError::NoSchema(version_name.to_string()))?;
    let group = str_of(&spec["group"]);
    let names = &spec["names"];
    let kind = str_of(&names["kind"]);

    let mut sections = Vec::new();
    collect(kind, "", schema, &mut sections);

    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = write_document(
        &mut out,
        DocumentHead {
            kind,
            group,
            version: version_name,
            spec,
            version_json: version,
            schema,
        },
        &sections,
    );
    Ok(out)
}

struct DocumentHead<'a> {
    kind: &'a str,
    group: &'a str,
    version: &'a str,
    spec: &'a Value,
    version_json: &'a Value,
    schema: &'a Value,
}

/// One object of the schema: its fields and the CEL rules declared on it.
struct Section<'a> {
    /// Heading: the object's path (`spec.network`), or the kind for the root.
    title: String,
    schema: &'a Value,
    /// Prefix of the fields' paths (`spec.network.`); empty for the root.
    prefix: String,
}

/// Collects `schema` (an object with properties) and every object below it,
/// depth first, fields in name order.
fn collect<'a>(title: &str, path: &str, schema: &'a Value, out: &mut Vec<Section<'a>>) {
    let prefix = if path.is_empty() {
        String::new()
    } else {
        format!("{path}.")
    };
    out.push(Section {
        title: title.to_string(),
        schema,
        prefix: prefix.clone(),
    });
    for (name, field) in properties(schema) {
        let field_path = format!("{prefix}{name}");
        if let Some((sub_path, sub)) = nested_object(&field_path, field) {
            collect(&sub_path, &sub_path, sub, out);
        }
    }
}

/// The object with its own section reached through `field`, if any: the field
/// itself, its array items (`path[]`) or its map values (`path[*]`).
fn nested_object<'a>(path: &str, field: &'a Value) -> Option<(String, &'a Value)> {
    if has_properties(field) {
        return Some((path.to_string(), field));
    }
    let items = &field["items"];
    if has_properties(items) {
        return Some((format!("{path}[]"), items));
    }
    let values = &field["additionalProperties"];
    if has_properties(values) {
        return Some((format!("{path}[*]"), values));
    }
    None
}

fn has_properties(schema: &Value) -> bool {
    schema["properties"].as_object().is_some()
}

/// Properties sorted by name (independent of the JSON map's order).
fn properties(schema: &Value) -> Vec<(&str, &Value)> {
    let mut props: Vec<(&str, &Value)> = schema["properties"]
        .as_object()
        .map(|m| m.iter().map(|(k, v)| (k.as_str(), v)).collect())
        .unwrap_or_default();
    props.sort_by(|a, b| a.0.cmp(b.0));
    props
}

fn write_document(
    out: &mut String,
    head: DocumentHead<'_>,
    sections: &[Section<'_>],
) -> std::fmt::Result {
    let DocumentHead {
        kind,
        group,
        version,
        spec,
        version_json,
        schema,
    } = head;
    writeln!(out, "# {kind} API reference (`{group}/{version}`)")?;
    writeln!(out)?;
    writeln!(
        out,
        "<!-- Generated from the CRD by src/apidoc.rs; do not edit. Regenerate with: {UPDATE_COMMAND} -->"
    )?;
    writeln!(out)?;
    let names = &spec["names"];
    let mut facts = vec![
        format!("Kind `{kind}`"),
        format!("group `{group}`"),
        format!("version `{version}`"),
        format!("scope `{}`", str_of(&spec["scope"])),
        format!("plural `{}`", str_of(&names["plural"])),
    ];
    for (key, label) in [("shortNames", "short names"), ("categories", "categories")] {
        let list = strings(&names[key]);
        if !list.is_empty() {
            facts.push(format!("{label} {}", code_list(&list)));
        }
    }
    writeln!(out, "{}.", facts.join(", "))?;
    if let Some(d) = schema["description"].as_str() {
        writeln!(out)?;
        writeln!(out, "{}", paragraphs(d, "\n\n"))?;
    }
    writeln!(out)?;
    writeln!(
        out,
        "Every field below is also explained by `kubectl explain {}.<path>`. \
         Validation is enforced by the API server at admission; rules that \
         compare with `oldSelf` are checked on update only.",
        str_of(&names["singular"]).to_lowercase()
    )?;
    writeln!(out)?;
    writeln!(out, "## Contents")?;
    writeln!(out)?;
    writeln!(out, "- [Printer columns](#printer-columns)")?;
    for s in sections {
        writeln!(out, "- [{}](#{})", s.title, anchor(&s.title))?;
    }
    write_printer_columns(out, version_json)?;
    for s in sections {
        write_section(out, s)?;
    }
    Ok(())
}

fn write_printer_columns(out: &mut String, version: &Value) -> std::fmt::Result {
    writeln!(out)?;
    writeln!(out, "## Printer columns")?;
    writeln!(out)?;
    let columns = version["additionalPrinterColumns"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    if columns.is_empty() {
        return writeln!(out, "None.");
    }
    writeln!(
        out,
        "Columns of `kubectl get`, in this order; those with priority > 0 appear only with `-o wide`."
    )?;
    writeln!(out)?;
    writeln!(
        out,
        "| column | JSON path | type | priority | description |"
    )?;
    writeln!(out, "|---|---|---|---|---|")?;
    for c in columns {
        let priority = c["priority"].as_i64().unwrap_or(0);
        let description = c["description"].as_str().unwrap_or_default();
        writeln!(
            out,
            "| {} | {} | {} | {priority} | {} |",
            cell(&c["name"].as_str().unwrap_or_default().to_uppercase()),
            cell(&code(str_of(&c["jsonPath"]))),
            cell(str_of(&c["type"])),
            cell(&paragraphs(description, "<br><br>")),
        )?;
    }
    Ok(())
}

fn write_section(out: &mut String, s: &Section<'_>) -> std::fmt::Result {
    writeln!(out)?;
    writeln!(out, "## {}", s.title)?;
    writeln!(out)?;
    if let Some(d) = s.schema["description"].as_str() {
        writeln!(out, "{}", paragraphs(d, "\n\n"))?;
        writeln!(out)?;
    }
    let rules = rules_of(s.schema);
    if !rules.is_empty() {
        writeln!(out, "Rules on this object (CEL, checked at admission):")?;
        writeln!(out)?;
        writeln!(out, "| field | checked | message | rule |")?;
        writeln!(out, "|---|---|---|---|")?;
        for r in &rules {
            let field = match r.field_path {
                Some(fp) => format!("{}{}", s.prefix, fp.trim_start_matches('.')),
                None => s.prefix.trim_end_matches('.').to_string(),
            };
            let field = if field.is_empty() {
                s.title.clone()
            } else {
                field
            };
            writeln!(
                out,
                "| {} | {} | {} | {} |",
                cell(&code(&field)),
                r.when(),
                cell(&paragraphs(r.message, "<br><br>")),
                cell(&code(r.rule)),
            )?;
        }
        writeln!(out)?;
    }
    let props = properties(s.schema);
    if props.is_empty() {
        return writeln!(out, "No fields.");
    }
    let required = strings(&s.schema["required"]);
    writeln!(out, "| field | type | default | validation | description |")?;
    writeln!(out, "|---|---|---|---|---|")?;
    for (name, field) in props {
        let path = format!("{}{name}", s.prefix);
        let mut validation = Vec::new();
        if required.iter().any(|r| r == name) {
            validation.push("required".to_string());
        }
        validation.extend(constraints(field));
        // An object with its own section lists its CEL rules there.
        if nested_object(&path, field).is_none_or(|(_, sub)| !std::ptr::eq(sub, field)) {
            validation.extend(rules_of(field).iter().map(Rule::render));
        }
        let default = field
            .get("default")
            .map(|d| code(&d.to_string()))
            .unwrap_or_default();
        let description = field["description"].as_str().unwrap_or_default();
        writeln!(
            out,
            "| {} | {} | {} | {} | {} |",
            cell(&code(&path)),
            cell(&type_of(&path, field)),
            cell(&default),
            cell(&validation.join("<br>")),
            cell(&paragraphs(description, "<br><br>")),
        )?;
    }
    Ok(())
}

/// The type as a reader needs it: enum values, item and value types, formats,
/// and a link to the section of a nested object.
fn type_of(path: &str, schema: &Value) -> String {
    if let Some((sub_path, sub)) = nested_object(path, schema) {
        let link = format!("[object](#{})", anchor(&sub_path));
        return if std::ptr::eq(sub, schema) {
            link
        } else if sub_path.ends_with("[]") {
            format!("array of {link}")
        } else {
            format!("map of string to {link}")
        };
    }
    if schema["x-kubernetes-int-or-string"].as_bool() == Some(true) {
        return "integer or string".into();
    }
    let base = match schema["type"].as_str() {
        Some("array") => format!("array of {}", type_of(path, &schema["items"])),
        Some("object") if schema["additionalProperties"].is_object() => format!(
            "map of string to {}",
            type_of(path, &schema["additionalProperties"])
        ),
        Some(t) => match schema["format"].as_str() {
            Some(f) => format!("{t} ({f})"),
            None => t.to_string(),
        },
        None => "any".into(),
    };
    match schema["enum"].as_array() {
        Some(values) => {
            let values: Vec<String> = values.iter().map(enum_value).collect();
            format!("{base}, one of {}", values.join(", "))
        }
        None => base,
    }
}

fn enum_value(v: &Value) -> String {
    match v.as_str() {
        Some(s) => code(s),
        None => code(&v.to_string()),
    }
}

/// OpenAPI constraints of a field, including those on its items and map values.
fn constraints(schema: &Value) -> Vec<String> {
    let mut out = own_constraints(schema);
    for (key, label) in [
        ("items", "each item"),
        ("additionalProperties", "each value"),
    ] {
        let sub = &schema[key];
        if sub.is_object() && !has_properties(sub) {
            out.extend(
                own_constraints(sub)
                    .into_iter()
                    .chain(rules_of(sub).iter().map(Rule::render))
                    .map(|c| format!("{label}: {c}")),
            );
        }
    }
    if let Some(t) = schema["x-kubernetes-list-type"].as_str() {
        let keys = strings(&schema["x-kubernetes-list-map-keys"]);
        if keys.is_empty() {
            out.push(format!("list type `{t}`"));
        } else {
            out.push(format!("list type `{t}` keyed by {}", code_list(&keys)));
        }
    }
    out
}

fn own_constraints(schema: &Value) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(p) = schema["pattern"].as_str() {
        out.push(format!("pattern {}", code(p)));
    }
    for (key, label) in [
        ("minimum", "minimum"),
        ("maximum", "maximum"),
        ("minLength", "minLength"),
        ("maxLength", "maxLength"),
        ("minItems", "minItems"),
        ("maxItems", "maxItems"),
        ("minProperties", "minProperties"),
        ("maxProperties", "maxProperties"),
        ("multipleOf", "multipleOf"),
    ] {
        if let Some(n) = schema.get(key).and_then(number) {
            let exclusive = match key {
                "minimum" if schema["exclusiveMinimum"].as_bool() == Some(true) => " (exclusive)",
                "maximum" if schema["exclusiveMaximum"].as_bool() == Some(true) => " (exclusive)",
                _ => "",
            };
            out.push(format!("{label}: {n}{exclusive}"));
        }
    }
    if schema["uniqueItems"].as_bool() == Some(true) {
        out.push("items unique".into());
    }
    out
}

/// A number as written by a person: `35`, not `35.0`.
fn number(v: &Value) -> Option<String> {
    if let Some(i) = v.as_i64() {
        return Some(i.to_string());
    }
    let f = v.as_f64()?;
    if f.fract() == 0.0 && f.abs() < 1e15 {
        // Exact: an integral f64 below 2^53 converts without loss.
        return Some((f as i64).to_string());
    }
    Some(f.to_string())
}

/// One `x-kubernetes-validations` entry.
struct Rule<'a> {
    rule: &'a str,
    message: &'a str,
    field_path: Option<&'a str>,
}

impl Rule<'_> {
    /// Whether the rule compares with the stored object (a transition rule).
    fn on_update(&self) -> bool {
        self.rule.contains("oldSelf")
    }

    fn when(&self) -> &'static str {
        if self.on_update() {
            "on update"
        } else {
            "always"
        }
    }

    /// The rule inside a field's validation cell.
    fn render(&self) -> String {
        let kind = if self.rule.replace(' ', "") == "self==oldSelf" {
            "immutable"
        } else if self.on_update() {
            "on update"
        } else {
            "rule"
        };
        let message = if self.message.is_empty() {
            String::new()
        } else {
            format!(" {}", self.message)
        };
        format!("{kind}:{message} ({})", code(self.rule))
    }
}

fn rules_of(schema: &Value) -> Vec<Rule<'_>> {
    schema["x-kubernetes-validations"]
        .as_array()
        .map(|rules| {
            rules
                .iter()
                .map(|r| Rule {
                    rule: str_of(&r["rule"]),
                    message: r["message"]
                        .as_str()
                        .or_else(|| r["messageExpression"].as_str())
                        .unwrap_or_default(),
                    field_path: r["fieldPath"].as_str(),
                })
                .collect()
        })
        .unwrap_or_default()
}

fn str_of(v: &Value) -> &str {
    v.as_str().unwrap_or_default()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

fn code_list(items: &[String]) -> String {
    items.iter().map(|i| code(i)).collect::<Vec<_>>().join(", ")
}

/// A Markdown code span that survives backticks in `text`.
fn code(text: &str) -> String {
    let longest = text
        .split(|c| c != '`')
        .map(str::len)
        .max()
        .unwrap_or_default();
    if longest == 0 {
        return format!("`{text}`");
    }
    let fence = "`".repeat(longest + 1);
    format!("{fence} {text} {fence}")
}

/// Doc-comment text: lines of a paragraph joined, paragraphs separated by `sep`.
fn paragraphs(text: &str, sep: &str) -> String {
    text.split("\n\n")
        .map(|p| p.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join(sep)
}

/// A table cell: `|` escaped, no line breaks.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

/// The anchor GitHub gives a heading: lowercase, punctuation other than `-`
/// and `_` dropped, spaces to `-`.
fn anchor(heading: &str) -> String {
    heading
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A small CRD that has one of everything the renderer handles.
    fn widget_crd() -> Value {
        let spec = json!({
            "type": "object",
            "description": "What the widget\nshould be.\n\nSecond paragraph.",
            "x-kubernetes-validations": [{
                "rule": "!has(self.a) || self.b",
                "message": "a needs b",
                "fieldPath": ".a"
            }],
            "required": ["color"],
            "properties": {
                "color": {"type": "string", "enum": ["red", "green"], "description": "Paint."},
                "size": {"type": "integer", "format": "int32", "default": 3,
                         "minimum": 1.0, "maximum": 9.0,
                         "x-kubernetes-validations": [
                             {"rule": "self == oldSelf", "message": "size is immutable"}
                         ]},
                "labels": {"type": "object",
                           "additionalProperties": {"type": "string", "maxLength": 63},
                           "maxProperties": 5,
                           "x-kubernetes-validations": [
                               {"rule": "self.all(k, k.size() < 10)", "message": "short keys"}
                           ]},
                "ports": {"type": "array", "maxItems": 4,
                          "items": {"type": "integer", "format": "int32"}},
                "parts": {"type": "array",
                          "items": {"type": "object", "required": ["name"],
                                    "properties": {"name": {"type": "string",
                                                            "pattern": "^[a-z]+$"}}}},
                "nested": {"type": "object", "description": "Inner.",
                           "properties": {"deep": {"type": "boolean", "default": true}}}
            }
        });
        let schema = json!({
            "description": "A widget.",
            "type": "object",
            "required": ["spec"],
            "properties": {
                "spec": spec,
                "status": {"type": "object", "properties": {"ok": {"type": "boolean"}}}
            }
        });
        json!({
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": "widgets.example.dev"},
            "spec": {
                "group": "example.dev",
                "names": {"kind": "Widget", "plural": "widgets", "singular": "widget",
                          "shortNames": ["wdg"]},
                "scope": "Namespaced",
                "versions": [{
                    "name": "v1",
                    "served": true,
                    "storage": true,
                    "additionalPrinterColumns": [
                        {"name": "Color", "type": "string", "jsonPath": ".spec.color"},
                        {"name": "Size", "type": "integer", "jsonPath": ".spec.size",
                         "priority": 1, "description": "How | big"}
                    ],
                    "schema": {"openAPIV3Schema": schema}
                }]
            }
        })
    }

    fn rendered() -> String {
        render(&widget_crd()).expect("renders")
    }

    fn row<'a>(doc: &'a str, path: &str) -> &'a str {
        let start = format!("| `{path}` |");
        doc.lines()
            .find(|l| l.starts_with(&start))
            .unwrap_or_else(|| panic!("no row for {path} in\n{doc}"))
    }

    #[test]
    fn one_section_per_object_in_depth_first_name_order() {
        let doc = rendered();
        let headings: Vec<&str> = doc.lines().filter(|l| l.starts_with("## ")).collect();
        assert_eq!(
            headings,
            [
                "## Contents",
                "## Printer columns",
                "## Widget",
                "## spec",
                "## spec.nested",
                "## spec.parts[]",
                "## status",
            ]
        );
        assert!(doc.contains("- [spec.parts[]](#specparts)"), "{doc}");
    }

    #[test]
    fn enum_default_range_and_required_are_in_the_row() {
        let doc = rendered();
        assert_eq!(
            row(&doc, "spec.color"),
            "| `spec.color` | string, one of `red`, `green` |  | required | Paint. |"
        );
        assert_eq!(
            row(&doc, "spec.size"),
            "| `spec.size` | integer (int32) | `3` | minimum: 1<br>maximum: 9<br>immutable: size is immutable (`self == oldSelf`) |  |"
        );
        assert!(row(&doc, "spec").contains("| [object](#spec) |  | required |"));
    }

    #[test]
    fn nested_objects_link_to_their_section() {
        let doc = rendered();
        assert!(row(&doc, "spec.nested").contains("| [object](#specnested) |"));
        assert_eq!(
            row(&doc, "spec.nested.deep"),
            "| `spec.nested.deep` | boolean | `true` |  |  |"
        );
        assert!(
            doc.contains("## spec.nested\n\nInner.\n\n| field |"),
            "{doc}"
        );
    }

    #[test]
    fn arrays_and_maps_show_item_and_value_types() {
        let doc = rendered();
        assert_eq!(
            row(&doc, "spec.ports"),
            "| `spec.ports` | array of integer (int32) |  | maxItems: 4 |  |"
        );
        assert!(row(&doc, "spec.parts").contains("| array of [object](#specparts) |"));
        assert_eq!(
            row(&doc, "spec.parts[].name"),
            "| `spec.parts[].name` | string |  | required<br>pattern `^[a-z]+$` |  |"
        );
        assert_eq!(
            row(&doc, "spec.labels"),
            "| `spec.labels` | map of string to string |  | maxProperties: 5<br>each value: maxLength: 63<br>rule: short keys (`self.all(k, k.size() < 10)`) |  |"
        );
    }

    #[test]
    fn cel_rules_stay_with_the_object_that_declares_them_and_pipes_are_escaped() {
        let doc = rendered();
        let spec = doc.split("## spec\n").nth(1).expect("spec section");
        let spec = spec.split("\n## ").next().expect("section body");
        assert!(spec.starts_with("\nWhat the widget should be.\n\nSecond paragraph.\n"));
        assert!(
            spec.contains("| `spec.a` | always | a needs b | `!has(self.a) \\|\\| self.b` |"),
            "{spec}"
        );
        // Not repeated in the row of `spec` in the parent.
        assert!(!row(&doc, "spec").contains("a needs b"));
        assert!(doc.contains("| SIZE | `.spec.size` | integer | 1 | How \\| big |"));
    }

    #[test]
    fn rendering_is_deterministic_with_fields_in_name_order() {
        let doc = rendered();
        assert_eq!(render(&widget_crd()).expect("renders"), doc);
        let spec_rows: Vec<&str> = doc
            .lines()
            .filter_map(|l| l.strip_prefix("| `spec."))
            .filter_map(|l| l.split('`').next())
            .filter(|f| !f.contains('.') && !f.contains('['))
            .collect();
        assert_eq!(
            spec_rows,
            ["a", "color", "labels", "nested", "parts", "ports", "size"]
        );
    }

    #[test]
    fn a_crd_without_schema_is_an_error() {
        let mut crd = widget_crd();
        crd["spec"]["versions"][0]["schema"] = json!({});
        assert!(matches!(render(&crd), Err(ApiDocError::NoSchema(v)) if v == "v1"));
        crd["spec"]["versions"] = json!([]);
        assert!(matches!(render(&crd), Err(ApiDocError::NoVersion)));
    }

    #[test]
    fn code_spans_survive_backticks_and_numbers_read_naturally() {
        assert_eq!(code("a`b"), "`` a`b ``");
        assert_eq!(code("ab"), "`ab`");
        assert_eq!(number(&json!(35.0)).as_deref(), Some("35"));
        assert_eq!(number(&json!(0.5)).as_deref(), Some("0.5"));
    }

    #[test]
    fn the_redis_cache_reference_has_a_row_for_every_spec_and_status_field() {
        use kube::CustomResourceExt;
        let doc = reference().expect("renders");
        let crd = serde_json::to_value(crate::api::RedisCache::crd()).expect("JSON");
        let root = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
        for part in ["spec", "status"] {
            let fields = root["properties"][part]["properties"]
                .as_object()
                .expect("properties");
            assert!(fields.len() > 10, "{part}");
            for name in fields.keys() {
                row(&doc, &format!("{part}.{name}"));
            }
        }
        for path in [
            "spec.network.allowedCidrs",
            "spec.connectionSecret.extraKeys",
            "status.conditions[].type",
            "status.health.hitRatio",
        ] {
            row(&doc, path);
        }
        assert!(doc.contains("immutable: spec.port is immutable"));
    }
}
