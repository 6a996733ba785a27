# Set-up and main jobs. `make demo` and `make test` work from a fresh clone.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# torch must be the CPU build. On the project machines `pip install torch==2.13.0` finds it locally;
# elsewhere set TORCH_INDEX=https://download.pytorch.org/whl/cpu to take it from PyTorch's CPU index.
TORCH_INDEX ?=
TORCH_INDEX_ARG := $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX),)
STAMP := $(VENV)/.edgekit-installed
RUN ?= runs/demo-lenet5

.PHONY: setup demo test test-fast lint bench clean ssh-server gate

setup: $(STAMP)

$(STAMP): pyproject.toml requirements/constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q $(TORCH_INDEX_ARG) -c requirements/constraints.txt torch==2.13.0
	$(PIP) install -q -c requirements/constraints.txt -e '.[dev]'
	$(PY) -c "import torch; assert not torch.version.cuda, 'torch is a CUDA build: install the CPU build'; print('torch', torch.__version__)"
	touch $(STAMP)

# The main job (examples/lenet5.toml): train LeNet-5 on real digits, export it to ONNX, TFLite and
# OpenVINO, fp32 and int8, each verified; evaluate every artefact, time each on this machine beside
# the PyTorch model, write a report with plots, and gate on 1 point of int8 accuracy loss.
demo: setup
	rm -rf $(RUN) $(RUN).ckpt.pt
	$(VENV)/bin/edgekit models
	$(VENV)/bin/edgekit run examples/lenet5.toml --out $(RUN)

# The SSH target's tests need a real OpenSSH server; install it where we may (root, apt).
ssh-server:
	@command -v sshd >/dev/null || test -x /usr/sbin/sshd || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing openssh-server for the SSH tests"; \
	    DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends openssh-server >/dev/null; \
	  else echo "install openssh-server (sshd) to run the SSH tests"; exit 1; fi; }

test: setup ssh-server
	EDGEKIT_REQUIRE_SSHD=1 $(PY) -m pytest -q
	$(MAKE) gate

# Our own CI ends with a real gate: the main job's recipe, run fresh; its JUnit file stays in
# $(CI_RUN)/gate/junit.xml (and the report in $(CI_RUN)/report/).
CI_RUN ?= runs/ci-gate
gate: setup
	rm -rf $(CI_RUN) $(CI_RUN).ckpt.pt
	$(VENV)/bin/edgekit run examples/lenet5.toml --out $(CI_RUN)

test-fast: setup
	$(PY) -m pytest -q -m "not slow"

lint: setup
	$(VENV)/bin/ruff check edgekit tests benchmarks

bench: setup
	$(PY) benchmarks/export_resnet50.py

clean:
	rm -rf $(VENV) runs .pytest_cache
