"""Personal data at rest: field encryption (AES-256-GCM), the HMAC lookup index, key ring and display masks.

个人信息存储保护：字段加密、HMAC 索引、密钥环与显示脱敏。

Key ring: a JSON document with several AES-256 data keys (one of them primary) and one separate
HMAC index key. It lives in `settings.keyring_file` (created on first use, mode 0600) unless the
environment variable HUB_KEYRING holds the same JSON (production secrets; read-only then).

Token layout (bytes): version (1) · key id (4) · nonce (12) · ciphertext · GCM tag (16). The first
five bytes are authenticated as associated data, so a token names the key that opens it and old
keys keep decrypting after `rotate()`.

The index key is never rotated here: `person_id` and every `*_person_id` column are HMACs under it,
so changing it means re-keying the whole database.

Random 96-bit nonces are safe for about 2**32 encryptions per key (NIST SP 800-38D): rotate the
data key well before that (a loader should keep unchanged ciphertexts instead of re-encrypting).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import json
import logging
import os
import secrets
import stat
import tempfile
import threading
import unicodedata
from dataclasses import dataclass
from collections.abc import Iterable, Iterator, Sequence
from typing import Any
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from hub.settings import get_settings

log = logging.getLogger(__name__)

KEYRING_ENV = "HUB_KEYRING"
KEYRING_FORMAT = "hub-keyring/1"
TOKEN_VERSION = 1
KEY_BYTES = 32  # AES-256 and the HMAC-SHA256 index key
KEY_ID_BYTES = 4
SHA256_BLOCK = 64
NONCE_BYTES = 12
TAG_BYTES = 16
HEADER_BYTES = 1 + KEY_ID_BYTES
MIN_TOKEN_BYTES = HEADER_BYTES + NONCE_BYTES + TAG_BYTES
MEMORY = "memory"  # source of a key ring that exists only in this process (tests, tools)


class KeyringError(Exception):
    """The key ring is missing, malformed or read-only (messages never contain key material)."""


class DecryptionError(ValueError):
    """A token that cannot be opened: tampered, truncated, or made under an unknown key."""


def _b64(raw: bytes) -> str:
    """Standard base64 text of raw bytes."""
    return base64.b64encode(raw).decode("ascii")


def _unb64(text: str, what: str) -> bytes:
    """Decode base64 key text, checking its length; errors name the key, never its value."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, TypeError, ValueError):
        raise KeyringError(f"密钥环格式错误 keyring malformed: {what} is not valid base64") from None
    if len(raw) != KEY_BYTES:
        raise KeyringError(f"密钥环格式错误 keyring malformed: {what} must be {KEY_BYTES} bytes, has {len(raw)}")
    return raw


def _new_key_entry(existing: Iterable[str]) -> dict[str, str]:
    """A fresh data key with a random id not already in use."""
    taken = set(existing)
    key_id = secrets.token_hex(KEY_ID_BYTES)
    while key_id in taken:
        key_id = secrets.token_hex(KEY_ID_BYTES)
    created = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return {"id": key_id, "key": _b64(secrets.token_bytes(KEY_BYTES)), "created_at": created}


def new_keyring_document() -> dict:
    """A new key-ring document: one primary data key and an index key (e.g. to seed a secret store)."""
    entry = _new_key_entry(())
    index_key = _b64(secrets.token_bytes(KEY_BYTES))
    return {"format": KEYRING_FORMAT, "primary": entry["id"], "data_keys": [entry], "index_key": index_key}


class Keyring:
    """Data keys by id, the primary key id and the index key; repr shows ids only."""

    __slots__ = ("_document", "_data_keys", "_index_key", "primary", "source")

    def __init__(self, document: dict, source: str) -> None:
        """Validate a key-ring document; `source` says where it came from (file path or env var)."""
        if not isinstance(document, dict) or document.get("format") != KEYRING_FORMAT:
            raise KeyringError(f"密钥环格式错误 keyring malformed ({source}): expected format {KEYRING_FORMAT!r}")
        entries = document.get("data_keys") or []
        data_keys: dict[str, bytes] = {}
        for entry in entries:
            if not isinstance(entry, dict):
                raise KeyringError(f"密钥环格式错误 keyring malformed ({source}): data_keys must hold objects")
            key_id = str(entry.get("id", ""))
            if len(key_id) != 2 * KEY_ID_BYTES or any(c not in "0123456789abcdef" for c in key_id):
                raise KeyringError(f"密钥环格式错误 keyring malformed ({source}): bad key id {key_id[:16]!r}")
            if key_id in data_keys:
                raise KeyringError(f"密钥环格式错误 keyring malformed ({source}): duplicate key id {key_id}")
            data_keys[key_id] = _unb64(entry.get("key", ""), f"data key {key_id}")
        primary = document.get("primary")
        if primary not in data_keys:
            raise KeyringError(f"密钥环格式错误 keyring malformed ({source}): primary key {primary!r} not among data keys")
        self._document = document
        self._data_keys = data_keys
        self._index_key = _unb64(document.get("index_key", ""), "index key")
        self.primary: str = primary
        self.source = source

    @classmethod
    def in_memory(cls) -> "Keyring":
        """A fresh key ring that lives only in this process (tests, throw-away tools)."""
        return cls(new_keyring_document(), source=MEMORY)

    @property
    def key_ids(self) -> list[str]:
        """Ids of all data keys, oldest first."""
        return list(self._data_keys)

    def __repr__(self) -> str:
        """Ids and source only: key material never appears in logs or tracebacks."""
        return f"Keyring(primary={self.primary!r}, key_ids={self.key_ids!r}, source={self.source!r})"

    __str__ = __repr__

    def __reduce__(self):
        """Refuse pickling, so keys never travel through a task queue or XCom by accident."""
        raise TypeError("Keyring cannot be pickled; load it from the key file or HUB_KEYRING in each process")


def _keyring_path(path: Path | None) -> Path:
    """The key file: the given path or settings.keyring_file."""
    return Path(path) if path is not None else Path(get_settings().keyring_file)


def _write_new_file(path: Path, document: dict) -> bool:
    """Write the document atomically as a 0600 file at path unless one exists; True if this call created it."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, temp = tempfile.mkstemp(prefix=".keyring-", dir=path.parent)  # mkstemp creates mode 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(document, handle, indent=2)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(temp, path)  # atomic, complete, and fails if another process created the file first
        except FileExistsError:
            return False
        except OSError:  # file systems without hard links: exclusive create instead (not atomic, still exclusive)
            try:
                target = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
            except FileExistsError:
                return False
            with os.fdopen(target, "w", encoding="utf-8") as handle:
                json.dump(document, handle, indent=2)
        _fsync_dir(path.parent)
        return True
    finally:
        os.unlink(temp)


def _fsync_dir(folder: Path) -> None:
    """Make a rename or link in the folder durable: losing the key file would lose every encrypted value."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _replace_file(path: Path, document: dict) -> None:
    """Atomically replace the key file with a new 0600 document."""
    fd, temp = tempfile.mkstemp(prefix=".keyring-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(document, handle, indent=2)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
        _fsync_dir(path.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise


def _read_file(path: Path) -> Keyring:
    """Parse the key file, warning if others can read it."""
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("密钥环文件权限过宽 keyring file %s is accessible to group/others (mode %o); use 0600", path, mode & 0o777)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise KeyringError(f"密钥环格式错误 keyring malformed ({path}): not JSON (line {error.lineno})") from None
    return Keyring(document, source=str(path))


def load_keyring(path: Path | None = None) -> Keyring:
    """The key ring from $HUB_KEYRING, else from the key file (created with one key on first use)."""
    env_text = os.environ.get(KEYRING_ENV)
    if env_text and path is None:
        try:
            document = json.loads(env_text)
        except json.JSONDecodeError:
            raise KeyringError(f"密钥环格式错误 keyring malformed: ${KEYRING_ENV} is not JSON") from None
        return Keyring(document, source=f"env:{KEYRING_ENV}")
    key_file = _keyring_path(path)
    if not key_file.exists():
        if _write_new_file(key_file, new_keyring_document()):
            log.info("已创建密钥环 created keyring %s", key_file)
    return _read_file(key_file)


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """Exclusive lock beside the key file, so two rotations never lose each other's key."""
    import fcntl  # POSIX only; the hub runs on Linux

    lock_path = path.with_name(path.name + ".lock")
    fd = os.open(lock_path, os.O_CREAT | os.O_RDWR, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def rotate_keyring(path: Path | None = None) -> Keyring:
    """Add a new primary data key to the key file (old keys stay, for decryption) and return the new ring."""
    if os.environ.get(KEYRING_ENV) and path is None:
        raise KeyringError(
            f"密钥环来自环境变量 ${KEYRING_ENV}，只读；请在密钥管理系统中添加新密钥并设为 primary "
            f"keyring comes from ${KEYRING_ENV} and is read-only: add a key in the secret store and make it primary"
        )
    key_file = _keyring_path(path)
    load_keyring(key_file)  # create on first use
    with _file_lock(key_file):
        document = _read_file(key_file)._document
        entry = _new_key_entry(e["id"] for e in document["data_keys"])
        updated = {**document, "data_keys": [*document["data_keys"], entry], "primary": entry["id"]}
        Keyring(updated, source=str(key_file))  # validate before writing
        _replace_file(key_file, updated)
    return _read_file(key_file)


@dataclass(frozen=True, slots=True, repr=False)
class _State:
    """Everything derived from one key ring, swapped as a whole so threads never see a half-installed ring."""

    keyring: Keyring
    aeads: dict[bytes, AESGCM]
    primary_aead: AESGCM
    header: bytes
    index_key: bytes
    hmac_inner: Any  # sha256 states keyed with the padded index key (RFC 2104), copied per value
    hmac_outer: Any

    def __repr__(self) -> str:
        """Key ids only."""
        return f"_State({self.keyring!r})"


def _state_of(keyring: Keyring) -> _State:
    """One AESGCM per data key, the primary token header and the index key."""
    aeads = {bytes.fromhex(kid): AESGCM(key) for kid, key in keyring._data_keys.items()}
    primary_id = bytes.fromhex(keyring.primary)
    key = keyring._index_key.ljust(SHA256_BLOCK, b"\0")
    inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
    outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))
    header = bytes([TOKEN_VERSION]) + primary_id
    return _State(keyring, aeads, aeads[primary_id], header, keyring._index_key, inner, outer)


def _reload(keyring: Keyring) -> Keyring | None:
    """The current version of a key ring from where it came from (None for an in-memory ring)."""
    if keyring.source == MEMORY:
        return None
    if keyring.source == f"env:{KEYRING_ENV}":
        return load_keyring()
    return load_keyring(Path(keyring.source))


class FieldCipher:
    """Encrypts and decrypts personal-data fields and computes their HMAC lookup index."""

    def __init__(self, keyring: Keyring | None = None) -> None:
        """Use the given key ring, or load the configured one ($HUB_KEYRING or settings.keyring_file)."""
        self._lock = threading.Lock()
        self._state = _state_of(keyring if keyring is not None else load_keyring())

    @property
    def keyring(self) -> Keyring:
        """The key ring in use."""
        return self._state.keyring

    def __repr__(self) -> str:
        """Key ids only, never key material."""
        ring = self._state.keyring
        return f"FieldCipher(primary={ring.primary!r}, keys={len(ring.key_ids)}, source={ring.source!r})"

    __str__ = __repr__

    def __reduce__(self):
        """Refuse pickling (it would carry the keys)."""
        raise TypeError("FieldCipher cannot be pickled; build it in each process with get_cipher()")

    def encrypt(self, plaintext: str) -> bytes:
        """Encrypt one value under the primary key with a fresh random nonce."""
        state = self._state
        nonce = os.urandom(NONCE_BYTES)
        return state.header + nonce + state.primary_aead.encrypt(nonce, plaintext.encode("utf-8"), state.header)

    def encrypt_many(self, values: Iterable[str | None]) -> list[bytes | None]:
        """Encrypt many values (None stays None, for nullable columns); one urandom call for all nonces."""
        values = values if isinstance(values, Sequence) else list(values)
        state = self._state
        header, encrypt = state.header, state.primary_aead.encrypt
        nonces = os.urandom(NONCE_BYTES * len(values))
        out: list[bytes | None] = []
        append = out.append
        for i, value in enumerate(values):
            if value is None:
                append(None)
                continue
            nonce = nonces[i * NONCE_BYTES : (i + 1) * NONCE_BYTES]
            append(header + nonce + encrypt(nonce, value.encode("utf-8"), header))
        return out

    def _aead_for(self, token: bytes) -> AESGCM:
        """The cipher of the key that made this token (reloading the ring once if another process rotated)."""
        if len(token) < MIN_TOKEN_BYTES:
            raise DecryptionError(f"密文无效 invalid token: {len(token)} bytes, shorter than the minimum {MIN_TOKEN_BYTES}")
        if token[0] != TOKEN_VERSION:
            raise DecryptionError(f"密文无效 invalid token: unknown format version {token[0]}")
        key_id = token[1:HEADER_BYTES]
        aead = self._state.aeads.get(key_id)
        if aead is None:
            with self._lock:
                fresh = _reload(self._state.keyring)
                if fresh is not None:
                    self._state = _state_of(fresh)
            aead = self._state.aeads.get(key_id)
        if aead is None:
            raise DecryptionError(f"密钥不存在 unknown key id {key_id.hex()} (not in keyring {self._state.keyring.source})")
        return aead

    def decrypt(self, token: bytes) -> str:
        """Decrypt one token; tampering or a wrong key raises DecryptionError."""
        token = bytes(token)  # some drivers return memoryview
        aead = self._aead_for(token)
        header, nonce = token[:HEADER_BYTES], token[HEADER_BYTES : HEADER_BYTES + NONCE_BYTES]
        body = token[HEADER_BYTES + NONCE_BYTES :]
        try:
            plain = aead.decrypt(nonce, body, header)
        except InvalidTag:
            raise DecryptionError(
                "密文校验失败（被篡改或密钥不符）ciphertext rejected: authentication failed "
                f"(tampered or wrong key; key id {header[1:].hex()})"
            ) from None
        return plain.decode("utf-8")

    def decrypt_many(self, tokens: Iterable[bytes | None]) -> list[str | None]:
        """Decrypt many tokens (None stays None)."""
        decrypt = self.decrypt
        return [None if token is None else decrypt(token) for token in tokens]

    @staticmethod
    def key_id_of(token: bytes) -> str:
        """The id of the data key a token was made with (to find tokens a rotation job must rewrap)."""
        return bytes(token[1:HEADER_BYTES]).hex()

    def index_hash(self, value: str) -> str:
        """HMAC-SHA256 of the value under the index key, as 64 hex characters (deterministic lookup key)."""
        return hmac.digest(self._state.index_key, value.encode("utf-8"), "sha256").hex()

    def index_hash_many(self, values: Iterable[str | None]) -> list[str | None]:
        """HMAC many values (None stays None)."""
        # Same HMAC as index_hash, about twice as fast: the keyed pad states are hashed once, copied per value.
        inner, outer = self._state.hmac_inner, self._state.hmac_outer
        out: list[str | None] = []
        append = out.append
        for value in values:
            if value is None:
                append(None)
                continue
            i = inner.copy()
            i.update(value.encode("utf-8"))
            o = outer.copy()
            o.update(i.digest())
            append(o.hexdigest())
        return out

    def person_key(self, resident_id: str) -> str:
        """The person_id of a resident ID number: HMAC of its normalised 18-character form."""
        return self.index_hash(normalise_resident_id(resident_id))

    def rotate(self) -> str:
        """Add a new primary data key to the key file, switch to it, and return its id."""
        source = self._state.keyring.source
        if source == MEMORY:
            raise KeyringError("内存密钥环不能轮换 an in-memory keyring cannot be rotated")
        with self._lock:
            self._state = _state_of(rotate_keyring(None if source.startswith("env:") else Path(source)))
        return self._state.keyring.primary

    def rewrap(self, token: bytes) -> bytes:
        """Re-encrypt a token under the primary key (returned unchanged, once authenticated, if it already uses it)."""
        token = bytes(token)
        plain = self.decrypt(token)  # authenticate first: a rotation job must never bless a tampered token
        if token[:HEADER_BYTES] == self._state.header:
            return token
        return self.encrypt(plain)


def normalise_resident_id(resident_id: str) -> str:
    """Full-width to half-width, trimmed, upper-case X; must then be 18 characters."""
    text = unicodedata.normalize("NFKC", resident_id).strip().upper()
    if len(text) != 18:
        raise ValueError(f"公民身份号码应为18位 resident ID must have 18 characters, got {len(text)}")
    return text


@lru_cache(maxsize=1)
def get_cipher() -> FieldCipher:
    """The process-wide cipher from settings (call `get_cipher.cache_clear()` after changing them)."""
    return FieldCipher()


def mask_resident_id(resident_id: str) -> str:
    """Display mask that always hides the birth date: 110105********0021 (15-digit: 110105******021)."""
    text = resident_id.strip()
    if len(text) == 18:
        return text[:6] + "*" * 8 + text[-4:]
    if len(text) == 15:
        return text[:6] + "*" * 6 + text[-3:]
    return "*" * len(text)  # unknown layout: we cannot tell where the birth date is


def mask_name(name: str) -> str:
    """Keep the first character: 段志强 → 段**; a one-character name is fully hidden."""
    text = name.strip()
    if len(text) <= 1:
        return "*" * len(text)
    return text[0] + "*" * (len(text) - 1)


def mask_phone(phone: str) -> str:
    """Keep the first three and last four characters: 18012341999 → 180****1999."""
    text = phone.strip()
    if len(text) < 8:
        return "*" * len(text)
    return text[:3] + "*" * (len(text) - 7) + text[-4:]
