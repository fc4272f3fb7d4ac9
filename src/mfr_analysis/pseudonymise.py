"""Keyed pseudonyms for client ids and session ids; the key never leaves this module.

* ``client_id`` -> ``c_`` + the first 16 hex digits of HMAC-SHA256(key, normalised raw id).
* ``session_id`` -> ``s_`` + 16 hex digits of a keyed SipHash-2-4 (vectorised, via
  ``pandas.util.hash_array``) of a text the caller builds from non-identifying parts.

The key comes from the environment variable ``MFR_PSEUDONYM_KEY``, else from the key file at
``MFR_PSEUDONYM_KEY_FILE`` (default ``~/.config/mfr-analysis/pseudonym.key``), which is created
with 32 random bytes (64 hex digits) and mode 0600 on first use, with a warning on stderr.
The same key gives the same pseudonyms, so re-runs and later exports link up; a different key
gives unlinkable ones. A key must hold at least 128 bits of entropy (:func:`key_entropy_bits`)
and a key file must be a regular file that only its owner can read or write; otherwise
:func:`load_key` refuses it in one line. :func:`key_fingerprint` (a keyed hash of a constant,
never the key or a plain hash of it) goes into every clean table, so tables made with
different keys are never combined.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import math
import os
import re
import secrets
import stat
import tempfile
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


MIN_KEY_BITS = 128
MIN_DISTINCT_SYMBOLS = 8
MAX_KEY_FILE_BYTES = 4096
MAKE_A_KEY = 'python -c "import secrets; print(secrets.token_hex(32))"'
_FINGERPRINT_CONSTANT = b"mfr-analysis/key-fingerprint"
# The smallest standard alphabet holding every character of a text key, and its size.
_ALPHABETS: tuple[tuple[str, re.Pattern[str], int], ...] = (
    ("decimal", re.compile(r"[0-9]+"), 10),
    ("hex", re.compile(r"[0-9a-f]+|[0-9A-F]+"), 16),
    ("letters of one case", re.compile(r"[a-z]+|[A-Z]+"), 26),
    ("letters of one case and digits", re.compile(r"[a-z0-9]+|[A-Z0-9]+"), 36),
    ("base64", re.compile(r"[A-Za-z0-9_-]+|[A-Za-z0-9+/]+"), 64),
    ("printable ASCII", re.compile(r"[\x20-\x7e]+"), 95),
)


def _period(symbols: bytes | str) -> int:
    """Length of the shortest block whose repetition makes ``symbols`` ('abab' -> 2)."""
    n = len(symbols)
    for size in range(1, n // 2 + 1):
        if n % size == 0 and symbols[:size] * (n // size) == symbols:
            return size
    return n


def key_entropy_bits(key: bytes) -> float:
    """A generous estimate of a key's entropy in bits, for refusing weak keys.

    A text key counts log2 of the smallest standard alphabet holding all its characters per
    character (decimal 3.3 bits, hex 4, one-case letters 4.7, one-case letters and digits
    5.2, base64/base64url 6, other printable ASCII or any other text 6.6; base64 padding
    ``=`` counts nothing), over the shortest block whose repetition makes the key ('abab...'
    counts as 'ab'); a key that is not UTF-8 text counts 8 bits per byte the same way. A key
    of fewer than 8 distinct characters counts log2(distinct characters) per character
    ('aaaa...' counts 0). The estimate is an upper bound for a random key of that alphabet
    (``secrets.token_hex(16)`` gives exactly 128 bits, ``secrets.token_urlsafe(16)`` 132; the
    1 in ~70,000 of the latter that happens to hold neither an upper-case letter nor ``-``
    or ``_`` counts as letters and digits, 114 bits, and is refused) and far too high for a
    chosen word or phrase: make keys with :data:`MAKE_A_KEY`."""
    try:
        text: str | bytes = key.decode("utf-8")
    except UnicodeDecodeError:
        text = key
    if isinstance(text, str):
        text = text.rstrip("=") if re.fullmatch(r"[A-Za-z0-9+/_-]+=*", text) else text
        size = next((n for _name, pattern, n in _ALPHABETS if pattern.fullmatch(text)), 95)
    else:
        size = 256
    distinct = len(set(text))
    if distinct < MIN_DISTINCT_SYMBOLS:  # 'aaaa...', '4711': bounded by the symbols it uses
        size = min(size, distinct)
    return _period(text) * math.log2(size) if size > 1 else 0.0


def check_key(key: bytes, source: str) -> bytes:
    """Return ``key`` if it is strong enough (:func:`key_entropy_bits`), else raise a
    one-line :class:`PseudonymKeyError` saying how to make one (never echoing the key)."""
    bits = key_entropy_bits(key)
    if bits < MIN_KEY_BITS:
        raise PseudonymKeyError(
            f"{source}: the pseudonym key is too weak (about {bits:.0f} bits; at least "
            f"{MIN_KEY_BITS} needed); make one with {MAKE_A_KEY}")
    return key


def key_fingerprint(key: bytes) -> str:
    """16 hex digits of HMAC-SHA256(key, a constant): tells keys apart, reveals nothing of one."""
    return hmac.digest(key, _FINGERPRINT_CONSTANT, "sha256")[:8].hex()


def load_key() -> bytes:
    """The pseudonym key from the environment or the key file (created, with a warning on
    stderr, when neither exists); refuses weak keys and key files others can read or write."""
    from_env = os.environ.get(PSEUDONYM_KEY_ENV, "")
    if from_env.strip():
        return check_key(from_env.strip().encode("utf-8"), PSEUDONYM_KEY_ENV)
    path = key_file_path()
    if not os.path.lexists(path):
        _create_key_file(path)
    return check_key(_read_key_file(path), str(path))


def _read_key_file(path: Path) -> bytes:
    """The stripped contents of a regular key file that only its owner can read or write."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)  # a FIFO must not block
    except OSError as exc:
        raise PseudonymKeyError(f"cannot read pseudonym key file {path}: {exc.strerror}") from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise PseudonymKeyError(f"pseudonym key file {path} is not a regular file")
        if info.st_mode & 0o077:
            raise PseudonymKeyError(f"pseudonym key file {path} can be read or written by "
                                    f"other users; run: chmod 600 {path}")
        key = os.read(fd, MAX_KEY_FILE_BYTES + 1).strip()
    finally:
        os.close(fd)
    if len(key) > MAX_KEY_FILE_BYTES:
        raise PseudonymKeyError(f"pseudonym key file {path} is too large to be a key "
                                f"(over {MAX_KEY_FILE_BYTES} bytes)")
    if not key:
        raise PseudonymKeyError(f"pseudonym key file {path} is empty")
    return key


def _create_key_file(path: Path) -> None:
    """Write a new random key (mode 0600) and say so on stderr; another process's key wins."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)  # 0600
    except OSError as exc:
        raise PseudonymKeyError(f"cannot create pseudonym key file {path}: {exc.strerror}") from exc
    try:
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(secrets.token_hex(32) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.link(temporary, path)  # atomic, and never over a key another process just made
    except FileExistsError:
        return
    except OSError as exc:
        raise PseudonymKeyError(f"cannot create pseudonym key file {path}: {exc.strerror}") from exc
    finally:
        os.unlink(temporary)
    log.warning("created a new pseudonym key at %s: keep it (the same key links later runs) "
                "and copy it to every machine whose outputs must link up", path)


def normalise_id(raw: str) -> str:
    """Canonical form of a raw client id: NFKC, trimmed, inner spaces collapsed, case-folded."""
    return " ".join(unicodedata.normalize("NFKC", str(raw)).split()).casefold()


def client_pseudonym(raw: str, key: bytes) -> str:
    """``c_`` + first 16 hex digits of HMAC-SHA256(key, normalised raw id)."""
    return "c_" + hmac.digest(key, normalise_id(raw).encode("utf-8"), "sha256")[:8].hex()


def client_pseudonyms(raw_ids: Iterable[str], key: bytes) -> list[str]:
    """Pseudonymise many distinct raw client ids (call once per distinct value)."""
    return [client_pseudonym(raw, key) for raw in raw_ids]


CLINICIAN_DOMAIN = b"clinician\x00"
"""Prefix hashed before a clinician's name: a clinician and a client spelt alike get unrelated
pseudonyms, so the two columns cannot be linked through a shared raw spelling."""


def clinician_pseudonym(raw: str, key: bytes) -> str:
    """``t_`` + first 16 hex digits of HMAC-SHA256(key, domain + normalised name).

    The same keyed hash as :func:`client_pseudonym` (same key, same normalisation: case,
    spaces and Unicode forms do not matter), separated by a domain prefix.

    >>> key = b"an example key, 32 bytes long..."
    >>> clinician_pseudonym("Dr  Jane Smith", key) == clinician_pseudonym("dr jane smith", key)
    True
    """
    message = CLINICIAN_DOMAIN + normalise_id(raw).encode("utf-8")
    return "t_" + hmac.digest(key, message, "sha256")[:8].hex()


def clinician_pseudonyms(raw_names: Iterable[str], key: bytes) -> list[str]:
    """Pseudonymise many distinct raw clinician names (call once per distinct value)."""
    return [clinician_pseudonym(raw, key) for raw in raw_names]


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
