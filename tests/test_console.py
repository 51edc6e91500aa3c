"""What a user sees when the output is not a terminal (a pipe, a CI log), with --quiet, in log.txt, and in
--list: unwrapped lines, occasional plain progress lines instead of bars, the tables in log.txt too, whole
recipe descriptions with each recipe's mode."""
import re

import pytest

from reidlab import progress
from reidlab.runs.catalogue import recipe_description, recipe_mode
from reidlab.runs.config import RECIPES
from tests.test_unsup import TINY


def test_a_piped_run_writes_whole_lines_and_log_txt_has_what_the_console_had(tiny_root, tmp_path, main_in_process):
    """In-process under pytest's capture, stdout is not a terminal, as in a pipe (a fresh process: bad_inputs)."""
    code, out, err = main_in_process(*TINY, "--data-root", tiny_root, "--output", tmp_path, "--name", "p",
                                     "--epochs", "1")
    assert code == 0, err
    assert not re.search(r"━+\s+\d+%", out) and "\x1b[" not in out      # no bars, no colour codes
    epoch = [line for line in out.splitlines() if " epoch 1: " in line]
    assert len(epoch) == 1 and "mAP" in epoch[0] and len(epoch[0]) > 120    # one line, not wrapped at 80
    log = (tmp_path / "p" / "log.txt").read_text()
    assert "train 16 ids / 200 images" in log and "┃ epoch ┃" in log and " epoch 1: " in log
    code, out, _ = main_in_process(*TINY, "--data-root", tiny_root, "--output", tmp_path, "--name", "q",
                                   "--epochs", "1", "--quiet")
    assert code == 0 and " INFO " not in out and not re.search(r"━+\s+\d+%", out)
    assert " epoch 1: " in (tmp_path / "q" / "log.txt").read_text()


def test_plain_progress_lines(monkeypatch, capsys):
    monkeypatch.setattr(progress, "PLAIN_EVERY", 0.0)
    monkeypatch.setitem(progress.quiet, "progress", False)
    assert list(progress.track(range(3), "counting")) == [0, 1, 2]
    lines = capsys.readouterr().out.splitlines()
    assert [re.sub(r"^\S+ ", "", x).split(", ")[0] for x in lines] == [
        "counting: 1/3 (33%)", "counting: 2/3 (67%)", "counting: 3/3 (100%)", "counting: done"]
    monkeypatch.setitem(progress.quiet, "progress", True)
    assert list(progress.track(range(3), "counting")) == [0, 1, 2] and capsys.readouterr().out == ""


@pytest.mark.parametrize("columns", ["80", "200"])
def test_list_shows_whole_descriptions_and_modes(main_in_process, monkeypatch, columns):
    monkeypatch.setenv("COLUMNS", columns)               # a terminal's width, or rich's default off a terminal
    code, out, _ = main_in_process("--list")
    assert code == 0
    flat = " ".join(re.sub(r"[│┃]", " ", out).split())
    for p in sorted(RECIPES.glob("*.yaml")):
        text = recipe_description(p)
        assert len(text) > 40 and f"{p.stem} ({recipe_mode(p)}): {text}" in flat, p.stem
    assert recipe_description(RECIPES / "aaformer_market1501.yaml").endswith("Table II)")
    # whole sentences: a paragraph that introduces the table ends at the sentence before (it ended "They are")
    assert recipe_description(RECIPES / "daaf_bot_market1501.yaml").endswith("branches of section 3.")
    for p in sorted(RECIPES.glob("*.yaml")):
        assert not recipe_description(p).endswith((";", ",", ":", " are", " is")), p.stem
