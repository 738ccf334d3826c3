"""How well a persona model recovers planted personas (the `synthetic` dataset's ground truth).

Planted taste j gives every item the utility u_j(i) = <v_j, x_i> (v_j the planted direction,
x_i the planted item embedding). A learned persona m of user u gives rho_um(i) = <q_um, e_i>.
The two live in different spaces, so they are compared over items:

- direction recovery: every user's strongest persona per planted taste is pooled; the mean
  learned reward vector of the users whose dominant planted taste is j is matched to the
  planted utilities by Hungarian matching on the cosine of the item-centred vectors; the
  score is the mean matched cosine (1 = every planted direction found).
- mix recovery: each user's learned mix over planted tastes is the attention their personas
  receive over the items, credited to the planted taste each persona's rewards correlate
  with most; the score is the mean total-variation distance to the planted mix (0 = exact),
  reported beside the distance of the uniform mix as a reference.
"""
from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

from recsys_pref.data.synthetic import SyntheticTruth


def _centred_unit(vectors: np.ndarray) -> np.ndarray:
    """Rows centred over their last axis and scaled to unit norm (zero rows stay zero)."""
    centred = vectors - vectors.mean(axis=-1, keepdims=True)
    norms = np.linalg.norm(centred, axis=-1, keepdims=True)
    return centred / np.where(norms > 0, norms, 1.0)


def planted_utilities(truth: SyntheticTruth) -> np.ndarray:
    """(n_planted, n_items) utilities of each planted taste."""
    return truth.persona_vectors @ truth.item_embeddings.T


def direction_recovery(persona_rewards: np.ndarray, truth: SyntheticTruth) -> float:
    """Mean Hungarian-matched cosine between learned and planted taste directions.

    persona_rewards: (n_users, M, n_items) rho_um(i) of the dataset's users (in index order).
    """
    planted = _centred_unit(planted_utilities(truth))  # (J, n_items)
    dominant = truth.user_mix.argmax(axis=1)  # (n_users,)
    learned = _centred_unit(persona_rewards)  # (n_users, M, n_items)
    alignment = np.einsum("umn,jn->umj", learned, planted)  # cosine of each persona with each taste
    strongest = learned[np.arange(len(learned)), alignment[np.arange(len(learned)), :, dominant].argmax(axis=1)]
    groups = [j for j in range(len(planted)) if (dominant == j).any()]
    means = _centred_unit(np.stack([strongest[dominant == j].mean(axis=0) for j in groups]))
    cosine = means @ planted.T  # (n_groups, J)
    rows, cols = linear_sum_assignment(-cosine)
    return float(cosine[rows, cols].mean())


def mix_recovery(persona_rewards: np.ndarray, attention: np.ndarray, truth: SyntheticTruth) -> tuple[float, float]:
    """(mean total-variation distance of the learned mix to the planted mix, the same for a
    uniform mix). attention: (n_users, M, n_items) alpha_um(i)."""
    planted = _centred_unit(planted_utilities(truth))
    learned = _centred_unit(persona_rewards)
    taste_of_persona = np.einsum("umn,jn->umj", learned, planted).argmax(axis=2)  # (n_users, M)
    persona_share = attention.mean(axis=2)  # (n_users, M), sums to 1 per user
    n_users, n_tastes = truth.user_mix.shape
    learned_mix = np.zeros((n_users, n_tastes))
    np.add.at(learned_mix, (np.repeat(np.arange(n_users), taste_of_persona.shape[1]), taste_of_persona.ravel()),
              persona_share.ravel())
    distance = 0.5 * np.abs(learned_mix - truth.user_mix).sum(axis=1).mean()
    uniform = 0.5 * np.abs(1 / n_tastes - truth.user_mix).sum(axis=1).mean()
    return float(distance), float(uniform)
