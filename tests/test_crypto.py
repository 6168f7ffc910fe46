"""Field encryption, HMAC index, key ring and masking (hub.crypto)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import pickle
import stat
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from hub import crypto
from hub.cli import main
from hub.crypto import DecryptionError, FieldCipher, Keyring, KeyringError


@pytest.fixture
def cipher() -> FieldCipher:
    """A cipher over a fresh in-memory key ring."""
    return FieldCipher(Keyring.in_memory())


@pytest.fixture
def key_file(hub_settings) -> Path:
    """Path of the (not yet created) key file under the temporary data root."""
    crypto.get_cipher.cache_clear()
    yield Path(hub_settings.keyring_file)
    crypto.get_cipher.cache_clear()


def _key_texts(ring: Keyring) -> list[str]:
    """Every way key material could leak into text: raw repr, base64, hex."""
    raws = [*ring._data_keys.values(), ring._index_key]
    return [t for raw in raws for t in (repr(raw), base64.b64encode(raw).decode(), raw.hex())]


def test_round_trip_and_random_nonce(cipher: FieldCipher) -> None:
    """Chinese, empty and long values decrypt to themselves; equal plaintexts give different tokens."""
    for value in ["110105194912310021", "段志强", "", "北京市朝阳区" * 200]:
        assert cipher.decrypt(cipher.encrypt(value)) == value
    first, second = cipher.encrypt("段志强"), cipher.encrypt("段志强")
    assert first != second
    assert len(first) == crypto.MIN_TOKEN_BYTES + len("段志强".encode())


def test_many_helpers_keep_none(cipher: FieldCipher) -> None:
    """List helpers pass None through (nullable columns) and agree with the one-value functions."""
    values = ["18012341999", None, "段志强", ""]
    tokens = cipher.encrypt_many(values)
    assert tokens[1] is None
    assert cipher.decrypt_many(tokens) == values
    assert cipher.decrypt_many(iter(tokens)) == values
    assert cipher.index_hash_many(values) == [None if v is None else cipher.index_hash(v) for v in values]
    assert len(set(cipher.encrypt_many(["x"] * 100))) == 100  # one nonce per value


def test_tampered_token_rejected_clearly(cipher: FieldCipher) -> None:
    """Any changed byte, a truncated token or a foreign key ring fails with DecryptionError, never garbage."""
    token = cipher.encrypt("110105194912310021")
    for position in (crypto.HEADER_BYTES, crypto.HEADER_BYTES + crypto.NONCE_BYTES, len(token) - 1):
        forged = bytearray(token)
        forged[position] ^= 0x01
        with pytest.raises(DecryptionError, match="tampered"):
            cipher.decrypt(bytes(forged))
    with pytest.raises(DecryptionError, match="unknown key id"):
        cipher.decrypt(token[:1] + b"\0\0\0\0" + token[5:])
    with pytest.raises(DecryptionError, match="unknown format version"):
        cipher.decrypt(b"\x09" + token[1:])
    with pytest.raises(DecryptionError, match="shorter"):
        cipher.decrypt(token[:20])
    with pytest.raises(DecryptionError, match="unknown key id"):
        FieldCipher(Keyring.in_memory()).decrypt(token)


def test_memoryview_tokens_decrypt(cipher: FieldCipher) -> None:
    """Drivers may hand back memoryview for binary columns."""
    assert cipher.decrypt(memoryview(cipher.encrypt("段志强"))) == "段志强"


def test_hmac_deterministic_and_key_dependent(cipher: FieldCipher) -> None:
    """Same value, same hash; another index key, another hash; it is standard HMAC-SHA256."""
    value = "110105194912310021"
    digest = cipher.index_hash(value)
    assert digest == cipher.index_hash(value)
    assert len(digest) == 64 and int(digest, 16) >= 0
    assert digest != FieldCipher(Keyring.in_memory()).index_hash(value)
    assert digest != cipher.index_hash("110105194912310022")
    expected = hmac.new(cipher.keyring._index_key, value.encode(), hashlib.sha256).hexdigest()
    assert digest == expected
    assert cipher.index_hash_many(["段志强", value]) == [cipher.index_hash("段志强"), expected]


def test_person_key_normalises(cipher: FieldCipher) -> None:
    """Full-width digits, spaces and a lower-case x give the same person_id; wrong length is refused."""
    assert cipher.person_key(" １１０１０５１９４９１２３１００２x ") == cipher.index_hash("11010519491231002X")
    with pytest.raises(ValueError, match="18"):
        cipher.person_key("110105491231002")


def test_masks() -> None:
    """Display masks from STANDARDS.md: birth digits always hidden, first name character, phone middle."""
    assert crypto.mask_resident_id("110105194912310021") == "110105********0021"
    assert crypto.mask_resident_id("11010519491231002X") == "110105********002X"
    assert crypto.mask_resident_id("110105491231002") == "110105******002"
    assert crypto.mask_resident_id("12345") == "*****"
    assert crypto.mask_name("段志强") == "段**"
    assert crypto.mask_name("李四") == "李*"
    assert crypto.mask_name("欧阳娜娜") == "欧***"
    assert crypto.mask_name("段") == "*"
    assert crypto.mask_name("") == ""
    assert crypto.mask_phone("18012341999") == "180****1999"
    assert crypto.mask_phone("01012345678") == "010****5678"
    assert crypto.mask_phone("12345") == "*****"


def test_no_key_material_in_repr_str_or_errors(cipher: FieldCipher) -> None:
    """repr/str of key ring and cipher, and decryption errors, show key ids only; pickling is refused."""
    ring = cipher.keyring
    token = cipher.encrypt("x")
    forged = token[:-1] + bytes([token[-1] ^ 1])
    with pytest.raises(DecryptionError) as caught:
        cipher.decrypt(forged)
    texts = [repr(ring), str(ring), repr(cipher), str(cipher), repr(cipher._state), f"{cipher}", str(caught.value)]
    for text in texts:
        for secret in _key_texts(ring):
            assert secret not in text
    assert ring.primary in repr(cipher)
    for obj in (ring, cipher):
        with pytest.raises(TypeError, match="pickled"):
            pickle.dumps(obj)


def test_malformed_keyring_errors_hide_values() -> None:
    """A key of the wrong length is reported by name and size, never by value."""
    document = crypto.new_keyring_document()
    bad = base64.b64encode(b"k" * 31).decode()
    document["data_keys"][0]["key"] = bad
    with pytest.raises(KeyringError, match="must be 32 bytes") as caught:
        Keyring(document, source="test")
    assert bad not in str(caught.value)
    with pytest.raises(KeyringError, match="primary"):
        Keyring({**crypto.new_keyring_document(), "primary": "00000000"}, source="test")


def test_key_file_created_0600_and_reused(key_file: Path) -> None:
    """First use writes the key file with mode 0600 in a 0700 folder; later loads read the same keys."""
    assert not key_file.exists()
    first = crypto.load_keyring()
    assert key_file.exists()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(key_file.parent.stat().st_mode) == 0o700
    second = crypto.load_keyring()
    assert second.primary == first.primary and second._index_key == first._index_key
    assert json.loads(key_file.read_text())["format"] == crypto.KEYRING_FORMAT


def test_concurrent_first_use_agrees(tmp_path: Path) -> None:
    """Many threads creating the key file at once all end up with the same key ring."""
    path = tmp_path / "keys" / "keyring.json"
    with ThreadPoolExecutor(8) as pool:
        rings = list(pool.map(lambda _: crypto.load_keyring(path), range(16)))
    assert len({r.primary for r in rings}) == 1
    assert len({r._index_key for r in rings}) == 1


def test_rotation_keeps_old_tokens_and_rewrap(key_file: Path) -> None:
    """After rotate() new tokens use the new key, old ones still decrypt, rewrap moves them to the new key."""
    cipher = FieldCipher()
    old_key = cipher.keyring.primary
    old_token = cipher.encrypt("110105194912310021")
    index_before = cipher.index_hash("110105194912310021")
    new_key = cipher.rotate()
    assert new_key != old_key and cipher.keyring.key_ids == [old_key, new_key]
    assert cipher.key_id_of(cipher.encrypt("x")) == new_key
    assert cipher.decrypt(old_token) == "110105194912310021"
    assert cipher.index_hash("110105194912310021") == index_before  # the index key is not rotated
    rewrapped = cipher.rewrap(old_token)
    assert cipher.key_id_of(rewrapped) == new_key and cipher.decrypt(rewrapped) == "110105194912310021"
    assert cipher.rewrap(rewrapped) == rewrapped
    with pytest.raises(DecryptionError):
        cipher.rewrap(rewrapped[:-1] + bytes([rewrapped[-1] ^ 1]))
    reloaded = FieldCipher()
    assert reloaded.keyring.primary == new_key
    assert reloaded.decrypt(old_token) == reloaded.decrypt(rewrapped)
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600


def test_stale_cipher_reloads_after_rotation_elsewhere(key_file: Path) -> None:
    """A long-lived process decrypts tokens made under a key another process added later."""
    stale, rotator = FieldCipher(), FieldCipher()
    rotator.rotate()
    token = rotator.encrypt("段志强")
    assert stale.decrypt(token) == "段志强"
    assert stale.keyring.primary == rotator.keyring.primary


def test_keyring_from_environment(monkeypatch: pytest.MonkeyPatch, key_file: Path) -> None:
    """HUB_KEYRING replaces the file (nothing is written) and is read-only for rotation."""
    document = crypto.new_keyring_document()
    monkeypatch.setenv(crypto.KEYRING_ENV, json.dumps(document))
    cipher = FieldCipher()
    assert cipher.keyring.primary == document["primary"]
    assert cipher.keyring.source == "env:HUB_KEYRING"
    assert cipher.decrypt(cipher.encrypt("x")) == "x"
    assert not key_file.exists()
    with pytest.raises(KeyringError, match="read-only"):
        cipher.rotate()
    monkeypatch.setenv(crypto.KEYRING_ENV, "{not json")
    with pytest.raises(KeyringError, match="not JSON"):
        crypto.load_keyring()


def test_cli_keys_rotate_and_list(key_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`hub keys rotate` adds a primary key and prints ids only; `hub keys list` shows them."""
    token = crypto.get_cipher().encrypt("段志强")
    assert main(["keys", "rotate"]) == 0
    ring = crypto.load_keyring()
    assert len(ring.key_ids) == 2
    assert main(["keys", "list"]) == 0
    out = capsys.readouterr().out
    assert ring.primary in out
    for secret in _key_texts(ring):
        assert secret not in out
    assert crypto.get_cipher().decrypt(token) == "段志强"
    assert crypto.get_cipher().keyring.primary == ring.primary


@pytest.mark.slow
def test_throughput_one_million(cipher: FieldCipher, capsys: pytest.CaptureFixture[str]) -> None:
    """Encrypt, decrypt and HMAC one million ID numbers; print values/s (floor catches gross regressions)."""
    values = [f"11010519491231{i:04d}" for i in range(1_000_000)]
    rates, tokens = {}, None
    for name, work in (
        ("encrypt_many", lambda: cipher.encrypt_many(values)),
        ("decrypt_many", lambda: cipher.decrypt_many(tokens)),
        ("index_hash_many", lambda: cipher.index_hash_many(values)),
    ):
        started = time.perf_counter()
        result = work()
        rates[name] = len(values) / (time.perf_counter() - started)
        if name == "encrypt_many":
            tokens = result
        elif name == "decrypt_many":
            assert result == values
    with capsys.disabled():
        print("\n" + "  ".join(f"{name} {rate:,.0f}/s" for name, rate in rates.items()))
    assert all(rate > 50_000 for rate in rates.values())
