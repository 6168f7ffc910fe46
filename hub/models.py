"""Tables of the hub database (first version): collection runs and the four base libraries.

枢纽数据库表：采集批次与人口、法人、电子证照、信用四大基础库。

Personal data of natural persons is never stored in clear: the resident ID number is kept as an
HMAC-SHA256 under the index key (the lookup key, `*_person_id`) plus an AES-GCM ciphertext
(`*_enc`, see hub.crypto); address and phone are ciphertext only. Companies' registration facts
are public by law and stay in clear.

Conventions for new tables: `Mapped[datetime]` is an aware-UTC timestamp (naive values are refused),
`Mapped[dict[str, Any]]` is portable JSON, ciphertext columns end in `_enc` (`hub keys rewrap` finds
them by that name), HMAC person links end in `_person_id`.

Every change to these classes needs a migration (see hub/migrations/README.md); the test
`tests/test_db_migrations.py` fails when models and migrations disagree.
"""

from __future__ import annotations

from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from hub.lineage import LineageJSON

# Deterministic constraint and index names on every backend, so later migrations can address them
# by name (SQLite batch mode needs named constraints to alter a table).
NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# Closed code sets from STANDARDS.md, enforced by CHECK constraints.
GENDER_CODES: tuple[str, ...] = ("0", "1", "2", "9")
SUBJECT_KINDS: tuple[str, ...] = ("01", "02", "03", "04")
CREDIT_RECORD_TYPES: tuple[str, ...] = ("行政许可", "行政处罚", "失信被执行人", "经营异常名录", "红名单", "黑名单")

HMAC_HEX = 64  # length of an HMAC-SHA256 hex digest (hub.crypto.index_hash)


def _in(column: str, values: tuple[str, ...]) -> str:
    """SQL text of `column IN (...)` for a CHECK constraint."""
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class UtcDateTime(sa.TypeDecorator[datetime]):
    """A timezone-aware timestamp stored as UTC; SQLite (which drops the zone) reads back aware UTC too."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        """Refuse naive datetimes (their zone is a guess) and store UTC."""
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"需要带时区的时间 timezone-aware datetime required, got naive {value.isoformat()}")
        return value.astimezone(timezone.utc)

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        """Return aware UTC whatever the backend gave back."""
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


class Base(DeclarativeBase):
    """Declarative base of every hub table, with the shared naming convention."""

    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UtcDateTime(), dict[str, Any]: sa.JSON()}


class Provenance:
    """Bookkeeping columns of a base-library row: which source and run last wrote it, and when."""

    # sort_order keeps these columns last in the DDL, after the business columns.
    source_id: Mapped[str] = mapped_column(sa.String(64), sort_order=900, comment="来源标识（数据源登记中的 source_id）")
    run_id: Mapped[str] = mapped_column(sa.String(128), sort_order=901, comment="采集批次标识（run_id）")
    updated_at: Mapped[datetime] = mapped_column(
        sort_order=902, comment="枢纽获知时间（UTC，由采集批次给出，不取当前时间）"
    )
    lineage: Mapped[dict[str, Any] | None] = mapped_column(
        LineageJSON, sort_order=903, comment="字段级血缘（JSON）：每个字段取自哪个来源、批次、时间，或数据专员的人工修正"
    )


class SourceRun(Base):
    """One collection of one source: counts, landing file and watermark range."""

    __tablename__ = "source_run"
    __table_args__ = (
        sa.UniqueConstraint("source_id", "run_id"),
        {"comment": "采集批次：每个数据源每次采集一行"},
    )

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True, comment="自增主键")
    source_id: Mapped[str] = mapped_column(sa.String(64), comment="来源标识")
    run_id: Mapped[str] = mapped_column(sa.String(128), comment="采集批次标识")
    status: Mapped[str] = mapped_column(sa.String(16), comment="状态：running 运行中 / succeeded 成功 / failed 失败")
    started_at: Mapped[datetime] = mapped_column(comment="开始时间（UTC）")
    finished_at: Mapped[datetime | None] = mapped_column(comment="结束时间（UTC）")
    rows_extracted: Mapped[int] = mapped_column(sa.BigInteger, server_default="0", comment="抽取行数")
    rows_loaded: Mapped[int] = mapped_column(sa.BigInteger, server_default="0", comment="入库行数")
    rows_rejected: Mapped[int] = mapped_column(sa.BigInteger, server_default="0", comment="拒收（隔离）行数")
    landing_path: Mapped[str | None] = mapped_column(sa.String(1024), comment="落地文件路径")
    landing_sha256: Mapped[str | None] = mapped_column(sa.String(64), comment="落地文件 SHA-256")
    watermark_from: Mapped[str | None] = mapped_column(sa.String(64), comment="增量水位起点（文本形式）")
    watermark_to: Mapped[str | None] = mapped_column(sa.String(64), comment="增量水位终点（文本形式）")


class Person(Provenance, Base):
    """人口库: one natural person, keyed by the HMAC of the resident ID number."""

    __tablename__ = "person"
    __table_args__ = (
        sa.Index(None, "name", "birth_date"),
        sa.CheckConstraint(_in("gender", GENDER_CODES), name="gender"),
        {"comment": "人口库：自然人基础信息（身份证号、住址、电话加密存储）"},
    )

    person_id: Mapped[str] = mapped_column(
        sa.String(HMAC_HEX), primary_key=True, comment="人员标识：规范化18位公民身份号码的 HMAC-SHA256（十六进制）"
    )
    id_number_enc: Mapped[bytes] = mapped_column(sa.LargeBinary, comment="公民身份号码密文（AES-GCM）")
    id_number_masked: Mapped[str] = mapped_column(sa.String(18), comment="公民身份号码脱敏显示，如 110105********1234")
    name: Mapped[str] = mapped_column(sa.String(100), comment="姓名")
    gender: Mapped[str | None] = mapped_column(sa.String(1), comment="性别（GB/T 2261.1：0 未知 1 男 2 女 9 未说明）")
    birth_date: Mapped[date | None] = mapped_column(sa.Date, comment="出生日期")
    ethnicity: Mapped[str | None] = mapped_column(sa.String(2), comment="民族（GB 3304 两位代码）")
    region_code: Mapped[str | None] = mapped_column(sa.String(6), comment="户籍地行政区划代码（GB/T 2260）")
    address_enc: Mapped[bytes | None] = mapped_column(sa.LargeBinary, comment="住址密文（AES-GCM）")
    phone_enc: Mapped[bytes | None] = mapped_column(sa.LargeBinary, comment="联系电话密文（AES-GCM）")
    marital_status: Mapped[str | None] = mapped_column(sa.String(2), comment="婚姻状况（GB/T 2261.2）")
    death_date: Mapped[date | None] = mapped_column(sa.Date, comment="死亡日期")


class LegalEntity(Provenance, Base):
    """法人库: one registered subject (company, individual business, social organisation…)."""

    __tablename__ = "legal_entity"
    __table_args__ = (
        sa.Index(None, "name"),
        sa.Index(None, "legal_rep_person_id"),
        {"comment": "法人库：法人和其他组织登记信息（登记事项依法公开，法定代表人身份证号加密）"},
    )

    uscc: Mapped[str] = mapped_column(sa.String(18), primary_key=True, comment="统一社会信用代码（GB 32100）")
    name: Mapped[str] = mapped_column(sa.String(200), comment="名称")
    entity_kind: Mapped[str] = mapped_column(
        sa.String(32),
        comment="主体类别：enterprise 企业 / individual_business 个体工商户 / farmer_coop 农民专业合作社 / "
        "social_org 社会组织 / institution 事业单位 / government 机关 / other 其他",
    )
    entity_type: Mapped[str | None] = mapped_column(sa.String(64), comment="类型（如 有限责任公司）")
    legal_rep_name: Mapped[str | None] = mapped_column(sa.String(100), comment="法定代表人（负责人）姓名")
    legal_rep_person_id: Mapped[str | None] = mapped_column(
        sa.String(HMAC_HEX), comment="法定代表人人员标识（身份证号 HMAC，关联人口库 person.person_id）"
    )
    legal_rep_id_enc: Mapped[bytes | None] = mapped_column(sa.LargeBinary, comment="法定代表人证件号码密文（AES-GCM）")
    registered_capital: Mapped[Decimal | None] = mapped_column(sa.Numeric(20, 6), comment="注册资本（万元）")
    established_date: Mapped[date | None] = mapped_column(sa.Date, comment="成立日期")
    registration_authority: Mapped[str | None] = mapped_column(sa.String(200), comment="登记机关")
    status: Mapped[str | None] = mapped_column(sa.String(32), comment="登记状态（存续、吊销、注销等）")
    address: Mapped[str | None] = mapped_column(sa.String(500), comment="住所（依法公开，明文）")
    region_code: Mapped[str | None] = mapped_column(sa.String(6), comment="住所行政区划代码（GB/T 2260）")
    business_scope: Mapped[str | None] = mapped_column(sa.Text, comment="经营范围")


class Licence(Provenance, Base):
    """电子证照库: one electronic licence with its GB/T 36903 metadata and the hub's seal."""

    __tablename__ = "licence"
    __table_args__ = (
        sa.Index(None, "holder_person_id"),
        sa.Index(None, "holder_code"),
        sa.Index(None, "licence_type_code", "licence_number"),
        sa.CheckConstraint("holder_code IS NOT NULL OR holder_person_id IS NOT NULL", name="holder"),
        {"comment": "电子证照库：证照元数据（GB/T 36903）、照面信息与签章"},
    )

    licence_id: Mapped[str] = mapped_column(sa.String(200), primary_key=True, comment="证照标识（GB/T 36904）")
    licence_name: Mapped[str] = mapped_column(sa.String(200), comment="证照名称")
    licence_type_code: Mapped[str] = mapped_column(sa.String(32), comment="证照类型代码")
    licence_number: Mapped[str | None] = mapped_column(sa.String(100), comment="证照编号")
    issuer: Mapped[str] = mapped_column(sa.String(200), comment="颁发机构")
    issuer_code: Mapped[str] = mapped_column(sa.String(18), comment="颁发机构代码（统一社会信用代码）")
    issue_date: Mapped[date | None] = mapped_column(sa.Date, comment="颁发日期")
    holder_name: Mapped[str] = mapped_column(sa.String(200), comment="持证主体")
    holder_code: Mapped[str | None] = mapped_column(
        sa.String(64), comment="持证主体代码（法人等为统一社会信用代码明文；自然人为空，见 holder_person_id）"
    )
    holder_person_id: Mapped[str | None] = mapped_column(
        sa.String(HMAC_HEX), comment="自然人持证主体的人员标识（身份证号 HMAC）"
    )
    holder_code_enc: Mapped[bytes | None] = mapped_column(sa.LargeBinary, comment="自然人持证主体证件号码密文（AES-GCM）")
    holder_code_type: Mapped[str] = mapped_column(
        sa.String(3), comment="持证主体代码类型（111 公民身份号码，001 统一社会信用代码）"
    )
    valid_from: Mapped[date | None] = mapped_column(sa.Date, comment="有效期起始日期")
    valid_until: Mapped[date | None] = mapped_column(sa.Date, comment="有效期截止日期（空为长期）")
    status: Mapped[str | None] = mapped_column(sa.String(16), comment="证照状态")
    face_content: Mapped[dict[str, Any] | None] = mapped_column(comment="照面信息（JSON；自然人证照改存 face_content_enc）")
    face_content_enc: Mapped[bytes | None] = mapped_column(
        sa.LargeBinary, comment="自然人证照照面信息密文（JSON 文本经 AES-GCM 加密）"
    )
    related_licence_id: Mapped[str | None] = mapped_column(sa.String(200), comment="关联证照标识")
    seal_signer: Mapped[str | None] = mapped_column(sa.String(200), comment="签章人")
    seal_name: Mapped[str | None] = mapped_column(sa.String(200), comment="签章名称")
    seal_algorithm: Mapped[str | None] = mapped_column(
        sa.String(32), comment="签章算法标识（如 Ed25519、ECDSA-P256-SHA256、SM2-SM3）"
    )
    seal_key_id: Mapped[str | None] = mapped_column(sa.String(64), comment="签章密钥标识")
    seal_value: Mapped[bytes | None] = mapped_column(sa.LargeBinary, comment="签章值")
    sealed_at: Mapped[datetime | None] = mapped_column(comment="签章时间（UTC）")


class CreditRecord(Provenance, Base):
    """信用库: one credit record (licence decision, penalty, dishonest debtor, abnormal list, red/black list)."""

    __tablename__ = "credit_record"
    __table_args__ = (
        sa.Index(None, "subject_code"),
        sa.Index(None, "subject_person_id"),
        sa.CheckConstraint(_in("record_type", CREDIT_RECORD_TYPES), name="record_type"),
        sa.CheckConstraint(_in("subject_kind", SUBJECT_KINDS), name="subject_kind"),
        sa.CheckConstraint("subject_code IS NOT NULL OR subject_person_id IS NOT NULL", name="subject"),
        {"comment": "信用库：双公示、失信被执行人、经营异常名录、红黑名单记录"},
    )

    record_id: Mapped[str] = mapped_column(sa.String(128), primary_key=True, comment="记录标识")
    record_type: Mapped[str] = mapped_column(
        sa.String(16), comment="记录类型：行政许可/行政处罚/失信被执行人/经营异常名录/红名单/黑名单"
    )
    subject_name: Mapped[str] = mapped_column(sa.String(200), comment="行政相对人（主体）名称")
    subject_kind: Mapped[str] = mapped_column(
        sa.String(2), comment="行政相对人类别：01 自然人 02 法人 03 非法人组织 04 个体工商户"
    )
    subject_code: Mapped[str | None] = mapped_column(
        sa.String(18), comment="主体代码（统一社会信用代码明文；自然人为空，见 subject_person_id）"
    )
    subject_person_id: Mapped[str | None] = mapped_column(
        sa.String(HMAC_HEX), comment="自然人主体的人员标识（身份证号 HMAC）"
    )
    subject_id_enc: Mapped[bytes | None] = mapped_column(sa.LargeBinary, comment="自然人主体证件号码密文（AES-GCM）")
    decision_no: Mapped[str | None] = mapped_column(sa.String(200), comment="决定文书号（许可/处罚决定书文号、案号等）")
    decision_date: Mapped[date | None] = mapped_column(sa.Date, comment="决定日期（许可/处罚决定日期、列入日期等）")
    authority: Mapped[str | None] = mapped_column(sa.String(200), comment="决定机关（许可机关、处罚机关、执行法院等）")
    authority_code: Mapped[str | None] = mapped_column(sa.String(18), comment="决定机关代码（统一社会信用代码）")
    content: Mapped[dict[str, Any] | None] = mapped_column(comment="其余类型特有字段（JSON）")
    valid_until: Mapped[date | None] = mapped_column(sa.Date, comment="有效期至 / 公示截止期 / 移出日期")
    status: Mapped[str | None] = mapped_column(sa.String(16), comment="当前状态（1 有效 2 无效 等）")


# ---------------------------------------------------------------------------------------------
# Quality: checked runs, quarantine, defects, feedback tickets, cross-source conflicts (quality/)
# ---------------------------------------------------------------------------------------------

TICKET_STATUSES: tuple[str, ...] = ("open", "acknowledged", "corrected", "disputed", "verified")
DEFECT_STATUSES: tuple[str, ...] = ("open", "resolved", "waived")
QUARANTINE_STATUSES: tuple[str, ...] = ("quarantined", "release_pending", "released")


class QualityRun(Base):
    """One source run through the quality stage: row accounting, score, GX outcome and the Data Docs page."""

    __tablename__ = "quality_run"
    __table_args__ = (
        sa.UniqueConstraint("source_id", "run_id"),
        sa.Index(None, "library", "checked_at"),
        {"comment": "质量检查批次：每个数据源每次采集一行（行数守恒、得分、GX 结果）"},
    )

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True, comment="自增主键")
    source_id: Mapped[str] = mapped_column(sa.String(64), comment="来源标识")
    run_id: Mapped[str] = mapped_column(sa.String(128), comment="采集批次标识")
    library: Mapped[str] = mapped_column(sa.String(32), comment="基础库")
    department_code: Mapped[str] = mapped_column(sa.String(32), comment="数据提供部门代码")
    status: Mapped[str] = mapped_column(sa.String(16), comment="状态：checked 已检查 / loaded 已入库 / checked_only 仅检查（不入库的数据源）")
    reference_date: Mapped[date] = mapped_column(sa.Date, comment="基准日期（日期规则据此判断）")
    checked_at: Mapped[datetime] = mapped_column(comment="检查时间（UTC，取该批次的运行时间）")
    rows_in: Mapped[int] = mapped_column(sa.BigInteger, comment="输入行数")
    rows_loaded: Mapped[int] = mapped_column(sa.BigInteger, comment="可入库行数（含仅有警告的行）")
    rows_quarantined: Mapped[int] = mapped_column(sa.BigInteger, comment="隔离行数")
    rows_merged: Mapped[int] = mapped_column(sa.BigInteger, comment="作为重复记录合并的行数")
    rows_warned: Mapped[int] = mapped_column(sa.BigInteger, comment="带警告入库的行数")
    findings_error: Mapped[int] = mapped_column(sa.BigInteger, comment="错误级问题数")
    findings_warning: Mapped[int] = mapped_column(sa.BigInteger, comment="警告级问题数")
    score: Mapped[float] = mapped_column(sa.Float, comment="质量得分（0–100，无问题行占比）")
    dimension_rows: Mapped[dict[str, Any]] = mapped_column(comment="各质量维度的问题行数（JSON）")
    rule_counts: Mapped[dict[str, Any]] = mapped_column(comment="各规则的问题行数（JSON）")
    skipped_rules: Mapped[dict[str, Any] | None] = mapped_column(comment="因参照数据未就绪而跳过的规则（JSON）")
    gx_success: Mapped[bool | None] = mapped_column(sa.Boolean, comment="Great Expectations 校验是否全部通过")
    rules_seconds: Mapped[float | None] = mapped_column(sa.Float, comment="规则向量化计算耗时（秒）")
    gx_seconds: Mapped[float | None] = mapped_column(sa.Float, comment="Great Expectations 校验耗时（秒）")
    docs_page: Mapped[str | None] = mapped_column(sa.String(1024), comment="本批次 Data Docs 页面路径")
    staging_path: Mapped[str] = mapped_column(sa.String(1024), comment="标准化后的暂存 Parquet 路径（含判定列）")
    ruleset_version: Mapped[str | None] = mapped_column(sa.String(32), comment="检查所用规则集版本（规则目录内容的 SHA-256 短摘要）")


class QualityTicket(Base):
    """A feedback ticket to the owning department: the defects of one source under one rule."""

    __tablename__ = "quality_ticket"
    __table_args__ = (
        sa.Index(None, "department_code", "status"),
        sa.Index(None, "source_id", "rule_id", "status"),
        sa.CheckConstraint(_in("status", TICKET_STATUSES), name="status"),
        {"comment": "问题反馈工单：按数据源和规则归并，退回数据提供部门核查更正"},
    )

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True, comment="工单编号")
    department_code: Mapped[str] = mapped_column(sa.String(32), comment="责任部门代码")
    source_id: Mapped[str] = mapped_column(sa.String(64), comment="来源标识")
    rule_id: Mapped[str] = mapped_column(sa.String(96), comment="规则编号")
    rule_name: Mapped[str] = mapped_column(sa.String(200), comment="规则名称")
    severity: Mapped[str] = mapped_column(sa.String(8), comment="严重程度：error 错误（已隔离） / warning 警告（已入库）")
    status: Mapped[str] = mapped_column(
        sa.String(16), comment="状态：open 待处理 / acknowledged 已签收 / corrected 已更正 / disputed 有异议 / verified 已核验关闭"
    )
    opened_run_id: Mapped[str] = mapped_column(sa.String(128), comment="发现问题的采集批次")
    opened_at: Mapped[datetime] = mapped_column(comment="开单时间（UTC）")
    updated_at: Mapped[datetime] = mapped_column(comment="最近变更时间（UTC）")
    closed_at: Mapped[datetime | None] = mapped_column(comment="核验关闭时间（UTC）")
    defects_open: Mapped[int] = mapped_column(sa.Integer, server_default="0", comment="未解决问题数")
    defects_total: Mapped[int] = mapped_column(sa.Integer, server_default="0", comment="问题总数")
    steward_note: Mapped[str | None] = mapped_column(sa.Text, comment="部门数据专员说明（签收、更正、异议理由）")
    decision: Mapped[str | None] = mapped_column(sa.String(16), comment="异议裁定：accepted 采纳（豁免） / rejected 驳回")
    decided_by: Mapped[str | None] = mapped_column(sa.String(100), comment="裁定人")
    decided_at: Mapped[datetime | None] = mapped_column(comment="裁定时间（UTC）")


class QualityTicketEvent(Base):
    """One step in a ticket's life (who did what, when, from which status to which)."""

    __tablename__ = "quality_ticket_event"
    __table_args__ = (sa.Index(None, "ticket_id"), {"comment": "工单流转记录"})

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True, comment="自增主键")
    ticket_id: Mapped[int] = mapped_column(sa.ForeignKey("quality_ticket.id", ondelete="CASCADE"), comment="工单编号")
    at: Mapped[datetime] = mapped_column(comment="时间（UTC）")
    actor: Mapped[str] = mapped_column(sa.String(100), comment="操作人（部门专员、枢纽专员或 system 系统）")
    from_status: Mapped[str | None] = mapped_column(sa.String(16), comment="原状态")
    to_status: Mapped[str] = mapped_column(sa.String(16), comment="新状态")
    note: Mapped[str | None] = mapped_column(sa.Text, comment="说明")


class QualityDefect(Base):
    """One defect of one source record under one rule, from first sighting to resolution."""

    __tablename__ = "quality_defect"
    __table_args__ = (
        sa.UniqueConstraint("source_id", "source_key", "rule_id"),
        sa.Index(None, "ticket_id"),
        sa.Index(None, "source_id", "status"),
        sa.CheckConstraint(_in("status", DEFECT_STATUSES), name="status"),
        {"comment": "数据问题：每条源记录每条规则一行（首次发现至解决）"},
    )

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True, comment="自增主键")
    source_id: Mapped[str] = mapped_column(sa.String(64), comment="来源标识")
    source_key: Mapped[str] = mapped_column(sa.String(512), comment="源记录主键（数据源级问题为空串）")
    rule_id: Mapped[str] = mapped_column(sa.String(96), comment="规则编号")
    field: Mapped[str] = mapped_column(sa.String(64), comment="问题字段（标准数据元名）")
    severity: Mapped[str] = mapped_column(sa.String(8), comment="严重程度 error / warning")
    dimension: Mapped[str] = mapped_column(sa.String(8), comment="质量维度")
    message: Mapped[str] = mapped_column(sa.Text, comment="问题说明（中文；身份号码已脱敏）")
    status: Mapped[str] = mapped_column(sa.String(16), comment="状态：open 未解决 / resolved 已解决 / waived 经裁定豁免")
    disputed: Mapped[bool] = mapped_column(sa.Boolean, server_default=sa.false(), comment="部门是否提出异议")
    ticket_id: Mapped[int | None] = mapped_column(sa.ForeignKey("quality_ticket.id"), comment="所属工单")
    first_run_id: Mapped[str] = mapped_column(sa.String(128), comment="首次发现批次")
    last_run_id: Mapped[str] = mapped_column(sa.String(128), comment="最近一次发现批次")
    resolved_run_id: Mapped[str | None] = mapped_column(sa.String(128), comment="解决批次（更正后的记录到达）")
    first_seen_at: Mapped[datetime] = mapped_column(comment="首次发现时间（UTC）")
    last_seen_at: Mapped[datetime] = mapped_column(comment="最近一次发现时间（UTC）")
    resolved_at: Mapped[datetime | None] = mapped_column(comment="解决时间（UTC）")


class QuarantinedRow(Base):
    """A source record held back from the library, with its rules and reasons; the row itself is encrypted."""

    __tablename__ = "quality_quarantine"
    __table_args__ = (
        sa.UniqueConstraint("source_id", "source_key"),
        sa.Index(None, "source_id", "status"),
        sa.Index(None, "subject_key"),
        sa.CheckConstraint(_in("status", QUARANTINE_STATUSES), name="status"),
        {"comment": "隔离区：未通过错误级规则的源记录（记录内容加密存储）"},
    )

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True, comment="自增主键")
    source_id: Mapped[str] = mapped_column(sa.String(64), comment="来源标识")
    source_key: Mapped[str] = mapped_column(sa.String(512), comment="源记录主键")
    run_id: Mapped[str] = mapped_column(sa.String(128), comment="被隔离的版本所在批次")
    library: Mapped[str] = mapped_column(sa.String(32), comment="基础库")
    subject_key: Mapped[str | None] = mapped_column(
        sa.String(200), comment="主体键：自然人为身份号码 HMAC，法人为统一社会信用代码，证照为证照标识"
    )
    row_enc: Mapped[bytes] = mapped_column(sa.LargeBinary, comment="标准化后的记录（JSON）密文（AES-GCM）")
    rule_ids: Mapped[str] = mapped_column(sa.String(1024), comment="未通过的错误级规则编号（逗号分隔）")
    reasons: Mapped[str] = mapped_column(sa.Text, comment="隔离原因（中文）")
    status: Mapped[str] = mapped_column(
        sa.String(16), comment="状态：quarantined 隔离中 / release_pending 待放行（已豁免） / released 已放行"
    )
    quarantined_at: Mapped[datetime] = mapped_column(comment="隔离时间（UTC）")
    released_at: Mapped[datetime | None] = mapped_column(comment="放行时间（UTC）")
    released_run_id: Mapped[str | None] = mapped_column(sa.String(128), comment="放行批次（更正记录到达的批次或裁定豁免）")


class QualityConflict(Base):
    """比对结果: the same subject with different values in two departments (both sources, both values)."""

    __tablename__ = "quality_conflict"
    __table_args__ = (
        sa.UniqueConstraint("source_id", "source_key", "rule_id"),
        sa.Index(None, "subject_key"),
        {"comment": "跨部门比对冲突：同一主体在两个部门的取值不一致"},
    )

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True, comment="自增主键")
    rule_id: Mapped[str] = mapped_column(sa.String(96), comment="比对规则编号")
    field: Mapped[str] = mapped_column(sa.String(64), comment="比对字段")
    subject_key: Mapped[str] = mapped_column(
        sa.String(200), comment="主体键：自然人为身份号码 HMAC，法人为统一社会信用代码"
    )
    source_id: Mapped[str] = mapped_column(sa.String(64), comment="来源一：数据源")
    source_key: Mapped[str] = mapped_column(sa.String(512), comment="来源一：记录主键")
    value: Mapped[str | None] = mapped_column(sa.String(500), comment="来源一：取值")
    reference_source_id: Mapped[str] = mapped_column(sa.String(64), comment="来源二：数据源（权威来源）")
    reference_key: Mapped[str | None] = mapped_column(sa.String(512), comment="来源二：记录主键")
    reference_value: Mapped[str | None] = mapped_column(sa.String(500), comment="来源二：取值")
    status: Mapped[str] = mapped_column(sa.String(16), comment="状态：open 未解决 / resolved 已一致")
    first_run_id: Mapped[str] = mapped_column(sa.String(128), comment="首次发现批次")
    last_run_id: Mapped[str] = mapped_column(sa.String(128), comment="最近一次发现批次")


class QualityNaturalKey(Base):
    """The first source record that sent each natural key, so a later record with the same key is a duplicate."""

    __tablename__ = "quality_natural_key"
    __table_args__ = (
        sa.UniqueConstraint("source_id", "key_hash"),
        {"comment": "自然键登记：用于识别跨批次的重复记录（键值经 HMAC 处理）"},
    )

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True, comment="自增主键")
    source_id: Mapped[str] = mapped_column(sa.String(64), comment="来源标识")
    key_hash: Mapped[str] = mapped_column(sa.String(HMAC_HEX), comment="自然键的 HMAC-SHA256（十六进制）")
    source_key: Mapped[str] = mapped_column(sa.String(512), comment="首次发送该自然键的源记录主键")
    first_run_id: Mapped[str] = mapped_column(sa.String(128), comment="首次出现批次")


# ---------------------------------------------------------------------------------------------
# Merge of the base libraries: source claims, golden-record history, steward overrides (libraries/)
# ---------------------------------------------------------------------------------------------

LINKAGE_STATUSES: tuple[str, ...] = ("linked", "review", "no_match", "confirmed", "rejected")


class LibraryClaim(Base):
    """Each source's latest claim about one subject of a base library (the input of survivorship)."""

    __tablename__ = "library_claim"
    __table_args__ = (
        sa.UniqueConstraint("library", "entity_key", "source_id"),
        sa.Index(None, "library", "source_id", "source_key"),  # a snapshot's delete row names only the source key
        {"comment": "来源声明：每个数据源对每个主体的最新取值（整条加密存储），字段级择优的输入"},
    )

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True, comment="自增主键")
    library: Mapped[str] = mapped_column(sa.String(32), comment="基础库")
    entity_key: Mapped[str] = mapped_column(
        sa.String(200), comment="主体键：自然人为身份号码 HMAC，法人为统一社会信用代码，证照为证照标识，信用为记录标识"
    )
    source_id: Mapped[str] = mapped_column(sa.String(64), comment="来源标识")
    source_key: Mapped[str] = mapped_column(sa.String(512), comment="源记录主键")
    run_id: Mapped[str] = mapped_column(sa.String(128), comment="带来该声明的采集批次")
    extracted_at: Mapped[datetime] = mapped_column(comment="枢纽抽取时间（UTC，取批次结束时间）")
    valid_from: Mapped[datetime | None] = mapped_column(comment="源端生效时间（UTC；源端未给出则为空）")
    ruleset_version: Mapped[str | None] = mapped_column(sa.String(32), comment="检查该批次所用规则集版本")
    payload_enc: Mapped[bytes] = mapped_column(sa.LargeBinary, comment="声明内容（规范 JSON）密文（AES-GCM）")
    payload_hash: Mapped[str] = mapped_column(sa.String(HMAC_HEX), comment="声明内容的 HMAC-SHA256（变化检测，无需解密）")
    deleted: Mapped[bool] = mapped_column(sa.Boolean, server_default=sa.false(), comment="来源是否已撤回该主体（删除）")


class MergePending(Base):
    """A subject whose claims changed in a deferred merge and whose golden record is not recomputed yet.

    The merge DAG stores the claims of every pending run of a library first and recomputes each touched subject once
    (libraries.merge.recompute_pending), instead of once per source run; a row per source that touched the subject,
    written in the transaction that stored the claim, so a crash between the two steps loses nothing."""

    __tablename__ = "merge_pending"
    __table_args__ = ({"comment": "待重算主体：延迟合并中声明已变、黄金记录尚未重算的主体（每个来源一行）"},)

    library: Mapped[str] = mapped_column(sa.String(32), primary_key=True, comment="基础库")
    entity_key: Mapped[str] = mapped_column(sa.String(200), primary_key=True, comment="主体键（同 library_claim.entity_key）")
    source_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True, comment="声明变化的来源")
    run_id: Mapped[str] = mapped_column(sa.String(128), comment="带来变化的采集批次")
    extracted_at: Mapped[datetime] = mapped_column(comment="该批次的抽取时间（UTC）：重算所记的记录时间")


class GoldenVersion(Base):
    """One version of a golden record on two time axes: valid time (at the source) and record time (in the hub)."""

    __tablename__ = "golden_version"
    __table_args__ = (
        sa.UniqueConstraint("library", "entity_key", "version"),
        sa.Index(None, "library", "entity_key", "recorded_at"),
        {"comment": "标准记录历史（双时态）：有效时间与记录时间，含注销（墓碑）版本"},
    )

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True, comment="自增主键")
    library: Mapped[str] = mapped_column(sa.String(32), comment="基础库")
    entity_key: Mapped[str] = mapped_column(sa.String(200), comment="主体键（同 library_claim.entity_key）")
    version: Mapped[int] = mapped_column(sa.Integer, comment="版本号（从 1 递增）")
    valid_from: Mapped[datetime | None] = mapped_column(comment="有效时间起（UTC；空为自始有效）")
    valid_to: Mapped[datetime | None] = mapped_column(comment="有效时间止（UTC；空为至今有效）")
    recorded_at: Mapped[datetime] = mapped_column(comment="记录时间起：枢纽获知该版本的时间（UTC）")
    superseded_at: Mapped[datetime | None] = mapped_column(comment="记录时间止：被新版本取代的时间（UTC；空为当前认知）")
    tombstone: Mapped[bool] = mapped_column(sa.Boolean, server_default=sa.false(), comment="是否为注销（墓碑）版本")
    record_enc: Mapped[bytes | None] = mapped_column(sa.LargeBinary, comment="标准记录（规范 JSON）密文（AES-GCM）")
    record_hash: Mapped[str] = mapped_column(sa.String(HMAC_HEX), comment="标准记录的 HMAC-SHA256（变化检测）")
    lineage: Mapped[dict[str, Any] | None] = mapped_column(LineageJSON, comment="字段级血缘（JSON）")
    run_id: Mapped[str] = mapped_column(sa.String(128), comment="产生该版本的采集批次（人工修正为 override:<编号>）")


class StewardOverride(Base):
    """A data steward's correction of one field of one golden record; wins over every source until revoked."""

    __tablename__ = "steward_override"
    __table_args__ = (
        sa.Index(None, "library", "entity_key"),
        {"comment": "人工修正：数据专员对标准记录单个字段的修正（优先于所有来源，撤销前有效）"},
    )

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True, comment="修正编号")
    library: Mapped[str] = mapped_column(sa.String(32), comment="基础库")
    entity_key: Mapped[str] = mapped_column(sa.String(200), comment="主体键")
    field: Mapped[str] = mapped_column(sa.String(64), comment="字段（标准数据元名）")
    value_enc: Mapped[bytes] = mapped_column(sa.LargeBinary, comment="修正值（JSON）密文（AES-GCM）")
    reason: Mapped[str] = mapped_column(sa.Text, comment="修正理由")
    steward: Mapped[str] = mapped_column(sa.String(100), comment="数据专员")
    department_code: Mapped[str] = mapped_column(sa.String(32), comment="数据专员所在部门代码")
    created_at: Mapped[datetime] = mapped_column(comment="修正时间（UTC）")
    revoked_at: Mapped[datetime | None] = mapped_column(comment="撤销时间（UTC；空为有效）")
    revoked_by: Mapped[str | None] = mapped_column(sa.String(100), comment="撤销人")
    revoke_reason: Mapped[str | None] = mapped_column(sa.Text, comment="撤销理由")


class StewardAudit(Base):
    """Append-only audit of steward actions on the libraries, chained by SHA-256 so tampering is detectable."""

    __tablename__ = "steward_audit"
    __table_args__ = (
        sa.Index(None, "library", "entity_key"),
        {"comment": "数据专员操作审计（只追加，SHA-256 哈希链防篡改）"},
    )

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True, comment="自增主键")
    at: Mapped[datetime] = mapped_column(comment="时间（UTC）")
    actor: Mapped[str] = mapped_column(sa.String(100), comment="操作人")
    action: Mapped[str] = mapped_column(sa.String(32), comment="操作：override_set 设置修正 / override_revoke 撤销修正")
    library: Mapped[str] = mapped_column(sa.String(32), comment="基础库")
    entity_key: Mapped[str] = mapped_column(sa.String(200), comment="主体键")
    field: Mapped[str | None] = mapped_column(sa.String(64), comment="字段")
    detail: Mapped[dict[str, Any] | None] = mapped_column(comment="详情（JSON；不含明文个人信息）")
    prev_hash: Mapped[str] = mapped_column(sa.String(64), comment="上一条的哈希（首条为 64 个 0）")
    entry_hash: Mapped[str] = mapped_column(sa.String(64), comment="本条哈希：SHA-256(上一条哈希 + 本条规范内容)")


class LinkageDecision(Base):
    """Record-linkage decision for a source record without a reliable key: which subject it is, how sure, who decided."""

    __tablename__ = "linkage_decision"
    __table_args__ = (
        sa.UniqueConstraint("library", "source_id", "source_key"),
        sa.Index(None, "library", "status"),
        sa.CheckConstraint(_in("status", LINKAGE_STATUSES), name="status"),
        {"comment": "记录关联判定：无可靠主键的源记录对应哪个主体、相似度与人工复核结果"},
    )

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True, comment="自增主键")
    library: Mapped[str] = mapped_column(sa.String(32), comment="基础库")
    source_id: Mapped[str] = mapped_column(sa.String(64), comment="来源标识")
    run_id: Mapped[str] = mapped_column(sa.String(128), comment="采集批次标识")
    source_key: Mapped[str] = mapped_column(sa.String(512), comment="源记录主键")
    candidate_key: Mapped[str | None] = mapped_column(sa.String(200), comment="候选主体键")
    score: Mapped[float | None] = mapped_column(sa.Float, comment="相似度得分")
    components: Mapped[dict[str, Any] | None] = mapped_column(comment="各比对项得分（JSON）")
    status: Mapped[str] = mapped_column(
        sa.String(16), comment="状态：linked 自动关联 / review 待复核 / no_match 无匹配 / confirmed 已确认 / rejected 已否决"
    )
    decided_by: Mapped[str | None] = mapped_column(sa.String(100), comment="复核人")
    decided_at: Mapped[datetime | None] = mapped_column(comment="复核时间（UTC）")
    created_at: Mapped[datetime] = mapped_column(comment="创建时间（UTC）")


# ---------------------------------------------------------------------------------------------
# E-licences: departments' signing keys, life-cycle events, expiry reminders (licences/)
# ---------------------------------------------------------------------------------------------

LICENCE_EVENT_TYPES: tuple[str, ...] = ("revoke", "cancel", "renew", "expire")
REMINDER_STATUSES: tuple[str, ...] = ("pending", "sent", "superseded")


class LicenceSigningKey(Base):
    """One signing key of an issuing department (or the hub's presentation key); old keys stay for verification."""

    __tablename__ = "licence_signing_key"
    __table_args__ = (
        sa.Index(None, "department_code", "retired_at"),
        {"comment": "电子证照签章密钥：各颁发部门的签名密钥（私钥加密存储，轮换后旧公钥保留用于验章）"},
    )

    key_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True, comment="密钥标识（JWK 指纹，RFC 7638）")
    department_code: Mapped[str] = mapped_column(
        sa.String(32), comment="部门代码（颁发机构统一社会信用代码；枢纽亮证密钥为 HUB-PRESENTATION）"
    )
    algorithm: Mapped[str] = mapped_column(sa.String(32), comment="签名算法标识（Ed25519；可扩展 ECDSA-P256-SHA256、SM2-SM3）")
    public_key: Mapped[bytes] = mapped_column(sa.LargeBinary, comment="公钥（原始字节）")
    private_key_enc: Mapped[bytes | None] = mapped_column(
        sa.LargeBinary, comment="私钥密文（AES-GCM，密钥环数据密钥加密；仅登记公钥的外部签章部门为空）"
    )
    created_at: Mapped[datetime] = mapped_column(comment="创建时间（UTC）")
    retired_at: Mapped[datetime | None] = mapped_column(comment="停用时间（UTC；停用后只用于验章）")


class LicenceEvent(Base):
    """One life-cycle event of a licence: revocation, cancellation, renewal or expiry, with reason and actor."""

    __tablename__ = "licence_event"
    __table_args__ = (
        sa.Index(None, "licence_id"),
        sa.CheckConstraint(_in("event_type", LICENCE_EVENT_TYPES), name="event_type"),
        {"comment": "证照生命周期事件：吊销、注销、换发、过期"},
    )

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True, comment="自增主键")
    licence_id: Mapped[str] = mapped_column(sa.String(200), comment="证照标识")
    event_type: Mapped[str] = mapped_column(
        sa.String(16), comment="事件类型：revoke 吊销 / cancel 注销 / renew 换发 / expire 过期"
    )
    reason: Mapped[str | None] = mapped_column(sa.Text, comment="原因")
    actor: Mapped[str] = mapped_column(sa.String(100), comment="操作人（部门人员或 system 系统）")
    at: Mapped[datetime] = mapped_column(comment="时间（UTC）")
    old_status: Mapped[str | None] = mapped_column(sa.String(16), comment="原证照状态")
    new_status: Mapped[str | None] = mapped_column(sa.String(16), comment="新证照状态")
    related_licence_id: Mapped[str | None] = mapped_column(sa.String(200), comment="关联证照标识（换发的新证）")
    credit_record_id: Mapped[str | None] = mapped_column(sa.String(128), comment="吊销写入的信用记录标识")


class LicenceReminder(Base):
    """Outbox of expiry reminders to holders: one row per (licence, threshold), so a rerun never reminds twice."""

    __tablename__ = "licence_reminder"
    __table_args__ = (
        sa.UniqueConstraint("licence_id", "threshold_days"),
        sa.Index(None, "status"),
        sa.CheckConstraint(_in("status", REMINDER_STATUSES), name="status"),
        {"comment": "证照到期提醒发件箱：每个证照每个提前天数一行（重跑不重复提醒）"},
    )

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True, comment="自增主键")
    licence_id: Mapped[str] = mapped_column(sa.String(200), comment="证照标识")
    threshold_days: Mapped[int] = mapped_column(sa.Integer, comment="提前天数（90、30、7）")
    due_date: Mapped[date] = mapped_column(sa.Date, comment="有效期截止日期")
    channel: Mapped[str] = mapped_column(sa.String(32), comment="发送渠道")
    status: Mapped[str] = mapped_column(
        sa.String(16), comment="状态：pending 待发送 / sent 已发送 / superseded 已被更近的提醒取代（不发送）"
    )
    created_at: Mapped[datetime] = mapped_column(comment="生成时间（UTC）")
    sent_at: Mapped[datetime | None] = mapped_column(comment="发送时间（UTC）")


# ---------------------------------------------------------------------------------------------
# Sharing catalogue, access and audit: consumers, API keys, requests, grants, audit chains (catalog/)
# ---------------------------------------------------------------------------------------------

REQUEST_STATUSES: tuple[str, ...] = ("pending", "approved", "refused", "withdrawn")
AUDIT_OUTCOMES: tuple[str, ...] = ("allowed", "refused", "error")


class CatalogConsumer(Base):
    """A department that consumes shared resources through the exchange (a 使用方)."""

    __tablename__ = "catalog_consumer"
    __table_args__ = ({"comment": "共享使用方：使用共享资源的部门"},)

    code: Mapped[str] = mapped_column(sa.String(32), primary_key=True, comment="部门代码（departments 代码表）")
    name: Mapped[str] = mapped_column(sa.String(100), comment="部门名称")
    created_at: Mapped[datetime] = mapped_column(comment="登记时间（UTC）")
    disabled_at: Mapped[datetime | None] = mapped_column(comment="停用时间（UTC；空为在用）")


class CatalogApiKey(Base):
    """One API key of a consumer: only a SHA-256 of the secret is kept; the key is shown once at issue."""

    __tablename__ = "catalog_api_key"
    __table_args__ = (
        sa.Index(None, "consumer_code"),
        {"comment": "接口密钥：只保存密钥的 SHA-256 摘要，明文仅在签发时显示一次"},
    )

    key_id: Mapped[str] = mapped_column(sa.String(32), primary_key=True, comment="密钥标识（密钥前缀，可公开）")
    consumer_code: Mapped[str] = mapped_column(sa.ForeignKey("catalog_consumer.code"), comment="使用方部门代码")
    secret_hash: Mapped[str] = mapped_column(sa.String(64), comment="密钥的 SHA-256 摘要（十六进制）")
    label: Mapped[str | None] = mapped_column(sa.String(200), comment="用途说明")
    created_at: Mapped[datetime] = mapped_column(comment="签发时间（UTC）")
    revoked_at: Mapped[datetime | None] = mapped_column(comment="吊销时间（UTC；空为有效）")


class CatalogRequest(Base):
    """A consumer's application for a conditional resource, answered by the provider before its deadline."""

    __tablename__ = "catalog_request"
    __table_args__ = (
        sa.Index(None, "resource_code", "status"),
        sa.Index(None, "consumer_code"),
        sa.CheckConstraint(_in("status", REQUEST_STATUSES), name="status"),
        {"comment": "共享申请：使用方对有条件共享资源的申请及提供方答复（需求清单来源）"},
    )

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True, comment="申请编号")
    consumer_code: Mapped[str] = mapped_column(sa.ForeignKey("catalog_consumer.code"), comment="使用方部门代码")
    resource_code: Mapped[str] = mapped_column(sa.String(64), comment="资源代码")
    fields: Mapped[dict[str, Any]] = mapped_column(comment="申请的信息项（JSON 列表）")
    purpose_codes: Mapped[dict[str, Any]] = mapped_column(comment="用途代码（JSON 列表）")
    purpose: Mapped[str] = mapped_column(sa.Text, comment="用途说明（依据的事项、法规）")
    verification_only: Mapped[bool] = mapped_column(sa.Boolean, server_default=sa.false(), comment="是否仅核验（只回答是否一致，不返回值）")
    requested_by: Mapped[str] = mapped_column(sa.String(100), comment="申请人")
    requested_at: Mapped[datetime] = mapped_column(comment="申请时间（UTC）")
    deadline: Mapped[date] = mapped_column(sa.Date, comment="答复期限（工作日计算，跳过周末）")
    status: Mapped[str] = mapped_column(sa.String(16), comment="状态：pending 待答复 / approved 已同意 / refused 已拒绝 / withdrawn 已撤回")
    decided_by: Mapped[str | None] = mapped_column(sa.String(100), comment="答复人（提供方）")
    decided_at: Mapped[datetime | None] = mapped_column(comment="答复时间（UTC）")
    reason: Mapped[str | None] = mapped_column(sa.Text, comment="答复理由（拒绝时必填）")


class CatalogGrant(Base):
    """A consumer's right to some fields of one resource, for some purposes, until it expires or is revoked."""

    __tablename__ = "catalog_grant"
    __table_args__ = (
        sa.Index(None, "consumer_code", "resource_code"),
        {"comment": "共享授权：使用方对某资源部分信息项、限定用途与期限的使用权"},
    )

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True, comment="授权编号")
    consumer_code: Mapped[str] = mapped_column(sa.ForeignKey("catalog_consumer.code"), comment="使用方部门代码")
    resource_code: Mapped[str] = mapped_column(sa.String(64), comment="资源代码")
    fields: Mapped[dict[str, Any]] = mapped_column(comment="授权的信息项（JSON 列表）")
    purpose_codes: Mapped[dict[str, Any]] = mapped_column(comment="限定用途代码（JSON 列表）")
    verification_only: Mapped[bool] = mapped_column(sa.Boolean, server_default=sa.false(), comment="是否仅核验")
    request_id: Mapped[int | None] = mapped_column(sa.ForeignKey("catalog_request.id"), comment="来源申请编号")
    granted_by: Mapped[str] = mapped_column(sa.String(100), comment="批准人")
    granted_at: Mapped[datetime] = mapped_column(comment="授权时间（UTC）")
    expires_at: Mapped[datetime | None] = mapped_column(comment="到期时间（UTC；空为长期）")
    revoked_at: Mapped[datetime | None] = mapped_column(comment="撤销时间（UTC；空为有效）")
    revoked_by: Mapped[str | None] = mapped_column(sa.String(100), comment="撤销人")
    revoke_reason: Mapped[str | None] = mapped_column(sa.Text, comment="撤销理由")


class CatalogVersion(Base):
    """Version counters: bumped on every change to keys or grants, so each process knows when to reload its cache."""

    __tablename__ = "catalog_version"
    __table_args__ = ({"comment": "授权版本计数：密钥或授权变更时递增，各进程据此刷新缓存"},)

    name: Mapped[str] = mapped_column(sa.String(32), primary_key=True, comment="计数名（access）")
    version: Mapped[int] = mapped_column(sa.BigInteger, comment="版本号")


class AuditChain(Base):
    """One hash chain of the exchange audit log (one per writer process), with its durable head."""

    __tablename__ = "audit_chain"
    __table_args__ = ({"comment": "审计哈希链：每个写入进程一条链，记录链头（防尾部删除）"},)

    chain_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True, comment="链标识")
    writer: Mapped[str] = mapped_column(sa.String(200), comment="写入进程（主机:进程号）")
    created_at: Mapped[datetime] = mapped_column(comment="创建时间（UTC）")
    head_seq: Mapped[int] = mapped_column(sa.BigInteger, comment="链头序号（0 为空链）")
    head_hash: Mapped[str] = mapped_column(sa.String(64), comment="链头哈希")


class AuditEntry(Base):
    """One exchange call, allowed or refused: who, why, about whom (HMAC only), which fields, outcome; hash-chained."""

    __tablename__ = "audit_entry"
    __table_args__ = (
        sa.Index(None, "at"),
        sa.Index(None, "consumer_code", "resource_code", "at"),
        {"comment": "共享调用审计：每次调用一行（只追加，按链 SHA-256 哈希链接，主体只存 HMAC）"},
    )

    chain_id: Mapped[str] = mapped_column(sa.ForeignKey("audit_chain.chain_id"), primary_key=True, comment="链标识")
    seq: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True, autoincrement=False, comment="链内序号（从 1 递增）")
    at: Mapped[datetime] = mapped_column(comment="调用时间（UTC）")
    consumer_code: Mapped[str] = mapped_column(sa.String(32), comment="调用部门代码")
    user_id: Mapped[str] = mapped_column(sa.String(100), comment="经办人")
    purpose_code: Mapped[str | None] = mapped_column(sa.String(32), comment="用途代码")
    case_number: Mapped[str | None] = mapped_column(sa.String(100), comment="事项编码/办件编号")
    resource_code: Mapped[str | None] = mapped_column(sa.String(64), comment="资源代码")
    operation: Mapped[str] = mapped_column(sa.String(64), comment="操作（接口名）")
    subjects: Mapped[dict[str, Any]] = mapped_column(comment="涉及主体的 HMAC（JSON 列表，不含明文证件号）")
    fields: Mapped[dict[str, Any]] = mapped_column(comment="返回的信息项（JSON 列表）")
    outcome: Mapped[str] = mapped_column(sa.String(16), comment="结果：allowed 允许 / refused 拒绝 / error 出错")
    reason: Mapped[str | None] = mapped_column(sa.Text, comment="拒绝或出错原因")
    prev_hash: Mapped[str] = mapped_column(sa.String(64), comment="上一条的哈希（链首为 64 个 0）")
    entry_hash: Mapped[str] = mapped_column(sa.String(64), comment="本条哈希：SHA-256(上一条哈希 + 本条规范内容)")


class AuditSubject(Base):
    """Index from a subject's HMAC to the audit entries about it (for 谁查看了我的数据)."""

    __tablename__ = "audit_subject"
    __table_args__ = (
        sa.ForeignKeyConstraint(["chain_id", "seq"], ["audit_entry.chain_id", "audit_entry.seq"]),
        {"comment": "审计主体索引：主体 HMAC 到审计条目（用于本人查询谁查看了其数据）"},
    )

    subject_hash: Mapped[str] = mapped_column(sa.String(HMAC_HEX), primary_key=True, comment="主体 HMAC")
    chain_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True, comment="链标识")
    seq: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True, autoincrement=False, comment="链内序号")


class AuditCheckpoint(Base):
    """A signed statement of a chain's head at a time (Ed25519, hub audit key), so history cannot be rewritten silently."""

    __tablename__ = "audit_checkpoint"
    __table_args__ = (
        sa.UniqueConstraint("chain_id", "seq"),
        {"comment": "审计检查点：对链头（序号、哈希）的 Ed25519 签名"},
    )

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True, comment="自增主键")
    chain_id: Mapped[str] = mapped_column(sa.ForeignKey("audit_chain.chain_id"), comment="链标识")
    seq: Mapped[int] = mapped_column(sa.BigInteger, comment="覆盖到的序号")
    entry_hash: Mapped[str] = mapped_column(sa.String(64), comment="该序号条目的哈希")
    at: Mapped[datetime] = mapped_column(comment="签名时间（UTC）")
    key_id: Mapped[str] = mapped_column(sa.String(64), comment="签名密钥标识（licence_signing_key，所有者 HUB-AUDIT）")
    signature: Mapped[bytes] = mapped_column(sa.LargeBinary, comment="Ed25519 签名")


# ---------------------------------------------------------------------------------------------
# Open-data portal: download counts per dataset, version and file (opendata/portal.py)
# ---------------------------------------------------------------------------------------------


class OpenDataDownload(Base):
    """Download counter of one file of one open-data release, raised by a single UPSERT per download."""

    __tablename__ = "opendata_download"
    __table_args__ = ({"comment": "开放数据下载计数：每个数据集、版本、文件一行"},)

    dataset_id: Mapped[str] = mapped_column(sa.String(128), primary_key=True, comment="数据集标识")
    version: Mapped[str] = mapped_column(sa.String(64), primary_key=True, comment="版本标识")
    file_name: Mapped[str] = mapped_column(
        sa.String(255), primary_key=True, comment="文件名（发布目录内相对路径；整版打包下载为 release.zip）"
    )
    downloads: Mapped[int] = mapped_column(sa.BigInteger, comment="下载次数")
    last_at: Mapped[datetime] = mapped_column(comment="最近一次下载时间（UTC）")
