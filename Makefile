# The two commands of the quickstart: `make demo` and `make test`. Each sets itself up.
MODEL ?= F5TTS_v1_Base
VOLUME ?= volume
INBOX ?= inbox
OUTBOX ?= outbox
BIN := .venv/bin

.PHONY: setup demo test schema

setup:
	@bash scripts/setup.sh

# Seeds the model onto the volume (once), submits the example manifests, drains the inbox.
# Without access to the Hugging Face hub: make demo MODEL=tiny (random weights: noise, not speech).
demo: setup
	$(BIN)/f5-batch seed --volume $(VOLUME) $(if $(filter tiny,$(MODEL)),--tiny,--model $(MODEL))
	$(BIN)/f5-batch submit manifests/examples/*.json --inbox $(INBOX)
	$(BIN)/f5-batch run --inbox $(INBOX) --outbox $(OUTBOX) --volume $(VOLUME) --model $(MODEL) --once --log-format text

# Two processes, a test file each at a time (module fixtures stay shared): most of a test's time is a worker
# starting or waiting on a lease, so two cores finish in about two thirds of the time. PYTEST_ARGS="-n 0": serial.
test: setup
	$(BIN)/python -m pytest -n 2 --dist loadfile $(PYTEST_ARGS)

schema: setup
	$(BIN)/f5-batch schema > manifests/schema.json
