//! `GET /docs`: the contract document rendered for people, as one plain HTML page made on the
//! server from the same JSON `GET /v1/openapi.json` serves. It needs nothing from outside (no
//! script, no font, no CDN), so it reads the same offline: operations grouped by tag, with their
//! parameters, request and response bodies, the schemas and examples of each, the return codes
//! each response can carry, and how to authenticate.
//!
//! The document is read in its own order (the order the code declares operations and fields in),
//! which `serde_json::Value` would not keep, hence the small ordered tree [`Node`].

use std::fmt::Write as _;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// A JSON value that keeps its objects' keys in document order.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    /// `null`.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// A number, as written.
    Number(serde_json::Number),
    /// A string.
    String(String),
    /// An array.
    Array(Vec<Node>),
    /// An object, its members in document order.
    Object(Vec<(String, Node)>),
}

impl Node {
    /// The member `key` of an object.
    pub fn get(&self, key: &str) -> Option<&Node> {
        match self {
            Node::Object(members) => members.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The members of an object (none for anything else).
    pub fn members(&self) -> &[(String, Node)] {
        match self {
            Node::Object(m) => m,
            _ => &[],
        }
    }

    /// The items of an array (none for anything else).
    pub fn items(&self) -> &[Node] {
        match self {
            Node::Array(a) => a,
            _ => &[],
        }
    }

    /// The string, if this is one.
    pub fn str(&self) -> Option<&str> {
        match self {
            Node::String(s) => Some(s),
            _ => None,
        }
    }

    fn str_of(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(Node::str)
    }

    /// The value as compact JSON text, for constraints such as `minimum`.
    fn compact(&self) -> String {
        serde_json::to_string(&self.to_value()).unwrap_or_default()
    }

    /// The value as pretty-printed JSON, keys in document order.
    fn pretty(&self, indent: usize, out: &mut String) {
        let pad = |n: usize| "  ".repeat(n);
        match self {
            Node::Array(items) if !items.is_empty() => {
                out.push_str("[\n");
                for (i, item) in items.iter().enumerate() {
                    out.push_str(&pad(indent + 1));
                    item.pretty(indent + 1, out);
                    out.push_str(if i + 1 < items.len() { ",\n" } else { "\n" });
                }
                out.push_str(&pad(indent));
                out.push(']');
            }
            Node::Object(members) if !members.is_empty() => {
                out.push_str("{\n");
                for (i, (k, v)) in members.iter().enumerate() {
                    let _ = write!(out, "{}{}: ", pad(indent + 1), serde_json::Value::String(k.clone()));
                    v.pretty(indent + 1, out);
                    out.push_str(if i + 1 < members.len() { ",\n" } else { "\n" });
                }
                out.push_str(&pad(indent));
                out.push('}');
            }
            other => out.push_str(&other.compact()),
        }
    }

    /// The same value as a `serde_json::Value` (keys sorted).
    pub fn to_value(&self) -> serde_json::Value {
        match self {
            Node::Null => serde_json::Value::Null,
            Node::Bool(b) => serde_json::Value::Bool(*b),
            Node::Number(n) => serde_json::Value::Number(n.clone()),
            Node::String(s) => serde_json::Value::String(s.clone()),
            Node::Array(a) => serde_json::Value::Array(a.iter().map(Node::to_value).collect()),
            Node::Object(m) => {
                serde_json::Value::Object(m.iter().map(|(k, v)| (k.clone(), v.to_value())).collect())
            }
        }
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Node, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Node;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Node, E> {
                Ok(Node::Null)
            }
            fn visit_bool<E: de::Error>(self, b: bool) -> Result<Node, E> {
                Ok(Node::Bool(b))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Node, E> {
                Ok(Node::Number(n.into()))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Node, E> {
                Ok(Node::Number(n.into()))
            }
            fn visit_f64<E: de::Error>(self, n: f64) -> Result<Node, E> {
                Ok(serde_json::Number::from_f64(n).map_or(Node::Null, Node::Number))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Node, E> {
                Ok(Node::String(s.to_owned()))
            }
            fn visit_string<E: de::Error>(self, s: String) -> Result<Node, E> {
                Ok(Node::String(s))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(Node::Array(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
                let mut members = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, Node>()? {
                    members.push((k, v));
                }
                Ok(Node::Object(members))
            }
        }
        d.deserialize_any(V)
    }
}

/// Escapes text for HTML.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A description's text as HTML: paragraphs at blank lines, `code` in backticks.
fn prose(s: &str) -> String {
    let mut out = String::new();
    for para in s.split("\n\n").map(str::trim).filter(|p| !p.is_empty()) {
        out.push_str("<p>");
        for (i, part) in para.split('`').enumerate() {
            if i % 2 == 1 {
                let _ = write!(out, "<code>{}</code>", esc(part));
            } else {
                out.push_str(&esc(part));
            }
        }
        out.push_str("</p>");
    }
    out
}

/// An id for an anchor, from any text.
fn anchor(prefix: &str, s: &str) -> String {
    let id: String = s.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
    format!("{prefix}-{id}")
}

/// The type of a schema, in a few words, with a link for a named one.
fn type_of(schema: &Node) -> String {
    if let Some(r) = schema.str_of("$ref") {
        let name = r.rsplit('/').next().unwrap_or(r);
        return format!("<a href=\"#{}\">{}</a>", anchor("schema", name), esc(name));
    }
    for (key, joiner) in [("oneOf", " or "), ("anyOf", " or "), ("allOf", " and ")] {
        if let Some(Node::Array(alts)) = schema.get(key) {
            return alts.iter().map(type_of).collect::<Vec<_>>().join(joiner);
        }
    }
    let types: Vec<&str> = match schema.get("type") {
        Some(Node::String(t)) => vec![t.as_str()],
        Some(Node::Array(ts)) => ts.iter().filter_map(Node::str).collect(),
        _ => vec![],
    };
    let mut words: Vec<String> = types
        .iter()
        .map(|t| match *t {
            "array" => {
                let items = schema.get("items").map_or_else(|| "anything".to_owned(), type_of);
                format!("array of {items}")
            }
            "object" => match schema.get("additionalProperties") {
                Some(v @ Node::Object(_)) => format!("map of {}", type_of(v)),
                _ => "object".to_owned(),
            },
            t => esc(t),
        })
        .collect();
    if words.is_empty() {
        words.push("any".to_owned());
    }
    if let Some(f) = schema.str_of("format") {
        words[0] = format!("{} ({})", words[0], esc(f));
    }
    words.join(" or ")
}

/// The constraints a schema puts on a value, as a short list.
fn constraints(schema: &Node) -> String {
    let mut parts = Vec::new();
    if let Some(Node::Array(values)) = schema.get("enum") {
        let vs: Vec<String> = values.iter().map(|v| format!("<code>{}</code>", esc(&v.compact()))).collect();
        parts.push(format!("one of {}", vs.join(", ")));
    }
    for (key, word) in [
        ("minLength", "min length"),
        ("maxLength", "max length"),
        ("minimum", "minimum"),
        ("maximum", "maximum"),
        ("minItems", "min items"),
        ("maxItems", "max items"),
    ] {
        if let Some(v) = schema.get(key) {
            parts.push(format!("{word} {}", esc(&v.compact())));
        }
    }
    if let Some(p) = schema.str_of("pattern") {
        parts.push(format!("pattern <code>{}</code>", esc(p)));
    }
    if schema.get("additionalProperties") == Some(&Node::Bool(false)) {
        parts.push("no other fields".to_owned());
    }
    parts.join("; ")
}

/// Every example a schema or a media type gives.
fn examples_of(node: &Node) -> Vec<&Node> {
    let mut out: Vec<&Node> = node.get("example").into_iter().collect();
    match node.get("examples") {
        Some(Node::Array(xs)) => out.extend(xs.iter()),
        Some(Node::Object(named)) => out.extend(named.iter().filter_map(|(_, x)| x.get("value"))),
        _ => {}
    }
    out
}

fn example_blocks(out: &mut String, examples: &[&Node]) {
    for x in examples {
        let mut text = String::new();
        x.pretty(0, &mut text);
        let _ = write!(out, "<details><summary>Example</summary><pre>{}</pre></details>", esc(&text));
    }
}

/// The content of a request or response body: each media type with its schema and examples.
fn content(out: &mut String, content: &Node) {
    for (media, body) in content.members() {
        let schema = body.get("schema");
        let _ = write!(
            out,
            "<p class=media><code>{}</code>{}</p>",
            esc(media),
            schema.map_or(String::new(), |s| format!(": {}", type_of(s)))
        );
        let mut examples = examples_of(body);
        if examples.is_empty()
            && let Some(s) = schema
            && s.get("$ref").is_none()
        {
            examples = examples_of(s);
        }
        example_blocks(out, &examples);
    }
}

fn operation(out: &mut String, method: &str, path: &str, op: &Node) {
    let _ = write!(
        out,
        "<article id=\"{}\"><h3><span class=\"method {m}\">{M}</span> <code>{}</code></h3>",
        anchor("op", &format!("{method}-{path}")),
        esc(path),
        m = esc(method),
        M = esc(&method.to_ascii_uppercase()),
    );
    if let Some(s) = op.str_of("summary") {
        out.push_str(&prose(s));
    }
    if let Some(d) = op.str_of("description") {
        out.push_str(&prose(d));
    }
    match op.get("security").map(Node::items) {
        Some(reqs) if !reqs.is_empty() => {
            let names: Vec<String> = reqs
                .iter()
                .flat_map(|r| r.members().iter().map(|(n, _)| format!("<a href=\"#auth\">{}</a>", esc(n))))
                .collect();
            let _ = write!(out, "<p class=auth>Authentication: {}</p>", names.join(", "));
        }
        _ => out.push_str("<p class=auth>Public: no credentials.</p>"),
    }
    let params = op.get("parameters").map(Node::items).unwrap_or_default();
    if !params.is_empty() {
        out.push_str("<h4>Parameters</h4><table><tr><th>name</th><th>in</th><th>type</th><th>rules</th><th>description</th></tr>");
        for p in params {
            let schema = p.get("schema").cloned().unwrap_or(Node::Null);
            let required = p.get("required") == Some(&Node::Bool(true));
            let _ = write!(
                out,
                "<tr><td><code>{}</code>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(p.str_of("name").unwrap_or("")),
                if required { " <em>required</em>" } else { "" },
                esc(p.str_of("in").unwrap_or("")),
                type_of(&schema),
                constraints(&schema),
                prose(p.str_of("description").unwrap_or("")),
            );
        }
        out.push_str("</table>");
    }
    if let Some(body) = op.get("requestBody") {
        out.push_str("<h4>Request body</h4>");
        if let Some(d) = body.str_of("description") {
            out.push_str(&prose(d));
        }
        content(out, body.get("content").unwrap_or(&Node::Null));
    }
    out.push_str("<h4>Responses</h4>");
    for (status, response) in op.get("responses").map(Node::members).unwrap_or_default() {
        let class = match status.chars().next() {
            Some('2') => "ok",
            Some('4') => "client",
            _ => "server",
        };
        let _ =
            write!(out, "<div class=response><p><span class=\"status {class}\">{}</span></p>", esc(status));
        let description = response.str_of("description").unwrap_or("");
        // The codes are listed once, linked to their meaning, not again in the description.
        let description = match response.get("x-return-codes") {
            Some(_) => description.split("\n\nReturn codes: ").next().unwrap_or(description),
            None => description,
        };
        out.push_str(&prose(description));
        if let Some(Node::Array(codes)) = response.get("x-return-codes") {
            let links: Vec<String> = codes
                .iter()
                .filter_map(Node::str)
                .map(|c| format!("<a href=\"#{}\"><code>{}</code></a>", anchor("code", c), esc(c)))
                .collect();
            let _ = write!(out, "<p class=codes>Return codes: {}</p>", links.join(" "));
        }
        let headers: Vec<String> = response
            .get("headers")
            .map(Node::members)
            .unwrap_or_default()
            .iter()
            .map(|(name, _)| format!("<code>{}</code>", esc(name)))
            .collect();
        if !headers.is_empty() {
            let _ = write!(out, "<p class=headers>Headers: {}</p>", headers.join(", "));
        }
        content(out, response.get("content").unwrap_or(&Node::Null));
        out.push_str("</div>");
    }
    out.push_str("</article>");
}

fn schema_section(out: &mut String, name: &str, schema: &Node) {
    let _ = write!(out, "<article id=\"{}\"><h3>{}</h3>", anchor("schema", name), esc(name));
    if let Some(d) = schema.str_of("description") {
        out.push_str(&prose(d));
    }
    let props = schema.get("properties").map(Node::members).unwrap_or_default();
    if props.is_empty() {
        let _ = write!(out, "<p>{}", type_of(schema));
        let c = constraints(schema);
        if !c.is_empty() {
            let _ = write!(out, "; {c}");
        }
        out.push_str("</p>");
    }
    for part in schema.get("allOf").map(Node::items).unwrap_or_default() {
        if part.get("$ref").is_some() {
            let _ = write!(out, "<p>Every field of {}, and:</p>", type_of(part));
        }
        property_table(out, part);
    }
    property_table(out, schema);
    example_blocks(out, &examples_of(schema));
    out.push_str("</article>");
}

fn property_table(out: &mut String, schema: &Node) {
    let props = schema.get("properties").map(Node::members).unwrap_or_default();
    if props.is_empty() {
        return;
    }
    let required: Vec<&str> =
        schema.get("required").map(Node::items).unwrap_or_default().iter().filter_map(Node::str).collect();
    out.push_str("<table><tr><th>field</th><th>type</th><th>rules</th><th>description</th></tr>");
    for (name, p) in props {
        let _ = write!(
            out,
            "<tr><td><code>{}</code>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(name),
            if required.contains(&name.as_str()) { " <em>required</em>" } else { "" },
            type_of(p),
            constraints(p),
            prose(p.str_of("description").unwrap_or("")),
        );
    }
    out.push_str("</table>");
    if schema.get("additionalProperties") == Some(&Node::Bool(false)) {
        out.push_str("<p class=note>Other fields are refused.</p>");
    }
}

const STYLE: &str = "body{font:15px/1.5 system-ui,sans-serif;margin:0;color:#1d2430;background:#fafbfc}\
main{max-width:70rem;margin:0 auto;padding:1rem 2rem}header{background:#16324f;color:#fff;padding:1.5rem 2rem}\
header a{color:#cfe3ff}h1{margin:0 0 .3rem}h2{border-bottom:2px solid #d6dde6;padding-bottom:.2rem;margin-top:2.5rem}\
article{background:#fff;border:1px solid #d6dde6;border-radius:6px;padding:.6rem 1.2rem;margin:1rem 0}\
h3{font-size:1.05rem}h4{margin:.8rem 0 .3rem}code{font:13px ui-monospace,monospace;background:#eef2f6;padding:0 .25rem;border-radius:3px}\
pre{background:#0f1b2a;color:#e6edf3;padding:.6rem;overflow-x:auto;font-size:12.5px;border-radius:4px}\
table{border-collapse:collapse;width:100%;margin:.3rem 0}td,th{border:1px solid #d6dde6;padding:.25rem .45rem;text-align:left;vertical-align:top}\
th{background:#f0f3f7}td p{margin:0}.method{display:inline-block;min-width:3.6rem;text-align:center;color:#fff;border-radius:3px;padding:0 .3rem;font-size:.85rem}\
.get{background:#1f7a4d}.post{background:#1d5fa8}.put{background:#8a5a00}.delete{background:#a8321d}.patch{background:#6b3fa0}\
.status{font-weight:700;padding:0 .4rem;border-radius:3px}.ok{background:#dff3e6}.client{background:#fdebd3}.server{background:#f9d9d6}\
.response{border-left:3px solid #d6dde6;padding-left:.8rem;margin:.5rem 0}.codes a{margin-right:.3rem}.auth,.media,.headers,.note{color:#4a5565}\
nav ul{columns:2}summary{cursor:pointer;color:#1d5fa8}";

/// The page of a document given as the JSON `GET /v1/openapi.json` serves.
pub fn render(doc_json: &str) -> String {
    let doc: Node = serde_json::from_str(doc_json).unwrap_or(Node::Null);
    let info = doc.get("info").cloned().unwrap_or(Node::Null);
    let title = info.str_of("title").unwrap_or("API");
    let mut out = String::new();
    let _ = write!(
        out,
        "<!doctype html><html lang=en><head><meta charset=utf-8><meta name=viewport content=\"width=device-width\">\
         <title>{t}</title><style>{STYLE}</style></head><body><header><h1>{t}</h1><p>Version {v} · OpenAPI {o} · \
         <a href=\"/v1/openapi.json\">/v1/openapi.json</a></p></header><main>",
        t = esc(title),
        v = esc(info.str_of("version").unwrap_or("")),
        o = esc(doc.str_of("openapi").unwrap_or("")),
    );
    out.push_str(&prose(info.str_of("description").unwrap_or("")));

    // Operations by tag, in the document's order.
    let mut ops: Vec<(&str, &str, &Node)> = Vec::new();
    for (path, item) in doc.get("paths").map(Node::members).unwrap_or_default() {
        for (method, op) in item.members() {
            if matches!(method.as_str(), "get" | "put" | "post" | "delete" | "patch") {
                ops.push((method, path, op));
            }
        }
    }
    let tag_of = |op: &Node| {
        op.get("tags").and_then(|t| t.items().first()).and_then(Node::str).unwrap_or("other").to_owned()
    };
    let tags = doc.get("tags").map(Node::items).unwrap_or_default();
    out.push_str("<nav><h2>Contents</h2><ul>");
    for tag in tags {
        let name = tag.str_of("name").unwrap_or("");
        let _ = write!(out, "<li><a href=\"#{}\">{}</a><ul>", anchor("tag", name), esc(name));
        for (method, path, _) in ops.iter().filter(|(_, _, op)| tag_of(op) == name) {
            let _ = write!(
                out,
                "<li><a href=\"#{}\"><code>{} {}</code></a></li>",
                anchor("op", &format!("{method}-{path}")),
                esc(&method.to_ascii_uppercase()),
                esc(path)
            );
        }
        out.push_str("</ul></li>");
    }
    out.push_str("<li><a href=\"#auth\">Authentication</a></li><li><a href=\"#schemas\">Schemas</a></li>");
    out.push_str("<li><a href=\"#codes\">Return codes</a></li></ul></nav>");

    let schemes =
        doc.get("components").and_then(|c| c.get("securitySchemes")).map(Node::members).unwrap_or_default();
    out.push_str("<h2 id=auth>Authentication</h2>");
    for (name, scheme) in schemes {
        let _ = write!(
            out,
            "<article><h3>{} <small>({})</small></h3>",
            esc(name),
            esc(scheme.str_of("type").unwrap_or(""))
        );
        out.push_str(&prose(scheme.str_of("description").unwrap_or("")));
        if let Some(url) =
            scheme.get("flows").and_then(|f| f.get("clientCredentials")).and_then(|c| c.str_of("tokenUrl"))
        {
            let _ = write!(out, "<p>Token URL: <code>{}</code></p>", esc(url));
        }
        out.push_str("</article>");
    }

    for tag in tags {
        let name = tag.str_of("name").unwrap_or("");
        let _ = write!(out, "<h2 id=\"{}\">{}</h2>", anchor("tag", name), esc(name));
        out.push_str(&prose(tag.str_of("description").unwrap_or("")));
        for (method, path, op) in ops.iter().filter(|(_, _, op)| tag_of(op) == name) {
            operation(&mut out, method, path, op);
        }
    }

    out.push_str("<h2 id=schemas>Schemas</h2>");
    for (name, schema) in
        doc.get("components").and_then(|c| c.get("schemas")).map(Node::members).unwrap_or_default()
    {
        schema_section(&mut out, name, schema);
    }

    // The return codes every response lists, with what each means, from the one table.
    out.push_str("<h2 id=codes>Return codes</h2><table><tr><th>code</th><th>HTTP</th><th>level</th><th>alert</th><th>meaning</th></tr>");
    for c in openmvs_core::return_code::ReturnCode::ALL {
        let i = c.info();
        let _ = write!(
            out,
            "<tr id=\"{}\"><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            anchor("code", i.code),
            esc(i.code),
            i.http_status,
            i.level,
            i.alert.map_or("", |a| a.as_str()),
            esc(i.message)
        );
    }
    out.push_str("</table></main></body></html>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_keeps_the_order_of_its_keys_and_reads_back_as_the_same_value() {
        let text = r#"{"z": 1, "a": [true, null, "x"], "m": {"b": 2.5, "a": -3}}"#;
        let node: Node = serde_json::from_str(text).unwrap();
        let keys: Vec<&str> = node.members().iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["z", "a", "m"]);
        assert_eq!(node.to_value(), serde_json::from_str::<serde_json::Value>(text).unwrap());
        let mut pretty = String::new();
        node.pretty(0, &mut pretty);
        assert_eq!(serde_json::from_str::<serde_json::Value>(&pretty).unwrap(), node.to_value());
    }

    #[test]
    fn text_is_escaped_and_code_spans_are_marked() {
        assert_eq!(
            prose("a <b> & `c<d>`\n\nnext"),
            "<p>a &lt;b&gt; &amp; <code>c&lt;d&gt;</code></p><p>next</p>"
        );
    }
}
