# vcf-cds: the CDS Hooks service under gunicorn, as a non-root user (README: "Run in containers").
# Build: docker build -t vcf-cds .   Run: see docker-compose.yml for the variables it needs.

# -- build the wheels (the package with its value sets, and every dependency) -----------------------
FROM python:3.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY service ./service
COPY mappings ./mappings
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

# -- the runtime image: no compilers, no source tree, no pip cache ----------------------------------
FROM python:3.11-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    VCF_CDS_HOST=0.0.0.0 \
    VCF_CDS_PORT=8080 \
    VCF_CDS_DATABASE_URL=sqlite:////var/lib/vcf-cds/vcf-cds.sqlite3
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index /wheels/*.whl \
    && rm -rf /wheels \
    && useradd --system --uid 10001 --user-group --home-dir /var/lib/vcf-cds --create-home \
       --shell /usr/sbin/nologin vcfcds
# numeric, so that Kubernetes' runAsNonRoot can verify it
USER 10001:10001
WORKDIR /var/lib/vcf-cds
EXPOSE 8080
# liveness only (no database): a database outage must not get the container restarted in a loop
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 CMD ["vcf-cds", "healthcheck"]
# gunicorn's graceful shutdown: workers finish their requests (up to 20 s), then exit
STOPSIGNAL SIGTERM
CMD ["vcf-cds", "serve"]
