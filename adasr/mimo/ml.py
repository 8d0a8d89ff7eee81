"""Exact maximum-likelihood detection: argmin over x in C^Nt of ||y - Hx||^2.

Two ways, both exact:

* `sionna_ml` wraps Sionna's `MaximumLikelihoodDetector` (hard symbol decisions, max-log). It
  enumerates all |C|^Nt candidate vectors, so it is for tiny systems only: it refuses more than
  `MAX_ENUMERATION` candidates and works through the batch in chunks to bound memory. With
  max-log metrics the per-stream hard decision is the stream's entry of the jointly best vector,
  i.e. vector ML.
* `sphere_decode` is a batched depth-first sphere decoder (Schnorr-Euchner enumeration with
  radius shrinking) on the real-valued QR form, for the systems exhaustive search cannot reach
  (8 x 32, 16 x 64 at moderate SNR). Its work is bounded by `max_nodes` visited tree nodes per
  vector; a vector that hits the bound returns the best leaf found so far (at least the Babai
  point), which is then not proven ML, and the count of such vectors is reported in `stats`.

The sphere decoder: with H = QR (real-valued, columns ordered so that the stream with the
smallest noise enhancement is detected first) and y~ = Q^T y, ||y - Hx||^2 = ||y~ - Rx||^2 + c.
The tree is searched from the last real coordinate to the first; at level k the candidates are
the PAM levels sorted by their distance to the centre c_k = (y~_k - sum_{j>k} R_kj x_j) / R_kk,
so once one candidate leaves the sphere all later ones do and the search backtracks. The radius
starts infinite and shrinks to every leaf reached. All vectors of the batch advance one node per
step in lockstep (tensor code on any device).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from adasr.errors import ConfigError
from adasr.mimo.problem import Constellation, to_complex_matrix, to_complex_vector, to_real_vector

__all__ = ["DEFAULT_MAX_NODES", "MAX_ENUMERATION", "exhaustive", "sionna_ml", "sphere_decode"]

MAX_ENUMERATION = 65_536
DEFAULT_MAX_NODES = 100_000


def _check(hr: torch.Tensor, name: str) -> None:
    if hr.shape[-1] > hr.shape[-2]:
        raise ConfigError(f"{name} needs users <= antennas, got {hr.shape[-1] // 2} x {hr.shape[-2] // 2}")


def _batched(hr: torch.Tensor, batch: int) -> torch.Tensor:
    return hr.expand(batch, *hr.shape) if hr.dim() == 2 else hr


def sionna_ml(y, hr, sigma2, mod: Constellation):
    """Exhaustive ML through Sionna's MaximumLikelihoodDetector; at most MAX_ENUMERATION candidates."""
    try:
        from sionna.phy.mapping import Constellation as SnConstellation
        from sionna.phy.mimo import MaximumLikelihoodDetector
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ConfigError(f"Sionna's ML detector needs sionna-no-rt installed: {exc}") from None
    _check(hr, "ML")
    nt = hr.shape[-1] // 2
    if mod.order ** nt > MAX_ENUMERATION:
        raise ConfigError(f"exhaustive ML over {mod.order}^{nt} candidates is too large (at most "
                          f"{MAX_ENUMERATION}); use the sphere decoder (detector 'sphere')")
    b = y.shape[0]
    dev = y.device
    bits = int(mod.order).bit_length() - 1
    const = SnConstellation("custom", bits, points=mod.points.to(dev), device=str(dev))
    det = MaximumLikelihoodDetector("symbol", "maxlog", nt, constellation=const, hard_out=True, device=str(dev))
    h = to_complex_matrix(_batched(hr, b)).to(torch.complex64).contiguous()
    yc = to_complex_vector(y).to(torch.complex64)
    eye = torch.eye(h.shape[-2], dtype=torch.complex64, device=dev)
    s = sigma2.to(torch.float32).view(-1, 1, 1) * eye
    nr = h.shape[-2]
    chunk = max(1, (1 << 24) // (mod.order ** nt * nr))
    idx = torch.cat([det(yc[i:i + chunk], h[i:i + chunk], s[i:i + chunk]) for i in range(0, b, chunk)])
    points = mod.points.to(dev)
    return to_real_vector(points[idx.long()]).to(y.dtype)


def _column_order(h: torch.Tensor) -> torch.Tensor:
    """(B, n) permutation: detection order by noise enhancement, the smallest last in the column
    list (the tree is searched from the last column, so it is decided first)."""
    enh = torch.linalg.pinv(h).pow(2).sum(-1)  # (B, n) row norms of H^+
    return enh.argsort(-1, descending=True)


def sphere_decode(y, hr, sigma2, mod: Constellation, max_nodes: int = DEFAULT_MAX_NODES,
                  stats: dict[str, Any] | None = None):
    """Exact ML by a batched Schnorr-Euchner sphere decoder (see the module docstring).

    `stats`, if given, gets 'vectors', 'nodes' (visited tree nodes, summed), 'max_nodes_seen'
    and 'bounded' (vectors that hit `max_nodes`, whose decision is not proven ML) added to it."""
    _check(hr, "sphere decoder")
    b, n = y.shape[0], hr.shape[-1]
    if max_nodes < n:
        raise ConfigError(f"max_nodes must be at least the tree depth {n}, got {max_nodes}")
    dev = y.device
    dt = torch.float64
    h = _batched(hr, b).to(dt)
    perm = _column_order(h)                                           # (B, n)
    hp = torch.gather(h, 2, perm.unsqueeze(1).expand(-1, h.shape[1], -1))
    q, r = torch.linalg.qr(hp)                                        # r (B, n, n) upper triangular
    yt = (q.transpose(-2, -1) @ y.to(dt).unsqueeze(-1)).squeeze(-1)   # (B, n)
    diag = torch.diagonal(r, dim1=-2, dim2=-1)
    diag2 = diag.pow(2)
    levels = mod.levels.to(dev, dt)
    m = levels.numel()
    rows = torch.arange(b, device=dev)
    cols = torch.arange(n, device=dev)

    x = torch.zeros(b, n, dtype=dt, device=dev)
    dist = torch.zeros(b, n + 1, dtype=dt, device=dev)               # dist[:, k]: metric of levels >= k
    centre = torch.zeros(b, n, dtype=dt, device=dev)
    order = torch.zeros(b, n, m, dtype=torch.long, device=dev)
    pos = torch.zeros(b, n, dtype=torch.long, device=dev)
    level = torch.full((b,), n - 1, dtype=torch.long, device=dev)
    best = torch.full((b,), math.inf, dtype=dt, device=dev)
    best_x = torch.zeros(b, n, dtype=dt, device=dev)
    nodes = torch.zeros(b, dtype=torch.long, device=dev)
    active = torch.ones(b, dtype=torch.bool, device=dev)
    bounded = torch.zeros(b, dtype=torch.bool, device=dev)

    def enter(sel: torch.Tensor, k: torch.Tensor) -> None:
        """Compute the centre and candidate order of level k[sel] for the vectors sel."""
        rk = r[sel, k]                                                # (S, n) row k of R
        above = cols.unsqueeze(0) > k.unsqueeze(1)
        c = (yt[sel, k] - (rk * x[sel] * above).sum(-1)) / diag[sel, k]
        centre[sel, k] = c
        order[sel, k] = (levels.unsqueeze(0) - c.unsqueeze(1)).abs().argsort(-1)
        pos[sel, k] = 0

    enter(rows, level)
    while bool(active.any()):
        sel = active.nonzero().squeeze(1)
        k = level[sel]
        p = pos[sel, k]
        exhausted = p >= m
        cand = levels[order[sel, k, p.clamp_max(m - 1)]]
        d = dist[sel, k + 1] + diag2[sel, k] * (cand - centre[sel, k]).pow(2)
        accept = ~exhausted & (d < best[sel])
        leaf = accept & (k == 0)
        down = accept & (k > 0)
        nodes[sel] += accept.long()
        # go down one level
        if bool(down.any()):
            s_d, k_d = sel[down], k[down]
            x[s_d, k_d] = cand[down]
            dist[s_d, k_d] = d[down]
            level[s_d] = k_d - 1
            enter(s_d, k_d - 1)
        # a leaf: shrink the radius to it
        if bool(leaf.any()):
            s_l = sel[leaf]
            x[s_l, 0] = cand[leaf]
            best[s_l] = d[leaf]
            best_x[s_l] = x[s_l]
        # back up one level (pruned, exhausted, or after a leaf: later siblings are farther away)
        up = ~down
        if bool(up.any()):
            s_u, k_u = sel[up], k[up] + 1
            finished = k_u >= n
            active[s_u[finished]] = False
            s_u, k_u = s_u[~finished], k_u[~finished]
            level[s_u] = k_u
            pos[s_u, k_u] += 1
        hit = active & (nodes >= max_nodes) & torch.isfinite(best)
        if bool(hit.any()):
            bounded |= hit
            active &= ~hit
    if stats is not None:
        stats["vectors"] = stats.get("vectors", 0) + b
        stats["nodes"] = stats.get("nodes", 0) + int(nodes.sum())
        stats["max_nodes_seen"] = max(stats.get("max_nodes_seen", 0), int(nodes.max()))
        stats["bounded"] = stats.get("bounded", 0) + int(bounded.sum())
    out = torch.empty_like(best_x)
    out.scatter_(1, perm, best_x)                                     # undo the column order
    return out.to(y.dtype)


def exhaustive(y, hr, mod: Constellation) -> torch.Tensor:
    """Brute-force ML in float64 over all |C|^Nt vectors (a reference for tests; tiny systems)."""
    nt2 = hr.shape[-1]
    nt = nt2 // 2
    if mod.order ** nt > MAX_ENUMERATION:
        raise ConfigError(f"exhaustive search over {mod.order}^{nt} candidates is too large")
    levels = mod.levels.to(y.device, torch.float64)
    grids = torch.meshgrid(*([levels] * nt2), indexing="ij")
    cands = torch.stack([g.reshape(-1) for g in grids], -1)           # (V, 2Nt)
    h = _batched(hr, y.shape[0]).to(torch.float64)
    yd = y.to(torch.float64)
    chunk = max(1, (1 << 22) // (cands.shape[0] * h.shape[-2]))
    best = torch.cat([(yd[i:i + chunk].unsqueeze(1) - torch.einsum("bij,vj->bvi", h[i:i + chunk], cands))
                      .pow(2).sum(-1).argmin(-1) for i in range(0, y.shape[0], chunk)])
    return cands[best].to(y.dtype)
