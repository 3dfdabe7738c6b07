# The two commands of the README, and the set-up both share.
VENV ?= .venv
STAMP := $(VENV)/.echo-installed

.PHONY: install serve test bench bench-memory bench-ingest bench-load
install: $(STAMP)

$(STAMP): pyproject.toml scripts/setup.sh
	bash scripts/setup.sh $(VENV)
	@touch $@

serve: $(STAMP)  ## start Echo (configs/default.yaml, or CONFIG=configs/a40.yaml)
	$(VENV)/bin/echo-server serve $(if $(CONFIG),--config $(CONFIG))

test: $(STAMP)  ## the whole suite: unit tests, then end-to-end with Ray, SmolLM2 and a headless Chromium
	bash scripts/browser.sh
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

bench: $(STAMP)  ## print the serving figures (README "Benchmarks")
	$(VENV)/bin/python bench/serving.py

bench-memory: $(STAMP)  ## print the memory figures: replay of 300k lines, search, recall@10
	$(VENV)/bin/python bench/memory.py

bench-ingest: $(STAMP)  ## print the ingestion figures: lag of new parts, a 1,000-part storm
	$(VENV)/bin/python bench/ingest.py

bench-load: $(STAMP)  ## print the load figures: 200 asks at once on instant circuits, then SmolLM2
	$(VENV)/bin/python bench/load.py
