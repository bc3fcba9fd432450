//! A bare IRC client for the tests: TLS to the IRC listener, one line at a
//! time, waiting for lines with deadlines. Deliberately dumb (it sends what
//! the test says and parses nothing the test does not ask for), so the
//! tests check the server's lines, not this client's understanding of them.

use super::{WAIT, certs};
use confab::tls::{Trust, client_connector};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Instant;

/// One IRC connection.
pub struct Irc {
    reader: BufReader<native_tls::TlsStream<TcpStream>>,
    /// Every line received so far, in order.
    pub seen: Vec<String>,
}

impl Irc {
    /// Connects to `addr` over TLS, trusting the test CA.
    pub fn connect(addr: &str) -> Irc {
        let connector = client_connector(&Trust::CaFile(certs().join("ca.pem"))).unwrap();
        let tcp = TcpStream::connect(addr).expect("connect to the IRC listener");
        tcp.set_read_timeout(Some(std::time::Duration::from_millis(200)))
            .unwrap();
        let tls = connector.connect("localhost", tcp).expect("TLS handshake");
        Irc {
            reader: BufReader::new(tls),
            seen: Vec::new(),
        }
    }

    /// Sends one line (CR LF added).
    pub fn send(&mut self, line: &str) {
        self.send_bytes(format!("{line}\r\n").as_bytes());
    }

    /// Registers without SASL: `PASS :pass`, `NICK nick`, `USER`.
    pub fn pass_login(&mut self, pass: &str, nick: &str) {
        self.send(&format!("PASS :{pass}"));
        self.send(&format!("NICK {nick}"));
        self.send(&format!("USER {nick} 0 * :{nick}"));
    }

    /// Sends raw bytes, as they are.
    pub fn send_bytes(&mut self, bytes: &[u8]) {
        let s = self.reader.get_mut();
        s.write_all(bytes).unwrap();
        s.flush().unwrap();
    }

    /// Waits until a line received after the `from`-th contains every one
    /// of `parts`; returns its index and the line. Panics after the
    /// deadline with everything seen.
    pub fn expect_from(&mut self, from: usize, parts: &[&str]) -> (usize, String) {
        let deadline = Instant::now() + WAIT;
        let mut checked = from;
        loop {
            while checked < self.seen.len() {
                let l = &self.seen[checked];
                if parts.iter().all(|p| l.contains(p)) {
                    return (checked, l.clone());
                }
                checked += 1;
            }
            if Instant::now() >= deadline {
                panic!(
                    "no line with {parts:?} after line {from}; got:\n{}",
                    self.seen.join("\n")
                );
            }
            self.read_some();
        }
    }

    /// Waits for a line containing every one of `parts`, received after
    /// the last line an `expect` returned... or anywhere since the start
    /// for the first call: simply, after everything seen before this call.
    pub fn expect(&mut self, parts: &[&str]) -> String {
        let from = self.seen.len();
        self.expect_from(from, parts).1
    }

    /// Like [`Irc::expect`], but also accepts a line already seen.
    pub fn expect_seen(&mut self, parts: &[&str]) -> String {
        self.expect_from(0, parts).1
    }

    /// Reads what arrives within one read timeout.
    fn read_some(&mut self) {
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) => {
                // Closed: nothing more will come; wait out the deadline
                // without spinning.
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            Ok(_) => {
                let line = line.trim_end_matches(['\r', '\n']).to_owned();
                self.seen.push(line);
            }
            Err(_) => {}
        }
    }

    /// Registers with SASL PLAIN and the given capabilities (besides
    /// `sasl`), and waits for the end of the welcome (`422`).
    pub fn sasl(addr: &str, user: &str, password: &str, caps: &[&str]) -> Irc {
        let mut c = Irc::connect(addr);
        c.send("CAP LS 302");
        c.send(&format!("NICK {user}"));
        c.send(&format!("USER {user} 0 * :{user}"));
        c.expect(&["CAP * LS"]);
        let mut want = vec!["sasl"];
        want.extend_from_slice(caps);
        c.send(&format!("CAP REQ :{}", want.join(" ")));
        c.expect(&["CAP", "ACK"]);
        c.send("AUTHENTICATE PLAIN");
        c.expect(&["AUTHENTICATE +"]);
        let payload =
            base64::engine::general_purpose::STANDARD.encode(format!("{user}\0{user}\0{password}"));
        c.send(&format!("AUTHENTICATE {payload}"));
        c.expect(&[" 903 "]);
        c.send("CAP END");
        c.expect(&[" 422 "]);
        c
    }
}

use base64::Engine;
