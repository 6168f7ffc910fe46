"""`hub validate` — check identifiers from the command line or standard input, one JSON object per line."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Iterator
from typing import IO, Any

import numpy as np

CHUNK_LINES = 100_000  # values checked per vectorised call when streaming standard input
READ_BYTES = 1 << 22  # bytes read from standard input at a time

from hub.cli import iso_date


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `validate` command."""
    from schemas.identifiers import KINDS, REGION_RULES

    parser = subparsers.add_parser(
        "validate",
        help="校验标识符 check resident IDs, USCCs or e-licence IDs",
        description=(
            "校验公民身份号码、统一社会信用代码或证照标识，每个值输出一行 JSON。\n"
            "Check identifiers; prints one JSON object per value: value, valid, reason, normalised, note.\n"
            "无参数时从标准输入逐行读取 (reads standard input, one value per line, when no VALUE is given).\n"
            "无效值不影响退出码 (exit status 0 even when values are invalid; 2 = unusable arguments)."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--kind", required=True, choices=sorted(KINDS), help="标识类型 identifier kind")
    parser.add_argument("values", nargs="*", metavar="VALUE", help="待校验的值 values to check (default: standard input)")
    parser.add_argument("--today", type=iso_date, default=None, metavar="YYYY-MM-DD",
                        help="身份号码出生日期不得晚于此日 reference date for resident IDs (default: today)")
    parser.add_argument("--region-rule", choices=REGION_RULES, default="known",
                        help="身份号码地址码规则 resident-ID region rule: known (any current or historical GB/T 2260 code, "
                             "default), birth_year (valid in the birth year), none")
    parser.add_argument("--summary", action="store_true", help="在标准错误输出统计 print counts to standard error at the end")
    parser.set_defaults(handler=run)


def _stdin_chunks(stream: IO[bytes], lines_per_chunk: int = CHUNK_LINES) -> Iterator[list[str]]:
    """Lines of a UTF-8 byte stream in lists of up to ``lines_per_chunk`` (newline and a trailing CR removed)."""
    pending: list[str] = []
    tail = b""
    while True:
        data = stream.read(READ_BYTES)
        if not data:
            break
        data = tail + data
        cut = data.rfind(b"\n")
        if cut < 0:
            tail = data
            continue
        tail = data[cut + 1 :]
        pending.extend(data[:cut].decode("utf-8", errors="replace").replace("\r\n", "\n").split("\n"))
        while len(pending) >= lines_per_chunk:
            yield pending[:lines_per_chunk]
            pending = pending[lines_per_chunk:]
    if tail:
        pending.append(tail.decode("utf-8", errors="replace").removesuffix("\r"))
    if pending:
        yield pending


_SPECIAL = re.compile(r'[\x00-\x1f"\\]')  # characters JSON strings must escape


def _needs_escaping(values: list[str]) -> list[int]:
    """Indexes of values holding a quote, a backslash or a control character (one regex scan per chunk)."""
    if not _SPECIAL.search("".join(values)):
        return []
    return [row for row, value in enumerate(values) if _SPECIAL.search(value)]


def _quoted_pieces(texts: np.ndarray, present: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(quote, body) pieces of a JSON string or null: '"', text where present, else '', 'null'."""
    quote = np.where(present, '"', "").astype(object)
    body = np.where(present, texts, "null").astype(object)
    return quote, body


def json_lines(values: list[str], result: Any) -> str:
    """One JSON object per value, each ending in a newline, built column-wise rather than value by value.

    Every line is a row of small pieces (constant keys, quotes, texts) that one ``str.join`` glues
    together. The hub's own texts (reasons, notes, normalised values) never hold quotes,
    backslashes or control characters; an input value that does is encoded with json.dumps.
    A valid value without a note is already in normal form, so its own string object is reused.
    """
    n = len(values)
    originals = np.empty(n, dtype=object)
    originals[:] = values
    value_quote = np.full(n, '"', dtype=object)
    value_body = originals.copy()
    for row in _needs_escaping(values):
        value_quote[row], value_body[row] = "", json.dumps(values[row], ensure_ascii=False)
    has_note = np.not_equal(result.note, None)
    reason_quote, reason_body = _quoted_pieces(result.reason, ~result.valid)
    normalised_quote = np.where(result.valid, '"', "").astype(object)
    normalised_body = np.where(result.valid, originals, "null")
    changed = np.flatnonzero(has_note)
    normalised_body[changed] = result.normalised[changed].astype(object)
    note_quote, note_body = _quoted_pieces(result.note, has_note)
    pieces = [
        '{"value": ', value_quote, value_body, value_quote,
        ', "valid": ', np.where(result.valid, "true", "false").astype(object),
        ', "reason": ', reason_quote, reason_body, reason_quote,
        ', "normalised": ', normalised_quote, normalised_body, normalised_quote,
        ', "note": ', note_quote, note_body, note_quote, "}\n",
    ]
    grid = np.empty((n, len(pieces)), dtype=object)
    for column, piece in enumerate(pieces):
        grid[:, column] = piece
    return "".join(grid.ravel().tolist())


def _check(kind: str, values: list[str], args: argparse.Namespace) -> Any:
    """Run the vectorised check of ``kind`` over one chunk."""
    from schemas.identifiers import check

    options = {"today": args.today, "region_rule": args.region_rule} if kind == "resident-id" else {}
    text = np.array(values, dtype=object).astype(str) if values else np.zeros(0, dtype="<U1")  # 2× faster than asarray(str)
    return check(kind, text, **options)


def run(args: argparse.Namespace) -> int:
    """Check the values and print JSON lines."""
    if args.values:
        chunks: Iterator[list[str]] = iter([args.values])
    else:
        if sys.stdin.isatty():
            print("从标准输入读取，每行一个值，Ctrl-D 结束 reading values from standard input, one per line; end with Ctrl-D",
                  file=sys.stderr)
        chunks = _stdin_chunks(sys.stdin.buffer)
    total = valid = 0
    out = sys.stdout
    try:
        for chunk in chunks:
            result = _check(args.kind, chunk, args)
            out.write(json_lines(chunk, result))
            total += len(chunk)
            valid += int(result.valid.sum())
        out.flush()
    except BrokenPipeError:
        # The reader went away (e.g. `| head`): stop quietly, as Unix tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    if args.summary:
        print(f"共 {total} 个 values，有效 valid {valid}，无效 invalid {total - valid}", file=sys.stderr)
    return 0
