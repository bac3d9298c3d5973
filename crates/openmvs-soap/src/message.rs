//! The catalogue of what is served: the two NMVS interface versions, the four services and every
//! message each takes, with the command of the national system it stands for.

use openmvs_core::pack::{Command, Operation};

/// The SOAP 1.2 envelope namespace.
pub const SOAP12: &str = "http://www.w3.org/2003/05/soap-envelope";
/// The SOAP 1.1 envelope namespace, answered with a `VersionMismatch` fault.
pub const SOAP11: &str = "http://schemas.xmlsoap.org/soap/envelope/";

/// A version of the NMVS interface; they differ in their namespaces and service names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Version {
    /// v4.0.
    V4,
    /// v5.0.
    V5,
}

impl Version {
    /// Both versions.
    pub const ALL: [Version; 2] = [Version::V4, Version::V5];

    /// The namespace of the operation elements (`urn:wsdltypes.nmvs.eu:v4.0`).
    pub fn wsdl_types(self) -> &'static str {
        match self {
            Version::V4 => "urn:wsdltypes.nmvs.eu:v4.0",
            Version::V5 => "urn:wsdltypes.nmvs.eu:v5.0",
        }
    }

    /// The namespace of everything inside them (`urn:types.nmvs.eu:v4.0`).
    pub fn types(self) -> &'static str {
        match self {
            Version::V4 => "urn:types.nmvs.eu:v4.0",
            Version::V5 => "urn:types.nmvs.eu:v5.0",
        }
    }

    /// The suffix of the service names, `V40` or `V50`.
    pub fn suffix(self) -> &'static str {
        match self {
            Version::V4 => "V40",
            Version::V5 => "V50",
        }
    }
}

/// One of the NMVS web services.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Service {
    /// `WS_SINGLE_TRANSACTIONS_V1/SinglePackService`.
    SinglePack,
    /// `WS_BULK_TRANSACTIONS_V1/BulkService`.
    Bulk,
    /// `WS_MIXED_BULK_TRANSACTIONS_V1/MixedBulkService`.
    MixedBulk,
    /// `WS_SUPPORT_V1/SupportService`.
    Support,
}

impl Service {
    /// Every service.
    pub const ALL: [Service; 4] = [Service::SinglePack, Service::Bulk, Service::MixedBulk, Service::Support];

    /// The service's name without its version, e.g. `SinglePackService`.
    pub fn name(self) -> &'static str {
        match self {
            Service::SinglePack => "SinglePackService",
            Service::Bulk => "BulkService",
            Service::MixedBulk => "MixedBulkService",
            Service::Support => "SupportService",
        }
    }

    /// The path NMVS serves it at in `version`, e.g.
    /// `/WS_SINGLE_TRANSACTIONS_V1/SinglePackServiceV40`.
    pub fn path(self, version: Version) -> String {
        let folder = match self {
            Service::SinglePack => "WS_SINGLE_TRANSACTIONS_V1",
            Service::Bulk => "WS_BULK_TRANSACTIONS_V1",
            Service::MixedBulk => "WS_MIXED_BULK_TRANSACTIONS_V1",
            Service::Support => "WS_SUPPORT_V1",
        };
        format!("/{folder}/{}{}", self.name(), version.suffix())
    }

    /// The service and version served at `path`.
    pub fn at(path: &str) -> Option<(Service, Version)> {
        Service::ALL
            .into_iter()
            .flat_map(|s| Version::ALL.into_iter().map(move |v| (s, v)))
            .find(|(s, v)| s.path(*v) == path)
    }

    /// The messages the service takes, in catalogue order.
    pub fn messages(self) -> impl Iterator<Item = Message> {
        Message::ALL.iter().copied().filter(move |m| m.service() == self)
    }
}

/// A message NMVS software sends, by what it asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Message {
    /// A single-pack request (G110-G180): the command on one pack.
    Single(Command),
    /// A bulk request on packs of one batch (G115-G185): the command on each.
    Bulk(Command),
    /// G188: the result of a bulk request.
    BulkResult,
    /// G195: a bulk of single-pack requests of any kind.
    MixedBulk,
    /// G196: the result of a mixed bulk.
    MixedBulkResult,
    /// The service's ping.
    Ping(Service),
}

use Command::{Set, Undo, Verify};
use Operation::{Destroy, Export, FreeSample, Lock, Sample, Stolen, Supply};

/// Every message with its use-case number (the name of its element without `Request`).
const CATALOGUE: &[(Message, &str)] = &[
    (Message::Single(Verify), "G110"),
    (Message::Single(Set(Supply)), "G120"),
    (Message::Single(Undo(Supply)), "G121"),
    (Message::Single(Set(Destroy)), "G130"),
    (Message::Single(Set(Export)), "G140"),
    (Message::Single(Undo(Export)), "G141"),
    (Message::Single(Set(Sample)), "G150"),
    (Message::Single(Undo(Sample)), "G151"),
    (Message::Single(Set(FreeSample)), "G160"),
    (Message::Single(Undo(FreeSample)), "G161"),
    (Message::Single(Set(Lock)), "G170"),
    (Message::Single(Undo(Lock)), "G171"),
    (Message::Single(Set(Stolen)), "G180"),
    (Message::Bulk(Verify), "G115"),
    (Message::Bulk(Set(Supply)), "G125"),
    (Message::Bulk(Undo(Supply)), "G127"),
    (Message::Bulk(Set(Destroy)), "G135"),
    (Message::Bulk(Set(Export)), "G145"),
    (Message::Bulk(Undo(Export)), "G147"),
    (Message::Bulk(Set(Sample)), "G155"),
    (Message::Bulk(Undo(Sample)), "G157"),
    (Message::Bulk(Set(FreeSample)), "G165"),
    (Message::Bulk(Undo(FreeSample)), "G167"),
    (Message::Bulk(Set(Lock)), "G175"),
    (Message::Bulk(Undo(Lock)), "G177"),
    (Message::Bulk(Set(Stolen)), "G185"),
    (Message::BulkResult, "G188"),
    (Message::MixedBulk, "G195"),
    (Message::MixedBulkResult, "G196"),
    (Message::Ping(Service::SinglePack), "SinglePackPing"),
    (Message::Ping(Service::Bulk), "BulkPing"),
    (Message::Ping(Service::MixedBulk), "MixedBulkPing"),
    (Message::Ping(Service::Support), "SupportPing"),
];

impl Message {
    /// Every message, in catalogue order.
    pub const ALL: &'static [Message] = &{
        let mut all = [Message::BulkResult; CATALOGUE.len()];
        let mut i = 0;
        while i < CATALOGUE.len() {
            all[i] = CATALOGUE[i].0;
            i += 1;
        }
        all
    };

    /// The use-case number (`G110`), or the ping's name (`SupportPing`).
    pub fn code(self) -> &'static str {
        CATALOGUE.iter().find(|(m, _)| *m == self).map_or("", |(_, c)| c)
    }

    /// The message whose use-case number is `code`.
    pub fn by_code(code: &str) -> Option<Message> {
        CATALOGUE.iter().find(|(_, c)| *c == code).map(|(m, _)| *m)
    }

    /// The name of its request element, e.g. `G110Request`.
    pub fn request_element(self) -> String {
        format!("{}Request", self.code())
    }

    /// The name of its response element, e.g. `G110Response`.
    pub fn response_element(self) -> String {
        format!("{}Response", self.code())
    }

    /// The message a request element names, e.g. `G110Request`.
    pub fn by_request_element(name: &str) -> Option<Message> {
        name.strip_suffix("Request").and_then(Message::by_code)
    }

    /// The service that takes it.
    pub fn service(self) -> Service {
        match self {
            Message::Single(_) => Service::SinglePack,
            Message::Bulk(_) | Message::BulkResult => Service::Bulk,
            Message::MixedBulk | Message::MixedBulkResult => Service::MixedBulk,
            Message::Ping(s) => s,
        }
    }

    /// The single-pack request a mixed-bulk item's `reqType` names (`G110`-`G180`).
    pub fn mixed_item(code: &str) -> Option<Command> {
        match Message::by_code(code)? {
            Message::Single(c) => Some(c),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_has_one_code_and_one_service_path_per_version() {
        for (i, m) in Message::ALL.iter().enumerate() {
            assert_eq!(Message::by_code(m.code()), Some(*m));
            assert!(!Message::ALL[i + 1..].contains(m));
            assert_eq!(Message::by_request_element(&m.request_element()), Some(*m));
        }
        assert_eq!(
            Service::at("/WS_SINGLE_TRANSACTIONS_V1/SinglePackServiceV40"),
            Some((Service::SinglePack, Version::V4))
        );
        assert_eq!(Service::at("/WS_SUPPORT_V1/SupportServiceV50"), Some((Service::Support, Version::V5)));
        assert_eq!(Service::at("/WS_SUPPORT_V1/SupportServiceV41"), None);
        assert_eq!(Service::Bulk.messages().count(), 15);
    }

    #[test]
    fn the_use_cases_name_the_commands_of_the_national_system() {
        assert_eq!(Message::by_code("G121"), Some(Message::Single(Undo(Supply))));
        assert_eq!(Message::by_code("G177"), Some(Message::Bulk(Undo(Lock))));
        assert_eq!(Message::mixed_item("G171"), Some(Undo(Lock)));
        assert_eq!(Message::mixed_item("G115"), None);
        assert_eq!(Message::by_code("G131"), None, "a destruction is never undone");
    }
}
