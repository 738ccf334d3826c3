"""recsys_pref: persona-based personalization for recommendation pipelines."""
__version__ = "0.1.0"
