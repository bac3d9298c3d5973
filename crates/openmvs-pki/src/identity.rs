//! Who a client certificate names: the DNS name written into each kind of client certificate,
//! and the way back from a verified peer's DNS names to an [`Identity`].
//!
//! Identity rests on the subject alternative name alone, never on the common name: webpki
//! verifies DNS names but does not look at the common name, so a name that decides who may call
//! must be a SAN. Names under `openmvs` are a private namespace (no such public top-level domain
//! exists), and only this CA issues client certificates that the hub and national systems trust.

use crate::PkiError;

/// The DNS name on the hub's client certificate.
pub const HUB_DNS_NAME: &str = "hub.openmvs";

/// The private namespace of client identities; server certificates may not use it.
pub(crate) const NAMESPACE_SUFFIX: &str = ".openmvs";

const NATIONAL_SUFFIX: &str = ".national.openmvs";
const OBP_SUFFIX: &str = ".obp.openmvs";

/// The longest client id, so that `<id>.obp.openmvs` stays well inside a 63-character DNS label.
pub const CLIENT_ID_MAX_LEN: usize = 40;

/// What a client certificate is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientKind {
    /// The hub, calling a national system.
    Hub,
    /// The national system of a market (two upper-case letters, e.g. `DE`), calling the hub.
    National(String),
    /// An on-boarding partner calling the hub's OBP API; the client id is the OBP id.
    Obp,
}

/// Who called, as told by a verified client certificate.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Identity {
    /// The hub.
    Hub,
    /// The national system of this market (upper case, e.g. `DE`).
    National(String),
    /// The on-boarding partner with this id.
    Obp(String),
}

impl Identity {
    /// The DNS name a certificate for this identity carries, e.g. `acme-pharma.obp.openmvs`.
    pub fn dns_name(&self) -> String {
        match self {
            Identity::Hub => HUB_DNS_NAME.to_owned(),
            Identity::National(market) => format!("{}{NATIONAL_SUFFIX}", market.to_ascii_lowercase()),
            Identity::Obp(id) => format!("{id}{OBP_SUFFIX}"),
        }
    }
}

/// The identity named by a verified peer's DNS names, or `None` when they name no identity of
/// this CA's namespace, or name more than one.
///
/// Pass the names only after the certificate chain has been verified against this CA (as the
/// HTTP server does before it hands them on as `PeerName`): the names prove nothing by
/// themselves. Names are compared exactly, without case folding, because this CA writes them in
/// lower case and nothing else is one of its names.
pub fn identity_of(dns_names: &[String]) -> Option<Identity> {
    let mut found: Option<Identity> = None;
    for identity in dns_names.iter().filter_map(|n| identity_of_name(n)) {
        match &found {
            None => found = Some(identity),
            Some(earlier) if *earlier == identity => {}
            // A certificate naming two identities is not one this CA issues; trusting either
            // name would be a guess.
            Some(_) => return None,
        }
    }
    found
}

fn identity_of_name(name: &str) -> Option<Identity> {
    if name == HUB_DNS_NAME {
        return Some(Identity::Hub);
    }
    if let Some(market) = name.strip_suffix(NATIONAL_SUFFIX) {
        let is_market = market.len() == 2 && market.bytes().all(|b| b.is_ascii_lowercase());
        return is_market.then(|| Identity::National(market.to_ascii_uppercase()));
    }
    if let Some(id) = name.strip_suffix(OBP_SUFFIX) {
        return check_client_id(id).is_ok().then(|| Identity::Obp(id.to_owned()));
    }
    None
}

/// Checks a client id: 1-40 characters of `a-z`, `0-9` and `-`, not starting or ending with `-`.
///
/// The rule makes an OBP id a valid DNS label, so that `<id>.obp.openmvs` needs no escaping and
/// reads back to the same id.
pub fn check_client_id(id: &str) -> Result<(), PkiError> {
    let refuse = |problem: String| Err(PkiError::InvalidClientId { id: id.to_owned(), problem });
    if id.is_empty() {
        return refuse("is empty".to_owned());
    }
    let len = id.chars().count();
    if len > CLIENT_ID_MAX_LEN {
        return refuse(format!("is {len} characters long"));
    }
    if let Some((pos, c)) =
        id.chars().enumerate().find(|(_, c)| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return refuse(format!("has {c:?} at position {}", pos + 1));
    }
    if id.starts_with('-') {
        return refuse("starts with '-'".to_owned());
    }
    if id.ends_with('-') {
        return refuse("ends with '-'".to_owned());
    }
    Ok(())
}

/// Checks a market code: two upper-case ASCII letters, as markets are written everywhere else.
pub(crate) fn check_market(market: &str) -> Result<(), PkiError> {
    if market.len() == 2 && market.bytes().all(|b| b.is_ascii_uppercase()) {
        Ok(())
    } else {
        Err(PkiError::InvalidMarket(market.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn each_kind_of_name_maps_to_its_identity() {
        let cases = [
            ("hub.openmvs", Identity::Hub),
            ("de.national.openmvs", Identity::National("DE".to_owned())),
            ("acme-pharma.obp.openmvs", Identity::Obp("acme-pharma".to_owned())),
            ("a.obp.openmvs", Identity::Obp("a".to_owned())),
        ];
        for (name, expected) in cases {
            assert_eq!(identity_of(&names(&[name])), Some(expected.clone()), "{name}");
            assert_eq!(expected.dns_name(), name);
        }
    }

    #[test]
    fn foreign_and_malformed_names_map_to_no_identity() {
        for name in [
            "pharmacy.example",
            "localhost",
            "openmvs",
            "hub.openmvs.evil.example",
            "HUB.OPENMVS",
            "DE.national.openmvs",
            "deu.national.openmvs",
            ".national.openmvs",
            "d1.national.openmvs",
            ".obp.openmvs",
            "Acme.obp.openmvs",
            "-acme.obp.openmvs",
            "acme.pharma.obp.openmvs",
            "acme.obp.openmvs.evil.example",
        ] {
            assert_eq!(identity_of(&names(&[name])), None, "{name}");
        }
        assert_eq!(identity_of(&[]), None);
    }

    #[test]
    fn a_certificate_naming_two_identities_names_none() {
        assert_eq!(identity_of(&names(&["hub.openmvs", "acme.obp.openmvs"])), None);
        assert_eq!(identity_of(&names(&["a.obp.openmvs", "b.obp.openmvs"])), None);
    }

    #[test]
    fn foreign_names_beside_one_identity_do_not_hide_it() {
        assert_eq!(
            identity_of(&names(&["localhost", "acme.obp.openmvs", "acme.obp.openmvs"])),
            Some(Identity::Obp("acme".to_owned()))
        );
    }

    #[test]
    fn client_ids_follow_the_dns_label_rule() {
        let longest = "a".repeat(CLIENT_ID_MAX_LEN);
        for good in ["a", "acme-pharma", "0", "obp-7", "a-b-c", longest.as_str()] {
            assert!(check_client_id(good).is_ok(), "{good}");
        }
        let too_long = "a".repeat(CLIENT_ID_MAX_LEN + 1);
        let refused = [
            ("", "is empty"),
            (too_long.as_str(), "is 41 characters long"),
            ("Acme", "has 'A' at position 1"),
            ("acme_pharma", "has '_' at position 5"),
            ("acme.pharma", "has '.' at position 5"),
            ("acmé", "has 'é' at position 4"),
            ("-acme", "starts with '-'"),
            ("acme-", "ends with '-'"),
        ];
        for (id, problem) in refused {
            let message = check_client_id(id).expect_err(id).to_string();
            assert!(message.contains(problem), "{id}: {message}");
            assert!(message.contains("1-40 characters of a-z, 0-9 and '-'"), "{id}: {message}");
        }
    }

    #[test]
    fn markets_are_two_upper_case_letters() {
        assert!(check_market("DE").is_ok());
        for bad in ["de", "D", "DEU", "D1", ""] {
            assert!(check_market(bad).is_err(), "{bad}");
        }
    }
}
