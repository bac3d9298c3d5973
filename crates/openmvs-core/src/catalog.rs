//! The hub's catalogue rules as pure decisions (api.md §3): who may upload a product and which
//! version an upload makes, which markets a new batch goes to, and what a recall or a withdrawal
//! adds. The hub reads the records, passes their facts in, and commits what comes out; a refusal
//! is an [`ApiError`] naming the field at fault.

use std::collections::BTreeSet;

use crate::error::ApiError;
use crate::ids::{Batch, Expiry, MarketCode, ProductCode};
use crate::master_data::{ProductMaster, VersionDecision, decide_version};
use crate::return_code::ReturnCode;

/// The answer to a product upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductAnswer {
    /// The product code.
    pub product_code: ProductCode,
    /// The current master data version: unchanged by an identical upload.
    pub version: u32,
}

/// The answer to a batch upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchAnswer {
    /// The product code.
    pub product_code: ProductCode,
    /// The batch.
    pub batch: Batch,
    /// The product version the batch is bound to.
    pub version: u32,
    /// Its target markets, in market order.
    pub markets: Vec<MarketCode>,
}

/// The answer to a recall.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecallAnswer {
    /// The product code.
    pub product_code: ProductCode,
    /// The batch.
    pub batch: Batch,
    /// Every market the batch is recalled in now, in market order.
    pub recalled: Vec<MarketCode>,
}

/// The answer to a withdrawal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WithdrawalAnswer {
    /// The product code.
    pub product_code: ProductCode,
    /// Every market the product is withdrawn from now, in market order.
    pub withdrawn: Vec<MarketCode>,
}

/// The longest recall or withdrawal reason, in characters.
pub const MAX_REASON: usize = 500;

/// The longest OBP name, in characters.
pub const MAX_OBP_NAME: usize = 200;

/// Checks an OBP's name: 1 to [`MAX_OBP_NAME`] characters, not only blanks (400 naming `name`).
pub fn check_obp_name(name: &str) -> Result<(), ApiError> {
    if name.trim().is_empty() || name.chars().count() > MAX_OBP_NAME {
        return Err(ApiError::malformed("name", format!("must be 1 to {MAX_OBP_NAME} characters")));
    }
    Ok(())
}

/// Checks the reason of a recall or a withdrawal: not blank, at most [`MAX_REASON`] characters
/// (400 naming `reason`).
pub fn check_reason(reason: &str) -> Result<(), ApiError> {
    if reason.trim().is_empty() {
        return Err(ApiError::malformed("reason", "is empty"));
    }
    if reason.chars().count() > MAX_REASON {
        return Err(ApiError::malformed("reason", format!("is longer than {MAX_REASON} characters")));
    }
    Ok(())
}

/// Parses the market codes named in a request: each must be valid and among `allowed`, and the
/// list must not be empty. Refusals are 422 I1 naming `markets` (or `markets[i]`); `what` names
/// whose target markets `allowed` are.
pub fn named_markets(
    list: &[String],
    allowed: &BTreeSet<MarketCode>,
    what: &str,
) -> Result<BTreeSet<MarketCode>, ApiError> {
    if list.is_empty() {
        return Err(ApiError::invalid("markets", "names no market"));
    }
    let mut out = BTreeSet::new();
    for (i, s) in list.iter().enumerate() {
        let m = MarketCode::new(s)
            .map_err(|e| ApiError::invalid(format!("markets[{i}]"), format!("'{s}' {e}")))?;
        if !allowed.contains(&m) {
            let allowed: Vec<&str> = allowed.iter().map(MarketCode::as_str).collect();
            return Err(ApiError::invalid(
                "markets",
                format!("{m} is not a target market of the {what} (those are {})", allowed.join(", ")),
            ));
        }
        out.insert(m);
    }
    Ok(out)
}

/// The product as the hub holds it, when an upload is decided.
#[derive(Debug, Clone, Copy)]
pub struct CurrentProduct<'a> {
    /// The OBP that owns the product code.
    pub owner: &'a str,
    /// Its current version.
    pub version: u32,
    /// The master data of that version.
    pub master: &'a ProductMaster,
}

/// An accepted product upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProductUpload {
    /// The version the product has after the upload.
    pub version: u32,
    /// Whether it is the first version, the current one again, or a new one.
    pub decision: VersionDecision,
}

/// Decides an upload of valid master data by `obp`: another OBP's product is 403; otherwise the
/// upload makes version 1, keeps the current version (identical master data) or makes the next.
pub fn decide_product(
    obp: &str,
    current: Option<CurrentProduct<'_>>,
    master: &ProductMaster,
) -> Result<ProductUpload, ApiError> {
    if let Some(c) = &current
        && c.owner != obp
    {
        return Err(ApiError::forbidden("product_code", "the product belongs to another OBP"));
    }
    let decision = decide_version(current.as_ref().map(|c| c.master), master);
    let version = match (decision, &current) {
        (VersionDecision::Unchanged, Some(c)) => c.version,
        (_, Some(c)) => c.version + 1,
        (_, None) => 1,
    };
    Ok(ProductUpload { version, decision })
}

/// A batch as the hub holds it.
#[derive(Debug, Clone, Copy)]
pub struct ExistingBatch<'a> {
    /// Its expiry.
    pub expiry: &'a Expiry,
    /// Its target markets, in market order.
    pub markets: &'a [MarketCode],
    /// The product version it is bound to.
    pub version: u32,
}

/// What the hub knows when a batch upload is decided.
#[derive(Debug, Clone, Copy)]
pub struct BatchFacts<'a> {
    /// The target markets of the product's current version.
    pub targets: &'a BTreeSet<MarketCode>,
    /// The markets the product is withdrawn from.
    pub withdrawn: &'a [MarketCode],
    /// The batch, if it was uploaded before.
    pub existing: Option<ExistingBatch<'a>>,
}

/// An accepted batch upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchDecision {
    /// The same batch with the same data again: nothing changes.
    Unchanged {
        /// The product version it is bound to.
        version: u32,
        /// Its target markets, in market order.
        markets: Vec<MarketCode>,
    },
    /// A new batch for these markets, in market order.
    New {
        /// Its target markets, in market order.
        markets: Vec<MarketCode>,
    },
}

/// Decides a batch upload: its markets are the named ones (a subset of the current version's
/// target markets) or by default every target market the product is not withdrawn from; none
/// may be withdrawn (fmd-rules §5: 409 `HUB_PRODUCT_WITHDRAWN` naming `markets`). A batch uploaded
/// before with the same expiry and markets is unchanged; with other data it is 409 naming `batch`.
pub fn decide_batch(
    facts: &BatchFacts<'_>,
    batch: &Batch,
    expiry: &Expiry,
    markets: Option<&[String]>,
) -> Result<BatchDecision, ApiError> {
    let withdrawn: BTreeSet<MarketCode> = facts.withdrawn.iter().copied().collect();
    let chosen = match markets {
        Some(list) => named_markets(list, facts.targets, "product's current version")?,
        None => facts.targets.difference(&withdrawn).copied().collect(),
    };
    let refused = |why: String| {
        ApiError::new(ReturnCode::HubProductWithdrawn)
            .with("markets", format!("{why}: a withdrawn product takes no new batch (fmd-rules §5)"))
    };
    if let Some(m) = chosen.intersection(&withdrawn).next() {
        return Err(refused(format!("the product is withdrawn from {m}")));
    }
    if chosen.is_empty() {
        return Err(refused("the product is withdrawn from every target market".into()));
    }
    let chosen: Vec<MarketCode> = chosen.into_iter().collect();
    match facts.existing {
        Some(e) if e.expiry.as_str() == expiry.as_str() && e.markets == chosen.as_slice() => {
            Ok(BatchDecision::Unchanged { version: e.version, markets: chosen })
        }
        Some(e) => {
            let names: Vec<&str> = e.markets.iter().map(MarketCode::as_str).collect();
            Err(ApiError::conflict(
                "batch",
                format!("batch {batch} exists with expiry {} for {}", e.expiry.as_str(), names.join(", ")),
            ))
        }
        None => Ok(BatchDecision::New { markets: chosen }),
    }
}

/// What a recall or a withdrawal changes: markets are only ever added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarketsAdded {
    /// The named markets not in the set before, in market order: only these are told.
    pub added: Vec<MarketCode>,
    /// Every market in the set now, in market order.
    pub all: Vec<MarketCode>,
}

impl MarketsAdded {
    /// Whether the request changes nothing.
    pub fn is_unchanged(&self) -> bool {
        self.added.is_empty()
    }
}

fn add_markets(
    targets: &BTreeSet<MarketCode>,
    before: &[MarketCode],
    named: &[String],
    what: &str,
) -> Result<MarketsAdded, ApiError> {
    let named = named_markets(named, targets, what)?;
    let before: BTreeSet<MarketCode> = before.iter().copied().collect();
    Ok(MarketsAdded {
        added: named.difference(&before).copied().collect(),
        all: before.union(&named).copied().collect(),
    })
}

/// Decides a recall of a batch in the `named` markets, each a target market of the batch
/// (`batch_markets`); `recalled` are the markets that recalled it before. Recalling a market
/// again adds nothing.
pub fn decide_recall(
    batch_markets: &[MarketCode],
    recalled: &[MarketCode],
    named: &[String],
) -> Result<MarketsAdded, ApiError> {
    let targets: BTreeSet<MarketCode> = batch_markets.iter().copied().collect();
    add_markets(&targets, recalled, named, "batch")
}

/// Decides a withdrawal of a product from the `named` markets, each a target market of its
/// current version (`targets`); `withdrawn` are the markets it was withdrawn from before.
pub fn decide_withdrawal(
    targets: &BTreeSet<MarketCode>,
    withdrawn: &[MarketCode],
    named: &[String],
) -> Result<MarketsAdded, ApiError> {
    add_markets(targets, withdrawn, named, "product's current version")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::return_code::ReturnCode;

    fn m(s: &str) -> MarketCode {
        MarketCode::new(s).unwrap()
    }

    fn set(ms: &[&str]) -> BTreeSet<MarketCode> {
        ms.iter().map(|s| m(s)).collect()
    }

    fn strings(ms: &[&str]) -> Vec<String> {
        ms.iter().map(|s| (*s).to_owned()).collect()
    }

    fn master(strength: &str) -> ProductMaster {
        use crate::master_data::{RawMarket, RawProduct, RawWholesaler, validate};
        let s = |v: &str| Some(v.to_owned());
        let raw = RawProduct {
            scheme: s("GTIN"),
            name: s("Examplomab tablets"),
            common_name: s("examplomab"),
            form: s("TABLET"),
            strength: s(strength),
            pack_type: s("BLISTER"),
            pack_size: s("30"),
            markets: Some(vec![RawMarket {
                market: s("DE"),
                national_code: s("03752864"),
                mah_name: s("Example Pharma GmbH"),
                mah_address: s("Beispielstr. 1, 10115 Berlin"),
                wholesalers: vec![RawWholesaler { id: s("W1"), name: s("Grosso AG") }],
            }]),
        };
        validate("09501101530003", &raw).unwrap()
    }

    fn field(e: &ApiError) -> (ReturnCode, &str) {
        (e.code, e.details[0].field.as_str())
    }

    #[test]
    fn a_reason_is_not_blank_and_at_most_500_characters() {
        assert!(check_reason("quality defect").is_ok());
        assert_eq!(field(&check_reason("  ").unwrap_err()), (ReturnCode::MalformedRequest, "reason"));
        assert!(check_reason(&"x".repeat(MAX_REASON)).is_ok());
        assert!(check_reason(&"x".repeat(MAX_REASON + 1)).is_err());
        assert_eq!(field(&check_obp_name("").unwrap_err()), (ReturnCode::MalformedRequest, "name"));
    }

    #[test]
    fn named_markets_must_be_valid_targets_and_not_none() {
        let allowed = set(&["DE", "FR"]);
        assert_eq!(named_markets(&strings(&["FR", "DE", "FR"]), &allowed, "batch").unwrap(), allowed);
        let e = named_markets(&[], &allowed, "batch").unwrap_err();
        assert_eq!(field(&e), (ReturnCode::MasterDataInvalid, "markets"));
        let e = named_markets(&strings(&["DE", "de"]), &allowed, "batch").unwrap_err();
        assert_eq!(field(&e), (ReturnCode::MasterDataInvalid, "markets[1]"));
        let e = named_markets(&strings(&["IT"]), &allowed, "batch").unwrap_err();
        assert!(e.details[0].message.contains("IT is not a target market of the batch (those are DE, FR)"));
    }

    #[test]
    fn a_product_belongs_to_its_first_uploader_and_changes_version_only_when_its_data_does() {
        let (master, other) = (master("10 mg"), master("20 mg"));
        let first = decide_product("obp-a", None, &master).unwrap();
        assert_eq!((first.version, first.decision), (1, VersionDecision::First));
        let current = CurrentProduct { owner: "obp-a", version: 3, master: &master };
        assert_eq!(decide_product("obp-a", Some(current), &master).unwrap().version, 3);
        assert_eq!(decide_product("obp-a", Some(current), &other).unwrap().version, 4);
        let e = decide_product("obp-b", Some(current), &master).unwrap_err();
        assert_eq!(field(&e), (ReturnCode::Forbidden, "product_code"));
    }

    fn batch() -> (Batch, Expiry) {
        let today = crate::time::Timestamp::from_unix_millis(1_700_000_000_000).date();
        (Batch::new("B1").unwrap(), Expiry::parse("301231", today).unwrap())
    }

    #[test]
    fn a_new_batch_goes_to_the_markets_not_withdrawn_unless_named() {
        let (b, x) = batch();
        let targets = set(&["DE", "FR", "IT"]);
        let facts = BatchFacts { targets: &targets, withdrawn: &[m("FR")], existing: None };
        assert_eq!(
            decide_batch(&facts, &b, &x, None).unwrap(),
            BatchDecision::New { markets: vec![m("DE"), m("IT")] }
        );
        let named = strings(&["IT"]);
        assert_eq!(
            decide_batch(&facts, &b, &x, Some(&named)).unwrap(),
            BatchDecision::New { markets: vec![m("IT")] }
        );
        let named = strings(&["FR"]);
        let e = decide_batch(&facts, &b, &x, Some(&named)).unwrap_err();
        assert_eq!(field(&e), (ReturnCode::HubProductWithdrawn, "markets"));
        assert_eq!(e.http_status(), 409);
        assert!(e.details[0].message.contains("withdrawn from FR"), "{e:?}");
        // A withdrawn market among valid ones refuses the whole batch: no market is dropped silently.
        let named = strings(&["DE", "FR"]);
        let e = decide_batch(&facts, &b, &x, Some(&named)).unwrap_err();
        assert_eq!(field(&e), (ReturnCode::HubProductWithdrawn, "markets"));
        let all = [m("DE"), m("FR"), m("IT")];
        let facts = BatchFacts { targets: &targets, withdrawn: &all, existing: None };
        let e = decide_batch(&facts, &b, &x, None).unwrap_err();
        assert_eq!(field(&e), (ReturnCode::HubProductWithdrawn, "markets"));
        assert!(e.details[0].message.contains("every target market"), "{e:?}");
    }

    #[test]
    fn a_batch_again_is_unchanged_with_the_same_data_and_a_conflict_with_other_data() {
        let (b, x) = batch();
        let targets = set(&["DE", "FR"]);
        let markets = [m("DE"), m("FR")];
        let existing = ExistingBatch { expiry: &x, markets: &markets, version: 2 };
        let facts = BatchFacts { targets: &targets, withdrawn: &[], existing: Some(existing) };
        assert_eq!(
            decide_batch(&facts, &b, &x, None).unwrap(),
            BatchDecision::Unchanged { version: 2, markets: markets.to_vec() }
        );
        let named = strings(&["DE"]);
        let e = decide_batch(&facts, &b, &x, Some(&named)).unwrap_err();
        assert_eq!((e.http_status(), e.details[0].field.as_str()), (409, "batch"));
        assert_eq!(e.details[0].message, format!("batch B1 exists with expiry {} for DE, FR", x.as_str()));
    }

    #[test]
    fn a_recall_adds_only_the_markets_not_recalled_before() {
        let markets = [m("DE"), m("FR"), m("IT")];
        let r = decide_recall(&markets, &[m("FR")], &strings(&["IT", "FR"])).unwrap();
        assert_eq!(r, MarketsAdded { added: vec![m("IT")], all: vec![m("FR"), m("IT")] });
        let again = decide_recall(&markets, &r.all, &strings(&["IT"])).unwrap();
        assert!(again.is_unchanged());
        let e = decide_recall(&markets, &[], &strings(&["PL"])).unwrap_err();
        assert!(e.details[0].message.contains("of the batch"), "{e:?}");
    }

    #[test]
    fn a_withdrawal_names_target_markets_of_the_current_version() {
        let targets = set(&["DE", "FR"]);
        let w = decide_withdrawal(&targets, &[], &strings(&["DE"])).unwrap();
        assert_eq!((w.added.as_slice(), w.all.as_slice()), (&[m("DE")][..], &[m("DE")][..]));
        let e = decide_withdrawal(&targets, &[], &strings(&["IT"])).unwrap_err();
        assert!(e.details[0].message.contains("of the product's current version"), "{e:?}");
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        const CODES: [&str; 6] = ["AT", "BE", "DE", "FR", "IT", "PL"];

        fn markets() -> impl Strategy<Value = Vec<&'static str>> {
            proptest::sample::subsequence(CODES.to_vec(), 0..=CODES.len())
        }

        proptest! {
            /// Markets are only ever added: the set after a recall holds the set before, the
            /// added markets are exactly the new ones, and deciding the same recall on the new
            /// set adds nothing.
            #[test]
            fn a_recall_only_adds_and_is_idempotent(
                batch in markets(), before in markets(), named in markets()
            ) {
                let batch: Vec<MarketCode> = batch.iter().map(|s| m(s)).collect();
                let before: Vec<MarketCode> = before.iter().map(|s| m(s)).filter(|x| batch.contains(x)).collect();
                let named = strings(&named);
                match decide_recall(&batch, &before, &named) {
                    Ok(r) => {
                        prop_assert!(before.iter().all(|x| r.all.contains(x)));
                        prop_assert!(r.added.iter().all(|x| !before.contains(x) && r.all.contains(x)));
                        prop_assert_eq!(r.all.len(), before.len() + r.added.len());
                        prop_assert!(decide_recall(&batch, &r.all, &named).unwrap().is_unchanged());
                    }
                    Err(e) => {
                        let outside = named.iter().any(|s| !batch.iter().any(|x| x.as_str() == s));
                        prop_assert!(named.is_empty() || outside, "{:?}", e);
                    }
                }
            }
        }
    }
}
