"""reidlab: person re-identification, unsupervised (Cluster Contrast, MLA) and supervised (Bag of Tricks, DAAF,
AAformer, SAP, Pirt), in one package.

The parts, one sub-package each: ``unsup`` (the clustering loop), ``supervised``, ``memory`` (ClusterNCE),
``clustering`` (kNN, Jaccard, DBSCAN), ``runs`` (config, recipes, run folders, checkpoints), ``models``,
``data``, ``evaluation`` and ``use`` (a trained model: evaluate, extract, search, explain, export; the
Python API of docs/api.md). ``python main.py`` is the command line.

    from reidlab import TrainedModel          # = reidlab.use.api.TrainedModel (imported on first use)

Importing this package first sets OpenMP's wait policy before torch loads its runtime: OpenMP threads that
wait by spinning hold on to cores that another process needs, and on a machine that is not idle (a
CPU-bound process beside) they slowed ``evaluation.metrics.evaluate`` 6-fold (docs/results.md, "A loaded
machine"). Sleeping threads (``OMP_WAIT_POLICY=PASSIVE``) do not; a value the user set wins. Where torch was
imported before this package, the setting comes too late and changes nothing.
"""
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.5.0"
API = ("TrainedModel", "Features", "Match")


def __getattr__(name: str):
    if name in API:
        from .use import api
        return getattr(api, name)
    raise AttributeError(f"module 'reidlab' has no attribute {name!r}")


__all__ = [*API, "__version__"]
