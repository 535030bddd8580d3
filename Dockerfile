# Vertex Batch Proxy: `vbp serve` in a small, reproducible image.
# Build: docker build -t vertex-batch-proxy .    Run: see docker-compose.yml and the README ("Production").

# --- build: a wheel of the project (with its compiled row scanner) and of every dependency -----------
FROM python:3.11.7-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml setup.py MANIFEST.in README.md ./
COPY proxy ./proxy
# The wheel carries the migrations and pricing tables inside the package (setup.py copies them to proxy/_data/).
COPY migrations ./migrations
COPY pricing ./pricing
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/* \
    && python -m pip wheel --no-cache-dir --wheel-dir /wheels '.[postgres]'

# --- runtime: the wheels alone (the migrations and pricing tables are inside); no emulator, no compiler, no test
# tools, no cache, not root ------------------------------------------------------------------------------------
FROM python:3.11.7-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    VBP_DATABASE_URL=sqlite:////data/vbp.db
RUN useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin vbp \
    && mkdir -p /app /data && chown vbp /data
WORKDIR /app
COPY --from=build /wheels /wheels
RUN python -m pip install --no-cache-dir --no-index --find-links /wheels 'vertex-batch-proxy[postgres]' \
    && rm -rf /wheels
USER vbp
EXPOSE 4000
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
    CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:4000/healthz', timeout=2).status != 200)"
# Migrations are applied on start (VBP_AUTO_MIGRATE=true); several replicas may start at once.
CMD ["vbp", "serve", "--host", "0.0.0.0", "--port", "4000"]
