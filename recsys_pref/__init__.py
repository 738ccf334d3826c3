"""recsys_pref: persona-based personalization for recommendation pipelines.

The public API is re-exported here; everything else may change between versions. The names are
imported on first use (PEP 562 `__getattr__`), so that `import recsys_pref.cli` and
`recsys-pref --help` do not pay for torch and lightning.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from recsys_pref.core.version import __version__  # noqa: F401

#: public name -> the module that defines it
_EXPORTS: dict[str, str] = {
    **dict.fromkeys(("HeldOut", "IdMap", "InteractionDataset", "Split", "SplitConfig", "UnknownIdError",
                     "from_frame", "load_dataset", "make_split", "make_synthetic"), "recsys_pref.data"),
    **dict.fromkeys(("Evaluation", "evaluate"), "recsys_pref.evaluation.evaluate"),
    "Control": "recsys_pref.explain.control",
    **dict.fromkeys(("ALS", "BPR", "EASE", "MODELS", "AmpCF", "ItemKNN", "PersonaConfig", "PersonaModel",
                     "PersonaRecommender", "PersonaState", "Popularity", "PrefLinear", "Recommender",
                     "make_model"), "recsys_pref.models"),
    "ArtifactError": "recsys_pref.models.artifact",
    **dict.fromkeys(("ControlWeights", "PersonaScorer", "ScoreTerms", "SharedSide"),
                    "recsys_pref.models.persona.scorer"),
    **dict.fromkeys(("Onboarder", "OnboardingConfig", "OnboardingState", "build_onboarder"),
                    "recsys_pref.onboarding"),
    **dict.fromkeys(("RECOMMENDATION_COLUMNS", "PersonaPipeline"), "recsys_pref.pipeline"),
    **dict.fromkeys(("CandidateIndex", "CertifiedConfig", "IndexConfig", "RetrievalConfig"), "recsys_pref.retrieval"),
    "SafeguardsConfig": "recsys_pref.safeguards",
}

__all__ = [
    "ALS", "BPR", "Control", "EASE", "MODELS", "AmpCF", "ArtifactError", "Evaluation", "HeldOut", "IdMap",
    "InteractionDataset", "ItemKNN", "PersonaConfig", "PersonaModel", "PersonaPipeline",
    "PersonaRecommender", "PersonaState", "Popularity", "PrefLinear", "Recommender", "Split",
    "SplitConfig", "UnknownIdError", "evaluate", "from_frame", "load_dataset", "make_model",
    "make_split", "make_synthetic",
    "CandidateIndex", "CertifiedConfig", "IndexConfig", "RetrievalConfig",
    "Onboarder", "OnboardingConfig", "OnboardingState", "build_onboarder",
    "ControlWeights", "PersonaScorer", "RECOMMENDATION_COLUMNS", "SafeguardsConfig", "ScoreTerms", "SharedSide",
]


def __getattr__(name: str) -> Any:
    """Import a public name from its module on first use (and cache it here)."""
    if name not in _EXPORTS:
        raise AttributeError(f"module 'recsys_pref' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # static tools see the eager imports
    from recsys_pref.data import (HeldOut, IdMap, InteractionDataset, Split, SplitConfig, UnknownIdError,  # noqa: F401
                                  from_frame, load_dataset, make_split, make_synthetic)
    from recsys_pref.evaluation.evaluate import Evaluation, evaluate  # noqa: F401
    from recsys_pref.explain.control import Control  # noqa: F401
    from recsys_pref.models import (ALS, BPR, EASE, MODELS, AmpCF, ItemKNN, PersonaConfig, PersonaModel,  # noqa: F401
                                    PersonaRecommender, PersonaState, Popularity, PrefLinear, Recommender, make_model)
    from recsys_pref.models.artifact import ArtifactError  # noqa: F401
    from recsys_pref.models.persona.scorer import ControlWeights, PersonaScorer, ScoreTerms, SharedSide  # noqa: F401
    from recsys_pref.onboarding import Onboarder, OnboardingConfig, OnboardingState, build_onboarder  # noqa: F401
    from recsys_pref.pipeline import RECOMMENDATION_COLUMNS, PersonaPipeline  # noqa: F401
    from recsys_pref.retrieval import CandidateIndex, CertifiedConfig, IndexConfig, RetrievalConfig  # noqa: F401
    from recsys_pref.safeguards import SafeguardsConfig  # noqa: F401
