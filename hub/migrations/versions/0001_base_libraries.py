"""Base libraries: collection runs, population, legal entities, e-licences, credit records.

Revision ID: 0001
Revises: (none)
Create Date: 2026-11-23

Runs on SQLite (batch mode) and PostgreSQL alike; never import hub.models here.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0001'
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _provenance() -> list[sa.Column]:
    """Bookkeeping columns of a base-library row (source, run, when the hub learnt it)."""
    return [
        sa.Column('source_id', sa.String(length=64), nullable=False, comment='来源标识（数据源登记中的 source_id）'),
        sa.Column('run_id', sa.String(length=128), nullable=False, comment='采集批次标识（run_id）'),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False, comment='枢纽获知时间（UTC，由采集批次给出，不取当前时间）'),
    ]


def upgrade() -> None:
    """Create the first tables of the hub database."""
    op.create_table(
        'source_run',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False, comment='自增主键'),
        sa.Column('source_id', sa.String(length=64), nullable=False, comment='来源标识'),
        sa.Column('run_id', sa.String(length=128), nullable=False, comment='采集批次标识'),
        sa.Column('status', sa.String(length=16), nullable=False, comment='状态：running 运行中 / succeeded 成功 / failed 失败'),
        sa.Column('started_at', sa.DateTime(timezone=True), nullable=False, comment='开始时间（UTC）'),
        sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True, comment='结束时间（UTC）'),
        sa.Column('rows_extracted', sa.BigInteger(), server_default='0', nullable=False, comment='抽取行数'),
        sa.Column('rows_loaded', sa.BigInteger(), server_default='0', nullable=False, comment='入库行数'),
        sa.Column('rows_rejected', sa.BigInteger(), server_default='0', nullable=False, comment='拒收（隔离）行数'),
        sa.Column('landing_path', sa.String(length=1024), nullable=True, comment='落地文件路径'),
        sa.Column('landing_sha256', sa.String(length=64), nullable=True, comment='落地文件 SHA-256'),
        sa.Column('watermark_from', sa.String(length=64), nullable=True, comment='增量水位起点（文本形式）'),
        sa.Column('watermark_to', sa.String(length=64), nullable=True, comment='增量水位终点（文本形式）'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_source_run')),
        sa.UniqueConstraint('source_id', 'run_id', name=op.f('uq_source_run_source_id_run_id')),
        comment='采集批次：每个数据源每次采集一行',
    )
    op.create_table(
        'person',
        sa.Column('person_id', sa.String(length=64), nullable=False, comment='人员标识：规范化18位公民身份号码的 HMAC-SHA256（十六进制）'),
        sa.Column('id_number_enc', sa.LargeBinary(), nullable=False, comment='公民身份号码密文（AES-GCM）'),
        sa.Column('id_number_masked', sa.String(length=18), nullable=False, comment='公民身份号码脱敏显示，如 110105********1234'),
        sa.Column('name', sa.String(length=100), nullable=False, comment='姓名'),
        sa.Column('gender', sa.String(length=1), nullable=True, comment='性别（GB/T 2261.1：0 未知 1 男 2 女 9 未说明）'),
        sa.Column('birth_date', sa.Date(), nullable=True, comment='出生日期'),
        sa.Column('ethnicity', sa.String(length=2), nullable=True, comment='民族（GB 3304 两位代码）'),
        sa.Column('region_code', sa.String(length=6), nullable=True, comment='户籍地行政区划代码（GB/T 2260）'),
        sa.Column('address_enc', sa.LargeBinary(), nullable=True, comment='住址密文（AES-GCM）'),
        sa.Column('phone_enc', sa.LargeBinary(), nullable=True, comment='联系电话密文（AES-GCM）'),
        sa.Column('marital_status', sa.String(length=2), nullable=True, comment='婚姻状况（GB/T 2261.2）'),
        sa.Column('death_date', sa.Date(), nullable=True, comment='死亡日期'),
        *_provenance(),
        sa.CheckConstraint("gender IN ('0', '1', '2', '9')", name=op.f('ck_person_gender')),
        sa.PrimaryKeyConstraint('person_id', name=op.f('pk_person')),
        comment='人口库：自然人基础信息（身份证号、住址、电话加密存储）',
    )
    op.create_index(op.f('ix_person_name_birth_date'), 'person', ['name', 'birth_date'])
    op.create_table(
        'legal_entity',
        sa.Column('uscc', sa.String(length=18), nullable=False, comment='统一社会信用代码（GB 32100）'),
        sa.Column('name', sa.String(length=200), nullable=False, comment='名称'),
        sa.Column('entity_kind', sa.String(length=32), nullable=False, comment='主体类别：enterprise 企业 / individual_business 个体工商户 / farmer_coop 农民专业合作社 / social_org 社会组织 / institution 事业单位 / government 机关 / other 其他'),
        sa.Column('entity_type', sa.String(length=64), nullable=True, comment='类型（如 有限责任公司）'),
        sa.Column('legal_rep_name', sa.String(length=100), nullable=True, comment='法定代表人（负责人）姓名'),
        sa.Column('legal_rep_person_id', sa.String(length=64), nullable=True, comment='法定代表人人员标识（身份证号 HMAC，关联人口库 person.person_id）'),
        sa.Column('legal_rep_id_enc', sa.LargeBinary(), nullable=True, comment='法定代表人证件号码密文（AES-GCM）'),
        sa.Column('registered_capital', sa.Numeric(precision=20, scale=6), nullable=True, comment='注册资本（万元）'),
        sa.Column('established_date', sa.Date(), nullable=True, comment='成立日期'),
        sa.Column('registration_authority', sa.String(length=200), nullable=True, comment='登记机关'),
        sa.Column('status', sa.String(length=32), nullable=True, comment='登记状态（存续、吊销、注销等）'),
        sa.Column('address', sa.String(length=500), nullable=True, comment='住所（依法公开，明文）'),
        sa.Column('region_code', sa.String(length=6), nullable=True, comment='住所行政区划代码（GB/T 2260）'),
        sa.Column('business_scope', sa.Text(), nullable=True, comment='经营范围'),
        *_provenance(),
        sa.PrimaryKeyConstraint('uscc', name=op.f('pk_legal_entity')),
        comment='法人库：法人和其他组织登记信息（登记事项依法公开，法定代表人身份证号加密）',
    )
    op.create_index(op.f('ix_legal_entity_legal_rep_person_id'), 'legal_entity', ['legal_rep_person_id'])
    op.create_index(op.f('ix_legal_entity_name'), 'legal_entity', ['name'])
    op.create_table(
        'licence',
        sa.Column('licence_id', sa.String(length=200), nullable=False, comment='证照标识（GB/T 36904）'),
        sa.Column('licence_name', sa.String(length=200), nullable=False, comment='证照名称'),
        sa.Column('licence_type_code', sa.String(length=32), nullable=False, comment='证照类型代码'),
        sa.Column('licence_number', sa.String(length=100), nullable=True, comment='证照编号'),
        sa.Column('issuer', sa.String(length=200), nullable=False, comment='颁发机构'),
        sa.Column('issuer_code', sa.String(length=18), nullable=False, comment='颁发机构代码（统一社会信用代码）'),
        sa.Column('issue_date', sa.Date(), nullable=True, comment='颁发日期'),
        sa.Column('holder_name', sa.String(length=200), nullable=False, comment='持证主体'),
        sa.Column('holder_code', sa.String(length=64), nullable=True, comment='持证主体代码（法人等为统一社会信用代码明文；自然人为空，见 holder_person_id）'),
        sa.Column('holder_person_id', sa.String(length=64), nullable=True, comment='自然人持证主体的人员标识（身份证号 HMAC）'),
        sa.Column('holder_code_enc', sa.LargeBinary(), nullable=True, comment='自然人持证主体证件号码密文（AES-GCM）'),
        sa.Column('holder_code_type', sa.String(length=3), nullable=False, comment='持证主体代码类型（111 公民身份号码，001 统一社会信用代码）'),
        sa.Column('valid_from', sa.Date(), nullable=True, comment='有效期起始日期'),
        sa.Column('valid_until', sa.Date(), nullable=True, comment='有效期截止日期（空为长期）'),
        sa.Column('status', sa.String(length=16), nullable=True, comment='证照状态'),
        sa.Column('face_content', sa.JSON(), nullable=True, comment='照面信息（JSON；自然人证照改存 face_content_enc）'),
        sa.Column('face_content_enc', sa.LargeBinary(), nullable=True, comment='自然人证照照面信息密文（JSON 文本经 AES-GCM 加密）'),
        sa.Column('related_licence_id', sa.String(length=200), nullable=True, comment='关联证照标识'),
        sa.Column('seal_signer', sa.String(length=200), nullable=True, comment='签章人'),
        sa.Column('seal_name', sa.String(length=200), nullable=True, comment='签章名称'),
        sa.Column('seal_algorithm', sa.String(length=32), nullable=True, comment='签章算法标识（如 Ed25519、ECDSA-P256-SHA256、SM2-SM3）'),
        sa.Column('seal_key_id', sa.String(length=64), nullable=True, comment='签章密钥标识'),
        sa.Column('seal_value', sa.LargeBinary(), nullable=True, comment='签章值'),
        sa.Column('sealed_at', sa.DateTime(timezone=True), nullable=True, comment='签章时间（UTC）'),
        *_provenance(),
        sa.CheckConstraint('holder_code IS NOT NULL OR holder_person_id IS NOT NULL', name=op.f('ck_licence_holder')),
        sa.PrimaryKeyConstraint('licence_id', name=op.f('pk_licence')),
        comment='电子证照库：证照元数据（GB/T 36903）、照面信息与签章',
    )
    op.create_index(op.f('ix_licence_holder_code'), 'licence', ['holder_code'])
    op.create_index(op.f('ix_licence_holder_person_id'), 'licence', ['holder_person_id'])
    op.create_index(op.f('ix_licence_licence_type_code_licence_number'), 'licence', ['licence_type_code', 'licence_number'])
    op.create_table(
        'credit_record',
        sa.Column('record_id', sa.String(length=128), nullable=False, comment='记录标识'),
        sa.Column('record_type', sa.String(length=16), nullable=False, comment='记录类型：行政许可/行政处罚/失信被执行人/经营异常名录/红名单/黑名单'),
        sa.Column('subject_name', sa.String(length=200), nullable=False, comment='行政相对人（主体）名称'),
        sa.Column('subject_kind', sa.String(length=2), nullable=False, comment='行政相对人类别：01 自然人 02 法人 03 非法人组织 04 个体工商户'),
        sa.Column('subject_code', sa.String(length=18), nullable=True, comment='主体代码（统一社会信用代码明文；自然人为空，见 subject_person_id）'),
        sa.Column('subject_person_id', sa.String(length=64), nullable=True, comment='自然人主体的人员标识（身份证号 HMAC）'),
        sa.Column('subject_id_enc', sa.LargeBinary(), nullable=True, comment='自然人主体证件号码密文（AES-GCM）'),
        sa.Column('decision_no', sa.String(length=200), nullable=True, comment='决定文书号（许可/处罚决定书文号、案号等）'),
        sa.Column('decision_date', sa.Date(), nullable=True, comment='决定日期（许可/处罚决定日期、列入日期等）'),
        sa.Column('authority', sa.String(length=200), nullable=True, comment='决定机关（许可机关、处罚机关、执行法院等）'),
        sa.Column('authority_code', sa.String(length=18), nullable=True, comment='决定机关代码（统一社会信用代码）'),
        sa.Column('content', sa.JSON(), nullable=True, comment='其余类型特有字段（JSON）'),
        sa.Column('valid_until', sa.Date(), nullable=True, comment='有效期至 / 公示截止期 / 移出日期'),
        sa.Column('status', sa.String(length=16), nullable=True, comment='当前状态（1 有效 2 无效 等）'),
        *_provenance(),
        sa.CheckConstraint("record_type IN ('行政许可', '行政处罚', '失信被执行人', '经营异常名录', '红名单', '黑名单')", name=op.f('ck_credit_record_record_type')),
        sa.CheckConstraint("subject_kind IN ('01', '02', '03', '04')", name=op.f('ck_credit_record_subject_kind')),
        sa.CheckConstraint('subject_code IS NOT NULL OR subject_person_id IS NOT NULL', name=op.f('ck_credit_record_subject')),
        sa.PrimaryKeyConstraint('record_id', name=op.f('pk_credit_record')),
        comment='信用库：双公示、失信被执行人、经营异常名录、红黑名单记录',
    )
    op.create_index(op.f('ix_credit_record_subject_code'), 'credit_record', ['subject_code'])
    op.create_index(op.f('ix_credit_record_subject_person_id'), 'credit_record', ['subject_person_id'])


def downgrade() -> None:
    """Drop them again (their indexes go with them)."""
    op.drop_table('credit_record')
    op.drop_table('licence')
    op.drop_table('legal_entity')
    op.drop_table('person')
    op.drop_table('source_run')
