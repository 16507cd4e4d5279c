# One image for every binwatch process (ingest, api, simulate, fleet import); compose picks the
# command. Build: docker build -t binwatch .
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# A fixed uid, so a host directory mounted at /data can be given to it (chown 10001).
# /data exists and belongs to that user in the image because Docker seeds an empty named volume
# from the image's directory, ownership included: a SQLite registry there is then writable
# (compose uses PostgreSQL; BINWATCH_DATABASE_URL=sqlite:////data/binwatch.db for one host).
# /mqtt-auth likewise, for compose's volume of exported broker accounts (docker-compose.yml),
# and /data/photos for its volume of the crews' photos.
RUN useradd --system --uid 10001 --create-home --home-dir /home/binwatch binwatch \
    && mkdir -p /data/photos /mqtt-auth \
    && chown binwatch:binwatch /data /data/photos /mqtt-auth

# The monthly report's PDF sets Chinese in WenQuanYi Micro Hei (api/console/report_pdf.py), the
# same Debian package the Makefile installs for the tests.
RUN apt-get update \
    && apt-get install -y --no-install-recommends fonts-wqy-microhei \
    && rm -rf /var/lib/apt/lists/*

# .dockerignore lets only the package sources and pyproject.toml in, so no .env or local
# database can end up in a layer. The sources are deleted once installed: the image runs the
# installed package, never the tree. Its dependencies include psycopg[binary], the PostgreSQL
# driver, whose wheel brings its own libpq: no system package needed.
COPY . /tmp/src
RUN pip install /tmp/src && rm -rf /tmp/src \
    && python -c "import psycopg; psycopg.pq.version()"

USER binwatch
WORKDIR /data
# api: only when BINWATCH_API_HOST=0.0.0.0 (compose sets it); ingest: Prometheus /metrics.
EXPOSE 8000 9108

ENTRYPOINT ["binwatch"]
CMD ["--help"]
