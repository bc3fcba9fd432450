"""irctest controller for confab (https://github.com/progval/irctest).

Run by hand from an irctest checkout outside this repository (docs/IRC.md,
"Conformance"), after `make build certs` in confab and `pip install
'pytest<9' filelock` for irctest:

    cd /path/to/irctest
    CONFAB_SERVER=/path/to/confab/target/release/confab-server \
    CONFAB_CERTS=/path/to/confab/certs \
    PYTHONPATH=/path/to/confab/tools/irctest \
    python3 -m pytest -p no:cacheprovider --controller confab_irctest \
        -m 'not implementation-specific and not deprecated and not strict' \
        irctest/server_tests/{connection_registration,cap,sasl,messages}.py ...

`CONFAB_IRCTEST_LOG=FILE` keeps the servers' logs.

Each test gets a fresh confab-server on a temporary database, serving IRC in
plaintext on the address irctest picks (`--irc-listen-plain`, loopback only)
and confab's own protocol on a port of its own, which this controller uses to
create accounts.

confab has no guests: every IRC connection logs in to an account (the nick
is the account name, as with ergo's force-nick-equals-account and
require-sasl). irctest's clients register with a bare NICK/USER, so this
controller makes an account for each nick a test client registers with and
sends `PASS nick:password` before that client's first NICK, unless the test
authenticates itself (SASL) or already sent a PASS. And confab's passwords
have 8 characters or more: a shorter one of irctest's ("sesame") is padded
the same way where the account is made and in SASL PLAIN payloads. Those
are the changes to what irctest's cases send; docs/IRC.md lists the cases
they affect.
"""

import base64
import binascii
import json
import os
import socket
import ssl
import struct
import subprocess
import time
import tempfile
from pathlib import Path
from typing import Optional, Set, Type

from irctest import cases
from irctest.basecontrollers import BaseServerController, DirectoryBasedController
from irctest.runner import NotImplementedByController

# The password of the accounts made for bare NICK/USER clients (confab's
# passwords are 8 to 128 characters).
AUTO_PASSWORD = "irctest-password"


class ConfabController(BaseServerController, DirectoryBasedController):
    software_name = "confab"
    supported_sasl_mechanisms: Set[str] = {"PLAIN"}
    supports_sts = False

    def run(
        self,
        hostname: str,
        port: int,
        *,
        password: Optional[str],
        ssl: bool,
        run_services: bool,
        faketime: Optional[str],
        websocket_hostname: Optional[str] = None,
        websocket_port: Optional[int] = None,
    ) -> None:
        if ssl:
            raise NotImplementedByController("TLS (the plaintext listener is used)")
        if password is not None:
            raise NotImplementedByController("server passwords (PASS is an account's)")
        if websocket_hostname is not None or websocket_port is not None:
            raise NotImplementedByController("Websocket")
        assert self.proc is None
        self.create_config()
        assert self.directory
        self.hostname, self.port = hostname, port
        # confab's plaintext IRC listener binds loopback only (and its
        # listeners take addresses, not names); irctest's clients connect
        # to localhost.
        ip = "127.0.0.1"
        certs = Path(os.environ.get("CONFAB_CERTS", "certs"))
        self.ca = certs / "ca.pem"
        server = os.environ.get("CONFAB_SERVER", "confab-server")
        (confab_host, confab_port) = self.get_hostname_and_port()
        self.confab_addr = f"{ip}:{confab_port}"
        self.proc = self.execute(
            [
                server,
                "--listen",
                self.confab_addr,
                "--irc-listen-plain",
                f"{ip}:{port}",
                # The name irctest's cases expect of every server.
                "--irc-server-name",
                "My.Little.Server",
                "--db",
                str(self.directory / "confab.db"),
                "--data-dir",
                str(self.directory),
                "--cert",
                str(certs / "server.pem"),
                "--key",
                str(certs / "server.key"),
                "--password-iterations",
                "1000",
                "--max-per-ip",
                "0",
                "--flood-burst",
                "1000000",
                "--flood-rate",
                "1000000",
            ],
            stderr=open(os.environ.get("CONFAB_IRCTEST_LOG", os.devnull), "a"),
        )

    def wait_for_services(self) -> None:
        # Accounts are confab's own: there is no services package to wait for.
        pass

    def registerUser(
        self,
        case: cases.BaseServerTestCase,
        username: str,
        password: Optional[str] = None,
    ) -> None:
        password = padded(password or AUTO_PASSWORD)
        if not register(self.confab_addr, self.ca, username, password):
            # Made earlier for a bare NICK/USER of that name: give it the
            # password the case will use.
            assert self.directory
            subprocess.run(
                [
                    os.environ.get("CONFAB_SERVER", "confab-server"),
                    "--db",
                    str(self.directory / "confab.db"),
                    "admin",
                    "reset-password",
                    username,
                ],
                input=password + "\n",
                text=True,
                check=True,
                capture_output=True,
            )


def register(addr: str, ca: Path, user: str, password: str) -> bool:
    """Creates an account over confab's own protocol; `False` if it existed
    (it is left as it is)."""
    host, port = addr.rsplit(":", 1)
    context = ssl.create_default_context(cafile=str(ca))
    # The server may still be starting.
    deadline = time.monotonic() + 10
    while True:
        try:
            raw = socket.create_connection((host, int(port)))
            break
        except ConnectionRefusedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)
    with raw:
        with context.wrap_socket(raw, server_hostname="localhost") as tls:

            def send(obj: dict) -> dict:
                payload = json.dumps(obj).encode()
                tls.sendall(struct.pack(">IB", len(payload), 1) + payload)
                while True:
                    head = recv_exact(tls, 5)
                    (length, _kind) = struct.unpack(">IB", head)
                    reply = json.loads(recv_exact(tls, length))
                    if reply.get("req") == obj["req"]:
                        return reply

            send({"req": 1, "type": "hello", "version": 1, "client": "irctest"})
            reply = send(
                {"req": 2, "type": "register", "user": user, "password": password}
            )
            if reply["type"] == "error" and reply.get("code") != "user_exists":
                raise RuntimeError(f"confab refused to register {user}: {reply}")
            return reply["type"] != "error"


def padded(password: str) -> str:
    """A password confab accepts (8 characters or more) in place of
    irctest's shorter ones ("sesame"), the same every time, so a wrong
    password stays wrong."""
    return password if len(password) >= 8 else password + "-confab-pad"


def padded_plain(payload: str) -> str:
    """An AUTHENTICATE payload with a SASL PLAIN password padded as
    [`padded`] does; anything else (`PLAIN`, `+`, `*`, invalid base64, a
    400-byte chunk of a longer payload) is sent as it is."""
    if payload in ("+", "*") or len(payload) >= 400 or payload.isalpha():
        return payload
    try:
        fields = base64.b64decode(payload, validate=True).split(b"\0")
    except (ValueError, binascii.Error):
        return payload
    if len(fields) != 3:
        return payload
    try:
        password = fields[2].decode()
    except UnicodeDecodeError:
        return payload
    fields[2] = padded(password).encode()
    return base64.b64encode(b"\0".join(fields)).decode()


def recv_exact(sock: ssl.SSLSocket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise RuntimeError("confab closed the connection")
        data += chunk
    return data


# A bare NICK/USER registration logs in to an account of that name: make the
# account and send PASS first (see the module documentation).

def _patched_send_line(self, client, line):  # type: ignore[no-untyped-def]
    if isinstance(line, bytes):
        return original(self, client, line)
    seen = self.__dict__.setdefault("_confab_registering", set())
    word = line.split(" ", 1)[0].upper()
    if word == "AUTHENTICATE":
        seen.add(client)
        line = f"AUTHENTICATE {padded_plain(line.split(' ', 1)[1])}"
    elif word == "PASS":
        seen.add(client)
    elif word == "NICK" and client not in seen:
        seen.add(client)
        nick = line.split(" ", 1)[1].strip().lstrip(":")
        controller = self.controller
        if isinstance(controller, ConfabController) and nick:
            try:
                register(controller.confab_addr, controller.ca, nick, AUTO_PASSWORD)
                original(self, client, f"PASS {nick}:{AUTO_PASSWORD}")
            except Exception:
                # An invalid name (the test's point, perhaps): send the NICK
                # alone and let the server answer it.
                pass
    return original(self, client, line)


original = cases.BaseServerTestCase.sendLine
cases.BaseServerTestCase.sendLine = _patched_send_line


def get_irctest_controller_class() -> Type[ConfabController]:
    return ConfabController
