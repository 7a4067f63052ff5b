"""End-to-end checks of the Vestnik broker with the official Python server SDK (`pusher` on PyPI, 3.3.x).

The broker binary is started once per module on an ephemeral port with a temporary TOML config
(see tests/js/CONTRACT.md). The SDK drives the signed HTTP API; raw WebSocket clients
(websocket-client) subscribe, sign in and observe deliveries and close codes.

    pip install -r tests/python/requirements.txt
    cargo build -p vestnik-server
    python -m pytest tests/python -v

`VESTNIK_BIN` overrides the binary (default: target/debug/vestnik).
"""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import struct
import subprocess
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any, Callable, Optional

import pusher
import pytest
import websocket
from pusher.errors import PusherBadAuth, PusherBadRequest

REPO_ROOT = Path(__file__).resolve().parents[2]
LISTENING_RE = re.compile(r"listening on http://[^:\s]+:(\d+)")
ANSI_RE = re.compile(r"\x1b\[[0-9;]*m")
SOCKET_ID_RE = re.compile(r"^\d+\.\d+$")

# The Python SDK only accepts all-digit app ids.
APP_ID = "4242"
APP_KEY = "py-key"
APP_SECRET = "py-secret"
# 32 bytes: the master key the app uses for private-encrypted- channels (never seen by the broker).
MASTER_KEY_B64 = base64.b64encode(bytes(range(32))).decode()

CONFIG = f"""
[server]
activity_timeout = 120

[[apps]]
id = "{APP_ID}"
key = "{APP_KEY}"
secret = "{APP_SECRET}"
client_events = true
subscription_count = true
"""

START_TIMEOUT = 20.0
WAIT_TIMEOUT = 5.0


# ------------------------------------------------------------------------------------------------
# Waiting


def wait_for(predicate: Callable[[], Any], timeout: float = WAIT_TIMEOUT, what: str = "condition",
             describe: Optional[Callable[[], str]] = None) -> Any:
    """Polls `predicate` until it returns a truthy value and returns it; fails the test on timeout."""
    deadline = time.monotonic() + timeout
    last_err: Optional[BaseException] = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except AssertionError:
            raise
        except Exception as e:  # noqa: BLE001 - "not yet"
            last_err = e
        if time.monotonic() > deadline:
            msg = f"timed out after {timeout}s waiting for {what}"
            if last_err is not None:
                msg += f"\n  last error: {last_err!r}"
            if describe is not None:
                msg += f"\n  {describe()}"
            pytest.fail(msg)
        time.sleep(0.01)


def uniq(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


# ------------------------------------------------------------------------------------------------
# The broker process


def broker_binary() -> Path:
    path = Path(os.environ.get("VESTNIK_BIN") or REPO_ROOT / "target" / "debug" / "vestnik")
    if not path.is_file() or not os.access(path, os.X_OK):
        pytest.fail(
            f"broker binary {path} not found: run `cargo build -p vestnik-server` "
            "(or set VESTNIK_BIN)",
            pytrace=False,
        )
    return path


class Broker:
    """A running `vestnik` process on an ephemeral port, its stderr collected."""

    def __init__(self, config: str) -> None:
        self.dir = tempfile.TemporaryDirectory(prefix="vestnik-py-")
        self.config_path = Path(self.dir.name) / "vestnik.toml"
        self.config_path.write_text(config)
        self.log: list[str] = []
        self.port: Optional[int] = None
        self._port_seen = threading.Event()
        env = dict(os.environ, NO_COLOR="1")
        env.setdefault("RUST_LOG", "info")
        self.proc = subprocess.Popen(
            [str(broker_binary()), "--config", str(self.config_path),
             "--host", "127.0.0.1", "--port", "0"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            env=env,
        )
        self._reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._reader.start()
        if not self._port_seen.wait(START_TIMEOUT) or self.port is None:
            self.stop()
            pytest.fail(f"broker did not log its port within {START_TIMEOUT}s; stderr:\n{self.tail()}")
        wait_for(self._up, START_TIMEOUT, "GET /up to answer 200", self.tail)

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            line = ANSI_RE.sub("", raw.decode("utf-8", "replace")).rstrip("\n")
            self.log.append(line)
            if self.port is None:
                m = LISTENING_RE.search(line)
                if m:
                    self.port = int(m.group(1))
                    self._port_seen.set()
        self._port_seen.set()

    def _up(self) -> bool:
        if self.proc.poll() is not None:
            pytest.fail(f"broker exited with {self.proc.returncode}; stderr:\n{self.tail()}")
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/up", timeout=2) as r:
            return r.status == 200

    def tail(self, n: int = 40) -> str:
        return "\n".join(self.log[-n:])

    def client(self, secret: str = APP_SECRET, key: str = APP_KEY) -> pusher.Pusher:
        return pusher.Pusher(
            app_id=APP_ID, key=key, secret=secret, ssl=False, host="127.0.0.1",
            port=self.port, timeout=5, encryption_master_key_base64=MASTER_KEY_B64,
        )

    def socket(self, key: str = APP_KEY) -> "RawSocket":
        assert self.port is not None
        return RawSocket(self.port, key)

    def stop(self) -> Optional[int]:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._reader.join(5)
        self.dir.cleanup()
        return self.proc.returncode


# ------------------------------------------------------------------------------------------------
# A raw Pusher protocol client


class RawSocket:
    """A bare WebSocket speaking protocol 7: records every frame and the close code."""

    def __init__(self, port: int, key: str) -> None:
        url = f"ws://127.0.0.1:{port}/app/{key}?protocol=7&client=python-raw&version=0.1"
        self.ws = websocket.create_connection(url, timeout=WAIT_TIMEOUT)
        self.ws.settimeout(None)
        self.messages: list[dict] = []
        self.close_code: Optional[int] = None
        self.close_reason = ""
        self.read_error: Optional[BaseException] = None
        self.closed = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        established = self.wait_event("pusher:connection_established")
        data = json.loads(established["data"])
        self.socket_id: str = data["socket_id"]
        assert SOCKET_ID_RE.match(self.socket_id), self.socket_id

    def _read(self) -> None:
        try:
            while True:
                opcode, frame = self.ws.recv_data_frame(False)
                if opcode == websocket.ABNF.OPCODE_CLOSE:
                    payload = frame.data or b""
                    self.close_code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
                    self.close_reason = payload[2:].decode("utf-8", "replace")
                    return
                if opcode == websocket.ABNF.OPCODE_TEXT:
                    text = frame.data.decode() if isinstance(frame.data, bytes) else frame.data
                    with self._lock:
                        self.messages.append(json.loads(text))
        except Exception as e:  # noqa: BLE001 - the socket went away
            self.read_error = e
        finally:
            self.closed.set()

    # sending

    def send(self, message: dict) -> None:
        self.ws.send(json.dumps(message))

    def subscribe(self, channel: str, auth: str = "", channel_data: Optional[str] = None) -> dict:
        """Subscribes and returns the broker's answer: subscription_succeeded or subscription_error."""
        data: dict[str, Any] = {"channel": channel, "auth": auth}
        if channel_data is not None:
            data["channel_data"] = channel_data
        self.send({"event": "pusher:subscribe", "data": data})
        return self.wait_for(
            lambda m: m.get("channel") == channel and m["event"] in (
                "pusher_internal:subscription_succeeded", "pusher:subscription_error"),
            f"an answer to subscribing to {channel}",
        )

    def subscribe_ok(self, channel: str, auth: str = "", channel_data: Optional[str] = None) -> dict:
        answer = self.subscribe(channel, auth, channel_data)
        assert answer["event"] == "pusher_internal:subscription_succeeded", answer
        return answer

    def signin(self, auth: str, user_data: str) -> dict:
        """Signs in; returns pusher:signin_success or the pusher:error that refused it."""
        self.send({"event": "pusher:signin", "data": {"auth": auth, "user_data": user_data}})
        return self.wait_for(
            lambda m: m["event"] in ("pusher:signin_success", "pusher:error"), "a sign-in answer")

    # observing

    def snapshot(self) -> list[dict]:
        with self._lock:
            return list(self.messages)

    def find(self, pred: Callable[[dict], bool]) -> Optional[dict]:
        return next((m for m in self.snapshot() if pred(m)), None)

    def wait_for(self, pred: Callable[[dict], bool], what: str = "a message",
                 timeout: float = WAIT_TIMEOUT) -> dict:
        return wait_for(lambda: self.find(pred), timeout, what, self.describe)

    def wait_event(self, event: str, channel: Optional[str] = None,
                   timeout: float = WAIT_TIMEOUT) -> dict:
        return self.wait_for(
            lambda m: m.get("event") == event and (channel is None or m.get("channel") == channel),
            f"{event}" + (f" on {channel}" if channel else ""), timeout)

    def wait_closed(self, timeout: float = WAIT_TIMEOUT) -> int:
        wait_for(self.closed.is_set, timeout, "the socket to be closed by the broker", self.describe)
        assert self.close_code is not None, f"connection dropped without a close frame: {self.read_error!r}"
        return self.close_code

    def is_open(self) -> bool:
        return not self.closed.is_set()

    def ping(self) -> None:
        """Round-trips a pusher:ping, proving the socket is alive and everything before it was read."""
        before = sum(1 for m in self.snapshot() if m.get("event") == "pusher:pong")
        self.send({"event": "pusher:ping", "data": {}})
        wait_for(lambda: sum(1 for m in self.snapshot() if m.get("event") == "pusher:pong") > before,
                 WAIT_TIMEOUT, "pusher:pong", self.describe)

    def describe(self) -> str:
        msgs = self.snapshot()
        return (f"socket {getattr(self, 'socket_id', '?')}: closed={self.closed.is_set()} "
                f"code={self.close_code} got {len(msgs)} messages: {json.dumps(msgs[-10:])[:2000]}")

    def close(self) -> None:
        if not self.closed.is_set():
            try:
                self.ws.send_close()
            except Exception:  # noqa: BLE001
                pass
            self.closed.wait(2)
        try:
            self.ws.shutdown()
        except Exception:  # noqa: BLE001
            pass


# ------------------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture(scope="module")
def broker():
    b = Broker(CONFIG)
    yield b
    b.stop()
    panics = [line for line in b.log if "panicked" in line]
    assert not panics, "the broker panicked:\n" + "\n".join(panics)


@pytest.fixture(scope="module")
def sdk(broker: Broker) -> pusher.Pusher:
    return broker.client()


@pytest.fixture
def sockets(broker: Broker):
    """Opens raw sockets on demand and closes them after the test."""
    opened: list[RawSocket] = []

    def open_socket() -> RawSocket:
        s = broker.socket()
        opened.append(s)
        return s

    yield open_socket
    for s in opened:
        s.close()


def join_presence(sdk: pusher.Pusher, sock: RawSocket, channel: str, user_id: str,
                  user_info: Optional[dict] = None) -> dict:
    custom = {"user_id": user_id}
    if user_info is not None:
        custom["user_info"] = user_info
    auth = sdk.authenticate(channel=channel, socket_id=sock.socket_id, custom_data=custom)
    return sock.subscribe_ok(channel, auth["auth"], auth["channel_data"])


def is_event(event: str, channel: str) -> Callable[[dict], bool]:
    return lambda m: m.get("event") == event and m.get("channel") == channel


# ------------------------------------------------------------------------------------------------
# Tests: publishing


def test_trigger_reaches_raw_subscriber(sdk, sockets):
    channel = uniq("py-trigger")
    sub = sockets()
    sub.subscribe_ok(channel)
    payload = {"message": "hello", "n": 1, "nested": {"ok": True}, "text": "é \" \n"}

    assert sdk.trigger(channel, "my-event", payload) == {}

    msg = sub.wait_for(is_event("my-event", channel), "my-event on the subscriber")
    # The SDK sends data as json.dumps(payload, ensure_ascii=False); the broker must forward that
    # string verbatim.
    assert msg["data"] == json.dumps(payload, ensure_ascii=False)
    assert "user_id" not in msg


def test_trigger_multiple_channels_and_socket_id_exclusion(sdk, sockets):
    a, b = uniq("py-multi-a"), uniq("py-multi-b")
    sa, sb, excluded = sockets(), sockets(), sockets()
    sa.subscribe_ok(a)
    sb.subscribe_ok(b)
    excluded.subscribe_ok(a)

    assert sdk.trigger([a, b], "fanout", "plain text, not JSON", socket_id=excluded.socket_id) == {}

    assert sa.wait_for(is_event("fanout", a))["data"] == "plain text, not JSON"
    assert sb.wait_for(is_event("fanout", b))["data"] == "plain text, not JSON"
    excluded.ping()  # anything sent before the pong has arrived by now
    assert excluded.find(is_event("fanout", a)) is None, "socket_id exclusion ignored"


def test_trigger_batch(sdk, sockets):
    a, b = uniq("py-batch-a"), uniq("py-batch-b")
    sub = sockets()
    sub.subscribe_ok(a)
    sub.subscribe_ok(b)

    result = sdk.trigger_batch([
        {"channel": a, "name": "first", "data": {"i": 1}},
        {"channel": b, "name": "second", "data": "two"},
        {"channel": a, "name": "third", "data": {"i": 3}},
    ])
    assert result == {}

    first = sub.wait_for(is_event("first", a))
    second = sub.wait_for(is_event("second", b))
    third = sub.wait_for(is_event("third", a))
    assert first["data"] == json.dumps({"i": 1}, ensure_ascii=False)
    assert second["data"] == "two"
    assert third["data"] == json.dumps({"i": 3}, ensure_ascii=False)
    order = [m["event"] for m in sub.snapshot() if m.get("event") in ("first", "third")]
    assert order == ["first", "third"], "events of one batch on one channel arrive in order"


def test_trigger_batch_with_info(sdk, sockets):
    public, room = uniq("py-batchinfo"), uniq("presence-py-batchinfo")
    s1, s2 = sockets(), sockets()
    s1.subscribe_ok(public)
    s2.subscribe_ok(public)
    join_presence(sdk, s1, room, "ivan")

    result = sdk.trigger_batch([
        {"channel": public, "name": "counted", "data": "1", "info": "subscription_count"},
        {"channel": room, "name": "counted", "data": "2", "info": "user_count"},
        {"channel": public, "name": "plain", "data": "3"},
    ])
    # rest-api.md: with any info, {"batch":[attributes of event 0, ...]} aligned with the request.
    assert result == {"batch": [{"subscription_count": 2}, {"user_count": 1}, {}]}


def test_trigger_limits(sdk, sockets):
    channel = uniq("py-limits")
    # 11 KB passes the SDK's own 30 KB check but is over the broker's 10 KB limit: HTTP 413.
    with pytest.raises(pusher.errors.PusherBadStatus, match="413"):
        sdk.trigger(channel, "big", "x" * (11 * 1024))
    # More than 10 events in one batch is a 400 (the SDK does not check).
    with pytest.raises(PusherBadRequest):
        sdk.trigger_batch([{"channel": channel, "name": "e", "data": str(i)} for i in range(11)])


def test_trigger_encrypted_channel_relays_ciphertext(sdk, sockets):
    channel = uniq("private-encrypted-py")
    sub = sockets()
    auth = sdk.authenticate(channel=channel, socket_id=sub.socket_id)
    assert "shared_secret" in auth
    sub.subscribe_ok(channel, auth["auth"])

    sdk.trigger(channel, "secret-event", {"top": "secret"})

    msg = sub.wait_for(is_event("secret-event", channel))
    body = json.loads(msg["data"])
    assert set(body) == {"nonce", "ciphertext"}, body
    assert "secret" not in msg["data"]


def test_send_to_user_reaches_server_to_user_channel(sdk, sockets):
    user = uniq("u")
    sock = sockets()
    auth = sdk.authenticate_user(sock.socket_id, {"id": user})
    assert sock.signin(auth["auth"], auth["user_data"])["event"] == "pusher:signin_success"
    channel = f"#server-to-user-{user}"
    sock.subscribe_ok(channel)

    assert sdk.send_to_user(user, "direct", {"hi": user}) == {}

    msg = sock.wait_for(is_event("direct", channel))
    assert json.loads(msg["data"]) == {"hi": user}


# ------------------------------------------------------------------------------------------------
# Tests: channel queries


def test_channels_info_prefix_filter_and_user_count(sdk, sockets):
    tag = uuid.uuid4().hex[:8]
    room_a, room_b = f"presence-py{tag}-a", f"presence-py{tag}-b"
    public = f"py{tag}-public"
    s1, s2, s3 = sockets(), sockets(), sockets()
    join_presence(sdk, s1, room_a, "alice")
    join_presence(sdk, s2, room_b, "bob")
    join_presence(sdk, s3, room_b, "carol")
    s1.subscribe_ok(public)

    result = sdk.channels_info(prefix_filter=f"presence-py{tag}", attributes=["user_count"])
    assert result == {"channels": {room_a: {"user_count": 1}, room_b: {"user_count": 2}}}

    result = sdk.channels_info(prefix_filter=f"py{tag}")
    assert result == {"channels": {public: {}}}

    everything = sdk.channels_info()
    assert {room_a, room_b, public} <= set(everything["channels"])


def test_channels_info_user_count_needs_presence_prefix(sdk):
    # rest-api.md: requesting user_count without restricting to presence- channels is a 400.
    with pytest.raises(PusherBadRequest):
        sdk.channels_info(attributes=["user_count"])
    with pytest.raises(PusherBadRequest):
        sdk.channels_info(prefix_filter="py-", attributes=["user_count"])


def test_channel_info_occupied_and_counts(sdk, sockets):
    public = uniq("py-info")
    room = uniq("presence-py-info")
    s1, s2, s3 = sockets(), sockets(), sockets()
    s1.subscribe_ok(public)
    s2.subscribe_ok(public)
    join_presence(sdk, s1, room, "dave")
    join_presence(sdk, s2, room, "erin")
    join_presence(sdk, s3, room, "erin")  # a second connection of the same user counts once

    assert sdk.channel_info(public, ["subscription_count"]) == {
        "occupied": True, "subscription_count": 2}
    assert sdk.channel_info(public) == {"occupied": True}
    info = sdk.channel_info(room, ["user_count"])
    assert info["occupied"] is True
    assert info["user_count"] == 2

    empty = uniq("py-empty")
    assert sdk.channel_info(empty) == {"occupied": False}

    s1.send({"event": "pusher:unsubscribe", "data": {"channel": public}})
    s2.send({"event": "pusher:unsubscribe", "data": {"channel": public}})
    wait_for(lambda: sdk.channel_info(public) == {"occupied": False}, what="the channel to be vacated")


def test_channel_info_rejects_attributes_of_another_kind(sdk, sockets):
    public = uniq("py-kind")
    sockets().subscribe_ok(public)
    with pytest.raises(PusherBadRequest):
        sdk.channel_info(public, ["user_count"])


def test_users_info_on_presence_channel(sdk, sockets):
    room = uniq("presence-py-users")
    s1, s2, s3 = sockets(), sockets(), sockets()
    join_presence(sdk, s1, room, "frank", {"name": "Frank"})
    join_presence(sdk, s2, room, "grace")
    join_presence(sdk, s3, room, "grace")

    users = sdk.users_info(room)
    assert sorted(users["users"], key=lambda u: u["id"]) == [{"id": "frank"}, {"id": "grace"}]

    s1.close()
    wait_for(lambda: sdk.users_info(room) == {"users": [{"id": "grace"}]},
             what="frank to leave the presence channel")


def test_users_info_on_empty_presence_channel(sdk):
    assert sdk.users_info(uniq("presence-py-nobody")) == {"users": []}


def test_users_info_refuses_non_presence_channel(sdk, sockets):
    channel = uniq("private-py-users")
    with pytest.raises(PusherBadRequest):
        sdk.users_info(channel)


# ------------------------------------------------------------------------------------------------
# Tests: signatures made by the SDK


def test_authenticate_private_channel_accepted(sdk, sockets):
    channel = uniq("private-py")
    sock = sockets()
    auth = sdk.authenticate(channel=channel, socket_id=sock.socket_id)
    assert auth["auth"].startswith(APP_KEY + ":")
    sock.subscribe_ok(channel, auth["auth"])


def test_authenticate_presence_channel_accepted(sdk, sockets):
    room = uniq("presence-py")
    first, second = sockets(), sockets()
    auth = sdk.authenticate(channel=room, socket_id=first.socket_id,
                            custom_data={"user_id": "fred", "user_info": {"name": "Fred"}})
    # json.dumps puts spaces after ':' and ','; the broker must check the exact string it received.
    assert ": " in auth["channel_data"]
    ok = first.subscribe_ok(room, auth["auth"], auth["channel_data"])
    presence = json.loads(ok["data"])["presence"]
    assert presence["count"] == 1
    assert presence["ids"] == ["fred"]
    assert presence["hash"] == {"fred": {"name": "Fred"}}

    # A numeric user id (as in the Pusher docs) is accepted and reported as a string.
    join_presence(sdk, second, room, 10)  # type: ignore[arg-type]
    added = first.wait_for(is_event("pusher_internal:member_added", room))
    assert json.loads(added["data"])["user_id"] == "10"


def test_authenticate_for_another_socket_or_secret_refused(sdk, broker, sockets):
    channel = uniq("private-py-bad")
    sock, other = sockets(), sockets()
    stolen = sdk.authenticate(channel=channel, socket_id=other.socket_id)
    answer = sock.subscribe(channel, stolen["auth"])
    assert answer["event"] == "pusher:subscription_error", answer
    assert answer["data"]["status"] == 401
    assert answer["data"]["type"] == "AuthError"

    forged = broker.client(secret="not-the-secret").authenticate(channel=channel, socket_id=sock.socket_id)
    answer = sock.subscribe(channel + "-2", forged["auth"])
    assert answer["event"] == "pusher:subscription_error", answer
    assert sock.is_open()
    sock.ping()


def test_authenticate_user_signin_accepted(sdk, sockets):
    sock = sockets()
    user_data = {"id": uniq("user"), "user_info": {"name": "Ada"}, "watchlist": []}
    auth = sdk.authenticate_user(sock.socket_id, user_data)
    answer = sock.signin(auth["auth"], auth["user_data"])
    assert answer["event"] == "pusher:signin_success", answer
    # The broker echoes the exact user_data string it verified (protocol.md pusher:signin_success).
    data = answer["data"] if isinstance(answer["data"], dict) else json.loads(answer["data"])
    assert data["user_data"] == auth["user_data"]
    assert sock.is_open()


def test_signin_with_bad_signature_closes_4009(broker, sockets):
    sock = sockets()
    auth = broker.client(secret="wrong").authenticate_user(sock.socket_id, {"id": "mallory"})
    answer = sock.signin(auth["auth"], auth["user_data"])
    assert answer["event"] == "pusher:error", answer
    assert answer["data"]["code"] == 4009
    assert sock.wait_closed() == 4009


# ------------------------------------------------------------------------------------------------
# Tests: terminate_user_connections (the SDK posts to /users/{id}/terminate_connections)


def test_terminate_user_connections(sdk, sockets):
    victim_id, bystander_id = uniq("victim"), uniq("bystander")
    room = uniq("presence-py-term")
    victim_a, victim_b, bystander, presence_only = sockets(), sockets(), sockets(), sockets()
    for sock, uid in ((victim_a, victim_id), (victim_b, victim_id), (bystander, bystander_id)):
        auth = sdk.authenticate_user(sock.socket_id, {"id": uid})
        assert sock.signin(auth["auth"], auth["user_data"])["event"] == "pusher:signin_success"
    victim_a.subscribe_ok(uniq("py-term"))
    # A socket that only joined a presence channel under the same user id did not sign in:
    # terminating the user must not touch it (terminating-user-connections.md).
    join_presence(sdk, presence_only, room, victim_id)

    assert sdk.terminate_user_connections(victim_id) == {}

    for sock in (victim_a, victim_b):
        assert sock.wait_closed() == 4009, sock.describe()
        err = sock.find(lambda m: m.get("event") == "pusher:error")
        assert err is not None and err["data"]["code"] == 4009, sock.describe()
    bystander.ping()
    presence_only.ping()
    assert bystander.is_open() and presence_only.is_open()


def test_terminate_unknown_user_is_ok(sdk):
    assert sdk.terminate_user_connections(uniq("nobody")) == {}


# ------------------------------------------------------------------------------------------------
# Tests: request signing


def test_bad_secret_is_refused_with_401(broker, sockets):
    channel = uniq("py-badsecret")
    sub = sockets()
    sub.subscribe_ok(channel)
    bad = broker.client(secret="not-the-secret")

    with pytest.raises(PusherBadAuth):
        bad.trigger(channel, "forged", {"x": 1})
    with pytest.raises(PusherBadAuth):
        bad.channels_info()
    with pytest.raises(PusherBadAuth):
        bad.channel_info(channel)
    with pytest.raises(PusherBadAuth):
        bad.users_info(uniq("presence-py"))
    with pytest.raises(PusherBadAuth):
        bad.trigger_batch([{"channel": channel, "name": "forged", "data": "x"}])
    with pytest.raises(PusherBadAuth):
        bad.terminate_user_connections("someone")

    sub.ping()
    assert sub.find(lambda m: m.get("event") == "forged") is None, "a forged trigger was delivered"


def test_stale_timestamp_is_refused(broker, monkeypatch):
    # The SDK stamps auth_timestamp with time.time(); 700 s off is outside the 600 s window.
    import pusher.http as sdk_http

    class Skewed:
        @staticmethod
        def time() -> float:
            return time.time() - 700

    client = broker.client()
    monkeypatch.setattr(sdk_http, "time", Skewed)
    with pytest.raises(PusherBadAuth):
        client.channels_info()
    monkeypatch.undo()
    assert "channels" in client.channels_info()


def test_app_id_in_path_must_match_key(broker):
    # Signed correctly with the app's key and secret, but for another app id: refused
    # (pusher-protocol.md B.12.2: the {app_id} in the path must belong to the auth_key's app).
    other = pusher.Pusher(app_id="9999", key=APP_KEY, secret=APP_SECRET, ssl=False,
                          host="127.0.0.1", port=broker.port, timeout=5)
    with pytest.raises(pusher.errors.PusherError):
        other.channels_info()


def test_unknown_key_is_refused(broker):
    with pytest.raises((PusherBadAuth, pusher.errors.PusherBadStatus, PusherBadRequest)):
        broker.client(key="no-such-key").channels_info()


# ------------------------------------------------------------------------------------------------
# Tests: shutdown (its own broker)


def test_sigterm_closes_sockets_4200_and_exits_0():
    b = Broker(CONFIG)
    try:
        sock = b.socket()
        sock.subscribe_ok(uniq("py-shutdown"))
        b.proc.send_signal(signal.SIGTERM)
        assert sock.wait_closed(10) == 4200
        assert b.proc.wait(10) == 0, b.tail()
    finally:
        b.stop()
