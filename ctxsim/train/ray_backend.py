"""Member fits of ``ctxsim train`` as Ray tasks (``pip install ctxsim[ray]``; only ``train --ray`` imports Ray).

Each (member, fold) fit runs as one task, asking for a GPU for LoRA members when the cluster has one
(head members train on precomputed features, on CPUs).
"""
from __future__ import annotations

from collections.abc import Iterator

from ctxsim.compare.ray_backend import AUTO, connect, disconnect
from ctxsim.schema import LORA_KIND
from ctxsim.train.member_fits import MemberTrainer


def _fit_task(cfg, features, paths, job, device):
    """One (member, fold) fit inside a Ray worker: the same code as the single-machine loop."""
    import ray

    if ray.get_gpu_ids():
        device = "cuda"
    elif device.startswith("cuda"):
        device = "cpu"  # a task without a GPU of its own
    trainer = MemberTrainer(cfg, features, paths, device, progress=False)
    return trainer.fit(job)


def fit_members_ray(jobs, cfg, features, paths, *, device: str = "cpu", address: str | None = AUTO) -> Iterator[tuple]:
    """``(job, (weights, embeddings, history))`` for every fit job, as the Ray tasks finish."""
    started = connect(address)
    try:
        import ray

        cluster_gpus = ray.cluster_resources().get("GPU", 0) > 0
        features_ref, paths_ref = ray.put(features), ray.put(list(paths))
        task = ray.remote(_fit_task)
        pending = {}
        for job in jobs:
            wants_gpu = cluster_gpus and job.spec.kind == LORA_KIND  # head members fit on precomputed features
            ref = task.options(num_cpus=1, num_gpus=1 if wants_gpu else 0).remote(cfg, features_ref, paths_ref, job, device)
            pending[ref] = job
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                yield pending.pop(ref), ray.get(ref)
    finally:
        disconnect(started)

