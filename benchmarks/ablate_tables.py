"""The ablation tables as data: reading and checking a table file, its two regimes, and the key of each run.

A table file (YAML, under benchmarks/tables/) holds:

    title:   one line
    about:   what it measures and where each value comes from (free text)
    paper:   what the paper column holds (e.g. "MLA Table 6, Market-1501, mAP / rank-1")
    recipe:  the recipe every row starts from (a row may name its own)
    seeds:   [1, 2, 3]
    sets:    ["train.epochs=10", ...]          overrides of every row: the data, the scale and the short budget
    rows:    [{name, sets, recipe?, paper?, start?}]   each row: its own overrides on top
    comparisons: [{a, b, paper?}]              optional: row b against row a, paired by seed (benchmarks/verdicts.py)
    max_seeds: 6                               optional: seeds added, one at a time, to a comparison still undecided
    start:   pretrain_fractal_resnet18         the papers' regime's start: a pretraining recipe's run (its
                                               outputs/<name>/last.pt) or a weight file; a row may name its own
    evaluations: [{name, sets, rows?, paper?}] optional: each row's best checkpoint evaluated again with these
                                               test overrides (e.g. Pirt's Table 5); rows: which (default all)
    epochs:  [2, 4, 6]                         optional: the summary's mAP at these epochs as well
    measure: [params, inference]               optional: parameter count, inference images/s of the model,
                                               sap_attention (SAP's heads' attention inside the teacher's parts)

**Two regimes.** ``short`` runs the table as written. ``paper`` is the papers' regime shrunk only in data: the
table's own ``sets`` on the schedule (``REGIME_KEYS``: epochs, iterations, learning rate and its steps, warm-up,
optimiser, batch, BatchNorm slices, evaluation interval) and on the start are dropped (a row's own start too), so
each row runs its
recipe's schedule, optimiser and P x K batch; where the recipe fixes its iterations per epoch, they are scaled by
the data's size (``train.iters_for`` = the training images of the recipe's dataset: an epoch is as many passes
over the data as the paper's); and the weights start from ``start`` (the other domain's pretraining, as
ImageNet is to the papers). A row's own sets stay in both regimes (a ladder's row that sets the warm-up keeps
it). Why these rules: docs/results.md, "The papers' regime".

**The key of a run** is a digest of everything that makes it: each value of the config the row builds (its
recipe's contents through every ``_base_``, the overrides) that differs from this version's defaults, the seed,
and the start file's bytes; not the machine's settings that change no result beyond the last bits
(``train.threads``, ``data.workers``). An edited recipe or table, or a new start, makes new runs; results of the
old ones are never reported as the table's. A key this version adds, at a default that keeps the old behaviour,
leaves every key as it was (a changed default is a change of code, which no key holds); benchmarks/rekey.py writes the
keys of results that an earlier version keyed otherwise, from the recipe and sets each line stores.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
TABLES = Path(__file__).resolve().parent / "tables"
RESULTS = Path(__file__).resolve().parent / "results"
KEYS = {"title", "about", "paper", "recipe", "seeds", "sets", "rows", "evaluations", "epochs", "measure",
        "comparisons", "max_seeds", "start"}
REGIMES = ("short", "paper")
# the table-level overrides the papers' regime drops: what makes the short budget, and the start
REGIME_KEYS = {"train.epochs", "train.iters", "train.iters_for", "train.steps", "train.step_size", "train.gamma",
               "train.scheduler", "train.cosine_start", "train.warmup_epochs", "train.warmup_factor",
               "train.warmup_by", "train.lr", "train.optimizer", "train.weight_decay", "train.num_ids",
               "train.num_instances", "train.bn_images", "test.eval_every", "model.pretrained"}
NOT_IN_KEY = ("name", "output", "seed", "train.threads", "data.workers")    # no result changes with these
MEASURES = ("params", "inference", "sap_attention")


class TableError(Exception):
    """A table file that cannot be run: the message says which key and what to write."""


@dataclass
class Row:
    name: str
    recipe: str
    sets: list[str]
    paper: str = ""

    @cached_property
    def digest(self) -> str:
        """What makes this row's runs, seed aside (module docstring)."""
        return config_digest(self.recipe, self.sets)


@dataclass
class Evaluation:
    name: str
    sets: list[str]
    rows: list[str]
    paper: dict = field(default_factory=dict)


@dataclass
class Comparison:
    a: str                     # the baseline row
    b: str                     # the row measured against it
    paper: str = ""            # the published effect

    @property
    def name(self) -> str:
        return f"{self.b} vs {self.a}"


@dataclass
class Table:
    path: Path
    title: str
    paper: str
    seeds: list[int]
    rows: list[Row]
    evaluations: list[Evaluation]
    epochs: list[int]
    measure: list[str]
    comparisons: list[Comparison] = field(default_factory=list)
    max_seeds: int = 0
    regime: str = "short"

    @property
    def stem(self) -> str:
        return self.path.stem


def _strings(value, where: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) and "=" in v for v in value):
        raise TableError(f"{where}: give a list of key=value strings (as --set takes), not {value!r}")
    return list(value)


def _name(value, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise TableError(f"{where}: give it a name (a line of text)")
    return value


def _ints(value, where: str, low: int, example: str) -> list[int]:
    if not isinstance(value, list) or not all(isinstance(s, int) and not isinstance(s, bool) and s >= low
                                              for s in value):
        raise TableError(f"{where}: give a list of whole numbers >= {low}, e.g. {example}, not {value!r}")
    return list(value)


def find_table(path: str | Path) -> Path:
    p = Path(path)
    if not p.is_file() and (TABLES / f"{path}.yaml").is_file():
        p = TABLES / f"{path}.yaml"
    if not p.is_file():
        known = ", ".join(sorted(t.stem for t in TABLES.glob("*.yaml")))
        raise TableError(f"no table file {path}: give a path or one of {known}")
    return p


def read_table_file(p: Path) -> dict:
    try:
        d = yaml.safe_load(p.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise TableError(f"{p}: not UTF-8 text ({e.reason} at byte {e.start}); save the table as UTF-8") from None
    except yaml.YAMLError as e:
        raise TableError(f"{p}: not YAML ({e})") from None
    except OSError as e:
        raise TableError(f"{p}: cannot be read ({e.strerror})") from None
    if not isinstance(d, dict):
        raise TableError(f"{p}: a table is a mapping of {', '.join(sorted(KEYS))}")
    unknown = set(d) - KEYS
    if unknown:
        raise TableError(f"{p}: unknown key(s) {', '.join(sorted(unknown))}; a table has {', '.join(sorted(KEYS))}")
    return d


def start_file(start: str, where: str, missing_ok: bool = False) -> str:
    """A start named in a table: a weight file, or a pretraining recipe's run (outputs/<name>/last.pt). With
    ``missing_ok`` (reading finished runs only), a start that is not here is named by the path it would have."""
    if not isinstance(start, str) or not start:
        raise TableError(f"{where}: start: give a weight file, or a pretraining recipe whose run made one "
                         f"(e.g. pretrain_fractal_resnet18)")
    if start == "none":
        return "none"
    for cand in (Path(start), ROOT / start, ROOT / "outputs" / start / "last.pt"):
        if cand.is_file():
            return str(cand.resolve())
    if missing_ok:
        return str(Path(start).resolve() if Path(start).suffix else (ROOT / "outputs" / start / "last.pt").resolve())
    raise TableError(f"{where}: start {start}: no such weight file, and no outputs/{start}/last.pt; make it first "
                     f"(python main.py --config {Path(start).name} --set train.threads=1), or give a file")


def override_key(text: str) -> str:
    return text.split("=", 1)[0].strip()


def load_table(path: str | Path, extra_sets: list[str] | None = None, regime: str = "short",
               start: str | None = None, check: bool = True) -> Table:
    """Read and check a table file (a path, or a name under benchmarks/tables/) in ``regime`` (module docstring);
    ``extra_sets`` go after every row's own overrides (the command line's --set), ``start`` replaces the table's
    (the command line's --start). With ``check``, every row's config is built now, so that a misspelt key, a
    missing recipe or a bad value in any row stops the table before its first run; without it (reading finished
    runs), a start file that is not here is no error (same_run)."""
    if regime not in REGIMES:
        raise TableError(f"regime {regime!r}: give one of {', '.join(REGIMES)}")
    p = find_table(path)
    d = read_table_file(p)
    seeds = _ints(d.get("seeds", [1]), f"{p}: seeds", 0, "[1, 2, 3]")
    if not seeds:
        raise TableError(f"{p}: seeds: give a list of seeds, e.g. [1, 2, 3]")
    shared = _strings(d.get("sets"), f"{p}: sets")
    if regime == "paper":
        shared = [s for s in shared if override_key(s) not in REGIME_KEYS]
    rows, raw_rows = [], d.get("rows") or []
    if not isinstance(raw_rows, list):
        raise TableError(f"{p}: rows: a list of rows, each a mapping with a name (and sets, recipe, paper)")
    for i, r in enumerate(raw_rows):
        if not isinstance(r, dict) or not isinstance(r.get("name"), str) or not r["name"].strip():
            raise TableError(f"{p}: rows[{i}]: each row is a mapping with a name (and sets, recipe, paper)")
        unknown = set(r) - {"name", "sets", "recipe", "paper", "start"}
        if unknown:
            raise TableError(f"{p}: row {r['name']!r}: unknown key(s) {', '.join(sorted(unknown))}; a row has name, "
                             f"sets, recipe, paper, start")
        recipe = r.get("recipe", d.get("recipe"))
        if not recipe or not isinstance(recipe, str):
            raise TableError(f"{p}: row {r['name']!r} has no recipe (give the table's recipe: or the row's)")
        own = _strings(r.get("sets"), f"{p}: row {r['name']!r}: sets")
        regime_sets = []
        if regime == "paper":                    # the regime's start is the row's start (``start: none`` for none)
            own = [x for x in own if override_key(x) != "model.pretrained"]
            begin = start or r.get("start", d.get("start"))
            if begin is None:
                raise TableError(f"{p}: the papers' regime needs a start (a table's start:, a row's, or --start): "
                                 f"the other domain's pretraining, e.g. pretrain_fractal_resnet18")
            where = f"{p}: row {r['name']!r}"
            regime_sets = [f"model.pretrained={start_file(begin, where, missing_ok=not check)}"]
            regime_sets += paper_iterations(recipe, shared + own)
        rows.append(Row(r["name"], recipe, shared + own + regime_sets + list(extra_sets or []),
                        str(r.get("paper", ""))))
    if not rows:
        raise TableError(f"{p}: rows: a table needs at least one row")
    names = [r.name for r in rows]
    if len(set(names)) != len(names):
        raise TableError(f"{p}: two rows share a name; give each its own")
    evaluations = []
    for i, e in enumerate(d.get("evaluations") or []):
        if not isinstance(e, dict):
            raise TableError(f"{p}: evaluations[{i}]: a mapping of name, sets (and rows, paper)")
        name = _name(e.get("name"), f"{p}: evaluations[{i}]")
        which = e.get("rows", names)
        if not isinstance(which, list):
            raise TableError(f"{p}: evaluation {name!r}: rows: a list of row names")
        missing = set(which) - set(names)
        if missing:
            raise TableError(f"{p}: evaluation {name!r} names rows that are not in the table: "
                             f"{', '.join(sorted(map(str, missing)))}")
        evaluations.append(Evaluation(name, _strings(e.get("sets"), f"{p}: evaluation {name!r}: sets"), list(which),
                                      dict(e.get("paper") or {})))
    comparisons = []
    for i, c in enumerate(d.get("comparisons") or []):
        if not isinstance(c, dict) or set(c) - {"a", "b", "paper"} or not {"a", "b"} <= set(c):
            raise TableError(f"{p}: comparisons[{i}]: a mapping of a (the baseline row), b (the row against it) "
                             f"and paper (the published effect), not {c!r}")
        for k in ("a", "b"):
            if c[k] not in names:
                raise TableError(f"{p}: comparisons[{i}]: {k}: {c[k]!r} is not a row of the table")
        comparisons.append(Comparison(c["a"], c["b"], str(c.get("paper", ""))))
    max_seeds = d.get("max_seeds", 0)
    if not isinstance(max_seeds, int) or isinstance(max_seeds, bool) or max_seeds < 0:
        raise TableError(f"{p}: max_seeds: a whole number (the most seeds an undecided comparison gets), "
                         f"not {max_seeds!r}")
    measure = d.get("measure") or []
    if not isinstance(measure, list) or set(measure) - set(MEASURES):
        raise TableError(f"{p}: measure: any of {', '.join(MEASURES)}, not {measure}")
    table = Table(p, str(d.get("title", p.stem)), str(d.get("paper", "")), seeds, rows, evaluations,
                  _ints(d.get("epochs") or [], f"{p}: epochs", 0, "[2, 4, 6]"), list(measure), comparisons,
                  max_seeds, regime)
    if check:
        for row in table.rows:
            row.digest                      # builds its config: a bad row stops here
        for ev in table.evaluations:
            check_overrides(ev.sets, f"{p}: evaluation {ev.name!r}")
    return table


def check_overrides(sets: list[str], where: str) -> None:
    from reidlab.errors import ReIDError
    from reidlab.runs.config import build_config, parse_override
    try:
        build_config(None, [parse_override(s) for s in sets])
    except ReIDError as e:
        raise TableError(f"{where}: {e}") from None


def build_row_config(recipe: str, sets: list[str]):
    from reidlab.errors import ReIDError
    from reidlab.runs.config import build_config, parse_override
    try:
        return build_config(recipe, [parse_override(s) for s in sets])
    except ReIDError as e:
        raise TableError(f"recipe {recipe} with {' '.join(sets)}: {e}") from None


def paper_iterations(recipe: str, sets: list[str]) -> list[str]:
    """``train.iters_for`` for a recipe that fixes its iterations per epoch: the training images of the dataset
    the recipe was written for (its ``data.dataset``, a registered benchmark with published counts)."""
    from reidlab.data.datasets import DATASETS
    from reidlab.runs.config import read_recipe
    if any(override_key(s) in ("train.iters", "train.iters_for") for s in sets):
        return []
    own = build_row_config(recipe, [])
    if not own.train.iters:
        return []                       # one pass over the data per epoch: the rule holds at any size
    data = (read_recipe(recipe).get("data") or {}).get("dataset", own.data.dataset)
    info = DATASETS.info(data) if data in DATASETS else None
    counts = getattr(info, "published", None) or {}
    if "train" not in counts:
        raise TableError(f"recipe {recipe} fixes train.iters={own.train.iters} for {data}, whose training images "
                         f"are not known here: give train.iters_for in the row's sets")
    return [f"train.iters_for={counts['train'][1]}"]


def file_digest(path: str) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def non_default(recipe: str, sets: list[str], digest_start: bool = True) -> dict:
    """The leaves of the config a row builds that differ from this version's defaults, by dotted key (without
    NOT_IN_KEY's), with a start file's path replaced by its bytes' digest (``digest_start``)."""
    from reidlab.runs.config import Config

    def flat(d: dict, prefix: str = "") -> dict:
        out = {}
        for k, v in d.items():
            out.update(flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {prefix + k: v})
        return out
    built, default = flat(build_row_config(recipe, sets).to_dict()), flat(Config().to_dict())
    leaves = {k: v for k, v in built.items() if k not in NOT_IN_KEY and (k not in default or v != default[k])}
    weights = leaves.get("model.pretrained")
    if digest_start and weights not in (None, "", "none", "imagenet"):
        leaves["model.pretrained"] = file_digest(weights)
    return leaves


def config_digest(recipe: str, sets: list[str]) -> str:
    return hashlib.sha1(json.dumps(non_default(recipe, sets), sort_keys=True, default=str).encode()).hexdigest()


def run_key(row: Row, seed: int) -> str:
    """A digest of what makes the run: its row's config (module docstring) and its seed."""
    return key_of(row.digest, seed)


def same_run(row: Row, line: dict, latest: dict[str, str] | None = None) -> bool:
    """Whether a results line is a run of ``row`` at the line's seed: by its key, or, where the row's start file is
    not here (a fresh clone: run folders do not travel), by the recipe and overrides the line records, each start
    named by its last two path parts (outputs/<run>/last.pt is <run>/last.pt wherever the clone lies), and made
    from the latest bytes of that start the results hold (``latest``: :func:`latest_starts`). A start remade
    (the same recipe and seed under other code gives other bytes) makes new runs, and the lines of the earlier
    one, recorded with another digest or none (lines written before digests were), are not paired with them."""
    try:
        return line.get("key") == run_key(row, line["seed"])
    except FileNotFoundError:
        named = _start_named(row.recipe, row.sets)
        if _start_named(line.get("recipe"), line.get("sets") or []) != named:
            return False
        known = (latest or {}).get(named.get("model.pretrained", ""))
        return known is None or line.get("start") == known


def start_path(recipe: str, sets: list[str]) -> str | None:
    """The weight file a run starts from (``model.pretrained`` as a path), or None."""
    weights = non_default(recipe, sets, digest_start=False).get("model.pretrained")
    return None if weights in (None, "", "none", "imagenet") else str(weights)


def latest_starts(lines: list[dict]) -> dict[str, str]:
    """Each start file's digest in the last results line that records one, by the start's name (its last two path
    parts): the bytes the table's current runs started from."""
    out: dict[str, str] = {}
    for x in lines:
        if x.get("start") and x.get("recipe"):
            weights = _start_named(x["recipe"], x.get("sets") or []).get("model.pretrained")
            if weights:
                out[weights] = x["start"]
    return out


def _start_named(recipe: str, sets: list[str]) -> dict:
    leaves = non_default(recipe, sets, digest_start=False)
    if "model.pretrained" in leaves:
        leaves["model.pretrained"] = "/".join(Path(leaves["model.pretrained"]).parts[-2:])
    return leaves


def key_of(digest: str, seed: int) -> str:
    return hashlib.sha1(json.dumps([digest, seed]).encode()).hexdigest()[:8]
