"""Chinese full-text search of the catalogue: character n-grams (1- and 2-grams), weighted by field, no service.

目录检索：按汉字单字与双字切分（中文无空格，不需分词器），名称命中权重最高，其次信息项、摘要、提供方。
"""

from __future__ import annotations

import math
import re
import threading
from collections import Counter
from typing import Any

from catalog import resources as catalogue

WEIGHTS = {"name": 5.0, "code": 4.0, "keywords": 3.0, "items": 2.0, "classification": 2.0, "provider": 2.0, "summary": 1.0}
FILTER_KEYS = ("sharing_type", "open_attribute", "provider_code", "library", "kind")
_WORD = re.compile(r"[A-Za-z0-9_.\-]+")


def grams(text: str) -> Counter[str]:
    """Unigrams and bigrams of the CJK runs, plus lower-cased ASCII words, of a text."""
    out: Counter[str] = Counter()
    text = text.lower()
    for word in _WORD.findall(text):
        out[word] += 1
    chars = [c for c in _WORD.sub(" ", text) if not c.isspace() and c.isalnum()]
    out.update(chars)
    run = re.sub(r"[^\w]|[A-Za-z0-9_]", " ", text).split()
    for piece in run:
        out.update(piece[i:i + 2] for i in range(len(piece) - 1))
    return out


def _fields(resource: dict[str, Any]) -> dict[str, str]:
    """The searchable texts of a resource by field."""
    return {"name": resource["name"], "code": resource["code"], "keywords": " ".join(resource.get("keywords", [])),
            "items": " ".join(f"{i['label']} {i['name']}" for i in resource["items"]),
            "classification": " ".join(resource["classification"]),
            "provider": " ".join(p["name"] for p in resource.get("providers", [])) + " " + resource["provider_name"],
            "summary": resource["summary"]}


class _Index:
    """Weighted gram vectors of every resource and the gram document frequencies."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.generation = -1
        self.vectors: list[tuple[dict[str, Any], dict[str, float]]] = []
        self.idf: dict[str, float] = {}

    def current(self) -> _Index:
        """Rebuild when the catalogue changed."""
        generation = catalogue.generation()
        if generation != self.generation:
            with self.lock:
                if generation != self.generation:
                    self._build(catalogue.all_resources())
                    self.generation = generation
        return self

    def _build(self, resources: list[dict[str, Any]]) -> None:
        """Compute the vectors and IDF."""
        vectors, frequency = [], Counter()
        for resource in resources:
            vector: dict[str, float] = {}
            for name, text in _fields(resource).items():
                for gram, count in grams(text).items():
                    vector[gram] = vector.get(gram, 0.0) + WEIGHTS[name] * (1 + math.log(count))
            vectors.append((resource, vector))
            frequency.update(vector.keys())
        total = max(len(resources), 1)
        self.idf = {gram: math.log(1 + total / df) for gram, df in frequency.items()}
        self.vectors = vectors


_index = _Index()


def search(query: str, filters: dict[str, Any] | None = None, limit: int = 20) -> list[dict[str, Any]]:
    """Resources matching a Chinese (or code) query and the filters, best first: [{code, name, score, resource}]."""
    index = _index.current()
    wanted = grams(query)
    filters = {k: v for k, v in (filters or {}).items() if v not in (None, "") and k in FILTER_KEYS}
    hits = []
    for resource, vector in index.vectors:
        if any(resource.get(k) != v for k, v in filters.items()):
            continue
        # Bigrams carry the meaning of Chinese words; single characters only break ties.
        score = sum(vector.get(g, 0.0) * index.idf.get(g, 0.0) * (3.0 if len(g) > 1 else 1.0) for g in wanted)
        if score > 0 or not wanted:
            hits.append({"code": resource["code"], "name": resource["name"], "score": round(score, 3), "resource": resource})
    hits.sort(key=lambda hit: (-hit["score"], hit["code"]))
    return hits[:limit]


__all__ = ["grams", "search"]
