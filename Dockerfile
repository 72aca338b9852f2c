# The training image: the lora_tasks library on a CUDA PyTorch base, no Airflow.
# The KubernetesPodOperator runs `python -m lora_tasks.train --config ...` in it.
#   docker build -t lora-trainer:0.1.0 .
# The base image's torch must match the torch pin in requirements-train.txt.
ARG BASE_IMAGE=pytorch/pytorch:2.13.0-cuda12.8-cudnn9-runtime
FROM ${BASE_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HF_HUB_DISABLE_TELEMETRY=1 \
    HF_HOME=/tmp/huggingface

WORKDIR /app
COPY requirements-train.txt constraints.txt ./
RUN pip install --no-cache-dir -r requirements-train.txt -c constraints.txt
COPY lora_tasks ./lora_tasks

# Non-root, no shell login; the pod adds a read-only root filesystem and an emptyDir for /tmp.
RUN useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin trainer
USER 10001
ENTRYPOINT ["python", "-m", "lora_tasks.train"]
