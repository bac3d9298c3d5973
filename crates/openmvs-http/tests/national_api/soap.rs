//! The NMVS SOAP services, driven as an existing NMVS client drives them: envelopes byte for byte
//! as the open-source PHP client `nextgen-tech/nmvs-client` builds them (one line, no XML
//! declaration, the prefixes `urn` and `urn1`, qualified attributes), and answers read the way it
//! reads them (`Nmvs`): elements by the XPath it registers (`ns1` for the types, `ns2` for the
//! operations), attributes by their literal name `ns1:code`, each path matching at most once
//! (it throws otherwise), `"0"` and `""` read as nothing.

use std::collections::HashMap;
use std::time::Duration;

use openmvs_core::ids::ClientId;
use openmvs_core::roles::Role;
use openmvs_national::SecretLogin;
use openmvs_soap::{Message, Service, Version};
use quick_xml::NsReader;
use quick_xml::events::{BytesStart, Event};
use quick_xml::name::ResolveResult;
use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::*;

const TYPES: &str = "urn:types.nmvs.eu:v4.0";
const WSDL_TYPES: &str = "urn:wsdltypes.nmvs.eu:v4.0";
const SINGLE: &str = "/WS_SINGLE_TRANSACTIONS_V1/SinglePackServiceV40";
const BULK: &str = "/WS_BULK_TRANSACTIONS_V1/BulkServiceV40";
const MIXED: &str = "/WS_MIXED_BULK_TRANSACTIONS_V1/MixedBulkServiceV40";
const SUPPORT: &str = "/WS_SUPPORT_V1/SupportServiceV40";

// ---------------------------------------------------------------------------------------------
// Envelopes as the PHP client writes them.

/// `ClientLoginId`, `UserId`, `Password`.
#[derive(Clone)]
struct Login(String, String, String);

impl Login {
    fn of(c: &Client) -> Login {
        Login(c.client_id.clone(), c.client_id.clone(), c.secret().to_owned())
    }
}

fn envelope(op: &str, login: &Login, trx: &str, body: &str) -> String {
    format!(
        "<soap:Envelope xmlns:soap=\"http://www.w3.org/2003/05/soap-envelope\" xmlns:urn=\"urn:wsdltypes.nmvs.eu:v4.0\" \
         xmlns:urn1=\"urn:types.nmvs.eu:v4.0\"><soap:Header/><soap:Body><urn:{op}Request><urn1:Header><urn1:Auth>\
         <urn1:ClientLoginId>{}</urn1:ClientLoginId><urn1:UserId>{}</urn1:UserId><urn1:Password>{}</urn1:Password>\
         </urn1:Auth><urn1:UserSoftware urn1:supplier=\"NGT\" urn1:name=\"NMVS Integration\" urn1:version=\"1.0.0\"/>\
         <urn1:Transaction><urn1:ClientTrxId>{trx}</urn1:ClientTrxId><urn1:Language>eng</urn1:Language>\
         </urn1:Transaction></urn1:Header><urn1:Body>{body}</urn1:Body></urn:{op}Request></soap:Body></soap:Envelope>",
        login.0, login.1, login.2
    )
}

fn product(pc: &str, batch: &str, expiry: &str) -> String {
    format!(
        "<urn1:Product><urn1:ProductCode urn1:scheme=\"GTIN\">{pc}</urn1:ProductCode><urn1:Batch><urn1:Id>{batch}\
         </urn1:Id><urn1:ExpDate>{expiry}</urn1:ExpDate></urn1:Batch></urn1:Product>"
    )
}

fn single_body(p: &Pack) -> String {
    format!("{}<urn1:Pack urn1:sn=\"{}\"/>", product(&p.product_code, &p.batch, &p.expiry), p.serial)
}

fn bulk_body(packs: &[Pack]) -> String {
    let sns: String = packs.iter().map(|p| format!("<urn1:Pack urn1:sn=\"{}\"/>", p.serial)).collect();
    format!(
        "{}<urn1:Packs>{sns}</urn1:Packs>",
        product(&packs[0].product_code, &packs[0].batch, &packs[0].expiry)
    )
}

fn mixed_body(items: &[(&str, &Pack, &str)]) -> String {
    let items: String = items
        .iter()
        .map(|(req_type, p, trx)| {
            format!(
                "<urn1:TrxItem><urn1:Item urn1:reqType=\"{req_type}\">{}<urn1:Transaction><urn1:ClientTrxId>{trx}\
                 </urn1:ClientTrxId><urn1:Language>eng</urn1:Language></urn1:Transaction></urn1:Item></urn1:TrxItem>",
                single_body(p)
            )
        })
        .collect();
    format!("<urn1:TrxList>{items}</urn1:TrxList>")
}

/// A `ClientTrxId` as the PHP client makes one: a UUID cut to 32 characters, hyphens and all.
fn soap_trx() -> String {
    let n = trx();
    let digits: String = n.chars().filter(char::is_ascii_digit).collect();
    format!("c297543a-f10f-11f1-8f59-{:0>8}", &digits[digits.len().saturating_sub(8)..])
}

// ---------------------------------------------------------------------------------------------
// Answers read as the PHP client reads them.

#[derive(Debug)]
struct Node {
    ns: Option<String>,
    local: String,
    /// Attributes by their literal qualified name, as DOM's `getAttribute('ns1:code')` finds them.
    attrs: Vec<(String, String)>,
    /// The prefixes in scope.
    prefixes: HashMap<String, String>,
    children: Vec<usize>,
    text: String,
}

/// An answer, parsed.
#[derive(Debug)]
struct Nmvs {
    nodes: Vec<Node>,
    xml: String,
}

fn start(reader: &NsReader<&[u8]>, e: &BytesStart<'_>, parent: Option<&Node>) -> Node {
    let (res, local) = reader.resolver().resolve_element(e.name());
    let ns = match res {
        ResolveResult::Bound(ns) => Some(ns.as_ref().to_owned()),
        _ => None,
    };
    let mut prefixes = parent.map(|p| p.prefixes.clone()).unwrap_or_default();
    let mut attrs = Vec::new();
    for a in e.attributes() {
        let a = a.expect("an attribute");
        let key: &str = a.key.as_ref();
        let value = a.normalized_value(quick_xml::XmlVersion::Implicit1_0).expect("a value").into_owned();
        match key.strip_prefix("xmlns:") {
            Some(p) => {
                prefixes.insert(p.to_owned(), value);
            }
            None => attrs.push((key.to_owned(), value)),
        }
    }
    let local: &str = local.as_ref();
    Node { ns, local: local.to_owned(), attrs, prefixes, children: Vec::new(), text: String::new() }
}

impl Nmvs {
    fn parse(xml: &str) -> Nmvs {
        let mut reader = NsReader::from_str(xml);
        let mut nodes: Vec<Node> = Vec::new();
        let mut stack: Vec<usize> = Vec::new();
        loop {
            match reader.read_event().unwrap_or_else(|e| panic!("not XML ({e}): {xml}")) {
                Event::Start(e) | Event::Empty(e) if false => drop(e),
                Event::Start(e) => {
                    let n = start(&reader, &e, stack.last().map(|&i| &nodes[i]));
                    nodes.push(n);
                    let i = nodes.len() - 1;
                    if let Some(&p) = stack.last() {
                        nodes[p].children.push(i);
                    }
                    stack.push(i);
                }
                Event::Empty(e) => {
                    let n = start(&reader, &e, stack.last().map(|&i| &nodes[i]));
                    nodes.push(n);
                    let i = nodes.len() - 1;
                    if let Some(&p) = stack.last() {
                        nodes[p].children.push(i);
                    }
                }
                Event::End(_) => {
                    stack.pop();
                }
                Event::Text(t) => {
                    for &i in &stack {
                        nodes[i].text.push_str(&t.xml10_content());
                    }
                }
                Event::GeneralRef(r) => {
                    let name = r.xml10_content().into_owned();
                    let c = quick_xml::escape::resolve_predefined_entity(&name).unwrap_or("?");
                    for &i in &stack {
                        nodes[i].text.push_str(c);
                    }
                }
                Event::Eof => break,
                _ => {}
            }
        }
        Nmvs { nodes, xml: xml.to_owned() }
    }

    fn matches(&self, i: usize, step: &str) -> bool {
        let (prefix, local) = step.split_once(':').expect("a prefixed step");
        let uri = match prefix {
            "ns1" => TYPES,
            "ns2" => WSDL_TYPES,
            "soap" => "http://www.w3.org/2003/05/soap-envelope",
            p => panic!("no namespace registered for {p}"),
        };
        self.nodes[i].ns.as_deref() == Some(uri) && self.nodes[i].local == local
    }

    fn descendants(&self, i: usize, out: &mut Vec<usize>) {
        for &c in &self.nodes[i].children {
            out.push(c);
            self.descendants(c, out);
        }
    }

    /// The nodes `path` (`//a/b`, or `.//a/b` from `from`) selects.
    fn query(&self, path: &str, from: Option<usize>) -> Vec<usize> {
        let rest = path.trim_start_matches('.').strip_prefix("//").expect("a // path");
        let mut steps = rest.split('/');
        let first = steps.next().expect("a step");
        let mut pool = Vec::new();
        match from {
            Some(f) => self.descendants(f, &mut pool),
            None => {
                pool.push(0);
                self.descendants(0, &mut pool);
            }
        }
        let mut found: Vec<usize> = pool.into_iter().filter(|&i| self.matches(i, first)).collect();
        for step in steps {
            found = found
                .iter()
                .flat_map(|&i| self.nodes[i].children.iter().copied())
                .filter(|&c| self.matches(c, step))
                .collect();
        }
        found
    }

    /// The one node `path` selects, as the client's `getElement` does: it throws on two.
    fn one(&self, path: &str, from: Option<usize>) -> Option<usize> {
        let found = self.query(path, from);
        assert!(found.len() <= 1, "{path} matches {} times (the client throws): {}", found.len(), self.xml);
        found.first().copied()
    }

    /// The text at `path`, `None` for none, `""` or `"0"`.
    fn value(&self, path: &str) -> Option<String> {
        let i = self.one(path, None)?;
        Some(self.nodes[i].text.clone()).filter(|v| !v.is_empty() && v != "0")
    }

    /// An attribute by its literal name (`ns1:code`), checked to be in the types namespace.
    fn attr(&self, i: usize, qname: &str) -> Option<String> {
        let n = &self.nodes[i];
        let v = n.attrs.iter().find(|(k, _)| k == qname).map(|(_, v)| v.clone());
        if v.is_some()
            && let Some(p) = qname.split_once(':').map(|(p, _)| p)
        {
            assert_eq!(
                n.prefixes.get(p).map(String::as_str),
                Some(TYPES),
                "{qname} is not in the types: {}",
                self.xml
            );
        }
        v.filter(|v| !v.is_empty() && v != "0")
    }

    fn attr_at(&self, path: &str, qname: &str) -> Option<String> {
        self.one(path, None).and_then(|i| self.attr(i, qname))
    }

    /// What the client's `SinglePackParser` reads.
    fn single(&self) -> SinglePack {
        SinglePack {
            client_trx_id: self.value("//ns1:Header/ns1:Transaction/ns1:ClientTrxId"),
            nmvs_trx_id: self.value("//ns1:Header/ns1:Transaction/ns1:NMVSTrxId"),
            timestamp: self.value("//ns1:Header/ns1:Transaction/ns1:Timestamp"),
            product_code: self.value("//ns1:Body/ns1:Product/ns1:ProductCode"),
            batch: self.value("//ns1:Body/ns1:Product/ns1:Batch/ns1:Id"),
            expiry: self.value("//ns1:Body/ns1:Product/ns1:Batch/ns1:ExpDate"),
            serial: self.attr_at("//ns1:Body/ns1:Pack", "ns1:sn"),
            state: self.attr_at("//ns1:Body/ns1:Pack", "ns1:state"),
            reason: self.value("//ns1:Body/ns1:Pack/ns1:Reason"),
            code: self.attr_at("//ns1:Body/ns1:ReturnCode", "ns1:code"),
            desc: self.attr_at("//ns1:Body/ns1:ReturnCode", "ns1:desc"),
        }
    }

    /// What its `BulkParser` reads of each pack: serial, state, reason, return code.
    fn packs(&self) -> Vec<[Option<String>; 4]> {
        self.query("//ns1:Body/ns1:Packs/ns1:Pack", None)
            .into_iter()
            .map(|p| {
                let rc = self.one(".//ns1:ReturnCode", Some(p));
                [
                    self.attr(p, "ns1:sn"),
                    self.attr(p, "ns1:state"),
                    self.one(".//ns1:Reason", Some(p)).map(|r| self.nodes[r].text.clone()),
                    rc.and_then(|r| self.attr(r, "ns1:code")),
                ]
            })
            .collect()
    }

    /// What its `MixedBulkParser` reads of each item: reqType, product code, serial, state, return
    /// code, and (beyond it) the item's own `ClientTrxId`.
    fn items(&self) -> Vec<[Option<String>; 6]> {
        self.query("//ns1:Body/ns1:TrxList/ns1:TrxItem", None)
            .into_iter()
            .map(|t| {
                let product = self.one(".//ns1:Product", Some(t)).expect("a Product");
                let pc = self.one(".//ns1:ProductCode", Some(product)).expect("a ProductCode");
                assert!(self.attr(pc, "ns1:scheme").is_some(), "{}", self.xml);
                let pack = self.one(".//ns1:Pack", Some(t)).expect("a Pack");
                let rc = self.one(".//ns1:ReturnCode", Some(pack)).expect("a ReturnCode");
                let trx = self.one(".//ns1:ClientTrxId", Some(t)).expect("a ClientTrxId");
                [
                    self.attr(t, "ns1:reqType"),
                    Some(self.nodes[pc].text.clone()),
                    self.attr(pack, "ns1:sn"),
                    self.attr(pack, "ns1:state"),
                    self.attr(rc, "ns1:code"),
                    Some(self.nodes[trx].text.clone()),
                ]
            })
            .collect()
    }
}

#[derive(Debug, Default, PartialEq, Eq)]
struct SinglePack {
    client_trx_id: Option<String>,
    nmvs_trx_id: Option<String>,
    timestamp: Option<String>,
    product_code: Option<String>,
    batch: Option<String>,
    expiry: Option<String>,
    serial: Option<String>,
    state: Option<String>,
    reason: Option<String>,
    code: Option<String>,
    desc: Option<String>,
}

fn s(v: &str) -> Option<String> {
    Some(v.to_owned())
}

// ---------------------------------------------------------------------------------------------
// Sending.

struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    nmvs: Nmvs,
}

impl Answer {
    /// The fault's subcode, e.g. `ns1:NMVS_FE_AU_01`, checked to be a SOAP 1.2 fault.
    fn fault(&self) -> String {
        let x = &self.nmvs.xml;
        assert!(
            x.contains("<env:Fault>") && x.contains("xmlns:env=\"http://www.w3.org/2003/05/soap-envelope\""),
            "{x}"
        );
        let at = x.find("<env:Subcode><env:Value").expect("a subcode");
        let rest = &x[at..];
        let v = &rest[rest.find('>').expect("a tag") + 1..];
        let v = &v[v.find('>').expect("a tag") + 1..];
        v[..v.find('<').expect("an end")].to_owned()
    }
}

async fn post_as(app: &TestApp, path: &str, content_type: &str, xml: String, retry: bool) -> Answer {
    post_with(&app.http, app, path, content_type, xml, retry).await
}

/// [`post_as`] through a client of its own (one that presents a TLS client certificate).
async fn post_with(
    http: &reqwest::Client,
    app: &TestApp,
    path: &str,
    content_type: &str,
    xml: String,
    retry: bool,
) -> Answer {
    let rb = http.post(format!("{}{path}", app.base)).header("content-type", content_type).body(xml);
    let r = if retry { crate::retry::send(rb).await } else { rb.send().await }.expect("an answer");
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    assert!(headers.contains_key("x-request-id"));
    let text = r.text().await.expect("a body");
    assert!(!text.is_empty(), "an empty body makes the client throw");
    Answer { status, headers, nmvs: Nmvs::parse(&text) }
}

/// Posts as the PHP client does: `text/xml`, no SOAPAction.
async fn post(app: &TestApp, path: &str, xml: String) -> Answer {
    post_as(app, path, "text/xml", xml, true).await
}

/// A single-pack message; the answer must be a 200.
async fn single(app: &TestApp, login: &Login, op: &str, p: &Pack, trx: &str) -> SinglePack {
    let a = post(app, SINGLE, envelope(op, login, trx, &single_body(p))).await;
    assert_eq!(a.status, 200, "{}", a.nmvs.xml);
    assert!(a.nmvs.xml.starts_with("<?xml"), "{}", a.nmvs.xml);
    a.nmvs.single()
}

/// An app with the standard batch and a pharmacy, its SOAP login and an NCA to read the trail.
async fn world() -> (TestApp, Client, Login) {
    let app = spawn_app().await;
    app.seed_standard().await;
    let ph = app.client(Role::Pharmacy, "DE-PH-SOAP").await;
    let login = Login::of(&ph);
    (app, ph, login)
}

// ---------------------------------------------------------------------------------------------
// The tests.

#[test]
fn the_envelope_builder_writes_byte_for_byte_what_the_php_client_sends() {
    // As observed on the wire (shared/spec/nmvs-soap-notes.md).
    let observed = "<soap:Envelope xmlns:soap=\"http://www.w3.org/2003/05/soap-envelope\" xmlns:urn=\"urn:wsdltypes.nmvs.eu:v4.0\" xmlns:urn1=\"urn:types.nmvs.eu:v4.0\"><soap:Header/><soap:Body><urn:G110Request><urn1:Header><urn1:Auth><urn1:ClientLoginId>PHARMACY-TEST-CLIENT</urn1:ClientLoginId><urn1:UserId>user1</urn1:UserId><urn1:Password>secret</urn1:Password></urn1:Auth><urn1:UserSoftware urn1:supplier=\"NGT\" urn1:name=\"NMVS Integration\" urn1:version=\"1.0.0\"/><urn1:Transaction><urn1:ClientTrxId>8939a61a3ff94f96b7aeb4c6a9cf5d9c</urn1:ClientTrxId><urn1:Language>eng</urn1:Language></urn1:Transaction></urn1:Header><urn1:Body><urn1:Product><urn1:ProductCode urn1:scheme=\"GTIN\">09876543210982</urn1:ProductCode><urn1:Batch><urn1:Id>BATCH123</urn1:Id><urn1:ExpDate>281231</urn1:ExpDate></urn1:Batch></urn1:Product><urn1:Pack urn1:sn=\"SN0000000001\"/></urn1:Body></urn:G110Request></soap:Body></soap:Envelope>";
    let p = Pack {
        product_code: "09876543210982".into(),
        batch: "BATCH123".into(),
        expiry: "281231".into(),
        serial: "SN0000000001".into(),
    };
    let login = Login("PHARMACY-TEST-CLIENT".into(), "user1".into(), "secret".into());
    assert_eq!(envelope("G110", &login, "8939a61a3ff94f96b7aeb4c6a9cf5d9c", &single_body(&p)), observed);
    let read =
        openmvs_soap::read_request(observed.as_bytes(), Service::SinglePack, Version::V4).expect("read");
    assert_eq!(read.message, Message::by_code("G110").unwrap());
    let h = read.header.expect("a header");
    assert_eq!(
        (h.client_login_id.as_str(), h.user_id.as_str(), h.password.as_str()),
        ("PHARMACY-TEST-CLIENT", "user1", "secret")
    );
}

#[tokio::test]
async fn a_soap_verify_is_answered_as_the_php_client_reads_it() {
    let (app, _ph, login) = world().await;
    let p = app.pack().await;
    let trx = soap_trx();
    assert_eq!(trx.len(), 32);
    let a = single(&app, &login, "G110", &p, &trx).await;
    assert_eq!(a.client_trx_id.as_deref(), Some(trx.as_str()), "echoed verbatim");
    assert!(a.nmvs_trx_id.as_deref().is_some_and(|t| t.starts_with("TRX-")), "{a:?}");
    assert!(a.timestamp.as_deref().is_some_and(|t| t.starts_with("2026-11-29T10:00:00")), "{a:?}");
    assert_eq!(
        (a.product_code, a.batch, a.expiry, a.serial, a.state, a.reason, a.code),
        (s(GTIN), s(BATCH), s(EXPIRY), s(&p.serial), s("ACTIVE"), None, s("NMVS_SUCCESS"))
    );
    assert_eq!(a.desc.as_deref(), Some("Done."));
}

#[tokio::test]
async fn every_single_pack_message_does_what_its_json_twin_does() {
    let (app, ph, login) = world().await;
    let wh = app.client(Role::Wholesaler, "DE-WH-SOAP").await;
    let wh_login = Login::of(&wh);
    let _ = ph;
    // (who, use case, its JSON operation, state after it, reason).
    let pairs: &[(&Login, &str, &str, &str, &str)] = &[
        (&login, "G120", "G121", "ACTIVE", "SUPPLIED"),
        (&wh_login, "G140", "G141", "ACTIVE", "EXPORTED"),
        (&login, "G150", "G151", "ACTIVE", "SAMPLE"),
        (&login, "G160", "G161", "ACTIVE", "FREESAMPLE"),
        (&login, "G170", "G171", "ACTIVE", "LOCKED"),
    ];
    for (who, set, undo, after_undo, reason) in pairs {
        let p = app.pack().await;
        let a = single(&app, who, set, &p, &soap_trx()).await;
        assert_eq!((a.code, a.state, a.reason), (s("NMVS_SUCCESS"), s("INACTIVE"), s(reason)), "{set}");
        let a = single(&app, who, undo, &p, &soap_trx()).await;
        assert_eq!((a.code, a.state, a.reason), (s("NMVS_SUCCESS"), s(after_undo), None), "{undo}");
    }
    for (op, reason) in [("G130", "DESTROYED"), ("G180", "STOLEN")] {
        let p = app.pack().await;
        let a = single(&app, &login, op, &p, &soap_trx()).await;
        assert_eq!((a.code, a.state, a.reason), (s("NMVS_SUCCESS"), s("INACTIVE"), s(reason)), "{op}");
        assert_eq!(app.stored_state(&p).await, reason);
    }
    // G121 may name the dispense it undoes.
    let p = app.pack().await;
    let dispense = soap_trx();
    single(&app, &login, "G120", &p, &dispense).await;
    let body = format!("{}<urn1:RefClientTrxId>{dispense}</urn1:RefClientTrxId>", single_body(&p));
    let a = post(&app, SINGLE, envelope("G121", &login, &soap_trx(), &body)).await.nmvs.single();
    assert_eq!((a.code, a.state), (s("NMVS_SUCCESS"), s("ACTIVE")));
    // A pharmacy may not export: the refusal is an answer with its return code.
    let a = single(&app, &login, "G140", &app.pack().await, &soap_trx()).await;
    assert_eq!((a.code.as_deref(), a.state.as_deref()), (Some("NMVS_FE_AU_04"), None));
    // An unknown serial: the pack as asked, state UNKNOWN, the alert's code.
    let mut unknown = app.pack().await;
    unknown.serial = fresh_serial();
    let a = single(&app, &login, "G110", &unknown, &soap_trx()).await;
    assert_eq!((a.code, a.state, a.serial), (s("NMVS_NC_PC_02"), s("UNKNOWN"), s(&unknown.serial)));
    // A field at fault is named in the description, in a 200.
    let mut bad = app.pack().await;
    bad.expiry = "271332".into();
    let a = single(&app, &login, "G110", &bad, &soap_trx()).await;
    assert_eq!(a.code.as_deref(), Some("NMVS_TE_XM_02"));
    assert!(a.desc.as_deref().is_some_and(|d| d.contains("expiry")), "{a:?}");
}

#[tokio::test]
async fn a_replayed_client_trx_id_is_answered_again_and_a_reused_one_is_refused() {
    let (app, _ph, login) = world().await;
    let p = app.pack().await;
    let trx = soap_trx();
    let first = single(&app, &login, "G120", &p, &trx).await;
    let again = single(&app, &login, "G120", &p, &trx).await;
    assert_eq!(first.nmvs_trx_id, again.nmvs_trx_id, "the same transaction, answered again");
    assert_eq!((again.code, again.reason), (s("NMVS_SUCCESS"), s("SUPPLIED")));
    let other = app.pack().await;
    let reused = single(&app, &login, "G120", &other, &trx).await;
    assert_eq!(reused.code.as_deref(), Some("NMVS_TE_TX_01"));
    assert_eq!(app.stored_state(&other).await, "ACTIVE", "nothing changed");
}

#[tokio::test]
async fn a_soap_request_leaves_the_same_audit_record_and_alert_as_the_json_api() {
    let (app, ph, login) = world().await;
    let nca = app.client(Role::Nca, "DE-NCA").await;
    let mut p = app.pack().await;
    p.serial = fresh_serial();
    let soap = single(&app, &login, "G110", &p, &soap_trx()).await;
    assert_eq!(soap.code.as_deref(), Some("NMVS_NC_PC_02"));
    let json = ph.verify(&p.req()).await;
    assert_eq!(json.json["return_code"], "NMVS_NC_PC_02");
    let trail = nca.get(&p.audit_path()).await;
    let records = trail.json["records"].as_array().expect("records").clone();
    assert_eq!(records.len(), 2, "{}", trail.text);
    let same = |r: &Value| {
        let json = |v: &Value| v.as_str().map_or(v.clone(), |t| serde_json::from_str(t).expect("JSON"));
        let mut req = json(&r["request"]);
        req["client_trx_id"] = Value::Null;
        let res = json(&r["result"]);
        json!([
            r["actor"],
            r["role"],
            r["location"],
            r["operation"],
            r["return_code"],
            req,
            res["accepted"],
            res["state"],
            res["alert"]["code"]
        ])
    };
    assert_eq!(same(&records[0]), same(&records[1]));
    let alerts = ph.all_alerts("").await;
    let mine: Vec<&Value> = alerts.iter().filter(|a| a["serial"] == p.serial.as_str()).collect();
    assert_eq!(mine.len(), 2);
    assert!(mine.iter().all(|a| a["code"] == "A3" && a["location"] == "DE-PH-SOAP"), "{mine:?}");
}

#[tokio::test]
async fn a_bulk_is_accepted_and_its_result_read_with_g188() {
    let (app, _ph, login) = world().await;
    let packs = app.packs(3).await;
    let trx = soap_trx();
    let a = post(&app, BULK, envelope("G125", &login, &trx, &bulk_body(&packs))).await;
    assert_eq!(a.status, 200, "{}", a.nmvs.xml);
    let r = a.nmvs.single();
    assert_eq!((r.code.as_deref(), r.client_trx_id.as_deref()), (Some("NMVS_SUCCESS"), Some(trx.as_str())));
    let bulk_id = r.nmvs_trx_id.expect("the bulk's id");
    assert!(bulk_id.starts_with("BLK-"), "{bulk_id}");
    let result = || {
        envelope("G188", &login, &soap_trx(), &format!("<urn1:RefNMVSTrxId>{bulk_id}</urn1:RefNMVSTrxId>"))
    };
    let pending = post(&app, BULK, result()).await.nmvs;
    assert_eq!(
        pending.attr_at("//ns1:Body/ns1:ReturnCode", "ns1:code").as_deref(),
        Some("NMVS_INFO_BLK_PENDING")
    );
    assert!(pending.packs().is_empty());
    while app.bulk_round().await {}
    let done = post(&app, BULK, result()).await.nmvs;
    assert_eq!(done.attr_at("//ns1:Body/ns1:ReturnCode", "ns1:code").as_deref(), Some("NMVS_SUCCESS"));
    assert_eq!(done.value("//ns1:Body/ns1:Product/ns1:ProductCode").as_deref(), Some(GTIN));
    let expected: Vec<[Option<String>; 4]> =
        packs.iter().map(|p| [s(&p.serial), s("INACTIVE"), s("SUPPLIED"), s("NMVS_SUCCESS")]).collect();
    assert_eq!(done.packs(), expected);
    // Another client's bulk does not exist for it.
    let other = Login::of(&app.client(Role::Pharmacy, "DE-PH-OTHER").await);
    let body = format!("<urn1:RefNMVSTrxId>{bulk_id}</urn1:RefNMVSTrxId>");
    let theirs = post(&app, BULK, envelope("G188", &other, &soap_trx(), &body)).await.nmvs;
    assert_eq!(theirs.attr_at("//ns1:Body/ns1:ReturnCode", "ns1:code").as_deref(), Some("NMVS_TE_NF_01"));
    // The undo of the bulk, by G127.
    let a = post(&app, BULK, envelope("G127", &login, &soap_trx(), &bulk_body(&packs))).await.nmvs.single();
    assert_eq!(a.code.as_deref(), Some("NMVS_SUCCESS"));
    while app.bulk_round().await {}
    for p in &packs {
        assert_eq!(app.stored_state(p).await, "ACTIVE");
    }
}

/// Sends the bulk `op` of `packs` to `path`, runs the bulk worker to the end, and reads the result
/// with G188 as the same login; the result's packs.
async fn bulk_done(
    app: &TestApp,
    path: &str,
    login: &Login,
    op: &str,
    packs: &[Pack],
) -> Vec<[Option<String>; 4]> {
    let a = post(app, path, envelope(op, login, &soap_trx(), &bulk_body(packs))).await.nmvs.single();
    assert_eq!(a.code.as_deref(), Some("NMVS_SUCCESS"), "{op}");
    let id = a.nmvs_trx_id.expect("the bulk's id");
    while app.bulk_round().await {}
    let body = format!("<urn1:RefNMVSTrxId>{id}</urn1:RefNMVSTrxId>");
    let done = post(app, path, envelope("G188", login, &soap_trx(), &body)).await.nmvs;
    assert_eq!(
        done.attr_at("//ns1:Body/ns1:ReturnCode", "ns1:code").as_deref(),
        Some("NMVS_SUCCESS"),
        "{op}"
    );
    done.packs()
}

#[tokio::test]
async fn every_bulk_message_does_what_its_single_pack_twin_does_and_its_undo_reverts_it() {
    let (app, _ph, login) = world().await;
    let wh_login = Login::of(&app.client(Role::Wholesaler, "DE-WH-SOAP").await);
    // (who, bulk message, its undo, the NMVS reason after it, the state stored); G125 and G127
    // have a test of their own.
    let cases = [
        (&login, "G115", None, None, "ACTIVE"),
        (&login, "G135", None, Some("DESTROYED"), "DESTROYED"),
        (&wh_login, "G145", Some("G147"), Some("EXPORTED"), "EXPORTED"),
        (&login, "G155", Some("G157"), Some("SAMPLE"), "SAMPLE"),
        (&login, "G165", Some("G167"), Some("FREESAMPLE"), "FREE_SAMPLE"),
        (&login, "G175", Some("G177"), Some("LOCKED"), "LOCKED"),
        (&login, "G185", None, Some("STOLEN"), "STOLEN"),
    ];
    for (who, op, undo, reason, stored) in cases {
        let packs = app.packs(2).await;
        let state = if reason.is_some() { "INACTIVE" } else { "ACTIVE" };
        let expected: Vec<[Option<String>; 4]> = packs
            .iter()
            .map(|p| [s(&p.serial), s(state), reason.map(str::to_owned), s("NMVS_SUCCESS")])
            .collect();
        assert_eq!(bulk_done(&app, BULK, who, op, &packs).await, expected, "{op}");
        for p in &packs {
            assert_eq!(app.stored_state(p).await, stored, "{op}");
        }
        if let Some(undo) = undo {
            let expected: Vec<[Option<String>; 4]> =
                packs.iter().map(|p| [s(&p.serial), s("ACTIVE"), None, s("NMVS_SUCCESS")]).collect();
            assert_eq!(bulk_done(&app, BULK, who, undo, &packs).await, expected, "{undo}");
        }
    }
    // Each pack of a bulk has its own outcome: a pharmacy's bulk export is refused pack by pack.
    let packs = app.packs(1).await;
    let a = post(&app, BULK, envelope("G145", &login, &soap_trx(), &bulk_body(&packs))).await.nmvs;
    let code = a.attr_at("//ns1:Body/ns1:ReturnCode", "ns1:code");
    assert_eq!(code.as_deref(), Some("NMVS_FE_AU_04"), "{}", a.xml);
    assert_eq!(app.stored_state(&packs[0]).await, "ACTIVE");
}

#[tokio::test]
async fn the_v5_services_take_and_answer_the_v5_namespaces_and_the_undo_items_of_a_mixed_bulk() {
    let (app, _ph, login) = world().await;
    let v5 = |xml: String| xml.replace("nmvs.eu:v4.0", "nmvs.eu:v5.0");
    let v50 = |path: &str| path.replace("V40", "V50");
    // Read as a v4.0 answer once its namespaces are checked to be the v5.0 ones.
    let as_v4 = |xml: &str| {
        assert!(
            xml.contains("xmlns:ns1=\"urn:types.nmvs.eu:v5.0\"")
                && xml.contains("xmlns:ns2=\"urn:wsdltypes.nmvs.eu:v5.0\"")
                && !xml.contains("v4.0"),
            "{xml}"
        );
        Nmvs::parse(&xml.replace("nmvs.eu:v5.0", "nmvs.eu:v4.0"))
    };
    let p = app.pack().await;
    let trx = soap_trx();
    let a = post(&app, &v50(SINGLE), v5(envelope("G120", &login, &trx, &single_body(&p)))).await;
    assert_eq!(a.status, 200, "{}", a.nmvs.xml);
    let r = as_v4(&a.nmvs.xml).single();
    assert_eq!(
        (r.code, r.state, r.reason, r.client_trx_id),
        (s("NMVS_SUCCESS"), s("INACTIVE"), s("SUPPLIED"), s(&trx))
    );
    // A mixed bulk whose undo travels in ItemUndo, as v5.0 has it.
    let other = app.pack().await;
    let body = mixed_body(&[("G121", &p, &soap_trx()), ("G170", &other, &soap_trx())]);
    let body =
        body.replacen("<urn1:Item ", "<urn1:ItemUndo ", 1).replacen("</urn1:Item>", "</urn1:ItemUndo>", 1);
    let a = post(&app, &v50(MIXED), v5(envelope("G195", &login, &soap_trx(), &body))).await;
    let id = as_v4(&a.nmvs.xml).single().nmvs_trx_id.expect("the bulk's id");
    while app.bulk_round().await {}
    let body = format!("<urn1:RefNMVSTrxId>{id}</urn1:RefNMVSTrxId>");
    let a = post(&app, &v50(MIXED), v5(envelope("G196", &login, &soap_trx(), &body))).await;
    let states: Vec<_> =
        as_v4(&a.nmvs.xml).items().into_iter().map(|i| [i[0].clone(), i[3].clone(), i[4].clone()]).collect();
    assert_eq!(
        states,
        [[s("G121"), s("ACTIVE"), s("NMVS_SUCCESS")], [s("G170"), s("INACTIVE"), s("NMVS_SUCCESS")]]
    );
    assert_eq!(app.stored_state(&p).await, "ACTIVE");
    // In v5.0 an ItemUndo must be an undo.
    let body = mixed_body(&[("G120", &p, &soap_trx())])
        .replace("urn1:Item ", "urn1:ItemUndo ")
        .replace("</urn1:Item>", "</urn1:ItemUndo>");
    let a =
        post_as(&app, &v50(MIXED), "text/xml", v5(envelope("G195", &login, &soap_trx(), &body)), false).await;
    assert_eq!((a.status, a.fault()), (400, "ns1:NMVS_TE_XM_02".to_owned()), "{}", a.nmvs.xml);
    // A v5.0 bulk and its result.
    let packs = app.packs(2).await;
    let a = post(&app, &v50(BULK), v5(envelope("G175", &login, &soap_trx(), &bulk_body(&packs)))).await;
    let id = as_v4(&a.nmvs.xml).single().nmvs_trx_id.expect("the bulk's id");
    while app.bulk_round().await {}
    let body = format!("<urn1:RefNMVSTrxId>{id}</urn1:RefNMVSTrxId>");
    let a = post(&app, &v50(BULK), v5(envelope("G188", &login, &soap_trx(), &body))).await;
    let expected: Vec<[Option<String>; 4]> =
        packs.iter().map(|p| [s(&p.serial), s("INACTIVE"), s("LOCKED"), s("NMVS_SUCCESS")]).collect();
    assert_eq!(as_v4(&a.nmvs.xml).packs(), expected);
}

#[tokio::test]
async fn a_mixed_bulk_is_accepted_and_its_items_read_with_g196() {
    let (app, _ph, login) = world().await;
    let packs = app.packs(3).await;
    let (t1, t2, t3) = (soap_trx(), soap_trx(), soap_trx());
    let body = mixed_body(&[("G110", &packs[0], &t1), ("G120", &packs[1], &t2), ("G170", &packs[2], &t3)]);
    let a = post(&app, MIXED, envelope("G195", &login, &soap_trx(), &body)).await.nmvs.single();
    assert_eq!(a.code.as_deref(), Some("NMVS_SUCCESS"));
    let id = a.nmvs_trx_id.expect("the bulk's id");
    while app.bulk_round().await {}
    let body = format!("<urn1:RefNMVSTrxId>{id}</urn1:RefNMVSTrxId>");
    let r = post(&app, MIXED, envelope("G196", &login, &soap_trx(), &body)).await.nmvs;
    assert_eq!(r.attr_at("//ns1:Body/ns1:ReturnCode", "ns1:code").as_deref(), Some("NMVS_SUCCESS"));
    assert_eq!(
        r.items(),
        vec![
            [s("G110"), s(GTIN), s(&packs[0].serial), s("ACTIVE"), s("NMVS_SUCCESS"), s(&t1)],
            [s("G120"), s(GTIN), s(&packs[1].serial), s("INACTIVE"), s("NMVS_SUCCESS"), s(&t2)],
            [s("G170"), s(GTIN), s(&packs[2].serial), s("INACTIVE"), s("NMVS_SUCCESS"), s(&t3)],
        ]
    );
    // An undo item, sent in Item as v4.0 clients send it.
    let body = mixed_body(&[("G121", &packs[1], &soap_trx())]);
    let a = post(&app, MIXED, envelope("G195", &login, &soap_trx(), &body)).await.nmvs.single();
    assert_eq!(a.code.as_deref(), Some("NMVS_SUCCESS"));
    while app.bulk_round().await {}
    assert_eq!(app.stored_state(&packs[1]).await, "ACTIVE");
}

#[tokio::test]
async fn every_service_pings_and_serves_a_wsdl_of_exactly_its_operations() {
    let app = spawn_app().await;
    for (path, ping) in
        [(SUPPORT, "SupportPing"), (SINGLE, "SinglePackPing"), (BULK, "BulkPing"), (MIXED, "MixedBulkPing")]
    {
        let xml = format!(
            "<soap:Envelope xmlns:soap=\"http://www.w3.org/2003/05/soap-envelope\" xmlns:urn=\"urn:wsdltypes.nmvs.eu:v4.0\" \
             xmlns:urn1=\"urn:types.nmvs.eu:v4.0\"><soap:Header/><soap:Body><urn:{ping}Request><urn1:Input>ping &amp; pong\
             </urn1:Input></urn:{ping}Request></soap:Body></soap:Envelope>"
        );
        let a = post(&app, path, xml).await;
        assert_eq!(a.status, 200, "{}", a.nmvs.xml);
        let out = a.nmvs.one(&format!("//ns2:{ping}Response/ns1:Output"), None).expect("an Output");
        assert_eq!(a.nmvs.nodes[out].text, "ping & pong");
    }
    for path in openmvs_http::soap::PATHS {
        let (service, version) = Service::at(path).expect("a service");
        let r = app.get(&format!("{path}?wsdl")).await;
        assert_eq!(r.status, 200, "{path}");
        assert!(r.header("content-type").starts_with("text/xml"));
        let w = Nmvs::parse(&r.text);
        let ops: Vec<String> = w
            .nodes
            .iter()
            .filter(|n| n.local == "operation" && n.ns.as_deref() == Some("http://schemas.xmlsoap.org/wsdl/"))
            .filter_map(|n| n.attrs.iter().find(|(k, _)| k == "name").map(|(_, v)| v.clone()))
            .collect();
        let expected: Vec<String> = service.messages().map(|m| m.code().to_owned()).collect();
        assert_eq!(ops, [expected.clone(), expected].concat(), "{path}: portType and binding");
        assert!(r.text.contains(&format!("location=\"{}{path}\"", app.base)), "{path}");
        assert!(r.text.contains(version.types()) && r.text.contains(version.wsdl_types()));
    }
    let r = app.get(SINGLE).await;
    r.expect_error(400, "NMVS_TE_XM_02", Some("query"));
}

#[tokio::test]
async fn what_is_not_a_request_is_a_soap_fault() {
    let (app, _ph, login) = world().await;
    let p = app.pack().await;
    let good = envelope("G110", &login, &soap_trx(), &single_body(&p));
    let wrong = Login(login.0.clone(), login.1.clone(), "not-the-secret".into());
    let cases: Vec<(&str, &str, String, u16, &str)> = vec![
        (
            "a wrong password",
            SINGLE,
            envelope("G110", &wrong, &soap_trx(), &single_body(&p)),
            400,
            "ns1:NMVS_FE_AU_01",
        ),
        (
            "another user id",
            SINGLE,
            envelope(
                "G110",
                &Login(login.0.clone(), "user1".into(), login.2.clone()),
                &soap_trx(),
                &single_body(&p),
            ),
            400,
            "ns1:NMVS_FE_AU_01",
        ),
        ("XML that is not well-formed", SINGLE, good.replace("</soap:Body>", ""), 400, "ns1:NMVS_TE_XM_02"),
        (
            "an undeclared prefix",
            SINGLE,
            good.replace("</urn1:Password>", "</urn1:Password><unr1:SubUserId>till2</unr1:SubUserId>"),
            400,
            "ns1:NMVS_TE_XM_02",
        ),
        (
            "an unknown operation",
            SINGLE,
            good.replace("G110Request", "G999Request"),
            400,
            "ns1:NMVS_TE_NF_01",
        ),
        ("an operation of another service", BULK, good.clone(), 400, "ns1:NMVS_TE_NF_01"),
        (
            "a missing element",
            SINGLE,
            good.replace("<urn1:Pack urn1:sn", "<urn1:Pak urn1:sn"),
            400,
            "ns1:NMVS_TE_XM_02",
        ),
        ("an empty body", SINGLE, String::new(), 400, "ns1:NMVS_TE_XM_02"),
        (
            "a SOAP 1.1 envelope",
            SINGLE,
            good.replace(
                "http://www.w3.org/2003/05/soap-envelope",
                "http://schemas.xmlsoap.org/soap/envelope/",
            ),
            500,
            "ns1:NMVS_TE_XM_02",
        ),
        ("a body over its limit", SINGLE, good.replace("eng", &"e".repeat(20_000)), 413, "ns1:NMVS_TE_XM_03"),
    ];
    for (what, path, xml, status, subcode) in cases {
        let a = post_as(&app, path, "text/xml", xml, false).await;
        assert_eq!((a.status, a.fault()), (status, subcode.to_owned()), "{what}: {}", a.nmvs.xml);
    }
    let a = post_as(&app, SINGLE, "application/json", good.clone(), false).await;
    assert_eq!(a.status, 415);
    // application/soap+xml is taken and answered in kind; nothing above changed the pack.
    let a = post_as(&app, SINGLE, "application/soap+xml; charset=utf-8", good, true).await;
    assert_eq!(a.status, 200);
    assert!(a.headers["content-type"].to_str().unwrap().starts_with("application/soap+xml"));
    assert_eq!(a.nmvs.single().state.as_deref(), Some("ACTIVE"));
}

#[tokio::test]
async fn failed_logins_are_limited_as_at_the_token_endpoint() {
    let app = spawn_app_with(AppOptions {
        login: Some(openmvs_http::login::LoginSettings {
            failures_per_client: 2,
            failures_per_address: 100,
            ..Default::default()
        }),
        ..AppOptions::default()
    })
    .await;
    app.seed_standard().await;
    let ph = app.client(Role::Pharmacy, "DE-PH-SOAP").await;
    let p = app.pack().await;
    let wrong = Login(ph.client_id.clone(), ph.client_id.clone(), "wrong".into());
    for _ in 0..2 {
        let a =
            post_as(&app, SINGLE, "text/xml", envelope("G110", &wrong, &soap_trx(), &single_body(&p)), false)
                .await;
        assert_eq!(a.fault(), "ns1:NMVS_FE_AU_01");
    }
    let a = post_as(
        &app,
        SINGLE,
        "text/xml",
        envelope("G110", &Login::of(&ph), &soap_trx(), &single_body(&p)),
        false,
    )
    .await;
    assert_eq!((a.status, a.fault()), (429, "ns1:NMVS_FI_SE_CLI_01".to_owned()));
    assert!(a.headers.contains_key("retry-after"));
}

#[tokio::test]
async fn a_login_is_remembered_until_the_client_is_cut_off_or_its_time_is_up() {
    let (app, _ph, login) = world().await;
    let nmvo = app.client(Role::Nmvo, "DE-NMVO").await;
    let p = app.pack().await;
    assert_eq!(app.national.remembered_logins(), 0);
    single(&app, &login, "G110", &p, &soap_trx()).await;
    assert_eq!(app.national.remembered_logins(), 1);
    // Its time is up: checked again (and remembered again).
    app.advance(Duration::from_secs(301));
    let a = single(&app, &login, "G110", &p, &soap_trx()).await;
    assert_eq!(a.code.as_deref(), Some("NMVS_SUCCESS"));
    assert_eq!(app.national.remembered_logins(), 1);
    // Cut off: refused at once, remembered or not.
    let r = nmvo.post(&format!("/v1/admin/clients/{}/disable", login.0), &json!({})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(app.national.remembered_logins(), 0);
    let a = post_as(&app, SINGLE, "text/xml", envelope("G110", &login, &soap_trx(), &single_body(&p)), false)
        .await;
    assert_eq!(a.fault(), "ns1:NMVS_FE_AU_01");
    let r = nmvo.post(&format!("/v1/admin/clients/{}/enable", login.0), &json!({})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(single(&app, &login, "G110", &p, &soap_trx()).await.code.as_deref(), Some("NMVS_SUCCESS"));
}

#[tokio::test]
async fn a_configured_login_names_its_client_and_no_other() {
    let (app, ph, login) = world().await;
    app.national.set_logins(&[SecretLogin {
        client_login_id: "DE-PH-SOAP".into(),
        user_id: "till1".into(),
        client_id: ClientId::from(ph.client_id.as_str()),
        certificate: None,
    }]);
    let p = app.pack().await;
    let alias = Login("DE-PH-SOAP".into(), "till1".into(), login.2.clone());
    let a = single(&app, &alias, "G120", &p, &soap_trx()).await;
    assert_eq!(a.reason.as_deref(), Some("SUPPLIED"));
    let trail = app.client(Role::Nca, "DE-NCA").await.get(&p.audit_path()).await;
    // The pack's own requests, after what the hub delivered about it.
    let own = trail.json["records"].as_array().unwrap().iter().find(|r| r["role"] != "HUB").cloned();
    assert_eq!(own.map(|r| r["actor"].clone()), Some(ph.client_id.as_str().into()), "{}", trail.text);
    let stranger = Login("DE-PH-SOAP".into(), "till2".into(), login.2.clone());
    let a =
        post_as(&app, SINGLE, "text/xml", envelope("G110", &stranger, &soap_trx(), &single_body(&p)), false)
            .await;
    assert_eq!(a.fault(), "ns1:NMVS_FE_AU_01");
}

#[tokio::test]
async fn soap_verifies_count_in_the_public_figures_as_verifications() {
    let (app, _ph, login) = world().await;
    let p = app.pack().await;
    let before =
        app.get("/status").await.json["operations"]["verification"]["count_month"].as_u64().unwrap_or(0);
    single(&app, &login, "G110", &p, &soap_trx()).await;
    let after =
        app.get("/status").await.json["operations"]["verification"]["count_month"].as_u64().unwrap_or(0);
    assert_eq!(after, before + 1);
    let _ = Method::GET;
}

// ---------------------------------------------------------------------------------------------
// Logins that need a TLS client certificate.

/// The name on the certificate of the pharmacy's first till.
const TILL1: &str = "till1.de-ph-soap.example";
/// The name on the certificate of another till, issued by the same CA.
const TILL2: &str = "till2.de-ph-soap.example";

/// A CA the national system takes client certificates of, and a certificate of each till.
struct TillCerts {
    ca: rustls_pki_types::CertificateDer<'static>,
    /// Certificate then key, PEM, as `reqwest::Identity::from_pem` takes them.
    till1: Vec<u8>,
    till2: Vec<u8>,
}

fn till_certs() -> &'static TillCerts {
    use rcgen::{
        BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
        Issuer, KeyPair, KeyUsagePurpose,
    };
    static CERTS: std::sync::OnceLock<TillCerts> = std::sync::OnceLock::new();
    CERTS.get_or_init(|| {
        let ca_key = KeyPair::generate().expect("a CA key");
        let mut ca = CertificateParams::default();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "DE end-user CA");
        ca.distinguished_name = dn;
        let ca_cert = ca.self_signed(&ca_key).expect("the CA certificate");
        let issuer = Issuer::new(ca, &ca_key);
        let leaf = |name: &str| {
            let key = KeyPair::generate().expect("a key");
            let mut p = CertificateParams::new(vec![name.to_owned()]).expect("a DNS name");
            p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
            let cert = p.signed_by(&key, &issuer).expect("a client certificate");
            format!("{}{}", cert.pem(), key.serialize_pem()).into_bytes()
        };
        TillCerts { ca: ca_cert.der().clone(), till1: leaf(TILL1), till2: leaf(TILL2) }
    })
}

/// An app that takes the tills' client certificates, with `soap` as its SOAP settings.
async fn app_with_client_certificates(soap: openmvs_national::SecretLogins) -> TestApp {
    let app = spawn_app_with(AppOptions {
        client_ca: Some(till_certs().ca.clone()),
        soap: Some(soap),
        ..AppOptions::default()
    })
    .await;
    app.seed_standard().await;
    app
}

/// A G110 of `p` sent through `http`: its return code, or its fault's subcode.
async fn verify_through(http: &reqwest::Client, app: &TestApp, login: &Login, p: &Pack) -> String {
    let a = post_with(
        http,
        app,
        SINGLE,
        "text/xml",
        envelope("G110", login, &soap_trx(), &single_body(p)),
        false,
    )
    .await;
    if a.status == 200 { a.nmvs.single().code.unwrap_or_default() } else { a.fault() }
}

/// The results of the audited SOAP logins of `client_id`, oldest first.
async fn login_results(app: &TestApp, client_id: &str) -> Vec<Value> {
    let page = app.store.audit_page(0, 100_000).await.expect("read the trail");
    page.into_iter()
        .map(|(_, r)| r.entry)
        .filter(|e| e.operation == "login" && e.actor == client_id && e.request.contains("nmvs-soap"))
        .map(|e| serde_json::from_str(&e.result).expect("a JSON result"))
        .collect()
}

const BAD_LOGIN: &str = "ns1:NMVS_FE_AU_01";

#[tokio::test]
async fn a_login_that_names_a_certificate_needs_it_and_its_secret_on_every_request() {
    let app = app_with_client_certificates(openmvs_national::SecretLogins::default()).await;
    let ph = app.client(Role::Pharmacy, "DE-PH-SOAP").await;
    app.national.set_logins(&[SecretLogin {
        client_login_id: "DE-PH-SOAP".into(),
        user_id: "till1".into(),
        client_id: ClientId::from(ph.client_id.as_str()),
        // DNS names are compared without regard to ASCII case.
        certificate: Some(TILL1.to_ascii_uppercase()),
    }]);
    let p = app.pack().await;
    let till1 = https_client(Some(&till_certs().till1));
    let till2 = https_client(Some(&till_certs().till2));
    let alias = Login("DE-PH-SOAP".into(), "till1".into(), ph.secret().to_owned());

    assert_eq!(verify_through(&till1, &app, &alias, &p).await, "NMVS_SUCCESS");
    assert_eq!(app.national.remembered_logins(), 1);
    // The login is remembered, and still no request gets in without the certificate.
    assert_eq!(verify_through(&app.http, &app, &alias, &p).await, BAD_LOGIN);
    assert_eq!(verify_through(&till2, &app, &alias, &p).await, BAD_LOGIN);
    let wrong = Login(alias.0.clone(), alias.1.clone(), "wrong".into());
    assert_eq!(verify_through(&till1, &app, &wrong, &p).await, BAD_LOGIN);
    // The client's id is no way around its login's certificate.
    assert_eq!(verify_through(&app.http, &app, &Login::of(&ph), &p).await, BAD_LOGIN);
    assert_eq!(verify_through(&till2, &app, &Login::of(&ph), &p).await, BAD_LOGIN);
    assert_eq!(verify_through(&till1, &app, &Login::of(&ph), &p).await, "NMVS_SUCCESS");
    assert_eq!(verify_through(&till1, &app, &alias, &p).await, "NMVS_SUCCESS");

    // Each refusal was checked in full and audited with both factors; the remembered login
    // that let the last request in was not checked again.
    let results = login_results(&app, &ph.client_id).await;
    let expected = [
        json!({"ok": true, "certificate": true, "secret": true}),
        json!({"ok": false, "certificate": false, "secret": true}),
        json!({"ok": false, "certificate": false, "secret": true}),
        json!({"ok": false, "certificate": true, "secret": false}),
        json!({"ok": false, "certificate": false, "secret": true}),
        json!({"ok": false, "certificate": false, "secret": true}),
    ];
    assert_eq!(results, expected);
}

#[tokio::test]
async fn a_login_that_names_no_certificate_needs_none_beside_one_that_does() {
    let app = app_with_client_certificates(openmvs_national::SecretLogins::default()).await;
    let ph = app.client(Role::Pharmacy, "DE-PH-SOAP").await;
    let other = app.client(Role::Pharmacy, "DE-PH-OTHER").await;
    app.national.set_logins(&[
        SecretLogin {
            client_login_id: "DE-PH-SOAP".into(),
            user_id: "till1".into(),
            client_id: ClientId::from(ph.client_id.as_str()),
            certificate: Some(TILL1.into()),
        },
        SecretLogin {
            client_login_id: "DE-PH-OTHER".into(),
            user_id: "till1".into(),
            client_id: ClientId::from(other.client_id.as_str()),
            certificate: None,
        },
    ]);
    let p = app.pack().await;
    let alias = Login("DE-PH-OTHER".into(), "till1".into(), other.secret().to_owned());
    assert_eq!(verify_through(&app.http, &app, &alias, &p).await, "NMVS_SUCCESS");
    assert_eq!(verify_through(&app.http, &app, &Login::of(&other), &p).await, "NMVS_SUCCESS");
    // A certificate it does not need is no reason to refuse it.
    let till2 = https_client(Some(&till_certs().till2));
    assert_eq!(verify_through(&till2, &app, &alias, &p).await, "NMVS_SUCCESS");
    assert_eq!(login_results(&app, &other.client_id).await, [json!({"ok": true})]);
}

#[tokio::test]
async fn with_require_certificate_every_login_needs_a_verified_certificate_of_any_name() {
    let soap = openmvs_national::SecretLogins { require_certificate: true, ..Default::default() };
    let app = app_with_client_certificates(soap).await;
    let ph = app.client(Role::Pharmacy, "DE-PH-SOAP").await;
    let p = app.pack().await;
    let login = Login::of(&ph);
    assert_eq!(verify_through(&app.http, &app, &login, &p).await, BAD_LOGIN);
    let till2 = https_client(Some(&till_certs().till2));
    assert_eq!(verify_through(&till2, &app, &login, &p).await, "NMVS_SUCCESS");
    // Remembered now, and still refused without a certificate.
    assert_eq!(verify_through(&app.http, &app, &login, &p).await, BAD_LOGIN);
    let wrong = Login(login.0.clone(), login.1.clone(), "wrong".into());
    assert_eq!(verify_through(&till2, &app, &wrong, &p).await, BAD_LOGIN);
}
