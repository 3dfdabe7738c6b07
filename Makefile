# The two commands of the README, and the set-up both share.
VENV ?= .venv
STAMP := $(VENV)/.echo-installed

.PHONY: install serve test lint docs bench bench-memory bench-ingest bench-load bench-recall bench-distill bench-conversations
install: $(STAMP)

$(STAMP): pyproject.toml scripts/setup.sh
	bash scripts/setup.sh $(VENV)
	@touch $@

serve: $(STAMP)  ## start Echo (configs/default.yaml, or CONFIG=configs/a40.yaml)
	$(VENV)/bin/echo-server serve $(if $(CONFIG),--config $(CONFIG))

test: lint  ## the whole suite: the layers and the linter, unit tests, then end-to-end with Ray, SmolLM2 and a headless Chromium
	bash scripts/browser.sh
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)  ## import contracts (pyproject.toml) and ruff: a broken layer fails the build
	$(VENV)/bin/lint-imports
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

docs: $(STAMP)  ## regenerate docs/configuration.md from the config models
	$(VENV)/bin/python -m echo.ops.config_docs

bench: $(STAMP)  ## print the serving figures (bench/README.md)
	$(VENV)/bin/python bench/serving.py

bench-memory: $(STAMP)  ## print the memory figures: replay of 300k lines, search, recall@10
	$(VENV)/bin/python bench/memory.py

bench-recall: $(STAMP)  ## print RealMem session recall by stage (before and after) and search speed at 300,000 lines
	$(VENV)/bin/python bench/recall.py

bench-ingest: $(STAMP)  ## print the ingestion figures: lag of new parts, a 1,000-part storm
	$(VENV)/bin/python bench/ingest.py

bench-load: $(STAMP)  ## print the load figures: 200 asks at once on instant circuits, then SmolLM2
	$(VENV)/bin/python bench/load.py

bench-distill: $(STAMP)  ## print the distillation figures: throughput with 4 slots and 1, answers while distilling, the A40 estimate
	$(VENV)/bin/python bench/distill.py

bench-conversations: $(STAMP)  ## print the conversation list figures: listing and reading back in a 300,000-line memory against 30,000
	$(VENV)/bin/python bench/conversations.py
