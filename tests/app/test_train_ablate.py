"""``mer ablate``: a tiny grid over real caches, skipped cells, resume, refusal without caches."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from mer.cli import cli
from mer import ablate as ablate_module
from mer.ablate import all_subsets, parse_grid
from mer.config import load_config
from mer.train.errors import CacheError
from kit.train_corpus import extract_all, make_corpus


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("ablate")
    path, _ = make_corpus(root, n=48, dims={"text": 4, "audio": 3},
                          train={"epochs": 2, "plots": False, "lmr": {"hidden": 8, "tokens": 2, "layers": 1, "heads": 2, "ffn": 8,
                                                      "branch": {"text": "identity", "audio": "identity"}}})
    extract_all(path)
    return path


def write_grid(path, grid: dict):
    path.write_text(yaml.safe_dump(grid), encoding="utf-8")
    return path


def test_grid_runs_skips_invalid_cells_and_resumes(corpus, tmp_path, monkeypatch):
    grid = write_grid(tmp_path / "grid.yaml", {"modalities": [["text"], ["text", "audio"]], "model": ["lmr", "concat"],
                                               "seeds": [0, 1], "train.lr": [0.01]})
    out = tmp_path / "out"
    from mer.train import data as data_module

    reads = []
    real_read = data_module.read_modality
    monkeypatch.setattr(data_module, "_READ_MEMO", {})
    monkeypatch.setattr(data_module, "read_modality", lambda src, *a: reads.append(src.name) or real_read(src, *a))
    result = CliRunner().invoke(cli, ["ablate", "-c", str(corpus), "-g", str(grid), "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    assert sorted(reads) == ["audio", "text"]  # each cache read once for the 6 runs
    table = pd.read_csv(out / "ablation.csv", keep_default_na=False)
    assert len(table) == 8  # 4 cells × 2 seeds
    skipped = table[table["status"] == "skipped"]
    assert len(skipped) == 2 and set(skipped["model"]) == {"lmr"} and set(skipped["modalities"]) == {"text"}
    assert skipped["reason"].str.contains("lmr needs at least two modalities").all()
    done = table[table["status"] == "done"]
    assert len(done) == 6 and {"val_macro_f1", "test_macro_f1", "test_accuracy", "train.lr"} <= set(table.columns)
    # every finished cell is a full run folder with its result
    for run_dir in done["run_dir"]:
        record = json.loads(open(f"{run_dir}/result.json").read())
        assert record["metrics"]["test"]["macro_f1"] == pytest.approx(
            float(done.loc[done["run_dir"] == run_dir, "test_macro_f1"].item()))
    md = (out / "ablation.md").read_text()
    assert "±" in md and "Skipped cells" in md and md.count("| concat |") == 2
    ci_at = [c.strip() for c in md.splitlines()[4].split("|")].index("95% CI test_macro_f1")  # t over 2 seeds
    assert all(r.split("|")[ci_at].strip().startswith("[") for r in md.splitlines()[6:8])
    # the cell order in ablation.md follows the mean validation macro-F1
    rows = [line for line in md.splitlines() if line.startswith("| ") and "model" not in line]
    vals = [float(r.split("|")[[c.strip() for c in md.splitlines()[4].split("|")].index("val_macro_f1")].split("±")[0])
            for r in rows]
    assert vals == sorted(vals, reverse=True)
    # every metric column is a mean ± std over seeds; train metrics stay in the CSV only
    header = [c.strip() for c in md.splitlines()[4].split("|")]
    assert not any(c.startswith("train_") for c in header)
    metric_at = [i for i, c in enumerate(header) if c.startswith(("val_", "test_"))]
    assert metric_at and all("±" in r.split("|")[i] for r in rows for i in metric_at)

    # a re-run trains nothing ...
    calls = []
    real = ablate_module.run_cell
    monkeypatch.setattr(ablate_module, "run_cell", lambda *a, **k: calls.append(a) or real(*a, **k))
    ablate_module.ablate(str(corpus), str(grid), out=str(out), progress=False, log=lambda s: None)
    assert calls == []
    # ... and after an interruption only the unfinished cell+seed runs again
    victim = done["run_dir"].iloc[1]
    (Path(victim) / "result.json").unlink()
    _, again = ablate_module.ablate(str(corpus), str(grid), out=str(out), progress=False, log=lambda s: None)
    assert [str(c[4]) for c in calls] == [victim]
    assert len(again) == 8 and (again["status"] == "done").sum() == 6


def test_a_rerun_with_other_settings_trains_again_and_names_what_changed(corpus, tmp_path):
    """Issue: `mer ablate ... --set train.epochs=25`, then the same with `--set train.epochs=2 --set
    train.lr=0.5` into the same folder said "N finished before, 0 to run" and returned the old table."""
    grid = write_grid(tmp_path / "grid.yaml", {"model": ["concat"], "seeds": [0]})
    out = tmp_path / "out"
    _, first = ablate_module.ablate(str(corpus), str(grid), ["train.epochs=6"], out=str(out), progress=False,
                                    log=lambda s: None)
    lines: list[str] = []
    _, same = ablate_module.ablate(str(corpus), str(grid), ["train.epochs=6"], out=str(out), progress=False,
                                   log=lines.append)
    assert "1 finished before, 0 to run" in lines[-1]
    assert same["test_macro_f1"].tolist() == first["test_macro_f1"].tolist()
    lines.clear()
    _, changed = ablate_module.ablate(str(corpus), str(grid), ["train.epochs=2", "train.lr=0.5"], out=str(out),
                                      progress=False, log=lines.append)
    said = "\n".join(lines)
    assert "0 finished before, 1 to run (1 of them again: changed settings)" in said
    assert "train.epochs: 6 -> 2" in said and "train.lr: 0.01 -> 0.5" in said
    record = json.loads((Path(changed["run_dir"].iloc[0]) / "result.json").read_text())
    assert record["identity"]["config"]["train"]["epochs"] == 2 and record["run"]["epochs_run"] <= 2


def test_subsets_axis_and_validation(corpus, tmp_path):
    assert all_subsets(["a", "b", "c"]) == [["a"], ["b"], ["c"], ["a", "b"], ["a", "c"], ["b", "c"], ["a", "b", "c"]]
    config = load_config(corpus)
    grid = parse_grid(write_grid(tmp_path / "g.yaml", {"modalities": "subsets", "model": ["late"]}), config)
    assert grid.axes["train.modalities"] == [["text"], ["audio"], ["text", "audio"]]
    assert grid.seeds == config.train.seeds
    with pytest.raises(Exception, match="only modalities, model, seeds, folds and train"):
        parse_grid(write_grid(tmp_path / "bad.yaml", {"cache.dtype": ["float16"]}), config)
    with pytest.raises(Exception, match="lr"):
        parse_grid(write_grid(tmp_path / "bad2.yaml", {"train.lr": ["fast"]}), config)


def test_ablate_refuses_without_caches(corpus, tmp_path):
    grid = write_grid(tmp_path / "grid.yaml", {"model": ["concat"], "seeds": [0]})
    with pytest.raises(CacheError, match="mer extract -c .* --set features.audio.dim=2 --modality audio"):
        ablate_module.ablate(str(corpus), str(grid), ["features.audio.dim=2"], out=str(tmp_path / "o"),
                             progress=False, log=lambda s: None)
    assert not (tmp_path / "o" / "ablation.csv").exists()


def test_cells_run_on_a_dask_cluster_give_the_same_runs(corpus, tmp_path):
    """The --scheduler path (here an in-process cluster, so no worker start-up cost)."""
    from dask.distributed import LocalCluster

    grid = write_grid(tmp_path / "grid.yaml", {"model": ["concat"], "seeds": [0, 1]})
    quiet = {"progress": False, "log": lambda s: None}
    _, sequential = ablate_module.ablate(str(corpus), str(grid), out=str(tmp_path / "seq"), **quiet)
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        _, distributed = ablate_module.ablate(str(corpus), str(grid), out=str(tmp_path / "dask"),
                                              scheduler=cluster.scheduler_address, **quiet)
    assert list(distributed["status"]) == ["done", "done"]
    for a, b in zip(sequential["run_dir"], distributed["run_dir"]):
        assert (Path(a) / "metrics.json").read_bytes() == (Path(b) / "metrics.json").read_bytes()


def test_longest_first_orders_by_model_cost_then_modality_count_keeping_grid_order_in_ties():
    from mer.ablate import Cell, longest_first

    cells = {name: Cell((("train.model", model), ("train.modalities", mods)))
             for name, model, mods in [("u_t", "unimodal", ["text"]), ("u_a", "unimodal", ["audio"]),
                                       ("c_ta", "concat", ["text", "audio"]), ("l_ta", "lmr", ["text", "audio"]),
                                       ("l_tab", "lmr", ["text", "audio", "bio"])]}
    described = {c.name: (dict(c.overrides)["train.model"], "+".join(dict(c.overrides)["train.modalities"]))
                 for c in cells.values()}
    todo = [(cells[n], seed, f"{n}/{seed}") for n in ("u_t", "u_a", "c_ta", "l_ta", "l_tab") for seed in (0, 1)]
    order = [run_dir for _, _, run_dir in longest_first(todo, described)]
    assert order == ["l_tab/0", "l_tab/1", "l_ta/0", "l_ta/1", "c_ta/0", "c_ta/1", "u_t/0", "u_t/1", "u_a/0", "u_a/1"]


def test_dask_workers_start_the_heaviest_runs_first(corpus, tmp_path, monkeypatch):
    """One in-process worker runs the tasks one at a time, in the order the scheduler picks
    (recorded in a file: Dask hands the worker a deserialised copy of the function)."""
    from dask.distributed import LocalCluster

    log_path = tmp_path / "started.txt"
    real = ablate_module.run_cell

    def recording(config_path, overrides, cell, seed, run_dir, *args, **kwargs):
        values = dict(cell.overrides)
        with open(log_path, "a", encoding="utf-8") as f:
            f.write(f"{values['train.model']} {len(values['train.modalities'])} {seed}\n")
        return real(config_path, overrides, cell, seed, run_dir, *args, **kwargs)

    monkeypatch.setattr(ablate_module, "run_cell", recording)
    grid = write_grid(tmp_path / "grid.yaml", {"model": ["unimodal", "concat", "lmr"], "modalities": [["text"], ["text", "audio"]],
                                                "seeds": [0, 1]})
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        _, table = ablate_module.ablate(str(corpus), str(grid), out=str(tmp_path / "dask"),
                                        scheduler=cluster.scheduler_address, progress=False, log=lambda s: None)
    assert sorted(table["status"]) == ["done"] * 8 + ["skipped"] * 4  # unimodal on 2, lmr on 1 modality
    assert log_path.read_text(encoding="utf-8").splitlines() == [
        "lmr 2 0", "lmr 2 1", "concat 2 0", "concat 2 1", "unimodal 1 0", "unimodal 1 1", "concat 1 0", "concat 1 1"]
