"""The simulated province: realistic departmental source systems generated from a seeded truth.

`generate(out, scale=…, seed=…)` writes a world (truth, sources, manifest, world.json);
`world.server.start(world_dir)` / `start_in_thread(world_dir)` serve its court API.
"""

from __future__ import annotations

from typing import Any

__all__ = ["WorldError", "generate"]


def __getattr__(name: str) -> Any:
    """Import the generator (numpy, pandas, pyarrow) only when it is used, so `hub` starts fast."""
    if name in __all__:
        from world import generator

        return getattr(generator, name)
    raise AttributeError(f"module 'world' has no attribute {name!r}")
