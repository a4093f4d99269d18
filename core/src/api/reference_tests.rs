//! The README's reference cannot drift from the code: every annotation, event reason, condition type,
//! condition reason code and CRD field the code defines must appear in README.md's "Reference" section.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use kube::CustomResourceExt;

use super::{LBNodeAgent, ServiceGroup, annotations, conditions, events};
use crate::allocate::Reason;
use crate::announce::report::{REASON_ANNOUNCED, REASON_NOT_ANNOUNCED};

fn reference() -> String {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let start = readme.find("## Reference").expect("README.md has a \"## Reference\" section");
    let rest = &readme[start + 3..];
    rest[..rest.find("\n## ").unwrap_or(rest.len())].to_string()
}

fn missing<'a>(names: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
    let text = reference();
    names.into_iter().filter(|n| !text.contains(&format!("`{n}`"))).collect()
}

#[test]
fn every_annotation_event_and_condition_is_in_the_readme_reference() {
    let mut names: Vec<&str> = annotations::ALL.to_vec();
    names.extend(events::ALL);
    names.extend(conditions::ALL);
    names.extend(Reason::ALL.iter().map(|r| r.as_str()));
    names.extend([REASON_ANNOUNCED, REASON_NOT_ANNOUNCED]);
    assert_eq!(missing(names), Vec::<&str>::new(), "add them to README.md's Reference section");
}

/// Every property name in a CRD's `spec` schema, recursively.
fn spec_fields(crd: &serde_json::Value) -> Vec<String> {
    fn walk(v: &serde_json::Value, out: &mut Vec<String>) {
        if let Some(props) = v.get("properties").and_then(|p| p.as_object()) {
            for (k, child) in props {
                out.push(k.clone());
                walk(child, out);
            }
        }
        if let Some(items) = v.get("items") {
            walk(items, out);
        }
    }
    let mut out = Vec::new();
    let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
    walk(schema, &mut out);
    out.sort();
    out.dedup();
    out
}

#[test]
fn every_crd_field_is_in_the_readme_reference() {
    let mut fields = spec_fields(&serde_json::to_value(ServiceGroup::crd()).unwrap());
    fields.extend(spec_fields(&serde_json::to_value(LBNodeAgent::crd()).unwrap()));
    assert!(fields.contains(&"v4pools".to_string()), "{fields:?}");
    assert_eq!(
        missing(fields.iter().map(String::as_str)),
        Vec::<&str>::new(),
        "add them to README.md's Reference"
    );
}
