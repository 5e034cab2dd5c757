"""The ladder-loss family: hand-computed values, reference loops, gradients, validation.

Most tests fix the similarity matrix S directly: with image features = the identity and text
features = S.T, image @ text.T is exactly S (the losses do not re-normalise features).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from trainer.levels import adaptive_levels
from trainer.losses import AdaptiveLadderLoss, InfoNCELoss, LadderLoss, TripletLoss

S3 = [
    [0.90, 0.50, 0.10],
    [0.68, 0.80, 0.75],
    [0.20, 0.65, 0.70],
]
R3 = [
    [1.0, 0.7, 0.1],
    [0.7, 1.0, 0.2],
    [0.1, 0.9, 1.0],
]


def features_for(scores, requires_grad: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    s = torch.as_tensor(scores, dtype=torch.float64)
    image = torch.eye(s.shape[0], dtype=torch.float64)
    text = s.T.clone().requires_grad_(requires_grad)
    return image, text


def random_batch(batch: int, dim: int = 16, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    image = F.normalize(torch.randn(batch, dim, generator=g, dtype=torch.float64), dim=1)
    text = F.normalize(torch.randn(batch, dim, generator=g, dtype=torch.float64), dim=1)
    attrs = torch.randint(0, 3, (batch, 5), generator=g)
    weights = torch.tensor([0.35, 0.25, 0.2, 0.1, 0.1], dtype=torch.float64)
    relevance = ((attrs[:, None, :] == attrs[None, :, :]) * weights).sum(-1)
    relevance = relevance.fill_diagonal_(1.0)
    return image, text, relevance


def val(t: torch.Tensor) -> float:
    return t.detach().item()


def r(x) -> torch.Tensor:
    return torch.as_tensor(x, dtype=torch.float64)


# ---------------------------------------------------------------------------------------------
# hand-computed values


def test_triplet_hardest_negative_by_hand():
    # rows (image -> text), margin 0.2, hardest off-diagonal score of each row:
    #   q0: 0.2 - 0.90 + 0.50 < 0 -> 0;  q1: 0.2 - 0.80 + 0.75 = 0.15;  q2: 0.2 - 0.70 + 0.65 = 0.15
    # columns (text -> image):
    #   t0: 0.2 - 0.90 + 0.68 < 0 -> 0;  t1: 0.2 - 0.80 + 0.65 = 0.05;  t2: 0.2 - 0.70 + 0.75 = 0.25
    out = TripletLoss(margin=0.2)(*features_for(S3), r(R3))
    assert val(out["i2t"]) == pytest.approx(0.30)
    assert val(out["t2i"]) == pytest.approx(0.30)
    assert val(out["loss"]) == pytest.approx(0.60)


def test_triplet_sum_of_hinges_by_hand():
    # every negative instead of the hardest: q1 also pays 0.2 - 0.80 + 0.68 = 0.08
    #   rows: 0 + (0.08 + 0.15) + 0.15 = 0.38;  columns: 0 + 0.05 + 0.25 = 0.30
    out = TripletLoss(margin=0.2, max_violation=False)(*features_for(S3))
    assert val(out["i2t"]) == pytest.approx(0.38)
    assert val(out["t2i"]) == pytest.approx(0.30)


def test_ladder_by_hand():
    # threshold 0.63, level-1 margin 0.01, beta 0.25. Positives: R >= 0.63 (and the diagonal).
    # rows:
    #   q0: positives {0, 1} -> min(0.90, 0.50) = 0.50; negatives {2} -> 0.10: 0.01 - 0.50 + 0.10 < 0
    #   q1: positives {0, 1} -> min(0.68, 0.80) = 0.68; negatives {2} -> 0.75: 0.01 - 0.68 + 0.75 = 0.08
    #   q2: positives {1, 2} -> min(0.65, 0.70) = 0.65; negatives {0} -> 0.20: < 0
    # columns (relevance R[:, t]):
    #   t0: positives {0, 1} -> min(0.90, 0.68) = 0.68; negatives {2} -> 0.20: < 0
    #   t1: every image has R >= 0.63: no negatives, nothing to add
    #   t2: positives {2} -> 0.70; negatives {0, 1} -> max(0.10, 0.75) = 0.75: 0.01 - 0.70 + 0.75 = 0.06
    # ladder term = 0.25 * (0.08 + 0.06) = 0.035; plus the triplet term 0.60
    out = LadderLoss(thresholds=(0.63,), margins=(0.2, 0.01), betas=(1.0, 0.25))(*features_for(S3), r(R3))
    assert val(out["triplet"]) == pytest.approx(0.60)
    assert val(out["ladder_1"]) == pytest.approx(0.035)
    assert val(out["loss"]) == pytest.approx(0.635)


def test_mean_reduction_divides_by_the_batch():
    args = (*features_for(S3), r(R3))
    total = LadderLoss(reduction="sum")(*args)
    mean = LadderLoss(reduction="mean")(*args)
    for key in total:
        if not key.startswith("stat_"):  # diagnostics (shares, mean violations) do not scale
            assert val(mean[key]) == pytest.approx(val(total[key]) / 3)


def test_infonce_by_hand_and_against_open_clip():
    open_clip_loss = pytest.importorskip("open_clip.loss")
    image, text, _ = random_batch(6)
    scale = torch.tensor(12.5, dtype=torch.float64)
    out = InfoNCELoss()(image, text, None, logit_scale=scale)
    logits = scale * image @ text.T
    by_hand_i2t = -(logits.diag() - torch.logsumexp(logits, dim=1)).mean()
    by_hand_t2i = -(logits.diag() - torch.logsumexp(logits, dim=0)).mean()
    assert val(out["i2t"]) == pytest.approx(val(by_hand_i2t))
    assert val(out["t2i"]) == pytest.approx(val(by_hand_t2i))
    reference = open_clip_loss.ClipLoss()(image, text, scale)
    assert val(out["loss"]) == pytest.approx(val(reference))


def test_infonce_uses_the_temperature_without_a_logit_scale():
    image, text, _ = random_batch(5)
    a = InfoNCELoss(temperature=0.05)(image, text)
    b = InfoNCELoss()(image, text, logit_scale=torch.tensor(20.0, dtype=torch.float64))
    assert val(a["loss"]) == pytest.approx(val(b["loss"]))


# ---------------------------------------------------------------------------------------------
# structure of the ladder


def test_one_level_ladder_is_the_triplet_loss():
    image, text, relevance = random_batch(12)
    text.requires_grad_(True)
    ladder = LadderLoss(thresholds=(), margins=(0.2,), betas=(1.0,))(image, text, relevance)
    (g_ladder,) = torch.autograd.grad(ladder["loss"], text)
    triplet = TripletLoss(margin=0.2)(image, text, relevance)
    (g_triplet,) = torch.autograd.grad(triplet["loss"], text)
    assert val(ladder["loss"]) == pytest.approx(val(triplet["loss"]))
    assert val(ladder["loss"]) > 0
    torch.testing.assert_close(g_ladder, g_triplet)


def _coherent_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """Relevance with three tiers (1 on the diagonal, 0.8, 0.3) and scores that respect them."""
    relevance = r(
        [
            [1.0, 0.8, 0.3, 0.3],
            [0.8, 1.0, 0.3, 0.8],
            [0.3, 0.3, 1.0, 0.8],
            [0.3, 0.8, 0.8, 1.0],
        ]
    )
    tier_score = {1.0: 0.9, 0.8: 0.6, 0.3: 0.3}  # gaps 0.3 >= every margin
    scores = relevance.clone().apply_(lambda v: tier_score[round(v, 1)])
    return scores, relevance


@pytest.mark.parametrize(
    "loss",
    [LadderLoss(), LadderLoss((0.9, 0.5), (0.2, 0.01, 0.01), (1, 0.25, 0.125)), AdaptiveLadderLoss()],
    ids=["ladder", "ladder3", "adaptive"],
)
def test_coherent_ordering_costs_nothing_and_a_swap_does(loss):
    scores, relevance = _coherent_batch()
    assert val(loss(*features_for(scores), relevance)["loss"]) == 0.0
    # image 0 now prefers text 2 (relevance 0.3) to text 1 (relevance 0.8), while the ground truth
    # still wins by the triplet margin: only a ladder term can see it
    swapped = scores.clone()
    swapped[0, 2], swapped[0, 1] = 0.62, 0.58
    out = loss(*features_for(swapped), relevance)
    assert val(out["triplet"]) == 0.0
    assert sum(val(v) for k, v in out.items() if k.startswith("ladder_")) > 0.0


def test_empty_levels_add_nothing():
    # every candidate as relevant as the ground truth: no negatives on any ladder level.
    # The reference implementation would add [0.01 - min positive score + 0]_+ per query here.
    image, text, _ = random_batch(8, seed=3)
    scores = image @ text.T
    relevance = torch.ones(8, 8, dtype=torch.float64)
    out = LadderLoss(thresholds=(0.63,), margins=(0.2, 0.5), betas=(1.0, 1.0))(image, text, relevance)
    assert val(out["ladder_1"]) == 0.0
    spurious = (0.5 - scores.min(dim=1).values).clamp(min=0).sum()
    assert val(spurious) > 0  # what the reference's constant would have added
    # adaptive: two relevance values off the diagonal -> k = 2 everywhere, boundaries 2, 3 empty
    relevance = torch.where(torch.rand(8, 8, generator=torch.Generator().manual_seed(1)) < 0.5, 0.2, 0.6)
    relevance = relevance.double().fill_diagonal_(1.0)
    out = AdaptiveLadderLoss(margins=(0.2, 0.5, 0.5, 0.5), betas=(1, 1, 1, 1))(image, text, relevance)
    assert val(out["ladder_1"]) > 0.0
    assert val(out["ladder_2"]) == 0.0
    assert val(out["ladder_3"]) == 0.0
    assert val(out["stat_mean_k"]) == 2.0


def test_the_ground_truth_is_level_zero_whatever_the_relevance_says():
    # a diagonal below the threshold still counts as a positive of its own query
    relevance = r(R3).fill_diagonal_(0.5)
    a = LadderLoss()(*features_for(S3), relevance)
    b = LadderLoss()(*features_for(S3), r(R3))
    assert val(a["loss"]) == pytest.approx(val(b["loss"]))


# ---------------------------------------------------------------------------------------------
# gradients


@pytest.mark.parametrize("loss", [TripletLoss(), LadderLoss(), AdaptiveLadderLoss(), InfoNCELoss()])
def test_gradients_are_finite_and_flow(loss):
    image, text, relevance = random_batch(16, seed=5)
    image.requires_grad_(True)
    text.requires_grad_(True)
    out = loss(image, text, relevance)
    out["loss"].backward()
    for grad in (image.grad, text.grad):
        assert grad is not None
        assert torch.isfinite(grad).all()
        assert grad.abs().sum() > 0


def test_gradient_reaches_exactly_the_violating_pairs():
    # the swap of the test above, threshold 0.63, beta 0.25, seen from both sides:
    #   image 0 (row 0): positives {0, 1} worst S[0, 1] = 0.58, negatives {2, 3} best S[0, 2] = 0.62:
    #     0.01 - 0.58 + 0.62 = 0.05 > 0 -> +beta at (0, 2), -beta at (0, 1)
    #   text 2 (column 2): R[:, 2] = (0.3, 0.3, 1, 0.8): positives {2, 3} worst S[3, 2] = 0.6,
    #     negatives {0, 1} best S[0, 2] = 0.62: 0.01 - 0.6 + 0.62 = 0.03 > 0
    #     -> +beta at (0, 2), -beta at (3, 2)
    #   text 1 (column 1): positives {0, 1, 3} worst 0.58, negatives {2} 0.3: satisfied
    #   every triplet margin holds (0.9 - 0.62 >= 0.2), so nothing else moves
    scores, relevance = _coherent_batch()
    scores[0, 2], scores[0, 1] = 0.62, 0.58
    image, text = features_for(scores, requires_grad=True)
    out = LadderLoss(thresholds=(0.63,), margins=(0.2, 0.01), betas=(1.0, 0.25))(image, text, relevance)
    assert val(out["ladder_1"]) == pytest.approx(0.25 * (0.05 + 0.03))
    out["loss"].backward()
    grad_s = text.grad.T  # S = text.T here
    expected = torch.zeros_like(grad_s)
    expected[0, 2], expected[0, 1], expected[3, 2] = 0.5, -0.25, -0.25
    torch.testing.assert_close(grad_s, expected)


def test_no_gradient_when_every_margin_holds():
    scores, relevance = _coherent_batch()
    image, text = features_for(scores, requires_grad=True)
    AdaptiveLadderLoss()(image, text, relevance)["loss"].backward()
    assert text.grad is not None and text.grad.abs().sum() == 0


# ---------------------------------------------------------------------------------------------
# batched computation against plain loops


def _loop_ladder(scores: np.ndarray, row_levels: np.ndarray, col_levels: np.ndarray, margins, betas) -> float:
    """sum_l beta_l sum_q [m_l - min_{level<=l} S + max_{level>l} S]_+ over rows and columns."""
    total = 0.0
    batch = scores.shape[0]
    for direction, lev in ((scores, row_levels), (scores.T, col_levels)):
        for q in range(batch):
            for boundary, (margin, beta) in enumerate(zip(margins, betas, strict=True)):
                above = [direction[q, j] for j in range(batch) if lev[q, j] <= boundary]
                below = [direction[q, j] for j in range(batch) if lev[q, j] > boundary]
                if above and below:
                    total += beta * max(0.0, margin - min(above) + max(below))
    return total


def test_fixed_ladder_matches_a_loop():
    image, text, relevance = random_batch(20, seed=8)
    thresholds, margins, betas = (0.7, 0.45, 0.2), (0.2, 0.05, 0.03, 0.02), (1.0, 0.5, 0.25, 0.125)
    got = LadderLoss(thresholds, margins, betas)(image, text, relevance)["loss"]
    rel = relevance.numpy()

    def level(v: float, diagonal: bool) -> int:
        return 0 if diagonal else 1 + sum(v < t for t in thresholds)

    b = rel.shape[0]
    rows = np.array([[level(rel[q, j], q == j) for j in range(b)] for q in range(b)])
    cols = np.array([[level(rel[j, t], t == j) for j in range(b)] for t in range(b)])
    want = _loop_ladder((image @ text.T).numpy(), rows, cols, margins, betas)
    assert val(got) == pytest.approx(want, abs=1e-6)


def test_adaptive_ladder_matches_a_per_row_loop():
    image, text, relevance = random_batch(24, seed=9)
    relevance[:12, :12] = torch.rand(12, 12, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    relevance.fill_diagonal_(1.0)  # half the rows continuous, half discrete
    loss = AdaptiveLadderLoss()
    got = loss(image, text, relevance)
    rel = relevance.numpy()
    b = rel.shape[0]

    def row_levels(matrix: np.ndarray) -> np.ndarray:
        out = np.zeros((b, b), dtype=int)
        for q in range(b):  # one query at a time
            others = [j for j in range(b) if j != q]
            assignment = adaptive_levels(torch.tensor(matrix[q, others])[None, :], 2, 4)
            out[q, others] = assignment.levels[0].numpy() + 1
        return out

    margins, betas = (0.2, 0.01, 0.01, 0.01), (1, 1 / 4, 1 / 8, 1 / 16)
    want = _loop_ladder((image @ text.T).numpy(), row_levels(rel), row_levels(rel.T), margins, betas)
    assert val(got["loss"]) == pytest.approx(want, abs=1e-6)
    assert val(got["loss"]) > val(got["triplet"])


def test_precomputed_levels_give_the_same_loss():
    image, text, relevance = random_batch(10, seed=4)
    loss = AdaptiveLadderLoss()
    levels = loss.levels(relevance)
    assert levels.shape == (2, 10, 10)
    assert (levels[:, range(10), range(10)] == 0).all()
    a = loss(image, text, relevance)
    b = loss(image, text, None, levels=levels)
    assert val(a["loss"]) == val(b["loss"])


@pytest.mark.parametrize("batch", [1, 2, 3])
def test_tiny_batches_only_pay_the_triplet(batch):
    image, text, relevance = random_batch(batch, seed=6)
    out = AdaptiveLadderLoss()(image, text, relevance)
    triplet = TripletLoss()(image, text, relevance)
    assert val(out["loss"]) == pytest.approx(val(triplet["loss"]))
    assert torch.isfinite(out["loss"])


def test_float32_features():
    image, text, relevance = random_batch(12, seed=2)
    relevance = relevance.float()
    out = AdaptiveLadderLoss()(image.float(), text.float(), relevance)
    assert out["loss"].dtype == torch.float32
    ref = AdaptiveLadderLoss()(image, text, relevance.double())  # the same relevance values
    assert val(out["loss"]) == pytest.approx(val(ref["loss"]), rel=1e-5)


# ---------------------------------------------------------------------------------------------
# validation


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: LadderLoss(thresholds=(0.4, 0.6), margins=(0.2, 0.01, 0.01), betas=(1, 1, 1)), "descending"),
        (lambda: LadderLoss(thresholds=(0.6, 0.6), margins=(0.2, 0.01, 0.01), betas=(1, 1, 1)), "descending"),
        (lambda: LadderLoss(thresholds=(1.2,)), r"\(0, 1\]"),
        (lambda: LadderLoss(thresholds=(0.0,)), r"\(0, 1\]"),
        (lambda: LadderLoss(margins=(0.2, -0.01)), "non-negative"),
        (lambda: LadderLoss(betas=(1.0,)), "one beta per margin"),
        (lambda: LadderLoss(thresholds=(0.7, 0.4)), "len\\(thresholds\\) \\+ 1"),
        (lambda: LadderLoss(reduction="max"), "reduction"),
        (lambda: TripletLoss(margin=-0.1), "non-negative"),
        (lambda: AdaptiveLadderLoss(k_min=3, k_max=2, margins=(0.2, 0.1), betas=(1, 1)), "empty"),
        (lambda: AdaptiveLadderLoss(k_min=1), "k_min"),
        (lambda: AdaptiveLadderLoss(margins=(0.2, 0.01), betas=(1, 0.25)), "k_max = 4"),
        (lambda: AdaptiveLadderLoss(betas=(1, 0.5)), "one beta per margin"),
        (lambda: AdaptiveLadderLoss(max_iter=0), "max_iter"),
        (lambda: InfoNCELoss(temperature=0), "temperature"),
        (lambda: LadderLoss(margins=(0.2, float("nan"))), "finite"),
    ],
)
def test_bad_hyper_parameters_are_refused(make, message):
    with pytest.raises(ValueError, match=message):
        make()


@pytest.mark.parametrize("loss", [TripletLoss(), LadderLoss(), AdaptiveLadderLoss(), InfoNCELoss()])
def test_bad_inputs_are_refused(loss):
    image, text, relevance = random_batch(4)
    bad_cases = [
        (image, text[:3], relevance[:3, :3], "same shape"),
        (image[0], text[0], relevance, "matrices"),
        (image, text, relevance[:3], r"\(4, 4\)"),
        (image, text, relevance * 2, r"\[0, 1\]"),
        (image, text, relevance - 0.5, r"\[0, 1\]"),
        (image, text, relevance.clone().fill_diagonal_(float("nan")), r"\[0, 1\]"),
    ]
    for i, t, rel, message in bad_cases:
        with pytest.raises(ValueError, match=message):
            loss(i, t, rel)


def test_ladder_needs_relevance():
    image, text, _ = random_batch(4)
    with pytest.raises(ValueError, match="relevance"):
        LadderLoss()(image, text, None)
    with pytest.raises(ValueError, match="relevance"):
        AdaptiveLadderLoss()(image, text, None)
    with pytest.raises(ValueError, match="levels"):
        AdaptiveLadderLoss()(image, text, None, levels=torch.zeros(2, 3, 3, dtype=torch.long))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    image, text, relevance = random_batch(64, seed=12)
    for loss in (TripletLoss(), LadderLoss(), AdaptiveLadderLoss(), InfoNCELoss()):
        cpu = loss(image, text, relevance)["loss"]
        gpu = loss.cuda()(image.cuda(), text.cuda(), relevance.cuda())["loss"]
        assert val(gpu) == pytest.approx(val(cpu), rel=1e-6)


def test_collapse_monitor_reports_each_boundarys_active_share_and_violation():
    from trainer.losses import boundary_stats, ladder_hinges

    scores = torch.tensor([[[0.9, 0.5, 0.45, 0.1], [0.2, 0.8, 0.1, 0.0]]])
    levels = torch.tensor([[[0, 1, 2, 2], [1, 0, 1, 1]]])
    margins = torch.tensor([0.2, 0.1])
    hinges = ladder_hinges(scores, levels, margins)
    stats = boundary_stats(hinges, levels, margins)
    # boundary 0: 0.2 - 0.9 + 0.5 < 0 and 0.2 - 0.8 + 0.2 < 0: none active
    assert float(stats["stat_active_0"]) == 0.0 and float(stats["stat_violation_0"]) == 0.0
    # boundary 1: only the first query has levels on both sides: 0.1 - 0.5 + 0.45 = 0.05
    assert float(stats["stat_active_1"]) == 1.0
    assert float(stats["stat_violation_1"]) == pytest.approx(0.05)
    out = AdaptiveLadderLoss(reduction="mean")(*random_batch(8)[:2], torch.rand(8, 8).fill_diagonal_(1.0))
    assert {"stat_active_0", "stat_violation_0", "stat_active_3"} <= set(out)


def test_soft_infonce_targets_follow_relevance():
    from trainer.losses import SoftInfoNCELoss

    image, text, _ = random_batch(6)
    eye = torch.eye(6, dtype=image.dtype)
    sharp = SoftInfoNCELoss(tau=1e-4)(image, text, eye, logit_scale=10.0)
    plain = InfoNCELoss()(image, text, None, logit_scale=10.0)
    assert val(sharp["loss"]) == pytest.approx(val(plain["loss"]), rel=1e-6)  # one-hot targets
    graded = eye.clone()
    graded[0, 1] = graded[1, 0] = 0.9
    logits = 10.0 * image @ text.T
    target = torch.softmax(graded / 0.1, dim=1)
    by_hand = -(target * torch.log_softmax(logits, dim=1)).sum(dim=1).mean()
    out = SoftInfoNCELoss(tau=0.1)(image, text, graded, logit_scale=10.0)
    assert val(out["i2t"]) == pytest.approx(float(by_hand), rel=1e-6)
    with pytest.raises(ValueError, match="tau"):
        SoftInfoNCELoss(tau=0.0)
