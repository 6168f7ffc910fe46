"""The true credit records: 双公示 licensing and penalties, 经营异常名录, red/black lists, 失信被执行人."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from world import regions
from world.config import WorldConfig, rng_for
from world.persons import DAYS_PER_YEAR
from world.text import cat, const, num, take

PER_SCALE = {"xzcf": 55_000, "jyyc": 25_000, "hhmd": 15_000, "sxbzxr": 22_000}
LONG_TERM_DATE = np.datetime64("2099-12-31")  # 双公示: a licence without end date is published as 2099-12-31
SUBJECT_CATEGORY = {"person": "01", "enterprise": "02", "social": "02", "individual": "04"}

PENALTY_KINDS = ("警告", "罚款", "没收违法所得、没收非法财物", "责令停产停业", "暂扣或者吊销许可证、暂扣或者吊销执照", "行政拘留", "其他")
# dept → (share, [(违法行为类型, 违法事实, 处罚依据, 处罚类别 index)])
PENALTY_TEMPLATES: dict[str, tuple[float, tuple[tuple[str, str, str, int], ...]]] = {
    "scjg": (0.4, (
        ("销售不符合食品安全标准的食品", "当事人销售的食品经抽样检验不合格", "《中华人民共和国食品安全法》第一百二十四条", 1),
        ("虚假宣传", "当事人在经营活动中对商品作虚假或者引人误解的商业宣传", "《中华人民共和国反不正当竞争法》第二十条", 1),
        ("未按规定公示年度报告", "当事人未按规定期限公示年度报告", "《企业信息公示暂行条例》第十七条", 0),
        ("销售侵犯注册商标专用权的商品", "当事人销售侵犯他人注册商标专用权的商品", "《中华人民共和国商标法》第六十条", 2),
    )),
    "shuiwu": (0.25, (
        ("未按期申报", "当事人未按照规定期限办理纳税申报和报送纳税资料", "《中华人民共和国税收征收管理法》第六十二条", 1),
        ("未按规定开具发票", "当事人未按照规定开具发票", "《中华人民共和国发票管理办法》第三十五条", 1),
    )),
    "sthj": (0.15, (
        ("超标排放污染物", "当事人排放的大气污染物超过国家规定的排放标准", "《中华人民共和国大气污染防治法》第九十九条", 3),
        ("未批先建", "当事人建设项目环境影响评价文件未经批准擅自开工建设", "《中华人民共和国环境影响评价法》第三十一条", 1),
    )),
    "weijian": (0.1, (
        ("未取得医疗机构执业许可证擅自执业", "当事人未取得医疗机构执业许可证开展诊疗活动", "《医疗机构管理条例》第四十三条", 2),
        ("公共场所卫生不合格", "当事人未按规定对公共场所进行卫生检测", "《公共场所卫生管理条例》第十四条", 0),
    )),
    "zhujian": (0.1, (
        ("未取得施工许可证擅自施工", "当事人未取得施工许可证擅自施工", "《建设工程质量管理条例》第五十七条", 1),
        ("违反安全生产规定", "当事人施工现场未采取安全防护措施", "《建设工程安全生产管理条例》第六十二条", 3),
    )),
}
ABNORMAL_REASONS = (
    ("未依照《企业信息公示暂行条例》第八条规定的期限公示年度报告", "补报未报年份的年度报告并公示"),
    ("通过登记的住所或者经营场所无法联系", "依法办理住所或者经营场所变更登记"),
    ("未在市场监督管理部门依照《企业信息公示暂行条例》第十条规定责令的期限内公示有关企业信息", "补充公示有关企业信息"),
)
LISTS = (  # (名单类型, 名单名称, dept, 列入事由, 认定依据, 措施, years valid)
    ("红名单", "纳税信用A级纳税人", "shuiwu", "纳税信用评价为A级", "《纳税信用管理办法（试行）》", "提供绿色通道、增加发票领用量等激励措施", 1),
    ("红名单", "守合同重信用企业", "scjg", "连续两年公示守合同重信用", "《湖北省守合同重信用企业公示办法》", "在招投标、融资等方面优先支持", 2),
    ("黑名单", "重大税收违法失信主体", "shuiwu", "偷税、逃避追缴欠税等重大税收违法行为", "《重大税收违法失信主体信息公布管理办法》", "限制取得政府供应土地、限制融资授信等联合惩戒", 3),
    ("黑名单", "严重违法失信主体名单", "scjg", "被吊销营业执照后未依法办理注销登记等严重违法行为", "《市场监督管理严重违法失信名单管理办法》", "限制担任法定代表人、限制参加政府采购等惩戒措施", 3),
    ("黑名单", "拖欠农民工工资失信联合惩戒对象", "renshe", "拖欠农民工工资数额较大", "《拖欠农民工工资失信联合惩戒对象名单管理暂行办法》", "限制市场准入、限制高消费等联合惩戒", 3),
)
DISRUPT_TYPES = (
    "有履行能力而拒不履行生效法律文书确定义务", "违反财产报告制度", "违反限制消费令",
    "以伪造证据、暴力、威胁等方法妨碍、抗拒执行", "无正当理由拒不履行执行和解协议",
)


def build(cfg: WorldConfig, persons: pa.Table, entities: pa.Table, licences: pa.Table, depts: pa.Table) -> dict[str, pa.Table]:
    """Every credit table of the truth by key (xzxk, xzcf, jyyc, hhmd, sxbzxr)."""
    ctx = _Subjects(cfg, persons, entities, depts)
    return {
        "xzxk": _licensing(ctx, licences, rng_for(cfg.seed, "credit", "xzxk")),
        "xzcf": _penalties(ctx, rng_for(cfg.seed, "credit", "xzcf")),
        "jyyc": _distinct(_abnormal(ctx, rng_for(cfg.seed, "credit", "jyyc")), ("subject_ref", "列入日期"), "YC"),
        "hhmd": _distinct(_lists(ctx, rng_for(cfg.seed, "credit", "hhmd")), ("名单名称", "subject_ref", "列入日期"), "MD"),
        "sxbzxr": _court(ctx, rng_for(cfg.seed, "credit", "sxbzxr")),
    }


def _distinct(table: pa.Table, key: tuple[str, ...], prefix: str) -> pa.Table:
    """Drop rows whose natural key repeats an earlier row (chance collisions), then renumber 记录编号."""
    frame = table.select(list(key)).to_pandas()
    keep = np.flatnonzero(~frame.duplicated().to_numpy())
    table = table.take(pa.array(keep))
    return table.set_column(0, "记录编号", cat(prefix, num(np.arange(1, table.num_rows + 1), 10)))


class _Subjects:
    """Who credit records can be about, and the windows in which they can be."""

    def __init__(self, cfg: WorldConfig, persons: pa.Table, entities: pa.Table, depts: pa.Table) -> None:
        """Index persons, entities and departments."""
        self.cfg = cfg
        self.ref = cfg.ref
        self.p = {c: persons.column(c).combine_chunks() for c in persons.column_names}
        self.e = {c: entities.column(c).combine_chunks() for c in entities.column_names}
        self.depts = {c: depts.column(c).combine_chunks() for c in depts.column_names}
        self.dept_row = {k: i for i, k in enumerate(self.depts["dept_key"].to_pylist())}
        birth = self.p["birth_date"].to_numpy(zero_copy_only=False).astype("datetime64[D]")
        self.adult_from = birth + int(18 * DAYS_PER_YEAR) + 1
        self.alive = pc.is_null(self.p["death_date"]).to_numpy(zero_copy_only=False)
        self.kind = self.e["kind"].to_numpy(zero_copy_only=False)
        self.est = self.e["established"].to_numpy(zero_copy_only=False).astype("datetime64[D]")
        ended = self.e["status_date"].to_numpy(zero_copy_only=False).astype("datetime64[D]")
        self.until = np.where(np.isnat(ended), self.ref, ended)
        self.status = self.e["status"].to_numpy(zero_copy_only=False)

    def pick(self, rng: np.random.Generator, n: int, person_share: float, entity_mask: np.ndarray,
             min_years: float = 1.0) -> dict[str, np.ndarray]:
        """n subjects (persons and entities) with a window [low, high) for a record about them."""
        n_person = int(round(n * person_share))
        people = np.flatnonzero(self.alive & (self.adult_from < self.ref - int(min_years * 365)))
        ents = np.flatnonzero(entity_mask & (self.until - self.est > int(min_years * 365)))
        prow = people[rng.integers(0, len(people), n_person)]
        erow = ents[rng.integers(0, len(ents), n - n_person)]
        low = np.concatenate([self.adult_from[prow], self.est[erow] + 30])
        high = np.concatenate([np.full(n_person, self.ref), self.until[erow]])
        return {
            "kind": np.concatenate([np.full(n_person, "person", dtype=object), self.kind[erow].astype(object)]),
            "row": np.concatenate([prow, erow]),
            "ref": np.concatenate([prow, erow]) + 1,
            "low": low, "high": high,
        }

    def columns(self, s: dict[str, np.ndarray]) -> dict[str, pa.Array]:
        """Name, code, legal representative and category of picked subjects."""
        person = s["kind"] == "person"
        prow, erow = s["row"][person], s["row"][~person]
        order = np.argsort(np.r_[np.flatnonzero(person), np.flatnonzero(~person)], kind="stable")

        def merged(a: pa.Array, b: pa.Array) -> pa.Array:
            """Person values then entity values, put back in subject order."""
            return pa.concat_arrays([a, b]).take(pa.array(order))

        n_e = len(erow)
        ei, pi = pa.array(erow), pa.array(prow)
        nulls_p = pa.nulls(len(prow), pa.string())
        return {
            "name": merged(self.p["name"].take(pi), self.e["name"].take(ei)),
            "uscc": merged(nulls_p, self.e["uscc"].take(ei)),
            "id_number": merged(self.p["id_number"].take(pi), pa.nulls(n_e, pa.string())),
            "rep": merged(nulls_p, self.e["rep_name"].take(ei)),
            "category": pa.array([SUBJECT_CATEGORY[k] for k in s["kind"]], pa.string()),
            "region": merged(self.p["region"].take(pi), self.e["region"].take(ei)),
            "gender": merged(self.p["gender"].take(pi), pa.nulls(n_e, pa.string())),
        }


def _between(rng: np.random.Generator, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """A random day in [low, high)."""
    span = np.maximum((high - low).astype(np.int64), 1)
    return low + (rng.random(len(low)) * span).astype(np.int64).astype("timedelta64[D]")


def _dates(values: np.ndarray) -> pa.Array:
    """datetime64 days (NaT = null) as an arrow date column."""
    return pa.array(np.asarray(values, dtype="datetime64[D]"), pa.date32())


def _doc_numbers(prefix: pa.Array | str, year: np.ndarray, middle: str, serial: np.ndarray) -> pa.Array:
    """Document numbers like 武汉市江岸区市场监督管理局罚〔2023〕00012号."""
    return cat(prefix, middle, "〔", num(year, 4), "〕", num(serial, 5), "号")


def _year(days: np.ndarray) -> np.ndarray:
    """Calendar years of days."""
    return days.astype("datetime64[Y]").astype(int) + 1970


def _licensing(ctx: _Subjects, licences: pa.Table, rng: np.random.Generator) -> pa.Table:
    """行政许可 records of the licences issued in the last three years (registrations included)."""
    type_key = licences.column("type_key").to_numpy(zero_copy_only=False)
    issue = licences.column("issue_date").to_numpy().astype("datetime64[D]")
    valid_from = licences.column("valid_from").to_numpy().astype("datetime64[D]")
    # 双公示 keeps permits of the last three years and new registrations of the last eighteen months.
    recent = ctx.ref - int(3 * DAYS_PER_YEAR)
    registered = ctx.ref - int(1.5 * DAYS_PER_YEAR)
    rows = np.flatnonzero((np.isin(type_key, ["spjy", "yljg", "jzzz"]) & (issue >= recent))
                          | ((type_key == "yyzz") & (valid_from >= registered)))
    lic = licences.take(pa.array(rows))
    n = len(rows)
    tk = type_key[rows]
    ent = lic.column("holder_ref").to_numpy() - 1
    kind = ctx.kind[ent]
    decided = lic.column("issue_date").to_numpy().astype("datetime64[D]")
    valid_to = lic.column("valid_to").to_numpy(zero_copy_only=False).astype("datetime64[D]")
    valid_to = np.where(np.isnat(valid_to), LONG_TERM_DATE, valid_to)
    category = np.select([tk == "yyzz", tk == "jzzz"], ["登记", "认可"], "普通")
    doc_name = np.select([tk == "yyzz"], ["准予设立登记通知书"], "准予行政许可决定书")
    content = np.select([tk == "yyzz", tk == "spjy", tk == "yljg"],
                        ["设立登记", "食品经营许可", "医疗机构执业登记"], "建筑业企业资质核准")
    issuer_name = lic.column("issuer_name").combine_chunks()
    status = lic.column("status").to_numpy(zero_copy_only=False)
    return pa.table({
        "记录编号": cat("XK", num(np.arange(1, n + 1), 10)),
        "行政相对人名称": lic.column("holder_name").combine_chunks(),
        "行政相对人类别": pa.array([SUBJECT_CATEGORY[k] for k in kind], pa.string()),
        "统一社会信用代码": lic.column("holder_code").combine_chunks(),
        "法定代表人": ctx.e["rep_name"].take(pa.array(ent)),
        "证件类型": pa.nulls(n, pa.string()),
        "证件号码": pa.nulls(n, pa.string()),
        "许可决定文书名称": pa.array(doc_name.astype(object), pa.string()),
        "许可决定文书号": _doc_numbers(issuer_name, _year(decided), "许准字", np.arange(1, n + 1)),
        "许可类别": pa.array(category.astype(object), pa.string()),
        "许可证书名称": lic.column("type_name").combine_chunks(),
        "许可编号": lic.column("number").combine_chunks(),
        "许可内容": pa.array(content.astype(object), pa.string()),
        "许可决定日期": _dates(decided),
        "有效期自": lic.column("valid_from").combine_chunks(),
        "有效期至": _dates(valid_to),
        "许可机关": issuer_name,
        "许可机关代码": lic.column("issuer_code").combine_chunks(),
        "当前状态": pa.array(np.where(status == "有效", "1", "2").astype(object), pa.string()),
        "数据来源单位": issuer_name,
        "数据来源单位代码": lic.column("issuer_code").combine_chunks(),
        "dept": lic.column("dept").combine_chunks(),
        "subject_kind": const("entity", n),
        "subject_ref": lic.column("holder_ref").combine_chunks(),
        "licence_id": lic.column("licence_id").combine_chunks(),
    })


def _penalties(ctx: _Subjects, rng: np.random.Generator) -> pa.Table:
    """行政处罚 records of five departments, about firms (most) and people."""
    n = max(10, int(round(PER_SCALE["xzcf"] * ctx.cfg.scale)))
    depts = list(PENALTY_TEMPLATES)
    share = np.array([PENALTY_TEMPLATES[d][0] for d in depts])
    dept = np.array(depts, dtype=object)[rng.choice(len(depts), n, p=share / share.sum())]
    firms = np.isin(ctx.kind, ["enterprise", "individual"]) & (ctx.until >= ctx.ref - 4 * 365)
    s = ctx.pick(rng, n, 0.15, firms)
    cols = ctx.columns(s)
    decided = _between(rng, np.maximum(s["low"], ctx.ref - int(5 * DAYS_PER_YEAR)), s["high"])
    region = cols["region"].to_numpy(zero_copy_only=False).astype(str)
    dept_region = np.where(np.isin(dept, ["sthj"]), np.array([regions.city_of(r) or r for r in region]), region)
    dept_name, dept_code = _dept_columns(ctx, dept, dept_region)
    template_idx = np.array([rng.integers(0, len(PENALTY_TEMPLATES[d][1])) for d in dept])
    templates = [PENALTY_TEMPLATES[d][1][i] for d, i in zip(dept, template_idx)]
    kind_index = np.array([t[3] for t in templates])
    person = s["kind"] == "person"
    kind_index = np.where(person & (kind_index == 3), 1, kind_index)  # people are not ordered to stop production
    fine = np.where(kind_index == 1, np.round(rng.lognormal(0.0, 1.2, n), 4), 0.0)
    confiscated = np.where(kind_index == 2, np.round(rng.lognormal(-0.5, 1.0, n), 4), 0.0)
    content = np.where(kind_index == 1, np.char.add(np.char.add("罚款人民币", np.round(fine * 10000).astype(int).astype(str)), "元"),
                       np.array([PENALTY_KINDS[k] for k in kind_index]))
    public_until = decided + np.where(kind_index == 0, 90, np.where(kind_index == 1, 365, 3 * 365)).astype("timedelta64[D]")
    return pa.table({
        "记录编号": cat("CF", num(np.arange(1, n + 1), 10)),
        "行政相对人名称": cols["name"],
        "行政相对人类别": cols["category"],
        "统一社会信用代码": cols["uscc"],
        "法定代表人": cols["rep"],
        "证件类型": pc.if_else(pa.array(person), const("身份证", n), pa.nulls(n, pa.string())),
        "证件号码": cols["id_number"],
        "行政处罚决定书文号": _doc_numbers(dept_name, _year(decided), "罚", np.arange(1, n + 1)),
        "违法行为类型": pa.array([t[0] for t in templates], pa.string()),
        "违法事实": pa.array([t[1] for t in templates], pa.string()),
        "处罚依据": pa.array([t[2] for t in templates], pa.string()),
        "处罚类别": pa.array([PENALTY_KINDS[k] for k in kind_index], pa.string()),
        "处罚内容": pa.array(content.astype(object), pa.string()),
        "罚款金额(万元)": pa.array(fine, pa.float64()),
        "没收金额(万元)": pa.array(confiscated, pa.float64()),
        "处罚决定日期": _dates(decided),
        "处罚有效期": _dates(decided + 365),
        "公示截止期": _dates(public_until),
        "处罚机关": dept_name,
        "处罚机关代码": dept_code,
        "数据来源单位": dept_name,
        "数据来源单位代码": dept_code,
        "dept": pa.array(dept, pa.string()),
        "subject_kind": pa.array(np.where(person, "person", "entity").astype(object), pa.string()),
        "subject_ref": pa.array(s["ref"], pa.int64()),
    })


def _dept_columns(ctx: _Subjects, kinds: np.ndarray, region_codes: np.ndarray) -> tuple[pa.Array, pa.Array]:
    """Names and USCCs of the (kind, region) departments, row by row."""
    rows = pa.array([ctx.dept_row[f"{k}/{r}"] for k, r in zip(kinds, region_codes)], pa.int64())
    return ctx.depts["name"].take(rows), ctx.depts["uscc"].take(rows)


def _abnormal(ctx: _Subjects, rng: np.random.Generator) -> pa.Table:
    """经营异常名录 entries of enterprises (about half removed later)."""
    n = max(10, int(round(PER_SCALE["jyyc"] * ctx.cfg.scale)))
    s = ctx.pick(rng, n, 0.0, ctx.kind == "enterprise", min_years=1.5)
    cols = ctx.columns(s)
    listed = _between(rng, s["low"] + 365, s["high"] - 60)
    removed_flag = rng.random(n) < 0.5
    removed = _between(rng, listed + 30, np.maximum(s["high"], listed + 31))
    removed_flag &= removed < s["high"]
    reason = rng.integers(0, len(ABNORMAL_REASONS), n)
    registry = ctx.e["registry_name"].take(pa.array(s["row"]))
    nulls = pa.nulls(n, pa.string())
    flag = pa.array(removed_flag)
    return pa.table({
        "记录编号": cat("YC", num(np.arange(1, n + 1), 10)),
        "企业名称": cols["name"],
        "统一社会信用代码": cols["uscc"],
        "法定代表人": cols["rep"],
        "列入经营异常名录原因": take([r[0] for r in ABNORMAL_REASONS], reason),
        "列入日期": _dates(listed),
        "列入决定机关": registry,
        "移出经营异常名录原因": pc.if_else(flag, take([r[1] for r in ABNORMAL_REASONS], reason), nulls),
        "移出日期": _dates(np.where(removed_flag, removed, np.datetime64("NaT"))),
        "移出决定机关": pc.if_else(flag, registry, nulls),
        "dept": const("scjg", n),
        "subject_kind": const("entity", n),
        "subject_ref": pa.array(s["ref"], pa.int64()),
    })


def _lists(ctx: _Subjects, rng: np.random.Generator) -> pa.Table:
    """红名单/黑名单 entries kept by tax, market regulation and human resources."""
    n = max(10, int(round(PER_SCALE["hhmd"] * ctx.cfg.scale)))
    which = rng.choice(len(LISTS), n, p=[0.4, 0.15, 0.15, 0.15, 0.15])
    red = np.array([LISTS[i][0] == "红名单" for i in which])
    active_firms = np.isin(ctx.kind, ["enterprise"]) & np.isin(ctx.status, ["存续", "在业"])
    s = ctx.pick(rng, n, 0.0, active_firms, min_years=2)
    cols = ctx.columns(s)
    listed = _between(rng, np.maximum(s["low"] + 365, ctx.ref - 5 * 365), s["high"])
    years = np.array([LISTS[i][6] for i in which])
    valid_to = listed + (years * 365).astype("timedelta64[D]")
    removed = (~red) & (rng.random(n) < 0.2) & (valid_to < ctx.ref)
    dept = np.array([LISTS[i][2] for i in which], dtype=object)
    dept_name, dept_code = _dept_columns(ctx, dept, np.full(n, "420000"))
    return pa.table({
        "记录编号": cat("MD", num(np.arange(1, n + 1), 10)),
        "名单类型": pa.array([LISTS[i][0] for i in which], pa.string()),
        "名单名称": pa.array([LISTS[i][1] for i in which], pa.string()),
        "主体名称": cols["name"],
        "统一社会信用代码": cols["uscc"],
        "法定代表人": cols["rep"],
        "列入事由": pa.array([LISTS[i][3] for i in which], pa.string()),
        "认定依据": pa.array([LISTS[i][4] for i in which], pa.string()),
        "认定部门": dept_name,
        "认定部门代码": dept_code,
        "列入日期": _dates(listed),
        "有效期至": _dates(valid_to),
        "移出日期": _dates(np.where(removed, valid_to, np.datetime64("NaT"))),
        "惩戒或激励措施": pa.array([LISTS[i][5] for i in which], pa.string()),
        "dept": pa.array(dept, pa.string()),
        "subject_kind": const("entity", n),
        "subject_ref": pa.array(s["ref"], pa.int64()),
    })


def _court(ctx: _Subjects, rng: np.random.Generator) -> pa.Table:
    """失信被执行人 published by the courts (people and businesses)."""
    n = max(10, int(round(PER_SCALE["sxbzxr"] * ctx.cfg.scale)))
    firms = np.isin(ctx.kind, ["enterprise", "individual"]) & (ctx.until >= ctx.ref - 4 * 365)
    s = ctx.pick(rng, n, 0.6, firms, min_years=2.5)
    cols = ctx.columns(s)
    person = s["kind"] == "person"
    region = cols["region"].to_numpy(zero_copy_only=False).astype(str)
    court_name, _ = _dept_columns(ctx, np.full(n, "court", dtype=object), region)
    # Publication first, then filing and judgment before it: every date stays inside the subject's life.
    published = _between(rng, np.maximum(s["low"] + 730, ctx.ref - int(6 * DAYS_PER_YEAR)), s["high"])
    filed = published - rng.integers(30, 300, n).astype("timedelta64[D]")
    judged = filed - rng.integers(30, 400, n).astype("timedelta64[D]")
    span = np.maximum((ctx.ref - published).astype(np.int64), 1) * 86400
    updated = published.astype("datetime64[s]") + (rng.random(n) * span).astype(np.int64).astype("timedelta64[s]")
    court_code = np.strings.slice(region.astype("U6"), 2, 6)
    serial = np.arange(1, n + 1)
    case = cat("(", num(_year(filed), 4), ")鄂", pa.array(court_code.astype(object)), "执", num(serial), "号")
    gist = cat("(", num(_year(judged), 4), ")鄂", pa.array(court_code.astype(object)), "民初", num(serial), "号")
    amount = np.round(rng.lognormal(10.5, 1.2, n)).astype(np.int64)
    duty = cat("被告", cols["name"], "于本判决生效之日起十日内偿还原告借款本金", num(amount), "元及利息。")
    gender = cols["gender"].to_numpy(zero_copy_only=False)
    sex = np.where(gender == "1", "男", np.where(gender == "2", "女", None))
    performance = np.where(rng.random(n) < 0.8, "全部未履行", "部分未履行")
    return pa.table({
        "id": pa.array(serial, pa.int64()),
        "iname": cols["name"],
        "cardNum": pc.if_else(pa.array(person), cols["id_number"], cols["uscc"]),
        "sexName": pa.array(sex, pa.string()),
        "businessEntity": cols["rep"],
        "courtName": court_name,
        "areaName": const("湖北", n),
        "gistId": gist,
        "regDate": _dates(filed),
        "caseCode": case,
        "gistUnit": court_name,
        "duty": duty,
        "performance": pa.array(performance.astype(object), pa.string()),
        "disruptTypeName": take(list(DISRUPT_TYPES), rng.integers(0, len(DISRUPT_TYPES), n)),
        "publishDate": _dates(published),
        "updatedAt": pa.array(updated, pa.timestamp("s")),
        "subject_kind": pa.array(np.where(person, "person", "entity").astype(object), pa.string()),
        "subject_ref": pa.array(s["ref"], pa.int64()),
    })

