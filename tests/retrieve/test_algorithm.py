"""Algorithm 1 on constructed similarities whose answers are known by hand."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from scipy.stats import chisquare

from sonify_toolkit.errors import InputError
from sonify_toolkit.stages.retrieve import algorithm


def test_ssr_keeps_sign_and_takes_root() -> None:
    np.testing.assert_allclose(algorithm.ssr([0.25, -0.04, 0.0, 1.0]), [0.5, -0.2, 0.0, 1.0])


def test_threshold_is_mean_of_ssr_over_topk() -> None:
    r = algorithm.ssr(np.array([[0.81, 0.64, 0.49, 0.36]]))
    assert algorithm.threshold(r)[0] == pytest.approx((0.9 + 0.8 + 0.7 + 0.6) / 4)


def test_few_very_good_matches_give_a_small_candidate_set() -> None:
    sims = np.array([[0.81, 0.64] + [0.01] * 14])  # r = 0.9, 0.8, then 0.1 x 14; tau = 3.1 / 16
    sel = algorithm.select(sims, np.array([0.5]))
    assert sel.threshold[0] == pytest.approx(3.1 / 16)
    assert sel.candidates[0].tolist() == [True, True] + [False] * 14


def test_many_equal_matches_give_a_large_candidate_set() -> None:
    sims = np.full((1, 16), 0.49, np.float32)  # the float mean of equal values may round above them
    sel = algorithm.select(sims, np.array([0.99]))
    assert sel.candidates.all()
    assert 0 <= sel.rank[0] < 16


def test_draw_frequencies_follow_r_over_sum_r() -> None:
    sims = np.array([0.64, 0.49, 0.36, 0.25, 0.0, 0.0], np.float64)  # r: .8 .7 .6 .5 0 0; tau = 0.433
    n = 20_000
    draws = algorithm.item_draws(7, [f"img{i}|vlm" for i in range(n)], [0] * n, -24, -22)
    sel = algorithm.select(np.tile(sims, (n, 1)), draws.u)
    assert sel.candidates[0].tolist() == [True, True, True, True, False, False]
    observed = np.bincount(sel.rank, minlength=6)
    assert observed[4:].sum() == 0
    r = np.array([0.8, 0.7, 0.6, 0.5])
    _, p = chisquare(observed[:4], n * r / r.sum())
    assert p > 0.01


def test_negative_scores_switch_to_uniform_draws() -> None:
    sims = np.array([-0.01, -0.04, -0.09, -0.16])  # r: -.1 -.2 -.3 -.4; tau = -.25 -> candidates 0, 1
    n = 4000
    draws = algorithm.item_draws(0, [f"i{i}|v" for i in range(n)], [0] * n, -24, -22)
    sel = algorithm.select(np.tile(sims, (n, 1)), draws.u)
    assert sel.weights[0].tolist() == [1.0, 1.0, 0.0, 0.0]
    counts = np.bincount(sel.rank, minlength=4)
    assert counts[2:].sum() == 0
    _, p = chisquare(counts[:2])
    assert p > 0.01


def test_mixed_signs_use_r_when_every_candidate_is_positive() -> None:
    sims = np.array([[0.25, 0.16, -0.25, -0.36]])  # r: .5 .4 -.5 -.6; tau = -0.05 -> candidates 0, 1
    sel = algorithm.select(sims, np.array([0.0]))
    np.testing.assert_allclose(sel.weights[0], [0.5, 0.4, 0.0, 0.0])


def test_inverse_cdf_draw_boundaries() -> None:
    w = np.array([[0.5, 0.0, 0.25, 0.25]] * 4)
    assert algorithm.draw(w, np.array([0.0, 0.49, 0.5, 0.99])).tolist() == [0, 0, 2, 3]


def test_draws_are_pinned_and_independent_of_the_process() -> None:
    """The recipe is part of the release: sha256 -> SeedSequence -> PCG64, never Python's salted hash()."""
    d = algorithm.item_draws(0, ["img1|llava"], [0], -24.0, -22.0)
    rng = algorithm.item_rng(0, "img1|llava", 0)
    assert d.u[0] == rng.random()
    assert d.target_lufs[0] == rng.uniform(-24.0, -22.0)
    digest = hashlib.sha256(b"0\x1fimg1|llava\x1f0").digest()
    independent = np.random.Generator(np.random.PCG64(np.random.SeedSequence(int.from_bytes(digest, "little"))))
    assert d.u[0] == independent.random() == 0.38230057555714314  # pinned: a changed recipe changes releases


def test_same_concept_in_many_images_draws_independently() -> None:
    n = 500
    d = algorithm.item_draws(3, [f"img{i}|vlm" for i in range(n)], [0] * n, -24, -22)
    sel = algorithm.select(np.full((n, 4), 0.5), d.u)
    assert len(set(sel.rank.tolist())) == 4
    assert len(set(d.target_lufs.tolist())) == n
    assert ((d.target_lufs >= -24) & (d.target_lufs <= -22)).all()
    again = algorithm.item_draws(3, [f"img{i}|vlm" for i in range(n)], [1] * n, -24, -22)
    assert not np.array_equal(again.u, d.u)  # concept index is part of the seed


def test_lufs_range_must_be_ordered() -> None:
    with pytest.raises(InputError, match="lufs"):
        algorithm.item_draws(0, ["a|b"], [0], -20, -30)


def test_reuse_cap_below_one_is_refused() -> None:
    with pytest.raises(InputError, match="--max-reuse"):
        algorithm.cap_reuse(np.arange(1, dtype=np.uint64), [[5]], 0)


def test_reuse_cap_moves_on_and_ignores_input_order() -> None:
    prefs = [[100, 101, 102]] * 10
    order = np.arange(10, dtype=np.uint64)[::-1].copy()
    chosen, overflow = algorithm.cap_reuse(order, prefs, 4)
    assert np.bincount(chosen - 100).tolist() == [4, 4, 2]
    assert not overflow.any()
    perm = np.random.default_rng(0).permutation(10)
    chosen2, _ = algorithm.cap_reuse(order[perm], [prefs[i] for i in perm], 4)
    assert chosen2.tolist() == chosen[perm].tolist()
    # the lowest order keys go first: items 9, 8, 7, 6 get clip 100
    assert chosen[[9, 8, 7, 6]].tolist() == [100] * 4


def test_reuse_cap_overflow_keeps_the_draw() -> None:
    chosen, overflow = algorithm.cap_reuse(np.arange(3, dtype=np.uint64), [[5], [5], [6, 5]], 1)
    assert chosen.tolist() == [5, 5, 6]
    assert overflow.tolist() == [False, True, False]


def preference(selection: algorithm.Selection, i: int) -> list[int]:
    """Reference for one row of `algorithm.preferences`: the draw, then the other candidates by rank."""
    drawn = int(selection.rank[i])
    return [drawn, *(int(j) for j in np.flatnonzero(selection.candidates[i]) if j != drawn)]


def test_preference_lists_draw_then_candidates_by_rank() -> None:
    sel = algorithm.select(np.array([[0.64, 0.49, 0.36, 0.0]]), np.array([0.8]))
    assert sel.rank[0] == 2
    assert preference(sel, 0) == [2, 0, 1]
    assert algorithm.preferences(sel).tolist() == [[2, 0, 1, -1]]  # the same, padded, for every row at once


def test_reuse_cap_takes_padded_arrays_like_lists() -> None:
    lists = [[7, 3], [7], [3, 7, 9], [7, 9]] * 5
    padded = np.array([row + [-1] * (3 - len(row)) for row in lists])
    order = np.random.default_rng(1).permutation(20).astype(np.uint64)
    a, over_a = algorithm.cap_reuse(order, lists, 3)
    b, over_b = algorithm.cap_reuse(order, padded, 3)
    assert a.tolist() == b.tolist() and over_a.tolist() == over_b.tolist()
