"""Everything else is in setup.cfg. Here only what setup.cfg cannot say: the built-in handler
scripts, kept at the top of the source tree in scripts/rest/, ship inside the package as
``tigase_rest.scripts`` (for `pip install .`, the wheel and `pip install -e .` alike)."""

from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["tigase_rest", "tigase_rest.*"]) + ["tigase_rest.scripts"],
    package_dir={"tigase_rest.scripts": "scripts/rest"},
    package_data={"tigase_rest.scripts": ["*/*.py"], "tigase_rest": ["config.example.toml"],
                  "tigase_rest.http": ["static/*.js", "static/*.css"]},  # the console on the index page
)
