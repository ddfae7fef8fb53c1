# checkpoint-sidecar: slim, non-root, exec-form entrypoint (the process is PID 1 and
# handles SIGTERM itself: finish in-flight hooks, commit, exit 0).
# Python packages come only from requirements.lock, every file checked against its hash
# (`make lock` regenerates it); the base image stays pinned by tag.
FROM python:3.11-slim AS build
# A C compiler for the compiled hot path (setup.py: mypyc); only in this stage.
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/checkpoint-sidecar
ENV PATH=/opt/checkpoint-sidecar/bin:$PATH
WORKDIR /src
COPY requirements.lock requirements-build.lock ./
RUN pip install --no-cache-dir --require-hashes -r requirements.lock
# mypyc beside the venv, not in it: the image keeps only what runs.
RUN pip install --no-cache-dir --require-hashes --no-deps --target /opt/build-tools -r requirements-build.lock
COPY pyproject.toml setup.py README.md ./
COPY sidecar ./sidecar
# Dependencies and build backend are already installed from the locks: nothing else is fetched.
# SIDECAR_COMPILE=0 (--build-arg) builds pure Python instead. The check imports the installed
# package (from /, not the sources in /src).
ARG SIDECAR_COMPILE=1
RUN SIDECAR_COMPILE=$SIDECAR_COMPILE PYTHONPATH=/opt/build-tools pip install --no-cache-dir --no-deps --no-build-isolation . \
    && cd / && python -c "import sidecar.events as e; assert e.COMPILED == ('$SIDECAR_COMPILE' != '0'), e.__file__"

FROM python:3.11-slim
COPY --from=build /opt/checkpoint-sidecar /opt/checkpoint-sidecar
ENV PATH=/opt/checkpoint-sidecar/bin:$PATH
# The examples live apart from the working directory: a relative hook path in a mounted config
# resolves next to that config (then /app), and no example can shadow a mounted hook.
COPY hooks /usr/share/checkpoint-sidecar/examples/hooks
COPY config.example.yaml /usr/share/checkpoint-sidecar/examples/
COPY connectors /app/connectors
WORKDIR /app
RUN useradd --uid 10001 --no-create-home sidecar
USER 10001
EXPOSE 9180
ENTRYPOINT ["checkpoint-sidecar"]
CMD ["run", "--config", "/usr/share/checkpoint-sidecar/examples/config.example.yaml"]
