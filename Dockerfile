# Multi-stage build: compile in the Rust image, run in a small Debian image as a non-root user.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p vestnik-server

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/vestnik --create-home vestnik
COPY --from=build /src/target/release/vestnik /usr/local/bin/vestnik
USER vestnik
WORKDIR /var/lib/vestnik
EXPOSE 6001 9601
# Liveness only: plain HTTP, or HTTPS when native TLS is on (-k: the certificate names the public
# host, not 127.0.0.1). Shell form, so the port follows VESTNIK_PORT (6001 when unset). Readiness is
# /ready (docs/deployment.md).
HEALTHCHECK --interval=10s --timeout=3s --retries=3 \
  CMD curl -fsS "http://127.0.0.1:${VESTNIK_PORT:-6001}/up" \
   || curl -fsSk "https://127.0.0.1:${VESTNIK_PORT:-6001}/up" \
   || exit 1
ENTRYPOINT ["/usr/local/bin/vestnik"]
