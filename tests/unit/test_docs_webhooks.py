"""The README's echo bot is examples/echo_bot.py (which an integration test runs), and the config
example documents every [webhooks] key."""

import dataclasses
import re
from pathlib import Path

from tigase_rest.config import WebhooksConfig

REPO = Path(__file__).resolve().parents[2]


def test_the_readme_echo_bot_is_the_tested_one():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", readme, re.S)
    bot = (REPO / "examples" / "echo_bot.py").read_text(encoding="utf-8")
    assert bot in blocks
    assert len(bot.splitlines()) <= 21


def test_every_webhooks_key_is_documented():
    example = (REPO / "etc" / "config.example.toml").read_text(encoding="utf-8")
    section = example.split("[webhooks]", 1)[1].split("\n[", 1)[0]
    for field in dataclasses.fields(WebhooksConfig):
        assert re.search(rf"^{field.name} = ", section, re.M), field.name
