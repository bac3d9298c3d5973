//! Answers checked against the contract documents the systems serve: the status is documented
//! for the operation, with the content type it came with, and the body is valid against the
//! documented schema (JSON Schema 2020-12, formats included).

#![allow(dead_code)]

use openmvs_http::openapi::{Component, document};
use serde_json::{Value, json};

/// One system's document, as JSON.
pub struct Contract {
    /// The document, with the demonstration's clock route.
    pub doc: Value,
}

impl Contract {
    /// The document of `component`.
    pub fn of(component: Component) -> Contract {
        let doc = serde_json::to_value(document(component, true)).expect("the document serialises");
        Contract { doc }
    }

    /// A validator of `schema`, a schema of the document (its `$ref`s resolved in the document).
    pub fn validator(&self, schema: &Value) -> jsonschema::Validator {
        let mut root = match schema {
            Value::Object(m) => m.clone(),
            Value::Bool(b) => return validator_of(&json!(b)),
            other => panic!("not a schema: {other}"),
        };
        root.insert("components".into(), self.doc["components"].clone());
        validator_of(&Value::Object(root))
    }

    /// Checks `instance` against `schema`, saying every way it fails.
    pub fn validate(&self, schema: &Value, instance: &Value) -> Result<(), String> {
        let v = self.validator(schema);
        let errors: Vec<String> =
            v.iter_errors(instance).map(|e| format!("{} at '{}'", e, e.instance_path())).collect();
        if errors.is_empty() { Ok(()) } else { Err(errors.join("; ")) }
    }

    /// The documented operation `method path`.
    pub fn operation(&self, method: &str, path: &str) -> &Value {
        let op = &self.doc["paths"][path][method.to_ascii_lowercase()];
        assert!(op.is_object(), "the document has no {method} {path}");
        op
    }

    /// Checks an answer to `method path` (the path as the document writes it): its status is
    /// documented, with this content type, and its body is valid against the documented schema.
    /// Returns the body as JSON (a string for a body that is not JSON).
    pub fn check(&self, method: &str, path: &str, status: u16, content_type: &str, body: &[u8]) -> Value {
        let op = self.operation(method, path);
        let response = &op["responses"][status.to_string()];
        assert!(
            response.is_object(),
            "{method} {path} answered {status}, which its document does not list: {}",
            String::from_utf8_lossy(body)
        );
        let media = content_type.split(';').next().unwrap_or("").trim();
        let content = response["content"].as_object().map(|c| {
            c.iter().find(|(k, _)| k.split(';').next().unwrap_or("").trim() == media).map(|(_, v)| v.clone())
        });
        let Some(Some(content)) = content else {
            panic!(
                "{method} {path} {status} came as '{content_type}', which its document does not list: {response}"
            )
        };
        let value = if media == "application/json" {
            serde_json::from_slice(body)
                .unwrap_or_else(|e| panic!("{method} {path} {status}: not JSON ({e})"))
        } else {
            Value::String(String::from_utf8_lossy(body).into_owned())
        };
        if let Some(schema) = content.get("schema")
            && let Err(why) = self.validate(schema, &value)
        {
            panic!("{method} {path} {status} breaks its documented schema: {why}\n{value:#}");
        }
        value
    }

    /// [`Contract::check`] for a reqwest response; returns the status and the body.
    pub async fn answer(&self, method: &str, path: &str, r: reqwest::Response) -> (u16, Value) {
        let status = r.status().as_u16();
        let content_type =
            r.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        assert!(r.headers().contains_key("x-request-id"), "{method} {path}: no x-request-id");
        let body = r.bytes().await.expect("the body");
        (status, self.check(method, path, status, &content_type, &body))
    }
}

fn validator_of(schema: &Value) -> jsonschema::Validator {
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .should_validate_formats(true)
        .build(schema)
        .unwrap_or_else(|e| panic!("not a valid JSON Schema 2020-12: {e}\n{schema:#}"))
}
