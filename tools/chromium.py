"""Debian's chromium for the console's browser test: installed with apt when missing (as root),
as tools/prosody.py installs Prosody. Playwright drives it through ``executable_path``: no browser
is downloaded."""

from __future__ import annotations

import os
import shutil
import subprocess

APT_INSTALL = "apt-get install -y chromium"
CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]


def ensure_chromium() -> str:
    """The path of Debian's chromium, installing it with apt (as root) when missing."""
    if not os.access(CHROMIUM, os.X_OK):
        if os.geteuid() != 0:
            raise RuntimeError(f"chromium is not installed; run as root: {APT_INSTALL}")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for cmd in (["apt-get", "update"], ["apt-get", "install", "-y", "chromium"]):
            subprocess.run(cmd, env=env, check=True, timeout=1800)
        if not os.access(CHROMIUM, os.X_OK):
            raise RuntimeError(f"{CHROMIUM} still missing after: {APT_INSTALL}")
    return CHROMIUM


def ensure_fail2ban() -> str | None:
    """fail2ban-regex, installed with apt (as root) when missing; None where apt cannot install it."""
    if shutil.which("fail2ban-regex") is None and os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", "fail2ban"], env=env, timeout=900,
                       check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return shutil.which("fail2ban-regex")
