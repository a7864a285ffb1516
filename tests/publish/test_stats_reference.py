"""The card's figures against values worked out by hand: the reuse Gini and the Hub size categories."""

from __future__ import annotations

import json
from importlib import resources

import pytest

from sonify_toolkit.stats import size_category
from sonify_toolkit.usage import clip_usage, gini

# Gini = sum_i sum_j |x_i - x_j| / (2 n^2 mean), worked out by hand for each case.
GINI_BY_HAND = [
    ([5], 0.0),  # one clip: nothing to be unequal about
    ([3, 3, 3, 3], 0.0),  # every clip used equally
    ([0, 0, 0, 4], 0.75),  # 6 ordered pairs differ by 4: 24 / (2*16*1) = 24/32
    ([1, 2, 3], 2 / 9),  # |diffs| 1,2,1 twice = 8; 8 / (2*9*2) = 8/36
    ([1, 1, 2, 4], 0.3125),  # |diffs| 0,1,3,1,3,2 twice = 20; 20 / (2*16*2) = 20/64
    ([0, 10], 0.5),  # 2*10 / (2*4*5) = 20/40: the most a pool of two can reach
    ([], 0.0),
    ([0, 0, 0], 0.0),  # nothing used: no inequality to report
]


@pytest.mark.parametrize(("counts", "expected"), GINI_BY_HAND)
def test_gini_by_hand(counts: list[int], expected: float) -> None:
    assert gini(counts) == pytest.approx(expected, abs=1e-12)


def test_gini_ignores_order_and_scale() -> None:
    assert gini([4, 0, 1, 1, 2]) == pytest.approx(gini([0, 1, 1, 2, 4]))
    assert gini([2, 4, 6]) == pytest.approx(gini([1, 2, 3]))


def test_clip_usage_counts_unused_pool_clips_as_zero() -> None:
    """Two clips used 2 and 2 times in a pool of 4: [0, 0, 2, 2] has Gini 0.5; over the used clips only, 0."""
    uses = ["a", "b", "a", "b"]
    assert clip_usage(uses, pool_size=4)["gini"] == pytest.approx(0.5)
    assert clip_usage(uses)["gini"] == 0.0
    usage = clip_usage({"a": 3, "b": 1}, pool_size=8)
    assert (usage["sources"], usage["distinct_clips"], usage["max_reuse"], usage["pool_share"]) == (4, 2, 3, 0.25)
    assert usage["most_used"] == [["a", 3], ["b", 1]]


# (rows, the Hub's size category): each bound goes to the bucket above it ("1K<n<10K" holds 1,000).
SIZES_BY_HAND = [
    (0, "n<1K"),
    (999, "n<1K"),
    (1_000, "1K<n<10K"),
    (9_999, "1K<n<10K"),
    (10_000, "10K<n<100K"),
    (250_000, "100K<n<1M"),
    (1_000_000, "1M<n<10M"),
    (99_999_999, "10M<n<100M"),
    (100_000_000, "100M<n<1B"),
    (999_999_999, "100M<n<1B"),
    (1_000_000_000, "1B<n<10B"),
    (9_999_999_999, "1B<n<10B"),
    (10_000_000_000, "10B<n<100B"),
    (100_000_000_000, "100B<n<1T"),
    (999_999_999_999, "100B<n<1T"),
    (1_000_000_000_000, "n>1T"),
    (5_000_000_000_000, "n>1T"),
]


@pytest.mark.parametrize(("rows", "expected"), SIZES_BY_HAND)
def test_size_category_by_hand(rows: int, expected: str) -> None:
    assert size_category(rows) == expected


def test_size_categories_are_the_hubs() -> None:
    """Every label size_category can return is one the Hub accepts (datasets ships the list it validates)."""
    hub = json.loads(resources.files("datasets.utils.resources").joinpath("size_categories.json").read_text())
    ours = [size_category(10**e) for e in range(0, 14)]
    assert set(ours) <= set(hub)
    assert [label for label in hub if label != "unknown"] == list(dict.fromkeys(ours))
