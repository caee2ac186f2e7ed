from tests.conftest import bearer, register


async def test_register_then_me(client):
    account = await register(client, "星语者_7")
    assert account["bipupu_id"] == "00000002"
    resp = await client.get("/me", headers=bearer(account))
    assert resp.status == 200
    assert (await resp.json())["username"] == "星语者_7"
