"""The persona model: equations against hand-computed values, its special cases (PReF-linear,
AMP-CF), configuration, fitted behaviour, recovery of planted personas, determinism and bad
input. The exact inference itself is specified in test_persona_inference.py."""
from __future__ import annotations

import math
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch
import yaml
from scipy.optimize import linear_sum_assignment

from recsys_pref.data import make_synthetic
from recsys_pref.models import make_model
from recsys_pref.models.persona import (
    AmpCF,
    PersonaConfig,
    PersonaModel,
    PersonaRecommender,
    PersonaState,
    PrefLinear,
    bradley_terry_loss,
    multinomial_loss,
    persona_attention,
    persona_rewards,
    sampled_softmax_loss,
    score_from_state,
)

CONF = Path(__file__).resolve().parents[1] / "conf"
TINY = dict(n_bases=4, embedding_dim=4, als_iterations=5)
ENCODER = TINY | dict(inference="encoder", hidden_dim=16, max_epochs=5, batch_size=16, progress=False)


def tiny_matrix(n_users: int = 40, n_items: int = 30, seed: int = 0) -> sp.csr_matrix:
    """Random binary positives, every user with at least 3 items."""
    rng = np.random.default_rng(seed)
    dense = (rng.random((n_users, n_items)) < 0.2).astype(np.float32)
    dense[np.arange(n_users)[:, None], rng.integers(0, n_items, (n_users, 3))] = 1.0
    return sp.csr_matrix(dense)


@pytest.fixture(scope="module")
def fitted() -> PersonaRecommender:
    return PersonaModel(**TINY).fit(tiny_matrix())


# -- equations ------------------------------------------------------------------------------
def test_score_matches_hand_computed_equations() -> None:
    coefficients = torch.tensor([[[1.0, 0.0], [0.0, 2.0]]])  # c_1 = (1, 0), c_2 = (0, 2)
    prior_logits = torch.zeros(1, 2)
    rewards = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])  # r(i) for 3 items
    bias = torch.tensor([0.5, 0.0, -1.0])
    scores, attention = score_from_state(coefficients, prior_logits, rewards, bias, temperature=1.0)
    # rho_1 = (1, 0, 1), rho_2 = (0, 2, 2); alpha_1 = e^rho_1 / (e^rho_1 + e^rho_2)
    e = math.e
    alpha_1 = [e / (e + 1), 1 / (1 + e**2), e / (e + e**2)]
    expected = [
        alpha_1[0] * 1 + (1 - alpha_1[0]) * 0 + 0.5,
        alpha_1[1] * 0 + (1 - alpha_1[1]) * 2 + 0.0,
        alpha_1[2] * 1 + (1 - alpha_1[2]) * 2 - 1.0,
    ]
    np.testing.assert_allclose(scores.numpy()[0], expected, rtol=1e-6)
    np.testing.assert_allclose(attention.numpy()[0, 0], alpha_1, rtol=1e-6)
    np.testing.assert_allclose(attention.sum(dim=1).numpy(), 1.0, rtol=1e-6)


def test_attention_uses_temperature_and_prior_logits() -> None:
    rho = torch.tensor([[[2.0], [0.0]]])  # (B=1, M=2, n=1)
    prior_logits = torch.tensor([[0.0, math.log(3.0)]])
    alpha = persona_attention(rho, prior_logits, temperature=2.0)
    # logits: 2/2 + 0 = 1 and 0/2 + log 3
    np.testing.assert_allclose(alpha[0, :, 0].numpy(), [math.e / (math.e + 3), 3 / (math.e + 3)], rtol=1e-6)


def test_persona_rewards_per_user_item_lists() -> None:
    coefficients = torch.tensor([[[1.0, 2.0]], [[0.0, -1.0]]])  # (B=2, M=1, K=2)
    rewards = torch.tensor([[[1.0, 1.0]], [[3.0, 4.0]]])  # (B=2, n=1, K=2)
    np.testing.assert_allclose(persona_rewards(coefficients, rewards).numpy().ravel(), [3.0, -4.0])


def test_multinomial_loss_hand_computed() -> None:
    scores = torch.tensor([[0.0, math.log(2.0), 0.0]])  # softmax = (1/4, 1/2, 1/4)
    history = torch.tensor([[0.0, 1.0, 1.0]])
    assert multinomial_loss(scores, history).item() == pytest.approx(math.log(2) + math.log(4))


def test_bradley_terry_loss_hand_computed() -> None:
    loss = bradley_terry_loss(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 0.0]))
    assert loss.item() == pytest.approx((math.log(1 + math.exp(-1)) + math.log(2)) / 2)


def test_sampled_softmax_loss_hand_computed() -> None:
    positives = torch.tensor([[math.log(2.0), 5.0]])
    mask = torch.tensor([[1.0, 0.0]])  # the second slot is padding
    negatives = torch.tensor([[0.0, 0.0, float("-inf")]])  # the last sample is a positive: ignored
    # p = 2 / (2 + 1 + 1)
    assert sampled_softmax_loss(positives, negatives, mask).item() == pytest.approx(math.log(2))


def test_single_persona_reduces_to_linear_model() -> None:
    generator = torch.Generator().manual_seed(0)
    coefficients = torch.randn(5, 1, 3, generator=generator)
    prior_logits = torch.randn(5, 1, generator=generator)
    rewards, bias = torch.randn(7, 3, generator=generator), torch.randn(7, generator=generator)
    scores, attention = score_from_state(coefficients, prior_logits, rewards, bias, temperature=0.3)
    assert torch.equal(attention, torch.ones_like(attention))
    np.testing.assert_allclose(scores.numpy(), (coefficients[:, 0] @ rewards.T + bias).numpy(), rtol=1e-6, atol=1e-6)


def test_identity_bases_give_amp_cf() -> None:
    model = AmpCF(embedding_dim=4, als_iterations=5).fit(tiny_matrix())
    assert model.config.n_bases == 4 and model.config.identity_bases
    np.testing.assert_array_equal(model.shared.bases, np.eye(4))
    np.testing.assert_array_equal(model.shared.rewards, model.shared.item_embeddings)  # r(i) = e_i


# -- configuration --------------------------------------------------------------------------
def test_presets_and_names() -> None:
    assert PersonaConfig.preset("pref-linear").n_personas == 1
    assert PersonaModel().name == "persona" and PrefLinear().name == "pref-linear" and AmpCF().name == "amp-cf"
    assert PersonaRecommender(PersonaConfig.preset("amp-cf")).name == "amp-cf"
    assert AmpCF(embedding_dim=32).config.n_bases == 32


@pytest.mark.parametrize("cls", [PersonaModel, PrefLinear, AmpCF])
def test_grid_has_at_most_eight_valid_configurations(cls: type[PersonaRecommender]) -> None:
    assert 1 <= len(cls.grid) <= 8
    for params in cls.grid:
        config = cls(**params).config
        assert config.n_bases <= 64 and config.variant == cls.name


def test_bad_configuration_raises_value_error() -> None:
    with pytest.raises(ValueError, match="unknown persona preset"):
        PersonaConfig.preset("nope")
    with pytest.raises(ValueError, match="no hyperparameter"):
        PersonaModel(n_layers=3)
    with pytest.raises(ValueError, match="K = d"):
        PersonaConfig(identity_bases=True, n_bases=8, embedding_dim=16)
    with pytest.raises(ValueError, match="loss must be one of"):
        PersonaConfig(loss="bradley_terry")
    with pytest.raises(ValueError, match="must be <= embedding_dim"):
        PersonaConfig(n_bases=64, embedding_dim=32)
    with pytest.raises(ValueError, match="temperature"):
        PersonaConfig(temperature=0.0)


@pytest.mark.parametrize("preset", ["persona", "pref-linear", "amp-cf"])
def test_yaml_config_lists_every_default(preset: str) -> None:
    document = yaml.safe_load((CONF / f"{preset}.yaml").read_text())
    assert document["model"] == preset
    assert document["params"] == asdict(PersonaConfig.preset(preset))


def test_state_bytes_is_m_times_k_plus_one_floats() -> None:
    assert PersonaModel(n_personas=2, n_bases=32).state_bytes == 2 * 33 * 4
    assert PrefLinear(n_bases=64).state_bytes == 65 * 4


def test_state_vectors_round_trip() -> None:
    state = PersonaState(np.arange(12).reshape(2, 2, 3), np.array([[0.5, -0.5], [1.0, 2.0]]))
    vectors = state.vectors()
    assert vectors.shape == (2, 2 * (3 + 1))
    back = PersonaState.from_vectors(vectors, n_personas=2, n_bases=3)
    np.testing.assert_array_equal(back.coefficients, state.coefficients)
    np.testing.assert_array_equal(back.prior_logits, state.prior_logits)


# -- fitted behaviour -----------------------------------------------------------------------
def test_fitted_scores_are_finite_and_recommend_excludes_seen(fitted: PersonaRecommender) -> None:
    history = tiny_matrix()
    scores = fitted.score(history[:5])
    assert scores.shape == (5, 30) and scores.dtype == np.float32 and np.isfinite(scores).all()
    ids, values = fitted.recommend(0, history[0], N=10)
    assert len(ids) == 10 and not set(ids) & set(history[0].indices) and np.all(np.diff(values) <= 0)


def test_fold_in_leaves_the_shared_side_bit_identical(fitted: PersonaRecommender) -> None:
    before = {name: getattr(fitted.shared, name).copy() for name in ("item_embeddings", "item_bias", "bases")}
    state = fitted.fold_in(tiny_matrix(seed=1)[:8])
    assert state.coefficients.shape == (8, 2, 4) and state.prior_logits.shape == (8, 2)
    assert all(np.array_equal(before[name], getattr(fitted.shared, name)) for name in before)


def test_score_is_the_scorer_over_the_folded_in_state(fitted: PersonaRecommender) -> None:
    history = tiny_matrix(seed=2)[:6]
    terms = fitted.scorer.terms(fitted.fold_in(history))
    np.testing.assert_allclose(terms.scores, fitted.score(history), rtol=1e-5, atol=1e-6)
    assert terms.attention.shape == (6, 2, 30)
    np.testing.assert_allclose(terms.attention.sum(axis=1), 1.0, rtol=1e-5)


def test_item_bias_is_zero_and_rewards_are_rotated_item_factors(fitted: PersonaRecommender) -> None:
    shared = fitted.shared
    np.testing.assert_array_equal(shared.item_bias, 0.0)
    np.testing.assert_allclose(shared.rewards, shared.item_embeddings @ shared.bases.T, rtol=1e-5, atol=1e-6)


def test_same_seed_gives_identical_scores() -> None:
    matrix = tiny_matrix(seed=4)
    first = PersonaModel(**TINY, seed=7).fit(matrix).score(matrix[:5])
    second = PersonaModel(**TINY, seed=7).fit(matrix).score(matrix[:5])
    np.testing.assert_array_equal(first, second)


@pytest.mark.parametrize("loss", ["multinomial", "sampled_softmax", "bpr"])
def test_the_encoder_option_trains_with_each_loss(loss: str) -> None:
    model = PersonaModel(**ENCODER, loss=loss, n_negatives=8).fit(tiny_matrix())
    assert np.isfinite(model.score(tiny_matrix()[:3])).all()


def test_fit_leaves_no_files_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    PersonaModel(**ENCODER).fit(tiny_matrix())
    assert list(tmp_path.iterdir()) == []


def test_encoder_early_stopping_restores_best_epoch() -> None:
    model = PersonaModel(**(ENCODER | {"max_epochs": 30, "patience": 2})).fit(tiny_matrix(n_users=80))
    summary = model.training_summary
    assert 0 <= summary["best_epoch"] <= summary["epochs"] and np.isfinite(summary["val_ndcg@100"])


# -- planted personas -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def planted() -> tuple[PersonaRecommender, object]:
    dataset = make_synthetic(n_users=200, n_items=120, n_personas=4, density=0.1, seed=0, personas_per_user=1)
    config = dict(n_bases=8, embedding_dim=8)
    return PersonaModel(**config).fit(dataset.to_csr()), dataset


def test_planted_taste_directions_recovered(planted) -> None:
    """Per planted persona k, the learned scores of its users (centred over items) are matched
    to the planted item scores <persona_j, e_i> by Hungarian matching on correlation: the
    matching must pair k with k, and strongly."""
    model, dataset = planted
    truth = dataset.ground_truth
    persona_of_user = truth.user_mix.argmax(axis=1)
    scores = model.score(dataset.to_csr())
    learned = np.stack([scores[persona_of_user == k].mean(axis=0) for k in range(4)])  # (4, n_items)
    planted_scores = truth.persona_vectors @ truth.item_embeddings.T  # (4, n_items)
    correlation = np.corrcoef(learned, planted_scores)[:4, 4:]
    rows, cols = linear_sum_assignment(-correlation)
    assert np.array_equal(cols, rows)
    assert correlation[rows, cols].mean() > 0.8


def test_users_sharing_a_planted_persona_have_similar_states(planted) -> None:
    model, dataset = planted
    persona_of_user = dataset.ground_truth.user_mix.argmax(axis=1)
    vectors = model.fold_in(dataset.to_csr()).vectors()
    vectors = vectors - vectors.mean(axis=0)
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    cosine = unit @ unit.T
    same = persona_of_user[:, None] == persona_of_user[None, :]
    off_diagonal = ~np.eye(len(unit), dtype=bool)
    assert cosine[same & off_diagonal].mean() > cosine[~same].mean() + 0.5


# -- bad input ------------------------------------------------------------------------------
def test_bad_input_raises_clear_value_error(fitted: PersonaRecommender) -> None:
    history = tiny_matrix()[:2].toarray()
    with_nan = history.copy()
    with_nan[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        fitted.score(sp.csr_matrix(with_nan))
    with pytest.raises(ValueError, match="item columns"):
        fitted.fold_in(sp.csr_matrix(np.ones((1, 31), np.float32)))
    with pytest.raises(ValueError, match="empty history"):
        fitted.fold_in(sp.csr_matrix((2, 30), dtype=np.float32))
    with pytest.raises(ValueError, match="NaN or infinite"):
        PersonaState(np.full((1, 2, 4), np.nan), np.zeros((1, 2)))
    with pytest.raises(ValueError, match=r"\(n, M, K\)"):
        PersonaState(np.zeros((1, 2, 4)), np.zeros((1, 3)))
    with pytest.raises(ValueError, match="K = 3"):
        fitted.scorer.scores(PersonaState(np.zeros((1, 2, 3)), np.zeros((1, 2))))


def test_unfitted_model_raises() -> None:
    from recsys_pref.models.base import NotFittedError

    with pytest.raises(NotFittedError):
        PersonaModel().fold_in(tiny_matrix())
