"""Standard data elements of the four base libraries."""

from __future__ import annotations

import re

import pytest

from schemas import elements as el
from schemas.code_tables import load_table
from schemas.elements import LIBRARIES, ElementError, element, element_by_label, library_elements, library_title

GB_T_36903_LABELS = [
    "证照名称", "证照类型代码", "证照编号", "证照标识", "颁发机构", "颁发机构代码", "颁发日期", "持证主体", "持证主体代码",
    "持证主体代码类型", "有效期起始日期", "有效期截止日期", "证照状态", "签章人", "签章时间", "签章名称", "照面信息", "关联证照标识",
]

CREDIT_LABELS = {
    "common": ["行政相对人名称", "行政相对人类别", "法定代表人", "数据来源单位", "数据来源单位代码"],
    "admin_licence": ["许可决定文书名称", "许可决定文书号", "许可类别", "许可证书名称", "许可编号", "许可内容", "许可决定日期",
                      "有效期自", "有效期至", "许可机关", "许可机关代码", "当前状态"],
    "admin_penalty": ["行政处罚决定书文号", "违法行为类型", "违法事实", "处罚依据", "处罚类别", "处罚内容", "罚款金额(万元)",
                      "没收金额(万元)", "处罚决定日期", "处罚有效期", "公示截止期", "处罚机关", "处罚机关代码"],
    "dishonest_debtor": ["被执行人姓名/名称", "证件号码/组织机构代码", "执行法院", "省份", "执行依据文号", "立案时间", "案号",
                         "做出执行依据单位", "生效法律文书确定的义务", "履行情况", "失信行为具体情形", "发布时间"],
    "abnormal_operation": ["列入原因", "列入日期", "列入决定机关", "移出原因", "移出日期", "移出决定机关"],
    "red_black_list": ["列入事由", "认定依据", "认定部门", "列入日期", "有效期或移出日期", "惩戒/激励措施"],
}


@pytest.mark.parametrize("library", LIBRARIES)
def test_every_library_loads_with_well_formed_elements(library: str) -> None:
    elements = library_elements(library)
    assert len(elements) >= 15
    for item in elements:
        assert re.fullmatch(r"[a-z][a-z0-9_]*", item.name), item.name
        assert item.type in el.TYPES and item.sharing in el.SHARING_TYPES and 1 <= item.sensitivity <= 4
        assert item.label and item.library == library and item.group
        if item.type == "code":
            assert len(load_table(item.code_table)) > 0
        else:
            assert item.code_table is None
    assert library_title(library) in {"人口库", "法人库", "电子证照库", "信用库"}


def test_population_core_elements() -> None:
    resident_id = element("population", "resident_id")
    assert resident_id.label == "公民身份号码" and resident_id.required and resident_id.sensitivity == 4
    assert resident_id.identifier == "resident-id" and resident_id.sharing == "无条件共享"
    assert element_by_label("population", "性别").code_table == "gender"
    assert element_by_label("population", "民族").code_table == "ethnicity"
    assert element_by_label("population", "婚姻状况").code_table == "marital_status"
    assert element_by_label("population", "出生日期").type == "date"
    for label in ("联系电话", "户籍地址", "居住地址", "姓名"):
        assert element_by_label("population", label).sensitivity == 4


def test_legal_entity_core_elements() -> None:
    uscc = element_by_label("legal_entity", "统一社会信用代码")
    assert uscc.name == "uscc" and uscc.identifier == "uscc" and uscc.required and uscc.sensitivity == 1
    assert element_by_label("legal_entity", "登记状态").code_table == "enterprise_status"
    assert element_by_label("legal_entity", "注册资本（万元）").type == "decimal"
    assert element_by_label("legal_entity", "法定代表人证件号码").sensitivity == 4


def test_licence_library_has_all_gb_t_36903_metadata() -> None:
    labels = [item.label for item in library_elements("licence")]
    assert set(GB_T_36903_LABELS) <= set(labels)
    assert element_by_label("licence", "证照标识").identifier == "licence-id"
    assert element_by_label("licence", "持证主体代码类型").code_table == "holder_id_types"
    assert element_by_label("licence", "签章时间").type == "datetime"


@pytest.mark.parametrize("group, labels", CREDIT_LABELS.items())
def test_credit_library_has_every_record_field(group: str, labels: list[str]) -> None:
    for label in labels:
        assert element_by_label("credit", label, group=group).group == group


def test_credit_groups_follow_record_types() -> None:
    assert el.groups("credit") == list(CREDIT_LABELS)
    assert element_by_label("credit", "处罚类别").code_table == "penalty_categories"
    assert element_by_label("credit", "行政相对人类别").code_table == "subject_categories"
    assert element_by_label("credit", "证件号码").sensitivity == 4


def test_ambiguous_and_unknown_lookups() -> None:
    with pytest.raises(ElementError, match="group"):
        element_by_label("credit", "列入日期")
    with pytest.raises(ElementError):
        element_by_label("credit", "不存在")
    with pytest.raises(ElementError):
        element("population", "nope")
    with pytest.raises(ElementError):
        library_elements("tax")


def test_names_unique_within_each_library_and_all_elements() -> None:
    for library in LIBRARIES:
        names = [item.name for item in library_elements(library)]
        assert len(names) == len(set(names))
    assert len(el.all_elements()) == sum(len(library_elements(library)) for library in LIBRARIES)
    assert library_elements("credit", group="admin_penalty")[0].group == "admin_penalty"


def test_code_table_of() -> None:
    assert el.code_table_of(element("population", "gender")).label("1") == "男"
    with pytest.raises(LookupError):
        el.code_table_of(element("population", "name"))


def test_malformed_rows_are_rejected() -> None:
    good = {"name": "x", "type": "string", "label": "甲", "required": "true", "sensitivity": "1", "sharing": "无条件共享",
            "code_table": "", "identifier": "", "group": "g", "description": ""}
    assert el._element("population", good, 2).name == "x"
    for change in ({"type": "text"}, {"sharing": "共享"}, {"sensitivity": "5"}, {"required": "yes"},
                   {"type": "code"}, {"code_table": "gender"}, {"type": "code", "code_table": "nope"}, {"identifier": "passport"}):
        with pytest.raises(ElementError):
            el._element("population", {**good, **change}, 2)
