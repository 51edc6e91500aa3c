"""benchmarks/ablate.py, the one runner of the ablation tables: a table file's rows and seeds become runs, one
JSON line each; a finished run is skipped, a killed one continues from its checkpoint; a bad table stops with
exit 2 before any run. The shipped tables load and name recipes that exist."""
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from benchmarks import ablate
from reidlab.runs.config import build_config, parse_override

ROOT = Path(__file__).resolve().parents[1]


def write_table(path: Path, tiny_root, epochs: int = 2, **extra) -> Path:
    table = {"title": "tiny", "paper": "mAP", "recipe": "demo", "seeds": [1],
             "sets": [f"data.root={tiny_root}", "data.synthetic_size=tiny", "train.iters=2", f"train.epochs={epochs}",
                      "device=cpu", "test.eval_every=1"],
             "epochs": [1],
             "rows": [{"name": "plain", "paper": "80.0"},
                      {"name": "ca jaccard", "recipe": "demo_cajaccard", "paper": "84.8"}], **extra}
    path.write_text(yaml.safe_dump(table))
    return path


def test_rows_run_once_and_the_summary_says_them(tmp_path, tiny_root, capsys):
    table = write_table(tmp_path / "t.yaml", tiny_root, epochs=1,
                        evaluations=[{"name": "re-ranked", "sets": ["test.rerank=true"], "rows": ["plain"]}],
                        measure=["params"])
    out = tmp_path / "out"
    assert ablate.main([str(table), "--out", str(out)]) == 0
    lines = ablate.results(out)
    assert [(x["row"], x["seed"]) for x in lines] == [("plain", 1), ("ca jaccard", 1)]
    assert all(0 < x["mAP"] <= 1 and x["epoch"] == 1 and x["params_M"] > 0 for x in lines)
    assert "re-ranked" in lines[0]["evaluations"] and "evaluations" not in lines[1]
    assert not list(out.rglob("*.pt"))                                 # checkpoints go once the line is written
    text = capsys.readouterr().out
    assert "| plain | 1 |" in text and "| ca jaccard | 1 |" in text and "| plain, evaluated re-ranked | 1 |" in text
    assert ablate.main([str(table), "--out", str(out)]) == 0          # again: nothing left to run
    assert len(ablate.results(out)) == 2 and "done (results.jsonl)" in capsys.readouterr().out
    # a runner reads results.jsonl again before each run: one that another runner finished meanwhile is skipped
    lines = ablate.results(out)
    (out / "results.jsonl").write_text("")

    def train(row, seed, out_):
        assert row.name == "plain", "trained a run another runner had finished"
        with open(out_ / "results.jsonl", "a") as f:          # meanwhile, another runner finishes "ca jaccard"
            f.write(json.dumps(lines[1]) + "\n")
        return 2, out_ / "busy"                               # and holds "plain"
    real_train, ablate.train = ablate.train, train
    try:
        assert ablate.run_table(ablate.load_table(table), out, None, None, False) == 1
    finally:
        ablate.train = real_train
    assert [x["row"] for x in ablate.results(out)] == ["ca jaccard"]
    # a changed value is a new run, never the old result
    assert ablate.main([str(table), "--out", str(out), "--rows", "plain", "--set", "train.lr=1e-4", "--dry-run"]) == 0
    assert "plain-s1-" in capsys.readouterr().out


def test_a_killed_table_continues_where_it_stopped(tmp_path, tiny_root):
    table = write_table(tmp_path / "t.yaml", tiny_root, epochs=2, rows=[{"name": "plain"}])
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "benchmarks.ablate", str(table), "--out", str(out)]
    child = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)
    metrics = None
    deadline = time.time() + 240
    while time.time() < deadline:                     # killed once epoch 1 is in the run's metrics
        found = list(out.glob("plain-s1-*/metrics.jsonl"))
        if found and '"epoch": 1' in found[0].read_text():
            metrics = found[0]
            break
        time.sleep(0.5)
    import os
    os.killpg(child.pid, signal.SIGKILL)
    child.wait()
    assert metrics is not None and not ablate.results(out)
    assert subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True).returncode == 0
    epochs = [json.loads(x)["epoch"] for x in metrics.read_text().splitlines()]
    assert epochs[:2] == [0, 1] and epochs[-1] == 2 and epochs.count(1) == 1      # epoch 1 not trained again
    assert [x["epoch"] for x in ablate.results(out)] == [2]


@pytest.mark.parametrize("content,words", [
    ({"rows": []}, "at least one row"),
    ({"recipe": "demo", "rows": [{"name": "a"}], "colour": 1}, "unknown key(s) colour"),
    ({"rows": [{"name": "a"}]}, "has no recipe"),
    ({"recipe": "demo", "rows": [{"name": "a", "sets": ["train.lr"]}]}, "key=value"),
    ({"recipe": "demo", "rows": [{"name": "a"}, {"name": "a"}]}, "share a name"),
    ({"recipe": "demo", "rows": [{"name": "a"}], "evaluations": [{"name": "e", "rows": ["b"]}]}, "not in the table"),
    ({"recipe": "demo", "rows": [{"name": "a"}], "seeds": "1"}, "seeds"),
])
def test_a_bad_table_stops_before_any_run(tmp_path, capsys, content, words):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(content))
    assert ablate.main([str(path), "--out", str(tmp_path / "out")]) == 2
    assert words in capsys.readouterr().err and not (tmp_path / "out").exists()


def test_the_shipped_tables_build_every_run_config():
    tables = sorted(ablate.TABLES.glob("*.yaml"))
    assert tables
    for path in tables:
        table = ablate.load_table(path)
        for row in table.rows:
            cfg = build_config(row.recipe, [parse_override(s) for s in row.sets])
            assert cfg.train.epochs >= 1, (path.name, row.name)
        for ev in table.evaluations:
            [parse_override(s) for s in ev.sets]


def test_a_run_line_holds_its_last_epochs_losses_and_speed(tmp_path):
    """The last trained epoch's record (AAformer's token losses ce_global, ce_part1..) and the training images/s."""
    run = tmp_path / "r"
    run.mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump({"train": {"num_ids": 4, "num_instances": 2}}))
    recs = [{"epoch": 0, "mAP": 0.1, "rank1": 0.2},
            {"epoch": 1, "ce_global": 5.0, "ce_part1": 4.0, "loss": 9.0, "iters": 10, "train_s": 2.0},
            {"epoch": 2, "ce_global": 3.0, "ce_part1": 2.0, "loss": 5.0, "iters": 10, "train_s": 2.0, "mAP": 0.3,
             "rank1": 0.4}]
    (run / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in recs))
    table = ablate.Table(tmp_path / "t.yaml", "t", "", [1], [], [], [], [])
    line = ablate.record(table, ablate.Row("a", "demo", []), 1, run, 1.0)
    assert (line["mAP"], line["rank1"], line["epoch"]) == (0.3, 0.4, 2)
    assert line["last_epoch"]["ce_global"] == 3.0 and line["last_epoch"]["ce_part1"] == 2.0
    assert line["train_images_per_s"] == 40.0 and set(line["by_epoch"]) == {"0", "2"}   # 2 x 10 x 8 images in 4 s
