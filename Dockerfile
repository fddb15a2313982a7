# Link Loom server image: `loom server`, `loom worker`, `loom scheduler`, `loom db upgrade`.
#
#   docker build -t linkloom/server .                                  # FROM python:3.12-slim
#   docker build --build-arg BASE_IMAGE=registry.local/python:3.12 .   # your own base image
#
# The base image needs python3 (3.11+) with the venv module, and apt or apk to add git. Without a package index at build
# time, put wheels in ./wheels (`pip download -d wheels '.[server]'`) and build with
#   --build-arg PIP_OPTIONS="--no-index --find-links=/src/wheels"
ARG BASE_IMAGE=python:3.12-slim

FROM ${BASE_IMAGE} AS build
ARG PIP_OPTIONS=""
WORKDIR /src
COPY pyproject.toml README.md ./
COPY linkloom ./linkloom
# README.md keeps this COPY valid when ./wheels does not exist; pip ignores it.
COPY README.md wheels* ./wheels/
RUN python3 -m venv /opt/loom \
 && /opt/loom/bin/pip install --no-cache-dir --disable-pip-version-check ${PIP_OPTIONS} ".[server]"

FROM ${BASE_IMAGE}
# git: the flows repository is a real git repository (GitPython runs the git binary).
# A fixed uid, so volume permissions are predictable; no login shell, home in LOOM_HOME.
RUN if command -v apt-get >/dev/null; then \
      apt-get update && apt-get install -y --no-install-recommends git ca-certificates \
      && rm -rf /var/lib/apt/lists/*; \
    elif command -v apk >/dev/null; then apk add --no-cache git ca-certificates; fi \
 && git --version \
 && useradd --system --uid 10001 --user-group --home-dir /var/lib/linkloom --no-create-home \
      --shell /usr/sbin/nologin loom \
 && mkdir -p /var/lib/linkloom && chown 10001:10001 /var/lib/linkloom
COPY --from=build /opt/loom /opt/loom
ENV PATH=/opt/loom/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    LOOM_HOME=/var/lib/linkloom \
    LOOM_SERVER__HOST=0.0.0.0 \
    LOOM_LOG__FORMAT=json
USER 10001:10001
WORKDIR /var/lib/linkloom
VOLUME ["/var/lib/linkloom"]
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python3", "-c", "import os,urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('LOOM_SERVER__PORT', '8080'), timeout=4)"]
ENTRYPOINT ["loom"]
CMD ["server"]
