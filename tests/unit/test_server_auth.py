"""Local credentials: tokens expire on the injected clock, are bound to the key, and the
generated key is stored privately and reused."""

from __future__ import annotations

import stat
from pathlib import Path

import jwt
import pytest

from galileo_otel.server.auth import Authenticator, key_file_for, load_or_create_key


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def test_token_is_valid_until_it_expires() -> None:
    clock = Clock()
    auth = Authenticator("key-1", token_ttl_s=60, clock=clock)
    token = auth.issue_token()["access_token"]
    assert auth.allows(None, f"Bearer {token}")
    assert auth.allows(None, f"bearer  {token} ")
    clock.now += 59
    assert auth.token_valid(token)
    clock.now += 2
    assert not auth.token_valid(token)
    assert not auth.allows(None, f"Bearer {token}")


def test_token_carries_an_exp_claim_the_sdk_can_read() -> None:
    clock = Clock()
    token = Authenticator("k", token_ttl_s=3600, clock=clock).issue_token()["access_token"]
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["exp"] == int(clock.now + 3600)


def test_token_of_another_key_or_forged_is_refused() -> None:
    other = Authenticator("other-key").issue_token()["access_token"]
    auth = Authenticator("key-1")
    assert not auth.token_valid(other)
    forged = jwt.encode(
        {"sub": auth.user_id, "exp": 2**40}, "a-guessed-secret-" * 4, algorithm="HS256"
    )
    assert not auth.token_valid(forged)
    unsigned = jwt.encode({"sub": auth.user_id, "exp": 2**40}, None, algorithm="none")
    assert not auth.token_valid(unsigned)
    assert not auth.allows(None, "Basic a2V5LTE6")
    assert not auth.allows("key-2", None)
    assert auth.allows("key-1", None)


def test_same_key_same_user_and_tokens_survive_a_new_authenticator() -> None:
    token = Authenticator("key-1").issue_token()["access_token"]
    assert Authenticator("key-1").token_valid(token)
    user = Authenticator("key-1").current_user()
    assert user["id"] == Authenticator("key-1").user_id
    assert user["id"].count("-") == 4 and user["id"][14] == "4"  # a version-4 UUID


def test_ttl_must_be_positive() -> None:
    with pytest.raises(ValueError, match="token_ttl_s"):
        Authenticator("k", token_ttl_s=0)


def test_repr_hides_the_key() -> None:
    assert "key-1" not in repr(Authenticator("key-1"))


def test_generated_key_is_stored_owner_only_and_reused(tmp_path: Path) -> None:
    db = tmp_path / "sub" / "galileo.db"
    key, created = load_or_create_key(db)
    assert created and len(key) >= 24
    path = key_file_for(db)
    assert path == tmp_path / "sub" / "galileo.db.api-key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_key(db) == (key, False)
