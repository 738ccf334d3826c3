"""The public API is importable from the package root."""
import recsys_pref


def test_every_public_name_is_exported():
    for name in recsys_pref.__all__:
        assert hasattr(recsys_pref, name), name


def test_every_registered_model_can_be_built_by_name():
    for name in recsys_pref.MODELS:
        assert recsys_pref.make_model(name).name == name
