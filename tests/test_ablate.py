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
    out, res = tmp_path / "out", tmp_path / "results.jsonl"
    assert ablate.main([str(table), "--out", str(out), "--results", str(res)]) == 0
    lines = ablate.results(res)
    assert [(x["row"], x["seed"]) for x in lines] == [("plain", 1), ("ca jaccard", 1)]
    assert all(0 < x["mAP"] <= 1 and x["epoch"] == 1 and x["params_M"] > 0 for x in lines)
    assert "re-ranked" in lines[0]["evaluations"] and "evaluations" not in lines[1]
    assert not list(out.rglob("*.pt"))                                 # checkpoints go once the line is written
    text = capsys.readouterr().out
    assert "| plain | 1 |" in text and "| ca jaccard | 1 |" in text and "| plain, evaluated re-ranked | 1 |" in text
    assert ablate.main([str(table), "--out", str(out), "--results", str(res)]) == 0    # again: nothing left to run
    assert len(ablate.results(res)) == 2 and "done (results.jsonl)" in capsys.readouterr().out
    # a runner reads the results again before each run: one that another runner finished meanwhile is skipped,
    # and one that another runner holds is skipped too, without counting as a failure
    lines = ablate.results(res)
    res.write_text("")

    def train(row, seed, out_, threads=0):
        assert row.name == "plain", "trained a run another runner had finished"
        with open(res, "a") as f:                             # meanwhile, another runner finishes "ca jaccard"
            f.write(json.dumps(lines[1]) + "\n")
        return "held", out_ / "busy"                          # and holds "plain"
    real_train, ablate.train = ablate.train, train
    try:
        assert ablate.run_table(ablate.load_table(table), out, res) == 0
    finally:
        ablate.train = real_train
    assert [x["row"] for x in ablate.results(res)] == ["ca jaccard"]
    assert "in use by another runner; skipped" in capsys.readouterr().out
    # a changed value is a new run, never the old result
    assert ablate.main([str(table), "--out", str(out), "--results", str(res), "--rows", "plain", "--set",
                        "train.lr=1e-4", "--dry-run"]) == 0
    assert "plain-s1-" in capsys.readouterr().out


def test_a_killed_table_continues_where_it_stopped(tmp_path, tiny_root):
    table = write_table(tmp_path / "t.yaml", tiny_root, epochs=2, rows=[{"name": "plain"}])
    out, res = tmp_path / "out", tmp_path / "results.jsonl"
    cmd = [sys.executable, "-m", "benchmarks.ablate", str(table), "--out", str(out), "--results", str(res)]
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
    assert metrics is not None and not ablate.results(res)
    assert subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True).returncode == 0
    epochs = [json.loads(x)["epoch"] for x in metrics.read_text().splitlines()]
    assert epochs[:2] == [0, 1] and epochs[-1] == 2 and epochs.count(1) == 1      # epoch 1 not trained again
    assert [x["epoch"] for x in ablate.results(res)] == [2]


@pytest.mark.parametrize("content,words", [
    ({"rows": []}, "at least one row"),
    ({"recipe": "demo", "rows": [{"name": "a"}], "colour": 1}, "unknown key(s) colour"),
    ({"rows": [{"name": "a"}]}, "has no recipe"),
    ({"recipe": "demo", "rows": [{"name": "a", "sets": ["train.lr"]}]}, "key=value"),
    ({"recipe": "demo", "rows": [{"name": "a"}, {"name": "a"}]}, "share a name"),
    ({"recipe": "demo", "rows": [{"name": "a"}], "evaluations": [{"name": "e", "rows": ["b"]}]}, "not in the table"),
    ({"recipe": "demo", "rows": [{"name": "a"}], "seeds": "1"}, "seeds"),
    ({"recipe": "demo", "rows": [{"name": "a"}], "seeds": [-1]}, "seeds"),
    ({"recipe": "demo", "rows": [{"name": "a"}], "epochs": ["two", "four"]}, "epochs: give a list of whole numbers"),
    ({"recipe": "demo", "rows": [{"name": "a"}], "evaluations": [{"sets": ["test.rerank=true"]}]}, "give it a name"),
    # found before the first run, not when the row's turn comes
    ({"recipe": "demo", "rows": [{"name": "a"}, {"name": "b", "sets": ["train.lrr=1"]}]}, "did you mean 'train.lr'"),
    ({"recipe": "demo", "rows": [{"name": "a"}, {"name": "b", "recipe": "demoo"}]}, "no recipe file demoo"),
    ({"recipe": "demo", "rows": [{"name": "a"}], "comparisons": [{"a": "a", "b": "c"}]}, "not a row of the table"),
    ({"recipe": "demo", "rows": [{"name": "a"}], "max_seeds": "six"}, "max_seeds"),
])
def test_a_bad_table_stops_before_any_run(tmp_path, capsys, content, words):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(content))
    assert ablate.main([str(path), "--out", str(tmp_path / "out"), "--results", str(tmp_path / "r.jsonl")]) == 2
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


def test_the_papers_regime_runs_each_recipes_schedule_from_the_start(tmp_path):
    """--regime paper: the table's budget and start go, the recipe's schedule, optimiser and batch stay, the rows'
    own switches stay, fixed iterations are scaled by the data's size, and the start file's bytes are in the key."""
    start = tmp_path / "start.pt"
    import torch
    from reidlab.models.resnet import ReIDResNet
    torch.save({"model": ReIDResNet("resnet18", pretrained="none").state_dict()}, start)
    table = ablate.load_table("bot_ladder", regime="paper", start=str(start))
    rows = {r.name: build_config(r.recipe, [parse_override(s) for s in r.sets]) for r in table.rows}
    short = {r.name: build_config(r.recipe, [parse_override(s) for s in r.sets]) for r in ablate.load_table(
        "bot_ladder").rows}
    for name, cfg in rows.items():
        t = cfg.train
        assert (t.epochs, t.steps, t.num_ids, t.num_instances, t.optimizer, t.lr, t.warmup_by) == \
            (120, [40, 70], 16, 4, "adam", 3.5e-4, "epoch"), name
        assert cfg.model.pretrained == str(start) and (cfg.data.height, cfg.data.width) == (64, 32)
        assert short[name].train.epochs == 8 and short[name].model.pretrained == "none"
    assert rows["Baseline-S"].train.warmup_epochs == 0 and rows["+ warm-up"].train.warmup_epochs == 10
    assert rows["Baseline-S"].model.head == "none" and rows["BoT (+ centre loss)"].loss.center == 0.0005
    key = ablate.run_key(table.rows[0], 1)
    torch.save({"model": ReIDResNet("resnet18", pretrained="none").state_dict()}, start)     # another start
    assert ablate.run_key(ablate.load_table("bot_ladder", regime="paper", start=str(start)).rows[0], 1) != key
    # a recipe with fixed iterations per epoch: scaled to the data, as many passes as the paper's epoch
    (tmp_path / "cc.yaml").write_text(yaml.safe_dump({
        "title": "cc", "recipe": "cluster_contrast_resnet50", "start": str(start), "rows": [{"name": "cc"}],
        "sets": ["data.dataset=synthetic", "model.name=resnet18", "train.iters=100", "train.epochs=10"]}))
    cc = ablate.load_table(tmp_path / "cc.yaml", regime="paper").rows[0]
    cfg = build_config(cc.recipe, [parse_override(s) for s in cc.sets])
    assert (cfg.train.iters, cfg.train.iters_for, cfg.train.epochs) == (200, 12936, 50)
    with pytest.raises(ablate.TableError, match="needs a start"):
        ablate.load_table(write_table(tmp_path / "t.yaml", tmp_path), regime="paper")


def test_an_edited_recipe_makes_new_runs(tmp_path):
    recipe = tmp_path / "mine.yaml"
    recipe.write_text("_base_: demo\ntrain:\n  lr: 3.5e-4\n")
    (tmp_path / "t.yaml").write_text(yaml.safe_dump({"recipe": str(recipe), "rows": [{"name": "a"}]}))
    key = ablate.run_key(ablate.load_table(tmp_path / "t.yaml").rows[0], 1)
    recipe.write_text("_base_: demo\ntrain:\n  lr: 1.0e-4\n")
    edited = ablate.run_key(ablate.load_table(tmp_path / "t.yaml").rows[0], 1)
    assert edited != key
    recipe.write_text("_base_: demo\ntrain:\n  lr: 1.0e-4\n  threads: 1\n")        # a machine setting: the same run
    assert ablate.run_key(ablate.load_table(tmp_path / "t.yaml").rows[0], 1) == edited
    # a key written at its default (as a key a later version adds, at the default that keeps the old behaviour)
    recipe.write_text("_base_: demo\ntrain:\n  lr: 1.0e-4\ncluster:\n  hdc_max_iter: 80\n")
    assert ablate.run_key(ablate.load_table(tmp_path / "t.yaml").rows[0], 1) == edited
    assert ablate.run_key(ablate.load_table(tmp_path / "t.yaml").rows[0], 2) != edited


def test_rekey_writes_this_versions_keys(tmp_path, capsys):
    from benchmarks import rekey
    table = {"recipe": "demo", "rows": [{"name": "a", "sets": ["train.lr=1e-4"]}]}
    (tmp_path / "t.yaml").write_text(yaml.safe_dump(table))
    row = ablate.load_table(tmp_path / "t.yaml").rows[0]
    lines = [{"table": "t", "row": "a", "seed": s, "key": "0ld0ld00", "recipe": row.recipe, "sets": row.sets,
              "mAP": 0.5} for s in (1, 2)]
    lines.append({**lines[0], "recipe": "no_such_recipe"})
    f = tmp_path / "t.jsonl"
    f.write_text("\n".join(json.dumps(x) for x in lines) + '\n{"half')
    assert rekey.main([str(f)]) == 0
    out = capsys.readouterr().out
    assert "2 keys rewritten" in out and "no_such_recipe" in out and "not a JSON line" in out
    got = [json.loads(x) for x in f.read_text().splitlines()[:3]]
    assert [x["key"] for x in got] == [ablate.run_key(row, 1), ablate.run_key(row, 2), "0ld0ld00"]
    assert f.read_text().splitlines()[3] == '{"half'
    assert rekey.main([str(tmp_path / "none.jsonl")]) == 2


def test_the_summary_reads_runs_whose_start_is_gone(tmp_path, capsys):
    """A fresh clone has the results but not the start file (run folders do not travel): --summary still finds
    a paper-regime run by its recorded recipe and overrides, whatever their order and wherever the clone lies; a
    run of other overrides is not taken for it, and running needs the start."""
    import torch
    from reidlab.models.resnet import ReIDResNet
    start = tmp_path / "outputs" / "pre" / "last.pt"
    start.parent.mkdir(parents=True)
    torch.save({"model": ReIDResNet("resnet18", pretrained="none").state_dict()}, start)
    (tmp_path / "t.yaml").write_text(yaml.safe_dump({
        "recipe": "bot_market1501", "start": str(start), "sets": ["model.name=resnet18"],
        "rows": [{"name": "a"}, {"name": "b", "sets": ["train.lr=1e-4"]}]}))
    table = ablate.load_table(tmp_path / "t.yaml", regime="paper")
    elsewhere = [x.replace(str(tmp_path), "/another/clone") for x in table.rows[0].sets]
    lines = [{"table": "t", "regime": "paper", "row": r.name, "seed": 1, "key": ablate.run_key(r, 1),
              "recipe": r.recipe, "sets": sets, "mAP": m, "rank1": 0.5}
             for r, sets, m in ((table.rows[0], elsewhere[::-1], 0.61), (table.rows[1], table.rows[0].sets, 0.72))]
    (tmp_path / "r.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    start.unlink()
    with pytest.raises(ablate.TableError, match="no such weight file"):
        ablate.load_table(tmp_path / "t.yaml", regime="paper")
    assert ablate.main([str(tmp_path / "t.yaml"), "--regime", "paper", "--summary", "--results",
                        str(tmp_path / "r.jsonl")]) == 0
    out = capsys.readouterr().out
    assert "| a | 1 | 61.0" in out and "| b |" not in out          # b's line holds a's overrides: not b's run


def test_undecided_comparisons_get_seeds_up_to_the_cap(tmp_path, monkeypatch, capsys):
    (tmp_path / "t.yaml").write_text(yaml.safe_dump({
        "recipe": "demo", "seeds": [1, 2, 3], "max_seeds": 5,
        "rows": [{"name": "a"}, {"name": "b", "sets": ["train.lr=1e-4"]}, {"name": "c", "sets": ["train.lr=2e-4"]}],
        "comparisons": [{"a": "a", "b": "b"}, {"a": "a", "b": "c"}]}))
    table = ablate.load_table(tmp_path / "t.yaml")
    res = tmp_path / "r.jsonl"
    # b against a: +3, -2, +3, -2, +3 points (mean 1, sd sqrt(7.5), t(0.975, 4) = 2.776445: never decided);
    # c against a: +2, +3, +2 points (mean 7/3, sd sqrt(1/3), t(0.975, 2) = 4.302653: a gain at 3 seeds)
    value = {"a": lambda s: 0.5, "b": lambda s: 0.53 if s % 2 else 0.48, "c": lambda s: 0.52 if s % 2 else 0.53}
    ran = []

    def run_one(table_, row, seed, out, results_file, keep, threads):
        ran.append((row.name, seed))
        with open(results_file, "a") as f:
            f.write(json.dumps({"table": "t", "row": row.name, "seed": seed, "key": ablate.run_key(row, seed),
                                "mAP": value[row.name](seed), "rank1": 0.5}) + "\n")
        return "trained"
    monkeypatch.setattr(ablate, "run_one", run_one)
    assert ablate.run_table(table, tmp_path / "out", res) == 0
    assert sorted(ran) == sorted([(r, s) for r in "abc" for s in (1, 2, 3)] + [("a", 4), ("b", 4), ("a", 5), ("b", 5)])
    text = ablate.summary(table, ablate.results(res))
    assert "| b vs a | 1,2,3,4,5 | +1.0 [-2.4, +4.4] | undecided |" in text
    assert "| c vs a | 1,2,3 | +2.3 [+0.9, +3.8] | gain |" in text


def test_a_damaged_results_file_and_bad_places_stop_nothing_but_what_they_must(tmp_path, tiny_root, capsys):
    table = write_table(tmp_path / "t.yaml", tiny_root, rows=[{"name": "plain"}])
    res = tmp_path / "r.jsonl"
    good = {"table": "t", "row": "plain", "seed": 1, "key": "x", "mAP": 0.5}
    res.write_text("{}\n" + json.dumps(good) + '\n{"table": "t", "row": "pl')         # a killed runner's half line
    assert ablate.results(res) == [good]
    assert ablate.main([str(table), "--results", str(res), "--summary"]) == 0
    assert "line 3 is not a run's record" in capsys.readouterr().out
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("title: caf\xe9\nrecipe: demo\nrows: [{name: a}]\n".encode("latin-1"))
    assert ablate.main([str(latin), "--results", str(res)]) == 2
    assert "not UTF-8" in capsys.readouterr().err
    a_file = tmp_path / "file"
    a_file.write_text("")
    assert ablate.main([str(table), "--out", str(a_file), "--results", str(res)]) == 2
    assert "is a file: give a folder" in capsys.readouterr().err
    assert ablate.main([str(table), "--out", str(tmp_path / "o"), "--results", str(tmp_path)]) == 2
    assert "is a folder: give a file" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        ablate.main([str(table), "--seeds", "-1"])
    assert e.value.code == 2 and "not a seed" in capsys.readouterr().err
    import os
    if os.geteuid() != 0:                                      # root writes anywhere
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o500)
        assert ablate.main([str(table), "--out", str(ro / "x"), "--results", str(res)]) == 2
        assert "cannot be written" in capsys.readouterr().err


def test_runs_of_a_remade_start_are_not_paired_with_the_earlier_starts(tmp_path, capsys):
    """A start remade under other code has other bytes: in a fresh clone (no start file) --summary takes the lines
    of the start's latest digest only; a line of the earlier start (another digest, or none: written before lines
    recorded one) is left out, so the two rows' seed 1 is not paired across two starts."""
    import torch
    from reidlab.models.resnet import ReIDResNet
    start = tmp_path / "outputs" / "pre" / "last.pt"
    start.parent.mkdir(parents=True)
    torch.save({"model": ReIDResNet("resnet18", pretrained="none").state_dict()}, start)
    (tmp_path / "t.yaml").write_text(yaml.safe_dump({
        "recipe": "bot_market1501", "start": str(start), "sets": ["model.name=resnet18"],
        "rows": [{"name": "a"}, {"name": "b", "sets": ["train.lr=1e-4"]}], "comparisons": [{"a": "a", "b": "b"}]}))
    table = ablate.load_table(tmp_path / "t.yaml", regime="paper")
    a, b = table.rows

    def line(row, seed, m, digest=None):
        return {"table": "t", "regime": "paper", "row": row.name, "seed": seed, "key": "0" * 8, "recipe": row.recipe,
                "sets": row.sets, "mAP": m, "rank1": 0.5, **({"start": digest} if digest else {})}
    lines = [line(a, 1, 0.60), line(a, 2, 0.61), line(b, 2, 0.99, "old"), line(a, 1, 0.70, "new"),
             line(b, 1, 0.75, "new")]
    (tmp_path / "r.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    start.unlink()
    assert ablate.main([str(tmp_path / "t.yaml"), "--regime", "paper", "--summary", "--results",
                        str(tmp_path / "r.jsonl")]) == 0
    out = capsys.readouterr().out
    assert "| a | 1 | 70.0" in out and "| b | 1 | 75.0" in out       # the new start's seed 1 alone
    assert "+5.0 (one seed: no interval)" in out


def test_a_finished_run_records_its_starts_digest(tmp_path):
    import torch
    from benchmarks.ablate_tables import file_digest
    from reidlab.models.resnet import ReIDResNet
    start = tmp_path / "pre.pt"
    torch.save({"model": ReIDResNet("resnet18", pretrained="none").state_dict()}, start)
    (tmp_path / "t.yaml").write_text(yaml.safe_dump({
        "recipe": "bot_market1501", "start": str(start), "sets": ["model.name=resnet18"], "rows": [{"name": "a"}]}))
    table = ablate.load_table(tmp_path / "t.yaml", regime="paper")
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text(json.dumps({"epoch": 1, "mAP": 0.5, "rank1": 0.6}) + "\n")
    assert ablate.record(table, table.rows[0], 1, run, 1.0)["start"] == file_digest(str(start))
