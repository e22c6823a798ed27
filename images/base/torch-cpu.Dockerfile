# The CPU stand-in for the official PyTorch image as TORCH_BASE of images/train/Dockerfile: the Python
# base with the CPU torch wheel in the system site-packages, where the PyTorch image has its CUDA torch.
# images/build.sh builds it when TRAIN_DEVICE=cpu. Secrets as in images/data/Dockerfile (`ca`, `pipconf`).
ARG PYTHON_BASE
FROM ${PYTHON_BASE}
ARG TORCH_VERSION
ARG TORCH_CPU_INDEX
ARG PYTHON_BASE
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# pip runs from a throw-away venv and installs into the system site-packages (dist-packages on Debian);
# torch's console scripts (torchrun, which a TrainJob's ranks start with) go to /usr/local/bin with the
# system interpreter in their first line, as in the official PyTorch image (pip --target would leave
# them under the site-packages with the throw-away venv's interpreter).
RUN --mount=type=secret,id=ca --mount=type=secret,id=pipconf \
    test -n "$TORCH_VERSION" || { echo "build arg TORCH_VERSION is required (images/build.sh sets it)"; exit 1; }; \
    if [ -s /run/secrets/ca ]; then export PIP_CERT=/run/secrets/ca; fi; \
    if [ -s /run/secrets/pipconf ]; then export PIP_CONFIG_FILE=/run/secrets/pipconf; fi; \
    site=$(python3 -c "import site; print(site.getsitepackages()[0])") \
 && python3 -m venv /tmp/pip \
 && /tmp/pip/bin/pip download --no-deps --index-url "${TORCH_CPU_INDEX}" --dest /tmp/torch "torch==${TORCH_VERSION}" \
 && /tmp/pip/bin/pip install --target "$site" /tmp/torch/torch-*.whl \
 && for script in "$site"/bin/*; do \
      sed '1s|^#!.*|#!/usr/bin/python3|' "$script" > "/usr/local/bin/${script##*/}" && chmod 755 "/usr/local/bin/${script##*/}"; \
    done \
 && rm -rf "$site/bin" /tmp/pip /tmp/torch \
 && python3 -c "import torch; assert torch.__version__.startswith('${TORCH_VERSION}+cpu'), torch.__version__" \
 && torchrun --help > /dev/null
LABEL org.opencontainers.image.title="zonda-torch-cpu-base" \
      org.opencontainers.image.base.name="${PYTHON_BASE}"
