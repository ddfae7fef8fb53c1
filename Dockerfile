# checkpoint-sidecar: slim, non-root, exec-form entrypoint (the process is PID 1 and
# handles SIGTERM itself: finish in-flight hooks, commit, exit 0).
# Python packages come only from requirements.lock, every file checked against its hash
# (`make lock` regenerates it); the base image stays pinned by tag.
FROM python:3.11-slim AS build
RUN python -m venv /opt/checkpoint-sidecar
ENV PATH=/opt/checkpoint-sidecar/bin:$PATH
WORKDIR /src
COPY requirements.lock ./
RUN pip install --no-cache-dir --require-hashes -r requirements.lock
COPY pyproject.toml README.md ./
COPY sidecar ./sidecar
# Dependencies and build backend are already installed from the lock: nothing else is fetched.
RUN pip install --no-cache-dir --no-deps --no-build-isolation .

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
