# The agent as a sidecar image: a static musl build, then nothing but the binary and the
# CA certificates (rustls reads the system roots) in an empty image, run as nobody.
#   docker build -t cloudwatch_metrics_agent .
#   docker run --rm cloudwatch_metrics_agent check --dry-run --namespace Test --service web

FROM rust:1.95-slim-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends musl-tools ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && rustup target add x86_64-unknown-linux-musl
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
ENV CC_x86_64_unknown_linux_musl=musl-gcc
RUN cargo build --release --locked --target x86_64-unknown-linux-musl --bin cloudwatch_metrics_agent

FROM scratch
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /src/target/x86_64-unknown-linux-musl/release/cloudwatch_metrics_agent /cloudwatch_metrics_agent
ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
# nobody: /proc, the cgroup files and the ECS metadata endpoint need no privilege.
USER 65534:65534
ENTRYPOINT ["/cloudwatch_metrics_agent"]
