"""Learning-rate schedules, loss phases and objective specs."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from trainer.objectives import Objective, parse_objective
from trainer.schedule import Phase, parse_phases, phase_at, warmup_cosine


def test_warmup_then_cosine_to_the_floor():
    lr = warmup_cosine(1e-3, warmup=0.1, min_lr_ratio=0.1)
    assert lr(0.0) < lr(0.05) < lr(0.1) == pytest.approx(1e-3)
    values = [lr(p / 100) for p in range(10, 101)]
    assert all(a >= b for a, b in itertools.pairwise(values))
    assert lr(1.0) == pytest.approx(1e-4)
    assert lr(2.0) == lr(1.0) and lr(-1.0) == lr(0.0)


@pytest.mark.parametrize(
    ("args", "message"),
    [((0.0, 0.1), "positive"), ((1e-3, 1.0), "warm-up"), ((1e-3, 0.1, 2.0), "minimum")],
)
def test_schedule_rejects_bad_settings(args, message):
    with pytest.raises(ValueError, match=message):
        warmup_cosine(*args)


def test_phases_parse_and_switch():
    phases = parse_phases("infonce; 0.5: infonce+1*adaptive")
    assert phases == (Phase(0.0, "infonce"), Phase(0.5, "infonce+1*adaptive"))
    assert phase_at(phases, 0.49) == 0 and phase_at(phases, 0.5) == 1 and phase_at(phases, 1.0) == 1
    assert parse_phases("triplet") == (Phase(0.0, "triplet"),)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0.2: infonce", "first phase"),
        ("infonce; adaptive", "fraction"),
        ("infonce; 0.5: adaptive; 0.4: triplet", "increase"),
        ("infonce;", "empty phase"),
        ("infonce; x: adaptive", "fraction"),
    ],
)
def test_bad_phases_are_refused(text, message):
    with pytest.raises(ValueError, match=message):
        parse_phases(text)


def test_objective_specs():
    assert parse_objective("infonce+0.5*adaptive") == [(1.0, "infonce"), (0.5, "adaptive")]
    assert parse_objective("Ladder") == [(1.0, "ladder2")]
    for bad, message in [("hinge", "unknown loss"), ("infonce+infonce", "twice"), ("0*triplet", "positive")]:
        with pytest.raises(ValueError, match=message):
            parse_objective(bad)


def test_weighted_sum_adds_the_parts():
    torch.manual_seed(0)
    img = F.normalize(torch.randn(6, 8), dim=-1)
    txt = F.normalize(torch.randn(6, 8), dim=-1)
    rel = torch.rand(6, 6)
    rel.fill_diagonal_(1.0)
    scale = torch.tensor(10.0)
    both = Objective("infonce+0.5*ladder3")(img, txt, rel, logit_scale=scale)
    alone_nce = Objective("infonce")(img, txt, rel, logit_scale=scale)["loss"]
    alone_ladder = Objective("ladder3")(img, txt, rel)["loss"]
    torch.testing.assert_close(both["loss"], alone_nce + 0.5 * alone_ladder)
    assert {"infonce", "ladder3"} <= set(both)
    assert not Objective("adaptive").uses_logit_scale and Objective("infonce+adaptive").uses_logit_scale
