//! Any bytes as a JSON request payload: parsing must never panic, and what
//! parses must encode and parse back to the same request.
#![no_main]

use confab::protocol::{encode_json, parse_request};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(frame) = parse_request(data) {
        let bytes = encode_json(&frame);
        let again = parse_request(&bytes[5..]).expect("what we encode parses");
        assert_eq!(again, frame);
    }
});
