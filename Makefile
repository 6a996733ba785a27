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

.PHONY: setup demo test test-all test-fast lint bench clean ssh-server gate emulated-pi emulated-pi-deps emulated-pi-image \
	emulated-pi-stop

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

# The emulated Raspberry Pi (tools/emulated_pi.py): arm64 Debian under QEMU user mode, with SSH.
# Needs root; Debian's debootstrap and binfmt-support, and qemu-user-static 8 or newer (Debian 12
# has 7.2, which crashes inside onnxruntime and OpenVINO: take 10 from bookworm-backports).
ROOT := $(shell [ "$$(id -u)" = 0 ] && echo 1)
emulated-pi-deps:
	@if [ -z "$(ROOT)" ] || ! command -v apt-get >/dev/null; then \
	  echo "the emulated Pi needs root and apt: its tests will be skipped"; exit 0; fi; \
	qemu_major=$$(qemu-aarch64-static --version 2>/dev/null | sed -n 's/.*version \([0-9]*\).*/\1/p'); \
	if command -v debootstrap >/dev/null && command -v update-binfmts >/dev/null && [ "$${qemu_major:-0}" -ge 8 ]; then exit 0; fi; \
	echo "installing debootstrap, binfmt-support and qemu-user-static >= 8 for the emulated Pi"; \
	. /etc/os-release; BP=; if [ "$$VERSION_CODENAME" = bookworm ]; then \
	  echo "deb http://deb.debian.org/debian bookworm-backports main" > /etc/apt/sources.list.d/edgekit-backports.list; \
	  BP="-t bookworm-backports"; fi; \
	export DEBIAN_FRONTEND=noninteractive; apt-get update -qq && \
	apt-get install -y -qq --no-install-recommends debootstrap binfmt-support >/dev/null && \
	apt-get install -y -qq --no-install-recommends $$BP qemu-user-static >/dev/null

emulated-pi-image: setup emulated-pi-deps
	@if [ -n "$(ROOT)" ]; then $(PY) tools/emulated_pi.py build; fi

# Start it on 127.0.0.1:2222 for `edgekit bench RUN --target raspberrypi-emulated` (stop: emulated-pi-stop).
emulated-pi: emulated-pi-image
	$(PY) tools/emulated_pi.py start

emulated-pi-stop:
	$(PY) tools/emulated_pi.py stop

# The tests (not the ones marked extended: `make test-all` runs those too). The main job's recipe
# runs once, as our CI's own gate, before pytest; pytest's recipe test reads that run rather than
# running the recipe a second time.
PYTEST_ARGS ?=
PYTEST_CI = EDGEKIT_REQUIRE_SSHD=1 EDGEKIT_REQUIRE_EMULATED_PI=$(ROOT) EDGEKIT_CI_GATE_RUN=$(CI_RUN) \
	$(PY) -m pytest -q --durations=30 $(PYTEST_ARGS)
test: setup ssh-server emulated-pi-image gate
	$(PYTEST_CI) -m "not extended"

# Everything, including the tests that stay slow (see README: what each target runs and how long).
test-all: setup ssh-server emulated-pi-image gate
	$(PYTEST_CI)

# Our own CI's real gate: the main job's recipe, run fresh; its JUnit file stays in
# $(CI_RUN)/gate/junit.xml (and the report in $(CI_RUN)/report/), its output and exit code in
# $(CI_RUN).log (pytest's recipe test reads them); a failing gate fails the target.
CI_RUN ?= runs/ci-gate
gate: setup
	rm -rf $(CI_RUN) $(CI_RUN).ckpt.pt $(CI_RUN).log
	mkdir -p $(dir $(CI_RUN))
	@$(VENV)/bin/edgekit run examples/lenet5.toml --out $(CI_RUN) > $(CI_RUN).out 2>&1; code=$$?; \
	  cat $(CI_RUN).out; { echo "exit code $$code"; cat $(CI_RUN).out; } > $(CI_RUN).log; \
	  rm -f $(CI_RUN).out; exit $$code

test-fast: setup
	$(PY) -m pytest -q -m "not slow"

lint: setup
	$(VENV)/bin/ruff check edgekit tests benchmarks tools

bench: setup
	$(PY) benchmarks/export_resnet50.py

clean:
	rm -rf $(VENV) runs .pytest_cache
