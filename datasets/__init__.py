"""The bundled ml-latest-small (see NOTICE.md), shipped inside the package as `recsys_pref.datasets`.

setup.py maps this top-level folder into the wheel; `recsys_pref.data.paths.BUNDLED_DIR`
finds it through importlib.resources in editable and normal installs alike.
"""
