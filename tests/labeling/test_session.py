"""A labeling session: the plan is validated against its image root, and annotators are kept."""
from __future__ import annotations

import pytest

from ctxsim.errors import InputError
from ctxsim.labeling.session import open_session, read_plan, read_tokens

from .helpers import make_image_tree, write_plan_csv


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "images"
    return root, make_image_tree(root)


def test_plan_paths_become_root_relative(tree, tmp_path):
    root, images = tree
    plan = write_plan_csv(tmp_path / "plan.csv", [(images[0], images[1], images[2])])
    got_root, triplets = read_plan(plan, root)
    assert got_root == root.resolve()
    assert [(t.ref, t.a, t.b) for t in triplets] == [(images[0], images[1], images[2])]


def test_duplicate_ids_and_outside_images_are_refused_with_row_and_column(tree, tmp_path):
    root, images = tree
    outside = tmp_path / "elsewhere.png"
    outside.write_bytes((root / images[0]).read_bytes())
    plan = write_plan_csv(tmp_path / "plan.csv", [(images[0], images[1], images[2]), (images[1], images[2], "../elsewhere.png")],
                          ids=["same", "same"])
    with pytest.raises(InputError) as err:
        read_plan(plan, root)
    found = {(p.row, p.column) for p in err.value.problems}
    assert (2, "b") in found and (2, "id") in found


def test_annotators_persist_across_sessions(tree, tmp_path):
    root, images = tree
    plan = write_plan_csv(tmp_path / "plan.csv", [(images[0], images[1], images[2])])
    first = open_session(plan, tmp_path / "votes.sqlite", images=root, annotators=2)
    tokens = first.tokens()
    first.store.close()
    again = open_session(plan, tmp_path / "votes.sqlite", images=root, annotators=2)
    assert again.annotators == first.annotators and again.tokens() == tokens
    assert all(again.annotator_for(t) == name for name, t in tokens.items())
    assert again.annotator_for("not-a-token") is None
    again.store.close()


def test_tokens_file_needs_name_and_token(tmp_path):
    bad = tmp_path / "tokens.csv"
    bad.write_text("who,secret\nann,abcdefghijklmnop\n")
    with pytest.raises(InputError) as err:
        read_tokens(bad)
    assert {p.column for p in err.value.problems} == {"name", "token"}
