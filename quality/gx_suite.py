"""Great Expectations suites generated from the rule catalogue, validated over the bare pass's outcome, with Data Docs.

One custom expectation, ``expect_column_values_to_pass_hub_rule``, stands for every rule: the bare pass
has already evaluated each rule into a boolean column, and GX validates those columns (VERIFIED.md: 20
precomputed boolean columns over a million rows cost GX about 0.2 s, where re-running the identifier logic
inside GX costs several times the bare pass). The suite is generated from the catalogue — rule id, Chinese
name, dimension, severity and standard travel in each expectation's meta and description — so the rules
are written once. GX is imported only when a validation runs (it takes seconds to import). A process keeps one
GX context per Data Docs site, and one data asset, suite and checkpoint per suite and rule set; a stage renders
the Data Docs pages of all the runs it checked, and the site's index, once (build_data_docs).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from quality.catalogue import Rule

SEVERITY_GX = {"error": "critical", "warning": "warning"}
SEVERITY_TEXT = {"error": "错误（隔离）", "warning": "警告（入库并反馈）"}
SITE_NAME = "hub_quality"
INDEX_LIMIT = 200  # validations listed on the site's index page, newest first (older pages stay on disk)
RESULT_FORMAT = {"result_format": "BASIC", "partial_unexpected_count": 0}


@dataclass
class GxOutcome:
    """What GX said about one batch: overall success, unexpected counts per rule, and where the docs are."""

    success: bool
    unexpected: dict[str, int]
    seconds: float
    docs_page: str | None = None
    docs_index: str | None = None
    statistics: dict[str, Any] = field(default_factory=dict)
    resources: list[Any] = field(default_factory=list, repr=False)  # GX identifiers of the run's Data Docs pages


@lru_cache(maxsize=1)
def _expectation_class() -> type:
    """The custom expectation (and its metric), defined on first use: importing GX costs seconds."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    from great_expectations.execution_engine import PandasExecutionEngine
    from great_expectations.expectations.expectation import ColumnMapExpectation
    from great_expectations.expectations.metrics import ColumnMapMetricProvider, column_condition_partial

    class ColumnValuesPassHubRule(ColumnMapMetricProvider):
        """Metric: the precomputed outcome of a hub rule (True = the row passes)."""

        condition_metric_name = "column_values.pass_hub_rule"

        @column_condition_partial(engine=PandasExecutionEngine)
        def _pandas(cls, column, **kwargs):  # noqa: N805 - GX's calling convention
            """The column already holds the verdict."""
            return column

    class ExpectColumnValuesToPassHubRule(ColumnMapExpectation):
        """Expect every row to pass one rule of the hub's quality catalogue (evaluated by the bare pass)."""

        map_metric = "column_values.pass_hub_rule"
        success_keys = ("mostly",)

    for name in ("great_expectations", "great_expectations.core", "great_expectations.data_context"):
        logging.getLogger(name).setLevel(logging.WARNING)
    _use_bitwise_fingerprint()
    return ExpectColumnValuesToPassHubRule


def _use_bitwise_fingerprint() -> None:
    """Have GX fingerprint a frame of rule outcomes from its bits instead of hashing every cell.

    GX marks each in-memory batch with ``pandas_data_fingerprint`` (shown in Data Docs, used for nothing else):
    an md5 over pandas' per-cell hashes, ≈0.1–0.25 s for the 20-odd boolean columns of a million rows — as much
    as the rest of GX's work. The frames this module hands GX hold only booleans, so one bit per cell identifies
    them as well: md5 over the column names, the row range and each column packed eight rows to a byte (≈0.02 s).
    Every other frame keeps GX's own fingerprint.
    """
    import numpy as np
    import pandas as pd
    from great_expectations.execution_engine import pandas_execution_engine as engine

    original = getattr(engine.hash_pandas_dataframe, "gx_original", engine.hash_pandas_dataframe)

    def fingerprint(df: Any) -> str:
        """GX's fingerprint for any frame but one of only boolean columns over a plain row range."""
        if not (isinstance(df, pd.DataFrame) and isinstance(df.index, pd.RangeIndex) and len(df.columns)
                and all(dtype == bool for dtype in df.dtypes)):
            return original(df)
        digest = hashlib.md5(usedforsecurity=False)  # a batch marker, not a security digest (as in GX)
        digest.update(repr(("hub-bits-v1", [str(c) for c in df.columns], df.index.start, df.index.stop, df.index.step)).encode())
        for position in range(df.shape[1]):
            digest.update(np.packbits(df.iloc[:, position].to_numpy(dtype=bool, copy=False)).tobytes())
        return digest.hexdigest()

    fingerprint.gx_original = original
    engine.hash_pandas_dataframe = fingerprint


def expectation_for(rule: Rule) -> Any:
    """The GX expectation that stands for one rule."""
    expectation = _expectation_class()
    return expectation(
        column=rule.id,
        severity=SEVERITY_GX[rule.severity],
        description=f"{rule.id} {rule.name}（{rule.dimension}；{SEVERITY_TEXT[rule.severity]}；依据：{rule.standard}）",
        meta={"rule_id": rule.id, "name": rule.name, "dimension": rule.dimension, "severity": rule.severity,
              "standard": rule.standard, "check": rule.check, "fields": list(rule.fields)},
    )


def build_suite(name: str, rules: list[Rule], context: Any = None) -> Any:
    """An ExpectationSuite with one expectation per rule (GX wants an active context: this process's own if none is given)."""
    import great_expectations as gx

    if context is None:
        _workspace(None)
    suite = gx.ExpectationSuite(name=name, meta={"generated_from": "quality/rules (hub rule catalogue)"})
    for rule in rules:
        suite.add_expectation(expectation_for(rule))
    return suite


def results_dir(docs_dir: Path) -> Path:
    """Where the validation results behind a Data Docs site are kept (JSON, beside the site): the site's index
    lists the runs of every process, not only those of the process that built it last."""
    return docs_dir.with_name(f"{docs_dir.name}-results")


@dataclass
class _Workspace:
    """This process's GX context for one Data Docs site (or none), with what it has set up so far.

    Creating a context, registering a data asset, building a suite and adding a checkpoint cost GX about as
    much as validating a whole small batch; a stage checks several runs of a library, and a process may run
    several stages. So all of that happens once per process and suite, and every run only validates.
    """

    context: Any
    datasource: Any
    site: Any | None  # the SiteBuilder of the Data Docs site (its Jinja templates compiled once per process)
    checkpoints: dict[str, tuple[tuple, Any]] = field(default_factory=dict)  # suite name → (rules key, Checkpoint)
    static_copied: bool = False


_LOCK = threading.RLock()  # a GX context is not thread-safe; validations and Data Docs builds take turns


@lru_cache(maxsize=8)
def _workspace(docs_dir: Path | None) -> _Workspace:
    """The process's GX context for a Data Docs folder (None: no site), created on first use."""
    _expectation_class()
    import great_expectations as gx
    from great_expectations.data_context.types.base import DataContextConfig, InMemoryStoreBackendDefaults, ProgressBarsConfig

    defaults = InMemoryStoreBackendDefaults()
    stores = dict(defaults.stores)
    if docs_dir is not None:
        docs_dir.mkdir(parents=True, exist_ok=True)
        stores[defaults.validation_results_store_name] = {"class_name": "ValidationResultsStore", "store_backend": {
            "class_name": "TupleFilesystemStoreBackend", "base_directory": str(results_dir(docs_dir))}}
    config = DataContextConfig(store_backend_defaults=defaults, stores=stores, data_docs_sites={},
                               analytics_enabled=False, progress_bars=ProgressBarsConfig(globally=False))
    context = gx.get_context(project_config=config, mode="ephemeral")
    return _Workspace(context, context.data_sources.add_pandas("hub"), _site_builder(context, docs_dir) if docs_dir else None)


def _site_builder(context: Any, docs_dir: Path) -> Any:
    """The Data Docs site: suite and validation pages, and an index listing the newest INDEX_LIMIT validations."""
    from great_expectations.render.renderer.site_builder import SiteBuilder

    builder = SiteBuilder(data_context=context, site_name=SITE_NAME,
                          store_backend={"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir)},
                          site_index_builder={"class_name": "DefaultSiteIndexBuilder"},
                          site_section_builders={"profiling": "None"})  # the hub never profiles
    builder.site_index_builder.validation_results_limit = INDEX_LIMIT  # the index only: every run's page is rendered
    return builder


def _rules_key(rules: list[Rule]) -> tuple:
    """What a generated suite depends on: the rules and every attribute an expectation carries."""
    return tuple((r.id, r.name, r.dimension, r.severity, r.standard, r.check, tuple(r.fields)) for r in rules)


def _checkpoint(workspace: _Workspace, suite_name: str, rules: list[Rule]) -> Any:
    """The suite's checkpoint (data asset, generated suite, validation definition), built once per process and rule set."""
    import great_expectations as gx

    key = _rules_key(rules)
    cached = workspace.checkpoints.get(suite_name)
    if cached is not None and cached[0] == key:
        return cached[1]
    context = workspace.context
    if cached is None:
        batch = workspace.datasource.add_dataframe_asset(suite_name).add_batch_definition_whole_dataframe("batch")
    else:  # the catalogue changed under a running process: same asset, new suite
        batch = workspace.datasource.get_asset(suite_name).get_batch_definition("batch")
    suite = context.suites.add_or_update(build_suite(suite_name, rules, context))
    definition = context.validation_definitions.add_or_update(gx.ValidationDefinition(name=suite_name, data=batch, suite=suite))
    checkpoint = context.checkpoints.add_or_update(gx.Checkpoint(
        name=f"checkpoint-{suite_name}", validation_definitions=[definition], actions=[], result_format=RESULT_FORMAT))
    workspace.checkpoints[suite_name] = (key, checkpoint)
    return checkpoint


def validate(pass_columns: dict[str, Any], rules: list[Rule], suite_name: str, run_name: str,
             run_time: dt.datetime, docs_dir: Path | None = None, build_docs: bool = True) -> GxOutcome:
    """Validate the precomputed rule outcomes with GX; with docs_dir, the run gets a Data Docs page.

    The page's path is known (and returned) at once; with build_docs=False the caller renders it later with
    build_data_docs, together with the other runs it checks, so the site's templates and index are built once.
    """
    import great_expectations as gx
    import pandas as pd

    started = time.perf_counter()
    # Only the rule columns: asking GX for failing rows' keys (unexpected_index_column_names) costs more than the
    # whole bare pass; the failing records are listed in the hub's tickets instead.
    frame = pd.DataFrame({rule.id: pass_columns[rule.id] for rule in rules}, copy=False)
    with _LOCK:
        workspace = _workspace(docs_dir)
        checkpoint = _checkpoint(workspace, suite_name, rules)
        run_id = gx.RunIdentifier(run_name=run_name, run_time=run_time)
        result = checkpoint.run(batch_parameters={"dataframe": frame}, run_id=run_id)
        # GX's execution engine keeps every batch it validated (the run's pass columns as a DataFrame): let it go,
        # or a stage holds the columns of all its runs until it ends.
        batches = workspace.datasource.get_execution_engine().batch_manager
        batches.reset_batch_cache()
        batches.batch_data_cache.clear()
    key, validation = next(iter(result.run_results.items()))
    unexpected = {r.expectation_config.kwargs["column"]: int(r.result.get("unexpected_count") or 0) for r in validation.results}
    outcome = GxOutcome(success=bool(result.success), unexpected=unexpected, seconds=0.0, statistics=dict(validation.statistics))
    if docs_dir is not None:
        outcome.docs_page = _url_path(workspace.site.get_resource_url(key, only_if_exists=False))
        outcome.docs_index = str(docs_dir / "index.html")
        outcome.resources = [key, key.expectation_suite_identifier]
        if build_docs:
            build_data_docs(docs_dir, [outcome])
    outcome.seconds = time.perf_counter() - started
    return outcome


def build_data_docs(docs_dir: Path, outcomes: list[GxOutcome]) -> float:
    """Render the Data Docs pages of these validations (and of their suites), then the site's index, once.

    Only the given validations are rendered, not the site's history. The index is rebuilt without GX's
    clean-up pass: that pass deletes every page whose validation result its context cannot see, which, with
    a context per process, removed the pages of earlier runs that reports and scorecards still link to.
    Returns the seconds spent.
    """
    started = time.perf_counter()
    resources = list(dict.fromkeys(r for outcome in outcomes for r in outcome.resources))
    if not resources:
        return 0.0
    with _LOCK:
        workspace = _workspace(docs_dir)
        resources += [key for key in _unrendered(workspace) if key not in resources]
        for section in workspace.site.site_section_builders.values():
            section.build(resource_identifiers=resources)
        _copy_static_assets(workspace)
        workspace.site.site_index_builder.build(skip_and_clean_missing=False)
    return time.perf_counter() - started


def _unrendered(workspace: _Workspace) -> list[Any]:
    """Stored validations that have no page yet: a process stopped between validating a run and its stage's
    Data Docs build (the run may be recorded, with the page's path). Listing both folders costs milliseconds."""
    from great_expectations.data_context.types.resource_identifiers import ValidationResultIdentifier

    pages = set(workspace.site.target_store.store_backends[ValidationResultIdentifier].list_keys())
    return [key for key in workspace.context.validation_results_store.list_keys()
            if isinstance(key, ValidationResultIdentifier) and key.to_tuple() not in pages]


def _copy_static_assets(workspace: _Workspace) -> None:
    """GX's styles, scripts and images for the site, copied once per process (GX copies them on every build)."""
    if not workspace.static_copied:
        workspace.site.target_store.copy_static_assets()
        workspace.static_copied = True


def _url_path(url: str | None) -> str | None:
    """A file:// URL of the site as a path."""
    return str(url).removeprefix("file://") if url else None
