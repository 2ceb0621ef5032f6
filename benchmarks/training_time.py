"""Training time per member on the CPU, on the shared data (``python -m benchmarks.training_time``).

Embeds the shared images once (EfficientNet-Lite0), then times one full fit of every member of the
default configuration (global, and one per declared context) as ``ctxsim train`` runs it, and a
few LoRA steps for scale (LoRA members are meant for a GPU). Writes ``results/training_time.json``.
"""
from __future__ import annotations

import time

import numpy as np

from benchmarks.common import base_parser, machine, pool, save, setup_env, table

#: LoRA steps timed: each embeds the unique images of a small batch at full resolution, forward and backward.
LORA_STEPS = 3
LORA_BATCH = 16


def main(argv=None) -> dict:
    args = base_parser(__doc__).parse_args(argv)
    setup_env(args.work)

    import torch

    from ctxsim.config import TrainConfig
    from ctxsim.data.triplets import read_triplets
    from ctxsim.embedding.cache import EmbeddingCache, embed_images, preprocess_images
    from ctxsim.members.backbones import create_backbone
    from ctxsim.members.config import MemberConfig
    from ctxsim.members.member import train_head, train_lora
    from ctxsim.members.training import Triplets
    from ctxsim.train.pipeline import image_table, labels

    cfg = TrainConfig()
    _, csvs = pool(args.work)
    df = read_triplets(csvs)
    paths, idx = image_table(df)
    y, weight = labels(df)
    triplets = Triplets(idx["ref"], idx["a"], idx["b"], y, weight)
    start = time.perf_counter()
    features = torch.as_tensor(embed_images(paths, create_backbone(cfg.backbone), EmbeddingCache(), progress=False))
    embed_seconds = time.perf_counter() - start

    rows = []
    contexts = df["context"].to_numpy()
    for name, mask in [("global", np.ones(len(y), bool))] + [(f"context-{c}", contexts == c) for c in sorted(set(contexts))]:
        own = triplets.subset(mask)
        start = time.perf_counter()
        _, history = train_head(features, own, cfg.member, desc=name, progress=False)
        seconds = time.perf_counter() - start
        epochs = len(history["val_accuracy"]) - 1  # entry 0 is the untrained head
        per_epoch = min(len(own), cfg.member.batch_size * cfg.member.max_steps_per_epoch)
        rows.append({"member": name, "kind": "head", "triplets": len(own), "epochs": epochs, "seconds": round(seconds, 2),
                     "triplets_per_s": round(per_epoch * epochs / seconds)})

    pixels = preprocess_images(paths, create_backbone(cfg.backbone, pretrained=False).preprocess)
    small = triplets.subset(np.arange(len(y)) < LORA_STEPS * LORA_BATCH * 4)
    lora_cfg = MemberConfig(kind="lora", epochs=1, batch_size=LORA_BATCH, max_steps_per_epoch=LORA_STEPS)
    start = time.perf_counter()
    train_lora(cfg.backbone, pixels, small, lora_cfg, desc="lora", progress=False)
    lora_seconds = time.perf_counter() - start
    rows.append({"member": f"lora ({LORA_STEPS} steps of {LORA_BATCH}, + validation)", "kind": "lora", "triplets": len(small),
                 "epochs": 1, "seconds": round(lora_seconds, 2), "triplets_per_s": round(LORA_STEPS * LORA_BATCH / lora_seconds, 1)})

    result = {"benchmark": "training_time", "machine": machine(), "torch_threads": torch.get_num_threads(),
              "images": len(paths), "embed_seconds": round(embed_seconds, 2), "members": rows}
    table(rows, ["member", "kind", "triplets", "epochs", "seconds", "triplets_per_s"],
          f"Training time per member (CPU; embedding {len(paths)} images took {embed_seconds:.1f} s)")
    save("training_time", result)
    return result


if __name__ == "__main__":
    main()
