"""ctxsim.labeling: collect 2AFC judgements.

``plan`` chooses triplets (over ``pool``), ``session``/``store``/``queue`` keep a labeling session
in SQLite, ``app`` serves it (FastAPI, page in ``static/``), ``export`` turns votes into a
labelled triplet CSV and rates annotators, ``cli`` adds ``ctxsim label plan|serve|export``.
Importing this package imports nothing heavy.
"""
