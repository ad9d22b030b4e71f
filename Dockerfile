# One image for the three services; the command picks one: python -m services.<name>.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    # Inside a container the services must listen on every interface, not loopback.
    REACTIONS_HOST=0.0.0.0

WORKDIR /app
COPY pyproject.toml README.md ./
COPY shared ./shared
COPY services ./services
COPY widget ./widget
COPY deploy/__init__.py ./deploy/
COPY deploy/local ./deploy/local
RUN pip install . \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin reactions \
    # Where docker-compose's volumes of development keys mount: a new named volume takes
    # its owner from here, so the non-root services can write (keys) and read them.
    && mkdir -p /var/lib/reactions/keys /var/lib/reactions/public \
    && chown -R 10001:10001 /var/lib/reactions

USER 10001:10001
EXPOSE 8000 8001 8002
CMD ["python", "-m", "services.ingest"]
