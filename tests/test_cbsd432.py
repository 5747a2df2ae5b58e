"""The colour training set: 432 pinned files, disjoint from the colour test set CBSD68."""

from __future__ import annotations

from benchmark.problems import data


def test_cbsd432_is_a_colour_training_set_disjoint_from_cbsd68() -> None:
    manifests = data.manifests()
    train, test = manifests["cbsd432"], manifests["cbsd68"]
    assert train.role == "train" and len(train.files) == 432
    assert not set(train.files) & set(test.files)
    assert not set(train.files.values()) & set(test.files.values())  # no identical content either
    images = data.load("cbsd432", split="train", limit=2)
    assert [img.tensor.shape[0] for img in images] == [3, 3]
