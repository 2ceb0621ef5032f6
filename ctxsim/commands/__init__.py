"""What the ``ctxsim`` commands do, one module per command group. :mod:`ctxsim.cli` parses the arguments
and names each handler as ``"module:function"``, loaded only when its command runs: ``ctxsim --help``
imports no model stack, and a command imports only what it needs (a warm ``compare`` no torch)."""
from __future__ import annotations

import logging

from ctxsim.atomic import write_problem
from ctxsim.errors import InputError, Problem

log = logging.getLogger("ctxsim")


def check_outputs(*targets: tuple[str | None, bool]) -> None:
    """Refuse, before any work, outputs that cannot be written: (path, is a folder) pairs, None skipped."""
    problems = [Problem(str(path), reason) for path, folder in targets
                if path is not None and (reason := write_problem(path, folder=folder)) is not None]
    if problems:
        raise InputError(problems)
