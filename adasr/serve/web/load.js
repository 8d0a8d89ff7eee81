// A busy worker for tests and `adasr bench browser`: spins for busyMs, rests idleMs, again; with
// burstMs > 0 it spins only in every other burstMs-long window (a bursty load).
let cfg = null;
onmessage = (e) => { cfg = e.data; tick(); };
function tick() {
  const now = performance.now();
  const on = !cfg.burstMs || Math.floor((performance.timeOrigin + now - cfg.t0) / cfg.burstMs) % 2 === 0;
  if (on) {
    const end = now + cfg.busyMs;
    while (performance.now() < end) { /* spin */ }
    setTimeout(tick, cfg.idleMs);
  } else setTimeout(tick, 20);
}
