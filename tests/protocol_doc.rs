//! docs/PROTOCOL.md's examples are real frames: every client line parses as
//! a request, every server line as a server frame, and encoding the parsed
//! value again gives exactly the fields the example shows (none missing,
//! none extra). A client author copying them gets working frames. Also:
//! the man pages and completions `make man` writes come out of the binaries.

use confab::protocol::{ClientFrame, ServerFrame, parse_request};
use serde_json::Value;

fn doc() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/PROTOCOL.md"))
        .expect("docs/PROTOCOL.md")
}

/// The `C: ` and `S: ` lines of the "A complete exchange" section.
fn exchange() -> Vec<(char, String)> {
    let doc = doc();
    let section = doc
        .split("## A complete exchange")
        .nth(1)
        .expect("the section exists");
    section
        .lines()
        .filter_map(|l| {
            let (side, json) = l.split_once(": ")?;
            match side {
                "C" => Some(('C', json.to_owned())),
                "S" => Some(('S', json.to_owned())),
                _ => None,
            }
        })
        .collect()
}

fn check_server_line(json: &str) {
    let frame: ServerFrame =
        serde_json::from_str(json).unwrap_or_else(|e| panic!("{json}\n  does not parse: {e}"));
    let again = serde_json::to_value(&frame).unwrap();
    let shown: Value = serde_json::from_str(json).unwrap();
    assert_eq!(again, shown, "\n{json}\n  is not what the server sends");
}

#[test]
fn every_line_of_the_complete_exchange_is_a_real_frame() {
    let lines = exchange();
    assert!(lines.len() >= 12, "{lines:?}");
    for (side, json) in lines {
        match side {
            'C' => {
                let parsed = parse_request(json.as_bytes())
                    .unwrap_or_else(|e| panic!("{json}\n  is not a valid request: {e:?}"));
                let again = serde_json::to_value(ClientFrame {
                    req: parsed.req,
                    request: parsed.request,
                })
                .unwrap();
                let shown: Value = serde_json::from_str(&json).unwrap();
                assert_eq!(again, shown, "\n{json}\n  has fields the request lacks");
            }
            _ => check_server_line(&json),
        }
    }
}

/// Every ```json block that shows a server frame (has "type" and is not a
/// request) parses as one, with all its fields.
#[test]
fn json_blocks_showing_server_frames_are_exact() {
    let doc = doc();
    let mut checked = 0;
    for block in doc.split("```json").skip(1) {
        let body = block.split("```").next().unwrap().trim();
        let value: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{body}: {e}"));
        if parse_request(body.as_bytes()).is_ok() {
            continue; // a request example
        }
        check_server_line(&value.to_string());
        checked += 1;
    }
    assert!(checked >= 2, "found {checked} server examples");
}

/// `make man` writes these: a man page and completions for each binary,
/// from the same clap definitions as `--help`.
#[test]
fn the_binaries_print_their_man_pages_and_completions() {
    let run = |bin: &str, what: &str| {
        let out = std::process::Command::new(bin)
            .args(["--generate", what])
            .output()
            .expect("the binary runs");
        assert!(out.status.success(), "{bin} --generate {what}: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let client = env!("CARGO_BIN_EXE_confab");
    let server = env!("CARGO_BIN_EXE_confab-server");
    let man = run(client, "man");
    assert!(
        man.contains(".TH confab") && man.contains("register"),
        "{man}"
    );
    let man = run(server, "man");
    assert!(
        man.contains("max\\-sessions") && man.contains("[default: 256]"),
        "{man}"
    );
    assert!(run(client, "bash").contains("_confab()"));
    assert!(run(server, "zsh").contains("#compdef confab-server"));
    assert!(run(client, "fish").contains("complete -c confab"));
    let bad = std::process::Command::new(client)
        .args(["--generate", "powershell"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
}
