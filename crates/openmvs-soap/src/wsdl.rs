//! The WSDL of each service: WSDL 1.1 with a SOAP 1.2 document/literal binding, its schema
//! inline, describing exactly the operations served and the shapes read and written here (the
//! NMVS names and namespaces; no `SOAPAction` is needed, the operation element says which).

use crate::message::{Message, Service, Version};

/// The types every service shares, in the NMVS types namespace (`tns`).
const TYPES: &str = r#"
      <xs:complexType name="RequestAuth_Type">
        <xs:sequence>
          <xs:element name="ClientLoginId" type="xs:string"/>
          <xs:element name="UserId" type="xs:string"/>
          <xs:element name="Password" type="xs:string"/>
          <xs:element name="SubUserId" type="xs:string" minOccurs="0"/>
        </xs:sequence>
      </xs:complexType>
      <xs:complexType name="UserSoftware_Type">
        <xs:attribute name="supplier" type="xs:string"/>
        <xs:attribute name="name" type="xs:string"/>
        <xs:attribute name="version" type="xs:string"/>
      </xs:complexType>
      <xs:complexType name="RequestTransaction_Type">
        <xs:sequence>
          <xs:element name="ClientTrxId" type="tns:ClientTrxId_Type"/>
          <xs:element name="Language" type="xs:string" minOccurs="0"/>
        </xs:sequence>
      </xs:complexType>
      <xs:complexType name="RequestHeader_Type">
        <xs:sequence>
          <xs:element name="Auth" type="tns:RequestAuth_Type"/>
          <xs:element name="UserSoftware" type="tns:UserSoftware_Type" minOccurs="0"/>
          <xs:element name="Transaction" type="tns:RequestTransaction_Type"/>
        </xs:sequence>
      </xs:complexType>
      <xs:simpleType name="ClientTrxId_Type">
        <xs:restriction base="xs:string"><xs:minLength value="1"/><xs:maxLength value="100"/></xs:restriction>
      </xs:simpleType>
      <xs:simpleType name="Scheme_Type">
        <xs:restriction base="xs:string">
          <xs:enumeration value="GTIN"/>
          <xs:enumeration value="PPN"/>
        </xs:restriction>
      </xs:simpleType>
      <xs:complexType name="ProductCode_Type">
        <xs:simpleContent>
          <xs:extension base="xs:string"><xs:attribute name="scheme" type="tns:Scheme_Type" use="required"/></xs:extension>
        </xs:simpleContent>
      </xs:complexType>
      <xs:complexType name="Batch_Type">
        <xs:sequence>
          <xs:element name="Id" type="xs:string"/>
          <xs:element name="ExpDate" type="xs:string"/>
        </xs:sequence>
      </xs:complexType>
      <xs:complexType name="RequestProduct_Type">
        <xs:sequence>
          <xs:element name="ProductCode" type="tns:ProductCode_Type"/>
          <xs:element name="Batch" type="tns:Batch_Type"/>
        </xs:sequence>
      </xs:complexType>
      <xs:complexType name="RequestPack_Type">
        <xs:attribute name="sn" type="xs:string" use="required"/>
      </xs:complexType>
      <xs:complexType name="SinglePackBody_Type">
        <xs:sequence>
          <xs:element name="Product" type="tns:RequestProduct_Type"/>
          <xs:element name="Pack" type="tns:RequestPack_Type"/>
          <xs:element name="RefClientTrxId" type="tns:ClientTrxId_Type" minOccurs="0"/>
        </xs:sequence>
      </xs:complexType>
      <xs:complexType name="BulkBody_Type">
        <xs:sequence>
          <xs:element name="Product" type="tns:RequestProduct_Type"/>
          <xs:element name="Packs">
            <xs:complexType>
              <xs:sequence><xs:element name="Pack" type="tns:RequestPack_Type" maxOccurs="100000"/></xs:sequence>
            </xs:complexType>
          </xs:element>
          <xs:element name="RefClientTrxId" type="tns:ClientTrxId_Type" minOccurs="0"/>
        </xs:sequence>
      </xs:complexType>
      <xs:complexType name="ResultBody_Type">
        <xs:sequence><xs:element name="RefNMVSTrxId" type="xs:string"/></xs:sequence>
      </xs:complexType>
      <xs:complexType name="MixedTransaction_Type">
        <xs:sequence>
          <xs:element name="ClientTrxId" type="tns:ClientTrxId_Type"/>
          <xs:element name="Language" type="xs:string" minOccurs="0"/>
          <xs:element name="RefClientTrxId" type="tns:ClientTrxId_Type" minOccurs="0"/>
        </xs:sequence>
      </xs:complexType>
      <xs:complexType name="MixedItem_Type">
        <xs:sequence>
          <xs:element name="Product" type="tns:RequestProduct_Type"/>
          <xs:element name="Pack" type="tns:RequestPack_Type"/>
          <xs:element name="Transaction" type="tns:MixedTransaction_Type"/>
        </xs:sequence>
        <xs:attribute name="reqType" type="tns:SingleUseCase_Type" use="required"/>
      </xs:complexType>
      <xs:simpleType name="SingleUseCase_Type">
        <xs:restriction base="xs:string">{SINGLE_CODES}
        </xs:restriction>
      </xs:simpleType>
      <xs:complexType name="MixedBody_Type">
        <xs:sequence>
          <xs:element name="TrxList">
            <xs:complexType>
              <xs:sequence>
                <xs:element name="TrxItem" maxOccurs="100000">
                  <xs:complexType>
                    <xs:choice>
                      <xs:element name="Item" type="tns:MixedItem_Type"/>
                      <xs:element name="ItemUndo" type="tns:MixedItem_Type"/>
                    </xs:choice>
                  </xs:complexType>
                </xs:element>
              </xs:sequence>
            </xs:complexType>
          </xs:element>
        </xs:sequence>
      </xs:complexType>
      <xs:complexType name="ResponseAuth_Type">
        <xs:sequence>
          <xs:element name="ClientLoginId" type="xs:string"/>
          <xs:element name="UserId" type="xs:string"/>
        </xs:sequence>
      </xs:complexType>
      <xs:complexType name="ResponseTransaction_Type">
        <xs:sequence>
          <xs:element name="Language" type="xs:string"/>
          <xs:element name="ClientTrxId" type="xs:string"/>
          <xs:element name="NMVSTrxId" type="xs:string"/>
          <xs:element name="Timestamp" type="xs:dateTime"/>
        </xs:sequence>
      </xs:complexType>
      <xs:complexType name="ResponseHeader_Type">
        <xs:sequence>
          <xs:element name="Auth" type="tns:ResponseAuth_Type" minOccurs="0"/>
          <xs:element name="Transaction" type="tns:ResponseTransaction_Type"/>
        </xs:sequence>
      </xs:complexType>
      <xs:complexType name="ReturnCode_Type">
        <xs:annotation><xs:documentation>The return code, its description and its level (1 success to 5 alert), from the return-code catalogue (GET /v1/return-codes).</xs:documentation></xs:annotation>
        <xs:attribute name="code" type="xs:string" use="required"/>
        <xs:attribute name="desc" type="xs:string"/>
        <xs:attribute name="level" type="xs:int"/>
      </xs:complexType>
      <xs:simpleType name="PackState_Type">
        <xs:restriction base="xs:string">
          <xs:enumeration value="ACTIVE"/>
          <xs:enumeration value="INACTIVE"/>
          <xs:enumeration value="UNKNOWN"/>
        </xs:restriction>
      </xs:simpleType>
      <xs:simpleType name="Reason_Type">
        <xs:restriction base="xs:string">
          <xs:enumeration value="SUPPLIED"/>
          <xs:enumeration value="DESTROYED"/>
          <xs:enumeration value="LOCKED"/>
          <xs:enumeration value="EXPORTED"/>
          <xs:enumeration value="SAMPLE"/>
          <xs:enumeration value="STOLEN"/>
          <xs:enumeration value="CHECKED_OUT"/>
          <xs:enumeration value="FREESAMPLE"/>
          <xs:enumeration value="RECALLED"/>
          <xs:enumeration value="EXPIRED"/>
          <xs:enumeration value="WITHDRAWN"/>
        </xs:restriction>
      </xs:simpleType>
      <xs:complexType name="ResponseProduct_Type">
        <xs:sequence>
          <xs:element name="ProductCode" type="tns:ProductCode_Type"/>
          <xs:element name="IntermarketFlag" type="xs:boolean" minOccurs="0"/>
          <xs:element name="Batch" type="tns:Batch_Type"/>
        </xs:sequence>
      </xs:complexType>
      <xs:complexType name="ResponsePack_Type">
        <xs:sequence>
          <xs:element name="Reason" type="tns:Reason_Type" minOccurs="0"/>
          <xs:element name="ReturnCode" type="tns:ReturnCode_Type" minOccurs="0"/>
        </xs:sequence>
        <xs:attribute name="sn" type="xs:string" use="required"/>
        <xs:attribute name="state" type="tns:PackState_Type" use="required"/>
      </xs:complexType>
      <xs:complexType name="SinglePackResponseBody_Type">
        <xs:sequence>
          <xs:sequence minOccurs="0">
            <xs:element name="Product" type="tns:ResponseProduct_Type"/>
            <xs:element name="Pack" type="tns:ResponsePack_Type"/>
          </xs:sequence>
          <xs:element name="ReturnCode" type="tns:ReturnCode_Type"/>
        </xs:sequence>
      </xs:complexType>
      <xs:complexType name="AcceptedBody_Type">
        <xs:sequence><xs:element name="ReturnCode" type="tns:ReturnCode_Type"/></xs:sequence>
      </xs:complexType>
      <xs:complexType name="BulkResultBody_Type">
        <xs:sequence>
          <xs:sequence minOccurs="0">
            <xs:element name="Product" type="tns:ResponseProduct_Type"/>
            <xs:element name="Packs">
              <xs:complexType>
                <xs:sequence><xs:element name="Pack" type="tns:ResponsePack_Type" maxOccurs="100000"/></xs:sequence>
              </xs:complexType>
            </xs:element>
          </xs:sequence>
          <xs:element name="ReturnCode" type="tns:ReturnCode_Type"/>
        </xs:sequence>
      </xs:complexType>
      <xs:complexType name="MixedResultBody_Type">
        <xs:sequence>
          <xs:element name="TrxList" minOccurs="0">
            <xs:complexType>
              <xs:sequence>
                <xs:element name="TrxItem" maxOccurs="100000">
                  <xs:complexType>
                    <xs:sequence>
                      <xs:element name="Transaction" type="tns:ResponseTransaction_Type"/>
                      <xs:element name="Product" type="tns:ResponseProduct_Type"/>
                      <xs:element name="Pack" type="tns:ResponsePack_Type"/>
                    </xs:sequence>
                    <xs:attribute name="reqType" type="tns:SingleUseCase_Type" use="required"/>
                  </xs:complexType>
                </xs:element>
              </xs:sequence>
            </xs:complexType>
          </xs:element>
          <xs:element name="ReturnCode" type="tns:ReturnCode_Type"/>
        </xs:sequence>
      </xs:complexType>"#;

/// The request and response body types of a message, in the types namespace.
fn bodies(m: Message) -> Option<(&'static str, &'static str)> {
    match m {
        Message::Single(_) => Some(("SinglePackBody_Type", "SinglePackResponseBody_Type")),
        Message::Bulk(_) => Some(("BulkBody_Type", "AcceptedBody_Type")),
        Message::BulkResult => Some(("ResultBody_Type", "BulkResultBody_Type")),
        Message::MixedBulk => Some(("MixedBody_Type", "AcceptedBody_Type")),
        Message::MixedBulkResult => Some(("ResultBody_Type", "MixedResultBody_Type")),
        Message::Ping(_) => None,
    }
}

/// The WSDL of `service` in `version`, with its endpoint at `location` (an absolute URL).
pub fn wsdl(service: Service, version: Version, location: &str) -> String {
    let name = format!("{}{}", service.name(), version.suffix());
    let single_codes: String = Message::ALL
        .iter()
        .filter(|m| matches!(m, Message::Single(_)))
        .map(|m| format!("\n          <xs:enumeration value=\"{}\"/>", m.code()))
        .collect();
    let types = TYPES.replace("{SINGLE_CODES}", &single_codes);
    let mut elements = String::new();
    let mut messages = String::new();
    let mut port = String::new();
    let mut binding = String::new();
    for m in service.messages() {
        let (req, resp) = (m.request_element(), m.response_element());
        match bodies(m) {
            Some((body, answer)) => elements.push_str(&format!(
                r#"
      <xs:element name="{req}">
        <xs:complexType><xs:sequence>
          <xs:element name="Header" type="t:RequestHeader_Type"/>
          <xs:element name="Body" type="t:{body}"/>
        </xs:sequence></xs:complexType>
      </xs:element>
      <xs:element name="{resp}">
        <xs:complexType><xs:sequence>
          <xs:element name="Header" type="t:ResponseHeader_Type"/>
          <xs:element name="Body" type="t:{answer}"/>
        </xs:sequence></xs:complexType>
      </xs:element>"#
            )),
            None => elements.push_str(&format!(
                r#"
      <xs:element name="{req}">
        <xs:complexType><xs:sequence><xs:element name="Input" type="xs:string"/></xs:sequence></xs:complexType>
      </xs:element>
      <xs:element name="{resp}">
        <xs:complexType><xs:sequence><xs:element name="Output" type="xs:string"/></xs:sequence></xs:complexType>
      </xs:element>"#
            )),
        }
        messages.push_str(&format!(
            r#"
  <wsdl:message name="{req}"><wsdl:part name="parameters" element="w:{req}"/></wsdl:message>
  <wsdl:message name="{resp}"><wsdl:part name="parameters" element="w:{resp}"/></wsdl:message>"#
        ));
        let op = m.code();
        port.push_str(&format!(
            r#"
    <wsdl:operation name="{op}">
      <wsdl:input message="w:{req}"/>
      <wsdl:output message="w:{resp}"/>
    </wsdl:operation>"#
        ));
        binding.push_str(&format!(
            r#"
    <wsdl:operation name="{op}">
      <soap12:operation soapAction="" soapActionRequired="false" style="document"/>
      <wsdl:input><soap12:body use="literal"/></wsdl:input>
      <wsdl:output><soap12:body use="literal"/></wsdl:output>
    </wsdl:operation>"#
        ));
    }
    let (t, w) = (version.types(), version.wsdl_types());
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<wsdl:definitions name="{name}" targetNamespace="{w}"
    xmlns:wsdl="http://schemas.xmlsoap.org/wsdl/" xmlns:soap12="http://schemas.xmlsoap.org/wsdl/soap12/"
    xmlns:xs="http://www.w3.org/2001/XMLSchema" xmlns:w="{w}" xmlns:t="{t}">
  <wsdl:documentation>OpenMVS: the NMVS {name} of a national system. Credentials travel in each operation's Header/Auth; the SOAP header is empty; no SOAPAction is needed. Business outcomes are answers with a ReturnCode; SOAP faults mean a malformed envelope, an unknown operation or a failed login.</wsdl:documentation>
  <wsdl:types>
    <xs:schema targetNamespace="{t}" xmlns:tns="{t}" elementFormDefault="qualified" attributeFormDefault="qualified">{types}
    </xs:schema>
    <xs:schema targetNamespace="{w}" xmlns:t="{t}" elementFormDefault="qualified" attributeFormDefault="qualified">
      <xs:import namespace="{t}"/>{elements}
    </xs:schema>
  </wsdl:types>{messages}
  <wsdl:portType name="{name}PortType">{port}
  </wsdl:portType>
  <wsdl:binding name="{name}Binding" type="w:{name}PortType">
    <soap12:binding style="document" transport="http://schemas.xmlsoap.org/soap/http"/>{binding}
  </wsdl:binding>
  <wsdl:service name="{name}">
    <wsdl:port name="{name}Port" binding="w:{name}Binding">
      <soap12:address location="{location}"/>
    </wsdl:port>
  </wsdl:service>
</wsdl:definitions>
"#,
        location = quick_xml::escape::escape(location),
    )
}
