# syntax=docker/dockerfile:1.7
# The operator image: a static-enough release build on Debian bookworm, run from distroless as
# the non-root user 65532.
#
#   docker build -t ghcr.io/ospkg-dev/opensearch-package-operator:dev .

FROM rust:1.95-bookworm AS builder
WORKDIR /src
# The whole workspace: Cargo.lock pins every crate, and the sim/testenv members must be
# present for the workspace to resolve.
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked -p opensearch-package-operator --bin opensearch-package-operator \
 && install -D -m 0755 target/release/opensearch-package-operator /out/opensearch-package-operator

FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="opensearch-package-operator" \
      org.opencontainers.image.description="Kubernetes operator that manages Amazon OpenSearch Service custom packages" \
      org.opencontainers.image.source="https://github.com/ospkg-dev/opensearch-package-operator" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder /out/opensearch-package-operator /usr/local/bin/opensearch-package-operator
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/opensearch-package-operator"]
CMD ["run"]
