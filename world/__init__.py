"""The simulated province: realistic departmental source systems generated from a seeded truth.

`generate(out, scale=…, seed=…)` writes a world (truth, sources, manifest, world.json);
`world.server.start(world_dir)` / `start_in_thread(world_dir)` serve its court API.
"""

from world.generator import WorldError, generate

__all__ = ["WorldError", "generate"]
