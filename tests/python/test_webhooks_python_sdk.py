"""Vestnik webhooks checked with the official Python server SDK's verifier (`pusher` on PyPI, 3.3.x).

A real HTTP receiver (http.server in a thread on 127.0.0.1, ephemeral port) gets the broker's
webhook POSTs and checks every one of them with `pusher.Pusher(...).validate_webhook(key,
signature, body)`, which returns the decoded payload or None (bad key, bad signature, or a
`time_ms` more than 5 minutes off). The broker is started once per module with a temporary TOML
config that points one app's webhook target at the receiver (see docs/webhooks.md).

    pip install -r tests/python/requirements.txt
    cargo build -p vestnik-server
    python -m pytest tests/python -v

`VESTNIK_BIN` overrides the binary (default: target/debug/vestnik).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import sys
import tempfile
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Optional

import pusher
import pytest

# The shared helpers live in the SDK test module next to this one (pytest's default import mode
# already puts this directory on sys.path; this keeps the import working under other modes).
_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

from test_pusher_sdk import Broker, RawSocket, uniq, wait_for  # noqa: E402

# The Python SDK only accepts all-digit app ids.
APP_ID = "7070"
APP_KEY = "py-wh-key"
APP_SECRET = "py-wh-secret"
HOOK_PATH = "/pusher/webhook"

BATCH_MS = 100
HOLD_MS = 300
RETRY_INITIAL_MS = 200  # the first retry comes 100..200 ms after the failure (jitter)

DELIVERY_TIMEOUT = 10.0


def verifier(key: str = APP_KEY, secret: str = APP_SECRET) -> pusher.Pusher:
    """The SDK object a receiving app would build; only its credentials matter for webhooks."""
    return pusher.Pusher(app_id=APP_ID, key=key, secret=secret)


# ------------------------------------------------------------------------------------------------
# The receiver


@dataclass
class Delivery:
    """One POST the receiver got, what validate_webhook made of it and how it answered."""

    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes
    payload: Optional[dict]  # validate_webhook's result: the decoded body, or None if rejected
    status: int

    def raw_json(self) -> dict:
        """The body parsed without any check (to find deliveries even if validation failed)."""
        try:
            return json.loads(self.body)
        except ValueError:
            return {}

    def events(self) -> list[dict]:
        return list(self.raw_json().get("events") or [])

    def has(self, name: str, channel: str) -> bool:
        return any(e.get("name") == name and e.get("channel") == channel for e in self.events())

    def event(self, name: str, channel: str) -> dict:
        return next(e for e in self.events() if e.get("name") == name and e.get("channel") == channel)

    def summary(self) -> str:
        return (f"{self.status} attempt={self.headers.get('x-vestnik-webhook-attempt')} "
                f"valid={self.payload is not None} body={self.body[:300]!r}")


class Receiver:
    """An HTTP server that validates each webhook with the SDK and answers 200, 401 or 500.

    A request whose signature, key or time_ms the SDK rejects gets 401. A request carrying an event
    on a channel registered with `fail_once` gets 500 the first time such a channel is seen, 200
    afterwards.
    """

    def __init__(self) -> None:
        self.sdk = verifier()
        self.deliveries: list[Delivery] = []
        self._lock = threading.Lock()
        self._fail_once: set[str] = set()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                status = receiver._handle(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok" if status == 200 else b"no")

            def log_message(self, *args) -> None:  # keep pytest output clean
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}{HOOK_PATH}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def _handle(self, path: str, headers: dict[str, str], body: bytes) -> int:
        try:
            payload = self.sdk.validate_webhook(
                key=headers.get("x-pusher-key", ""),
                signature=headers.get("x-pusher-signature", ""),
                body=body.decode("utf-8"),
            )
        except Exception:  # noqa: BLE001 - undecodable body: rejected like a bad signature
            payload = None
        delivery = Delivery(path, headers, body, payload, 200)
        with self._lock:
            if payload is None:
                delivery.status = 401
            else:
                channels = {e.get("channel") for e in payload.get("events", [])}
                to_fail = channels & self._fail_once
                if to_fail:
                    self._fail_once -= to_fail
                    delivery.status = 500
            self.deliveries.append(delivery)
        return delivery.status

    def fail_once(self, channel: str) -> None:
        with self._lock:
            self._fail_once.add(channel)

    def snapshot(self) -> list[Delivery]:
        with self._lock:
            return list(self.deliveries)

    def matching(self, name: str, channel: str) -> list[Delivery]:
        return [d for d in self.snapshot() if d.has(name, channel)]

    def wait_deliveries(self, name: str, channel: str, count: int = 1,
                        timeout: float = DELIVERY_TIMEOUT) -> list[Delivery]:
        """Waits until `count` requests carried a `name` event for `channel`; returns them in order."""
        found = wait_for(lambda: (lambda ds: ds if len(ds) >= count else None)(self.matching(name, channel)),
                         timeout, f"{count} webhook request(s) with {name} on {channel}", self.describe)
        return found

    def describe(self) -> str:
        ds = self.snapshot()
        return f"receiver got {len(ds)} requests; last: " + " | ".join(d.summary() for d in ds[-5:])

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(5)


# ------------------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture(scope="module")
def receiver():
    r = Receiver()
    yield r
    r.stop()


@pytest.fixture(scope="module")
def broker(receiver: Receiver):
    data_dir = tempfile.TemporaryDirectory(prefix="vestnik-py-webhooks-")
    config = f"""
[server]
activity_timeout = 120

[webhooks]
data_dir = {json.dumps(data_dir.name)}
batch_ms = {BATCH_MS}
hold_ms = {HOLD_MS}
retry_initial_ms = {RETRY_INITIAL_MS}
retry_max_ms = 2000
request_timeout_ms = 5000

[[apps]]
id = "{APP_ID}"
key = "{APP_KEY}"
secret = "{APP_SECRET}"

[[apps.webhooks]]
url = "{receiver.url}"
"""
    b = Broker(config)
    try:
        yield b
    finally:
        b.stop()
        data_dir.cleanup()
    panics = [line for line in b.log if "panicked" in line]
    assert not panics, "the broker panicked:\n" + "\n".join(panics)


@pytest.fixture
def sockets(broker: Broker):
    """Opens raw sockets for the app and closes them after the test."""
    opened: list[RawSocket] = []

    def open_socket() -> RawSocket:
        s = broker.socket(APP_KEY)
        opened.append(s)
        return s

    yield open_socket
    for s in opened:
        s.close()


def assert_well_formed(d: Delivery) -> None:
    assert d.path == HOOK_PATH
    assert d.headers.get("content-type") == "application/json", d.headers
    assert d.headers.get("x-pusher-key") == APP_KEY, d.headers
    ids = [e.get("id") for e in d.events()]
    assert all(ids), d.body
    assert d.headers.get("x-vestnik-webhook-id") == ",".join(ids), d.headers


# ------------------------------------------------------------------------------------------------
# Tests


def test_channel_occupied_is_accepted_by_validate_webhook(receiver, sockets):
    channel = uniq("py-wh-occupied")
    sock = sockets()
    sock.subscribe_ok(channel)

    [d] = receiver.wait_deliveries("channel_occupied", channel)
    assert d.payload is not None, f"validate_webhook rejected the webhook: {d.summary()}"
    assert d.status == 200
    assert_well_formed(d)
    assert d.headers.get("x-vestnik-webhook-attempt") == "1"
    assert d.payload == json.loads(d.body)
    assert isinstance(d.payload["time_ms"], int)
    event = next(e for e in d.payload["events"] if e["channel"] == channel)
    assert event["name"] == "channel_occupied"
    assert set(event) == {"name", "channel", "id"}

    # The last subscriber leaving gives a channel_vacated, after hold_ms, just as verifiable.
    sock.close()
    [v] = receiver.wait_deliveries("channel_vacated", channel)
    assert v.payload is not None, f"validate_webhook rejected the webhook: {v.summary()}"
    assert v.status == 200
    assert_well_formed(v)
    assert v.event("channel_vacated", channel)["id"] != event["id"]


def test_retry_after_500_is_freshly_signed_and_accepted(receiver, sockets):
    channel = uniq("py-wh-retry")
    receiver.fail_once(channel)
    sockets().subscribe_ok(channel)

    first, retry = receiver.wait_deliveries("channel_occupied", channel, count=2)[:2]
    for d in (first, retry):
        assert d.payload is not None, f"validate_webhook rejected the webhook: {d.summary()}"
        assert_well_formed(d)
    assert (first.status, retry.status) == (500, 200)
    assert first.headers.get("x-vestnik-webhook-attempt") == "1"
    assert retry.headers.get("x-vestnik-webhook-attempt") == "2"

    # The same events (same ids) ...
    assert retry.headers["x-vestnik-webhook-id"] == first.headers["x-vestnik-webhook-id"]
    assert retry.event("channel_occupied", channel) == first.event("channel_occupied", channel)
    assert retry.payload["events"] == first.payload["events"]
    # ... in a body built again: a later time_ms and a new signature.
    assert retry.payload["time_ms"] > first.payload["time_ms"]
    assert retry.headers["x-pusher-signature"] != first.headers["x-pusher-signature"]


def test_tampered_body_is_rejected_by_validate_webhook(receiver, sockets):
    channel = uniq("py-wh-tamper")
    sockets().subscribe_ok(channel)
    [d] = receiver.wait_deliveries("channel_occupied", channel)
    assert d.payload is not None and d.status == 200, d.summary()
    key, signature, body = d.headers["x-pusher-key"], d.headers["x-pusher-signature"], d.body
    sdk = verifier()

    # Untouched, the recorded request still validates (time_ms is recent).
    assert sdk.validate_webhook(key, signature, body.decode()) == json.loads(body)

    # Flip one bit of one byte inside the channel name: still well-formed JSON with a fresh
    # time_ms, so only the signature can reject it.
    i = body.index(channel.encode())
    tampered = body[:i] + bytes([body[i] ^ 0x01]) + body[i + 1:]
    assert tampered != body and len(tampered) == len(body)
    assert json.loads(tampered)["events"]
    assert sdk.validate_webhook(key, signature, tampered.decode()) is None

    # The same tampered body signed with the app secret passes: the rejection was the signature.
    resigned = hmac.new(APP_SECRET.encode(), tampered, hashlib.sha256).hexdigest()
    assert sdk.validate_webhook(key, resigned, tampered.decode()) == json.loads(tampered)

    # Another secret or another key rejects even the untouched body.
    assert verifier(secret="not-the-secret").validate_webhook(key, signature, body.decode()) is None
    assert verifier(key="other-key").validate_webhook(key, signature, body.decode()) is None
