//! Property tests of the pure parts: encode/decode round trips under any
//! chunking, and decoders that never panic on any bytes.

use confab::file_rules::{MAX_NAME_LEN, sanitize_name};
use confab::protocol::{
    ChatMessage, ClientFrame, FrameDecoder, MAX_REQUEST_LEN, Request, ServerFrame, ServerMsg,
    encode_json, parse_request,
};
use proptest::prelude::*;

fn request() -> impl Strategy<Value = Request> {
    let s = any::<String>;
    prop_oneof![
        (any::<u32>(), s()).prop_map(|(version, client)| Request::Hello { version, client }),
        (s(), s()).prop_map(|(user, password)| Request::Login { user, password }),
        (s(), s(), proptest::option::of(any::<i64>())).prop_map(|(room, body, reply_to)| {
            Request::Say {
                room,
                body,
                reply_to,
                notice: false,
            }
        }),
        (s(), s()).prop_map(|(to, body)| Request::Dm {
            to,
            body,
            reply_to: None,
            notice: false,
        }),
        (
            proptest::option::of(s()),
            proptest::option::of(s()),
            proptest::option::of(any::<i64>()),
            proptest::option::of(any::<u32>())
        )
            .prop_map(|(room, with, before, limit)| Request::History {
                room,
                with,
                before,
                around: None,
                limit
            }),
        (
            proptest::option::of(s()),
            proptest::option::of(s()),
            s(),
            any::<u64>()
        )
            .prop_map(|(room, to, name, size)| Request::Upload {
                room,
                to,
                name,
                size
            }),
        (any::<u32>(), s()).prop_map(|(upload, sha256)| Request::UploadEnd { upload, sha256 }),
        Just(Request::Rooms),
        Just(Request::Ping),
    ]
}

/// Feeds `bytes` to a decoder in pieces at the given cut points.
fn decode_in_pieces(bytes: &[u8], cuts: &[usize], max: usize) -> Vec<Vec<u8>> {
    let mut dec = FrameDecoder::new(max);
    let mut out = Vec::new();
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    cuts.sort_unstable();
    cuts.push(bytes.len());
    let mut start = 0;
    for end in cuts {
        dec.push(&bytes[start..end.max(start)]);
        start = end.max(start);
        while let Some(frame) = dec.next_frame().expect("valid frames decode") {
            out.push(frame.payload);
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn client_frames_round_trip_under_any_chunking(
        reqs in proptest::collection::vec((proptest::option::of(any::<u64>()), request()), 1..5),
        cuts in proptest::collection::vec(any::<usize>(), 0..8),
    ) {
        let frames: Vec<ClientFrame> = reqs.into_iter().map(|(req, request)| ClientFrame { req, request }).collect();
        let bytes: Vec<u8> = frames.iter().flat_map(encode_json).collect();
        let payloads = decode_in_pieces(&bytes, &cuts, usize::MAX);
        prop_assert_eq!(payloads.len(), frames.len());
        for (payload, frame) in payloads.iter().zip(&frames) {
            prop_assert_eq!(&parse_request(payload).unwrap(), frame);
        }
    }

    #[test]
    fn message_events_round_trip(id in any::<i64>(), from in any::<String>(), body in any::<String>(), ts in any::<i64>(), room in proptest::option::of(any::<String>())) {
        let ev = ServerFrame::event(ServerMsg::Message(Box::new(ChatMessage { room, ..ChatMessage::new(id, from, body, ts) })));
        let bytes = encode_json(&ev);
        let payloads = decode_in_pieces(&bytes, &[3, 7], usize::MAX);
        let back: ServerFrame = serde_json::from_slice(&payloads[0]).unwrap();
        prop_assert_eq!(back, ev);
    }

    #[test]
    fn any_bytes_never_panic_the_decoders(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let mut dec = FrameDecoder::new(MAX_REQUEST_LEN);
        dec.push(&bytes);
        while let Ok(Some(frame)) = dec.next_frame() {
            prop_assert!(frame.payload.len() <= MAX_REQUEST_LEN);
            let _ = parse_request(&frame.payload);
        }
        let _ = parse_request(&bytes);
    }

    #[test]
    fn sanitised_names_are_safe(name in any::<String>()) {
        if let Ok(clean) = sanitize_name(&name) {
            prop_assert!(!clean.is_empty() && clean.len() <= MAX_NAME_LEN);
            prop_assert!(!clean.contains('/') && !clean.contains('\\'));
            prop_assert!(!clean.chars().any(char::is_control));
            prop_assert!(!clean.starts_with('.'));
        }
    }

    #[test]
    fn mention_matching_never_panics(body in any::<String>(), user in any::<String>()) {
        let _ = confab::mention::mentions(&body, &user);
    }
}
