"""Writes the bad-input corpus beside this file (run once; the small files are committed, so tests never need it).

`python tests/badinput/make_corpus.py`. Files too big to commit (a 10 MB cell) and names a checkout cannot hold on
every system (glob characters, traversal, SQL in the name) are made by tests/test_bad_input.py at test time.
Every file carries the population columns a department would send (公民身份号码, 姓名 …) where its defect allows.
"""

from __future__ import annotations

import io
import json
import random
import zipfile
from pathlib import Path

import xlsxwriter

HERE = Path(__file__).resolve().parent
HEADER = "公民身份号码,姓名,性别,出生日期,户籍地址\n"
GOOD = "420102199001021234,张三,1,1990-01-02,湖北省武汉市江岸区一路1号\n"


def write(category: str, name: str, content: bytes) -> None:
    """One corpus file."""
    folder = HERE / category
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(content)


def workbook(rows: list[list[object]]) -> bytes:
    """An .xlsx with the given rows on one sheet."""
    out = io.BytesIO()
    book = xlsxwriter.Workbook(out, {"in_memory": True})
    sheet = book.add_worksheet("名单")
    for r, row in enumerate(rows):
        for c, value in enumerate(row):
            sheet.write(r, c, value)
    book.close()
    return out.getvalue()


def main() -> None:
    """Write every corpus file."""
    rng = random.Random(20261201)
    utf8 = (HEADER + GOOD).encode()
    # csv: structure
    write("csv", "unbalanced_quote.csv", (HEADER + '420102199001021234,"张三,1,1990-01-02,地址\n' + GOOD).encode())
    write("csv", "wrong_field_count.csv", (HEADER + "420102199001021234,张三\n" + GOOD + "1,2,3,4,5,6,7\n").encode())
    write("csv", "header_only.csv", HEADER.encode())
    write("csv", "empty.csv", b"")
    write("csv", "only_newlines.csv", b"\n\n\r\n\n")
    write("csv", "duplicate_headers.csv", "姓名,姓名,性别\n张三,李四,1\n".encode())
    write("csv", "blank_headers.csv", ",姓名,\n1,张三,2\n".encode())
    write("csv", "lineage_clash.csv", "_row,_file,姓名\n1,x,张三\n".encode())
    write("csv", "binary_garbage.csv", bytes(rng.randrange(256) for _ in range(4096)))
    write("csv", "semicolon_delimited.csv", HEADER.replace(",", ";").encode() + GOOD.replace(",", ";").encode())
    write("csv", "crlf_and_cr_only.csv", (HEADER + GOOD).replace("\n", "\r").encode())
    # NUL bytes
    write("nul", "nul_in_values.csv", (HEADER + "42010219900102\x001234,张\x00三,1,1990-01-02,地址\n" + GOOD).encode())
    write("nul", "nul_in_header.csv", ("公民身份号码\x00,姓名\n" + "420102199001021234,张三\n").encode())
    write("nul", "nul_only.csv", b"\x00" * 1024)
    write("nul", "nul_in_json.json", json.dumps([{"姓名": "张\u0000三", "公民身份号码": "420102199001021234"}]).encode())
    # encodings and BOMs
    text = HEADER + GOOD + "42010219900102123X,李四,2,1990年1月2日,湖北省宜昌市西陵区二路2号\n"
    write("encoding", "gbk.csv", text.encode("gbk"))
    write("encoding", "gb18030_rare.csv", (text + "420102199001021250,王䶮,1,1990-01-02,地址\n").encode("gb18030"))
    write("encoding", "utf8_bom.csv", text.encode("utf-8-sig"))
    write("encoding", "utf16le_bom.csv", text.encode("utf-16"))
    write("encoding", "utf16be_bom.csv", b"\xfe\xff" + text.encode("utf-16-be"))
    write("encoding", "utf16le_no_bom.csv", text.encode("utf-16-le"))
    write("encoding", "utf32_bom.csv", text.encode("utf-32"))
    write("encoding", "mixed_utf8_gbk.csv", HEADER.encode() + GOOD.encode() + "420102199001021250,王五,1,1990-01-02,汉口\n".encode("gbk"))
    write("encoding", "big5.csv", "公民身份號碼,姓名\n420102199001021234,張三\n".encode("big5"))
    write("encoding", "latin1.csv", "name,city\nJosé,Zürich\n".encode("latin-1"))
    write("encoding", "bom_then_gbk.csv", b"\xef\xbb\xbf" + text.encode("gbk"))
    write("encoding", "double_bom.csv", b"\xef\xbb\xbf\xef\xbb\xbf" + utf8)
    # json / jsonl
    write("json", "truncated.json", '[{"公民身份号码": "420102199001021234", "姓名": "张三"}, {"姓名": '.encode())
    write("json", "object_not_array.json", '{"公民身份号码": "420102199001021234"}'.encode())
    write("json", "scalars_in_array.json", '[1, "x", null, true, [1, 2]]'.encode())
    write("json", "nan_and_infinity.json", '[{"姓名": NaN, "出生日期": Infinity}]'.encode())
    write("json", "deeply_nested.json", ("[" + "[" * 100_000 + "]" * 100_000 + "]").encode())
    write("json", "nested_objects.json", json.dumps([{"姓名": {"姓": "张", "名": "三"}, "性别": [1, 2]}], ensure_ascii=False).encode())
    write("json", "trailing_garbage.json", b'[{"a": 1}] trailing')
    write("json", "empty.json", b"")
    write("json", "huge_number.json", b'[{"\xe5\xa7\x93\xe5\x90\x8d": 1' + b"0" * 5000 + b"}]")
    write("json", "bom_utf8.json", '\ufeff[{"姓名": "张三"}]'.encode("utf-8"))
    write("jsonl", "bad_lines.jsonl", '{"姓名": "张三"}\nnot json\n\n[1,2]\n{"姓名": "李四"\n"just a string"\n{"姓名": "王五"}\n'.encode())
    write("jsonl", "truncated_last_line.jsonl", '{"姓名": "张三"}\n{"姓名": "李'.encode())
    write("jsonl", "deeply_nested_line.jsonl", ('{"姓名": "张三"}\n' + "[" * 100_000 + "]" * 100_000 + "\n").encode())
    # excel
    good_book = workbook([["公民身份号码", "姓名", "性别"], ["420102199001021234", "张三", "1"]])
    write("excel", "not_a_zip.xlsx", b"this is not a workbook\n")
    write("excel", "truncated.xlsx", good_book[: len(good_book) // 2])
    write("excel", "empty_workbook.xlsx", workbook([]))
    zipped = io.BytesIO()
    with zipfile.ZipFile(zipped, "w") as archive:
        archive.writestr("readme.txt", "not a workbook")
    write("excel", "zip_not_workbook.xlsx", zipped.getvalue())
    write("excel", "csv_named_xlsx.xlsx", utf8)
    write("excel", "formula_cells.xlsx", workbook([["姓名", "备注"], ["=1+1", "=HYPERLINK(\"http://x\",\"y\")"]]))
    write("excel", "unknown_extension.dat", utf8)
    # injection in values
    formulas = ["=1+1", "+86-27-1234", "-2+3", "@SUM(A1:A9)", "\t=cmd|' /C calc'!A0", "\r=1", "=HYPERLINK(\"http://evil\",\"点我\")"]
    write("injection", "formula_values.csv",
          ("公民身份号码,姓名,户籍地址\n" + "".join(f"42010219900102123{i},\"{f}\",\"{f}\"\n" for i, f in enumerate(formulas))).encode())
    sql = ["'; DROP TABLE person; --", "\" OR 1=1 --", "Robert'); DROP TABLE source_run;--", "1; DELETE FROM quality_run",
           "' UNION SELECT * FROM catalog_api_key --", "%' OR '%'='", "\\'; TRUNCATE licence; --"]
    write("injection", "sql_values.csv",
          ("公民身份号码,姓名,性别,出生日期,户籍地址\n" + "".join(f"\"{s}\",\"{s}\",\"{s}\",\"{s}\",\"{s}\"\n" for s in sql)).encode())
    write("injection", "sql_headers.csv", "\"姓名'; DROP TABLE person;--\",\"x\"\"y\"\n张三,1\n".encode())
    write("injection", "html_values.csv", "姓名,户籍地址\n<script>alert(1)</script>,\"<img src=x onerror=alert(1)>\"\n".encode())


if __name__ == "__main__":
    main()
