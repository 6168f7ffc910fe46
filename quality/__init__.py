"""Data quality: rules from the standards, Great Expectations suites, quarantine, and the feedback loop to departments.

数据质量：汇集—分析—研判—推送—核查—反馈。

| module | holds |
| --- | --- |
| `rules/*.yaml` | the rule catalogue per base library (what the element catalogue cannot say, plus each source's promises) |
| `catalogue.py` | loads the catalogue and derives required / code-table / identifier / date rules from schemas/data/elements |
| `checks.py` | the check kinds, each vectorised over a whole batch |
| `frame.py` | a standardised batch with its costly derivations (identifier checks, day numbers) computed once |
| `references.py` | anchor data for cross-source comparison (比对) and referential integrity (关联性) |
| `engine.py` | the bare pass: every rule, findings, conflicts, the verdict per row (load / quarantine / merge) |
| `gx_suite.py` | GX suites generated from the catalogue, validated over the bare pass's outcome; Data Docs |
| `staging.py` | standardised runs and their verdicts as Parquet |
| `stage.py` | the merge DAG's quality task: check every unchecked run, conservation, persistence |
| `store.py` | defects, tickets, quarantine, conflicts and natural keys in the hub database |
| `tickets.py` | a steward's work on tickets: acknowledge, correct, dispute, decide |
| `timeliness.py` | freshness of each source against its promised update frequency |
| `report.py`, `scorecard.py`, `svg.py` | the run report, scorecards over time, hand-written SVG charts |
| `filecheck.py` | `hub quality check`: rules on a department's file, loaded nowhere |
| `world_eval.py` | `hub quality evaluate`: recall and precision against the simulated province's manifest |
| `cli.py` | the `hub quality …` commands |
"""
