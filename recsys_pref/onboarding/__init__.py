"""Onboarding a new user by a few adaptive questions (DESIGN.md, "Onboarding by questions").

posterior: the Laplace posterior over one user's state; questions: the pool, answerability and
selection strategies; tree: the interview tree learned from the training users, which asks
first; session: the JSON-serialisable state and the Onboarder; terminal: the `recsys-pref
onboard` flow.
"""
from recsys_pref.onboarding.posterior import Observation, Posterior, StateSpace, laplace
from recsys_pref.onboarding.questions import QuestionConfig, question_pool, select_question
from recsys_pref.onboarding.session import (
    Onboarder,
    OnboardingConfig,
    OnboardingError,
    OnboardingState,
    build_onboarder,
)
from recsys_pref.onboarding.tree import InterviewTree, TreeConfig, TreeError, dataset_interviewees, grow_tree

__all__ = [
    "Observation", "Onboarder", "OnboardingConfig", "OnboardingError", "OnboardingState", "Posterior",
    "InterviewTree", "QuestionConfig", "StateSpace", "TreeConfig", "TreeError", "build_onboarder",
    "dataset_interviewees", "grow_tree", "laplace", "question_pool", "select_question",
]
