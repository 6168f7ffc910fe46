"""The quality report of one merge run (Chinese HTML + JSON): what each checked source run gave, linking its Data Docs.

reports/<library>/<time>.html and .json under <data_root>/quality, plus latest.html; the merge DAG's
quality task writes one whenever it checked something.
"""

from __future__ import annotations

import datetime as dt
import json
from html import escape
from pathlib import Path
from typing import Any

from quality.catalogue import load_catalogue

LIBRARY_TITLES = {"population": "人口库", "legal_entity": "法人库", "licence": "电子证照库", "credit": "信用库"}


def _link(path: str | None) -> str:
    """A link to a Data Docs page, or a dash."""
    return f'<a href="{escape(Path(path).as_uri())}">Data Docs</a>' if path else "—"


def write_check_report(root: Path, library: str, run_time: dt.datetime, results: dict[str, Any]) -> Path:
    """Write the report of one quality stage; returns the HTML path."""
    folder = root / "reports" / library
    folder.mkdir(parents=True, exist_ok=True)
    stamp = run_time.astimezone(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    catalogue = load_catalogue(library)
    names = {r.id: r.name for r in catalogue.rules}
    runs = {k: v for k, v in results.items() if isinstance(v, dict) and "rows" in v}
    rows = []
    for key, value in runs.items():
        top = sorted((value.get("rule_counts") or {}).items(), key=lambda x: -x[1])[:5]
        rules = "；".join(f"{escape(names.get(r, r))}（{escape(r)}）{n}" for r, n in top) or "—"
        gx = "通过" if value.get("gx_success") else ("未通过" if value.get("gx_success") is not None else "未运行")
        rows.append(f"<tr><td>{escape(key)}</td><td>{value['rows']:,}</td><td>{value['loaded']:,}</td><td>{value['quarantined']:,}</td>"
                    f"<td>{value['merged']:,}</td><td>{value['warned']:,}</td><td>{value.get('score', 100):.2f}</td><td>{gx}</td>"
                    f"<td>{_link(value.get('docs_page'))}</td><td style='text-align:left'>{rules}</td></tr>")
    stale = {s: v for s, v in (results.get("timeliness") or {}).items() if v.get("stale")}
    html = f"""<!doctype html><html lang="zh-CN"><head><meta charset="utf-8"><title>{LIBRARY_TITLES.get(library, library)}质量检查报告</title>
<style>body{{font-family:'Noto Sans CJK SC','Microsoft YaHei',sans-serif;margin:24px}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}th{{background:#f4f4f4}}td:first-child{{text-align:left}}</style></head>
<body><h1>{LIBRARY_TITLES.get(library, library)}质量检查报告</h1><p>运行时间 {run_time.isoformat()}；检查批次 {len(runs)} 个。
行数守恒：输入 = 入库 + 隔离 + 重复合并（每个批次均已核对）。</p>
<table><thead><tr><th>数据源/批次</th><th>输入行</th><th>入库</th><th>隔离</th><th>重复合并</th><th>带警告入库</th><th>得分</th>
<th>GX 校验</th><th>数据文档</th><th>问题最多的规则</th></tr></thead><tbody>{''.join(rows)}</tbody></table>
<h2>及时性</h2><p>{'；'.join(f'{escape(s)} 超过承诺更新周期（最新数据 {escape(str(v.get("newest")))}）' for s, v in stale.items()) or '各数据源均在承诺更新周期内'}</p>
</body></html>"""
    page = folder / f"{stamp}.html"
    page.write_text(html, encoding="utf-8")
    (folder / f"{stamp}.json").write_text(json.dumps(results, ensure_ascii=False, indent=2, default=str), encoding="utf-8")
    (folder / "latest.html").write_text(html, encoding="utf-8")
    return page
