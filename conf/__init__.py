"""The model and safeguards presets (YAML), shipped inside the package as `recsys_pref.conf`.

setup.py maps this top-level folder into the wheel; `recsys_pref.config.CONF_DIR` finds it
through importlib.resources in editable and normal installs alike.
"""
