"""Settings of member training (torch-free: ``ctxsim.config`` imports it)."""
from __future__ import annotations

from dataclasses import dataclass, field

from ctxsim.schema import HEAD_KIND, TRAINED_KINDS

#: Losses on distance margins (members/losses.py implements them under these names).
HINGE, CE_HINGE = "hinge", "ce_hinge"
LOSS_CHOICES = (HINGE, CE_HINGE)
GLOBAL_INIT, ZEROSHOT_INIT = "global", "zeroshot"
CONTEXT_INIT_CHOICES = (GLOBAL_INIT, ZEROSHOT_INIT)
REFIT_NONE, REFIT_RUN, REFIT_ALL = "none", "run", "all"
REFIT_CHOICES = (REFIT_NONE, REFIT_RUN, REFIT_ALL)
MEMORY_PRIMARY, MEMORY_ALL = "primary", "all"
MEMORY_VIEWS_CHOICES = (MEMORY_PRIMARY, MEMORY_ALL)
#: Rows a memory's epochs are chosen on: a share of the rows its (refitted) head trained on too, or rows held
#: from a second head trained without them (members/memory.py).
MEMORY_VALIDATION_SHARED, MEMORY_VALIDATION_HELD = "shared", "held"
MEMORY_VALIDATION_CHOICES = (MEMORY_VALIDATION_SHARED, MEMORY_VALIDATION_HELD)
#: Which member carries a view's memory: its global member, or a member of its own (``memory``) beside a
#: plain global one, so the stacker can answer rows that mix new and known images without the offsets.
MEMORY_ON_GLOBAL, MEMORY_OWN = "global", "own"
MEMORY_MEMBER_CHOICES = (MEMORY_ON_GLOBAL, MEMORY_OWN)
#: L2 penalty on a member's per-image offsets (members/memory.py): ``memory_l2 x sum ||o_i||^2``.
MEMORY_L2 = 3e-3
#: Width of a head member's hidden layer: 256 since the refit (+0.6 points of majority accuracy on known
#: materials triplets in benchmarks/accuracy.py; 128 before).
DEFAULT_HIDDEN = 256


@dataclass
class MemberConfig:
    """Hyper-parameters of one member's training (named defaults; a TOML [member] table overrides)."""

    kind: str = HEAD_KIND  # "head" (MLP on frozen features) or "lora" (adapters in the backbone)
    hidden: int = DEFAULT_HIDDEN
    loss: str = HINGE  # "hinge" or "ce_hinge"
    # The loss of the members of the run's other views (not the primary backbone's); none: ``loss``. The mix
    # (hinge for the primary view and its memory, ce_hinge for the others) gained +0.3 points on new shoe
    # images, level on materials (benchmarks/README.md, "A loss mix across views"); ce_hinge everywhere loses
    # on known materials triplets.
    extra_views_loss: str | None = CE_HINGE
    margin: float = 0.05
    epochs: int = 20
    # Triplets name few images: a step embeds each unique image of its batch once, so large batches
    # cost little more than small ones.
    batch_size: int = 4096
    max_steps_per_epoch: int = 25
    lr: float = 1e-3
    weight_decay: float = 1e-2
    patience: int = 3
    val_fraction: float = 0.2  # share of images held out for early stopping
    min_val_triplets: int = 20
    # Head members: after early stopping, train a fresh head on all their triplets (the validation images'
    # too: about half the rows at val_fraction 0.2) for the number of epochs it chose. "run" (default): the
    # run's members, not their out-of-fold copies; "all": the copies too; "none": off. See benchmarks/README.md.
    refit: str = REFIT_RUN
    lora_rank: int = 8
    lora_alpha: int = 16
    lora_targets: list[str] = field(default_factory=list)  # empty: the backbone's default (Backbone.lora_targets)
    # A context member starts from the global member of its view (fitted on the same folds) and is
    # pulled toward it (pull x squared distance of the weights), so a sparse context gains without
    # forgetting what the global member knows. "zeroshot": start from an untrained head instead.
    context_init: str = GLOBAL_INIT
    pull: float = 1.0
    # Known images (members/memory.py): the primary view's global member also learns a per-image offset
    # for its training images (zero for any other image), L2-penalised with memory_l2. On by default:
    # it is what moves known-image accuracy (benchmarks/README.md, "Known images").
    memory: bool = True
    memory_l2: float = MEMORY_L2
    memory_views: str = MEMORY_PRIMARY  # whose global member has memory: "primary" view's, or "all" views'
    # The loss the offsets train with; none: the member's own. After a head refitted on all its triplets, most
    # training rows already clear the hinge's margin and give the offsets no gradient; cross-entropy keeps
    # pulling toward confident answers.
    memory_loss: str | None = None
    # "held": the offsets' epochs are chosen on rows that a second head, trained without them, never saw; then the
    # offsets train on all rows on the member's head for that many epochs (one more head fit per memory member).
    memory_validation: str = MEMORY_VALIDATION_SHARED
    memory_member: str = MEMORY_ON_GLOBAL  # the global member remembers, or a member of its own ("own")

    def __post_init__(self):
        for name, choices in (("kind", TRAINED_KINDS), ("loss", LOSS_CHOICES), ("context_init", CONTEXT_INIT_CHOICES),
                              ("refit", REFIT_CHOICES), ("memory_views", MEMORY_VIEWS_CHOICES),
                              ("memory_validation", MEMORY_VALIDATION_CHOICES), ("memory_member", MEMORY_MEMBER_CHOICES)):
            if getattr(self, name) not in choices:
                raise ValueError(f"member.{name}: expected one of {', '.join(choices)}, got {getattr(self, name)!r}")
        for name in ("extra_views_loss", "memory_loss"):
            if getattr(self, name) not in (None, *LOSS_CHOICES):
                raise ValueError(f"member.{name}: expected none or one of {', '.join(LOSS_CHOICES)}, "
                                 f"got {getattr(self, name)!r}")

    def view_loss(self, primary: bool) -> str:
        """The loss of a member of the primary view, or of another view."""
        return self.loss if primary or self.extra_views_loss is None else self.extra_views_loss
