import subprocess
import sys

import pytest

from ctxsim.cli import main
from ctxsim.errors import InputError
from ctxsim.labeling import cli, export, plan
from ctxsim.labeling import vote_queue as queue
from ctxsim.labeling.session import read_tokens

from .helpers import write_plan_csv


def test_the_label_commands_import_nothing_heavy():
    code = ("import sys; from ctxsim.cli import build_parser; build_parser().parse_args(['label', 'export', '--db', 'x', '--out', 'y']);"
            "print(sorted(m for m in ('fastapi', 'uvicorn', 'starlette', 'torch', 'ctxsim.labeling.app') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_help_lists_the_label_commands(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["label", "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert all(c in out for c in ("plan", "serve", "export"))


def test_cli_defaults_are_the_librarys():
    assert cli.STRATEGIES == plan.STRATEGIES and cli.DEFAULT_POOL_FACTOR == plan.DEFAULT_POOL_FACTOR
    assert (cli.DEFAULT_CONTROL_RATE, cli.DEFAULT_CONTROL_GAP) == (queue.DEFAULT_CONTROL_RATE, queue.DEFAULT_CONTROL_GAP)
    assert (cli.DEFAULT_MIN_AGREEMENT, cli.DEFAULT_MIN_CONSISTENCY, cli.DEFAULT_MIN_CHECKS) == (
        export.DEFAULT_MIN_AGREEMENT, export.DEFAULT_MIN_CONSISTENCY, export.DEFAULT_MIN_CHECKS)


def test_serve_refuses_bad_settings_and_bad_plans_before_serving(plan_csv, image_root, tmp_path, capsys):
    db = tmp_path / "votes.sqlite"
    assert main(["label", "serve", str(plan_csv), "--db", str(db), "--control-rate", "1.5"]) == 2
    assert "control_rate" in capsys.readouterr().err
    elsewhere = write_plan_csv(tmp_path / "plan.csv", [("shoes/img0.png", "shoes/img1.png", "shoes/img2.png")])
    assert main(["label", "serve", str(elsewhere), "--db", str(db)]) == 2  # forgot --images
    err = capsys.readouterr().err
    assert "image file not found" in err and "pass --images ROOT" in err
    assert main(["label", "serve", str(plan_csv), "--db", str(db), "--tokens", str(tmp_path / "none.csv")]) == 2
    assert "tokens file not found" in capsys.readouterr().err


def test_tokens_files_are_checked(tmp_path):
    path = tmp_path / "tokens.csv"
    path.write_text("name,token\nalice,alice-token-0123456789\nbob,bob-token-0123456789ab\n")
    assert read_tokens(path) == {"alice": "alice-token-0123456789", "bob": "bob-token-0123456789ab"}
    path.write_text("name,secret\nalice,x\n")
    with pytest.raises(InputError, match="missing required column"):
        read_tokens(path)
    path.write_text("name,token\nalice,alice-token-0123456789\nalice,other-token-0123456789\n,x\n")
    with pytest.raises(InputError) as err:
        read_tokens(path)
    assert sorted((p.row, p.column) for p in err.value.problems) == [(2, "name"), (3, "name")]
