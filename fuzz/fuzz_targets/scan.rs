//! Fuzz target for the scanner-input parser: no input may make it panic, and whatever it reads
//! must read back the same after being written in its own form.
#![no_main]

use libfuzzer_sys::fuzz_target;
use openmvs_core::scan;
use openmvs_core::time::Date;

fuzz_target!(|data: &[u8]| {
    // A fixed day keeps runs reproducible: the parser reads no clock, only this date.
    let Some(today) = Date::new(2026, 11, 29) else {
        return;
    };
    let Ok(first) = scan::parse(data, today) else {
        return;
    };
    // A PPN only comes from format 06, which can carry it, so every scan can be written back.
    let Some(bytes) = scan::format(&first.id, first.form) else {
        panic!("{:?} read as {} cannot be written back in that form", first.id, first.form);
    };
    let second = match scan::parse(&bytes, today) {
        Ok(second) => second,
        Err(e) => {
            panic!("{:?} written as {:?} does not read back: {e}", first.id, String::from_utf8_lossy(&bytes))
        }
    };
    assert_eq!(second.id, first.id);
    assert_eq!(second.id.expiry.as_str(), first.id.expiry.as_str());
    assert_eq!(second.form, first.form);
});
