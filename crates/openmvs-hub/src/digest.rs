//! Keyed serial digests (DR Art 33(1): the hub keeps no serials): HMAC-SHA256 over the product
//! code and the serial with a secret of the hub, truncated to 16 bytes.
//!
//! HMAC is written out here (RFC 2104, a dozen lines over `sha2`) rather than pulled in as a crate
//! for one function; the RFC 4231 vectors below pin it.

use openmvs_core::ids::{ProductCode, Serial};
use openmvs_store::hub::SerialDigest;
use sha2::{Digest, Sha256};

const BLOCK: usize = 64;

/// HMAC-SHA256 of `message` under `key`.
pub fn hmac_sha256(key: &[u8], message: &[&[u8]]) -> [u8; 32] {
    let mut k = [0u8; BLOCK];
    if key.len() > BLOCK {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| k.map(|b| b ^ byte);
    let mut inner = Sha256::new();
    inner.update(pad(0x36));
    for part in message {
        inner.update(part);
    }
    let mut outer = Sha256::new();
    outer.update(pad(0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

/// The digest the hub keeps for `serial` of `product_code`. The product code is part of the
/// message, so one serial under two products gives two unrelated digests; the zero byte keeps the
/// two parts apart (neither contains one).
pub fn serial_digest(key: &[u8; 32], product_code: &ProductCode, serial: &Serial) -> SerialDigest {
    let mac = hmac_sha256(key, &[product_code.as_str().as_bytes(), &[0], serial.as_str().as_bytes()]);
    SerialDigest::new(&mac[..SerialDigest::MIN_LEN]).expect("16 bytes is a valid digest length")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn hmac_matches_the_rfc_4231_vectors() {
        assert_eq!(
            hex(&hmac_sha256(&[0x0b; 20], &[b"Hi There"])),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
        );
        assert_eq!(
            hex(&hmac_sha256(b"Jefe", &[b"what do ya want ", b"for nothing?"])),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // A key longer than the block is hashed first (test case 6).
        assert_eq!(
            hex(&hmac_sha256(&[0xaa; 131], &[b"Test Using Larger Than Block-Size Key - Hash Key First"])),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn a_digest_depends_on_key_product_and_serial() {
        let gtin = ProductCode::gtin("09501101530003").unwrap();
        let other = ProductCode::gtin("05601234567892").unwrap();
        let s = Serial::new("ABC123").unwrap();
        let d = serial_digest(&[1; 32], &gtin, &s);
        assert_eq!(d.as_bytes().len(), 16);
        assert_eq!(d, serial_digest(&[1; 32], &gtin, &s));
        assert_ne!(d, serial_digest(&[2; 32], &gtin, &s));
        assert_ne!(d, serial_digest(&[1; 32], &other, &s));
        assert_ne!(d, serial_digest(&[1; 32], &gtin, &Serial::new("ABC124").unwrap()));
    }
}
