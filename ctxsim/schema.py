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
#: Member names: the zero-shot backbone and the member trained on every context.
ZEROSHOT, GLOBAL = "zeroshot", "global"
CONTEXT_MEMBER_PREFIX = "context-"


def context_member_name(context: str) -> str:
    return f"{CONTEXT_MEMBER_PREFIX}{context}"
