"""Bounds on user states (models.state_bounds) and their place in the persona model."""
from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from recsys_pref.data import make_synthetic
from recsys_pref.models.persona import PersonaConfig, PersonaRecommender
from recsys_pref.models.state_bounds import StateBounds, bound_state, entropy



@pytest.fixture(scope="module")
def histories():
    return make_synthetic(n_users=60, n_items=30, n_personas=2, density=0.2, seed=1).to_csr()


def random_state(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(5, 3, 6, generator=generator) * 3, torch.randn(5, 3, generator=generator) * 4


def test_bounds_off_return_the_state_itself():
    coefficients, logits = random_state()
    bounded = bound_state(coefficients, logits, coefficients[:1], logits[:1], StateBounds())
    assert bounded[0] is coefficients and bounded[1] is logits


def test_full_shrinkage_gives_the_prior_state():
    coefficients, logits = random_state()
    prior = (torch.zeros(1, 3, 6), torch.zeros(1, 3))
    bounded = bound_state(coefficients, logits, *prior, StateBounds(shrinkage=1.0))
    assert torch.equal(bounded[0], torch.zeros_like(coefficients)) and torch.equal(bounded[1], torch.zeros_like(logits))


def test_persona_entropy_floor_is_met_and_leaves_flat_users_alone():
    coefficients, logits = random_state()
    logits[0] = 0.0  # already uniform
    _, bounded = bound_state(coefficients, logits, coefficients[:1], logits[:1], StateBounds(min_persona_entropy=0.8))
    assert (entropy(bounded) >= 0.8 * math.log(3) - 1e-6).all()
    assert torch.equal(bounded[0], logits[0])


def test_base_entropy_floor_is_met_keeping_signs_and_norms():
    coefficients, logits = random_state()
    bounded, _ = bound_state(coefficients, logits, coefficients[:1], logits[:1], StateBounds(min_base_entropy=0.9))
    weights = bounded.pow(2) / bounded.pow(2).sum(dim=-1, keepdim=True)
    assert (entropy(torch.log(weights)) >= 0.9 * math.log(6) - 1e-5).all()
    assert torch.equal(torch.sign(bounded), torch.sign(coefficients))
    torch.testing.assert_close(bounded.norm(dim=-1), coefficients.norm(dim=-1))


def test_bounds_reject_values_outside_zero_to_one():
    with pytest.raises(ValueError, match="shrinkage"):
        StateBounds(shrinkage=1.5)
    with pytest.raises(ValueError, match="min_base_entropy"):
        PersonaConfig(min_base_entropy=-0.1)


def test_shrinkage_strength_zero_changes_nothing(histories, tiny_persona):
    plain = PersonaRecommender(tiny_persona).fit(histories)
    zero = PersonaRecommender(replace(tiny_persona, state_shrinkage=0.0, min_persona_entropy=0.0)).fit(histories)
    np.testing.assert_array_equal(plain.score(histories), zero.score(histories))


def test_bounded_model_folds_users_in_within_the_bounds(histories, tiny_persona):
    model = PersonaRecommender(replace(tiny_persona, state_shrinkage=0.5, min_persona_entropy=0.9)).fit(histories)
    state = model.fold_in(histories[:10])
    assert (entropy(torch.from_numpy(state.prior_logits)) >= 0.9 * math.log(2) - 1e-6).all()
    np.testing.assert_allclose(model.scorer.scores(state), model.score(histories[:10]), rtol=1e-5, atol=1e-5)
