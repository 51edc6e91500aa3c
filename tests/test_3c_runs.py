"""3C in the loop: the shipped recipes on the tiny data (single process and torchrun with 2 processes; shrunk in the
data: the tiny set's 16 persons for HDC's number of clusters), the config-time refusals, and a user's own distance,
clustering and memory update by import path (examples/my_clustering.py)."""
import json

import pytest

import main
from tests.test_distributed import launch, records

TINY = ["--set", "data.synthetic_size=tiny", "--set", "train.iters=2", "--device", "cpu",
        "--set", "cluster.hdc_num_clusters=16", "--set", "test.eval_initial=false"]


def test_demo_3c_warms_up_with_dbscan_then_clusters_with_hdc_alike_under_torchrun(tmp_path, tiny_root):
    """demo_3c.yaml (16 x 4, BatchNorm slices of 16, hd_camera, camera-weighted) for its 2 DBSCAN epochs and 1 of HDC:
    one process and two give the same pseudo-labels and loss, the ranks the same memories."""
    args = ["--config", "demo_3c", *TINY, "--epochs", "3", "--set", "test.eval_every=3", "--data-root", str(tiny_root),
            "--output", str(tmp_path)]
    launch(*args, "--name", "one", procs=1)
    launch(*args, "--name", "two")
    one, two = records(tmp_path / "one"), records(tmp_path / "two")
    assert [("hdc_iterations" in r) for r in one] == [False, False, True]
    assert all(r["num_clusters"] > 1 and r["skipped_steps"] == 0 for r in one)
    assert [r["ranks_agree"] for r in two] == [2, 2, 2]
    for a, b in zip(one, two):
        assert (a["num_clusters"], a["num_outliers"]) == (b["num_clusters"], b["num_outliers"])
        assert b["loss"] == pytest.approx(a["loss"], abs=1e-3)


def test_the_3c_market_recipe_runs_its_batch_and_slices_on_tiny_data(tmp_path, tiny_root):
    """cluster_contrast_3c_market1501.yaml with its 16 x 16 batch, BatchNorm slices of 128, 3C's Jaccard, HDC with
    outliers and its centroids, hd_camera and the camera-weighted loss; the data shrunk (the tiny set at 64 x 32, no
    ImageNet weights here), its DBSCAN warm-up cut to the first epoch so that the second clusters with HDC."""
    args = ["--config", "cluster_contrast_3c_market1501", "--dataset", "synthetic", *TINY, "--set", "train.iters=1",
            "--set", "data.height=64", "--set", "data.width=32", "--set", "model.pretrained=none",
            "--set", "cluster.hdc_dbscan_epochs=1", "--epochs", "2", "--data-root", str(tiny_root),
            "--output", str(tmp_path), "--name", "m"]
    launch(*args, procs=2)
    r = records(tmp_path / "m")
    assert "hdc_iterations" in r[-1] and r[-1]["ranks_agree"] == 2 and r[-1]["loss"] > 0
    config = json.loads(json.dumps(__import__("yaml").safe_load((tmp_path / "m" / "config.yaml").read_text())))
    assert (config["train"]["num_ids"], config["train"]["num_instances"], config["train"]["bn_images"]) == (16, 16, 128)


@pytest.mark.parametrize("sets,words", [
    (["cluster.hdc_num_clusters=201"], "more than synthetic-tiny's 200 training images"),
    (["cluster.hdc_num_clusters=0"], "cluster.hdc_num_clusters=0 is not allowed"),
    (["cluster.hdc_num_clusters=4.5"], "expected an integer"),
    (["cluster.method=hdcc"], "did you mean 'hdc'"),
    (["memory.update=examples.nothing:update"], "cannot import"),
])
def test_3c_mistakes_stop_before_a_run_folder(tmp_path, tiny_root, main_in_process, sets, words):
    args = ["--config", "demo_3c", "--set", "data.synthetic_size=tiny", "--data-root", str(tiny_root),
            "--output", str(tmp_path), "--name", "x"]
    for s in sets:
        args += ["--set", s]
    code, _, err = main_in_process(*args)
    assert code == 2 and words in err and not (tmp_path / "x").exists()


def test_camera_weights_on_a_folder_without_cameras_stop_before_a_run_folder(tmp_path, tiny_root, main_in_process):
    from benchmarks.own_data import scrambled_copy
    crops = tmp_path / "crops"
    scrambled_copy(tiny_root / "synthetic-tiny" / "bounding_box_train", crops)
    for sets, words in ((["memory.camera_weighted=true", "memory.update=mean"], "memory.camera_weighted=true needs"),
                        (["memory.camera_weighted=false", "memory.update=hd_camera"], "memory.update=hd_camera needs")):
        args = ["--config", "demo_3c", "--dataset", f"folder:{crops}", "--set", "data.camera_from=none",
                "--output", str(tmp_path), "--name", "y"]
        for s in sets:
            args += ["--set", s]
        code, _, err = main_in_process(*args)
        assert code == 2 and words in err and "two cameras" in err and not (tmp_path / "y").exists()


def test_a_users_distance_clustering_and_memory_update_by_import_path(tmp_path, tiny_root):
    args = ["--config", "demo", "--set", "data.synthetic_size=tiny", "--set", "train.iters=2", "--device", "cpu",
            "--set", "cluster.distance=examples.my_clustering:CosineGraph", "--set", "cluster.eps=0.2",
            "--set", "cluster.k1=3",
            "--set", "cluster.method=examples.my_clustering:Components",
            "--set", "memory.update=examples.my_clustering:latest", "--epochs", "1",
            "--data-root", str(tiny_root), "--output", str(tmp_path), "--name", "mine"]
    assert main.main(args) == 0
    r = records(tmp_path / "mine")[-1]
    assert r["num_clusters"] > 0 and r["loss"] > 0
