"""`recsys-pref --help` and usage errors return at once: the command line imports no heavy
module until a command runs (issue 16: lightning up front cost about 8 s per command)."""
import subprocess
import sys

HEAVY = ("torch", "lightning", "faiss", "implicit")


def _modules_after(code: str) -> set[str]:
    probe = f"import sys\n{code}\nprint(' '.join(sorted(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    return set(result.stdout.split())


def test_building_the_parser_imports_no_heavy_module():
    loaded = _modules_after("from recsys_pref.cli import build_parser\nbuild_parser()")
    assert not loaded & set(HEAVY)


def test_a_usage_error_imports_no_heavy_module():
    loaded = _modules_after("from recsys_pref.cli import main\ntry:\n    main(['recommend', '--k', '0'])\n"
                            "except SystemExit:\n    pass")
    assert not loaded & set(HEAVY)


def test_the_public_api_is_still_importable_by_name():
    loaded = _modules_after("from recsys_pref import PersonaPipeline, load_dataset")
    assert "recsys_pref.pipeline" in loaded
