"""Write a bundled codec package's level as the generic single model file of its scale.

The generic model is what model streaming (`adasr encode`, `adasr serve`, `bench codec`, `bench live`)
starts from and adapts: a level of the codec-trained family of about ESPCN's size.

    .venv/bin/python scripts/export_generic.py adasr/models/sr_x2-codec.adasr x2-d5-w16-e1-k3-s1-b:r,r,r,r,r-up:bic \
        adasr/models/default_x2.safetensors
"""

from __future__ import annotations

import sys

from adasr.modelfile import ModelSpec, save_model
from adasr.package import load_package


def main(package: str, config_id: str, out: str) -> None:
    pkg = load_package(package)
    (level,) = [lv for lv in pkg.family if lv.config.id == config_id]
    model = pkg.level_model(level)
    spec = ModelSpec(arch="subnet", args={"config": config_id}, scale=pkg.scale,
                     info={"source": f"{package}: {config_id}", "trained_on": "codec-compressed LR"})
    save_model(out, model, spec)
    print(f"{out}: {config_id}, {sum(p.numel() for p in model.parameters()):,} parameters")


if __name__ == "__main__":
    main(*sys.argv[1:])
