"""The README's "Production deployment" steps, run as written, on every `make test`.

The test takes the README's shell blocks (between the ``deploy:install`` / ``deploy:try`` markers and
``deploy:end``) and runs them with bash, with only these differences, all visible in the substitution tables and
``PRELUDE``:

- every absolute path (/opt, /etc, /var/lib) is moved under a fresh folder outside the checkout;
- ``example.com`` is the throwaway Prosody's ``localhost``, and its free ports replace 5347, 5222,
  5280 and 8080; it has no TLS, so ``c2s_ca_file = ""`` becomes ``c2s_tls = "none"``;
- PATH is a Debian root shell's (the system python3);
- ``apt-get`` and ``systemctl`` do nothing (what they would install is here; the test plays
  systemd's part below), curl's ``-u`` gets the password it would prompt for.

So ``/opt/tigase-rest/bin/pip install .`` really builds the wheel and installs it into a fresh venv;
the config, the secret, the Prosody component file and the unit are written by the README's lines;
``--check-config`` and ``systemd-analyze verify`` run as written. Then, like systemd with the unit the
README wrote, the test runs ExecStartPre and ExecStart as an unprivileged user with the unit's
Environment=, LoadCredential= ($CREDENTIALS_DIRECTORY, %d) and StateDirectory= ($STATE_DIRECTORY),
and shows: the "Try it" block's message arrives, a user status survives a restart (in data_dir),
SIGHUP reloads (ExecReload), SIGTERM exits 0. It never skips: whatever it cannot do fails it.
"""

from __future__ import annotations

import asyncio
import configparser
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from clients import connect_client
from test_user_status import befriend, presence_from
from tools.prosody import ProsodyServer, _NO_PROXY, free_port

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
SERVICE_USER = "tigase-rest-test"  # DynamicUser= plays this part under systemd
USERS = {"admin": "adminpass", "alice": "alicepass", "bob": "bobpass"}
PRELUDE = """set -euo pipefail
apt-get() { :; }
systemctl() { echo "systemctl $*" >> "$DEPLOY_ROOT/systemctl.log"; }
"""


def readme_block(marker: str) -> str:
    text = README.read_text(encoding="utf-8")
    match = re.search(rf"<!-- deploy:{marker} -->\n```sh\n(.*?)```\n<!-- deploy:end -->", text, re.S)
    assert match, f"README.md has no ```sh block between <!-- deploy:{marker} --> and <!-- deploy:end -->"
    return match.group(1)


def substitute(text: str, table: dict[str, str]) -> str:
    for old, new in table.items():
        assert old in text, f"the README no longer says {old!r}: update the substitutions"
        text = text.replace(old, new)
    return text


def bash(script: str, root: Path, env: dict[str, str] | None = None, timeout: float = 600) -> str:
    result = subprocess.run(["bash", "-c", PRELUDE + script], cwd=REPO, capture_output=True, text=True,
                            timeout=timeout, env={**clean_env(), "DEPLOY_ROOT": str(root), **(env or {})})
    assert result.returncode == 0, f"exit {result.returncode}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
    return result.stdout


# A root shell's PATH on Debian: the system python3 (not a developer's pyenv or venv under /root,
# which the service user could not even execute).
ROOT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TIGASE_REST_", "VIRTUAL_ENV", "PYENV", "PYTHON"))}
    return {**env, "PATH": ROOT_PATH}


def ensure_user(name: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
                       check=True, capture_output=True, timeout=30)
        return pwd.getpwnam(name)


class Unit:
    """The [Service] lines of a unit file that the test plays, as systemd would."""

    def __init__(self, path: Path) -> None:
        parser = configparser.ConfigParser(strict=False, interpolation=None, empty_lines_in_values=False)
        parser.optionxform = str
        parser.read_string(path.read_text(encoding="utf-8"))
        self.service = parser["Service"]
        self.lines = [l.split("=", 1) for l in path.read_text(encoding="utf-8").splitlines() if "=" in l]

    def all(self, key: str) -> list[str]:
        return [v for k, v in self.lines if k == key]


def http(method: str, url: str, body: bytes | None = None, headers: dict | None = None) -> tuple[int, str]:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with _NO_PROXY.open(request, timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError:  # nothing listens (yet)
        return 0, ""


class Service:
    """The unit's ExecStart as SERVICE_USER, with the environment systemd would give it."""

    def __init__(self, unit: Unit, env: dict[str, str], user: str, log_path: Path) -> None:
        self.unit, self.env, self.user, self.log_path = unit, env, user, log_path
        self.process: subprocess.Popen | None = None

    def command(self, line: str) -> list[str]:
        # setpriv execs (runuser forks and keeps SIGHUP to itself): the pid is the service's, as $MAINPID
        return ["setpriv", f"--reuid={self.user}", f"--regid={self.user}", "--init-groups", "--", "env", "-i", *(f"{k}={v}" for k, v in self.env.items()),
                *line.split()]

    def start(self) -> None:
        pre = subprocess.run(self.command(self.unit.service["ExecStartPre"]), capture_output=True, text=True, timeout=60)
        assert pre.returncode == 0, f"ExecStartPre failed ({pre.returncode}): {pre.stdout}{pre.stderr}"
        assert "OK" in pre.stdout
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(self.command(self.unit.service["ExecStart"]), stdin=subprocess.DEVNULL,
                                            stdout=log, stderr=subprocess.STDOUT)

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            pytest.fail(f"still running 15 s after SIGTERM. Log:\n{self.log()[-3000:]}")


def wait_for(predicate, what: str, service: Service, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if service.process.poll() is not None:
            pytest.fail(f"the service exited ({service.process.returncode}) while waiting for {what}. Log:\n{service.log()}")
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} within {timeout} s. Log:\n{service.log()[-3000:]}")
        time.sleep(0.1)


@pytest.fixture
def deploy_root():
    # Outside the checkout, and readable by the service user on the way down (pytest's tmp is 0700).
    root = Path(tempfile.mkdtemp(prefix="tigase-rest-deploy-"))
    root.chmod(0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


async def test_the_readme_deployment_steps_end_with_a_working_api(deploy_root: Path):
    root = deploy_root
    prosody = ProsodyServer(root / "prosody")
    http_port = free_port()
    table = {
        "/opt/tigase-rest": f"{root}/opt/tigase-rest",
        "/etc/tigase-rest": f"{root}/etc/tigase-rest",
        "/var/lib/tigase-rest": f"{root}/var/lib/tigase-rest",
        "/etc/prosody/conf.d": f"{root}/etc/prosody/conf.d",
        "/etc/systemd/system": f"{root}/etc/systemd/system",
        "example.com": prosody.domain,
        "5347": str(prosody.component_port),
        "5222": str(prosody.c2s_port),
        "127.0.0.1:5280/http-bind": prosody.bosh_url.removeprefix("http://"),
        "8080": str(http_port),
        'c2s_ca_file = ""': 'c2s_tls = "none"',
    }
    for folder in ("etc/prosody/conf.d", "etc/systemd/system"):
        (root / folder).mkdir(parents=True)

    # 1. The README's install block, line for line (pip builds the wheel and installs it).
    install = substitute(readme_block("install"), table)
    out = bash(install + f'\necho "$API_KEY" > {root}/api-key\n', root)
    venv_bin = root / "opt" / "tigase-rest" / "bin"
    assert (venv_bin / "tigase-rest").is_file()
    site = next((root / "opt" / "tigase-rest" / "lib").glob("python3*/site-packages"))
    shipped = sorted(p.name for p in (site / "tigase_rest" / "scripts").iterdir() if p.is_dir() and p.name[0] != "_")
    in_source = sorted(p.name for p in (REPO / "scripts" / "rest").iterdir() if p.is_dir() and p.name[0] != "_")
    assert shipped == in_source and "stream" in shipped  # every built-in handler folder is in the wheel
    assert not (site / "tigase_rest" / "scripts" / "adhoc" / "adhoc.py").is_relative_to(REPO)
    assert "OK" in out, out  # --check-config as root
    assert "systemctl enable --now tigase-rest" in (root / "systemctl.log").read_text()
    api_key = (root / "api-key").read_text().strip()
    secret_file = root / "etc" / "tigase-rest" / "component-secret"
    assert oct(secret_file.stat().st_mode & 0o777) == "0o600"

    # 2. Prosody with the component block the README wrote (its secret), and accounts to talk to.
    component_lua = (root / "etc" / "prosody" / "conf.d" / "tigase-rest.cfg.lua").read_text()
    prosody.component_secret = re.search(r'component_secret = "([^"]+)"', component_lua).group(1)
    assert prosody.component_secret == secret_file.read_text().strip()
    for user, password in USERS.items():
        prosody.register(user, password)
    prosody.start()
    service = None
    try:
        # 3. systemd's part, from the unit the README wrote.
        unit = Unit(root / "etc" / "systemd" / "system" / "tigase-rest.service")
        user = ensure_user(SERVICE_USER)
        assert unit.service["DynamicUser"] == "yes" and unit.all("Wants") == ["network-online.target"]
        credentials = root / "run" / "credentials" / "tigase-rest.service"
        credentials.mkdir(parents=True)
        for credential in unit.all("LoadCredential"):
            name, source = credential.split(":", 1)
            shutil.copy(source, credentials / name)
            os.chown(credentials / name, user.pw_uid, user.pw_gid)
            (credentials / name).chmod(0o400)
        os.chown(credentials, user.pw_uid, user.pw_gid)
        state = root / "var" / "lib" / unit.service["StateDirectory"]
        state.mkdir(parents=True)
        os.chown(state, user.pw_uid, user.pw_gid)
        state.chmod(0o700)
        env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "STATE_DIRECTORY": str(state),
               "CREDENTIALS_DIRECTORY": str(credentials)}
        for assignment in unit.all("Environment"):
            key, value = assignment.split("=", 1)
            env[key] = value.replace("%d", str(credentials))
        service = Service(unit, env, SERVICE_USER, root / "service.log")
        service.start()
        health = f"http://127.0.0.1:{http_port}/rest/health"
        key = {"Api-Key": api_key}
        wait_for(lambda: http("GET", health, headers=key)[0] == 200, "link up (health 200)", service)
        running = subprocess.run(["pgrep", "-u", SERVICE_USER, "-f", "tigase-rest --config"], capture_output=True, text=True)
        assert running.stdout.strip(), f"no tigase-rest process runs as {SERVICE_USER}"

        # 4. The README's "Try it" block: health, and a message posted to /rest/stream arrives.
        admin = await connect_client(f"admin@{prosody.domain}", USERS["admin"], "127.0.0.1", prosody.c2s_port)
        alice = await connect_client(f"alice@{prosody.domain}", USERS["alice"], "127.0.0.1", prosody.c2s_port)
        bob = await connect_client(f"bob@{prosody.domain}", USERS["bob"], "127.0.0.1", prosody.c2s_port)
        try:
            try_it = substitute(readme_block("try"), {
                "example.com": prosody.domain, "8080": str(http_port),
                "-u admin@localhost ": f"-u admin@localhost:{USERS['admin']} "})
            out = await asyncio.to_thread(bash, try_it, root, {"API_KEY": api_key}, 60)
            assert '"xmpp_link": "up"' in out or "<xmpp_link>up</xmpp_link>" in out, out
            message = await admin.next_message(10)
            assert message["body"] == "tigase-rest works"

            # 5. A user status, kept in data_dir ($STATE_DIRECTORY), survives a restart.
            await befriend(alice, bob)
            status_url = f"http://127.0.0.1:{http_port}/rest/user/alice@{prosody.domain}/status"
            code, text = http("POST", status_url, b'{"show": "away", "status": "deployed"}',
                              {**key, "Content-Type": "application/json"})
            assert code == 200, text
            external = f"alice@{prosody.domain}/tigase-external"
            assert (await presence_from(bob, external))["status"] == "deployed"
            stored = state / "statuses.sqlite3"
            assert stored.is_file() and stored.stat().st_uid == user.pw_uid

            # 6. SIGHUP (the unit's ExecReload) reloads and says what it applied.
            assert unit.service["ExecReload"] == "/bin/kill -HUP $MAINPID"
            config_path = root / "etc" / "tigase-rest" / "config.toml"
            config_path.write_text(config_path.read_text().replace("[auth]\n", "[auth]\nmax_failures = 7\n"))
            service.process.send_signal(signal.SIGHUP)
            wait_for(lambda: "Reload: applied auth.max_failures" in service.log(), "reload log line", service)
            assert http("GET", health, headers=key)[0] == 200

            # 7. SIGTERM exits 0; started again, the stored status is announced again.
            assert service.stop() == 0, service.log()[-3000:]
            service.start()
            assert (await presence_from(bob, external, timeout=15))["status"] == "deployed"
            wait_for(lambda: http("GET", health, headers=key)[0] == 200, "health 200 after the restart", service)
        finally:
            for client in (admin, alice, bob):
                await client.disconnect()
        assert service.stop() == 0, service.log()[-3000:]
        assert "Traceback" not in service.log(), service.log()
    finally:
        if service is not None and service.process is not None and service.process.poll() is None:
            service.process.kill()
        prosody.stop()


def test_the_readme_unit_is_rated_ok_or_better_by_systemd_analyze_security(tmp_path):
    unit_text = re.search(r"cat > /etc/systemd/system/tigase-rest.service <<'EOF'\n(.*?)\nEOF\n",
                          readme_block("install"), re.S).group(1)
    unit = tmp_path / "tigase-rest.service"
    unit.write_text(unit_text, encoding="utf-8")
    result = subprocess.run(["systemd-analyze", "security", "--offline=true", "--no-pager", str(unit)],
                            capture_output=True, text=True, timeout=60)
    match = re.search(r"Overall exposure level for tigase-rest.service: ([\d.]+) (\w+)", result.stdout)
    assert match, result.stdout + result.stderr
    assert match.group(2) in ("OK", "SAFE", "PERFECT"), match.group(0)
