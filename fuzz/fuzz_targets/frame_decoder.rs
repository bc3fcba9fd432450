//! Any bytes, in any pieces, into the frame decoder: it must never panic,
//! never return a frame over its limit, and never buffer without bound.
#![no_main]

use confab::protocol::{FrameDecoder, MAX_REQUEST_LEN, parse_data};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first byte picks a chunk size, so splits vary too.
    let Some((&split, rest)) = data.split_first() else { return };
    let chunk = usize::from(split).max(1);
    let mut dec = FrameDecoder::new(MAX_REQUEST_LEN);
    for piece in rest.chunks(chunk) {
        dec.push(piece);
        loop {
            match dec.next_frame() {
                Ok(Some(frame)) => {
                    assert!(frame.payload.len() <= MAX_REQUEST_LEN);
                    let _ = parse_data(&frame.payload);
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
        assert!(dec.buffered() <= MAX_REQUEST_LEN + 5 + chunk);
    }
});
