"""Builder of the open-data DAG (dags/release_opendata.py only calls it), after hub.dag_factory's conventions."""

from __future__ import annotations

import functools
import operator

from airflow.sdk import DAG, task

from hub.dag_factory import DEFAULT_ARGS, START_DATE, current_run_time, library_asset
from opendata.datasets import load_datasets

# A release is local and deterministic: one retry covers a locked database; a privacy-gate failure is not retried.
RELEASE_ARGS = DEFAULT_ARGS | {"retries": 1}


def task_id_of(dataset_id: str) -> str:
    """The task releasing one dataset."""
    return "release_" + dataset_id.replace("-", "_")


def release_opendata_dag() -> DAG:
    """release_opendata: when a base library changes, build each open dataset's release (one task per dataset)."""
    specs = list(load_datasets().values())
    libraries = sorted({lib for spec in specs for lib in spec.libraries})
    listed = "\n".join(f"- `{task_id_of(s.id)}`：{s.title}（{s.open_attribute}，读取 {'、'.join(s.libraries)}）" for s in specs)
    with DAG(
        dag_id="release_opendata",
        description="开放数据发布 de-identified, versioned, signed open-data releases",
        schedule=functools.reduce(operator.or_, [library_asset(lib) for lib in libraries]),
        start_date=START_DATE,
        catchup=False,
        max_active_runs=1,
        default_args=RELEASE_ARGS,
        tags=["opendata", "release", "privacy"],
        doc_md=(
            "任一基础库（人口、法人、电子证照、信用）合并完成后运行，为开放目录中的每个数据集生成一个发布版本：\n\n"
            "1. 从基础库读取并去标识化（泛化、k-匿名、小单元格抑制、自然人假名化与姓名脱敏）；\n"
            "2. 写出 Parquet、CSV（UTF-8 BOM，防公式注入）、JSON、datapackage.json、dcat.jsonld 和相对上一版本的差分；\n"
            "3. 隐私闸门扫描所有文件（身份证号、手机号、自然人姓名、k-匿名），不通过则不发布、任务失败且不重试；\n"
            "4. 清单 manifest.json 由枢纽发布密钥（Ed25519）签名，版本目录原子改名就位，更新 LATEST 与 catalog.json。\n\n"
            "数据未变化时不产生新版本（按内容哈希判断）。共享目录标为“不予开放”的数据集跳过。\n\n"
            f"任务：\n{listed}"
        ),
    ) as dag:
        for spec in specs:

            @task(task_id=task_id_of(spec.id))
            def release_one(dataset_id: str = spec.id) -> dict:
                """Release one dataset; returns its status and version (a reference, never the data)."""
                from airflow.sdk.exceptions import AirflowFailException

                from opendata.release import release

                out = release([dataset_id], at=current_run_time())
                if out["failed"]:
                    raise AirflowFailException(out["failed"][0]["error"])
                return out["results"][0]

            release_one()
    return dag
