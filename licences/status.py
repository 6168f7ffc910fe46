"""Licence status codes (code table licence_status) and the short names verification reports."""

from __future__ import annotations

# Code table licence_status: 1 有效, 2 已注销, 3 已吊销, 4 已撤销, 5 已过期. Rows may hold the code or the label.
VALID, CANCELLED, REVOKED, WITHDRAWN, EXPIRED = "1", "2", "3", "4", "5"
SHORT_NAMES = {VALID: "有效", CANCELLED: "注销", REVOKED: "吊销", WITHDRAWN: "撤销", EXPIRED: "过期"}
_ALIASES = {
    "有效": VALID, "正常": VALID,
    "已注销": CANCELLED, "注销": CANCELLED,
    "已吊销": REVOKED, "吊销": REVOKED,
    "已撤销": WITHDRAWN, "撤销": WITHDRAWN,
    "已过期": EXPIRED, "过期": EXPIRED,
}
# Stored forms that mean "in force", for SQL filters (the merge may keep the code or the label).
VALID_FORMS: tuple[str, ...] = (VALID, "有效", "正常")


def status_code(value: str | None) -> str | None:
    """The code of a stored status (code or label); None when missing or unknown."""
    if value is None:
        return None
    text = str(value).strip()
    return text if text in SHORT_NAMES else _ALIASES.get(text)


def short_name(value: str | None) -> str:
    """有效 / 注销 / 吊销 / 撤销 / 过期, or 未知 for anything else."""
    return SHORT_NAMES.get(status_code(value) or "", "未知")
