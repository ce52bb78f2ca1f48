# The image every genq service in compose.yaml runs: `genq <command>`.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY . .
RUN pip install . \
    && useradd --system --uid 10001 --create-home --home-dir /var/lib/genq genq

USER genq
WORKDIR /var/lib/genq
ENV GENQ_DATA_DIR=/var/lib/genq
EXPOSE 8000 5555 9808
CMD ["genq", "--help"]
