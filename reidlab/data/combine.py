"""Several datasets as one training set: ``--dataset market1501+dukemtmcreid``.

Identities and cameras are kept apart: each dataset's training ids and camera ids are shifted past
the previous datasets' (so id 0 of Market-1501 and id 0 of DukeMTMC-reID are two people, and the
samplers' "other camera" rule never pairs cameras of two datasets as one). Query and gallery are the
first dataset's, unless ``--test-dataset`` names another.
"""
from __future__ import annotations


from .samples import ReIDDataset, Sample, Skipped, require_training_split


def combine(parts: list[ReIDDataset]) -> ReIDDataset:
    train: list[Sample] = []
    skipped = Skipped()
    pid_offset = cam_offset = 0
    for ds in parts:
        require_training_split(ds)
        train += [Sample(s.path, s.pid + pid_offset, s.camid + cam_offset) for s in ds.train]
        pid_offset += max(s.pid for s in ds.train) + 1
        cam_offset += max(s.camid for s in ds.train + ds.query + ds.gallery) + 1
        skipped.merge(ds.skipped)
    first = parts[0]
    return ReIDDataset("+".join(p.name for p in parts), first.root, train, first.query, first.gallery, skipped,
                       annotations=None, parts=list(parts), labelled=all(p.labelled for p in parts),
                       query_from_train=first.query_from_train)
