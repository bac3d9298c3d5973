//! Envelopes read as the namespaces say, whatever their prefixes: v4.0 and v5.0, qualified and
//! unqualified attributes, every kind of body; and refused, naming what is at fault, when they
//! are not requests.

use openmvs_core::pack::{Command, Operation};
use openmvs_soap::{FaultCode, Message, RequestBody, Service, Version, read_request};

fn auth(t: &str) -> String {
    format!(
        "<{t}:Header><{t}:Auth><{t}:ClientLoginId>DE-PH-1</{t}:ClientLoginId><{t}:UserId>till1</{t}:UserId>\
         <{t}:Password>s&amp;cret</{t}:Password><{t}:SubUserId>x</{t}:SubUserId></{t}:Auth>\
         <{t}:Transaction><{t}:ClientTrxId>c297543a-f10f-11f1-8f59-dae43521</{t}:ClientTrxId></{t}:Transaction></{t}:Header>"
    )
}

#[test]
fn any_prefixes_and_unqualified_attributes_are_read_by_namespace() {
    let xml = format!(
        "<?xml version=\"1.0\"?>\n<e:Envelope xmlns:e=\"http://www.w3.org/2003/05/soap-envelope\">\n  <e:Body>\
         <G120Request xmlns=\"urn:wsdltypes.nmvs.eu:v5.0\"><t:x xmlns:t=\"urn:types.nmvs.eu:v5.0\"/>{}\
         <t:Body xmlns:t=\"urn:types.nmvs.eu:v5.0\"><t:Product><t:ProductCode scheme=\"GTIN\">09501101530003</t:ProductCode>\
         <t:Batch><t:Id>B1</t:Id><t:ExpDate>281231</t:ExpDate></t:Batch></t:Product><t:Pack sn=\"SN&lt;1\"/>\
         <t:RefClientTrxId>r1</t:RefClientTrxId></t:Body></G120Request></e:Body></e:Envelope>",
        auth("t").replacen("<t:Header>", "<t:Header xmlns:t=\"urn:types.nmvs.eu:v5.0\">", 1)
    );
    let r = read_request(xml.as_bytes(), Service::SinglePack, Version::V5).expect("a request");
    assert_eq!(r.message, Message::Single(Command::Set(Operation::Supply)));
    let h = r.header.expect("a header");
    assert_eq!(
        (h.password.as_str(), h.sub_user_id.as_deref(), h.language.as_str()),
        ("s&cret", Some("x"), "eng")
    );
    assert_eq!(h.client_trx_id.len(), 32);
    let RequestBody::Pack { product, serial, ref_client_trx_id } = r.body else { panic!("a pack") };
    assert_eq!((product.scheme.as_str(), serial.as_str()), ("GTIN", "SN<1"));
    assert_eq!(ref_client_trx_id.as_deref(), Some("r1"));
    // v5.0 names are not v4.0's.
    let e = read_request(xml.as_bytes(), Service::SinglePack, Version::V4).unwrap_err();
    assert_eq!(e.subcode.as_str(), "NMVS_TE_NF_01");
}

#[test]
fn a_v5_mixed_bulk_takes_item_undo_and_refuses_what_it_cannot_do() {
    let item = |kind: &str, req: &str| {
        format!(
            "<t:TrxItem><t:{kind} t:reqType=\"{req}\"><t:Product><t:ProductCode t:scheme=\"GTIN\">09501101530003</t:ProductCode>\
             <t:Batch><t:Id>B1</t:Id><t:ExpDate>281231</t:ExpDate></t:Batch></t:Product><t:Pack t:sn=\"S1\"/>\
             <t:Transaction><t:ClientTrxId>i-{req}</t:ClientTrxId><t:Language>eng</t:Language></t:Transaction></t:{kind}></t:TrxItem>"
        )
    };
    let env = |items: String| {
        format!(
            "<s:Envelope xmlns:s=\"http://www.w3.org/2003/05/soap-envelope\" xmlns:w=\"urn:wsdltypes.nmvs.eu:v5.0\" \
             xmlns:t=\"urn:types.nmvs.eu:v5.0\"><s:Body><w:G195Request>{}<t:Body><t:TrxList>{items}</t:TrxList></t:Body>\
             </w:G195Request></s:Body></s:Envelope>",
            auth("t")
        )
    };
    let ok = env(format!("{}{}", item("Item", "G110"), item("ItemUndo", "G171")));
    let r = read_request(ok.as_bytes(), Service::MixedBulk, Version::V5).expect("a mixed bulk");
    let RequestBody::Mixed(items) = r.body else { panic!("items") };
    assert_eq!(
        items.iter().map(|i| i.command).collect::<Vec<_>>(),
        [Command::Verify, Command::Undo(Operation::Lock)]
    );
    assert_eq!(items[1].client_trx_id, "i-G171");
    for (bad, says) in [
        (item("Item", "G115"), "not a single-pack request"),
        (item("ItemUndo", "G120"), "not an undo"),
        (item("ItemMan", "G110"), "only Item and ItemUndo"),
        (item("Item", "G131"), "not a single-pack request"),
    ] {
        let e = read_request(env(bad).as_bytes(), Service::MixedBulk, Version::V5).unwrap_err();
        assert_eq!(e.code, FaultCode::Sender);
        assert!(e.reason.contains(says), "{e}");
    }
}

#[test]
fn what_is_not_a_request_is_refused_naming_what_is_at_fault() {
    let soap = "http://www.w3.org/2003/05/soap-envelope";
    let cases = [
        (String::from("<a"), "not well-formed"),
        (format!("<s:Envelope xmlns:s=\"{soap}\"><s:Body/></s:Envelope>"), "exactly one operation"),
        (format!("<s:Envelope xmlns:s=\"{soap}\"></s:Envelope>"), "Envelope has no Body"),
        (format!("<s:Envelope xmlns:s=\"{soap}\"><s:Body/><s:Body/></s:Envelope>"), "more than one Body"),
        (format!("<s:Envelope xmlns:s=\"{soap}\"><s:Body><u:X/></s:Body></s:Envelope>"), "prefix 'u'"),
        (format!("<!DOCTYPE x [<!ENTITY a \"b\">]><s:Envelope xmlns:s=\"{soap}\"/>"), "document type"),
        (format!("<s:Envelope xmlns:s=\"{soap}\"><s:Body>&x;</s:Body></s:Envelope>"), "'&x;' is not defined"),
        ("<Envelope/>".to_owned(), "not a SOAP 1.2 Envelope"),
        (format!("{}{}", "<a>".repeat(30), "</a>".repeat(30)), "nested deeper"),
    ];
    for (xml, says) in cases {
        let e = read_request(xml.as_bytes(), Service::Support, Version::V4).unwrap_err();
        assert!(e.reason.contains(says), "{xml}: {e}");
    }
}
