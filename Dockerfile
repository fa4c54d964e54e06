# The agent as a sidecar image for amd64 and arm64 (Graviton): a static musl build for
# the platform asked for, then nothing but the binary and the CA certificates (rustls
# reads the system roots) in an empty image, run as nobody.
#   docker build -t cloudwatch_metrics_agent .
#   docker buildx build --platform linux/amd64,linux/arm64 -t REGISTRY/cloudwatch_metrics_agent:0.2.0 --push .
#   docker run --rm cloudwatch_metrics_agent check --dry-run --namespace Test --service web
#
# The build stage runs on the builder's own platform and cross-compiles with zig as the C
# compiler and linker (cargo-zigbuild), as ./scripts/test builds and runs both targets.

FROM --platform=$BUILDPLATFORM rust:1.95-slim-bookworm AS build
ARG TARGETARCH
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates python3-pip \
 && rm -rf /var/lib/apt/lists/* \
 && pip3 install --no-cache-dir --break-system-packages ziglang==0.17.1 cargo-zigbuild==0.24.1
# The one place an architecture is named: Docker's TARGETARCH → Rust's target.
RUN case "$TARGETARCH" in \
      amd64) echo x86_64-unknown-linux-musl ;; \
      arm64) echo aarch64-unknown-linux-musl ;; \
      *) echo "unsupported TARGETARCH: $TARGETARCH (amd64 or arm64)" >&2; exit 1 ;; \
    esac > /rust-target \
 && rustup target add "$(cat /rust-target)"
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY link ./link
COPY src ./src
RUN cargo zigbuild --release --locked --target "$(cat /rust-target)" --bin cloudwatch_metrics_agent \
 && cp "target/$(cat /rust-target)/release/cloudwatch_metrics_agent" /cloudwatch_metrics_agent

FROM scratch
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /cloudwatch_metrics_agent /cloudwatch_metrics_agent
ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
# nobody: /proc, the cgroup files and the ECS metadata endpoint need no privilege.
USER 65534:65534
ENTRYPOINT ["/cloudwatch_metrics_agent"]
