# checkpoint-sidecar: slim, non-root, exec-form entrypoint (the process is PID 1 and
# handles SIGTERM itself: finish in-flight hooks, commit, exit 0).
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY sidecar ./sidecar
RUN pip install --no-cache-dir --prefix=/install .

FROM python:3.11-slim
COPY --from=build /install /usr/local
WORKDIR /app
COPY hooks ./hooks
COPY connectors ./connectors
COPY config.example.yaml ./
RUN useradd --uid 10001 --no-create-home sidecar
USER 10001
EXPOSE 9180
ENTRYPOINT ["checkpoint-sidecar"]
CMD ["run", "--config", "/app/config.example.yaml"]
