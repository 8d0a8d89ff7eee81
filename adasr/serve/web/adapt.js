// The player's adaptation, DySR-style, from measured frame times (no browser API here: Node runs it in
// tests/serve/test_web_adapt.py): the level switcher with its floor and probes, and the lowered display rate.

// With floor (?floor=bicubic|canvas) there is one more step below the smallest level: level -1, the LR
// frame upscaled alone (no network), taken as soon as level 0's frame time misses the budget. From the
// floor, level 0 is probed every `backoff` (4) floor frames: run on the frame just shown, in the time left
// before the next frame is due (its output not shown), so a probe that fails costs at most its overrun
// past that time instead of a late frame; the page comes back to level 0 when a probe fits 80 % of the
// budget, and after a probe of over two frame periods it waits (see observe). A level's time estimate
// rises at once with a slower frame and falls smoothly (EWMA), so the first frame that misses moves the
// level down; a level switched to is measured afresh.
export class Switcher {
  constructor(levels, periodMs, fixed, start, floor = false) {
    this.cost = levels.map((l) => Math.max(1, l.macs || l.params));
    this.period = periodMs;
    this.fixed = fixed;
    this.cur = start;
    this.est = levels.map(() => null);
    this.calm = 0;
    this.cooldown = 0;
    this.floor = floor;
    this.backoff = 4;
    this.probeDue = false;
    this.lastProbe = 0;
  }

  // predicted SR time of level j under the load the current level's last frames ran under
  predict(j) {
    return this.est[this.cur] * (this.cost[j] / this.cost[this.cur]);
  }

  to(j, cooldown) {
    this.cur = j;
    if (j >= 0) this.est[j] = null;
    this.calm = 0;
    this.cooldown = cooldown;
  }

  observe(k, ms, ready) {
    const budget = 0.9 * this.period;
    if (k < 0) { // at the floor: probe level 0 after `backoff` frames
      this.calm += 1;
      if (this.cur < 0 && this.calm >= this.backoff && ready(0)) {
        this.calm = 0;
        // a probe longer than two frame periods delays the next shown frame past its due time: after one
        // that long, wait (its time decays by 20 % a skipped turn) rather than probe again
        if (this.lastProbe > 2 * this.period) this.lastProbe *= 0.8;
        else this.probeDue = true;
      }
      return this.cur;
    }
    // up at once (a frame that misses acts on the next frame), down smoothly
    const old = this.est[k];
    this.est[k] = old === null || k !== this.cur || ms > old ? ms : 0.6 * old + 0.4 * ms;
    if (this.fixed || k !== this.cur) return this.cur;
    if (this.cooldown > 0) this.cooldown -= 1;
    this.calm = ms < 0.7 * budget ? this.calm + 1 : 0;
    if (this.floor && this.cur === 0 && this.est[0] > budget) { // even level 0 misses: the floor
      this.to(-1, 0);
      return this.cur;
    }
    if (this.est[k] > budget && this.cur > 0) { // too slow now: the best level predicted to fit, else the smallest
      let j = this.cur - 1;
      while (j > 0 && (this.predict(j) > budget || !ready(j))) j -= 1;
      if (this.floor && j === 0 && this.predict(0) > budget) this.to(-1, 0); // straight to the floor
      else if (ready(j)) this.to(j, 4);
    } else if (this.cooldown === 0 && this.calm >= 8 && ready(this.cur + 1) && this.predict(this.cur + 1) < 0.8 * budget) {
      this.to(this.cur + 1, 8);
    }
    return this.cur;
  }

  // level 0's time on a probe from the floor
  probed(ms) {
    this.probeDue = false;
    this.lastProbe = ms;
    if (this.cur < 0 && ms < 0.8 * 0.9 * this.period) {
      this.to(0, 4);
      this.est[0] = ms;
    }
  }
}

// The lowered display rate (?rate=auto, adaptive only): the page shows every div-th frame of the stream
// (div 1..4) and says so. div starts as the smallest that gives level 0 twice its measured time (on a
// blank frame, when it loaded) per shown frame; while playing, from level 0's last 12 frame times: one
// step down when even their lower quartile (the calm ones, not a burst) is over 90 % of the shown frames'
// period, one step up when their upper quartile is under half the faster rate's period (twice the time). The frames left out are counted
// (stats.thinned) and are not in the timeline whose deadlines are counted.
export class Rate {
  constructor(base, on) { this.base = base; this.on = on; this.div = 1; this.l0 = []; }
  get period() { return this.base * this.div; }
  start(level0Ms) {
    if (!this.on || !(level0Ms > 0)) return;
    this.div = 1;
    while (this.div < 4 && 2 * level0Ms > this.period) this.div += 1;
  }
  observe(k, ms) {
    if (!this.on || k !== 0) return false;
    this.l0.push(ms);
    if (this.l0.length > 12) this.l0.shift();
    if (this.l0.length < 6) return false;
    const sorted = this.l0.slice().sort((a, b) => a - b);
    const low = sorted[Math.floor(sorted.length / 4)], high = sorted[Math.floor((3 * sorted.length) / 4)];
    const before = this.div;
    if (low > 0.9 * this.period && this.div < 4) this.div += 1;
    else if (this.div > 1 && high < 0.5 * this.base * (this.div - 1)) this.div -= 1;
    if (this.div !== before) this.l0 = [];
    return this.div !== before;
  }
}
