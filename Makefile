# The one list of commands: the same targets locally, in CI (.ci/run) and in the README.

VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
CONFIG ?= etc/config.example.toml
PYTEST_ARGS ?=

.PHONY: venv prosody run test typecheck test-unit check-config clean

# The stamp makes `venv` rerun pip only when the package metadata changes.
venv: $(VENV)/.installed

$(VENV)/.installed: setup.cfg setup.py pyproject.toml
	@if [ ! -x $(PY) ]; then \
	  $(PYTHON) -m venv $(VENV) || { \
	    if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	      echo "python3 -m venv failed (no ensurepip on a bare Debian?): installing python3-venv"; \
	      apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y python3-venv && \
	      $(PYTHON) -m venv $(VENV); \
	    else \
	      echo "python3 -m venv failed: install python3-venv (as root: apt-get install -y python3-venv)" >&2; \
	      exit 1; \
	    fi; \
	  }; \
	fi
	$(PY) -m pip install -q -e '.[test]'
	touch $@

# Installs Prosody + prosody-modules with apt when missing (as root; otherwise says the command).
prosody: venv
	$(PY) -c 'from tools.prosody import ensure_prosody; ensure_prosody()'

# Prosody + tigase-rest + bob online, on http://127.0.0.1:8080/rest/ (SANDBOX_HTTP_PORT), until Ctrl-C.
run: venv prosody
	$(PY) -m tools.sandbox

# Everything, integration tests against a real Prosody included (the tests for other servers only
# are deselected). Extra args: PYTEST_ARGS='-k stream'.
test: venv prosody typecheck
	$(PY) -m pytest -q --xmpp-server=prosody $(PYTEST_ARGS)

# mypy (default mode) over the package; part of `test`.
typecheck: venv
	$(PY) -m mypy tigase_rest

# No XMPP server needed.
test-unit: venv
	$(PY) -m pytest -q tests/unit tests/http $(PYTEST_ARGS)

# Validate a config file: make check-config CONFIG=etc/config.toml
check-config: venv
	$(PY) -m tigase_rest --check-config $(CONFIG)

# Generated files only; the venv stays (rm -rf .venv to rebuild it).
clean:
	rm -rf run build .pytest_cache .hypothesis *.egg-info
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -exec rm -rf {} +

# REST vs direct XMPP on a throwaway Prosody, in one run (about 12 min): BENCH_SECONDS=N per scenario
# (default 10), BENCH_PROFILE=0 skips py-spy, BENCH_STEPS=H runs only the web.Server vs web.Application
# step, BENCH_STEPS=U,W only the accounts and webhook bot steps (~1 min), BENCH_STEPS=E only the peer:
# ejabberd's own mod_http_api against the component on one throwaway ejabberd (issue 16; ~3 min at
# the default 10 s, BENCH_ROUNDS=3 rounds), BENCH_STEPS=N only one instance vs two (nginx, reuse_port)
# (issue 16: ~5 min, ~2 min with BENCH_SECONDS=3). Installs wrk (apt, as root), ejabberd (as
# `make ejabberd`, when step E runs), nginx and PostgreSQL (as tools/ do, when step N runs) and
# py-spy (pip) when missing.
.PHONY: bench
bench: venv prosody
	@case ",$${BENCH_STEPS:-E}," in *,[eE],*) $(PY) -c 'from tools.ejabberd import ensure_ejabberd; ensure_ejabberd()';; esac
	@command -v wrk >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y wrk; \
	  else \
	    echo "wrk is missing: install it (as root: apt-get install -y wrk)" >&2; exit 1; \
	  fi; }
	@[ -x $(VENV)/bin/py-spy ] || [ "$(BENCH_PROFILE)" = 0 ] || $(PY) -m pip install -q py-spy || \
	  echo "py-spy could not be installed: the run goes on without a profile" >&2
	@case ",$${BENCH_STEPS:-N}," in *,[Nn],*) \
	  $(PY) -c 'from tools.nginx import ensure_nginx; from tools.postgres import ensure_postgres; ensure_nginx(); ensure_postgres()';; \
	esac
	$(PY) -m bench.run

# Optional, not part of `test`: the integration tests that hold on ejabberd 23.01 (marked portable
# or only_on("ejabberd"); the Prosody-only ones are deselected), against a real ejabberd.
# Installs ejabberd with apt when missing (as root; otherwise says the command). About 1 min.
.PHONY: ejabberd test-ejabberd
ejabberd: venv
	$(PY) -c 'from tools.ejabberd import ensure_ejabberd; ensure_ejabberd()'

test-ejabberd: venv ejabberd
	$(PY) -m pytest -q tests/integration --xmpp-server=ejabberd $(PYTEST_ARGS)

# Several minutes of mixed load on a throwaway Prosody; fails when memory or fds grow or anything
# is lost. SOAK_SECONDS (default 180), SOAK_RATE (400 req/s), SOAK_CONCURRENCY (20).
.PHONY: soak
soak: venv prosody
	$(PY) -m bench.soak
