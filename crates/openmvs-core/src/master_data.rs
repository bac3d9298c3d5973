//! Product master data as the hub receives it from an OBP (fmd-rules §5): validation with the
//! hub's codes per field (A16 missing, I1 empty or over-long), and the versioning rule.

use std::collections::BTreeSet;

use crate::ids::{MarketCode, ProductCode, Scheme};

/// Why a field was refused: the hub's code for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldCode {
    /// A mandatory field is missing.
    A16,
    /// A field is empty, too long, or not of its form.
    I1,
}

impl FieldCode {
    /// `A16` or `I1`.
    pub fn as_str(self) -> &'static str {
        match self {
            FieldCode::A16 => "A16",
            FieldCode::I1 => "I1",
        }
    }
}

/// One refused field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The hub code.
    pub code: FieldCode,
    /// The field's path, e.g. `markets[1].mah.address`.
    pub field: String,
    /// The rule it breaks.
    pub message: String,
}

/// A wholesaler designated for a market, as sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawWholesaler {
    /// Its id.
    pub id: Option<String>,
    /// Its name.
    pub name: Option<String>,
}

/// The per-market part, as sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawMarket {
    /// The market code.
    pub market: Option<String>,
    /// The national product number.
    pub national_code: Option<String>,
    /// The marketing authorisation holder's name.
    pub mah_name: Option<String>,
    /// Its address.
    pub mah_address: Option<String>,
    /// Designated wholesalers.
    pub wholesalers: Vec<RawWholesaler>,
}

/// Product master data as sent by the OBP: every field optional, so that a missing one can be
/// named with A16 instead of failing to parse.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawProduct {
    /// `GTIN` or `PPN`.
    pub scheme: Option<String>,
    /// Name.
    pub name: Option<String>,
    /// Common (INN) name.
    pub common_name: Option<String>,
    /// Pharmaceutical form.
    pub form: Option<String>,
    /// Strength.
    pub strength: Option<String>,
    /// Pack type.
    pub pack_type: Option<String>,
    /// Pack size.
    pub pack_size: Option<String>,
    /// The markets; `None` when the field is absent.
    pub markets: Option<Vec<RawMarket>>,
}

/// A designated wholesaler.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Wholesaler {
    /// Its id.
    pub id: String,
    /// Its name.
    pub name: String,
}

/// The per-market part of a product's master data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarketData {
    /// The market.
    pub market: MarketCode,
    /// The national product number.
    pub national_code: String,
    /// The marketing authorisation holder's name.
    pub mah_name: String,
    /// Its address.
    pub mah_address: String,
    /// Designated wholesalers.
    pub wholesalers: Vec<Wholesaler>,
}

/// Validated product master data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductMaster {
    /// Product code and scheme.
    pub product_code: ProductCode,
    /// Name.
    pub name: String,
    /// Common name.
    pub common_name: String,
    /// Pharmaceutical form.
    pub form: String,
    /// Strength.
    pub strength: String,
    /// Pack type.
    pub pack_type: String,
    /// Pack size.
    pub pack_size: String,
    /// The target markets, in the order sent, each once.
    pub markets: Vec<MarketData>,
}

impl ProductMaster {
    /// The target markets.
    pub fn market_codes(&self) -> BTreeSet<MarketCode> {
        self.markets.iter().map(|m| m.market).collect()
    }
}

/// The longest value of each text field, in characters.
pub mod limits {
    /// Names (product, common, MAH, wholesaler).
    pub const NAME: usize = 200;
    /// Short descriptive fields (form, strength, pack type).
    pub const SHORT: usize = 100;
    /// Pack size.
    pub const PACK_SIZE: usize = 50;
    /// Codes (national code, wholesaler id).
    pub const CODE: usize = 50;
    /// An address.
    pub const ADDRESS: usize = 500;
    /// Wholesalers per market.
    pub const WHOLESALERS: usize = 500;
}

struct Check {
    errors: Vec<FieldError>,
}

impl Check {
    fn push(&mut self, code: FieldCode, field: String, message: impl Into<String>) {
        self.errors.push(FieldError { code, field, message: message.into() });
    }

    /// A mandatory text field: A16 when absent, I1 when empty, blank or longer than `max`.
    fn text(&mut self, field: String, v: &Option<String>, max: usize) -> String {
        match v {
            None => {
                self.push(FieldCode::A16, field, "is mandatory and missing");
                String::new()
            }
            Some(s) if s.trim().is_empty() => {
                self.push(FieldCode::I1, field, "is empty");
                String::new()
            }
            Some(s) if s.chars().count() > max => {
                self.push(
                    FieldCode::I1,
                    field,
                    format!("has {} characters, at most {max}", s.chars().count()),
                );
                String::new()
            }
            Some(s) if s.chars().any(char::is_control) => {
                self.push(FieldCode::I1, field, "contains a control character");
                String::new()
            }
            Some(s) => s.clone(),
        }
    }
}

/// Validates master data for `product_code` (as given in the path). Every refused field is
/// reported, not only the first.
pub fn validate(product_code: &str, raw: &RawProduct) -> Result<ProductMaster, Vec<FieldError>> {
    let mut c = Check { errors: Vec::new() };
    let scheme = c.text("scheme".into(), &raw.scheme, 4);
    let scheme = match Scheme::parse(&scheme) {
        Ok(s) => Some(s),
        Err(_) if scheme.is_empty() => None,
        Err(e) => {
            c.push(FieldCode::I1, "scheme".into(), e.to_string());
            None
        }
    };
    let product_code = scheme.and_then(|s| match ProductCode::new(s, product_code) {
        Ok(p) => Some(p),
        Err(e) => {
            c.push(FieldCode::I1, "product_code".into(), format!("'{product_code}' {e}"));
            None
        }
    });
    let name = c.text("name".into(), &raw.name, limits::NAME);
    let common_name = c.text("common_name".into(), &raw.common_name, limits::NAME);
    let form = c.text("form".into(), &raw.form, limits::SHORT);
    let strength = c.text("strength".into(), &raw.strength, limits::SHORT);
    let pack_type = c.text("pack_type".into(), &raw.pack_type, limits::SHORT);
    let pack_size = c.text("pack_size".into(), &raw.pack_size, limits::PACK_SIZE);
    let mut markets = Vec::new();
    match &raw.markets {
        None => c.push(FieldCode::A16, "markets".into(), "is mandatory and missing"),
        Some(m) if m.is_empty() => c.push(FieldCode::I1, "markets".into(), "names no market"),
        Some(list) => {
            let mut seen = BTreeSet::new();
            for (i, m) in list.iter().enumerate() {
                let f = |name: &str| format!("markets[{i}].{name}");
                let code = c.text(f("market"), &m.market, 2);
                let market = match MarketCode::new(&code) {
                    Ok(mc) if !seen.insert(mc) => {
                        c.push(FieldCode::I1, f("market"), format!("{mc} is named twice"));
                        None
                    }
                    Ok(mc) => Some(mc),
                    Err(_) if code.is_empty() => None,
                    Err(e) => {
                        c.push(FieldCode::I1, f("market"), e.to_string());
                        None
                    }
                };
                let national_code = c.text(f("national_code"), &m.national_code, limits::CODE);
                let mah_name = c.text(f("mah.name"), &m.mah_name, limits::NAME);
                let mah_address = c.text(f("mah.address"), &m.mah_address, limits::ADDRESS);
                if m.wholesalers.len() > limits::WHOLESALERS {
                    c.push(
                        FieldCode::I1,
                        f("wholesalers"),
                        format!("{} wholesalers, at most {}", m.wholesalers.len(), limits::WHOLESALERS),
                    );
                }
                let wholesalers = m
                    .wholesalers
                    .iter()
                    .enumerate()
                    .map(|(j, w)| Wholesaler {
                        id: c.text(format!("markets[{i}].wholesalers[{j}].id"), &w.id, limits::CODE),
                        name: c.text(format!("markets[{i}].wholesalers[{j}].name"), &w.name, limits::NAME),
                    })
                    .collect();
                if let Some(market) = market {
                    markets.push(MarketData { market, national_code, mah_name, mah_address, wholesalers });
                }
            }
        }
    }
    match product_code {
        Some(product_code) if c.errors.is_empty() => Ok(ProductMaster {
            product_code,
            name,
            common_name,
            form,
            strength,
            pack_type,
            pack_size,
            markets,
        }),
        _ => Err(c.errors),
    }
}

/// What a new upload of master data means for the product's versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionDecision {
    /// The first version of a new product.
    First,
    /// Identical to the current version: nothing changes (an upload may be repeated).
    Unchanged,
    /// Different from the current version: a new version. Versions never change after the fact,
    /// so a batch stays bound to the master data (and target markets) it was uploaded under.
    NewVersion,
}

/// Decides how `new` master data relates to the product's `current` version.
pub fn decide_version(current: Option<&ProductMaster>, new: &ProductMaster) -> VersionDecision {
    match current {
        None => VersionDecision::First,
        Some(c) if c == new => VersionDecision::Unchanged,
        Some(_) => VersionDecision::NewVersion,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> Option<String> {
        Some(v.to_owned())
    }

    fn raw() -> RawProduct {
        RawProduct {
            scheme: s("GTIN"),
            name: s("Examplomab 10 mg tablets"),
            common_name: s("examplomab"),
            form: s("TABLET"),
            strength: s("10 mg"),
            pack_type: s("BLISTER"),
            pack_size: s("30"),
            markets: Some(vec![RawMarket {
                market: s("DE"),
                national_code: s("03752864"),
                mah_name: s("Example Pharma GmbH"),
                mah_address: s("Beispielstr. 1, 10115 Berlin"),
                wholesalers: vec![RawWholesaler { id: s("W1"), name: s("Grosso AG") }],
            }]),
        }
    }

    /// Validates a changed copy of the good master data and returns (code, field) of each refusal.
    fn check(change: impl FnOnce(&mut RawProduct)) -> Vec<(&'static str, String)> {
        let mut r = raw();
        change(&mut r);
        match validate("09501101530003", &r) {
            Ok(_) => Vec::new(),
            Err(es) => es.into_iter().map(|e| (e.code.as_str(), e.field)).collect(),
        }
    }

    fn one(code: &'static str, field: &str) -> Vec<(&'static str, String)> {
        vec![(code, field.to_owned())]
    }

    #[test]
    fn complete_master_data_is_accepted() {
        let p = validate("09501101530003", &raw()).unwrap();
        assert_eq!(p.product_code.as_str(), "09501101530003");
        assert_eq!(p.markets[0].market.as_str(), "DE");
        assert_eq!(p.markets[0].wholesalers[0].name, "Grosso AG");
    }

    #[test]
    fn each_missing_mandatory_field_is_a16_naming_it() {
        assert_eq!(check(|r| r.name = None), one("A16", "name"));
        assert_eq!(check(|r| r.common_name = None), one("A16", "common_name"));
        assert_eq!(check(|r| r.form = None), one("A16", "form"));
        assert_eq!(check(|r| r.strength = None), one("A16", "strength"));
        assert_eq!(check(|r| r.pack_type = None), one("A16", "pack_type"));
        assert_eq!(check(|r| r.pack_size = None), one("A16", "pack_size"));
        assert_eq!(check(|r| r.markets = None), one("A16", "markets"));
        assert_eq!(check(|r| r.scheme = None), one("A16", "scheme"));
        let m = |f: fn(&mut RawMarket)| check(|r| f(&mut r.markets.as_mut().unwrap()[0]));
        assert_eq!(m(|m| m.market = None), one("A16", "markets[0].market"));
        assert_eq!(m(|m| m.national_code = None), one("A16", "markets[0].national_code"));
        assert_eq!(m(|m| m.mah_name = None), one("A16", "markets[0].mah.name"));
        assert_eq!(m(|m| m.mah_address = None), one("A16", "markets[0].mah.address"));
        assert_eq!(m(|m| m.wholesalers[0].id = None), one("A16", "markets[0].wholesalers[0].id"));
    }

    #[test]
    fn empty_blank_or_over_long_fields_are_i1_naming_them() {
        assert_eq!(check(|r| r.name = s("")), one("I1", "name"));
        assert_eq!(check(|r| r.form = s("   ")), one("I1", "form"));
        assert_eq!(check(|r| r.name = Some("x".repeat(201))), one("I1", "name"));
        assert_eq!(check(|r| r.pack_size = Some("9".repeat(51))), one("I1", "pack_size"));
        assert_eq!(check(|r| r.strength = s("10\u{7}mg")), one("I1", "strength"));
        assert_eq!(check(|r| r.markets = Some(Vec::new())), one("I1", "markets"));
        assert!(
            check(|r| r.name = Some("é".repeat(200))).is_empty(),
            "the limit counts characters, not bytes"
        );
    }

    #[test]
    fn wrong_codes_are_i1() {
        assert_eq!(check(|r| r.scheme = s("EAN")), one("I1", "scheme"));
        assert_eq!(
            validate("09501101530004", &raw())
                .unwrap_err()
                .iter()
                .map(|e| e.field.as_str())
                .collect::<Vec<_>>(),
            ["product_code"]
        );
        assert_eq!(
            check(|r| r.markets.as_mut().unwrap()[0].market = s("US")),
            one("I1", "markets[0].market")
        );
        let twice = |r: &mut RawProduct| {
            let m = r.markets.as_ref().unwrap()[0].clone();
            r.markets.as_mut().unwrap().push(m);
        };
        assert_eq!(check(twice), one("I1", "markets[1].market"));
    }

    #[test]
    fn every_refused_field_is_reported_at_once() {
        let errors = check(|r| {
            r.name = None;
            r.form = s("");
            r.markets.as_mut().unwrap()[0].mah_address = None;
        });
        assert_eq!(
            errors,
            vec![
                ("A16", "name".to_owned()),
                ("I1", "form".to_owned()),
                ("A16", "markets[0].mah.address".to_owned())
            ]
        );
    }

    #[test]
    fn any_change_of_master_data_makes_a_new_version_and_a_repeat_does_not() {
        let v1 = validate("09501101530003", &raw()).unwrap();
        assert_eq!(decide_version(None, &v1), VersionDecision::First);
        assert_eq!(decide_version(Some(&v1), &v1.clone()), VersionDecision::Unchanged);
        let mut more_markets = raw();
        let mut fr = more_markets.markets.as_ref().unwrap()[0].clone();
        fr.market = s("FR");
        more_markets.markets.as_mut().unwrap().push(fr);
        let v2 = validate("09501101530003", &more_markets).unwrap();
        assert_eq!(decide_version(Some(&v1), &v2), VersionDecision::NewVersion);
        assert_eq!(v2.market_codes().len(), 2);
    }
}
