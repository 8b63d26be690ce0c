# syntax=docker/dockerfile:1
# Two stages: dependencies are built into a virtualenv first (cached until pyproject.toml
# changes), then only the virtualenv and the source are copied into a slim runtime image.

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml ./
# Install the runtime dependencies named in pyproject.toml, before any source is copied.
RUN python -m venv /venv \
    && /venv/bin/python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; print('\n'.join(p['dependencies'] + p['optional-dependencies']['postgres']))" > requirements.txt \
    && /venv/bin/pip install --requirement requirements.txt

FROM python:3.11-slim
ENV PATH=/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONPATH=/app \
    DATABASE_URL=sqlite+aiosqlite:////data/bot.db \
    IMAGEBOT_HTTP_ENABLED=true \
    IMAGEBOT_HTTP_HOST=0.0.0.0 \
    IMAGEBOT_HTTP_PORT=8080
RUN useradd --create-home --uid 10001 bot \
    && mkdir /data \
    && chown bot /data
COPY --from=build /venv /venv
WORKDIR /app
COPY bot ./bot
COPY migrations ./migrations
COPY config.example.toml ./
USER 10001
VOLUME ["/data"]
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4).status != 200)"]
ENTRYPOINT ["python", "-m", "bot"]
CMD ["run"]
