# rchat — the two commands a newcomer needs: `make run` and `make test`.
# Both create the virtualenv in .venv on first use (only Python is needed).

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint install clean messages matrix

# pip's own output goes to var/pip.log (project/pip_install.py): the screen shows
# progress and one line per step, and pip's last lines if it fails.
PIP_INSTALL := $(BIN)/python project/pip_install.py --log var/pip.log

$(BIN)/python:
	@echo "==> Creating the virtualenv in $(VENV) with $(PYTHON)"
	@$(PYTHON) -m venv $(VENV)
	@$(PIP_INSTALL) --upgrade pip

$(STAMP): $(BIN)/python requirements/base.txt requirements/dev.txt pyproject.toml
	@echo "==> Installing requirements/dev.txt and rchat (editable); first time takes a minute"
	@$(PIP_INSTALL) -r requirements/dev.txt
	@$(PIP_INSTALL) --no-deps -e .
	@touch $(STAMP)
	@echo "==> Installed: $$($(BIN)/python -m pip list 2>/dev/null | tail -n +3 | wc -l) packages in $(VENV)"

install: $(STAMP)

# Two pytest-xdist workers, a test file (or group, tests/conftest.py) to a worker;
# PYTEST_WORKERS=0 runs the suite in one process.
PYTEST_WORKERS ?= 2
test: $(STAMP)
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

# The suite on every supported Django, each with its own Python (noxfile.py; venvs in
# .nox/). One cell: make matrix DJANGO=6.1; pytest arguments: NOX_ARGS="-- -k webhook".
matrix: $(STAMP)
	$(BIN)/nox $(if $(DJANGO),-s "tests(django='$(DJANGO)')") $(NOX_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The demo: rchat_demo_setup, then the Procfile's processes, talking to the R-Chat
# sandbox (not to R-Chat); Ctrl-C stops them all (project/devrun.py). Other ports:
# make run PORT=8001 SANDBOX_PORT=8766 (or the same variables in the environment).
PORT         ?= 8000
SANDBOX_PORT ?= 8765
run: $(STAMP)
	@$(BIN)/python -m project.devrun --port "$(PORT)" --sandbox-port "$(SANDBOX_PORT)"

clean:
	rm -rf $(VENV) var .pytest_cache

# Translations: refresh rchat/locale/*/LC_MESSAGES/django.po from the code and
# templates, then compile the .mo files Django reads (needs GNU gettext). The demo
# project's own strings (templates/, project/) go to project/locale: rchat's files are
# left out by path ("-i rchat" would also leave out templates/rchat/).
messages: $(STAMP)
	cd rchat && ../$(BIN)/django-admin makemessages -l th --no-obsolete
	cd rchat && ../$(BIN)/django-admin compilemessages
	$(BIN)/python manage.py makemessages -l th --no-obsolete -i 'rchat/[a-z_]*' \
	  -i tests -i docs -i bench -i var -i build -i dist
	cd project && ../$(BIN)/django-admin compilemessages

# --- Benchmarks and fault scenarios (docs/performance.md) ---------------------------
# Both need PostgreSQL and Redis: DATABASE_URL=postgres://... CELERY_BROKER_URL=redis://...
# `make bench BENCH_ARGS=--quick` for a short run; `make faults FAULTS_ARGS=--quick` too.
.PHONY: bench faults
bench: $(STAMP)
	$(BIN)/python -m bench.run $(BENCH_ARGS)

faults: $(STAMP)
	$(BIN)/python -m bench.faults $(FAULTS_ARGS)

# The sdist and the wheel a site installs (README: Add rchat to an existing Django site).
.PHONY: dist
dist: $(STAMP)
	rm -rf dist
	$(BIN)/python -m build --no-isolation --outdir dist .
	$(BIN)/twine check --strict dist/*
