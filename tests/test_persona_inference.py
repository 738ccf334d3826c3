"""Exact persona inference (models.persona.inference) and the ALS-built shared side
(models.persona.factorization): optimality, the ALS special case, EM's monotone objective,
known versus folded-in users, persistence and bad input."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from implicit.cpu.als import AlternatingLeastSquares

from recsys_pref.models import make_model
from recsys_pref.models.implicit_factors import implicit_threads
from recsys_pref.models.persona import PersonaRecommender, PersonaState
from recsys_pref.models.persona import inference
from recsys_pref.models.persona.factorization import taste_bases, varimax
from recsys_pref.models.persona.inference import InferenceSettings, infer_states, objective
from recsys_pref.models.state_bounds import bound_state

SMALL = dict(n_bases=6, embedding_dim=6, als_iterations=5)


def random_history(n_users: int = 30, n_items: int = 40, density: float = 0.2, seed: int = 0) -> sp.csr_matrix:
    """Random positive weights in (0.5, 2), every user with at least 3 items."""
    rng = np.random.default_rng(seed)
    dense = np.where(rng.random((n_users, n_items)) < density, rng.uniform(0.5, 2.0, (n_users, n_items)), 0.0)
    dense[np.arange(n_users)[:, None], rng.integers(0, n_items, (n_users, 3))] = 1.0
    return sp.csr_matrix(dense)


def random_rewards(n_items: int = 40, n_bases: int = 5, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).normal(scale=0.5, size=(n_items, n_bases))


def settings(n_personas: int, em_iterations: int = 10) -> InferenceSettings:
    return InferenceSettings(n_personas, regularization=2.0, alpha=3.0, em_iterations=em_iterations,
                             responsibility_scale=4.0, pseudocount=1.0)


def user_objective(history: sp.csr_matrix, row: int, rewards: np.ndarray, state: tuple[np.ndarray, np.ndarray],
                   config: InferenceSettings) -> torch.Tensor:
    coefficients = torch.tensor(state[0][row], dtype=torch.float64, requires_grad=True)
    log_weights = torch.tensor(state[1][row], dtype=torch.float64)
    items = history.indices[history.indptr[row] : history.indptr[row + 1]]
    weights = history.data[history.indptr[row] : history.indptr[row + 1]]
    value = objective(coefficients, log_weights, torch.from_numpy(rewards), items, weights, config)
    value.backward()
    return coefficients.grad


@pytest.fixture(scope="module")
def fitted() -> PersonaRecommender:
    return make_model("persona", **SMALL).fit(random_history(n_users=60, n_items=40))


@pytest.fixture(params=["factored", "history-space"])
def exact_route(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every history solved by factoring A_m, or every one in history space (Woodbury)."""
    monkeypatch.setattr(inference, "KERNEL_LENGTH_PER_BASE", 0.0 if request.param == "factored" else 1e9)
    return request.param


# -- the solve ------------------------------------------------------------------------------
def test_single_persona_is_the_closed_form_als_user_step(exact_route: str) -> None:
    history, rewards = random_history(), random_rewards()
    config = settings(1)
    coefficients, logits = infer_states(history, rewards, config, dtype=torch.float64)
    for row in range(history.shape[0]):
        items = history.indices[history.indptr[row] : history.indptr[row + 1]]
        confidence = config.alpha * history.data[history.indptr[row] : history.indptr[row + 1]]
        own = rewards[items]
        # (Y^T Y + Y^T (C - I) Y + lambda I) x = Y^T C p, confidence alpha x_ui on the history
        lhs = rewards.T @ rewards + own.T @ ((confidence - 1)[:, None] * own) + config.regularization * np.eye(5)
        np.testing.assert_allclose(coefficients[row, 0], np.linalg.solve(lhs, own.T @ confidence), rtol=1e-5)
    np.testing.assert_array_equal(logits, 0.0)


def test_single_persona_equals_implicit_recalculate_user() -> None:
    history, rewards = random_history(), random_rewards().astype(np.float32)
    config = settings(1)
    with implicit_threads():
        als = AlternatingLeastSquares(factors=5, regularization=config.regularization, alpha=config.alpha,
                                      dtype=np.float32, num_threads=1)
        als.item_factors = rewards
        expected = als.recalculate_user(np.arange(history.shape[0]), history.astype(np.float32))
    coefficients, _ = infer_states(history, rewards, config)
    np.testing.assert_allclose(coefficients[:, 0], expected, rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("n_personas", [1, 2, 3])
def test_gradient_of_the_objective_is_zero_at_the_solution(n_personas: int, exact_route: str) -> None:
    history, rewards = random_history(n_users=8), random_rewards()
    config = settings(n_personas, em_iterations=400)
    state = infer_states(history, rewards, config, dtype=torch.float64)
    for row in range(history.shape[0]):
        gradient = user_objective(history, row, rewards, state, config)
        assert gradient.abs().max().item() < 2e-3


def test_annealed_em_also_reaches_a_zero_gradient() -> None:
    history, rewards = random_history(n_users=8), random_rewards()
    config = replace(settings(2, em_iterations=400), responsibility_scale=10.0, initial_responsibility_scale=1.0)
    state = infer_states(history, rewards, config, dtype=torch.float64)
    for row in range(history.shape[0]):
        assert user_objective(history, row, rewards, state, config).abs().max().item() < 2e-3


def objective_per_m_step(history: sp.csr_matrix, rewards: np.ndarray, config: InferenceSettings,
                         in_history_space: bool = False) -> np.ndarray:
    """F at beta of every EM iterate (M-steps, users)."""
    table = torch.from_numpy(rewards)
    ridge = table.T @ table + config.regularization * torch.eye(table.shape[1], dtype=table.dtype)
    whitened = torch.linalg.solve(ridge, table.T).T if in_history_space else None
    [(rows, chunk)] = list(inference.history_chunks(history, config.alpha, torch.float64))
    values = []
    for coefficients, log_weights in inference.em_iterates(table, table.T @ table, chunk, config, whitened):
        values.append([float(objective(coefficients[row], log_weights[row], table,
                                       history.indices[history.indptr[user] : history.indptr[user + 1]],
                                       history.data[history.indptr[user] : history.indptr[user + 1]], config))
                       for row, user in enumerate(rows)])
    return np.array(values)


@pytest.mark.parametrize("in_history_space", [False, True])
@pytest.mark.parametrize("cg_steps", [0, 2])
def test_em_never_increases_the_objective(cg_steps: int, in_history_space: bool) -> None:
    config = InferenceSettings(3, regularization=2.0, alpha=3.0, em_iterations=12, responsibility_scale=4.0,
                               cg_steps=cg_steps)
    values = objective_per_m_step(random_history(n_users=12), random_rewards(), config, in_history_space)
    assert (np.diff(values, axis=0) <= 1e-9 * np.abs(values[1:])).all()
    assert (values[-1] < values[0] - 1e-3).any()  # and it does move


def test_annealed_em_never_increases_the_objective_once_beta_is_reached() -> None:
    config = InferenceSettings(3, regularization=2.0, alpha=3.0, em_iterations=12, responsibility_scale=40.0,
                               initial_responsibility_scale=1.0)
    values = objective_per_m_step(random_history(n_users=12), random_rewards(), config)[10:]  # E-steps 11, 12 at beta
    assert (np.diff(values, axis=0) <= 1e-9 * np.abs(values[1:])).all()


def test_annealing_sharpens_beta_geometrically_and_ends_with_two_e_steps_at_beta() -> None:
    config = InferenceSettings(2, regularization=1.0, alpha=1.0, em_iterations=5, responsibility_scale=27.0,
                               initial_responsibility_scale=1.0)
    np.testing.assert_allclose([config.scale_at(step) for step in range(1, 6)], [1.0, 3.0, 9.0, 27.0, 27.0])
    assert replace(config, initial_responsibility_scale=None).scale_at(1) == 27.0
    assert replace(config, em_iterations=2).scale_at(1) == 27.0  # too few steps to anneal


def test_personas_split_a_history_of_two_distinct_tastes() -> None:
    rewards = np.zeros((20, 2))
    rewards[:10, 0], rewards[10:, 1] = 1.0, 1.0  # two orthogonal tastes, ten items each
    history = sp.csr_matrix(([1.0] * 6, ([0] * 6, [0, 1, 2, 10, 11, 12])), shape=(1, 20))
    coefficients, logits = infer_states(history, rewards, settings(2), dtype=torch.float64)
    directions = np.sort(np.abs(coefficients[0] / np.linalg.norm(coefficients[0], axis=1, keepdims=True)), axis=0)
    np.testing.assert_allclose(directions, [[0.0, 0.0], [1.0, 1.0]], atol=0.05)  # one taste each
    np.testing.assert_allclose(np.exp(logits[0]), [0.5, 0.5], atol=1e-6)


def test_unit_scale_makes_the_largest_persona_unit_and_keeps_directions_and_ratios() -> None:
    history, rewards = random_history(), random_rewards()
    plain = infer_states(history, rewards, settings(2), dtype=torch.float64)
    unit = infer_states(history, rewards, replace(settings(2), unit_scale=True), dtype=torch.float64)
    np.testing.assert_allclose(np.linalg.norm(unit[0], axis=2).max(axis=1), 1.0, rtol=1e-6)
    scale = np.linalg.norm(plain[0], axis=2).max(axis=1)  # (n,)
    np.testing.assert_allclose(unit[0] * scale[:, None, None], plain[0], rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(unit[1], plain[1])


def test_the_cosine_fine_tune_infers_unit_scaled_states_and_a_unit_prior() -> None:
    model = make_model("persona", finetune="softmax", finetune_cosine=True, finetune_epochs=1, finetune_batch_size=32,
                       progress=False, **SMALL).fit(random_history(n_users=60, n_items=40))
    assert model.inference_settings.unit_scale
    states = model.fold_in(random_history(n_users=5, n_items=40)).coefficients
    np.testing.assert_allclose(np.linalg.norm(states, axis=2).max(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(model.prior_state().coefficients, axis=2), 1.0, rtol=1e-5)


@pytest.mark.parametrize("n_bases", [5, 12])  # with 12 bases some histories are short enough for history space
def test_states_do_not_depend_on_how_users_are_batched(monkeypatch: pytest.MonkeyPatch, n_bases: int) -> None:
    history, rewards = random_history(n_users=25), random_rewards(n_bases=n_bases)
    whole = infer_states(history, rewards, settings(2), dtype=torch.float64)
    monkeypatch.setattr(inference, "CHUNK_CELLS", 7)
    monkeypatch.setattr(inference, "MAX_CHUNK_USERS", 3)
    pieces = infer_states(history, rewards, settings(2), dtype=torch.float64)
    np.testing.assert_allclose(pieces[0], whole[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(pieces[1], whole[1], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("n_personas", [1, 2, 3])
def test_the_history_space_solve_equals_the_factored_solve(n_personas: int, monkeypatch: pytest.MonkeyPatch) -> None:
    history, rewards = random_history(n_users=20, density=0.1), random_rewards(n_bases=16)
    monkeypatch.setattr(inference, "KERNEL_LENGTH_PER_BASE", 0.0)
    factored = infer_states(history, rewards, settings(n_personas), dtype=torch.float64)
    monkeypatch.setattr(inference, "KERNEL_LENGTH_PER_BASE", 1e9)
    in_history_space = infer_states(history, rewards, settings(n_personas), dtype=torch.float64)
    np.testing.assert_allclose(in_history_space[0], factored[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(in_history_space[1], factored[1], rtol=1e-5, atol=1e-6)


def test_no_chunk_mixes_short_and_long_histories(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(inference, "MAX_CHUNK_USERS", 7)
    history = random_history(n_users=40, density=0.15)
    lengths = np.diff(history.indptr)
    for rows, _ in inference.history_chunks(history, 1.0, torch.float64, split_after=int(np.median(lengths))):
        assert len(set(lengths[rows] <= int(np.median(lengths)))) == 1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (runs where a GPU is lent)")
def test_states_solved_on_a_gpu_equal_those_on_the_cpu() -> None:
    history, rewards = random_history(n_users=25), random_rewards(n_bases=12)
    on_cpu = infer_states(history, rewards, settings(2), dtype=torch.float64)
    on_gpu = infer_states(history, rewards, settings(2), dtype=torch.float64, device="cuda")
    np.testing.assert_allclose(on_gpu[0], on_cpu[0], rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(on_gpu[1], on_cpu[1], rtol=1e-6, atol=1e-8)


def test_fewer_history_items_than_personas_give_a_finite_state() -> None:
    history = sp.csr_matrix(([1.0], ([0], [3])), shape=(1, 40))
    coefficients, logits = infer_states(history, random_rewards(), settings(3))
    assert np.isfinite(coefficients).all() and np.isfinite(logits).all()


def test_stored_zero_weights_are_not_history() -> None:
    rewards = random_rewards()
    with_zero = sp.csr_matrix((np.array([1.0, 0.0, 1.0]), np.array([0, 5, 9]), np.array([0, 3])), shape=(1, 40))
    without = sp.csr_matrix((np.array([1.0, 1.0]), np.array([0, 9]), np.array([0, 2])), shape=(1, 40))
    np.testing.assert_array_equal(infer_states(with_zero, rewards, settings(2))[0],
                                  infer_states(without, rewards, settings(2))[0])


# -- the shared side ------------------------------------------------------------------------
def test_varimax_recovers_a_simple_structure_hidden_by_a_rotation() -> None:
    rng = np.random.default_rng(0)
    simple = np.zeros((90, 3))
    for k in range(3):  # each item loads on one factor only
        simple[30 * k : 30 * (k + 1), k] = rng.uniform(0.5, 1.5, 30)
    rotation, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    recovered = simple @ rotation @ varimax(simple @ rotation)
    # each recovered column is one of the simple columns (up to sign and order)
    correlation = np.abs(np.corrcoef(recovered.T, simple.T)[:3, 3:])
    np.testing.assert_allclose(np.sort(correlation.max(axis=1)), 1.0, atol=1e-3)


def test_taste_bases_are_orthonormal_and_their_top_items_load_positively() -> None:
    factors = np.random.default_rng(2).normal(size=(200, 8))
    bases = taste_bases(factors, 5)
    assert bases.shape == (5, 8)
    np.testing.assert_allclose(bases @ bases.T, np.eye(5), atol=1e-5)
    loadings = factors @ bases.T
    assert ((loadings**3).sum(axis=0) > 0).all()
    with pytest.raises(ValueError, match="n_bases"):
        taste_bases(factors, 9)


def test_persona_with_k_equal_d_and_one_persona_ranks_as_als() -> None:
    history = random_history(n_users=60)
    params = dict(factors=6, regularization=10.0, alpha=3.0, iterations=5)
    als = make_model("als", **params).fit(history)
    same = dict(embedding_dim=6, als_iterations=5, user_regularization_scale=1.0)  # ALS's own fold-in penalty
    linear = make_model("pref-linear", n_bases=6, **same).fit(history)
    amp = make_model("amp-cf", n_personas=1, **same).fit(history)
    expected = als.score(history[:10])
    np.testing.assert_allclose(linear.score(history[:10]), expected, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(amp.score(history[:10]), expected, rtol=1e-3, atol=1e-4)


# -- the model ------------------------------------------------------------------------------
def test_known_and_folded_in_users_with_the_same_history_get_the_same_state(fitted: PersonaRecommender) -> None:
    history = random_history(n_users=60, n_items=40)
    known = fitted.score(history[:5], userids=np.arange(5))
    as_new = fitted.score(sp.csr_matrix(history[:5].toarray()))  # a fresh matrix, no user ids
    np.testing.assert_array_equal(known, as_new)
    state = fitted.fold_in(history[:5])
    np.testing.assert_array_equal(fitted.scorer.scores(state), known)


def test_prior_state_is_one_row_that_scores_popular_items_first(fitted: PersonaRecommender) -> None:
    prior = fitted.prior_state()
    assert prior.coefficients.shape == (1, 2, 6) and prior.prior_logits.shape == (1, 2)
    scores = fitted.scorer.scores(prior)[0]
    popularity = np.asarray(random_history(n_users=60, n_items=40).sum(axis=0)).ravel()
    assert np.corrcoef(scores, popularity)[0, 1] > 0.8
    empty_row = fitted.score(sp.csr_matrix((1, 40), dtype=np.float32))
    np.testing.assert_allclose(empty_row, fitted.scorer.scores(prior), rtol=1e-6)


def test_population_prior_of_identical_users_is_their_own_state() -> None:
    history = sp.csr_matrix(np.tile((np.arange(40) % 4 == 0).astype(np.float32), (20, 1)))
    model = make_model("pref-linear", **SMALL).fit(history)
    np.testing.assert_allclose(model.prior_state().coefficients[0], model.fold_in(history[:1]).coefficients[0],
                               rtol=1e-3, atol=1e-5)


def test_bounded_fold_in_shrinks_the_exact_state_toward_the_prior() -> None:
    history = random_history(n_users=60)
    model = make_model("persona", **SMALL, state_shrinkage=0.5).fit(history)
    raw, bounded = model.fold_in(history[:5], bounded=False), model.fold_in(history[:5])
    prior = model.prior_state()
    expected = bound_state(torch.from_numpy(raw.coefficients), torch.from_numpy(raw.prior_logits),
                           torch.from_numpy(prior.coefficients), torch.from_numpy(prior.prior_logits),
                           model.config.state_bounds)
    np.testing.assert_allclose(bounded.coefficients, expected[0].numpy(), atol=1e-6)
    assert not np.allclose(raw.coefficients, bounded.coefficients)


@pytest.mark.parametrize("inference_name", ["exact", "encoder"])
def test_arrays_round_trip_gives_identical_recommendations(inference_name: str) -> None:
    history = random_history(n_users=60)
    params = SMALL | dict(inference=inference_name, hidden_dim=8, max_epochs=2, progress=False)
    model = make_model("persona", **params).fit(history)
    restored = make_model("persona", **params)
    restored.n_users, restored.n_items = model.n_users, model.n_items
    restored._restore({name: np.array(value) for name, value in model._arrays().items()})
    np.testing.assert_array_equal(restored.recommend(np.arange(5), history[:5], N=10)[0],
                                  model.recommend(np.arange(5), history[:5], N=10)[0])
    np.testing.assert_array_equal(restored.prior_state().coefficients, model.prior_state().coefficients)


def test_restore_without_the_shared_side_raises_a_clear_error() -> None:
    model = make_model("persona", **SMALL)
    with pytest.raises(ValueError, match="lacks array"):
        model._restore({"bases": np.eye(6, dtype=np.float32)})


def test_encoder_trains_over_the_frozen_shared_side() -> None:
    history = random_history(n_users=60)
    exact = make_model("persona", **SMALL).fit(history)
    encoder = make_model("persona", **SMALL, inference="encoder", hidden_dim=8, max_epochs=3, progress=False)
    encoder.fit(history)
    np.testing.assert_array_equal(encoder.shared.item_embeddings, exact.shared.item_embeddings)
    np.testing.assert_array_equal(encoder.network.item_embeddings.numpy(), exact.shared.item_embeddings)
    assert np.isfinite(encoder.score(history[:4])).all()


# -- bad input ------------------------------------------------------------------------------
def test_empty_history_is_a_clear_error_in_fold_in(fitted: PersonaRecommender) -> None:
    with pytest.raises(ValueError, match="empty history"):
        fitted.fold_in(sp.csr_matrix((2, 40), dtype=np.float32))


def test_a_history_of_stored_zeros_is_empty(fitted: PersonaRecommender) -> None:
    zeros = sp.csr_matrix((np.zeros(2, np.float32), np.array([1, 5]), np.array([0, 2])), shape=(1, 40))
    with pytest.raises(ValueError, match="empty history"):
        fitted.fold_in(zeros)
    np.testing.assert_allclose(fitted.score(zeros), fitted.scorer.scores(fitted.prior_state()), rtol=1e-6)


def test_unknown_item_columns_are_a_clear_error(fitted: PersonaRecommender) -> None:
    with pytest.raises(ValueError, match="item columns"):
        fitted.fold_in(sp.csr_matrix(np.ones((1, 41), np.float32)))


@pytest.mark.parametrize("value, message", [(np.nan, "NaN"), (-1.0, "negative")])
def test_nan_or_negative_weights_are_a_clear_error(fitted: PersonaRecommender, value: float, message: str) -> None:
    dense = random_history(n_users=2).toarray()
    dense[0, 0] = value
    with pytest.raises(ValueError, match=message):
        fitted.fold_in(sp.csr_matrix(dense))


def test_a_state_of_the_wrong_shape_is_a_clear_error(fitted: PersonaRecommender) -> None:
    with pytest.raises(ValueError, match="K = 5"):
        fitted.scorer.scores(PersonaState(np.zeros((1, 2, 5)), np.zeros((1, 2))))


def test_unfitted_model_raises_not_fitted() -> None:
    from recsys_pref.models.base import NotFittedError

    with pytest.raises(NotFittedError):
        make_model("persona").prior_state()


def test_user_solve_penalty_is_the_scaled_als_penalty() -> None:
    model = make_model("persona", regularization=10.0, user_regularization_scale=3.0)
    assert model.inference_settings.regularization == 30.0


def test_invalid_inference_settings_are_rejected() -> None:
    with pytest.raises(ValueError, match="inference must be one of"):
        make_model("persona", inference="gibbs")
    with pytest.raises(ValueError, match="n_bases"):
        make_model("persona", n_bases=32, embedding_dim=16)
    with pytest.raises(ValueError, match="regularization"):
        make_model("persona", regularization=0.0)
    with pytest.raises(ValueError, match="user_regularization_scale"):
        make_model("persona", user_regularization_scale=0.0)
    with pytest.raises(ValueError, match="initial_responsibility_scale"):
        make_model("persona", initial_responsibility_scale=-1.0)
