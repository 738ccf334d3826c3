"""Utilities every layer may use: ranking, ranking metrics, atomic files and the version.

Nothing here imports another recsys_pref package, so models (early stopping), evaluation and
serving can all build on it.
"""
