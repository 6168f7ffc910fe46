"""The base libraries the merge knows, by name.

Population and legal entity live here; licence and credit specs (libraries/licence.py, libraries/credit.py)
are imported lazily, so the registry works whether or not those modules exist yet.
"""

from __future__ import annotations

import importlib
from functools import lru_cache

from libraries.spec import LibrarySpec

# library name -> (module, class)
LIBRARIES: dict[str, tuple[str, str]] = {
    "population": ("libraries.population", "PopulationLibrary"),
    "legal_entity": ("libraries.legal_entity", "LegalEntityLibrary"),
    "licence": ("libraries.licence", "LicenceLibrary"),
    "credit": ("libraries.credit", "CreditLibrary"),
}


class UnknownLibrary(KeyError):
    """A library name the hub does not have, or whose spec is not installed yet."""

    def __str__(self) -> str:
        return str(self.args[0])


@lru_cache(maxsize=None)
def _load(name: str) -> LibrarySpec | None:
    """The spec of a library, or None when its module is not there yet."""
    module_name, class_name = LIBRARIES[name]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name == module_name:
            return None
        raise
    return getattr(module, class_name)()


def get_library(name: str) -> LibrarySpec:
    """The spec of one base library; UnknownLibrary when there is none."""
    if name not in LIBRARIES:
        raise UnknownLibrary(f"未知基础库 unknown library {name!r}; one of {', '.join(LIBRARIES)}")
    spec = _load(name)
    if spec is None:
        raise UnknownLibrary(f"基础库 {name} 尚无合并规格 no merge spec yet ({LIBRARIES[name][0]} missing)")
    return spec


def available() -> list[str]:
    """Names of the libraries whose specs are installed."""
    return [name for name in LIBRARIES if _load(name) is not None]


__all__ = ["LIBRARIES", "UnknownLibrary", "available", "get_library"]
