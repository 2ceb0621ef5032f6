"""The names every layer shares: triplet and scored-CSV columns, labels, prefixes, contexts, member
kinds and the decision threshold. The lowest layer: it imports nothing of ctxsim's."""
from __future__ import annotations

# -- triplet CSV -----------------------------------------------------------------------------------------
IMAGE_COLUMNS = ("ref", "a", "b")
LABEL = "label"
CONTEXT = "context"
ID = "id"
LABELS = ("A", "B")
LABEL_A, LABEL_B = LABELS
VOTE_COLUMNS = ("votes_a", "votes_b")
KNOWN_COLUMNS = (*IMAGE_COLUMNS, LABEL, CONTEXT, *VOTE_COLUMNS, ID)
#: Internal columns added on read: the source file, the 1-based data row and resolved image paths.
SOURCE, ROW = "_source", "_row"
PATH = {c: f"_{c}_path" for c in IMAGE_COLUMNS}
#: Internal columns start with this and never reach an output file.
INTERNAL_PREFIX = "_"

# -- scored CSV (what ``compare`` adds) ------------------------------------------------------------------
PROBABILITY = "p_a"  # P(A closer)
PREDICTION = "pred"
CORRECT = "correct"
MARGIN_PREFIX = "margin_"  # margin_<member>: d(R,B) - d(R,A) of one member (> 0: A closer)
BASELINE_PREFIX = "p_a_"  # p_a_<combiner>: a baseline ensemble's P(A closer)
OUTPUT_COLUMNS = (CONTEXT, PROBABILITY, PREDICTION, CORRECT)
#: ``pred`` is A when P(A closer) >= this.
DECISION_THRESHOLD = 0.5


def margin_column(member: str) -> str:
    return f"{MARGIN_PREFIX}{member}"


def baseline_column(combiner: str) -> str:
    return f"{BASELINE_PREFIX}{combiner}"


# -- contexts --------------------------------------------------------------------------------------------
#: Context given to triplets when no context is declared or discovered.
DEFAULT_CONTEXT = "all"
#: The row of a per-context table that sums over every context.
OVERALL = "(all)"

# -- members ---------------------------------------------------------------------------------------------
#: Member kinds: the pretrained backbone as it is, an MLP head on its frozen features, LoRA adapters in it.
ZEROSHOT_KIND, HEAD_KIND, LORA_KIND = "zeroshot", "head", "lora"
TRAINED_KINDS = (HEAD_KIND, LORA_KIND)
#: Member names: the zero-shot backbone, the member trained on every context, and (with
#: ``member.memory_member = "own"``) the global member's copy that also remembers its training images.
ZEROSHOT, GLOBAL, MEMORY = "zeroshot", "global", "memory"
CONTEXT_MEMBER_PREFIX = "context-"


def context_member_name(context: str) -> str:
    return f"{CONTEXT_MEMBER_PREFIX}{context}"


# -- trust: selective answers, explanations, out-of-context references ------------------------------------
#: ``pred`` of a row the model abstains on (``--target-accuracy``); ``pred_raw`` keeps its A/B choice.
ABSTAIN = "abstain"
PRED_RAW = "pred_raw"
ANSWERED = "answered"
#: ``why``: the members and contexts that moved ``p_a`` most; ``contrib_<feature>``: every feature's share.
WHY = "why"
CONTRIB_PREFIX = "contrib_"
#: Cosine similarity of a reference to its routed context's centroid, and whether it is below that
#: context's floor (a low percentile of the training references' similarities).
CONTEXT_SIMILARITY = "context_similarity"
OUT_OF_CONTEXT = "out_of_context"
#: Targets whose thresholds and expected coverage every run states, at ``DEFAULT_DELTA``.
COMMON_TARGETS = (0.90, 0.95, 0.99)
#: Default risk of the guarantee: accuracy on answered rows is >= target with probability 1 - delta.
DEFAULT_DELTA = 0.05
#: How many members/contexts ``why`` names.
WHY_TOP = 3


def contrib_column(feature: str) -> str:
    return f"{CONTRIB_PREFIX}{feature}"
