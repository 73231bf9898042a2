"""README "Scaling out" shows the nginx config the scale-out test runs (tools/nginx.site_config)."""

from __future__ import annotations

from pathlib import Path

from tools.nginx import site_config

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_readme_nginx_config_is_the_tested_one():
    section = README.read_text(encoding="utf-8").split("### Scaling out", 1)[1].split("\n### ", 1)[0]
    assert site_config(["10.0.0.11:8080", "10.0.0.12:8080"]).strip() in section
