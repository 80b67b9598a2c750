//! The HTTP API routes `template.yaml` declares for the subscriptions
//! function are exactly the routes the function serves, and only the
//! console's are declared without the authorizer.

use std::collections::BTreeSet;

use serde_yaml::Value;
use subscriptions_api::routes::ROUTES;
use test_kit::stack::ids;

#[test]
fn the_template_declares_every_served_route_and_only_the_console_is_public() {
    let path = local_infra::cloudformation::template_path();
    let text = std::fs::read_to_string(&path).unwrap();
    let template: Value = serde_yaml::from_str(&text).unwrap();
    let events = template["Resources"][ids::API_FUNCTION]["Properties"]["Events"]
        .as_mapping()
        .expect("the API function has events");
    let mut declared = BTreeSet::new();
    for (name, event) in events {
        assert_eq!(event["Type"], "HttpApi", "{name:?}");
        let p = &event["Properties"];
        let public = p["Auth"]["Authorizer"].as_str() == Some("NONE");
        declared.insert((
            p["Method"].as_str().unwrap().to_ascii_uppercase(),
            p["Path"].as_str().unwrap().to_owned(),
            public,
        ));
    }
    let served: BTreeSet<(String, String, bool)> = ROUTES
        .iter()
        .map(|r| {
            (
                r.method.to_string(),
                r.path.to_owned(),
                r.operation.is_public(),
            )
        })
        .collect();
    assert_eq!(declared, served);
    let public: Vec<&str> = served
        .iter()
        .filter(|(_, _, public)| *public)
        .map(|(_, path, _)| path.as_str())
        .collect();
    assert_eq!(public, ["/console", "/console/{file}"]);
}
