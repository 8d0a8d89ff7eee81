"""Weight memory of one supernet against the same levels held as separate models (Assembled).

DySR's "Assembled" baseline keeps every level resident as its own model; adasr keeps the
supernet once and switches routing. Parameters are counted, not estimated: the supernet's
parameters and buffers against the sum over extracted sub-networks.
"""

from __future__ import annotations

from dataclasses import dataclass

from adasr.space import SearchSpace, SubnetConfig

__all__ = ["MemoryReport", "memory_report"]


@dataclass(frozen=True)
class MemoryReport:
    space: str
    levels: list[str]
    supernet_bytes: int
    assembled_bytes: int
    largest_bytes: int

    @property
    def saving(self) -> float:
        """1 - supernet / assembled: the share of memory weight sharing saves."""
        return 1.0 - self.supernet_bytes / self.assembled_bytes

    def to_dict(self) -> dict:
        return {"space": self.space, "levels": self.levels, "supernet_bytes": self.supernet_bytes,
                "assembled_bytes": self.assembled_bytes, "largest_bytes": self.largest_bytes,
                "saving": round(self.saving, 4)}


def memory_report(space_name: str, n_levels: int = 10, seed: int = 0,
                  levels: list[SubnetConfig] | None = None) -> MemoryReport:
    """Supernet vs Assembled bytes for `levels` (default: `n_levels` spread smallest..largest)."""
    from adasr.nn.supernet import SuperNet, spread_configs

    space = SearchSpace.named(space_name)
    net = SuperNet(space)
    cfgs = levels or spread_configs(space, n_levels, seed=seed)
    # measured: extract each level and count its tensors
    assembled = 0
    for cfg in cfgs:
        sub = net.extract(cfg)
        assembled += sum(t.numel() * t.element_size() for t in list(sub.parameters()) + list(sub.buffers()))
    largest = net.extract(space.largest())
    largest_bytes = sum(t.numel() * t.element_size() for t in largest.parameters())
    return MemoryReport(space_name, [c.id for c in cfgs], net.supernet_bytes(), assembled, largest_bytes)
