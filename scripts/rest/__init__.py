"""The built-in handler scripts, one folder per URL prefix. Shipped in the package as
``tigase_rest.scripts`` (setup.py maps this folder there); the loader finds them with
importlib.resources and loads them before the operator's own ``http.scripts_dir``."""
