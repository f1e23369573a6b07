# Two entry points for a fresh Debian machine: `make demo` and `make test`.
# Both install what they need idempotently (apt packages when root, a .venv).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
APT_PACKAGES := mininet bridge-utils iperf3 ethtool iproute2 python3-venv

.PHONY: demo test setup system-deps venv lint clean-venv

demo: setup
	$(BIN)/testbed run configs/default.toml

test: setup
	bash scripts/run-tests.sh

setup: system-deps venv

# apt only when root and something is missing, so a rerun costs nothing.
system-deps:
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	  if [ -n "$$missing" ]; then echo "apt-get install$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; fi; \
	else echo "not root or no apt: skipping system packages (Mininet tests will be skipped)"; fi

$(BIN)/python:
	$(PY) -m venv $(VENV)

# The stamp makes the install idempotent; it is redone when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

venv: $(VENV)/.installed

lint: setup
	$(BIN)/ruff check .

clean-venv:
	rm -rf $(VENV)
