"""Keyed pseudonyms for client ids and session ids; the key never leaves this module.

* ``client_id`` -> ``c_`` + the first 16 hex digits of HMAC-SHA256(key, normalised raw id).
* ``session_id`` -> ``s_`` + 16 hex digits of a keyed SipHash-2-4 (vectorised, via
  ``pandas.util.hash_array``) of a text the caller builds from non-identifying parts.

The key comes from the environment variable ``MFR_PSEUDONYM_KEY``, else from the key file at
``MFR_PSEUDONYM_KEY_FILE`` (default ``~/.config/mfr-analysis/pseudonym.key``), which is created
with 32 random bytes and mode 0600 on first use. The same key gives the same pseudonyms, so
re-runs and later exports link up; a different key gives unlinkable ones.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import secrets
import unicodedata
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from mfr_analysis.config import DEFAULT_KEY_FILE, PSEUDONYM_KEY_ENV, PSEUDONYM_KEY_FILE_ENV
from mfr_analysis.errors import UserFacingError

log = logging.getLogger(__name__)

_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
# value of each hex digit character (255 for any other byte)
_NIBBLE = np.full(256, 255, dtype=np.uint8)
_NIBBLE[_HEX] = np.arange(16, dtype=np.uint8)
# the two hex characters of every byte value, as one little-endian uint16 each
_HEX_PAIRS = (_HEX[np.arange(256) >> 4].astype(np.uint16)
              | (_HEX[np.arange(256) & 15].astype(np.uint16) << 8))


class PseudonymKeyError(UserFacingError):
    """The pseudonym key could not be read or created (one-line, user-facing)."""


def key_file_path() -> Path:
    """Where the key file lives: ``$MFR_PSEUDONYM_KEY_FILE`` or the default under ~/.config."""
    return Path(os.environ.get(PSEUDONYM_KEY_FILE_ENV) or DEFAULT_KEY_FILE).expanduser()


def load_key() -> bytes:
    """Return the pseudonym key from the environment or the key file, creating the file once."""
    from_env = os.environ.get(PSEUDONYM_KEY_ENV, "")
    if from_env.strip():
        return from_env.strip().encode("utf-8")
    path = key_file_path()
    if not path.exists():
        _create_key_file(path)
    try:
        key = path.read_bytes().strip()
    except OSError as exc:
        raise PseudonymKeyError(f"cannot read pseudonym key file {path}: {exc.strerror}") from exc
    if not key:
        raise PseudonymKeyError(f"pseudonym key file {path} is empty")
    return key


def _create_key_file(path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process created it first: use theirs
        return
    except OSError as exc:
        raise PseudonymKeyError(f"cannot create pseudonym key file {path}: {exc.strerror}") from exc
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(secrets.token_hex(32) + "\n")
    log.info("created a new pseudonym key file at %s (keep it to link future runs)", path)


def normalise_id(raw: str) -> str:
    """Canonical form of a raw client id: NFKC, trimmed, inner spaces collapsed, case-folded."""
    return " ".join(unicodedata.normalize("NFKC", str(raw)).split()).casefold()


def client_pseudonym(raw: str, key: bytes) -> str:
    """``c_`` + first 16 hex digits of HMAC-SHA256(key, normalised raw id)."""
    return "c_" + hmac.digest(key, normalise_id(raw).encode("utf-8"), "sha256")[:8].hex()


def client_pseudonyms(raw_ids: Iterable[str], key: bytes) -> list[str]:
    """Pseudonymise many distinct raw client ids (call once per distinct value)."""
    return [client_pseudonym(raw, key) for raw in raw_ids]


def _siphash_key(key: bytes) -> str:
    """A 16-character ASCII SipHash key derived from the pseudonym key (96 bits)."""
    digest = hmac.new(key, b"mfr-analysis/session-id", hashlib.sha256).digest()
    return base64.b64encode(digest[:12]).decode("ascii")


def keyed_hash64(texts: np.ndarray, key: bytes) -> np.ndarray:
    """Keyed 64-bit SipHash-2-4 of each text (object array of str), vectorised."""
    return pd.util.hash_array(texts, encoding="utf8", hash_key=_siphash_key(key), categorize=False)


def hex_ids(hashes: np.ndarray, prefix: str = "s_") -> pa.LargeStringArray:
    """Format uint64 hashes as ``prefix`` + 16 hex digits, without a Python loop."""
    n = len(hashes)
    head = np.frombuffer(prefix.encode("ascii"), dtype=np.uint8)
    width = len(head) + 16
    digits = np.ascontiguousarray(hashes, dtype=">u8").view(np.uint8).reshape(n, 8)
    out = np.empty((n, width), dtype=np.uint8)
    out[:, : len(head)] = head
    out[:, len(head):].view(np.uint16)[...] = _HEX_PAIRS[digits]
    offsets = np.arange(0, width * (n + 1), width, dtype=np.int64)
    return pa.LargeStringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(out))


def hex_ids_unique(values: pd.Series) -> bool | None:
    """True/False if every value is an ``s_`` + 16-hex id and they are (not) all different;
    None when the column is not made only of such ids (then ask pandas instead).

    Decodes the ids back to 64-bit integers straight from the Arrow buffers and sorts them,
    several times faster than hashing millions of strings."""
    try:
        arr = pa.chunked_array(pa.array(values)).combine_chunks()
    except (pa.ArrowException, TypeError, ValueError):
        return None
    if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
        return None
    if arr.null_count or len(arr) == 0:
        return None if arr.null_count else True
    arr = arr.cast(pa.large_string())
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int64)[arr.offset: arr.offset + len(arr) + 1]
    if not (np.diff(offsets) == 18).all():
        return None
    data = np.frombuffer(arr.buffers()[2], dtype=np.uint8)[offsets[0]: offsets[-1]]
    chars = data.reshape(len(arr), 18)
    if not ((chars[:, 0] == ord("s")) & (chars[:, 1] == ord("_"))).all():
        return None
    nibbles = _NIBBLE[chars[:, 2:]]
    if (nibbles > 15).any():
        return None
    packed = np.ascontiguousarray((nibbles[:, 0::2] << 4) | nibbles[:, 1::2])
    ordered = np.sort(packed.view(">u8").reshape(-1))
    return bool(not (ordered[1:] == ordered[:-1]).any())
