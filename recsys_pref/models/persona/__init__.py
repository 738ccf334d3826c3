"""The persona model (DESIGN.md, "The model"): shared base rewards, users as a few attentive personas.

- config: PersonaConfig and the presets persona, pref-linear, amp-cf;
- state: PersonaState, a user's M * (K + 1) numbers;
- scorer: the equations and the one scorer every other layer calls;
- factorization: the shared side from implicit's ALS (item embeddings, varimax taste bases);
- inference: the exact user state (per-persona weighted least squares, EM over personas);
- encoder: the amortized encoder and its Lightning training (an option);
- model: PersonaRecommender, the `Recommender` every bench and pipeline uses.
"""
from recsys_pref.models.persona.config import LOSSES, PRESETS, PersonaConfig
from recsys_pref.models.persona.encoder import (
    PersonaNetwork,
    bradley_terry_loss,
    multinomial_loss,
    sampled_softmax_loss,
    train_network,
)
from recsys_pref.models.persona.inference import InferenceSettings, infer_states
from recsys_pref.models.persona.model import AmpCF, PersonaModel, PersonaRecommender, PrefLinear
from recsys_pref.models.persona.scorer import base_rewards, persona_attention, persona_rewards, score_from_state
from recsys_pref.models.persona.state import PersonaState

__all__ = [
    "LOSSES", "PRESETS", "AmpCF", "InferenceSettings", "PersonaConfig", "PersonaModel", "PersonaNetwork", "PersonaRecommender",
    "PersonaState", "PrefLinear", "base_rewards", "bradley_terry_loss", "infer_states", "multinomial_loss", "persona_attention",
    "persona_rewards", "sampled_softmax_loss", "score_from_state", "train_network",
]
