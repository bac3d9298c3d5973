//! Writes the answers: SOAP 1.2 envelopes whose operation element declares the prefix `ns1` for
//! the NMVS types and `ns2` for the operation, with every attribute qualified by `ns1`
//! (`ns1:sn`, `ns1:state`, `ns1:code`, `ns1:desc`) and every element the client reads present
//! at most once on its path, as software built for NMVS reads them (some read attributes by
//! their literal name `ns1:code`, against the answer's own declarations).
//!
//! Pack states are written in the NMVS catalogue's spelling: `state` is `ACTIVE` for a pack
//! that may be dispensed, `INACTIVE` for one that may not and `UNKNOWN` for a pack the system
//! does not hold; `Reason` says why a pack is inactive: its own state (`SUPPLIED`, `DESTROYED`,
//! `LOCKED`, `EXPORTED`, `SAMPLE`, `STOLEN`, `CHECKED_OUT`, `FREESAMPLE`), or else its batch's or
//! product's (`RECALLED`, `WITHDRAWN`, `EXPIRED`). One reason at most is written: a second
//! `Reason` makes some clients throw, and the return code names the rest.

use openmvs_core::answer::{AnsweredPack, BulkReport, BulkRowRequest, BulkRowResult, BulkStatus, PackAnswer};
use openmvs_core::error::ApiError;
use openmvs_core::pack::{PackState, PackView, Reason};
use openmvs_core::return_code::ReturnCode;
use quick_xml::Writer;
use quick_xml::events::{BytesDecl, BytesEnd, BytesStart, BytesText, Event};

use crate::fault::Fault;
use crate::message::{Message, SOAP12, Version};
use crate::read::Product;

/// The longest `desc` written: NMVS's `ReturnCodeDescription_Type`.
pub const MAX_DESC: usize = 255;

/// What every answer repeats of its request, and the system's own transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Context {
    /// The interface version of the request.
    pub version: Version,
    /// The message answered.
    pub message: Message,
    /// `ClientLoginId` and `UserId` as sent, echoed in the answer's `Auth`.
    pub login: Option<(String, String)>,
    /// `ClientTrxId` as sent.
    pub client_trx_id: String,
    /// `Language` as sent.
    pub language: String,
    /// The system's id of the transaction (a bulk's id for a bulk).
    pub nmvs_trx_id: String,
    /// When it was processed, RFC 3339 in UTC with milliseconds.
    pub timestamp: String,
}

/// The NMVS spelling of a pack's state and the one reason written for it: `UNKNOWN` without a
/// pack, else `ACTIVE` or `INACTIVE` by whether it may be dispensed.
pub fn nmvs_state(view: Option<&PackView>) -> (&'static str, Option<&'static str>) {
    let Some(v) = view else { return ("UNKNOWN", None) };
    let reason = match v.state {
        PackState::Active => v.reasons.first().map(|r| reason_name(*r)),
        s => Some(state_reason(s)),
    };
    (if v.dispensable { "ACTIVE" } else { "INACTIVE" }, reason)
}

/// The NMVS reason of a pack's own inactive state.
pub fn state_reason(s: PackState) -> &'static str {
    match s {
        PackState::Active => "ACTIVE",
        PackState::Supplied => "SUPPLIED",
        PackState::Destroyed => "DESTROYED",
        PackState::Exported => "EXPORTED",
        PackState::Sample => "SAMPLE",
        PackState::FreeSample => "FREESAMPLE",
        PackState::Locked => "LOCKED",
        PackState::Stolen => "STOLEN",
        PackState::CheckedOut => "CHECKED_OUT",
    }
}

/// The NMVS reason of a batch's or product's.
pub fn reason_name(r: Reason) -> &'static str {
    match r {
        Reason::Expired => "EXPIRED",
        Reason::Recalled => "RECALLED",
        Reason::Withdrawn => "WITHDRAWN",
    }
}

/// The state and reason of a bulk row, which carries the pack's state and its return code: an
/// active pack refused for its batch or product is inactive for that reason.
fn row_state(r: &BulkRowResult) -> (&'static str, Option<&'static str>) {
    match r.state {
        None => ("UNKNOWN", None),
        Some(PackState::Active) => match r.code {
            ReturnCode::BatchRecalled => ("INACTIVE", Some("RECALLED")),
            ReturnCode::ProductWithdrawn => ("INACTIVE", Some("WITHDRAWN")),
            ReturnCode::BatchExpired => ("INACTIVE", Some("EXPIRED")),
            _ => ("ACTIVE", None),
        },
        Some(s) => ("INACTIVE", Some(state_reason(s))),
    }
}

/// `desc`: the text within NMVS's limit of 255 characters.
fn desc(text: &str) -> String {
    let one_line: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    match one_line.char_indices().nth(MAX_DESC) {
        Some((at, _)) => one_line[..at].to_owned(),
        None => one_line,
    }
}

/// A refusal's description: its message and the fields at fault.
fn refusal_desc(e: &ApiError) -> String {
    let mut text = e.message.clone();
    for d in &e.details {
        text.push_str(&format!(" {}: {}.", d.field, d.message));
    }
    desc(&text)
}

struct Xml {
    w: Writer<Vec<u8>>,
}

impl Xml {
    fn new() -> Xml {
        let mut w = Writer::new(Vec::with_capacity(2048));
        // Writing into memory cannot fail.
        let _ = w.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)));
        Xml { w }
    }

    fn start(&mut self, name: &str, attrs: &[(&str, &str)]) {
        let mut e = BytesStart::new(name);
        for a in attrs {
            e.push_attribute(*a);
        }
        let _ = self.w.write_event(Event::Start(e));
    }

    fn empty(&mut self, name: &str, attrs: &[(&str, &str)]) {
        let mut e = BytesStart::new(name);
        for a in attrs {
            e.push_attribute(*a);
        }
        let _ = self.w.write_event(Event::Empty(e));
    }

    fn end(&mut self, name: &str) {
        let _ = self.w.write_event(Event::End(BytesEnd::new(name)));
    }

    fn text(&mut self, name: &str, text: &str) {
        self.start(name, &[]);
        let _ = self.w.write_event(Event::Text(BytesText::new(text)));
        self.end(name);
    }

    fn finish(self) -> Vec<u8> {
        self.w.into_inner()
    }
}

/// Opens the envelope and the operation's response element.
fn open(cx: &Context) -> Xml {
    let mut x = Xml::new();
    x.start("S:Envelope", &[("xmlns:S", SOAP12)]);
    x.start("S:Body", &[]);
    let name = format!("ns2:{}", cx.message.response_element());
    x.start(&name, &[("xmlns:ns1", cx.version.types()), ("xmlns:ns2", cx.version.wsdl_types())]);
    x
}

fn close(mut x: Xml, cx: &Context) -> Vec<u8> {
    x.end(&format!("ns2:{}", cx.message.response_element()));
    x.end("S:Body");
    x.end("S:Envelope");
    x.finish()
}

fn transaction(x: &mut Xml, cx: &Context, client_trx_id: &str, nmvs_trx_id: &str) {
    x.start("ns1:Transaction", &[]);
    x.text("ns1:Language", &cx.language);
    x.text("ns1:ClientTrxId", client_trx_id);
    x.text("ns1:NMVSTrxId", nmvs_trx_id);
    x.text("ns1:Timestamp", &cx.timestamp);
    x.end("ns1:Transaction");
}

fn header(x: &mut Xml, cx: &Context) {
    x.start("ns1:Header", &[]);
    if let Some((login, user)) = &cx.login {
        x.start("ns1:Auth", &[]);
        x.text("ns1:ClientLoginId", login);
        x.text("ns1:UserId", user);
        x.end("ns1:Auth");
    }
    transaction(x, cx, &cx.client_trx_id, &cx.nmvs_trx_id);
    x.end("ns1:Header");
}

fn return_code(x: &mut Xml, code: ReturnCode, text: &str) {
    let level = code.level().to_string();
    x.empty(
        "ns1:ReturnCode",
        &[("ns1:code", code.as_str()), ("ns1:desc", &desc(text)), ("ns1:level", &level)],
    );
}

fn product(x: &mut Xml, scheme: &str, code: &str, batch: &str, expiry: &str, intermarket: Option<bool>) {
    x.start("ns1:Product", &[]);
    x.start("ns1:ProductCode", &[("ns1:scheme", scheme)]);
    let _ = x.w.write_event(Event::Text(BytesText::new(code)));
    x.end("ns1:ProductCode");
    if let Some(flag) = intermarket {
        x.text("ns1:IntermarketFlag", if flag { "true" } else { "false" });
    }
    x.start("ns1:Batch", &[]);
    x.text("ns1:Id", batch);
    x.text("ns1:ExpDate", expiry);
    x.end("ns1:Batch");
    x.end("ns1:Product");
}

/// A pack; `code` adds its own `ReturnCode` (bulk results).
fn pack(x: &mut Xml, serial: &str, state: &str, reason: Option<&str>, code: Option<(ReturnCode, &str)>) {
    let attrs = [("ns1:sn", serial), ("ns1:state", state)];
    if reason.is_none() && code.is_none() {
        x.empty("ns1:Pack", &attrs);
        return;
    }
    x.start("ns1:Pack", &attrs);
    if let Some(r) = reason {
        x.text("ns1:Reason", r);
    }
    if let Some((c, text)) = code {
        return_code(x, c, text);
    }
    x.end("ns1:Pack");
}

/// The answer to a single-pack request the national system processed: the product and pack as
/// requested, the pack's state after it, and the return code.
pub fn single(cx: &Context, requested: &Product, serial: &str, a: &PackAnswer) -> Vec<u8> {
    let mut x = open(cx);
    header(&mut x, cx);
    x.start("ns1:Body", &[]);
    let (scheme, code, batch, expiry, sn) = match &a.pack {
        Some(AnsweredPack { id, .. }) => (
            id.product_code.scheme().as_str().to_owned(),
            id.product_code.as_str().to_owned(),
            id.batch.as_str().to_owned(),
            id.expiry.as_str().to_owned(),
            id.serial.as_str().to_owned(),
        ),
        None => (
            requested.scheme.clone(),
            requested.code.clone(),
            requested.batch.clone(),
            requested.expiry.clone(),
            serial.to_owned(),
        ),
    };
    product(&mut x, &scheme, &code, &batch, &expiry, Some(a.intermarket));
    let (state, reason) = nmvs_state(a.pack.as_ref().map(|p| &p.view));
    pack(&mut x, &sn, state, reason, None);
    return_code(&mut x, a.code, &a.message);
    x.end("ns1:Body");
    close(x, cx)
}

/// The answer to a request the national system refused (a field at fault, a role not
/// entitled, a client slowed down): the return code and what is at fault, nothing else.
pub fn refused(cx: &Context, e: &ApiError) -> Vec<u8> {
    let mut x = open(cx);
    header(&mut x, cx);
    x.start("ns1:Body", &[]);
    return_code(&mut x, e.code, &refusal_desc(e));
    x.end("ns1:Body");
    close(x, cx)
}

/// The answer to an accepted bulk or mixed bulk: its id is the `NMVSTrxId` its result is asked
/// for with (G188, G196).
pub fn accepted(cx: &Context) -> Vec<u8> {
    let mut x = open(cx);
    header(&mut x, cx);
    x.start("ns1:Body", &[]);
    return_code(&mut x, ReturnCode::Success, ReturnCode::Success.info().message);
    x.end("ns1:Body");
    close(x, cx)
}

fn pending(x: &mut Xml, report: &BulkReport) {
    let text = format!(
        "{} {} of {} rows processed.",
        ReturnCode::BulkPending.info().message,
        report.done,
        report.total
    );
    return_code(x, ReturnCode::BulkPending, &text);
}

/// G188: the result of a bulk on packs of one batch, once every pack has one; until then only a
/// return code that says so.
pub fn bulk_result(cx: &Context, report: &BulkReport, rows: &[BulkRowRequest]) -> Vec<u8> {
    let mut x = open(cx);
    header(&mut x, cx);
    x.start("ns1:Body", &[]);
    match (report.status, rows.first()) {
        (BulkStatus::Done, Some(first)) => {
            product(&mut x, &first.scheme, &first.product_code, &first.batch, &first.expiry, None);
            x.start("ns1:Packs", &[]);
            for r in &report.results {
                let (state, reason) = row_state(r);
                pack(&mut x, &r.serial, state, reason, Some((r.code, r.code.info().message)));
            }
            x.end("ns1:Packs");
            return_code(&mut x, ReturnCode::Success, ReturnCode::Success.info().message);
        }
        _ => pending(&mut x, report),
    }
    x.end("ns1:Body");
    close(x, cx)
}

/// G196: the result of a mixed bulk, item by item in request order, each with its own
/// transaction (its `ClientTrxId` as sent) and `reqType`.
pub fn mixed_result(
    cx: &Context,
    report: &BulkReport,
    rows: &[BulkRowRequest],
    req_types: &[String],
) -> Vec<u8> {
    let mut x = open(cx);
    header(&mut x, cx);
    x.start("ns1:Body", &[]);
    if report.status == BulkStatus::Done {
        x.start("ns1:TrxList", &[]);
        for (i, (r, row)) in report.results.iter().zip(rows).enumerate() {
            let req_type = req_types.get(i).map_or("", String::as_str);
            x.start("ns1:TrxItem", &[("ns1:reqType", req_type)]);
            let item_trx = format!("{}-{}", cx.nmvs_trx_id, i + 1);
            transaction(&mut x, cx, row.label.as_deref().unwrap_or(""), &item_trx);
            product(&mut x, &row.scheme, &row.product_code, &row.batch, &row.expiry, None);
            let (state, reason) = row_state(r);
            pack(&mut x, &r.serial, state, reason, Some((r.code, r.code.info().message)));
            x.end("ns1:TrxItem");
        }
        x.end("ns1:TrxList");
        return_code(&mut x, ReturnCode::Success, ReturnCode::Success.info().message);
    } else {
        pending(&mut x, report);
    }
    x.end("ns1:Body");
    close(x, cx)
}

/// A ping's answer: its `Input` as `Output`.
pub fn ping(version: Version, message: Message, input: &str) -> Vec<u8> {
    let cx = Context {
        version,
        message,
        login: None,
        client_trx_id: String::new(),
        language: String::new(),
        nmvs_trx_id: String::new(),
        timestamp: String::new(),
    };
    let mut x = open(&cx);
    x.text("ns1:Output", input);
    close(x, &cx)
}

/// A SOAP 1.2 fault, its return code also in `Detail` in the NMVS types of `version`.
pub fn fault(version: Version, f: &Fault) -> Vec<u8> {
    let mut x = Xml::new();
    x.start("env:Envelope", &[("xmlns:env", SOAP12)]);
    x.start("env:Body", &[]);
    x.start("env:Fault", &[]);
    x.start("env:Code", &[]);
    x.text("env:Value", f.code.qname());
    x.start("env:Subcode", &[]);
    x.start("env:Value", &[("xmlns:ns1", version.types())]);
    let _ = x.w.write_event(Event::Text(BytesText::new(&format!("ns1:{}", f.subcode.as_str()))));
    x.end("env:Value");
    x.end("env:Subcode");
    x.end("env:Code");
    x.start("env:Reason", &[]);
    x.start("env:Text", &[("xml:lang", "en")]);
    let _ = x.w.write_event(Event::Text(BytesText::new(&f.reason)));
    x.end("env:Text");
    x.end("env:Reason");
    x.start("env:Detail", &[]);
    x.empty(
        "ns1:ReturnCode",
        &[("xmlns:ns1", version.types()), ("ns1:code", f.subcode.as_str()), ("ns1:desc", &desc(&f.reason))],
    );
    x.end("env:Detail");
    x.end("env:Fault");
    x.end("env:Body");
    x.end("env:Envelope");
    x.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_and_reasons_take_the_nmvs_spellings() {
        let view = |state, reasons: Vec<Reason>, dispensable| PackView { state, reasons, dispensable };
        assert_eq!(nmvs_state(None), ("UNKNOWN", None));
        assert_eq!(nmvs_state(Some(&view(PackState::Active, vec![], true))), ("ACTIVE", None));
        assert_eq!(
            nmvs_state(Some(&view(PackState::FreeSample, vec![], false))),
            ("INACTIVE", Some("FREESAMPLE"))
        );
        assert_eq!(
            nmvs_state(Some(&view(PackState::Active, vec![Reason::Recalled, Reason::Expired], false))),
            ("INACTIVE", Some("RECALLED"))
        );
        assert_eq!(
            nmvs_state(Some(&view(PackState::Supplied, vec![Reason::Expired], false))),
            ("INACTIVE", Some("SUPPLIED")),
            "the pack's own state first, one reason only"
        );
        assert_eq!(state_reason(PackState::CheckedOut), "CHECKED_OUT");
    }

    #[test]
    fn a_description_is_one_line_within_the_nmvs_limit() {
        assert_eq!(desc("a\nb"), "a b");
        let long = "é".repeat(300);
        assert_eq!(desc(&long).chars().count(), MAX_DESC);
    }
}
