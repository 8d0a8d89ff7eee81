"""Family search: the levels a runtime switches between, found by DySR's or Dynamic-OFA's method.

Search reads only the two protocols (`adasr.search.protocols`): `CostModel.cost(cfg) -> seconds`
and `Evaluator.score(cfg) -> PSNR`; both are called at most once per distinct config (cached
here) and every loop has an iteration cap, so the work is bounded by the parameters.

Strategy "dysr" (DySR section 4.1, adaptation-aware sub-graph selection, Eq. 1):

1. Sample paths grouped by depth: for each depth of the space, up to `per_depth` (N_l) distinct
   random configs of that depth (at most `per_depth * 20` draws), plus the space's smallest and
   largest. Configs slower than `fps_min` (F_min of Eq. 1) are discarded.
2. Evaluate the rest, bin them by FPS = 1 / cost into `bins` (B) equal-width bins in log FPS.
3. The PSNR threshold comes from the Pareto frontier: a config is competitive if its PSNR is
   within `psnr_margin` dB of the best PSNR reached at its FPS or faster.
4. Within each bin, competitive configs are ranked by mu (shared ops, `shared_ops`) with the
   rest of the picked set: the configs already picked plus the competitive configs of the other
   bins; ties go to the higher PSNR. The top `per_bin` (N_b) of each bin are kept, greedily
   (mu is recomputed after every pick). With `keep_fastest` (default) the fastest config is the
   first pick of its bin, so the family always has a level for the scarcest resources (ranking
   by mu alone may drop it; DySR does not say).

Strategy "ofa" (Dynamic-OFA section 3.2, Algorithm 1, then OFA's evolutionary refinement):

1. `targets` rounds of Algorithm 1 RANDOM_SEARCH on a ladder of constraints: round t asks for
   PSNR above Acc_max(t) - Acc_r with Acc_max(t) stepping linearly from the smallest to the
   largest config's PSNR, under a latency constraint starting at Lat_init(t) (geometric steps
   from the smallest to the largest config's latency) and relaxed by Lat_add every `itr_n`
   iterations up to Lat_max; at most `itr_max` iterations per round. Each found config joins
   Parents. (Latency is checked before accuracy, so configs that miss the latency constraint
   cost no evaluation; the outcome equals Algorithm 1's.)
2. Evolution for `generations` generations over a population of `population`: the best
   `parent_ratio` of it (by Pareto rank: non-dominated sorting on (latency, PSNR), then PSNR)
   breed `mutation_ratio` of the children by mutation (per-dimension probability
   `mutate_prob`) and the rest by crossover; children are new configs only (bounded draws).
3. The family is the Pareto front of every config evaluated (optionally thinned to
   `max_levels`, evenly in log latency).

The result is a `Family`: `Level`s ordered by cost, JSON round-trip.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from adasr.errors import ConfigError
from adasr.family import Family, Level, load_name, pareto_front, pareto_ranks
from adasr.search.protocols import CostModel, Evaluator, Progress, cost_load_name
from adasr.space import SearchSpace, SubnetConfig
from adasr.spec import DEFAULT_LR_HW, op_keys, subnet_cost

if TYPE_CHECKING:
    from adasr.nn.supernet import SuperNet

__all__ = ["DYSR_DEFAULTS", "FIXED_DEFAULTS", "OFA_DEFAULTS", "STRATEGIES", "check_strategy", "random_search",
           "search_family",
           # the data model lives in adasr.family; re-exported for older imports
           "Family", "Level", "pareto_front", "pareto_ranks"]

STRATEGIES = ("dysr", "ofa", "fixed")
# "fixed": no search; the family is the given sub-network ids (e.g. a package's levels after its
# supernet was trained further), each scored and costed here.
FIXED_DEFAULTS: dict[str, Any] = {"levels": None, "max_levels": None}
MAX_FIXED_LEVELS = 64


# -- the bookkeeping both strategies share ----------------------------------------------------------

class _Book:
    """Caches cost and score per config id, counts calls, reports progress."""

    def __init__(self, evaluator: Evaluator, cost_model: CostModel, space: SearchSpace,
                 on_progress: Progress | None) -> None:
        self.evaluator, self.cost_model, self.space, self.on_progress = evaluator, cost_model, space, on_progress
        self.costs: dict[str, float] = {}
        self.scores: dict[str, float] = {}
        self.configs: dict[str, SubnetConfig] = {}
        self._keys: dict[str, frozenset] = {}

    def cost(self, cfg: SubnetConfig) -> float:
        if cfg.id not in self.costs:
            value = float(self.cost_model.cost(cfg))
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"cost model returned {value!r} seconds for {cfg.id}; expected positive")
            self.costs[cfg.id] = value
            self.configs[cfg.id] = cfg
        return self.costs[cfg.id]

    def score(self, cfg: SubnetConfig) -> float:
        if cfg.id not in self.scores:
            value = float(self.evaluator.score(cfg))
            if math.isnan(value):
                raise ValueError(f"evaluator returned NaN for {cfg.id}")
            self.scores[cfg.id] = value
            self.configs[cfg.id] = cfg
        return self.scores[cfg.id]

    def mu(self, a: SubnetConfig, others: Sequence[SubnetConfig]) -> int:
        """DySR's mu: ops `a` shares with each of `others`, summed."""
        ka = self._op_keys(a)
        return sum(len(ka & self._op_keys(b)) for b in others if b.id != a.id)

    def _op_keys(self, cfg: SubnetConfig) -> frozenset:
        if cfg.id not in self._keys:
            self._keys[cfg.id] = op_keys(cfg)
        return self._keys[cfg.id]

    def progress(self, stage: str, done: int, total: int) -> None:
        if self.on_progress:
            self.on_progress(stage, done, total)

    def counts(self) -> dict[str, int]:
        return {"evaluations": len(self.scores), "cost_calls": len(self.costs)}


def _check_int(name: str, value: Any, lo: int, hi: int = 1_000_000) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise ConfigError(f"search parameter {name} must be an integer in [{lo}, {hi}], got {value!r}")
    return value


def _check_float(name: str, value: Any, lo: float, hi: float = math.inf, allow_none: bool = False) -> float | None:
    if value is None and allow_none:
        return None
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and lo <= value <= hi
    if not ok:
        raise ConfigError(f"search parameter {name} must be a number in [{lo}, {hi}], got {value!r}")
    return float(value)


def _thin(ids: list[str], costs: Mapping[str, float], n: int | None) -> list[str]:
    """At most `n` of `ids` (ordered by cost), evenly spread in log cost, ends kept."""
    if n is None or len(ids) <= n:
        return ids
    if n == 1:
        return [ids[-1]]
    logs = [math.log(costs[i]) for i in ids]
    picked: list[int] = []
    for k in range(n):
        goal = logs[0] + (logs[-1] - logs[0]) * k / (n - 1)
        best = min((j for j in range(len(ids)) if j not in picked), key=lambda j: (abs(logs[j] - goal), j))
        picked.append(best)
    return [ids[j] for j in sorted(picked)]


# -- DySR ---------------------------------------------------------------------------------------------

DYSR_DEFAULTS: dict[str, Any] = {"per_depth": 16, "bins": 4, "per_bin": 2, "fps_min": None, "psnr_margin": 0.1,
                                 "include_extremes": True, "keep_fastest": True, "max_levels": None}


def _dysr(book: _Book, rng: random.Random, p: dict[str, Any]) -> list[str]:
    space = book.space
    per_depth = _check_int("per_depth", p["per_depth"], 1)
    bins = _check_int("bins", p["bins"], 1, 1000)
    per_bin = _check_int("per_bin", p["per_bin"], 1)
    fps_min = _check_float("fps_min", p["fps_min"], 0.0, allow_none=True)
    margin = _check_float("psnr_margin", p["psnr_margin"], 0.0)

    # 1. sample paths grouped by depth (bounded draws), discard what misses F_min
    drawn: dict[str, SubnetConfig] = {}
    if p["include_extremes"]:
        for cfg in (space.smallest(), space.largest()):
            drawn[cfg.id] = cfg
    for depth in space.depths:
        sub = SearchSpace(space.scale, space.widths, (depth,), space.expansions, space.kernels, space.blocks,
                          space.skips, space.upsamplers)
        got = 0
        for _ in range(per_depth * 20):
            if got >= per_depth:
                break
            cfg = sub.sample(rng)
            if cfg.id not in drawn:
                drawn[cfg.id] = cfg
                got += 1
    kept = []
    for i, cfg in enumerate(drawn.values(), 1):
        if fps_min is None or 1.0 / book.cost(cfg) >= fps_min:
            kept.append(cfg)
        book.progress("profile", i, len(drawn))
    if not kept:
        raise ConfigError(f"no sampled config reaches fps_min={fps_min:g}; lower it")

    # 2. evaluate, bin by FPS (equal width in log FPS)
    for i, cfg in enumerate(kept, 1):
        book.score(cfg)
        book.progress("evaluate", i, len(kept))
    log_fps = {c.id: -math.log(book.cost(c)) for c in kept}
    lo, hi = min(log_fps.values()), max(log_fps.values())
    width = (hi - lo) / bins if hi > lo else 1.0
    bin_of = {cid: min(bins - 1, int((v - lo) / width)) for cid, v in log_fps.items()}

    # 3. PSNR threshold from the frontier: best PSNR at this FPS or faster, minus the margin
    by_fps = sorted(kept, key=lambda c: (-log_fps[c.id], -book.scores[c.id]))  # fastest first
    frontier, best = {}, -math.inf
    for c in by_fps:
        best = max(best, book.scores[c.id])
        frontier[c.id] = best
    pool = [c for c in kept if book.scores[c.id] >= frontier[c.id] - margin]

    # 4. rank by mu with the rest of the picked set, keep N_b per bin (greedy)
    picked: list[SubnetConfig] = []
    fastest = by_fps[0]  # competitive by construction (nothing is faster)
    for b in range(bins):
        members = [c for c in pool if bin_of[c.id] == b]
        others = [c for c in pool if bin_of[c.id] != b]
        chosen: list[SubnetConfig] = [fastest] if p["keep_fastest"] and fastest in members else []
        for _ in range(min(per_bin, len(members)) - len(chosen)):
            rest = others + picked + chosen
            cand = [c for c in members if c not in chosen]
            best_c = max(cand, key=lambda c: (book.mu(c, rest), book.scores[c.id], -book.costs[c.id], c.id))
            chosen.append(best_c)
        picked += chosen
        book.progress("select", b + 1, bins)
    ids = sorted((c.id for c in picked), key=lambda i: book.costs[i])
    return _thin(ids, book.costs, p["max_levels"])


# -- Dynamic-OFA ------------------------------------------------------------------------------------

OFA_DEFAULTS: dict[str, Any] = {"targets": 6, "acc_range": None, "lat_init": None, "lat_add": None,
                                "lat_max": None, "itr_n": 10, "itr_max": 100, "population": 16,
                                "generations": 5, "parent_ratio": 0.25, "mutation_ratio": 0.5,
                                "mutate_prob": 0.1, "max_levels": None}


def random_search(book: _Book, rng: random.Random, parents: set[str], *, acc_max: float, acc_range: float,
                  lat_init: float, lat_add: float, lat_max: float, itr_n: int, itr_max: int) -> SubnetConfig | None:
    """Dynamic-OFA Algorithm 1: a new config with PSNR > acc_max - acc_range under a latency
    constraint relaxed by lat_add every itr_n iterations (up to lat_max); None after itr_max."""
    lat = lat_init
    for i in range(itr_max):
        if i % itr_n == 0 and lat < lat_max:
            lat = min(lat + lat_add, lat_max)
        arch = book.space.sample(rng)
        if book.cost(arch) < lat and book.score(arch) > acc_max - acc_range and arch.id not in parents:
            return arch
    return None


def _ofa(book: _Book, rng: random.Random, p: dict[str, Any]) -> list[str]:
    space = book.space
    targets = _check_int("targets", p["targets"], 1, 10_000)
    itr_n = _check_int("itr_n", p["itr_n"], 1)
    itr_max = _check_int("itr_max", p["itr_max"], 1)
    population = _check_int("population", p["population"], 2)
    generations = _check_int("generations", p["generations"], 0)
    parent_ratio = _check_float("parent_ratio", p["parent_ratio"], 0.0, 1.0)
    mutation_ratio = _check_float("mutation_ratio", p["mutation_ratio"], 0.0, 1.0)
    mutate_prob = _check_float("mutate_prob", p["mutate_prob"], 0.0, 1.0)

    lo_cfg, hi_cfg = space.smallest(), space.largest()
    psnr_lo, psnr_hi = book.score(lo_cfg), book.score(hi_cfg)
    lat_lo, lat_hi = book.cost(lo_cfg), book.cost(hi_cfg)
    if psnr_hi < psnr_lo:
        psnr_lo, psnr_hi = psnr_hi, psnr_lo
    acc_range = _check_float("acc_range", p["acc_range"], 0.0, allow_none=True)
    if acc_range is None:
        acc_range = max((psnr_hi - psnr_lo) / targets, 1e-6)
    lat_add = _check_float("lat_add", p["lat_add"], 0.0, allow_none=True)
    if lat_add is None:
        lat_add = max(lat_hi - lat_lo, 0.0) / (4 * targets)
    lat_max = _check_float("lat_max", p["lat_max"], 0.0, allow_none=True)
    if lat_max is None:
        lat_max = lat_hi * 1.0001
    lat_init = _check_float("lat_init", p["lat_init"], 0.0, allow_none=True)

    # 1. Algorithm 1 on a ladder of (accuracy, latency) constraints
    parents: dict[str, SubnetConfig] = {lo_cfg.id: lo_cfg, hi_cfg.id: hi_cfg}
    for t in range(1, targets + 1):
        acc_max = psnr_lo + (psnr_hi - psnr_lo) * t / targets
        start = lat_init if lat_init is not None else lat_lo * (lat_hi / lat_lo) ** ((t - 1) / targets)
        found = random_search(book, rng, set(parents), acc_max=acc_max, acc_range=acc_range, lat_init=start,
                              lat_add=lat_add, lat_max=lat_max, itr_n=itr_n, itr_max=itr_max)
        if found is not None:
            parents[found.id] = found
        book.progress("random search", t, targets)

    # 2. evolutionary refinement, Pareto-ranked
    def ranked(ids: list[str]) -> list[str]:
        pts = [(book.costs[i], book.scores[i]) for i in ids]
        ranks = pareto_ranks(pts)
        return [ids[j] for j in sorted(range(len(ids)), key=lambda j: (ranks[j], -pts[j][1], pts[j][0], ids[j]))]

    pop = list(parents)
    for _ in range(population * 20):  # fill the first population with random configs (bounded)
        if len(pop) >= population:
            break
        cfg = space.sample(rng)
        if cfg.id not in pop:
            book.cost(cfg)
            book.score(cfg)
            pop.append(cfg.id)
    for g in range(generations):
        pop = ranked(pop)[:population]
        n_parents = max(2, math.ceil(parent_ratio * population))
        breeders = [book.configs[i] for i in pop[:n_parents]]
        n_mutate = round(mutation_ratio * population)
        children: list[str] = []
        for _ in range(population * 10):  # bounded draws for distinct new children
            if len(children) >= population:
                break
            if len(children) < n_mutate:
                child = space.mutate(rng.choice(breeders), rng, mutate_prob)
            else:
                a, b = rng.sample(breeders, 2) if len(breeders) > 1 else (breeders[0], breeders[0])
                child = space.crossover(a, b, rng)
            if child.id in book.scores or child.id in children:
                continue
            book.cost(child)
            book.score(child)
            children.append(child.id)
        pop = ranked(pop + children)[:population]
        book.progress("evolution", g + 1, generations)

    # 3. the Pareto front of everything evaluated
    ids = [i for i in book.scores if i in book.costs]
    front = [ids[j] for j in pareto_front([(book.costs[i], book.scores[i]) for i in ids])]
    return _thin(front, book.costs, p["max_levels"])


# -- entry point ------------------------------------------------------------------------------------

def _defaults(strategy: str) -> dict[str, Any]:
    return {"dysr": DYSR_DEFAULTS, "ofa": OFA_DEFAULTS, "fixed": FIXED_DEFAULTS}[strategy]


def _fixed(book: _Book, rng: random.Random, p: dict[str, Any]) -> list[str]:
    """The given ids, each scored and costed, cheapest first (duplicates refused)."""
    given = p["levels"]
    if not isinstance(given, (list, tuple)) or not 1 <= len(given) <= MAX_FIXED_LEVELS:
        raise ConfigError(f"strategy 'fixed' needs levels: a list of 1 to {MAX_FIXED_LEVELS} sub-network ids")
    cfgs = []
    for item in given:
        try:
            cfgs.append(book.space.validate(SubnetConfig.coerce(item)))
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"strategy 'fixed': level {item!r}: {exc}") from None
    if len({c.id for c in cfgs}) != len(cfgs):
        raise ConfigError("strategy 'fixed': the levels must be distinct")
    for i, cfg in enumerate(cfgs):
        book.score(cfg)
        book.cost(cfg)
        book.progress("levels", i + 1, len(cfgs))
    ids = sorted((c.id for c in cfgs), key=lambda cid: book.costs[cid])
    return _thin(ids, book.costs, p["max_levels"])


def check_strategy(strategy: str, params: Mapping[str, Any]) -> None:
    """ConfigError unless `strategy` is known and takes every parameter in `params` (cheap: callers
    check before any work)."""
    if strategy not in STRATEGIES:
        raise ConfigError(f"unknown search strategy {strategy!r}; known: {', '.join(STRATEGIES)}")
    defaults = _defaults(strategy)
    unknown = sorted(set(params) - set(defaults))
    if unknown:
        raise ConfigError(f"search strategy {strategy!r} takes no parameter(s) {', '.join(unknown)}; "
                          f"known: {', '.join(sorted(defaults))}")


def search_family(supernet: SuperNet, space: SearchSpace | None, evaluator: Evaluator, cost_model: CostModel,
                  strategy: str = "dysr", *, seed: int = 0, lr_hw: tuple[int, int] | None = None,
                  latency_models: Mapping[str, CostModel] | None = None, on_progress: Progress | None = None,
                  **params: Any) -> Family:
    """Search a family of levels of `space` (default: `supernet.space`).

    strategy "dysr" (params: per_depth, bins, per_bin, fps_min, psnr_margin, include_extremes,
    max_levels) or "ofa" (params: targets, acc_range, lat_init, lat_add, lat_max, itr_n, itr_max,
    population, generations, parent_ratio, mutation_ratio, mutate_prob, max_levels); see the
    module doc. Unknown parameters are refused.

    Each level's `latency_s` holds the search cost model's prediction under its load
    (`cost_model.load`, default idle "0.00") and, for every `latency_models` entry (load name
    or share -> CostModel), that model's prediction. `lr_hw` (default: the cost model's `lr_hw`,
    else 320x180) is the frame size for params/MACs. Random choices use `random.Random(seed)`.
    `on_progress(stage, done, total)` reports each stage.
    """
    check_strategy(strategy, params)
    if space is None:
        space = getattr(supernet, "space", None)
        if not isinstance(space, SearchSpace):
            raise ConfigError("search_family needs a space (or a supernet that has one)")
    if not isinstance(evaluator, Evaluator) or not isinstance(cost_model, CostModel):
        raise ConfigError("search_family needs an Evaluator (score) and a CostModel (cost)")
    p = {**_defaults(strategy), **params}
    if p["max_levels"] is not None:
        _check_int("max_levels", p["max_levels"], 1)
    lr_hw = tuple(lr_hw or getattr(cost_model, "lr_hw", None) or DEFAULT_LR_HW)
    book = _Book(evaluator, cost_model, space, on_progress)
    rng = random.Random(seed)
    ids = {"dysr": _dysr, "ofa": _ofa, "fixed": _fixed}[strategy](book, rng, p)

    reference = cost_load_name(cost_model)
    extra = {load_name(k): m for k, m in (latency_models or {}).items()}
    levels = []
    for cid in ids:
        cfg = book.configs[cid]
        params_n, macs = subnet_cost(cfg, lr_hw)
        latency = {reference: book.costs[cid]}
        latency.update({name: float(m.cost(cfg)) for name, m in extra.items()})
        levels.append(Level(cfg, book.scores[cid], params_n, macs, latency))
    search = {"strategy": strategy, "seed": seed, "params": p, **book.counts()}
    return Family(tuple(levels), space.scale, lr_hw, reference, json.loads(json.dumps(search)))
