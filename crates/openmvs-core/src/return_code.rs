//! The return-code catalogue: the one table every answer, HTTP status, document and
//! `GET /v1/return-codes` is generated from.

use std::fmt;

/// The alert a refusal raises (hub alert codes), and the national system's own alert about a
/// client (`SERIAL_GUESSING`), which no return code raises and no OBP is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AlertCode {
    /// Serial and batch unknown for a known product.
    A2,
    /// Serial unknown, batch known.
    A3,
    /// State change on an inactive pack, or an undo that breaks a rule.
    A24,
    /// Expiry does not match the batch.
    A52,
    /// Serial known under another batch.
    A68,
    /// A client's (or a premises') unknown-serial and mismatch answers crossed the threshold of
    /// `guessing.rs`: raised to the NMVO, never forwarded to an OBP as a falsification.
    SerialGuessing,
}

impl AlertCode {
    /// Every alert code.
    pub const ALL: [AlertCode; 6] = [
        AlertCode::A2,
        AlertCode::A3,
        AlertCode::A24,
        AlertCode::A52,
        AlertCode::A68,
        AlertCode::SerialGuessing,
    ];

    /// Whether alerts of this code go through the hub to the OBP that owns the product (and
    /// their status changes and comments with them): every code but `SERIAL_GUESSING`, which is
    /// about a client and stays with the NMVO.
    pub fn goes_to_obp(self) -> bool {
        self != AlertCode::SerialGuessing
    }

    /// The code as written on the wire, e.g. `A24`.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertCode::A2 => "A2",
            AlertCode::A3 => "A3",
            AlertCode::A24 => "A24",
            AlertCode::A52 => "A52",
            AlertCode::A68 => "A68",
            AlertCode::SerialGuessing => "SERIAL_GUESSING",
        }
    }

    /// Parses `A2`, `A3`, `A24`, `A52`, `A68` or `SERIAL_GUESSING`.
    pub fn parse(s: &str) -> Option<AlertCode> {
        AlertCode::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

impl fmt::Display for AlertCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a code is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeKind {
    /// In the body of a processed request (HTTP 200), accepted or refused by the rules.
    Outcome,
    /// As an HTTP error: the request was not processed.
    Error,
    /// By the hub, refusing product master data or an upload.
    Hub,
    /// By the offline agent (`openmvs agent`) at a pharmacy, in place of the national system's
    /// answer, when it recorded a request it could not forward (DR Art 29).
    Agent,
}

impl CodeKind {
    /// Upper-case name for documents.
    pub fn as_str(self) -> &'static str {
        match self {
            CodeKind::Outcome => "OUTCOME",
            CodeKind::Error => "ERROR",
            CodeKind::Hub => "HUB",
            CodeKind::Agent => "AGENT",
        }
    }
}

/// One row of the catalogue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CodeInfo {
    /// The code itself, e.g. `NMVS_NC_PCK_22`.
    pub code: &'static str,
    /// Where it is answered.
    pub kind: CodeKind,
    /// Severity: 1 success, 2 information, 3 notice, 4 refusal, 5 refusal with alert.
    pub level: u8,
    /// The alert it raises, if any.
    pub alert: Option<AlertCode>,
    /// The HTTP status it is answered with.
    pub http_status: u16,
    /// What it means, in English, for the person at the terminal.
    pub message: &'static str,
}

macro_rules! catalogue {
    ($($(#[$doc:meta])* $variant:ident => ($code:literal, $kind:ident, $level:literal, $alert:expr, $status:literal, $msg:literal);)*) => {
        /// Every return code OpenMVS answers with.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum ReturnCode {
            $($(#[$doc])* $variant,)*
        }

        impl ReturnCode {
            /// Every code, in catalogue order.
            pub const ALL: &'static [ReturnCode] = &[$(ReturnCode::$variant,)*];

            /// The catalogue row of this code.
            pub const fn info(self) -> CodeInfo {
                match self {
                    $(ReturnCode::$variant => CodeInfo {
                        code: $code,
                        kind: CodeKind::$kind,
                        level: $level,
                        alert: $alert,
                        http_status: $status,
                        message: $msg,
                    },)*
                }
            }
        }
    };
}

catalogue! {
    /// Done.
    Success => ("NMVS_SUCCESS", Outcome, 1, None, 200, "Done.");
    /// Verify of a pack that is authentic but no longer active (state in the answer).
    PackInactive => ("NMVS_INFO_PCK_INACTIVE", Outcome, 2, None, 200,
        "The pack is authentic but not active (see its state): do not dispense it.");
    /// Product code unknown in every market.
    ProductUnknown => ("NMVS_NC_PC_01", Outcome, 3, None, 200,
        "The product code is unknown in every market. Check the code; no alert was raised.");
    /// Product unknown locally and the hub could not be asked.
    HubUnreachable => ("NMVS_TI_HUB_01", Outcome, 3, None, 200,
        "The product code is unknown in this market and the hub could not be reached to ask the others. Keep the pack and try again later; no alert was raised.");
    /// Product unknown locally; the hub was reached, but no market that holds the product answered.
    MarketUnreachable => ("NMVS_TI_MKT_01", Outcome, 3, None, 200,
        "The product code is unknown in this market, and the market that holds it could not be reached through the hub. Keep the pack and try again later; no alert was raised.");
    /// Serial unknown, batch known.
    SerialUnknown => ("NMVS_NC_PC_02", Outcome, 5, Some(AlertCode::A3), 200,
        "The serial number is unknown for this product. An alert was raised: do not dispense the pack.");
    /// Serial and batch unknown.
    SerialAndBatchUnknown => ("NMVS_FE_LOT_03", Outcome, 5, Some(AlertCode::A2), 200,
        "Neither the serial number nor the batch is known for this product. An alert was raised: do not dispense the pack.");
    /// Serial known under another batch.
    BatchMismatch => ("NMVS_FE_LOT_13", Outcome, 5, Some(AlertCode::A68), 200,
        "The serial number belongs to another batch. An alert was raised: do not dispense the pack.");
    /// Expiry does not match.
    ExpiryMismatch => ("NMVS_FE_LOT_12", Outcome, 5, Some(AlertCode::A52), 200,
        "The expiry date does not match the batch. An alert was raised: do not dispense the pack.");
    /// State change on an inactive pack.
    PackInactiveStateChange => ("NMVS_NC_PCK_22", Outcome, 5, Some(AlertCode::A24), 200,
        "The pack is not active, so its state cannot change. An alert was raised: do not dispense the pack.");
    /// Repeated request for the state the pack has, same location.
    AlreadyInState => ("NMVS_NC_PCK_23", Outcome, 3, None, 200,
        "The pack already has this state, set from this location: nothing was changed.");
    /// Undo does not match the pack's state.
    UndoStateMismatch => ("NMVS_NC_PCK_06", Outcome, 5, Some(AlertCode::A24), 200,
        "The undo does not match the pack's state. An alert was raised.");
    /// Undo after the window.
    UndoTooLate => ("NMVS_NC_PCK_20", Outcome, 5, Some(AlertCode::A24), 200,
        "The undo comes after the allowed time since the change. An alert was raised.");
    /// Undo from another location.
    UndoOtherLocation => ("NMVS_NC_PCK_21", Outcome, 5, Some(AlertCode::A24), 200,
        "Only the location that changed the pack can undo the change. An alert was raised.");
    /// Batch expired.
    BatchExpired => ("NMVS_NC_PCK_02", Outcome, 4, None, 200,
        "The batch has expired: the pack must not be dispensed. No alert was raised.");
    /// Batch recalled.
    BatchRecalled => ("NMVS_FE_LOT_01", Outcome, 4, None, 200,
        "The batch has been recalled: the pack must not be dispensed. No alert was raised.");
    /// Product withdrawn.
    ProductWithdrawn => ("NMVS_FE_LOT_08", Outcome, 4, None, 200,
        "The product has been withdrawn from this market: the pack must not be dispensed. No alert was raised.");
    /// The identifier as read matches no pack, but matches one with a scanner's corruption undone
    /// (Caps Lock, a keyboard-layout mismatch, a lost group separator): a rescan, not an alert.
    RescanRequired => ("NMVS_FE_SCN_01", Outcome, 4, None, 200,
        "The code as read matches no pack, but matches one with a scanner's corruption undone (see the warnings): check Caps Lock and the scanner's keyboard layout, then rescan the pack. No alert was raised; do not dispense the pack until a scan verifies it.");
    /// A serial repeated inside one bulk request.
    BulkDuplicateSerial => ("NMVS_TE_BLK_01", Outcome, 3, None, 200,
        "This serial number appears earlier in the same bulk request: the repeat was not processed.");
    /// The national system could not be reached (or failed, or was too slow): the offline agent
    /// recorded the request durably and will replay it, verify first, once the system is back.
    /// HTTP 202 (accepted for processing, not processed): software that reads only the status
    /// cannot take it for a verified pack, and one that reads `accepted` sees `false`.
    RecordedOffline => ("NMVS_TI_OFF_01", Agent, 3, None, 202,
        "The national system cannot be reached: the request was recorded and will be sent when it is back, verify first. The pack is NOT verified yet; no alert was raised. Any problem found then appears on the pharmacist's list.");
    /// A bulk job asked for before every row has a result.
    BulkPending => ("NMVS_INFO_BLK_PENDING", Outcome, 2, None, 200,
        "The bulk request is still being processed: ask for its result again later.");
    /// Malformed request.
    MalformedRequest => ("NMVS_TE_XM_02", Error, 4, None, 400,
        "The request is malformed: a field is missing or invalid, or the scan cannot be read (see details).");
    /// Product code fails its check digit.
    CheckDigit => ("NMVS_FE_GR_01", Error, 4, None, 400,
        "The product code fails its check digit. Rescan the pack or check the code.");
    /// Missing, invalid or expired token.
    Unauthenticated => ("NMVS_FE_AU_01", Error, 4, None, 401,
        "The access token is missing, invalid or expired.");
    /// Role or market not entitled.
    Forbidden => ("NMVS_FE_AU_04", Error, 4, None, 403,
        "Your role or market is not entitled to this operation or resource.");
    /// Unknown path or id.
    NotFound => ("NMVS_TE_NF_01", Error, 4, None, 404,
        "Nothing exists at this path or id.");
    /// `client_trx_id` reused for a different request.
    TransactionIdReused => ("NMVS_TE_TX_01", Error, 4, None, 409,
        "This client_trx_id was already used by this client for a different request.");
    /// A change the resource's state does not allow, e.g. an update of a resolved incident.
    StateConflict => ("NMVS_TE_ST_01", Error, 4, None, 409,
        "The resource is in a state that does not allow this change (see details); nothing was changed.");
    /// Body or bulk over its limit.
    TooLarge => ("NMVS_TE_XM_03", Error, 4, None, 413,
        "The request body or bulk is over its limit.");
    /// Client over its rate, or slowed after too many unknown serials and mismatches.
    RateLimited => ("NMVS_FI_SE_CLI_01", Error, 4, None, 429,
        "Too many requests from this client: wait for the time in Retry-After.");
    /// Client refused for a while: it went on sending unknown serials or mismatches while slowed
    /// (serial guessing); the NMVO was alerted.
    ClientSuspended => ("NMVS_FI_SE_CLI_02", Error, 4, None, 429,
        "Requests from this client are refused for a while: too many of them named unknown serial numbers or did not match, and the national organisation was alerted. Retry after the time in Retry-After, or contact the national organisation.");
    /// Temporarily unavailable.
    Unavailable => ("NMVS_TI_UN_01", Error, 4, None, 503,
        "The system is temporarily unavailable; nothing was changed. Retry after the time in Retry-After.");
    /// Mandatory field missing in product master data.
    MasterDataMissing => ("A16", Hub, 4, None, 422,
        "A mandatory field of the product master data is missing.");
    /// Field empty or over-long in product master data.
    MasterDataInvalid => ("I1", Hub, 4, None, 422,
        "A field of the product master data is empty or too long.");
    /// Data that contradicts what the hub holds, e.g. a batch uploaded before with another expiry.
    HubDataConflict => ("HUB_DATA_CONFLICT", Hub, 4, None, 409,
        "The request contradicts data the hub already holds (see details); nothing was changed.");
    /// A new batch for a market the product is withdrawn from (fmd-rules §5).
    HubProductWithdrawn => ("HUB_PRODUCT_WITHDRAWN", Hub, 4, None, 409,
        "The product is withdrawn from a market the batch names (see details): a withdrawn product takes no new batch there; nothing was changed.");
}

impl ReturnCode {
    /// The code string, e.g. `NMVS_SUCCESS`.
    pub const fn as_str(self) -> &'static str {
        self.info().code
    }

    /// The severity level, 1-5.
    pub const fn level(self) -> u8 {
        self.info().level
    }

    /// The alert this code raises, if any.
    pub const fn alert(self) -> Option<AlertCode> {
        self.info().alert
    }

    /// The HTTP status it is answered with.
    pub const fn http_status(self) -> u16 {
        self.info().http_status
    }

    /// Whether the code refuses a request because its identifier matches no stored pack of a
    /// known product: an unknown serial or batch, a serial under another batch, another expiry.
    /// These are the refusals a scanner's corruption can cause (see [`crate::pack::decide_rescan`]).
    pub const fn is_identifier_mismatch(self) -> bool {
        matches!(
            self,
            ReturnCode::SerialUnknown
                | ReturnCode::SerialAndBatchUnknown
                | ReturnCode::BatchMismatch
                | ReturnCode::ExpiryMismatch
        )
    }

    /// Whether the answer says that another system could not be reached (the hub, or through it
    /// the market that holds the product), not what the rules decide: the terminal keeps the pack
    /// and tries again later (DR Art 29), and the answer is not kept, so a retry with the same
    /// `client_trx_id` asks again.
    pub const fn is_unreachable(self) -> bool {
        matches!(self, ReturnCode::HubUnreachable | ReturnCode::MarketUnreachable)
    }

    /// Looks up a code by its string.
    pub fn parse(s: &str) -> Option<ReturnCode> {
        ReturnCode::ALL.iter().copied().find(|c| c.as_str() == s)
    }
}

impl fmt::Display for ReturnCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_parse_back() {
        for (i, a) in ReturnCode::ALL.iter().enumerate() {
            assert_eq!(ReturnCode::parse(a.as_str()), Some(*a));
            for b in &ReturnCode::ALL[i + 1..] {
                assert_ne!(a.as_str(), b.as_str());
            }
        }
    }

    #[test]
    fn the_hub_and_the_market_behind_it_are_unreachable_apart() {
        let (hub, market) = (ReturnCode::HubUnreachable.info(), ReturnCode::MarketUnreachable.info());
        assert_ne!(hub.code, market.code);
        assert!(hub.message.contains("hub could not be reached"), "{}", hub.message);
        assert!(market.message.contains("market that holds it could not be reached"), "{}", market.message);
        for info in [hub, market] {
            assert_eq!(
                (info.kind, info.level, info.alert, info.http_status),
                (CodeKind::Outcome, 3, None, 200)
            );
            assert!(info.message.contains("try again later"), "{}", info.message);
        }
        let unreachable: Vec<ReturnCode> =
            ReturnCode::ALL.iter().copied().filter(|c| c.is_unreachable()).collect();
        assert_eq!(unreachable, [ReturnCode::HubUnreachable, ReturnCode::MarketUnreachable]);
    }

    #[test]
    fn exactly_the_level_five_codes_raise_alerts() {
        for c in ReturnCode::ALL {
            assert_eq!(c.level() == 5, c.alert().is_some(), "{c}");
        }
    }

    #[test]
    fn the_identifier_mismatches_are_the_alerts_a_misread_code_can_raise() {
        let mismatches: Vec<&str> =
            ReturnCode::ALL.iter().filter(|c| c.is_identifier_mismatch()).map(|c| c.as_str()).collect();
        assert_eq!(mismatches, ["NMVS_NC_PC_02", "NMVS_FE_LOT_03", "NMVS_FE_LOT_13", "NMVS_FE_LOT_12"]);
        assert!(ReturnCode::ALL.iter().filter(|c| c.is_identifier_mismatch()).all(|c| c.alert().is_some()));
        let rescan = ReturnCode::RescanRequired;
        assert_eq!(
            (rescan.alert(), rescan.info().kind, rescan.is_identifier_mismatch()),
            (None, CodeKind::Outcome, false)
        );
    }

    #[test]
    fn outcomes_are_http_200_and_errors_are_not() {
        for c in ReturnCode::ALL {
            let info = c.info();
            assert_eq!(info.kind == CodeKind::Outcome, info.http_status == 200, "{c}");
            if info.kind == CodeKind::Agent {
                assert_eq!(info.http_status, 202, "{c}: a recorded request is not processed yet");
            }
            assert!((1..=5).contains(&info.level));
            assert!(info.message.ends_with('.'), "{c}");
        }
    }

    /// Every code of the interface contract, with its level, alert and HTTP status.
    #[test]
    fn catalogue_covers_every_code_of_the_contract() {
        let contract: &[(&str, u8, Option<&str>, u16)] = &[
            ("NMVS_SUCCESS", 1, None, 200),
            ("NMVS_NC_PC_01", 3, None, 200),
            ("NMVS_NC_PC_02", 5, Some("A3"), 200),
            ("NMVS_FE_LOT_03", 5, Some("A2"), 200),
            ("NMVS_FE_LOT_13", 5, Some("A68"), 200),
            ("NMVS_FE_LOT_12", 5, Some("A52"), 200),
            ("NMVS_NC_PCK_22", 5, Some("A24"), 200),
            ("NMVS_NC_PCK_23", 3, None, 200),
            ("NMVS_NC_PCK_06", 5, Some("A24"), 200),
            ("NMVS_NC_PCK_20", 5, Some("A24"), 200),
            ("NMVS_NC_PCK_21", 5, Some("A24"), 200),
            ("NMVS_NC_PCK_02", 4, None, 200),
            ("NMVS_FE_LOT_01", 4, None, 200),
            ("NMVS_FE_LOT_08", 4, None, 200),
            ("NMVS_FE_SCN_01", 4, None, 200),
            ("NMVS_TE_XM_02", 4, None, 400),
            ("NMVS_FE_GR_01", 4, None, 400),
            ("NMVS_FE_AU_01", 4, None, 401),
            ("NMVS_FE_AU_04", 4, None, 403),
            ("NMVS_TE_NF_01", 4, None, 404),
            ("NMVS_TE_TX_01", 4, None, 409),
            ("NMVS_TE_XM_03", 4, None, 413),
            ("NMVS_FI_SE_CLI_01", 4, None, 429),
            ("NMVS_TI_UN_01", 4, None, 503),
            ("A16", 4, None, 422),
            ("I1", 4, None, 422),
        ];
        for &(code, level, alert, status) in contract {
            let c = ReturnCode::parse(code).unwrap_or_else(|| panic!("{code} missing"));
            assert_eq!(c.info().http_status, status, "{code}");
            assert_eq!(c.alert().map(AlertCode::as_str), alert, "{code}");
            if c.info().kind == CodeKind::Outcome {
                assert_eq!(c.level(), level, "{code}");
            }
        }
    }
}
