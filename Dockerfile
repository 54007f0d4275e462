# syntax=docker/dockerfile:1
# One image for every role, chosen by its command: web (default), worker, worker-io, beat, relay,
# flower, migrate, printer-sim (deploy/container/entrypoint.sh). Server dependencies only: the
# station app's PyQt5 is not installed. Build (tests: tests/deploy/stack.py):
#   docker build -t neurohub-mes .                        # from python:3.11-slim-bookworm
#   docker build --build-arg EXTRAS=s3 -t neurohub-mes .  # AWS (USE_S3=true needs boto3)
#   podman build --format docker --network host --build-arg BASE_IMAGE=localhost/neurohub-base:… \
#     --secret id=pip_cert,src=/etc/ssl/certs/ca-certificates.crt -t neurohub-mes .
# The pip_cert secret is a CA bundle for a TLS-intercepting network; it never enters a layer.
ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS requirements
# The server's dependencies out of setup.cfg (+ EXTRAS): only a change to them rebuilds the
# dependency layer below, not a change elsewhere in setup.cfg.
ARG EXTRAS=""
COPY setup.cfg /src/setup.cfg
RUN python3 -c 'import configparser, os; c = configparser.ConfigParser(); c.read("/src/setup.cfg"); print(c["options"]["install_requires"]); [print(c["options.extras_require"][e]) for e in os.environ["EXTRAS"].split(",") if e]' > /requirements.txt

FROM ${BASE_IMAGE} AS build
ARG PIP_INDEX_URL=https://pypi.org/simple
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_INDEX_URL=${PIP_INDEX_URL}
# binutils: strip, for the wheels' unstripped extension modules (below); not in the final image.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends binutils \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
RUN python3 -m venv /opt/neurohub
COPY --from=requirements /requirements.txt /tmp/requirements.txt
RUN --mount=type=secret,id=pip_cert \
    if [ -s /run/secrets/pip_cert ]; then export PIP_CERT=/run/secrets/pip_cert; fi; \
    /opt/neurohub/bin/pip install --no-compile -r /tmp/requirements.txt
COPY setup.cfg pyproject.toml ./
COPY README.md ./
COPY web ./web
COPY workers ./workers
COPY tasks ./tasks
COPY beat ./beat
COPY storage ./storage
COPY printers ./printers
COPY queues ./queues
COPY stations ./stations
RUN --mount=type=secret,id=pip_cert \
    if [ -s /run/secrets/pip_cert ]; then export PIP_CERT=/run/secrets/pip_cert; fi; \
    /opt/neurohub/bin/pip install --no-compile --no-deps . \
    && /opt/neurohub/bin/pip uninstall -y pip setuptools wheel \
    && find /opt/neurohub -name '__pycache__' -prune -exec rm -rf {} + \
    && find /opt/neurohub -name 'tests' -path '*/site-packages/*/tests' -prune -exec rm -rf {} + \
    && find /opt/neurohub -name '*.so*' -type f -exec strip --strip-unneeded {} +
# strip: debug symbols of compiled wheels (fontTools' and SQLAlchemy's Cython modules above
# all) were ~25 MB of the image, which the 250 MB target did not leave room for.

FROM ${BASE_IMAGE} AS pgtools
# pg_dump/pg_restore/psql 15 for backups, without the client package's Perl wrappers (~100 MB).
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends postgresql-client-15 \
    && rm -rf /var/lib/apt/lists/*

FROM ${BASE_IMAGE}
# tini: PID 1 that forwards SIGTERM (a Python PID 1 ignores it); libpq5 for the pg tools.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends tini libpq5 \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /usr/share/doc/* /usr/share/man/* /usr/share/locale/* \
    && groupadd --system --gid 10001 neurohub \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/neurohub --shell /usr/sbin/nologin neurohub \
    && install -d -o neurohub -g neurohub /var/lib/neurohub
COPY --from=pgtools /usr/lib/postgresql/15/bin/pg_dump /usr/lib/postgresql/15/bin/pg_restore /usr/lib/postgresql/15/bin/psql /usr/local/bin/
COPY --from=build /opt/neurohub /opt/neurohub
COPY deploy/container/entrypoint.sh /usr/local/bin/neurohub-entrypoint
ENV PATH=/opt/neurohub/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MALLOC_ARENA_MAX=2 \
    NEUROHUB_DATA_DIR=/var/lib/neurohub \
    API_HOST=0.0.0.0 \
    API_PORT=8000
USER 10001:10001
WORKDIR /var/lib/neurohub
EXPOSE 8000
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["/usr/local/bin/neurohub-entrypoint", "healthcheck"]
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/neurohub-entrypoint"]
CMD ["web"]
