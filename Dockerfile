# Faramesh in a container: the daemon built from source, shipped in an image that holds only the
# binary, the shared libraries it links and the bundled default policy (docs/containers.md).
#
#   docker build -t faramesh .            (or: podman build -t faramesh .)
#   docker compose up                     (compose.yaml: the dashboard on http://127.0.0.1:8000)

FROM docker.io/library/rust:1.90-slim-bookworm AS build
WORKDIR /src
COPY . .
# `init-docker --image-tree DIR` lays out the runtime image's files: this binary, the shared
# libraries `ldd` names, the default policy, /etc/passwd with the faramesh user.
RUN cargo build --release --locked --bin faramesh \
    && target/release/faramesh init-docker --image-tree /image

# The runtime stage. `faramesh init-docker` writes this same stage next to a policy, with the
# image tree taken from the faramesh that runs it.
FROM scratch AS runtime
COPY --from=build /image/root/ /
COPY --from=build --chown=10001:10001 /image/data/ /app/data/
ENV HOME=/app/data \
    FARAMESH_POLICY=/app/policies/default.yaml \
    FARAMESH_STATE_DIR=/app/data \
    FARAMESH_SOCKET=/app/data/faramesh.sock \
    FARAMESH_LISTEN=0.0.0.0:8000 \
    FARAMESH_PLAIN_HTTP=1
USER 10001:10001
VOLUME ["/app/data"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s CMD ["/usr/local/bin/faramesh", "health"]
ENTRYPOINT ["/usr/local/bin/faramesh"]
CMD ["serve"]
