"""recsys_pref: persona-based personalization for recommendation pipelines.

The public API is re-exported here; everything else may change between versions.
"""
from recsys_pref.core.version import __version__  # noqa: F401

from recsys_pref.data import (  # noqa: E402
    HeldOut,
    IdMap,
    InteractionDataset,
    Split,
    SplitConfig,
    UnknownIdError,
    from_frame,
    load_dataset,
    make_split,
    make_synthetic,
)
from recsys_pref.evaluation.evaluate import Evaluation, evaluate  # noqa: E402
from recsys_pref.explain.control import Control  # noqa: E402
from recsys_pref.models import (  # noqa: E402
    ALS,
    BPR,
    EASE,
    MODELS,
    AmpCF,
    ItemKNN,
    PersonaConfig,
    PersonaModel,
    PersonaRecommender,
    PersonaState,
    Popularity,
    PrefLinear,
    Recommender,
    make_model,
)
from recsys_pref.models.artifact import ArtifactError  # noqa: E402
from recsys_pref.models.persona.scorer import ControlWeights, PersonaScorer, ScoreTerms, SharedSide  # noqa: E402
from recsys_pref.onboarding import Onboarder, OnboardingConfig, OnboardingState, build_onboarder  # noqa: E402
from recsys_pref.pipeline import RECOMMENDATION_COLUMNS, PersonaPipeline  # noqa: E402
from recsys_pref.retrieval import CandidateIndex, CertifiedConfig, IndexConfig, RetrievalConfig  # noqa: E402
from recsys_pref.safeguards import SafeguardsConfig  # noqa: E402

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
