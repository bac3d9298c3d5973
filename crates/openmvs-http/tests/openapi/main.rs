//! The contract documents against the code: every public route of each system is in its OpenAPI
//! document and nothing else is (the drift test), every example the documents give is valid
//! against its schema, and every return code of the one table is listed under a response of its
//! own HTTP status. The answers of running systems are checked against the documents by the
//! `national_api` suite (`contract.rs`) and `obp_api.rs`.

use std::collections::{BTreeMap, BTreeSet};

use openmvs_core::return_code::{CodeKind, ReturnCode};
use openmvs_http::authz::{self, RouteRule};
use openmvs_http::openapi::{Component, codes_for, document, is_public};
use serde_json::Value;

#[path = "../support/contract.rs"]
mod contract;
use contract::Contract;

type Route = (String, String);

fn routes_of(table: &[RouteRule]) -> BTreeSet<Route> {
    table.iter().filter(|r| is_public(r.path)).map(|r| (r.method.to_string(), r.path.to_owned())).collect()
}

fn registered(routes: &[(axum::http::Method, &'static str)]) -> BTreeSet<Route> {
    routes.iter().filter(|(_, p)| is_public(p)).map(|(m, p)| (m.to_string(), (*p).to_owned())).collect()
}

fn documented(component: Component, clock: bool) -> BTreeSet<Route> {
    let doc = serde_json::to_value(document(component, clock)).unwrap();
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            out.insert((method.to_ascii_uppercase(), path.clone()));
        }
    }
    out
}

fn diff(what: &str, a: &BTreeSet<Route>, b: &BTreeSet<Route>) -> Vec<String> {
    a.difference(b).map(|(m, p)| format!("{m} {p}: {what}")).collect()
}

/// The drift test: what a system routes and what its document describes are the same set of
/// routes, with and without the demonstration's clock route.
#[test]
fn every_public_route_is_documented_and_every_documented_route_is_routed() {
    let clock_routes = registered(openmvs_http::admin::clock_routes().registered());
    assert_eq!(clock_routes, routes_of(authz::ADMIN));
    let systems = [
        (Component::National, registered(openmvs_http::national::national_routes().registered())),
        (Component::Hub, registered(openmvs_http::hub::hub_routes().registered())),
    ];
    for (component, routed) in systems {
        let table = routes_of(component.table());
        assert_eq!(routed, table, "{component:?}: the router and the authorization table differ");
        for clock in [false, true] {
            let mut routed = routed.clone();
            if clock {
                routed.extend(clock_routes.iter().cloned());
            }
            let documented = documented(component, clock);
            let mut drift = diff("routed but not in the document", &routed, &documented);
            drift.extend(diff("in the document but not routed", &documented, &routed));
            assert!(drift.is_empty(), "{component:?} (clock: {clock}):\n{}", drift.join("\n"));
        }
    }
}

#[test]
fn the_documents_leave_out_the_internal_and_the_soap_routes_and_serve_themselves() {
    for component in [Component::National, Component::Hub] {
        let doc = documented(component, true);
        assert!(doc.iter().all(|(_, p)| !p.starts_with("/internal/") && !p.starts_with("/WS_")), "{doc:?}");
        assert!(component.table().iter().any(|r| r.path.starts_with("/internal/")), "internal routes exist");
        if component == Component::National {
            assert!(component.table().iter().any(|r| r.path.starts_with("/WS_")), "SOAP routes exist");
        }
        for path in
            ["/v1/openapi.json", "/docs", "/v1/return-codes", "/health/live", "/health/ready", "/metrics"]
        {
            assert!(doc.contains(&("GET".to_owned(), path.to_owned())), "{component:?}: {path}");
        }
        let json = serde_json::to_value(document(component, false)).unwrap();
        assert_eq!(json["openapi"], "3.1.0");
        assert!(json["paths"].get("/admin/v1/clock").is_none(), "the clock route only with --fake-clock");
    }
}

/// Every example of a document, with the schema it illustrates and where it is.
fn examples(doc: &Value) -> Vec<(String, Value, Value)> {
    let mut out = Vec::new();
    for (name, schema) in doc["components"]["schemas"].as_object().unwrap() {
        schema_examples(&format!("components/schemas/{name}"), schema, &mut out);
    }
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let at = format!("{} {path}", method.to_ascii_uppercase());
            for p in op["parameters"].as_array().into_iter().flatten() {
                let here = format!("{at} parameter {}", p["name"]);
                schema_examples(&here, &p["schema"], &mut out);
                if let Some(x) = p.get("example") {
                    out.push((here, p["schema"].clone(), x.clone()));
                }
            }
            for (media, content) in op["requestBody"]["content"].as_object().into_iter().flatten() {
                media_examples(&format!("{at} request {media}"), content, &mut out);
            }
            for (status, r) in op["responses"].as_object().unwrap() {
                for (media, content) in r["content"].as_object().into_iter().flatten() {
                    media_examples(&format!("{at} {status} {media}"), content, &mut out);
                }
                for (name, h) in r["headers"].as_object().into_iter().flatten() {
                    schema_examples(&format!("{at} {status} header {name}"), &h["schema"], &mut out);
                }
            }
        }
    }
    out
}

fn media_examples(at: &str, content: &Value, out: &mut Vec<(String, Value, Value)>) {
    let schema = content.get("schema").cloned().unwrap_or(Value::Bool(true));
    schema_examples(at, &schema, out);
    if let Some(x) = content.get("example") {
        out.push((format!("{at} example"), schema.clone(), x.clone()));
    }
    for (name, x) in content["examples"].as_object().into_iter().flatten() {
        out.push((format!("{at} example {name}"), schema.clone(), x["value"].clone()));
    }
}

/// The examples of a schema and of every schema inside it.
fn schema_examples(at: &str, schema: &Value, out: &mut Vec<(String, Value, Value)>) {
    let Some(obj) = schema.as_object() else { return };
    if let Some(x) = obj.get("example") {
        out.push((format!("{at} example"), schema.clone(), x.clone()));
    }
    for (i, x) in obj.get("examples").and_then(Value::as_array).into_iter().flatten().enumerate() {
        out.push((format!("{at} examples[{i}]"), schema.clone(), x.clone()));
    }
    for (name, p) in obj.get("properties").and_then(Value::as_object).into_iter().flatten() {
        schema_examples(&format!("{at}.{name}"), p, out);
    }
    for key in ["items", "additionalProperties"] {
        if let Some(s) = obj.get(key) {
            schema_examples(&format!("{at}.{key}"), s, out);
        }
    }
    for key in ["oneOf", "anyOf", "allOf"] {
        for (i, s) in obj.get(key).and_then(Value::as_array).into_iter().flatten().enumerate() {
            schema_examples(&format!("{at}.{key}[{i}]"), s, out);
        }
    }
}

#[test]
fn every_documented_example_is_valid_against_its_schema() {
    for component in [Component::National, Component::Hub] {
        let contract = Contract::of(component);
        let examples = examples(&contract.doc);
        let mut failures = Vec::new();
        for (at, schema, example) in &examples {
            if let Err(why) = contract.validate(schema, example) {
                failures.push(format!("{at}: {why}\n  {example}"));
            }
        }
        assert!(failures.is_empty(), "{component:?}:\n{}", failures.join("\n"));
        // Every request and response body of the contract has at least one example.
        let bodies = examples.iter().filter(|(at, _, _)| at.starts_with("components/schemas/")).count();
        assert!(bodies >= 40, "{component:?}: only {bodies} schema examples");
    }
}

#[test]
fn every_schema_the_documents_name_is_a_valid_json_schema() {
    for component in [Component::National, Component::Hub] {
        let contract = Contract::of(component);
        for (name, schema) in contract.doc["components"]["schemas"].as_object().unwrap() {
            // Building the validator compiles the schema and every reference it makes.
            let _ = contract.validator(schema);
            assert!(schema.is_object(), "{name}");
        }
    }
}

/// Every `$ref` under `node`, with where it is.
fn refs<'a>(at: String, node: &'a Value, out: &mut Vec<(String, &'a str)>) {
    match node {
        Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("$ref", Value::String(r)) => out.push((at.clone(), r)),
                    _ => refs(format!("{at}/{k}"), v, out),
                }
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                refs(format!("{at}/{i}"), v, out);
            }
        }
        _ => {}
    }
}

#[test]
fn every_reference_of_a_document_resolves() {
    for component in [Component::National, Component::Hub] {
        let doc = serde_json::to_value(document(component, true)).unwrap();
        let mut found = Vec::new();
        refs(String::new(), &doc, &mut found);
        assert!(found.len() > 50, "{component:?}: {} references", found.len());
        for (at, r) in found {
            let target = r.strip_prefix('#').map(|p| doc.pointer(p));
            assert!(matches!(target, Some(Some(_))), "{component:?} {at}: {r} resolves to nothing");
        }
    }
}

#[test]
fn an_example_that_breaks_its_schema_is_found() {
    // The check above cannot pass by accident: a bad product code, a pattern the schema states,
    // is refused by the same validation.
    let contract = Contract::of(Component::National);
    let schema = serde_json::json!({"$ref": "#/components/schemas/PackView"});
    let good = serde_json::json!({"scheme": "GTIN", "product_code": "09501101530003", "serial": "S1", "batch": "B1",
                                  "expiry": "271231", "state": "ACTIVE", "reasons": [], "dispensable": true});
    assert_eq!(contract.validate(&schema, &good), Ok(()));
    for (field, bad) in [("product_code", "0950110153000X"), ("expiry", "271331"), ("state", "active")] {
        let mut v = good.clone();
        v[field] = Value::String(bad.into());
        assert!(contract.validate(&schema, &v).is_err(), "{field} = {bad} passed");
    }
}

/// Every `x-return-codes` list of a document: (method path, status, code).
fn listed_codes(doc: &Value) -> Vec<(String, u16, String)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            for (status, r) in op["responses"].as_object().unwrap() {
                for code in r["x-return-codes"].as_array().into_iter().flatten() {
                    let code = code.as_str().unwrap().to_owned();
                    let described = r["description"].as_str().unwrap_or("").contains(&format!("`{code}`"));
                    assert!(described, "{method} {path} {status}: {code} is not in the description");
                    out.push((
                        format!("{} {path}", method.to_ascii_uppercase()),
                        status.parse().unwrap(),
                        code,
                    ));
                }
            }
        }
    }
    out
}

#[test]
fn every_return_code_is_listed_under_a_response_of_its_own_http_status() {
    let mut seen: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for component in [Component::National, Component::Hub] {
        let doc = serde_json::to_value(document(component, true)).unwrap();
        for (op, status, code) in listed_codes(&doc) {
            let c = ReturnCode::parse(&code).unwrap_or_else(|| panic!("{op}: {code} is not in the table"));
            assert_eq!(c.http_status(), status, "{op}: {code} is listed under {status}");
            seen.entry(c.as_str()).or_default().push(format!("{component:?} {op} {status}"));
        }
    }
    // The codes a pharmacy's offline agent answers in place of the national system are the
    // agent's own, on its own routes: neither system's document lists them.
    let (agent, answered): (Vec<ReturnCode>, Vec<ReturnCode>) =
        ReturnCode::ALL.iter().partition(|c| c.info().kind == CodeKind::Agent);
    let missing: Vec<&str> = answered.iter().map(|c| c.as_str()).filter(|c| !seen.contains_key(c)).collect();
    assert!(missing.is_empty(), "return codes listed under no response: {missing:?}");
    assert!(agent.iter().all(|c| !seen.contains_key(c.as_str())), "an agent's code in a document: {agent:?}");
    // The contract's own examples of where codes occur.
    for (code, op) in [
        ("NMVS_NC_PC_02", "National POST /v1/packs/{operation} 200"),
        ("NMVS_TE_BLK_01", "National GET /v1/bulk/{bulk_id} 200"),
        ("NMVS_TE_TX_01", "National POST /v1/packs/{operation} 409"),
        ("NMVS_FI_SE_CLI_02", "National POST /v1/packs/{operation} 429"),
        ("A16", "Hub PUT /v1/products/{product_code} 422"),
        ("HUB_DATA_CONFLICT", "Hub PUT /v1/products/{product_code}/batches/{batch} 409"),
        ("NMVS_FE_AU_04", "Hub GET /v1/uploads/{upload_id} 403"),
    ] {
        assert!(seen[code].iter().any(|o| o == op), "{code} is not listed under {op}: {:?}", seen[code]);
    }
}

#[test]
fn codes_are_narrowed_to_what_a_route_does() {
    let get = axum::http::Method::GET;
    let post = axum::http::Method::POST;
    // Serial guessing contains a client only on the routes that name packs.
    let alerts = codes_for(Component::National, "ErrorBody", &get, "/v1/alerts", 429);
    assert_eq!(alerts, [ReturnCode::RateLimited]);
    let packs = codes_for(Component::National, "ErrorBody", &post, "/v1/packs/{operation}", 429);
    assert_eq!(packs, [ReturnCode::RateLimited, ReturnCode::ClientSuspended]);
    // A single-pack answer never says a serial repeats within a bulk request.
    let single = codes_for(Component::National, "PackResponse", &post, "/v1/packs/{operation}", 200);
    assert!(!single.contains(&ReturnCode::BulkDuplicateSerial) && single.contains(&ReturnCode::Success));
    // The hub answers no transaction-id conflict, the national system no hub refusal.
    let hub =
        codes_for(Component::Hub, "HubErrorBody", &post, "/v1/products/{product_code}/batches/{batch}", 409);
    assert_eq!(hub, [ReturnCode::HubDataConflict, ReturnCode::HubProductWithdrawn]);
    let batch = "/v1/products/{product_code}/batches/{batch}";
    assert_eq!(
        codes_for(Component::Hub, "HubErrorBody", &axum::http::Method::PUT, batch, 422),
        [ReturnCode::MasterDataInvalid]
    );
    let product = codes_for(
        Component::Hub,
        "HubErrorBody",
        &axum::http::Method::PUT,
        "/v1/products/{product_code}",
        422,
    );
    assert_eq!(product, [ReturnCode::MasterDataMissing, ReturnCode::MasterDataInvalid]);
    let national = codes_for(Component::National, "ErrorBody", &post, "/v1/bulk", 409);
    assert_eq!(national, [ReturnCode::TransactionIdReused]);
}

#[test]
fn every_operation_says_how_to_authenticate_from_the_authorization_table() {
    for component in [Component::National, Component::Hub] {
        let doc = serde_json::to_value(document(component, true)).unwrap();
        for r in component.table().iter().chain(authz::ADMIN).filter(|r| is_public(r.path)) {
            let op = &doc["paths"][r.path][r.method.as_str().to_ascii_lowercase()];
            let security = op["security"].as_array().map(|s| s.len()).unwrap_or(0);
            let public = matches!(r.caller, authz::Caller::Anyone);
            assert_eq!(security == 0, public, "{component:?} {} {}: {}", r.method, r.path, op["security"]);
            if !public {
                assert!(
                    op["responses"]
                        .get(if matches!(r.caller, authz::Caller::ObpCertificate) { "403" } else { "401" })
                        .is_some()
                );
            }
        }
        let schemes = doc["components"]["securitySchemes"].as_object().unwrap();
        match component {
            Component::National => assert_eq!(
                schemes["clientCredentials"]["flows"]["clientCredentials"]["tokenUrl"],
                "/oauth/token"
            ),
            Component::Hub => assert_eq!(schemes["obpCertificate"]["type"], "mutualTLS"),
        }
    }
}

#[test]
fn the_page_for_people_shows_every_operation_its_codes_and_needs_nothing_from_outside() {
    for component in [Component::National, Component::Hub] {
        let doc = document(component, false);
        let json = doc.to_pretty_json().unwrap();
        let html = openmvs_http::docs::render(&json);
        for (method, path) in documented(component, false) {
            assert!(
                html.contains(&format!("{method}</span> <code>{path}</code>")),
                "{component:?}: {method} {path}"
            );
        }
        for code in ["NMVS_FE_AU_04", "NMVS_TE_XM_02"] {
            assert!(html.contains(&format!("<code>{code}</code>")), "{component:?}: {code}");
        }
        assert!(
            !html.contains("<script") && !html.contains("http://") && !html.contains("src="),
            "self-contained"
        );
        assert!(html.contains("Example"), "examples are shown");
    }
}
