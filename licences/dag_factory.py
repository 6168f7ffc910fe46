"""Builder of the e-licence DAGs (dags/licence_reminders.py only calls it), after hub.dag_factory's conventions."""

from __future__ import annotations

from airflow.sdk import DAG, task

from hub.dag_factory import DEFAULT_ARGS, START_DATE, current_run_time

# Marking and reminding are quick and local: one short retry covers a locked database.
REMINDER_ARGS = DEFAULT_ARGS | {"retries": 2}


def licence_reminders_dag() -> DAG:
    """licence_reminders: daily — mark expired licences, raise 90/30/7-day reminders into the outbox, deliver them."""
    with DAG(
        dag_id="licence_reminders",
        description="电子证照到期提醒 mark expired licences, remind holders 90/30/7 days before expiry",
        schedule="@daily",
        start_date=START_DATE,
        catchup=False,
        max_active_runs=1,
        default_args=REMINDER_ARGS,
        tags=["licence", "reminder", "lifecycle"],
        doc_md=(
            "每日运行：\n\n"
            "1. `mark_expired` 将有效期已届满的有效证照标记为已过期（状态代码 5），并记录生命周期事件；\n"
            "2. `raise_reminders` 对 90、30、7 天内到期的有效证照写入提醒发件箱 `licence_reminder`"
            "（每个证照每个提前天数只一行，重跑不会重复提醒）；\n"
            "3. `deliver_reminders` 通过发送渠道（默认写入 `<data_root>/licences/reminders/outbox.jsonl`）发送待发提醒。\n\n"
            "基准日期取本次运行的时间（上海时区的日期），不取当前时间。"
        ),
    ) as dag:

        def _today_and_now():
            """The run's date (Asia/Shanghai) and moment (UTC): the time every step judges by."""
            import pendulum

            moment = current_run_time()
            return pendulum.instance(moment).in_timezone("Asia/Shanghai").date(), pendulum.instance(moment).in_timezone("UTC")

        @task(task_id="mark_expired")
        def mark_expired() -> dict:
            """Expired licences → 已过期."""
            from hub.db import engine_for
            from licences.reminders import mark_expired as run

            today, now = _today_and_now()
            return run(engine_for(), today, now)

        @task(task_id="raise_reminders")
        def raise_reminders(expired: dict) -> dict:
            """Pending reminders for licences expiring within 90/30/7 days."""
            from hub.db import engine_for
            from licences.reminders import raise_reminders as run

            today, now = _today_and_now()
            return run(engine_for(), today, now)

        @task(task_id="deliver_reminders")
        def deliver_reminders(raised: dict) -> dict:
            """Send the pending reminders through the default channel."""
            from hub.db import engine_for
            from licences.reminders import JsonLinesChannel, deliver_reminders as run

            _, now = _today_and_now()
            return run(engine_for(), JsonLinesChannel(), now)

        deliver_reminders(raise_reminders(mark_expired()))
    return dag
