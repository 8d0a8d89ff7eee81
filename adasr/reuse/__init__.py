"""RECL model reuse: an expert zoo, a gating network, a safety checker and a retraining scheduler.

* `zoo`: `BaseModel` (the bundled supernet package), `Expert` (a sparse delta + metadata), `Zoo`
  (safetensors + JSON on disk), `delta_record` (an expert as a stream-codec record).
* `gating`: `GatingNet` (small CNN: LR frame -> predicted PSNR gain of each expert) that grows
  with the zoo, `GatingSelector` (labelled frame memory, incremental updates, weights saved next to the zoo).
* `safety`: `safety_check` (the best of top-K, current and last retrained on labelled frames).
* `scheduler`: `RetrainJob` (sparse fine-tuning by micro-windows, `adasr.stream.adapt`), the
  schedulers `InBand` (RECL Algorithm 4), `RoundRobin` (AMS) and `OutOfBand` (Ekya-style).
* `policy`: `Admission` (alpha margin, queue gamma) and `Pruner` (fewer than eta picks in q).
* `controller`: `Controller.on_window(channel, lr, hr)`, the interface a server calls;
  `Controller.save` / `Controller.open` keep the zoo and the gating network's weights.
* `live`: `LiveReuse.attach(hub, folder)`: the controller on `adasr.serve`'s live channels
  (`adasr serve --zoo DIR`): scene changes answered from the zoo, then by retraining.
"""

__all__ = []
