"""``ctxsim index build`` and ``ctxsim search``: catalogue indexes and top-k search in context."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from ctxsim.atomic import write_text_atomic
from ctxsim.commands import check_outputs
from ctxsim.compare.model_uri import load_comparator
from ctxsim.console import print_table
from ctxsim.errors import EXIT_INVALID_INPUT
from ctxsim.reports.gallery import Thumbnailer
from ctxsim.retrieval.index import build_index
from ctxsim.retrieval.page import write_search_page


def index_build(args) -> int:
    if args.batch_images < 1:
        print("error: --batch-images must be at least 1", file=sys.stderr)
        return EXIT_INVALID_INPUT
    check_outputs((args.out, True))
    comparator = load_comparator(args.model, device=args.device, progress=False)
    result = build_index(comparator, args.images, args.out, model=args.model, uri=args.milvus, batch_images=args.batch_images,
                         skip_bad_images=args.skip_bad_images)
    print(f"{result.images} images: {result.added} added, {result.already} already indexed, {len(result.bad)} skipped -> {result.index}")
    for problem in result.bad:
        print(problem, file=sys.stderr)
    return 0


def search(args) -> int:
    if args.k < 1 or args.rerank < 0:
        print("error: --k must be at least 1 and --rerank at least 0", file=sys.stderr)
        return EXIT_INVALID_INPUT
    check_outputs((args.out, False), (args.html, False))
    comparator = load_comparator(args.model, device=args.device, progress=False)
    results = comparator.search(args.query, k=args.k, index=args.index, rerank=args.rerank, ranking=args.ranking)
    if args.out and str(args.out).endswith(".json"):
        write_text_atomic(args.out, json.dumps(results.to_dicts(), indent=1))
    elif args.out:
        write_text_atomic(args.out, results.write_csv())
    if args.html:
        write_search_page(results, str(Path(args.query).resolve()), args.html, Thumbnailer())
    if not args.out:
        print_table(results.to_dicts(), title=f"{args.query}: context {results['context'][0] if results.height else '-'}")
    return 0
