# Two commands: `make run` and `make test`. Everything else is here for them.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Local use runs in development mode unless told otherwise (production: see docs/deploy.md).
export DEBUG ?= 1

.PHONY: run test lint format bench migrate install clean messages locale axe screenshots vendor

# Translations: locale/*/LC_MESSAGES/*.po are committed; the .mo files are built here.
LOCALES := zh_Hans
I18N_IGNORE := --ignore=.venv --ignore=var --ignore=node_modules --ignore=staticfiles \
	--ignore=tests --ignore=bench --ignore=docs --ignore=test-artifacts --ignore='*.egg-info'
# axe-core for the accessibility checks of the browser tests, from the npm registry
# (version in tests/e2e/axe.py).
AXE := var/node/node_modules/axe-core/axe.min.js

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

migrate: $(STAMP) locale
	$(BIN)/python manage.py migrate --noinput

# Compile the committed .po files (needs GNU gettext: apt-get install gettext).
locale: $(STAMP)
	$(BIN)/python manage.py compilemessages $(I18N_IGNORE) $(addprefix --locale=,$(LOCALES)) --verbosity=0

# Extract new strings into the .po files after changing templates, Python or JavaScript;
# then translate every new entry (tests/test_i18n.py fails while one is missing).
messages: $(STAMP)
	$(BIN)/python manage.py makemessages --domain=django $(I18N_IGNORE) $(addprefix --locale=,$(LOCALES)) --add-location=file --no-obsolete
	$(BIN)/python manage.py makemessages --domain=djangojs $(I18N_IGNORE) $(addprefix --locale=,$(LOCALES)) --add-location=file --no-obsolete

$(AXE): | $(STAMP)
	$(BIN)/python -m tests.e2e.axe

axe: $(AXE)

# The browser libraries in static/vendor/ (markdown-it, DOMPurify) are committed; this
# fetches the versions pinned in chatsite/vendor.py again with npm and rewrites the manifest.
vendor: $(STAMP)
	$(BIN)/python -m chatsite.vendor

run: migrate
	@$(BIN)/python manage.py ensure_admin
	$(BIN)/python manage.py serve --port 8000

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: lint locale axe
	$(BIN)/python -m pytest

# Every page at phone and desktop width, light and dark, English and Chinese.
screenshots: $(STAMP) locale
	$(BIN)/python -m tests.e2e.screenshots

bench: $(STAMP)
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) var staticfiles
