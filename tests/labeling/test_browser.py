"""The labeling page in Debian's chromium, driven by Playwright: vote with keys and the mouse."""
import sqlite3
from urllib.parse import unquote

import polars as pl
import pytest

pytestmark = [pytest.mark.browser, pytest.mark.server]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-quic",
                 "--no-first-run", "--disable-component-update", "--disable-sync"]
#: Milliseconds the page gets to show the next triplet.
STEP_TIMEOUT_MS = 10_000


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


def shown(page) -> tuple[str, str, str]:
    """The triplet on screen and the image paths on the left and the right."""
    page.wait_for_selector("#task[data-state=ready]", timeout=STEP_TIMEOUT_MS)
    src = [unquote(page.get_attribute(sel, "src").split("/images/", 1)[1]) for sel in ("#left-img", "#right-img")]
    return page.get_attribute("#task", "data-triplet-id"), *src


def wait_progress(page, done: int, total: int) -> None:
    from playwright.sync_api import expect

    expect(page.locator("#progress-text")).to_have_text(f"{done} / {total}", timeout=STEP_TIMEOUT_MS)


def test_votes_by_keyboard_and_mouse_arrive_in_sqlite(browser, plan_csv, tmp_path, tokens_csv, live_server):
    db = tmp_path / "votes.sqlite"
    server = live_server(plan_csv, db, "--tokens", str(tokens_csv), "--control-rate", "0")
    urls = server.annotator_urls()
    assert set(urls) == {"alice", "bob", "carol"}
    plan = {r["id"]: r for r in pl.read_csv(plan_csv).iter_rows(named=True)}

    page = browser.new_page()
    page.goto(urls["alice"])
    expected = []
    actions = [  # (how, which side is chosen)
        (lambda: page.keyboard.press("ArrowLeft"), "left"),
        (lambda: page.keyboard.press("b"), "right"),
        (lambda: page.mouse.click(*center(page, "#left-img")), "left"),
        (lambda: page.click("#skip"), "skip"),
        (lambda: page.keyboard.press("ArrowRight"), "right"),
        (lambda: page.keyboard.press("a"), "left"),
        (lambda: page.click("#right"), "right"),
    ]
    for step, (act, side) in enumerate(actions):
        triplet, left, right = shown(page)
        t = plan[triplet]
        assert {left, right} == {t["a"], t["b"]}
        clicked = {"left": left, "right": right}.get(side)
        expected.append((triplet, {t["a"]: "A", t["b"]: "B", None: "skip"}[clicked]))
        act()
        wait_progress(page, step + 1, 10)

    with sqlite3.connect(db) as conn:
        got = conn.execute("SELECT triplet_id, answer, annotator, elapsed_ms FROM votes ORDER BY seq").fetchall()
    assert [(t, a) for t, a, _, _ in got] == expected
    assert {who for _, _, who, _ in got} == {"alice"} and all(ms is not None and ms >= 0 for *_, ms in got)

    for k in range(len(actions), 10):  # finish the plan
        shown(page)
        page.keyboard.press("ArrowLeft")
        wait_progress(page, k + 1, 10)
    page.wait_for_selector("#done:not([hidden])", timeout=STEP_TIMEOUT_MS)
    assert "All done" in page.inner_text("#done")
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT COUNT(DISTINCT triplet_id) FROM votes").fetchone()[0] == 10

    page.goto(f"{server.url}/label/not-a-real-token-000000")
    assert "Unknown annotator link" in page.content()
    page.close()


def center(page, selector):
    box = page.locator(selector).bounding_box()
    return box["x"] + box["width"] / 2, box["y"] + box["height"] / 2


@pytest.mark.e2e
def test_a_session_on_the_shared_images_from_plan_to_a_trainable_csv(browser, tmp_path, live_server, capsys):
    """As a user would: plan from the shared images, serve, three people vote in chromium, export,
    and the exported CSV is a valid labelled triplet file the models read."""
    from ctxsim.cli import main
    from ctxsim.demo import data_dir
    from ctxsim.data.triplets import validate

    data = data_dir()
    plan = tmp_path / "plan.csv"
    assert main(["label", "plan", "--images", str(data), "--n", "8", "--strategy", "balanced", "--out", str(plan)]) == 0
    planned = pl.read_csv(plan)
    assert sorted(planned["context"]) == ["materials"] * 4 + ["zappos"] * 4

    db = tmp_path / "votes.sqlite"
    server = live_server(plan, db, "--images", str(data), "--annotators", "3", "--control-rate", "0.25", "--control-gap", "1")
    urls = server.annotator_urls()
    assert len(urls) == 3
    for k, url in enumerate(urls.values()):
        page = browser.new_page()
        page.goto(url)
        steps = 0
        while page.get_attribute("#task", "data-state") != "done":
            page.wait_for_selector("#task[data-state=ready], #task[data-state=done]", timeout=STEP_TIMEOUT_MS)
            if page.get_attribute("#task", "data-state") == "done":
                break
            before = page.inner_text("#progress-text")
            page.keyboard.press("ArrowLeft" if (steps + k) % 3 else "ArrowRight")
            wait_changed(page, before)
            steps += 1
        page.close()
        assert steps >= 8  # every triplet, plus the repeated controls
    server.stop()

    out = tmp_path / "labelled.csv"
    assert main(["label", "export", "--db", str(db), "--out", str(out), "--min-votes", "3", "--report", str(tmp_path / "ann.csv")]) == 0
    labelled = pl.read_csv(out)
    assert labelled.height >= 1 and set(labelled["label"]) <= {"A", "B"}
    assert ((labelled["votes_a"] + labelled["votes_b"]) == 3).all()
    assert ((labelled["label"] == "A") == (labelled["votes_a"] > labelled["votes_b"])).all()
    assert validate(out, data, require_label=True).ok
    capsys.readouterr()
    assert main(["compare", "backbone:pixels", str(out), "--images", str(data), "--out", str(tmp_path / "scored.csv")]) == 0
    assert pl.read_csv(tmp_path / "scored.csv").height == labelled.height


def wait_changed(page, before: str) -> None:
    from playwright.sync_api import expect

    expect(page.locator("#progress-text")).not_to_have_text(before, timeout=STEP_TIMEOUT_MS)
