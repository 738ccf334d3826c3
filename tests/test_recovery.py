"""Recovery metrics of planted personas: perfect recovery scores 1 / 0, a wrong model does not."""
import numpy as np
import pytest

from recsys_pref.data import make_synthetic
from recsys_pref.evaluation.recovery import direction_recovery, mix_recovery, planted_utilities


@pytest.fixture(scope="module")
def truth():
    return make_synthetic(n_users=60, n_items=50, n_personas=3, personas_per_user=1, seed=1).ground_truth


def one_persona_per_taste(truth):
    """A 'model' whose persona m is exactly planted taste m, attending to the user's own taste."""
    utilities = planted_utilities(truth)  # (J, n_items)
    n_users, n_tastes = truth.user_mix.shape
    rewards = np.broadcast_to(utilities, (n_users, n_tastes, utilities.shape[1])).copy()
    attention = np.broadcast_to(truth.user_mix[:, :, None], rewards.shape).copy()
    return rewards, attention


def test_planted_directions_as_personas_recover_with_cosine_one(truth):
    rewards, _ = one_persona_per_taste(truth)
    assert direction_recovery(rewards, truth) == pytest.approx(1.0)


def test_random_personas_do_not_recover_the_directions(truth):
    rewards = np.random.default_rng(0).normal(size=(60, 3, 50))
    assert direction_recovery(rewards, truth) < 0.5


def test_planted_mix_as_attention_recovers_with_distance_zero(truth):
    rewards, attention = one_persona_per_taste(truth)
    distance, uniform = mix_recovery(rewards, attention, truth)
    assert distance == pytest.approx(0.0)
    assert uniform > 0.5
