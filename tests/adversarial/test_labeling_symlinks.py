"""Symlinks under the image root must never let the server hand out a file outside it: not at
plan time (``label plan``, ``label serve``'s plan check) and not when a link is retargeted while
the server runs. Each table row is one case."""
import os
from pathlib import Path

import httpx
import pytest
from PIL import Image

from ctxsim.cli import main
from ctxsim.errors import InputError
from ctxsim.labeling.app import create_app
from ctxsim.labeling.pool import list_images

from ..labeling.helpers import TOKENS, make_image_tree, write_plan_csv

ALICE = TOKENS["alice"]
#: Bytes that only the files outside the root hold (a valid PNG would pass every image check).
MARKER = b"OUTSIDE-THE-IMAGE-ROOT-d41d8cd98f00"

# While the server runs, a link under the root is retargeted outside it:
# (the link, relative to the root; its first target, in the root; its later target, in the
#  outside folder; the image path the plan names)
RETARGETED = [
    ("shoes/link.png", "shoes/img1.png", "secret.png", "shoes/link.png"),  # a file link
    ("linked", "shoes", "secrets", "linked/img1.png"),  # a folder link
    ("shoes/link.png", "shoes/img1.png", "hop.png", "shoes/link.png"),  # to an outside link to the secret
    ("shoes/link.png", "shoes/img1.png", "missing.png", "shoes/link.png"),  # dangling
    ("shoes/link.png", "shoes/img1.png", "/etc/hostname", "shoes/link.png"),  # the reported case
]

# Links present when the plan is made: (the link, relative to the root; its target, "root:REL" or
# "outside:REL"; whether `label plan` may list it)
PLANNED = [
    ("shoes/evil.png", "outside:real.png", False),
    ("shoes/hop.png", "outside:hop-to-real.png", False),
    ("shoes/twin.png", "root:shoes/img0.png", True),  # a link that stays inside is an image like any other
    ("stolen", "outside:pngs", False),  # a folder link: not walked
    ("shoes/self.png", "root:shoes/self.png", False),  # a loop
]


@pytest.fixture
def outside(tmp_path):
    """Files outside the image root: the secret (marker bytes) and real PNGs holding the marker."""
    out = tmp_path / "outside"
    (out / "secrets").mkdir(parents=True)
    (out / "secret.png").write_bytes(MARKER)
    (out / "secrets" / "img1.png").write_bytes(MARKER)
    os.symlink(out / "secret.png", out / "hop.png")
    make_image_tree(out / "pngs", {"": 0}, flat=3)
    Image.new("RGB", (8, 8)).save(out / "real.png", pnginfo=_marked())
    os.symlink(out / "real.png", out / "hop-to-real.png")
    return out


def _marked():
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("secret", MARKER.decode())
    return info


def retarget(link, target):
    """Point ``link`` at ``target`` in one step, as an attacker with write access would."""
    tmp = link.with_name(link.name + ".new")
    os.symlink(target, tmp)
    os.replace(tmp, link)


@pytest.mark.server
@pytest.mark.parametrize("link, first, later, image", RETARGETED, ids=[f"{r[0]}->{r[2]}" for r in RETARGETED])
def test_a_link_retargeted_outside_the_root_is_never_served(tmp_path, outside, live_server, link, first, later, image):
    root = tmp_path / "images"
    make_image_tree(root)
    os.symlink(root / first, root / link)
    plan = write_plan_csv(root / "plan.csv", [(image, "shoes/img2.png", "shoes/img3.png")])
    tokens = tmp_path / "tokens.csv"
    tokens.write_text(f"name,token\nalice,{ALICE}\n")
    server = live_server(plan, tmp_path / "votes.sqlite", "--tokens", str(tokens))
    url = f"{server.url}/api/{ALICE}/images/{image}"
    before = httpx.get(url)
    assert before.status_code == 200 and before.content == (root / image).read_bytes()  # served while inside

    retarget(root / link, later if os.path.isabs(later) else outside / later)
    after = httpx.get(url)
    assert after.status_code in (403, 404), after.text
    assert MARKER not in after.content and b"root:" not in after.content
    if os.path.isfile("/etc/hostname") and later == "/etc/hostname":
        assert Path("/etc/hostname").read_bytes().strip() not in after.content


def make_links(root, outside):
    for link, target, _ in PLANNED:
        side, rel = target.split(":", 1)
        os.symlink((root if side == "root" else outside) / rel, root / link)


def test_label_plan_lists_only_links_that_stay_in_the_root(tmp_path, outside, capsys):
    root = tmp_path / "images"
    make_image_tree(root)
    make_links(root, outside)
    listed = list_images(root)
    for link, _, planned in PLANNED:
        assert any(p == link or p.startswith(link + "/") for p in listed) == planned, link
    out = tmp_path / "plan.csv"
    assert main(["label", "plan", "--images", str(root), "--n", "60", "--out", str(out)]) == 0
    text = out.read_text()
    assert all(link not in text for link, _, planned in PLANNED if not planned)


def test_serve_refuses_a_plan_naming_a_link_outside_the_root(tmp_path, outside):
    root = tmp_path / "images"
    make_image_tree(root)
    make_links(root, outside)
    bad = [link for link, target, _ in PLANNED if target.startswith("outside:") and link.endswith(".png")]
    plan = write_plan_csv(root / "plan.csv", [(link, "shoes/img2.png", "shoes/img3.png") for link in bad])
    with pytest.raises(InputError, match="outside the image root") as err:
        create_app(plan, tmp_path / "votes.sqlite", tokens=TOKENS)
    assert [p.row for p in err.value.problems] == list(range(1, len(bad) + 1))
