"""`edgestate token` on a stopped node's data directory and against a running node."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from edgestate.cli.main import cli
from edgestate.store import Store
from tests.node.api_check import call
from tests.node.conftest import start_node
from tests.schemas import validate


def run(*args: str, code: int = 0) -> tuple[str, str]:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == code, (result.output, result.stderr)
    return result.stdout, result.stderr


def _yjs_status(api: str, doc: str, token: str) -> tuple[int, str | None]:
    reply = call(
        api,
        "GET",
        f"/yjs/{doc}",
        validate=False,
        query={"token": token},
        headers={"Connection": "Upgrade", "Upgrade": "websocket"},
    )
    body = reply.json() if reply.status >= 400 else None
    return reply.status, body["error"]["code"] if body else None


def test_tokens_made_offline_are_kept_hashed_and_honoured_by_the_node(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with Store.open(data / "store") as store:
        store.create_document("notes")
    out, err = run(
        "token", "--data", str(data), "create", "--doc", "notes", "--read-only", "--label", "app"
    )
    secret = out.strip()
    assert secret.startswith("est_") and "shown once" in err
    listed = json.loads(run("token", "--data", str(data), "list", "--json")[0])
    validate("cli/token.schema.json", listed)
    (row,) = listed["tokens"]
    assert row["docs"] == ["notes"] and row["read_only"] and row["state"] == "active"
    # Only a hash is on disk: the secret appears nowhere in the data directory.
    for path in data.rglob("*"):
        if path.is_file():
            assert secret[17:].encode() not in path.read_bytes(), path
    table = run("token", "--data", str(data), "list")[0]
    assert row["id"] in table and "read-only" in table

    node = start_node(data, "--no-mdns")
    try:
        # 400 is the plain GET's refusal to upgrade: the token itself was accepted.
        assert _yjs_status(node.api, "notes", secret) == (400, "bad_request")
        assert _yjs_status(node.api, "other", secret) == (403, "token_scope")
    finally:
        node.stop()

    revoked = json.loads(run("token", "--data", str(data), "revoke", row["id"], "--json")[0])
    validate("cli/token.schema.json", revoked)
    assert revoked["state"] == "revoked"
    node = start_node(data, "--no-mdns")
    try:
        assert _yjs_status(node.api, "notes", secret) == (401, "token_revoked")
    finally:
        node.stop()


def test_tokens_through_a_running_node_survive_its_restart(tmp_path: Path) -> None:
    node = start_node(tmp_path / "data", "--no-mdns")
    try:
        admin = ("--node", node.api, "--token", node.token)
        made = json.loads(
            run(
                "token", *admin, "create", "--doc", "room-*", "--create",
                "--expires", "7d", "--json",
            )[0]
        )  # fmt: skip
        validate("cli/token.schema.json", made)
        assert made["expires_at"] - made["created_at"] == 7 * 86400
        assert _yjs_status(node.api, "room-1", made["token"]) == (400, "bad_request")
        node.stop()
        node = start_node(tmp_path / "data", "--no-mdns")
        assert _yjs_status(node.api, "room-2", made["token"]) == (400, "bad_request")
        run("token", "--node", node.api, "--token", node.token, "revoke", made["id"])
        assert _yjs_status(node.api, "room-2", made["token"]) == (401, "token_revoked")
    finally:
        node.stop()


def test_bad_grants_name_what_is_wrong(tmp_path: Path) -> None:
    data = tmp_path / "data"
    Store.open(data / "store").close()
    base = ("token", "--data", str(data))
    cases = [
        (("create", "--doc", "bad/name"), "invalid_grant", "document pattern"),
        (("create", "--doc", "a*b"), "invalid_grant", "document pattern"),
        (("create", "--doc", "x", "--expires", "soon"), "invalid_grant", "expiry"),
        (("create", "--doc", "x", "--expires", "0h"), "invalid_grant", "expiry"),
        (("create", "--doc", "x", "--read-only", "--create"), "invalid_grant", "read-only"),
        (("revoke", "0123456789ab"), "unknown_token", "0123456789ab"),
    ]
    for args, code, words in cases:
        _, err = run(*base, *args, code=1)
        assert err.startswith(f"error: {code}: ") and words in err, err
    assert json.loads(run(*base, "list", "--json")[0]) == {"tokens": []}


def test_the_api_answers_bad_token_requests_with_the_error_shape(tmp_path: Path) -> None:
    node = start_node(tmp_path / "data", "--no-mdns")
    try:
        for body, words in (
            (b"[]", "JSON object"),
            (b'{"docs": "kv"}', '"docs"'),
            (b'{"docs": ["kv"], "read_only": "yes"}', '"read_only"'),
            (b'{"docs": ["kv"], "expires_in_s": -5}', "expiry"),
            (b'{"docs": ["kv"], "scope": "all"}', "unknown field"),
        ):
            reply = call(node.api, "POST", "/v1/admin/tokens", body, token=node.token)
            assert reply.status == 400, reply.body
            assert reply.json()["error"]["code"] == "invalid_grant"
            assert words in reply.json()["error"]["message"]
        missing = call(node.api, "DELETE", "/v1/admin/tokens/0123456789ab", token=node.token)
        assert missing.status == 404 and missing.json()["error"]["code"] == "unknown_token"
        assert call(node.api, "GET", "/v1/admin/tokens").status == 401
        made = call(node.api, "POST", "/v1/admin/tokens", b'{"docs": ["kv"]}', token=node.token)
        assert made.status == 201 and made.json()["token"].startswith("est_")
        listed = call(node.api, "GET", "/v1/admin/tokens", token=node.token)
        assert [r["id"] for r in listed.json()["tokens"]] == [made.json()["id"]]
    finally:
        node.stop()
