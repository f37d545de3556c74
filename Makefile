# driftsync: `make run` starts the tool with demo data; `make test` runs every test.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell sha1sum requirements.txt | cut -c1-12)
HOST ?= 127.0.0.1
PORT ?= 8000
SANDBOX_PORT ?= 8700

.PHONY: setup run test lint format migrate clean bench

setup: $(STAMP)

$(STAMP): requirements.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	@rm -f $(VENV)/.installed-*
	@touch $@

migrate: setup
	DEBUG=$${DEBUG:-true} $(BIN)/python manage.py migrate --noinput

# development defaults for `make run` and the manage.py commands run beside it;
# git-ignored, made once. Production sets its own variables (see .env.example)
# and refuses to start without SECRET_KEY and CREDENTIALS_KEY.
.env:
	@printf '# made by `make run` for this checkout: development defaults (DEBUG=true).\n# Not for production: see .env.example.\nDEBUG=true\nSECRET_KEY=%s\n' \
		"$$($(PYTHON) -c 'import secrets; print(secrets.token_urlsafe(48))')" > $@
	@echo "wrote .env (development defaults for manage.py commands in this checkout)"

run: .env migrate
	DEBUG=$${DEBUG:-true} $(BIN)/python manage.py demo --host $(HOST) --port $(PORT) --sandbox-port $(SANDBOX_PORT)

test: setup
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: migrate
	DEBUG=$${DEBUG:-true} $(BIN)/python manage.py bench_sync --pair google-mailchimp --contacts 2000 --changes 10

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
