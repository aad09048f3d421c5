//! `docs/api-reference.md` is rendered from the CRD and must match it.
//!
//! After changing the API types (and regenerating `crds/`), rewrite it with:
//!
//! ```sh
//! UPDATE_API_REFERENCE=1 cargo test --test api_reference
//! ```

use std::path::Path;

use redis_cache_operator::apidoc;

const FILE: &str = "docs/api-reference.md";

#[test]
fn api_reference_matches_the_crd() {
    let rendered = apidoc::reference().expect("the CRD renders");
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(FILE);
    if std::env::var_os("UPDATE_API_REFERENCE").is_some_and(|v| !v.is_empty() && v != "0") {
        std::fs::write(&path, &rendered).expect("write docs/api-reference.md");
        eprintln!("rewrote {FILE}");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    if committed != rendered {
        let first_difference = committed
            .lines()
            .zip(rendered.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| committed.lines().count().min(rendered.lines().count()));
        panic!(
            "{FILE} is out of date with the CRD (first difference at line {}).\n\
             Regenerate it with:\n\n    {}\n\nand commit the result.",
            first_difference + 1,
            apidoc::UPDATE_COMMAND
        );
    }
}
