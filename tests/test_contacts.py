"""/contacts and /blocks (SPEC §4 "Contacts and blocks"): shapes, validation, ownership, auth."""

from __future__ import annotations

import re
import sqlite3
from contextlib import closing
from typing import Any

import pytest

from bipupu_server import keys
from tests.conftest import assert_error, bearer, register, rfc3339

CONTACT_KEYS = {"contact_id", "alias", "nickname", "avatar_url", "created_at"}
BLOCK_KEYS = {"blocked_id", "nickname", "avatar_url", "created_at"}
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
UNKNOWN_ID = "00000099"


def deactivate(client, bipupu_id: str) -> None:
    """What an admin's deactivation leaves in the database, written straight into the server's file."""
    with closing(sqlite3.connect(client.server.app[keys.config].db_path)) as conn, conn:
        conn.execute("UPDATE users SET is_active = 0 WHERE bipupu_id = ?", (bipupu_id,))


async def add_contact(client, account: dict[str, Any], body: Any):
    return await client.post("/contacts", json=body, headers=bearer(account))


async def created_contact(client, account: dict[str, Any], contact_id: str, alias: str | None = None) -> dict:
    body = {"contact_id": contact_id} if alias is None else {"contact_id": contact_id, "alias": alias}
    resp = await add_contact(client, account, body)
    assert resp.status == 201, await resp.text()
    return await resp.json()


async def list_of(client, account: dict[str, Any], path: str) -> list[dict[str, Any]]:
    resp = await client.get(path, headers=bearer(account))
    assert resp.status == 200, await resp.text()
    assert resp.content_type == "application/json"
    return await resp.json()


async def block(client, account: dict[str, Any], body: Any):
    return await client.post("/blocks", json=body, headers=bearer(account))


# POST /contacts ---------------------------------------------------------------------------------

async def test_add_contact_returns_exactly_the_contact_object(client, clock, alice, bob):
    resp = await add_contact(client, alice, {"contact_id": bob["bipupu_id"], "alias": "Bobby B"})
    assert resp.status == 201, await resp.text()
    body = await resp.json()
    assert set(body) == CONTACT_KEYS
    assert body == {"contact_id": "00000003", "alias": "Bobby B", "nickname": "bob", "avatar_url": None,
                    "created_at": rfc3339(clock.time())}
    assert TIMESTAMP.match(body["created_at"])


async def test_add_contact_without_alias_has_a_null_alias(client, alice, bob):
    body = await created_contact(client, alice, bob["bipupu_id"])
    assert body["alias"] is None and body["contact_id"] == bob["bipupu_id"]


async def test_add_contact_alias_of_exactly_32_characters_is_kept(client, alice, bob):
    body = await created_contact(client, alice, bob["bipupu_id"], alias="星" * 32)
    assert body["alias"] == "星" * 32


@pytest.mark.parametrize("contact_id", [UNKNOWN_ID, "99999999"])
async def test_add_contact_of_an_unknown_user_is_404(client, alice, bob, contact_id):
    await assert_error(await add_contact(client, alice, {"contact_id": contact_id}), 404, "user_not_found")
    assert await list_of(client, alice, "/contacts") == []


@pytest.mark.parametrize("contact_id", ["nobody", "", "0000003", "００００００03"])
async def test_add_contact_of_no_bipupu_id_is_422(client, alice, bob, contact_id):
    await assert_error(await add_contact(client, alice, {"contact_id": contact_id}), 422, "invalid_field", "contact_id")
    assert await list_of(client, alice, "/contacts") == []


async def test_add_contact_of_a_deactivated_user_is_404(client, alice, bob):
    deactivate(client, bob["bipupu_id"])
    await assert_error(await add_contact(client, alice, {"contact_id": bob["bipupu_id"]}), 404, "user_not_found")
    assert await list_of(client, alice, "/contacts") == []


async def test_add_oneself_as_contact_is_422(client, alice):
    resp = await add_contact(client, alice, {"contact_id": alice["bipupu_id"]})
    await assert_error(resp, 422, "self_reference", "contact_id")
    assert await list_of(client, alice, "/contacts") == []


async def test_add_the_same_contact_twice_is_409_and_keeps_the_first(client, alice, bob):
    first = await created_contact(client, alice, bob["bipupu_id"], alias="first")
    resp = await add_contact(client, alice, {"contact_id": bob["bipupu_id"], "alias": "second"})
    await assert_error(resp, 409, "contact_exists")
    assert await list_of(client, alice, "/contacts") == [first]


@pytest.mark.parametrize("alias", ["x" * 33, "line\nbreak", "tab\there", "bell\x07"])
async def test_add_contact_with_a_bad_alias_is_422_naming_alias(client, alice, bob, alias):
    resp = await add_contact(client, alice, {"contact_id": bob["bipupu_id"], "alias": alias})
    await assert_error(resp, 422, "invalid_field", "alias")
    assert await list_of(client, alice, "/contacts") == []


@pytest.mark.parametrize("contact_id", [3, 3.0, ["00000003"], {"id": "00000003"}, True, None])
async def test_add_contact_with_a_non_string_id_is_422(client, alice, bob, contact_id):
    resp = await add_contact(client, alice, {"contact_id": contact_id})
    await assert_error(resp, 422, "invalid_field", "contact_id")
    assert await list_of(client, alice, "/contacts") == []


async def test_add_contact_without_contact_id_is_422_missing_field(client, alice, bob):
    await assert_error(await add_contact(client, alice, {"alias": "b"}), 422, "missing_field", "contact_id")


async def test_add_contact_with_an_unknown_field_is_422(client, alice, bob):
    resp = await add_contact(client, alice, {"contact_id": bob["bipupu_id"], "nickname": "b"})
    await assert_error(resp, 422, "unknown_field", "nickname")
    assert await list_of(client, alice, "/contacts") == []


# GET /contacts ----------------------------------------------------------------------------------

async def test_contacts_list_shows_nickname_and_avatar_of_each_contact(client, clock, alice, bob):
    carol = await register(client, "carol", nickname="Carol C")
    resp = await client.put("/me", json={"avatar_url": "https://example.com/bob.png", "nickname": "Bobby"},
                            headers=bearer(bob))
    assert resp.status == 200, await resp.text()
    await created_contact(client, alice, bob["bipupu_id"], alias="b")
    await created_contact(client, alice, carol["bipupu_id"])
    contacts = await list_of(client, alice, "/contacts")
    assert sorted(contacts, key=lambda c: c["contact_id"]) == [
        {"contact_id": bob["bipupu_id"], "alias": "b", "nickname": "Bobby",
         "avatar_url": "https://example.com/bob.png", "created_at": rfc3339(clock.time())},
        {"contact_id": carol["bipupu_id"], "alias": None, "nickname": "Carol C", "avatar_url": None,
         "created_at": rfc3339(clock.time())},
    ]


async def test_contacts_list_follows_later_profile_changes(client, alice, bob):
    await created_contact(client, alice, bob["bipupu_id"])
    resp = await client.put("/me", json={"avatar_url": "/static/avatars/b.png"}, headers=bearer(bob))
    assert resp.status == 200, await resp.text()
    [contact] = await list_of(client, alice, "/contacts")
    assert contact["avatar_url"] == "/static/avatars/b.png"


async def test_contacts_list_holds_only_the_callers_own(client, alice, bob):
    carol = await register(client, "carol")
    await created_contact(client, alice, bob["bipupu_id"])
    await created_contact(client, carol, alice["bipupu_id"])
    assert [c["contact_id"] for c in await list_of(client, alice, "/contacts")] == [bob["bipupu_id"]]
    assert [c["contact_id"] for c in await list_of(client, carol, "/contacts")] == [alice["bipupu_id"]]
    assert await list_of(client, bob, "/contacts") == []


# PUT /contacts/{id} -----------------------------------------------------------------------------

async def test_rename_contact_returns_the_new_alias(client, alice, bob):
    before = await created_contact(client, alice, bob["bipupu_id"], alias="old")
    resp = await client.put(f"/contacts/{bob['bipupu_id']}", json={"alias": "new"}, headers=bearer(alice))
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert body == {**before, "alias": "new"}
    assert await list_of(client, alice, "/contacts") == [body]


async def test_rename_contact_with_null_clears_the_alias(client, alice, bob):
    before = await created_contact(client, alice, bob["bipupu_id"], alias="old")
    resp = await client.put(f"/contacts/{bob['bipupu_id']}", json={"alias": None}, headers=bearer(alice))
    assert resp.status == 200, await resp.text()
    assert await resp.json() == {**before, "alias": None}
    assert (await list_of(client, alice, "/contacts"))[0]["alias"] is None


async def test_rename_someone_not_in_contacts_is_404(client, alice, bob):
    carol = await register(client, "carol")
    await created_contact(client, carol, bob["bipupu_id"], alias="carols")  # another owner's pair is no help
    for target in (bob["bipupu_id"], UNKNOWN_ID, "not-an-id"):
        resp = await client.put(f"/contacts/{target}", json={"alias": "x"}, headers=bearer(alice))
        await assert_error(resp, 404, "contact_not_found")
    assert (await list_of(client, carol, "/contacts"))[0]["alias"] == "carols"


async def test_rename_contact_without_alias_is_422(client, alice, bob):
    await created_contact(client, alice, bob["bipupu_id"], alias="keep")
    resp = await client.put(f"/contacts/{bob['bipupu_id']}", json={}, headers=bearer(alice))
    await assert_error(resp, 422, "missing_field", "alias")
    assert (await list_of(client, alice, "/contacts"))[0]["alias"] == "keep"


async def test_rename_contact_with_a_bad_alias_is_422(client, alice, bob):
    await created_contact(client, alice, bob["bipupu_id"], alias="keep")
    resp = await client.put(f"/contacts/{bob['bipupu_id']}", json={"alias": "y" * 33}, headers=bearer(alice))
    await assert_error(resp, 422, "invalid_field", "alias")
    assert (await list_of(client, alice, "/contacts"))[0]["alias"] == "keep"


# DELETE /contacts/{id} --------------------------------------------------------------------------

async def test_delete_contact_then_it_is_gone(client, alice, bob):
    await created_contact(client, alice, bob["bipupu_id"])
    resp = await client.delete(f"/contacts/{bob['bipupu_id']}", headers=bearer(alice))
    assert resp.status == 204, await resp.text()
    assert await list_of(client, alice, "/contacts") == []
    again = await client.delete(f"/contacts/{bob['bipupu_id']}", headers=bearer(alice))
    await assert_error(again, 404, "contact_not_found")


async def test_delete_contact_that_was_never_added_is_404(client, alice, bob):
    await created_contact(client, bob, alice["bipupu_id"])  # the reverse pair does not count
    resp = await client.delete(f"/contacts/{bob['bipupu_id']}", headers=bearer(alice))
    await assert_error(resp, 404, "contact_not_found")
    assert len(await list_of(client, bob, "/contacts")) == 1


async def test_contact_can_be_added_again_after_deletion(client, alice, bob):
    await created_contact(client, alice, bob["bipupu_id"], alias="one")
    resp = await client.delete(f"/contacts/{bob['bipupu_id']}", headers=bearer(alice))
    assert resp.status == 204
    again = await created_contact(client, alice, bob["bipupu_id"], alias="two")
    assert again["alias"] == "two"


# /blocks ----------------------------------------------------------------------------------------

async def test_block_returns_exactly_the_block_object(client, clock, alice, bob):
    resp = await client.put("/me", json={"nickname": "Bobby", "avatar_url": "https://example.com/b.png"},
                            headers=bearer(bob))
    assert resp.status == 200, await resp.text()
    resp = await block(client, alice, {"blocked_id": bob["bipupu_id"]})
    assert resp.status == 201, await resp.text()
    body = await resp.json()
    assert set(body) == BLOCK_KEYS
    assert body == {"blocked_id": bob["bipupu_id"], "nickname": "Bobby", "avatar_url": "https://example.com/b.png",
                    "created_at": rfc3339(clock.time())}
    assert await list_of(client, alice, "/blocks") == [body]


async def test_block_an_unknown_user_is_404(client, alice, bob):
    await assert_error(await block(client, alice, {"blocked_id": UNKNOWN_ID}), 404, "user_not_found")
    assert await list_of(client, alice, "/blocks") == []


async def test_block_of_no_bipupu_id_is_422(client, alice, bob):
    await assert_error(await block(client, alice, {"blocked_id": "nobody"}), 422, "invalid_field", "blocked_id")
    assert await list_of(client, alice, "/blocks") == []


async def test_block_oneself_is_422(client, alice):
    await assert_error(await block(client, alice, {"blocked_id": alice["bipupu_id"]}), 422, "self_reference",
                       "blocked_id")
    assert await list_of(client, alice, "/blocks") == []


async def test_block_twice_is_409(client, alice, bob):
    first = await block(client, alice, {"blocked_id": bob["bipupu_id"]})
    assert first.status == 201, await first.text()
    await assert_error(await block(client, alice, {"blocked_id": bob["bipupu_id"]}), 409, "block_exists")
    assert len(await list_of(client, alice, "/blocks")) == 1


@pytest.mark.parametrize("body, status, code, field", [
    ({}, 422, "missing_field", "blocked_id"),
    ({"blocked_id": 3}, 422, "invalid_field", "blocked_id"),
    ({"blocked_id": "00000003", "why": "spam"}, 422, "unknown_field", "why"),
])
async def test_block_with_a_bad_body_is_422(client, alice, bob, body, status, code, field):
    await assert_error(await block(client, alice, body), status, code, field)
    assert await list_of(client, alice, "/blocks") == []


async def test_blocks_list_holds_only_the_callers_own(client, alice, bob):
    carol = await register(client, "carol")
    for blocker, blocked in ((alice, bob), (alice, carol), (carol, alice)):
        resp = await block(client, blocker, {"blocked_id": blocked["bipupu_id"]})
        assert resp.status == 201, await resp.text()
    assert sorted(b["blocked_id"] for b in await list_of(client, alice, "/blocks")) == ["00000003", "00000004"]
    assert [b["blocked_id"] for b in await list_of(client, carol, "/blocks")] == [alice["bipupu_id"]]
    assert await list_of(client, bob, "/blocks") == []


async def test_unblock_then_it_is_gone(client, alice, bob):
    resp = await block(client, alice, {"blocked_id": bob["bipupu_id"]})
    assert resp.status == 201
    resp = await client.delete(f"/blocks/{bob['bipupu_id']}", headers=bearer(alice))
    assert resp.status == 204, await resp.text()
    assert await list_of(client, alice, "/blocks") == []
    again = await client.delete(f"/blocks/{bob['bipupu_id']}", headers=bearer(alice))
    await assert_error(again, 404, "block_not_found")


async def test_unblock_someone_never_blocked_is_404(client, alice, bob):
    resp = await block(client, bob, {"blocked_id": alice["bipupu_id"]})  # the reverse pair does not count
    assert resp.status == 201
    await assert_error(await client.delete(f"/blocks/{bob['bipupu_id']}", headers=bearer(alice)), 404,
                       "block_not_found")
    assert len(await list_of(client, bob, "/blocks")) == 1


async def test_block_and_contact_are_independent_lists(client, alice, bob):
    await created_contact(client, alice, bob["bipupu_id"])
    resp = await block(client, alice, {"blocked_id": bob["bipupu_id"]})
    assert resp.status == 201
    assert [c["contact_id"] for c in await list_of(client, alice, "/contacts")] == [bob["bipupu_id"]]
    assert [b["blocked_id"] for b in await list_of(client, alice, "/blocks")] == [bob["bipupu_id"]]


# Authentication ---------------------------------------------------------------------------------

ROUTES = [
    ("POST", "/contacts", {"contact_id": "00000003"}),
    ("GET", "/contacts", None),
    ("PUT", "/contacts/00000003", {"alias": "x"}),
    ("DELETE", "/contacts/00000003", None),
    ("POST", "/blocks", {"blocked_id": "00000003"}),
    ("GET", "/blocks", None),
    ("DELETE", "/blocks/00000003", None),
]


@pytest.mark.parametrize("method, path, body", ROUTES)
async def test_every_contacts_route_needs_a_token(client, alice, bob, method, path, body):
    resp = await client.request(method, path, json=body)
    await assert_error(resp, 401, "missing_token")


@pytest.mark.parametrize("method, path, body", ROUTES)
async def test_every_contacts_route_refuses_a_forged_token(client, alice, bob, method, path, body):
    token = alice["access_token"]
    flipped = "A" if token[-10] != "A" else "B"  # inside the signature, not its unused last bits
    forged = {"Authorization": f"Bearer {token[:-10]}{flipped}{token[-9:]}"}
    resp = await client.request(method, path, json=body, headers=forged)
    await assert_error(resp, 401, "invalid_token")
