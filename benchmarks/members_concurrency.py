"""K members against one member on the same images (``python -m benchmarks.members_concurrency``).

Embeds the image pool (the 170 shared images) from a cold cache with subsets of the trained 8-member
run's members: the zero-shot backbone alone, one head member, and all of them. Head members share one
backbone pass and run as one batched product (``StackedHeads``), so K members should cost about what
one does. Reports the best of ``--repeat`` runs and the ratio to one head member.
"""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from benchmarks.common import (
    base_parser,
    machine,
    pool,
    save,
    setup_env,
    table,
    trained_run,
)

TARGET_RATIO = 1.3


def member_subset(run: Path, names: list[str], into: Path) -> Path:
    """A members folder with only ``names`` of the run's members (what MemberSet reads)."""
    members = run / "members"
    specs = [s for s in json.loads((members / "members.json").read_text()) if s["name"] in names]
    if into.exists():
        shutil.rmtree(into)
    into.mkdir(parents=True)
    (into / "members.json").write_text(json.dumps(specs))
    for s in specs:
        src = members / f"{s['name']}.safetensors"
        if src.exists():
            shutil.copy(src, into / src.name)
    return into


def main(argv=None) -> dict:
    parser = base_parser(__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    setup_env(args.work)

    from ctxsim.embedding.cache import EmbeddingCache
    from ctxsim.members.inference import MemberSet

    images, _ = pool(args.work)
    run = trained_run(args.work, 8)
    meta = json.loads((run / "run.json").read_text())
    specs = json.loads((run / "members" / "members.json").read_text())
    heads = [s["name"] for s in specs if s["kind"] == "head"]
    subsets = {"zero-shot only": ["zeroshot"], "1 head member": heads[:1], f"{len(specs)} members ({len(heads)} heads)": [s["name"] for s in specs]}

    rows = []
    for label, names in subsets.items():
        members = MemberSet(member_subset(run, names, args.work / "subsets" / label.replace(" ", "_")), meta["backbone"])
        members.embed(images[:4], EmbeddingCache(), progress=False)  # warm-up (thread pools, first allocations)
        best = float("inf")
        for _ in range(args.repeat):
            start = time.perf_counter()
            out = members.embed(images, EmbeddingCache(), progress=False)  # a fresh cache: every image is embedded
            best = min(best, time.perf_counter() - start)
        rows.append({"members": label, "k": len(names), "seconds": round(best, 3), "images_per_s": round(len(images) / best, 1),
                     "outputs": len(out)})
    one = next(r["seconds"] for r in rows if r["members"] == "1 head member")
    for r in rows:
        r["ratio_to_one_member"] = round(r["seconds"] / one, 3)
    ratio = rows[-1]["ratio_to_one_member"]
    result = {"benchmark": "members_concurrency", "machine": machine(), "images": len(images), "repeat": args.repeat,
              "rows": rows, "target": {"k_members_over_one_at_most": TARGET_RATIO, "ratio": ratio, "met": ratio <= TARGET_RATIO}}
    table(rows, ["members", "k", "seconds", "images_per_s", "ratio_to_one_member"],
          title=f"Embedding {len(images)} images from a cold cache: K members vs one (CPU, best of {args.repeat})")
    save("members_concurrency", result)
    return result


if __name__ == "__main__":
    main()
