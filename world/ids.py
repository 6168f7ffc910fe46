"""Building identifiers (resident ID, organisation code, USCC, e-licence id) with the schemas' check functions."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
LICENCE_ID_PREFIX = "1.2.156.3005.2."


def _checks():
    """The schemas identifier module, imported late so the world package imports without it."""
    from schemas import identifiers

    return identifiers


def _chars(result: object) -> np.ndarray:
    """Check-function output as a numpy array of Python strings."""
    return np.asarray(result).astype(str)


def ascii_strings(matrix: np.ndarray) -> np.ndarray:
    """Rows of an ASCII code matrix as a numpy unicode array."""
    width = matrix.shape[1]
    return np.ascontiguousarray(matrix, dtype=np.uint8).view(f"S{width}").ravel().astype(f"U{width}")


def fixed_strings(values: pa.Array, width: int) -> np.ndarray:
    """An arrow string array whose values all have `width` ASCII characters, as numpy unicode (no Python loop)."""
    values = pc.cast(values, pa.string()) if values.type != pa.string() else values
    values = pa.concat_arrays([values]) if values.offset else values
    if not len(values):
        return np.array([], dtype=f"U{width}")
    codes = np.frombuffer(values.buffers()[2], dtype=np.uint8, count=len(values) * width).reshape(-1, width)
    return codes.astype(np.uint32).view(f"U{width}").ravel()


def digit_strings(values: np.ndarray, width: int) -> np.ndarray:
    """Non-negative integers of exactly `width` digits as numpy unicode."""
    return fixed_strings(pa.array(np.asarray(values, dtype=np.int64)), width)


def duplicated(values: np.ndarray) -> np.ndarray:
    """Mask of values equal to an earlier one (first occurrences stay False)."""
    values = np.asarray(values)
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    later = np.zeros(len(values), dtype=bool)
    if len(values) > 1:
        later[order[1:]] = ordered[1:] == ordered[:-1]
    return later


def unique_random_ints(rng: np.random.Generator, count: int, high: int) -> np.ndarray:
    """count distinct random integers in [0, high), in random order."""
    out = np.zeros(0, dtype=np.int64)
    while len(out) < count:
        draw = np.concatenate([out, rng.integers(0, high, int((count - len(out)) * 1.1) + 8)])
        out = draw[~duplicated(draw)]
    return out[:count]


def resident_id_bodies(regions: np.ndarray, births: np.ndarray, sequences: np.ndarray) -> np.ndarray:
    """17-digit bodies as integers: region · YYYYMMDD · sequence (distinct people ⇔ distinct ints)."""
    from world.text import ymd

    y, m, d = ymd(births)
    ymd_int = y * 10000 + m * 100 + d
    return np.asarray(regions, dtype=np.int64) * 10**11 + ymd_int * 1000 + np.asarray(sequences, dtype=np.int64)


def resident_ids(bodies: np.ndarray) -> np.ndarray:
    """18-character resident ID numbers (numpy unicode) from integer bodies."""
    body = digit_strings(bodies, 17)
    return np.strings.add(body, _chars(_checks().resident_id_check_chars(body)))


def legacy_ids(ids18: np.ndarray) -> np.ndarray:
    """The 15-digit form of 18-digit numbers of people born in the 1900s (century and check dropped)."""
    arr = np.asarray(ids18, dtype="U18")
    return np.strings.add(_slice(arr, 0, 6), _slice(arr, 8, 17))


def _slice(arr: np.ndarray, start: int, stop: int) -> np.ndarray:
    """Substring of every element."""
    return np.strings.slice(arr, start, stop)


def random_org_bodies(count: int, rng: np.random.Generator, new_style: np.ndarray, head: str = "MA") -> np.ndarray:
    """Distinct 8-character GB 11714 bodies: digits for old codes, head + six USCC-alphabet characters for new ones."""
    alphabet = np.frombuffer(USCC_ALPHABET.encode(), dtype=np.uint8)
    out = np.zeros((count, 8), dtype=np.uint8)
    todo = np.arange(count)
    while todo.size:
        k = todo.size
        old = (rng.integers(0, 10, size=(k, 8)) + 48).astype(np.uint8)
        new = np.concatenate([
            np.tile(np.frombuffer(head.encode(), dtype=np.uint8), (k, 1)),
            alphabet[rng.integers(0, len(alphabet), size=(k, 6))],
        ], axis=1)
        out[todo] = np.where(np.asarray(new_style)[todo][:, None], new, old)
        bodies = ascii_strings(out)
        todo = np.flatnonzero(duplicated(bodies))
    return ascii_strings(out)


def org_codes(bodies: np.ndarray) -> np.ndarray:
    """9-character organisation codes (body + GB 11714 check character)."""
    body = np.asarray(bodies, dtype="U8")
    return np.char.add(body, _chars(_checks().org_code_check_chars(body)))


def usccs(prefixes: np.ndarray, regions: np.ndarray, org: np.ndarray) -> np.ndarray:
    """USCCs from 2-char department/category prefix, 6-digit region and 9-char organisation code."""
    body = np.char.add(np.char.add(np.asarray(prefixes, "U2"), np.asarray(regions, "U6")), np.asarray(org, "U9"))
    return np.char.add(body, _chars(_checks().uscc_check_chars(body))).astype(object)


def licence_identifiers(type_codes: pa.Array, issuer_codes: pa.Array, serials: pa.Array, versions: pa.Array) -> pa.Array:
    """GB/T 36904 identifiers 1.2.156.3005.2.{type}.{issuer}.{serial}.{version}.{check}.

    Arguments are arrow string arrays whose rows all have the same total width (fixed-width serials).
    """
    payload = pc.binary_join_element_wise(type_codes, issuer_codes, serials, versions, "")
    if not len(payload):
        return pa.array([], pa.string())
    check = _chars(_checks().licence_id_check_chars(fixed_strings(payload, len(payload[0].as_py()))))
    dotted = pc.binary_join_element_wise(type_codes, issuer_codes, serials, versions,
                                         pa.array(check.astype(object), pa.string()), ".")
    return pc.binary_join_element_wise(LICENCE_ID_PREFIX, dotted, "")


def wrong_char(correct: str, alphabet: str, rng: np.random.Generator) -> str:
    """A character of the alphabet different from the correct one."""
    choices = alphabet.replace(correct, "")
    return choices[int(rng.integers(0, len(choices)))]
