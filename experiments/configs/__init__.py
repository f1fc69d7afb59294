"""Configs of cross-package experiments (`get_config(arg)` -> ConfigDict)."""
