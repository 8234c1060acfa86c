# ORFEAS RunPod serverless worker, built for the RTX 5090 (Blackwell, sm_120).
#
#   docker build -t REGISTRY/orfeas-worker:VERSION .
#   docker build --build-arg BAKE_MODELS=1 --build-arg HF_HOME=/opt/huggingface -t ... .   # weights inside
#
# Blackwell needs CUDA 12.8 or later and a torch built for it: the cu128 wheels. Attention runs on
# PyTorch's SDPA; xformers is not installed (its wheels lag new GPUs and nothing here needs it).
FROM nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04

ARG TORCH_VERSION=2.8.0
ARG TORCHVISION_VERSION=0.23.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128
# Model cache. On RunPod the network volume is mounted at /runpod-volume and shared by every
# worker, so weights are fetched once, not per worker. To bake weights into the image instead,
# build with BAKE_MODELS=1 and an HF_HOME outside /runpod-volume (a mounted volume would hide it).
ARG HF_HOME=/runpod-volume/huggingface
ARG BAKE_MODELS=0
ARG BAKE_REPOS="tencent/Hunyuan3D-2"

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    HF_HOME=${HF_HOME} \
    TORCH_CUDA_ARCH_LIST="12.0" \
    ORFEAS_OUTPUT_DIR=/tmp/orfeas-output

RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        python3.12 python3.12-venv ca-certificates libgl1 libglib2.0-0 libgomp1 \
    && rm -rf /var/lib/apt/lists/* \
    && python3.12 -m venv /opt/venv

# torch first, from the CUDA 12.8 index, so no requirement file can pull a CPU or older CUDA build.
RUN pip install --index-url ${TORCH_INDEX_URL} torch==${TORCH_VERSION} torchvision==${TORCHVISION_VERSION}

WORKDIR /app
# Every runtime requirement file of the repository (requirements-dev.txt is for tests only).
COPY requirements.txt requirements-gpu.txt requirements-gpu-nodeps.tx[t] ./
RUN pip install -r requirements.txt -r requirements-gpu.txt
# Packages whose declared dependencies would replace the cu128 torch (hy3dgen): installed without
# them; their real needs are in the files above. The file is optional.
RUN if [ -f requirements-gpu-nodeps.txt ]; then pip install --no-deps -r requirements-gpu-nodeps.txt; fi
# Refuse an image where a dependency brought xformers or swapped torch for another build.
RUN ! pip show xformers >/dev/null 2>&1 \
    && python -c "import torch, sys; v = torch.version.cuda or ''; sys.exit(0 if v.startswith('12.8') else 'torch is not the cu128 build: ' + v)"

RUN if [ "$BAKE_MODELS" = "1" ]; then \
        case "$HF_HOME" in /runpod-volume*) \
            echo "BAKE_MODELS=1 needs --build-arg HF_HOME outside /runpod-volume" >&2; exit 1;; \
        esac; \
        for repo in $BAKE_REPOS; do \
            python -c "import sys; from huggingface_hub import snapshot_download; snapshot_download(sys.argv[1])" "$repo" || exit 1; \
        done; \
    fi

COPY orfeas_contract/ orfeas_contract/
COPY orfeas/ orfeas/
COPY orfeas_worker/ orfeas_worker/
COPY handler.py test_input.json ./

# Non-root at run time. The cache and output folders exist and belong to the worker user, so the
# image also runs without a network volume; not recursive: baked weights only need to be readable,
# and a recursive chown would copy every weight file into one more layer.
RUN useradd --create-home --uid 1000 orfeas \
    && mkdir -p "$HF_HOME" /tmp/orfeas-output \
    && chown orfeas "$HF_HOME" /tmp/orfeas-output
USER orfeas

# Weights come from the volume or the image, never from the network at run time.
ENV HF_HUB_OFFLINE=1

CMD ["python", "-u", "handler.py"]
