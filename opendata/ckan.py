"""A read-only subset of CKAN's Action API over the open-data releases, so CKAN clients (ckanapi, harvesters) work.

CKAN 兼容接口（只读）：package_list、package_search、package_show、resource_show、organization_list、
group_list、status_show、help_show，位于 /api/3/action/ 与 /api/action/。

Mapping: a dataset is a CKAN package (name = dataset id), its provider the organization, its theme a
group, its keywords tags, and each file of its latest release a resource (id: a UUID derived from
dataset, version and file name). Responses use CKAN's envelope {"help", "success", "result"}; errors use
CKAN's shapes: 404 Not Found Error, 409 Validation Error / Search Query Error, 400 Bad Request.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from opendata.portal import (
    ALWAYS_SERVED,
    FILE_TITLES,
    PREFIX,
    PortalConfig,
    facet_values,
    format_label,
    latest_created,
    media_type,
    search,
)

if TYPE_CHECKING:
    from opendata.portal import DownloadCounter, Releases

CKAN_VERSION = "2.10.0"  # the API generation these responses follow
MAX_ROWS = 1000  # CKAN's ckan.search.rows_max default
RESOURCE_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "gov-data-hub:opendata")
# CKAN search field → portal facet.
FIELD_FACETS: dict[str, str] = {
    "organization": "provider",
    "owner_org": "provider",
    "groups": "theme",
    "theme": "theme",
    "tags": "tags",
    "res_format": "format",
    "update_frequency": "frequency",
    "open_attribute": "open_attribute",
}
ID_FIELDS = ("name", "id")
SORT_FIELDS = {"score", "metadata_modified", "metadata_created", "name", "title_string", "title"}
FQ_TERM = re.compile(r'(?P<neg>[-+]?)(?P<field>[A-Za-z_.]+):(?P<value>"(?:[^"\\]|\\.)*"|\S+)')


class ActionError(Exception):
    """An action failure rendered in CKAN's error shape."""

    def __init__(self, status: int, kind: str, message: str | None = None, **details: Any) -> None:
        """status: HTTP status; kind: CKAN's __type; details: Validation Error's field messages."""
        super().__init__(message or kind)
        self.status, self.kind, self.message, self.details = status, kind, message, details

    def error(self) -> dict[str, Any]:
        """The `error` member of the envelope."""
        body: dict[str, Any] = {"__type": self.kind}
        if self.message is not None:
            body["message"] = self.message
        body.update(self.details)
        return body


def not_found(what: str) -> ActionError:
    """CKAN's 404 (ckanapi raises NotFound)."""
    return ActionError(404, "Not Found Error", f"Not found: {what}")


def missing(field: str) -> ActionError:
    """CKAN's 409 for a missing parameter (ckanapi raises ValidationError)."""
    return ActionError(409, "Validation Error", None, **{field: ["Missing value 缺少参数"]})


def resource_id(dataset_id: str, version: str, name: str) -> str:
    """The stable resource id of one file of one release."""
    return str(uuid.uuid5(RESOURCE_NAMESPACE, f"{dataset_id}/{version}/{name}"))


class CkanActions:
    """The read-only actions, over the portal's release reader and download counter."""

    def __init__(self, releases: Releases, counter: DownloadCounter, config: PortalConfig) -> None:
        """Keep the reader, the counter and the site settings."""
        self.releases, self.counter, self.config = releases, counter, config

    # --- dictionaries ---------------------------------------------------------------------------------

    def organization(self, item: dict[str, Any]) -> dict[str, Any]:
        """The provider as a CKAN organization."""
        code = str(item.get("provider_code") or "")
        title = str(item.get("provider_name") or code)
        return {"id": code, "name": code, "title": title, "display_name": title, "type": "organization",
                "is_organization": True, "state": "active", "approval_status": "approved", "description": "", "image_url": ""}

    def resource(self, base_url: str, item: dict[str, Any], version: str, entry: dict[str, Any], position: int,
                 counts: dict[tuple[str, str, str], int]) -> dict[str, Any]:
        """One release file as a CKAN resource."""
        name = entry["name"]
        created = str((self.releases.manifest(item["id"], version) or {}).get("created_at") or "")
        return {
            "id": resource_id(item["id"], version, name),
            "package_id": item["id"],
            "name": name,
            "description": FILE_TITLES.get(name, "与上一版本的差异" if name.startswith("diff/") else name),
            "url": f"{base_url}{PREFIX}/datasets/{quote(item['id'])}/{quote(version)}/files/{quote(name)}",
            "format": format_label(name),
            "mimetype": media_type(name, entry.get("media_type")).split(";")[0],
            "size": entry.get("bytes"),
            "hash": entry.get("sha256"),
            "hash_algorithm": "sha256",
            "created": created,
            "last_modified": created,
            "metadata_modified": created,
            "position": position,
            "state": "active",
            "url_type": None,
            "resource_type": "file",
            "version": version,
            "downloads": counts.get((item["id"], version, name), 0),
        }

    def package(self, base_url: str, item: dict[str, Any], counts: dict[tuple[str, str, str], int]) -> dict[str, Any]:
        """A dataset as a CKAN package dict (resources are the files of its latest release)."""
        version = self.releases.resolve_version(item["id"]) or str(item.get("latest_version") or "")
        entries = list(self.releases.files(item["id"], version)) if version else []
        entries += [self.releases.file_entry(item["id"], version, n) or {} for n in ALWAYS_SERVED] if version else []
        resources = [self.resource(base_url, item, version, e, i, counts) for i, e in enumerate(x for x in entries if x)]
        versions = item.get("versions") or []
        tags = [{"name": k, "display_name": k, "state": "active", "vocabulary_id": None} for k in item.get("keywords") or []]
        groups = [{"name": item["theme"], "title": item["theme"], "display_name": item["theme"]}] if item.get("theme") else []
        extras = {
            "resource_code": item.get("resource_code"),
            "theme": item.get("theme"),
            "update_frequency": item.get("update_frequency"),
            "open_attribute": item.get("open_attribute"),
            "versions": json.dumps([{k: v.get(k) for k in ("version", "created_at", "rows")} for v in versions], ensure_ascii=False),
        }
        organization = self.organization(item)
        return {
            "id": item["id"],
            "name": item["id"],
            "title": item.get("title") or item["id"],
            "notes": item.get("description") or "",
            "type": "dataset",
            "state": "active",
            "private": False,
            "isopen": True,
            "version": version,
            "url": f"{base_url}{PREFIX}/datasets/{quote(item['id'])}",
            "license_id": "notspecified",
            "license_title": str(item.get("open_attribute") or "开放"),
            "owner_org": organization["id"],
            "organization": organization,
            "author": organization["title"],
            "maintainer": organization["title"],
            "tags": tags,
            "num_tags": len(tags),
            "groups": groups,
            "resources": resources,
            "num_resources": len(resources),
            "metadata_created": str(versions[0].get("created_at") or "") if versions else "",
            "metadata_modified": latest_created(item),
            "extras": [{"key": k, "value": "" if v is None else str(v)} for k, v in extras.items()],
        }

    # --- actions ----------------------------------------------------------------------------------------

    def package_list(self, base_url: str, data: dict[str, Any]) -> list[str]:
        """Names of every dataset (limit, offset)."""
        names = sorted(item["id"] for item in self.releases.datasets())
        offset = _integer(data, "offset", 0)
        limit = _integer(data, "limit", len(names))
        return names[offset: offset + limit]

    def package_show(self, base_url: str, data: dict[str, Any]) -> dict[str, Any]:
        """One dataset by id or name."""
        key = data.get("id") or data.get("name_or_id") or data.get("name")
        if not key:
            raise missing("id")
        item = self.releases.dataset(str(key))
        if item is None:
            raise not_found(f"数据集不存在 {key}")
        return self.package(base_url, item, self.counter.counts(item["id"]))

    def resource_show(self, base_url: str, data: dict[str, Any]) -> dict[str, Any]:
        """One file of a dataset's latest release, by resource id."""
        key = str(data.get("id") or "")
        if not key:
            raise missing("id")
        for item in self.releases.datasets():
            version = self.releases.resolve_version(item["id"])
            if version is None:
                continue
            names = [f["name"] for f in self.releases.files(item["id"], version)] + list(ALWAYS_SERVED)
            if any(resource_id(item["id"], version, n) == key for n in names):
                package = self.package(base_url, item, self.counter.counts(item["id"]))
                return next(r for r in package["resources"] if r["id"] == key)
        raise not_found(f"资源不存在 {key}")

    def package_search(self, base_url: str, data: dict[str, Any]) -> dict[str, Any]:
        """Text query (q) and filters (fq, fq_list), paging (rows, start), sort and facets (facet.field)."""
        rows = _integer(data, "rows", 10)
        start = _integer(data, "start", 0)
        if rows > MAX_ROWS:
            raise ActionError(409, "Validation Error", None, rows=[f"Must be less than or equal to {MAX_ROWS}"])
        text, filters, negative = _parse_query(str(data.get("q") or ""))
        fq = [str(data.get("fq") or "")] + [str(f) for f in _as_list(data.get("fq_list"))]
        for part in fq:
            _, more, more_negative = _parse_query(part, free_text=False)
            for facet, values in more.items():
                filters.setdefault(facet, []).extend(values)
            for facet, values in more_negative.items():
                negative.setdefault(facet, []).extend(values)
        hits = self._filtered(text, filters, negative)
        hits = _sorted(hits, str(data.get("sort") or ("score desc, metadata_modified desc" if text else "metadata_modified desc")))
        counts = self.counter.counts()
        results = [self.package(base_url, item, counts) for _, item in hits[start: start + rows]]
        facets, search_facets = self._facets(data, [item for _, item in hits])
        return {"count": len(hits), "results": results, "facets": facets, "search_facets": search_facets,
                "sort": str(data.get("sort") or "score desc, metadata_modified desc")}

    def _filtered(self, text: str, filters: dict[str, list[str]], negative: dict[str, list[str]]) -> list[tuple[float, dict[str, Any]]]:
        """Search hits with CKAN's AND-of-filters semantics (each value must be present) and exclusions."""
        hits = search(self.releases.datasets(), text)
        kept = []
        for score, item in hits:
            def has(facet: str, value: str) -> bool:
                if facet in ID_FIELDS:
                    return item["id"] == value
                return value.casefold() in {v.casefold() for v, _ in facet_values(item, facet)}
            if all(has(f, v) for f, vs in filters.items() for v in vs) and not any(has(f, v) for f, vs in negative.items() for v in vs):
                kept.append((score, item))
        return kept

    def _facets(self, data: dict[str, Any], items: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
        """CKAN's `facets` ({field: {value: count}}) and `search_facets` ({field: {title, items}})."""
        fields = data.get("facet.field") or []
        if isinstance(fields, str):
            try:
                fields = json.loads(fields)
            except ValueError:
                raise ActionError(409, "Validation Error", None, **{"facet.field": ["Invalid JSON list"]}) from None
        if not isinstance(fields, list):
            raise ActionError(409, "Validation Error", None, **{"facet.field": ["Not a list"]})
        limit = _integer(data, "facet.limit", 50, minimum=-1)
        mincount = _integer(data, "facet.mincount", 1)
        facets: dict[str, Any] = {}
        search_facets: dict[str, Any] = {}
        for name in fields:
            facet = FIELD_FACETS.get(str(name))
            if facet is None:
                raise ActionError(409, "Search Query Error", f"Search Query Error: unknown facet field {name}")
            counts: dict[str, list[Any]] = {}
            for item in items:
                for value, label in dict.fromkeys(facet_values(item, facet)):
                    if value:
                        counts.setdefault(value, [label, 0])[1] += 1
            ordered = sorted(((v, lc) for v, lc in counts.items() if lc[1] >= mincount), key=lambda kv: (-kv[1][1], kv[0]))
            if limit >= 0:
                ordered = ordered[:limit]
            facets[name] = {v: lc[1] for v, lc in ordered}
            search_facets[name] = {"title": name, "items": [{"name": v, "display_name": lc[0], "count": lc[1]} for v, lc in ordered]}
        return facets, search_facets

    def organization_list(self, base_url: str, data: dict[str, Any]) -> list[Any]:
        """Providers (names, or dicts with package_count when all_fields)."""
        found: dict[str, dict[str, Any]] = {}
        for item in self.releases.datasets():
            organization = self.organization(item)
            found.setdefault(organization["name"], dict(organization, package_count=0))["package_count"] += 1
        ordered = sorted(found.values(), key=lambda o: (o["title"], o["name"]))
        return ordered if _truthy(data.get("all_fields")) else [o["name"] for o in ordered]

    def group_list(self, base_url: str, data: dict[str, Any]) -> list[Any]:
        """Themes as CKAN groups (names, or dicts with package_count when all_fields)."""
        found: dict[str, int] = {}
        for item in self.releases.datasets():
            if item.get("theme"):
                found[item["theme"]] = found.get(item["theme"], 0) + 1
        groups = [{"id": t, "name": t, "title": t, "display_name": t, "type": "group", "is_organization": False,
                   "state": "active", "package_count": n} for t, n in sorted(found.items())]
        return groups if _truthy(data.get("all_fields")) else [g["name"] for g in groups]

    def status_show(self, base_url: str, data: dict[str, Any]) -> dict[str, Any]:
        """What the site is (CKAN clients read ckan_version)."""
        return {"site_title": self.config.site_title, "site_description": "政务开放数据：去标识化、带版本、可校验的数据发布",
                "site_url": base_url, "ckan_version": CKAN_VERSION, "error_emails_to": None, "locale_default": "zh_Hans_CN",
                "extensions": []}

    def help_show(self, base_url: str, data: dict[str, Any]) -> str:
        """The documentation of an action."""
        name = str(data.get("name") or "")
        action = self.actions().get(name)
        if action is None:
            raise not_found(f"操作不存在 {name}")
        return action.__doc__ or ""

    def actions(self) -> dict[str, Callable[[str, dict[str, Any]], Any]]:
        """Action name → bound method."""
        names = ("package_list", "package_show", "package_search", "resource_show", "organization_list",
                 "group_list", "status_show", "help_show")
        return {name: getattr(self, name) for name in names}


def _integer(data: dict[str, Any], name: str, default: int, minimum: int = 0) -> int:
    """An integer parameter (text or number), 409 Validation Error when it is not one or too small."""
    value = data.get(name, default)
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ActionError(409, "Validation Error", None, **{name: ["Invalid integer"]}) from None
    if number < minimum:
        raise ActionError(409, "Validation Error", None, **{name: [f"Must be a natural number ≥ {minimum}"]})
    return number


def _truthy(value: Any) -> bool:
    """CKAN's boolean parameters: true, True, 1, yes."""
    return str(value).strip().lower() in {"true", "1", "yes", "on"}


def _as_list(value: Any) -> list[Any]:
    """A parameter that may be one value, a list or a JSON list."""
    if value is None or value == "":
        return []
    if isinstance(value, list):
        return value
    if isinstance(value, str) and value.startswith("["):
        try:
            return list(json.loads(value))
        except ValueError:
            return [value]
    return [value]


def _parse_query(text: str, free_text: bool = True) -> tuple[str, dict[str, list[str]], dict[str, list[str]]]:
    """Split Solr-style text into free text, `field:value` filters and `-field:value` exclusions."""
    filters: dict[str, list[str]] = {}
    negative: dict[str, list[str]] = {}
    if text.strip() in {"*:*", "*"}:
        return "", filters, negative
    for match in FQ_TERM.finditer(text):
        field = match["field"]
        facet = FIELD_FACETS.get(field) or (field if field in ID_FIELDS else None)
        if facet is None:
            raise ActionError(409, "Search Query Error", f"Search Query Error: unknown field {field} 未知字段")
        value = match["value"]
        if value.startswith('"'):
            value = json.loads(value)
        (negative if match["neg"] == "-" else filters).setdefault(facet, []).append(value)
    rest = FQ_TERM.sub(" ", text)
    rest = re.sub(r"\b(AND|OR)\b|[()]", " ", rest)
    if not free_text and rest.strip():
        raise ActionError(409, "Search Query Error", f"Search Query Error: fq needs field:value terms, got {rest.strip()!r}")
    return " ".join(rest.split()), filters, negative


def _sorted(hits: list[tuple[float, dict[str, Any]]], sort: str) -> list[tuple[float, dict[str, Any]]]:
    """Apply CKAN's sort parameter (`field asc|desc, …`) with stable sorts, last key first."""
    keys = []
    for part in sort.split(","):
        words = part.split()
        if not words:
            continue
        field, direction = words[0], (words[1].lower() if len(words) > 1 else "asc")
        if field not in SORT_FIELDS or direction not in {"asc", "desc"}:
            raise ActionError(409, "Search Query Error", f"Search Query Error: cannot sort by {part.strip()!r}")
        keys.append((field, direction == "desc"))
    value_of: dict[str, Callable[[tuple[float, dict[str, Any]]], Any]] = {
        "score": lambda h: h[0],
        "metadata_modified": lambda h: latest_created(h[1]),
        "metadata_created": lambda h: str(((h[1].get("versions") or [{}])[0]).get("created_at") or ""),
        "name": lambda h: h[1]["id"],
        "title_string": lambda h: str(h[1].get("title") or ""),
        "title": lambda h: str(h[1].get("title") or ""),
    }
    ordered = list(hits)
    for field, descending in reversed(keys):
        ordered.sort(key=value_of[field], reverse=descending)
    return ordered


def ckan_router(releases: Releases, counter: DownloadCounter, config: PortalConfig = PortalConfig()) -> APIRouter:
    """Routes /api/3/action/{action} and /api/action/{action} (GET with query parameters, POST with a JSON body)."""
    router = APIRouter(tags=["CKAN Action API"])
    actions = CkanActions(releases, counter, config)

    async def call(action: str, request: Request) -> JSONResponse:
        """Run one action and wrap its result or error in CKAN's envelope."""
        base_url = str(request.base_url).rstrip("/")
        help_url = f"{base_url}/api/3/action/help_show?name={quote(action)}"
        try:
            data = await _data_dict(request)
            function = actions.actions().get(action)
            if function is None:
                raise ActionError(400, "Bad Request", f"Bad request - Action name not known: {action}")
            return JSONResponse({"help": help_url, "success": True, "result": function(base_url, data)})
        except ActionError as error:
            return JSONResponse({"help": help_url, "success": False, "error": error.error()}, status_code=error.status)

    for prefix in ("/api/3/action", "/api/action"):
        router.add_api_route(f"{prefix}/{{action}}", call, methods=["GET", "POST"], summary="CKAN Action API（只读子集）",
                             include_in_schema=prefix == "/api/3/action")

    @router.get("/api/3", include_in_schema=False)
    @router.get("/api", include_in_schema=False)
    def api_version() -> dict[str, int]:
        """CKAN answers its API version here; some clients probe it."""
        return {"version": 3}

    return router


async def _data_dict(request: Request) -> dict[str, Any]:
    """The action's parameters: the query string, overridden by a JSON or form body."""
    data: dict[str, Any] = {}
    for key in request.query_params:
        values = request.query_params.getlist(key)
        data[key] = values if len(values) > 1 else values[0]
    if request.method == "POST":
        body = await request.body()
        if body.strip():
            content_type = request.headers.get("content-type", "")
            if "application/x-www-form-urlencoded" in content_type:
                form = await request.form()
                data.update({k: form.get(k) for k in form})
            else:
                try:
                    parsed = json.loads(body)
                except ValueError:
                    raise ActionError(400, "Bad Request", "Bad request - JSON Error: 请求体不是合法的 JSON") from None
                if not isinstance(parsed, dict):
                    raise ActionError(400, "Bad Request", "Bad request - JSON Error: 请求体应为 JSON 对象")
                data.update(parsed)
    return data
