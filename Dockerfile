# syntax=docker/dockerfile:1
# Two stages: dependencies are built into a virtualenv first (cached until pyproject.toml or
# constraints.txt changes), then only the virtualenv and the source are copied into a slim
# runtime image. The image's settings are a config file (docker/config.toml, at
# /app/config.toml), not ENV: a mounted /app/config.toml replaces them, and the environment
# only holds what the operator sets (secrets, IMAGEBOT_<SECTION>_<KEY> overrides).

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml constraints.txt ./
# Install the runtime dependencies named in pyproject.toml, at the versions constraints.txt
# pins (the ones CI tested), before any source is copied.
RUN python -m venv /venv \
    && /venv/bin/python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; print('\n'.join(p['dependencies'] + p['optional-dependencies']['postgres']))" > requirements.txt \
    && /venv/bin/pip install --requirement requirements.txt --constraint constraints.txt

FROM python:3.11-slim
ENV PATH=/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONPATH=/app
RUN useradd --create-home --uid 10001 bot \
    && mkdir /data \
    && chown bot /data
COPY --from=build /venv /venv
WORKDIR /app
COPY bot ./bot
COPY migrations ./migrations
COPY config.example.toml ./
COPY docker/config.toml ./config.toml
COPY --chmod=755 docker/entrypoint.sh /usr/local/bin/imagebot-entrypoint
USER 10001
VOLUME ["/data"]
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4).status != 200)"]
# Checks that /data is writable (or says how to fix it), then runs `python -m bot`.
ENTRYPOINT ["imagebot-entrypoint"]
CMD ["run"]
