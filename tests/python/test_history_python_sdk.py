"""The history API (`GET /apps/{id}/channels/{name}/history`, docs/recovery.md) read with the
official Python server SDK (`pusher` on PyPI, 3.3.x).

That SDK has no public generic `get`; its own building blocks make one: a `pusher.http.Request`
(signed like every SDK call) sent through the client's `http.send_request`. The same two lines work
in any backend on this SDK. Events are published with `trigger`, and a raw socket shows the positions
the history must agree with.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pusher
import pytest
from pusher.errors import PusherBadRequest, PusherBadStatus
from pusher.http import GET, Request

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_pusher_sdk import APP_ID, Broker, uniq  # noqa: E402

CONFIG = f"""
[[apps]]
id = "{APP_ID}"
key = "py-key"
secret = "py-secret"

[[apps.history.channels]]
prefix = "nohistory-"
enabled = false
"""


def history(sdk: pusher.Pusher, channel: str, **params) -> dict:
    """`GET /apps/{id}/channels/{channel}/history` through the SDK's own signed request."""
    client = sdk._pusher_client  # the SDK's request layer: what its channel_info uses too
    path = "/apps/%s/channels/%s/history" % (client.app_id, channel)
    return client.http.send_request(Request(client, GET, path, {k: str(v) for k, v in params.items()}))


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


def test_history_pages_oldest_first_with_a_cursor(sdk, broker):
    channel = uniq("orders-")
    sock = broker.socket()
    try:
        sock.subscribe_ok(channel)
        for step in range(1, 6):
            sdk.trigger(channel, "status", {"step": step})
        last = sock.wait_for(
            lambda m: m.get("event") == "status" and json.loads(m["data"])["step"] == 5,
            "the fifth event on the socket")
    finally:
        sock.close()
    epoch = last["position"]["epoch"]
    assert last["position"]["offset"] == 5

    first = history(sdk, channel, limit=2)
    assert first["epoch"] == epoch
    assert (first["first_offset"], first["last_offset"]) == (1, 5)
    assert [e["offset"] for e in first["events"]] == [1, 2]
    assert [json.loads(e["data"])["step"] for e in first["events"]] == [1, 2]
    assert all(e["event"] == "status" and e["published_at_ms"] > 0 for e in first["events"])
    assert (first["next_after"], first["has_more"]) == (2, True)

    rest = history(sdk, channel, epoch=epoch, after=first["next_after"])
    assert [e["offset"] for e in rest["events"]] == [3, 4, 5]
    assert (rest["next_after"], rest["has_more"]) == (5, False)


def test_history_refusals_are_json_errors_a_backend_can_act_on(sdk):
    channel = uniq("orders-")
    sdk.trigger(channel, "status", {"step": 1})
    epoch = history(sdk, channel)["epoch"]

    with pytest.raises(PusherBadStatus) as wrong:
        history(sdk, channel, epoch="000000000000", after=1)
    status, _, body = str(wrong.value).partition(": ")
    refusal = json.loads(body)
    assert status == "409"
    assert refusal["reason"] == "epoch_changed"
    assert (refusal["epoch"], refusal["last_offset"]) == (epoch, 1)
    assert "error" in refusal

    with pytest.raises(PusherBadStatus) as off:
        history(sdk, uniq("nohistory-"))
    status, _, body = str(off.value).partition(": ")
    assert (status, json.loads(body)["reason"]) == ("404", "history_off")

    with pytest.raises(PusherBadRequest) as bad:
        history(sdk, channel, after=1)
    assert "epoch" in json.loads(str(bad.value))["error"]
