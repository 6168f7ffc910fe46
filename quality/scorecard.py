"""Quality scorecards (质量评分卡): per department, per source and per library, over time, with charts.

A score is the share of rows without any finding, in points out of 100, computed from the checked runs
(quality_run): 100 × (1 − rows with a finding / rows checked), summed over runs before dividing, so a
large source weighs by its rows. Per dimension (完整性, 规范性 …) the same over that dimension's rules.
The page (index.html, Chinese) links the Data Docs of the latest runs.
"""

from __future__ import annotations

from collections import defaultdict
from html import escape
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from hub.models import QualityRun, QualityTicket
from quality.catalogue import DIMENSIONS
from quality.svg import bar_chart, line_chart

LOCAL = ZoneInfo("Asia/Shanghai")
LIBRARY_TITLES = {"population": "人口库", "legal_entity": "法人库", "licence": "电子证照库", "credit": "信用库"}


def _runs(engine: sa.Engine) -> list[Any]:
    """Every checked run, oldest first."""
    with engine.connect() as connection:
        return list(connection.execute(sa.select(QualityRun.__table__).order_by(QualityRun.checked_at, QualityRun.id)))


def _failing(run: Any) -> float:
    """Rows with a finding in a run (from its score)."""
    return run.rows_in * (100.0 - run.score) / 100.0


def _score(rows: float, failing: float) -> float:
    """Points out of 100."""
    return round(100.0 * (1 - failing / rows), 3) if rows else 100.0


def scores(runs: list[Any], key: str) -> dict[str, dict[str, Any]]:
    """Score of each group (department_code, source_id or library): overall, per dimension, per day."""
    groups: dict[str, dict[str, Any]] = defaultdict(lambda: {"rows": 0, "failing": 0.0, "dimensions": defaultdict(int), "days": defaultdict(lambda: [0, 0.0])})
    for run in runs:
        group = groups[getattr(run, key)]
        group["rows"] += run.rows_in
        group["failing"] += _failing(run)
        for dimension, count in (run.dimension_rows or {}).items():
            group["dimensions"][dimension] += count
        day = run.checked_at.astimezone(LOCAL).date().isoformat()
        group["days"][day][0] += run.rows_in
        group["days"][day][1] += _failing(run)
    out = {}
    for name, group in groups.items():
        out[name] = {"rows": group["rows"], "score": _score(group["rows"], group["failing"]),
                     "dimensions": {d: _score(group["rows"], group["dimensions"].get(d, 0)) for d in DIMENSIONS if d in group["dimensions"]},
                     "over_time": [(day, _score(r, f)) for day, (r, f) in sorted(group["days"].items())]}
    return out


def open_tickets(engine: sa.Engine) -> dict[str, int]:
    """Active tickets per department."""
    table = QualityTicket.__table__
    with engine.connect() as connection:
        rows = connection.execute(sa.select(table.c.department_code, sa.func.count()).where(table.c.status != "verified")
                                  .group_by(table.c.department_code)).all()
    return {department: int(count) for department, count in rows}


def _department_names() -> dict[str, str]:
    """Department code → Chinese name."""
    from schemas.code_tables import load_table

    table = load_table("departments")
    return {code: table.label(code) or code for code in table.codes}


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    """An HTML table."""
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def write_scorecards(engine: sa.Engine, out: Path) -> dict[str, Any]:
    """Write index.html and the SVG charts under out; return the figures."""
    out.mkdir(parents=True, exist_ok=True)
    runs = _runs(engine)
    names = _department_names()
    by_department = scores(runs, "department_code")
    by_source = scores(runs, "source_id")
    by_library = scores(runs, "library")
    tickets = open_tickets(engine)
    charts = {
        "departments_over_time.svg": line_chart({names.get(d, d): v["over_time"] for d, v in by_department.items()}, "各部门数据质量得分（随时间）"),
        "sources.svg": bar_chart(sorted(((s, v["score"]) for s, v in by_source.items()), key=lambda x: x[1]), "各数据源质量得分"),
        "libraries.svg": bar_chart([(LIBRARY_TITLES.get(k, k), v["score"]) for k, v in by_library.items()], "各基础库质量得分"),
        "departments.svg": bar_chart(sorted(((names.get(d, d), v["score"]) for d, v in by_department.items()), key=lambda x: x[1]), "各部门质量得分"),
    }
    for name, svg in charts.items():
        (out / name).write_text(svg, encoding="utf-8")
    latest: dict[str, Any] = {}
    for run in runs:
        latest[run.source_id] = run
    department_rows = [[names.get(d, d), d, f"{v['rows']:,}", f"{v['score']:.2f}", tickets.get(d, 0),
                        *[f"{v['dimensions'][dim]:.2f}" if dim in v["dimensions"] else "—" for dim in DIMENSIONS]]
                       for d, v in sorted(by_department.items(), key=lambda x: x[1]["score"])]
    source_rows = [[s, names.get(run.department_code, run.department_code), LIBRARY_TITLES.get(run.library, run.library),
                    f"{by_source[s]['score']:.2f}", run.run_id, f"{run.rows_in:,}", run.rows_quarantined, run.rows_merged, run.rows_warned,
                    "通过" if run.gx_success else ("未通过" if run.gx_success is not None else "—")]
                   for s, run in sorted(latest.items())]
    docs = "".join(f'<li><a href="{escape(Path(run.docs_page).as_uri())}">{escape(s)} · {escape(run.run_id)}</a></li>'
                   for s, run in sorted(latest.items()) if run.docs_page)
    html = f"""<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8"><title>数据质量评分卡</title>
<style>body{{font-family:{"'Noto Sans CJK SC','Microsoft YaHei',sans-serif"};margin:24px;color:#222}}
table{{border-collapse:collapse;margin:12px 0}}td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}
th{{background:#f4f4f4}}td:first-child,th:first-child{{text-align:left}}img{{max-width:100%;margin:8px 0}}</style></head>
<body><h1>数据质量评分卡</h1>
<p>得分 = 100 ×（1 − 有问题的行数 ÷ 检查行数），按检查批次累计；各维度只计该维度的规则。共 {len(runs)} 个检查批次。</p>
<h2>各部门</h2>{_table(["部门", "代码", "检查行数", "得分", "未关闭工单", *DIMENSIONS], department_rows)}
<img src="departments_over_time.svg" alt="各部门得分随时间"><img src="departments.svg" alt="各部门得分">
<h2>各数据源（最近一次检查）</h2>{_table(["数据源", "部门", "基础库", "累计得分", "最近批次", "行数", "隔离", "重复合并", "带警告入库", "GX 校验"], source_rows)}
<img src="sources.svg" alt="各数据源得分">
<h2>各基础库</h2><img src="libraries.svg" alt="各基础库得分">
<h2>Great Expectations 数据文档（Data Docs）</h2><ul>{docs or "<li>暂无</li>"}</ul>
</body></html>
"""
    (out / "index.html").write_text(html, encoding="utf-8")
    return {"page": str(out / "index.html"), "charts": sorted(charts), "departments": {d: v["score"] for d, v in by_department.items()},
            "sources": {s: v["score"] for s, v in by_source.items()}, "libraries": {k: v["score"] for k, v in by_library.items()},
            "open_tickets": tickets, "runs": len(runs)}
