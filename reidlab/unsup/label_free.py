"""What an epoch of the unsupervised loop can say about itself without identity labels (issue: a folder of
a user's own crops has none): how the clusters look, how tight they are, and how much the pseudo-labels
moved since the last epoch. Recorded in ``metrics.jsonl`` each epoch, on every dataset."""
from __future__ import annotations

import numpy as np
import torch
from reidlab.clustering.sweep import agreement, cluster_sizes, size_summary, with_singletons

SIZE_BINS = (2, 4, 8, 16, 32, 64)            # histogram edges: sizes 1, 2-3, 4-7, ..., 32-63, 64+


def intra_cluster_similarity(feats: torch.Tensor, labels: np.ndarray) -> tuple[float, float]:
    """Mean and standard deviation over the clusters of each cluster's mean pairwise cosine similarity of
    its members (L2-normalised features): (|sum|^2 - n) / (n (n - 1)), without forming the pairs."""
    keep = labels >= 0
    if not keep.any():
        return float("nan"), float("nan")
    f = torch.nn.functional.normalize(feats[torch.as_tensor(keep)].float(), dim=1)
    y = torch.as_tensor(labels[keep], dtype=torch.long, device=f.device)
    sums = torch.zeros(int(y.max()) + 1, f.shape[1], device=f.device).index_add_(0, y, f)
    n = torch.bincount(y).float()
    ok = n > 1
    sims = (sums[ok].pow(2).sum(1) - n[ok]) / (n[ok] * (n[ok] - 1))
    if not len(sims):
        return float("nan"), float("nan")
    return float(sims.mean()), float(sims.std(unbiased=False))


def changed_labels(previous: np.ndarray, labels: np.ndarray) -> int:
    """Images whose pseudo-label moved (docs/datasets.md, "What a run says without labels"). Each outlier is a
    group of its own; the groups of the two epochs are paired one to one, the pairs that share the most
    images first (ties: the lower group ids), each group in at most one pair; an image moved unless its old
    and new groups are a pair. A relabelling moves nothing; one cluster of 100 split into ten moves 90;
    two of 50 merged move 50; ten outliers that become a cluster move 9; an outlier that stays one stays."""
    a, b = with_singletons(np.asarray(previous)), with_singletons(np.asarray(labels))
    pairs, counts = np.unique(np.stack([a, b]), axis=1, return_counts=True)
    order = np.lexsort((pairs[1], pairs[0], -counts))              # most shared first, then by ids
    used_a, used_b, kept = set(), set(), 0
    for k in order.tolist():
        x, y = int(pairs[0, k]), int(pairs[1, k])
        if x not in used_a and y not in used_b:
            used_a.add(x)
            used_b.add(y)
            kept += int(counts[k])
    return len(labels) - kept


def label_free_metrics(feats: torch.Tensor, labels: np.ndarray, previous: np.ndarray | None) -> dict:
    sizes = cluster_sizes(labels)
    mean, spread = intra_cluster_similarity(feats, labels)
    out = {**size_summary(labels, sizes),
           "cluster_size_hist": np.histogram(sizes, bins=[1, *SIZE_BINS, max(65, int(sizes.max(initial=0)) + 1)]
                                             )[0].tolist(),
           "intra_sim_mean": round(mean, 4), "intra_sim_std": round(spread, 4)}
    if previous is not None and len(previous) == len(labels):
        out["labels_changed"] = changed_labels(previous, labels)
        out["labels_ari_prev"] = agreement(previous, labels)["ari"]
    return out


def clustering_advice(labels: np.ndarray, eps: float, min_samples: int, batch: tuple[int, int], run_dir) -> dict:
    """What an epoch's clustering says to check, by kind (the loop logs each kind once per run, the last three
    from the third epoch on, when the model has trained two): a dataset smaller than one P x K batch, no
    cluster, one cluster holding most images, most images outliers, clusters of about min_samples images each
    (a cluster count near the images'). Each names eps to try."""
    n, P, K = len(labels), *batch
    sizes = cluster_sizes(labels)
    sweep = f"python main.py --mode cluster-sweep --checkpoint {run_dir} --eps 0.2:0.7:0.05"
    out = {}
    if n < P * K:
        out["small"] = (f"{n} training images, fewer than one batch of train.num_ids x train.num_instances = {P} x "
                        f"{K}: every batch holds all the clusters there are (the batch is smaller; the recipe's values "
                        f"stand)")
    if not len(sizes):
        out["none"] = (f"no cluster at eps {eps:g}, min_samples {min_samples}: try a larger eps, or see every eps with "
                       f"{sweep}")
        return out
    if sizes.max() > 0.5 * n:
        out["merged"] = (f"one cluster holds {sizes.max() / n:.0%} of the {n} images at eps {eps:g}: eps may be too "
                         f"large for this data (or the model still too young to tell persons apart); try a smaller "
                         f"eps, or see every eps with {sweep}")
    if (labels < 0).mean() > 0.5:
        out["outliers"] = (f"{(labels < 0).mean():.0%} of the images are outliers at eps {eps:g}: eps may be too "
                           f"small for this data; try a larger eps, or see every eps with {sweep}")
    if len(sizes) > 2 and np.median(sizes) < 2 * min_samples and len(sizes) > n / (3 * min_samples):
        out["tiny"] = (f"{len(sizes)} clusters of {n} images, a median of {np.median(sizes):g} images each: about "
                       f"min_samples={min_samples} per cluster, near the most clusters DBSCAN can make; if your "
                       f"persons have more images than that, eps may be too small ({sweep})")
    return out


def pool_queries(n: int, count: int) -> np.ndarray:
    """``count`` fixed query rows spread evenly over a training pool of ``n`` images (the same every epoch)."""
    if count < 1 or n < 2:
        return np.zeros(0, dtype=int)
    return np.unique(np.linspace(0, n - 1, min(count, n)).round().astype(int))


def draw_pool_now(epoch: int, every: int, count: int) -> bool:
    """Epoch ``epoch`` clusters the model after ``epoch - 1`` epochs: drawn for the models after 0, every,
    2 x every, ... epochs."""
    return count > 0 and (epoch - 1) % every == 0


def pool_rank_lists(path, feats: torch.Tensor, labels: np.ndarray, images, queries: np.ndarray,
                    truth: np.ndarray | None = None, topk: int = 8):
    """Rank lists of the fixed ``queries`` against the rest of the training pool, by the cosine distance of
    the features the epoch clusters: each query titled with its pseudo-label, its nearest ``topk`` framed
    green / red by the true identity when the pool has one (grey when not: a folder of a user's own crops).
    The user sees the model improve without any label (test.pool_ranklists)."""
    from reidlab.data.files import write_atomically
    from reidlab.evaluation.visualize import draw_rank_grid, to_numpy_image
    f = torch.nn.functional.normalize(feats.float(), dim=1)
    q = torch.as_tensor(queries, device=f.device)
    dist = (1 - f[q] @ f.T).clamp(min=0)
    dist[torch.arange(len(q), device=f.device), q] = float("inf")          # not itself
    k = min(topk, f.shape[0] - 1)
    d, order = torch.topk(dist, k, dim=1, largest=False)
    d, order = d.cpu().numpy(), order.cpu().numpy()
    rows_needed = np.unique(np.concatenate([queries, order.ravel()]))
    fetched = images[torch.as_tensor(rows_needed)]           # one read (a tensor, or a disk store: data/store.py)
    picture = {int(r): to_numpy_image(fetched[i]) for i, r in enumerate(rows_needed)}
    rows = [[(picture[int(j)], float(d[r, c]), None if truth is None else bool(truth[int(j)] == truth[int(qi)]))
             for c, j in enumerate(order[r])] for r, qi in enumerate(queries)]
    titles = [f"cluster {labels[qi]}" if labels[qi] >= 0 else "outlier" for qi in queries]
    return write_atomically(path, lambda tmp: draw_rank_grid(tmp, [picture[int(i)] for i in queries], rows, titles),
                            "the rank-list picture")
