"""GET /metrics: Prometheus text with the figures an operator graphs."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from bipupu_server import keys
from tests.conftest import bearer, until


async def scrape(client) -> dict[tuple[str, tuple], float]:
    resp = await client.get("/metrics")
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(await resp.text()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples, name: str, **labels) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


async def test_messages_are_counted_by_type(client, alice, bob):
    before = await scrape(client)
    for msg_type in ("USER_POSTCARD", "VOICE_TRANSCRIPT", "USER_POSTCARD"):
        resp = await client.post("/messages", json={"receiver_id": bob["bipupu_id"], "content": "hi",
                                                    "msg_type": msg_type}, headers=bearer(alice))
        assert resp.status == 201
    resp = await client.post("/messages", json={"receiver_id": "cosmic.fortune", "content": "TD"},
                             headers=bearer(alice))
    assert resp.status == 201
    after = await scrape(client)
    delta = {t: value(after, "bipupu_messages_total", msg_type=t) - value(before, "bipupu_messages_total", msg_type=t)
             for t in ("USER_POSTCARD", "VOICE_TRANSCRIPT", "COSMIC_BROADCAST")}
    assert delta == {"USER_POSTCARD": 3, "VOICE_TRANSCRIPT": 1, "COSMIC_BROADCAST": 1}  # the TD card and its reply


async def test_refused_cards_are_not_counted(client, alice):
    before = value(await scrape(client), "bipupu_messages_total", msg_type="USER_POSTCARD")
    resp = await client.post("/messages", json={"receiver_id": "99999999", "content": "hi"}, headers=bearer(alice))
    assert resp.status == 404
    assert value(await scrape(client), "bipupu_messages_total", msg_type="USER_POSTCARD") == before


async def test_http_responses_are_counted_by_status(client, alice):
    before = await scrape(client)
    await client.get("/nowhere")
    await client.get("/me")  # no token
    await client.get("/me", headers=bearer(alice))
    after = await scrape(client)

    def grew(status: str) -> float:
        return value(after, "bipupu_http_responses_total", status=status) - before.get(
            ("bipupu_http_responses_total", (("status", status),)), 0.0)

    assert grew("404") == 1
    assert grew("401") == 1
    assert grew("200") >= 2  # /me and the first scrape itself


async def test_live_sockets_follow_connections(client, alice, bob, open_ws):
    assert value(await scrape(client), "bipupu_live_sockets") == 0
    first, second = await open_ws(alice), await open_ws(bob)
    assert value(await scrape(client), "bipupu_live_sockets") == 2
    await first.close()
    await second.close()
    hub = client.server.app[keys.hub]  # the server detaches in its handler's finally, just after the close handshake
    await until(lambda: len(hub) == 0, "both sockets detached from the hub")
    assert value(await scrape(client), "bipupu_live_sockets") == 0


async def test_last_broadcast_size_and_duration(client, alice, bob):
    sent = await client.server.app[keys.broadcaster].broadcast_now("bipupu.notice", "维护通知：今晚十点重启")
    assert sent == 3  # admin, alice, bob
    samples = await scrape(client)
    assert value(samples, "bipupu_last_broadcast_messages") == 3
    assert value(samples, "bipupu_last_broadcast_duration_seconds") >= 0


@pytest.mark.relay_off
async def test_ble_relay_state_and_loop_lag_are_exposed(client):
    samples = await scrape(client)
    assert value(samples, "bipupu_ble_relay", state="off") == 1  # labelled `state`, as the README says
    assert value(samples, "bipupu_ble_relay", state="connected") == 0
    assert value(samples, "bipupu_event_loop_lag_seconds") >= 0
    assert value(samples, "bipupu_event_loop_lag_max_seconds") >= 0


async def test_metrics_need_no_token_and_hold_no_secrets(client, alice):
    resp = await client.get("/metrics")
    text = await resp.text()
    assert resp.status == 200
    assert alice["access_token"] not in text and alice["refresh_token"] not in text
