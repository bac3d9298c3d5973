//! Reads a request envelope: quick-xml tokenizes it and resolves its namespaces, the elements
//! are gathered into a small tree, and the tree is read into a [`Request`] or refused with the
//! [`Fault`] that says which element or attribute is at fault.
//!
//! Names are matched by namespace and local name, never by prefix: any prefixes may be used, and
//! an element or attribute whose prefix is not declared (`<unr1:SubUserId>`, sent by one client
//! version) makes the envelope not namespace-well-formed, which is a fault. Attributes of the
//! NMVS types are read qualified (`urn1:sn`, as the schema says) or unqualified. Values are taken
//! as sent, entities and character references resolved; the national system checks them.

use std::borrow::Cow;

use openmvs_core::pack::Command;
use quick_xml::events::{BytesStart, Event};
use quick_xml::name::ResolveResult;
use quick_xml::{NsReader, XmlVersion};

use crate::fault::Fault;
use crate::message::{Message, SOAP11, SOAP12, Service, Version};

/// The deepest nesting of elements an envelope may have (an NMVS request needs 7).
pub const MAX_DEPTH: usize = 24;

/// The NMVS header of a request: who sends it, with which software, under which transaction id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHeader {
    /// `Auth/ClientLoginId`.
    pub client_login_id: String,
    /// `Auth/UserId`.
    pub user_id: String,
    /// `Auth/Password`.
    pub password: String,
    /// `Auth/SubUserId`, if sent.
    pub sub_user_id: Option<String>,
    /// `UserSoftware`'s `supplier`, `name` and `version`, if sent.
    pub software: Option<(String, String, String)>,
    /// `Transaction/ClientTrxId`.
    pub client_trx_id: String,
    /// `Transaction/Language`.
    pub language: String,
}

/// The product and batch a request names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Product {
    /// `ProductCode`'s `scheme`.
    pub scheme: String,
    /// `ProductCode`.
    pub code: String,
    /// `Batch/Id`.
    pub batch: String,
    /// `Batch/ExpDate`, `YYMMDD`.
    pub expiry: String,
}

/// One item of a mixed bulk (G195).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MixedItem {
    /// Its `reqType`, e.g. `G120`.
    pub req_type: String,
    /// The command it names.
    pub command: Command,
    /// The product.
    pub product: Product,
    /// `Pack`'s `sn`.
    pub serial: String,
    /// `Transaction/ClientTrxId`.
    pub client_trx_id: String,
    /// `Transaction/RefClientTrxId`, if sent.
    pub ref_client_trx_id: Option<String>,
}

/// What a request asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestBody {
    /// One pack (G110-G180).
    Pack {
        /// The product.
        product: Product,
        /// `Pack`'s `sn`.
        serial: String,
        /// `RefClientTrxId`: the transaction an undo undoes, if sent.
        ref_client_trx_id: Option<String>,
    },
    /// Packs of one batch (G115-G185).
    Packs {
        /// The product.
        product: Product,
        /// Every `Packs/Pack`'s `sn`, in order.
        serials: Vec<String>,
        /// `RefClientTrxId`, if sent.
        ref_client_trx_id: Option<String>,
    },
    /// The result of a bulk (G188, G196): `RefNMVSTrxId`.
    Result(String),
    /// A mixed bulk (G195).
    Mixed(Vec<MixedItem>),
    /// A ping's `Input`.
    Ping(String),
}

/// A request read from its envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The interface version its namespaces name.
    pub version: Version,
    /// The message.
    pub message: Message,
    /// The NMVS header; `None` for a ping.
    pub header: Option<RequestHeader>,
    /// What it asks.
    pub body: RequestBody,
}

/// Where a name is: the envelope, the NMVS types, or anywhere else.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ns {
    None,
    Uri(String),
}

/// An element of the envelope.
#[derive(Debug)]
struct El {
    ns: Ns,
    name: String,
    attrs: Vec<(Ns, String, String)>,
    children: Vec<El>,
    text: String,
}

fn resolved(r: ResolveResult<'_>, what: &str, qname: &str) -> Result<Ns, Fault> {
    match r {
        ResolveResult::Bound(ns) => Ok(Ns::Uri(ns.as_ref().to_owned())),
        ResolveResult::Unbound => Ok(Ns::None),
        ResolveResult::Unknown(prefix) => Err(Fault::malformed(format!(
            "the {what} '{qname}' has the prefix '{prefix}', which no xmlns declares"
        ))),
    }
}

fn element(reader: &NsReader<&[u8]>, e: &BytesStart<'_>) -> Result<El, Fault> {
    let (res, local) = reader.resolver().resolve_element(e.name());
    let ns = resolved(res, "element", e.name().as_ref())?;
    let mut attrs = Vec::new();
    for a in e.attributes() {
        let a = a.map_err(|err| Fault::malformed(format!("an attribute cannot be read: {err}")))?;
        let key: &str = a.key.as_ref();
        if key == "xmlns" || key.starts_with("xmlns:") {
            continue;
        }
        let (res, local) = reader.resolver().resolve_attribute(a.key);
        let ans = resolved(res, "attribute", key)?;
        let value = a
            .normalized_value(XmlVersion::Implicit1_0)
            .map_err(|err| Fault::malformed(format!("the attribute '{key}' cannot be read: {err}")))?
            .into_owned();
        let local: &str = local.as_ref();
        attrs.push((ans, local.to_owned(), value));
    }
    let local: &str = local.as_ref();
    Ok(El { ns, name: local.to_owned(), attrs, children: Vec::new(), text: String::new() })
}

/// Gathers the document into a tree of elements: well-formed, namespace-well-formed, at most
/// [`MAX_DEPTH`] deep, one root, no DTD.
fn tree(xml: &[u8]) -> Result<El, Fault> {
    let text =
        std::str::from_utf8(xml).map_err(|e| Fault::malformed(format!("the body is not UTF-8: {e}")))?;
    let mut reader = NsReader::from_str(text);
    let mut stack: Vec<El> = Vec::new();
    let mut root: Option<El> = None;
    loop {
        let event = reader.read_event().map_err(|e| {
            Fault::malformed(format!("not well-formed XML at byte {}: {e}", reader.buffer_position()))
        })?;
        match event {
            Event::Start(e) | Event::Empty(e) if root.is_some() => {
                let _ = e;
                return Err(Fault::malformed("more than one root element".to_owned()));
            }
            Event::Start(e) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(Fault::malformed(format!("elements nested deeper than {MAX_DEPTH}")));
                }
                let el = element(&reader, &e)?;
                stack.push(el);
            }
            Event::Empty(e) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(Fault::malformed(format!("elements nested deeper than {MAX_DEPTH}")));
                }
                let el = element(&reader, &e)?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(el),
                    None => root = Some(el),
                }
            }
            Event::End(_) => {
                let el =
                    stack.pop().ok_or_else(|| Fault::malformed("an end tag without a start".to_owned()))?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(el),
                    None => root = Some(el),
                }
            }
            Event::Text(t) => {
                let content = t.xml10_content();
                match stack.last_mut() {
                    Some(el) => el.text.push_str(&content),
                    None if content.trim().is_empty() => {}
                    None => return Err(Fault::malformed("text outside the root element".to_owned())),
                }
            }
            Event::CData(t) => {
                let content: String = t.xml10_content().into_owned();
                if let Some(el) = stack.last_mut() {
                    el.text.push_str(&content);
                }
            }
            Event::GeneralRef(r) => {
                let resolved: Cow<'_, str> = match r.resolve_char_ref() {
                    Ok(Some(c)) => Cow::Owned(c.to_string()),
                    Ok(None) => {
                        let name = r.xml10_content();
                        match quick_xml::escape::resolve_predefined_entity(&name) {
                            Some(s) => Cow::Borrowed(s),
                            None => {
                                return Err(Fault::malformed(format!(
                                    "the entity '&{name};' is not defined"
                                )));
                            }
                        }
                    }
                    Err(e) => {
                        return Err(Fault::malformed(format!("a character reference cannot be read: {e}")));
                    }
                };
                if let Some(el) = stack.last_mut() {
                    el.text.push_str(&resolved);
                }
            }
            Event::DocType(_) => {
                return Err(Fault::malformed("a document type declaration is not accepted".to_owned()));
            }
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
            Event::Eof => break,
        }
    }
    if !stack.is_empty() {
        return Err(Fault::malformed("the document ends inside an element".to_owned()));
    }
    root.ok_or_else(|| Fault::malformed("the body holds no XML element".to_owned()))
}

/// Reads a request to `service` (in the version its path names) from its envelope.
///
/// # Errors
///
/// A [`Fault`] for anything that is not such a request: XML that is not well-formed or not
/// namespace-well-formed, another envelope version, a body with no or several operations, an
/// operation `service` does not take, or an element the operation needs that is missing or
/// repeated.
pub fn read_request(xml: &[u8], service: Service, version: Version) -> Result<Request, Fault> {
    let root = tree(xml)?;
    match &root.ns {
        Ns::Uri(u) if u == SOAP12 && root.name == "Envelope" => {}
        Ns::Uri(u) if u == SOAP11 && root.name == "Envelope" => return Err(Fault::version_mismatch()),
        _ => {
            return Err(Fault::malformed(format!(
                "the root element is '{}', not a SOAP 1.2 Envelope ({SOAP12})",
                root.name
            )));
        }
    }
    let soap = Ns::Uri(SOAP12.to_owned());
    let body = one(&root, &soap, "Body", "Envelope")?;
    let mut ops = body.children.iter();
    let (Some(op), None) = (ops.next(), ops.next()) else {
        return Err(Fault::malformed("the SOAP Body must hold exactly one operation element".to_owned()));
    };
    let expected = Ns::Uri(version.wsdl_types().to_owned());
    let message = Message::by_request_element(&op.name).filter(|m| m.service() == service);
    let (true, Some(message)) = (op.ns == expected, message) else {
        let ns = match &op.ns {
            Ns::Uri(u) => u.as_str(),
            Ns::None => "no namespace",
        };
        return Err(Fault::unknown_operation(format!(
            "'{}' ({ns}) is not an operation of {}{} (namespace {})",
            op.name,
            service.name(),
            version.suffix(),
            version.wsdl_types()
        )));
    };
    let t = Ns::Uri(version.types().to_owned());
    let cx = Cx { t: &t };
    if let Message::Ping(_) = message {
        let input = cx.text(op, "Input", op_name(op))?;
        return Ok(Request { version, message, header: None, body: RequestBody::Ping(input) });
    }
    let header = cx.header(cx.one(op, "Header")?)?;
    let b = cx.one(op, "Body")?;
    let body = match message {
        Message::Single(_) => RequestBody::Pack {
            product: cx.product(cx.one(b, "Product")?)?,
            serial: cx.attr(cx.one(b, "Pack")?, "sn")?,
            ref_client_trx_id: cx.optional_text(b, "RefClientTrxId")?,
        },
        Message::Bulk(_) => {
            let packs = cx.one(b, "Packs")?;
            let serials = cx.all(packs, "Pack").map(|p| cx.attr(p, "sn")).collect::<Result<Vec<_>, _>>()?;
            if serials.is_empty() {
                return Err(Fault::malformed("Packs holds no Pack".to_owned()));
            }
            RequestBody::Packs {
                product: cx.product(cx.one(b, "Product")?)?,
                serials,
                ref_client_trx_id: cx.optional_text(b, "RefClientTrxId")?,
            }
        }
        Message::BulkResult | Message::MixedBulkResult => {
            RequestBody::Result(cx.text(b, "RefNMVSTrxId", "Body")?)
        }
        Message::MixedBulk => {
            let list = cx.one(b, "TrxList")?;
            let items = cx
                .all(list, "TrxItem")
                .enumerate()
                .map(|(i, item)| cx.mixed_item(item, i))
                .collect::<Result<Vec<_>, _>>()?;
            if items.is_empty() {
                return Err(Fault::malformed("TrxList holds no TrxItem".to_owned()));
            }
            RequestBody::Mixed(items)
        }
        Message::Ping(_) => unreachable!("answered above"),
    };
    Ok(Request { version, message, header: Some(header), body })
}

fn op_name(op: &El) -> &str {
    &op.name
}

/// The only child of `parent` named `ns:name`.
fn one<'a>(parent: &'a El, ns: &Ns, name: &str, parent_name: &str) -> Result<&'a El, Fault> {
    let mut found = parent.children.iter().filter(|c| c.ns == *ns && c.name == name);
    match (found.next(), found.next()) {
        (Some(el), None) => Ok(el),
        (None, _) => Err(Fault::malformed(format!("{parent_name} has no {name}"))),
        (Some(_), Some(_)) => Err(Fault::malformed(format!("{parent_name} has more than one {name}"))),
    }
}

/// Reading in the NMVS types namespace of the request's version.
struct Cx<'a> {
    t: &'a Ns,
}

impl Cx<'_> {
    fn one<'e>(&self, parent: &'e El, name: &str) -> Result<&'e El, Fault> {
        one(parent, self.t, name, &parent.name)
    }

    fn all<'e>(&self, parent: &'e El, name: &'e str) -> impl Iterator<Item = &'e El> + use<'e, '_> {
        parent.children.iter().filter(move |c| c.ns == *self.t && c.name == name)
    }

    fn text(&self, parent: &El, name: &str, parent_name: &str) -> Result<String, Fault> {
        let el = one(parent, self.t, name, parent_name)?;
        if !el.children.is_empty() {
            return Err(Fault::malformed(format!("{name} holds elements, not text")));
        }
        Ok(el.text.clone())
    }

    fn optional_text(&self, parent: &El, name: &str) -> Result<Option<String>, Fault> {
        match self.all(parent, name).count() {
            0 => Ok(None),
            _ => self.text(parent, name, &parent.name).map(Some),
        }
    }

    /// An attribute of the NMVS types, qualified or not.
    fn optional_attr(&self, el: &El, name: &str) -> Result<Option<String>, Fault> {
        let mut found = el.attrs.iter().filter(|(ns, n, _)| n == name && (ns == self.t || *ns == Ns::None));
        match (found.next(), found.next()) {
            (Some((_, _, v)), None) => Ok(Some(v.clone())),
            (None, _) => Ok(None),
            (Some(_), Some(_)) => {
                Err(Fault::malformed(format!("{} has the attribute {name} twice", el.name)))
            }
        }
    }

    fn attr(&self, el: &El, name: &str) -> Result<String, Fault> {
        self.optional_attr(el, name)?
            .ok_or_else(|| Fault::malformed(format!("{} has no attribute {name}", el.name)))
    }

    fn header(&self, h: &El) -> Result<RequestHeader, Fault> {
        let auth = self.one(h, "Auth")?;
        let software = match self.all(h, "UserSoftware").next() {
            Some(s) => Some((
                self.optional_attr(s, "supplier")?.unwrap_or_default(),
                self.optional_attr(s, "name")?.unwrap_or_default(),
                self.optional_attr(s, "version")?.unwrap_or_default(),
            )),
            None => None,
        };
        let trx = self.one(h, "Transaction")?;
        Ok(RequestHeader {
            client_login_id: self.text(auth, "ClientLoginId", "Auth")?,
            user_id: self.text(auth, "UserId", "Auth")?,
            password: self.text(auth, "Password", "Auth")?,
            sub_user_id: self.optional_text(auth, "SubUserId")?,
            software,
            client_trx_id: self.text(trx, "ClientTrxId", "Transaction")?,
            language: self.optional_text(trx, "Language")?.unwrap_or_else(|| "eng".to_owned()),
        })
    }

    fn product(&self, p: &El) -> Result<Product, Fault> {
        let code = self.one(p, "ProductCode")?;
        let batch = self.one(p, "Batch")?;
        Ok(Product {
            scheme: self.attr(code, "scheme")?,
            code: self.text(p, "ProductCode", "Product")?,
            batch: self.text(batch, "Id", "Batch")?,
            expiry: self.text(batch, "ExpDate", "Batch")?,
        })
    }

    fn mixed_item(&self, item: &El, i: usize) -> Result<MixedItem, Fault> {
        let mut kinds = item.children.iter().filter(|c| c.ns == *self.t);
        let (Some(el), None) = (kinds.next(), kinds.next()) else {
            return Err(Fault::malformed(format!(
                "TrxItem {} must hold exactly one Item or ItemUndo",
                i + 1
            )));
        };
        if el.name != "Item" && el.name != "ItemUndo" {
            return Err(Fault::malformed(format!(
                "TrxItem {} holds '{}': only Item and ItemUndo are taken",
                i + 1,
                el.name
            )));
        }
        let req_type = self.attr(el, "reqType")?;
        let command = Message::mixed_item(&req_type).ok_or_else(|| {
            Fault::malformed(format!("TrxItem {}: reqType '{req_type}' is not a single-pack request", i + 1))
        })?;
        // v4.0 has only Item, for undos too (as the PHP client sends them); v5.0 adds ItemUndo.
        if el.name == "ItemUndo" && !matches!(command, Command::Undo(_)) {
            return Err(Fault::malformed(format!("TrxItem {}: reqType '{req_type}' is not an undo", i + 1)));
        }
        let trx = self.one(el, "Transaction")?;
        Ok(MixedItem {
            req_type,
            command,
            product: self.product(self.one(el, "Product")?)?,
            serial: self.attr(self.one(el, "Pack")?, "sn")?,
            client_trx_id: self.text(trx, "ClientTrxId", "Transaction")?,
            ref_client_trx_id: self.optional_text(trx, "RefClientTrxId")?,
        })
    }
}
