"""Build `data/code_tables/regions.csv` (GB/T 2260 with history) from python-stdnum's `stdnum/cn/loc.dat`.

Run `python -m schemas.build_region_table [OUTPUT]` after upgrading python-stdnum or to refresh the
table; the hub itself only reads the CSV, so the table can also be edited by hand without a code change.
"""

from __future__ import annotations

import csv
import re
import sys
from collections.abc import Iterator
from pathlib import Path

DEFAULT_OUTPUT = Path(__file__).resolve().parent / "data" / "code_tables" / "regions.csv"
COLUMNS = ("code", "label", "province", "level", "valid_from", "valid_to", "source_name")
PROVINCIAL_DIRECT = "省直辖县级行政区划"  # official GB/T 2260 term for the xx9000 grouping code

_PROVINCE = re.compile(r'^(\d{2}) province="([^"]*)"$')
_COUNTY = re.compile(r'^\s+(\d{4}) county="([^"]*)"$')
_PERIOD = re.compile(r"^\[(\d*)-(\d*)\](.*)$")


def loc_dat_path() -> Path:
    """Where python-stdnum keeps loc.dat."""
    import stdnum

    return Path(stdnum.__file__).resolve().parent / "cn" / "loc.dat"


def _level(code: str) -> str:
    """GB/T 2260 level of a 6-digit code."""
    if code.endswith("0000"):
        return "province"
    if code[2:6] == "9000":
        return "provincial_direct"
    if code.endswith("00"):
        return "prefecture"
    return "county"


def _periods(names: str) -> Iterator[tuple[str, str, str]]:
    """(name, valid_from, valid_to) of each comma-separated name; '' means open-ended."""
    for part in names.split(","):
        match = _PERIOD.match(part)
        if match:
            yield match.group(3), match.group(1), match.group(2)
        else:
            yield part, "", ""


def parse_loc_dat(text: str) -> list[dict[str, str]]:
    """Rows of the region table from the text of loc.dat."""
    rows: list[dict[str, str]] = []
    provinces: dict[str, str] = {}
    province_code, province_name = "", ""
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        if match := _PROVINCE.match(line):
            province_code, province_name = match.groups()
            provinces[province_code] = province_name
            continue
        match = _COUNTY.match(line)
        if not match:
            raise ValueError(f"loc.dat 无法解析的行 unparsable line: {line!r}")
        code = province_code + match.group(1)
        for name, start, end in _periods(match.group(2)):
            label = PROVINCIAL_DIRECT if _level(code) == "provincial_direct" else name
            rows.append({"code": code, "label": label, "province": province_name, "level": _level(code),
                         "valid_from": start, "valid_to": end, "source_name": name})
    # 台湾省, 香港, 澳门 have only a province line in loc.dat: keep their xx0000 code all the same
    known = {row["code"] for row in rows}
    for code, name in provinces.items():
        if code + "0000" not in known:
            rows.append({"code": code + "0000", "label": name, "province": name, "level": "province",
                         "valid_from": "", "valid_to": "", "source_name": name})
    return sorted(rows, key=lambda row: row["code"])


def write_table(rows: list[dict[str, str]], output: Path) -> None:
    """Write the rows as UTF-8 CSV."""
    output.parent.mkdir(parents=True, exist_ok=True)
    with output.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def main(argv: list[str] | None = None) -> int:
    """Convert loc.dat to the CSV region table."""
    args = sys.argv[1:] if argv is None else argv
    output = Path(args[0]) if args else DEFAULT_OUTPUT
    rows = parse_loc_dat(loc_dat_path().read_text(encoding="utf-8"))
    write_table(rows, output)
    print(f"已写入 wrote {len(rows)} rows ({len({r['code'] for r in rows})} codes) to {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
