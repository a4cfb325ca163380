"""Specification of GroupedFolds: k folds grouped by prompt, stratified by label, reproducible by seed."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import replace

import numpy as np
import pytest

from arenapref.data.folds import GroupedFolds
from arenapref.data.io import read_pairs
from arenapref.data.record import PairRecord, hard_labels

N_SPLITS = 5


@pytest.fixture(scope="module")
def hh(shared_data) -> list[PairRecord]:
    """Real hh-rlhf pairs, each also present swapped (same prompt, new id): every prompt then has 2+ rows, so
    any fold that split a prompt would show."""
    records, _ = read_pairs(shared_data / "hh-rlhf")
    return records + [replace(r.swapped(), id=r.id + "/swapped") for r in records]


@pytest.fixture(scope="module")
def hh_folds(hh) -> np.ndarray:
    return GroupedFolds(N_SPLITS, seed=0).fold_ids(hh)


def test_fold_ids_are_fold_indices_one_per_row(hh, hh_folds):
    assert hh_folds.shape == (len(hh),)
    assert set(hh_folds.tolist()) == set(range(N_SPLITS))


def test_every_prompt_lies_in_exactly_one_fold(hh, hh_folds):
    folds_of_prompt = defaultdict(set)
    for r, k in zip(hh, hh_folds):
        folds_of_prompt[r.prompt_key].add(int(k))
    assert all(len(ks) == 1 for ks in folds_of_prompt.values())
    assert min(Counter(r.prompt_key for r in hh).values()) >= 2  # so a split prompt could not go unnoticed


def test_split_partitions_all_rows(hh):
    n = len(hh)
    tests = []
    for train, test in GroupedFolds(N_SPLITS, seed=0).split(hh):
        assert len(np.intersect1d(train, test)) == 0
        assert np.array_equal(np.sort(np.concatenate([train, test])), np.arange(n))
        tests.append(test)
    assert len(tests) == N_SPLITS
    every = np.concatenate(tests)
    assert np.array_equal(np.sort(every), np.arange(n))  # each row is tested exactly once
    sizes = np.array([len(t) for t in tests])
    assert sizes.min() >= 0.9 * n / N_SPLITS and sizes.max() <= 1.1 * n / N_SPLITS


def test_split_agrees_with_fold_ids(hh, hh_folds):
    for k, (_, test) in enumerate(GroupedFolds(N_SPLITS, seed=0).split(hh)):
        assert np.array_equal(test, np.flatnonzero(hh_folds == k))


def test_label_shares_per_fold_are_close_to_the_overall_share_on_hh_rlhf(hh, hh_folds):
    y = hard_labels(hh)
    overall = np.bincount(y, minlength=3) / len(y)
    for k in range(N_SPLITS):
        share = np.bincount(y[hh_folds == k], minlength=3) / np.sum(hh_folds == k)
        assert np.abs(share - overall).max() <= 0.05, (k, share, overall)


def test_label_shares_per_fold_stay_close_with_ties_on_pandalm(shared_data):
    records, _ = read_pairs(shared_data / "pandalm" / "testset-v1.json")
    folds = GroupedFolds(N_SPLITS, seed=0).fold_ids(records)
    y = hard_labels(records)
    overall = np.bincount(y, minlength=3) / len(y)
    assert overall[2] > 0.05  # there are ties to spread
    for k in range(N_SPLITS):
        share = np.bincount(y[folds == k], minlength=3) / np.sum(folds == k)
        assert np.abs(share - overall).max() <= 0.05, (k, share, overall)


def test_same_seed_gives_the_same_folds_and_another_seed_other_folds(hh, hh_folds):
    assert np.array_equal(GroupedFolds(N_SPLITS, seed=0).fold_ids(hh), hh_folds)
    other = GroupedFolds(N_SPLITS, seed=1).fold_ids(hh)
    assert not np.array_equal(other, hh_folds)


def _records(prompts, labels=None):
    labels = labels or [None] * len(prompts)
    return [PairRecord(id=str(i), prompt=(p,), response_a=("a",), response_b=("b",), label=y)
            for i, (p, y) in enumerate(zip(prompts, labels))]


def test_too_few_prompts_for_the_folds_is_a_helpful_value_error():
    records = _records(["same", "same", "other", "third"], [0, 1, 0, 1])
    with pytest.raises(ValueError, match=r"4 rows with 3 distinct prompt\(s\) cannot fill 5 folds; use fewer folds"):
        GroupedFolds(5, seed=0).fold_ids(records)
    with pytest.raises(ValueError, match="fewer folds"):
        next(GroupedFolds(5, seed=0).split(records))


def test_unlabelled_and_tiny_single_class_sets_still_fold_by_prompt():
    prompts = [f"p{i % 7}" for i in range(21)]
    for labels in (None, [0] * 21):
        folds = GroupedFolds(3, seed=0).fold_ids(_records(prompts, labels))
        assert set(folds.tolist()) == {0, 1, 2}
        for p in set(prompts):
            assert len({folds[i] for i, q in enumerate(prompts) if q == p}) == 1
