"""The sharing catalogue (共享目录): resources, the three lists, access (consumers, keys, requests, grants), the audit log.

Modules: resources (generated catalogue), search (Chinese n-gram search), lists (责任/需求/负面清单),
access (API keys, requests, grants, `authorise`), audit (hash-chained exchange audit log), usage (共享使用率),
cli (`hub catalog …`, `hub audit …`). See docs/catalogue.md.
"""
