"""Multiplications per detected vector (the thesis's Fig. 3-12), counted analytically.

Conventions, in the real-valued model (n = 2 Nt, M = 2 Nr, m = PAM levels per real coordinate,
sqrt of the QAM order):

* real multiplications and divisions are counted; additions, comparisons, exp and sorting are not;
* a dense (p x q) by (q x r) product costs p q r (symmetry is not exploited);
* an explicit k x k inverse (Cholesky, then the inverse from the factor) costs k^3 / 2;
* a Householder QR of an M x n matrix costs 2 M n^2 - 2 n^3 / 3;
* the Gaussian denoiser of Eq. 3.5 costs n (5 m + 2): per level the squared distance, its scaling
  by 1/(2 tau^2), the normalisation, and the first and second moments; then mean^2 and the variance.

As in the thesis, work that depends only on the channel (and the noise level) is done once per
coherence interval and shared by the `vectors` signals received in it (the thesis uses about
100): `per_channel / vectors` is added to `per_vector`. MMNet's online training is part of its
count: `train_iters` iterations of batch `batch` per channel, each costing 3 forward passes
(forward plus a backward pass of about twice the forward cost) — an estimate, not a count of
autograd's kernels. The sphere decoder's work depends on the data: it is counted from the
measured mean number of visited nodes, each costing the centre of its level (about n / 2
multiplications on average) and the metric increment (2).
"""

from __future__ import annotations

from typing import Any

from adasr.errors import ConfigError

__all__ = ["COUNTED", "count"]

COUNTED = ("zf", "mmse", "vblast", "amp", "kbest", "sphere", "ml", "mmnet-iid", "mmnet", "oampnet", "detnet")


def _denoiser(n: int, m: int) -> float:
    return n * (5 * m + 2)


def _inv(k: int) -> float:
    return k ** 3 / 2


def _qr(rows: int, cols: int) -> float:
    return 2 * rows * cols ** 2 - 2 * cols ** 3 / 3


def count(name: str, users: int, antennas: int, order: int, *, vectors: int = 100, layers: int = 10,
          iterations: int = 50, k: int = 32, train_iters: float | None = None, batch: int = 500,
          nodes_per_vector: float | None = None) -> dict[str, Any]:
    """{'per_vector', 'per_channel', 'total'} multiplications for detector `name`; 'total' is per
    detected vector with the channel work shared by `vectors` vectors. None where not countable
    (the sphere decoder without measured nodes, MMNet without its training iterations)."""
    if name not in COUNTED:
        raise ConfigError(f"no multiplication count for {name!r}")
    if vectors < 1:
        raise ConfigError(f"vectors per channel must be at least 1, got {vectors}")
    n, big_m = 2 * users, 2 * antennas
    m = int(round(order ** 0.5))
    pv = pc = 0.0
    if name in ("zf", "mmse"):
        pc = n * n * big_m + _inv(n) + n * n * big_m           # G = H^T H, inverse, W = G^-1 H^T
        pv = n * big_m                                         # W y
        if name == "mmse":
            pc += n * big_m                                    # per-stream gain diag(W H)
            pv += n                                            # bias removal
    elif name == "vblast":
        for kk in range(n, 0, -2):                             # pseudo-inverse of the remaining columns
            pc += kk * kk * big_m + _inv(kk) + kk * kk * big_m + kk * big_m  # + row norms for the order
        pv = users * (2 * big_m + 2 * big_m)                   # null one complex user, cancel it
    elif name == "amp":
        pv = iterations * (2 * big_m * n + _denoiser(n, m) + big_m + 2)
    elif name == "kbest":
        pc = 4 * (2 * antennas * users ** 2 - 2 * users ** 3 / 3)  # complex QR, 4 real mults each
        pv = 4 * users * antennas                              # Q^H y
        survivors = 1
        for j in range(users):                                 # j symbols decided on the way down
            pv += survivors * (4 * j + order * 6)              # interference per parent, metric per child
            survivors = min(k, survivors * order)
    elif name in ("sphere", "ml"):
        if name == "ml":                                       # exhaustive: every candidate's metric
            pv = float(order) ** users * (big_m * n + big_m)
        else:
            pc = n * n * big_m + _inv(n) + n * n * big_m + _qr(big_m, n)  # ordering (pinv norms), QR
            if nodes_per_vector is None:
                return dict(per_vector=None, per_channel=pc, total=None)
            pv = n * big_m + nodes_per_vector * (n / 2 + 3)
    elif name == "mmnet-iid":
        pc = n * n * big_m + big_m * n + layers * 2 * n * n      # G, ||H||_F^2, ||I - theta G||^2 per layer
        pv = layers * (2 * big_m * n + n + big_m + 4 + _denoiser(n, m))
    elif name == "mmnet":
        layer_c = n * n * big_m + n * n + n * big_m            # A H, ||I - A H||^2, ||A||^2
        layer_v = 2 * big_m * n + big_m + 2 * n + _denoiser(n, m)  # H x, A r, ||r||^2, tau^2 per coordinate
        pc = big_m * n + layers * layer_c
        pv = layers * layer_v
        if train_iters is None:
            return dict(per_vector=pv, per_channel=pc, total=None)
        pc += train_iters * 3 * (batch * pv + pc)              # forward + backward on each batch
    elif name == "oampnet":
        # as defined (Eq. 3.10; adasr.mimo.mmnet.OAMPNet computes the same without the inverse):
        # per channel H H^T and tr(H^T H); per layer and vector: H x, ||r||^2, K = v^2 H H^T + c I,
        # its M x M inverse, W^ = v^2 H^T K^-1, W^ H and its trace, the scaled W, W r,
        # C = I - gamma W H and ||C||^2, ||W||^2, tau^2, the denoiser.
        # (The push-through identity would turn the M x M inverse into an n x n one.)
        pc = big_m * big_m * n + big_m * n
        pv = layers * (big_m * n + big_m + big_m * big_m + _inv(big_m) + n * big_m * big_m + n * big_m
                       + n * n * big_m + n + n * big_m + n * big_m + 2 * n * n + n * big_m + 4 + _denoiser(n, m))
    elif name == "detnet":
        # per channel H^T H; per vector H^T y; per layer G x, the two step sizes, the three dense
        # layers (4n -> 8n, 8n -> n m, 8n -> 2n), the soft output over the m levels, the residual mix
        pc = n * n * big_m
        pv = n * big_m + layers * (n * n + 2 * n + 4 * n * 8 * n + 8 * n * n * m + 8 * n * 2 * n
                                   + 2 * n * m + 2 * 3 * n)
    return dict(per_vector=pv, per_channel=pc, total=pv + pc / vectors)
