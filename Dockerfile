# syntax=docker/dockerfile:1
# The pipeline's images, one target per service, from one build:
#
#   docker build --target importer    -t api-pipeline/importer .
#   docker build --target transformer -t api-pipeline/transformer .
#   docker build --target fake-api    -t api-pipeline/fake-api .
#
# Builder and runtime are both Debian 13 (trixie): a binary linked against
# trixie's glibc does not start on an older runtime ("GLIBC_2.39 not found").
# The runtime is distroless: glibc, CA certificates and a non-root user, no
# shell and no package manager. TLS is rustls throughout; nothing links
# libpq or OpenSSL.

FROM rust:1.95.0-slim-trixie AS chef
# cargo-chef builds the dependencies from a recipe of the manifests alone,
# so that layer is reused until Cargo.toml or Cargo.lock change.
RUN cargo install cargo-chef --locked --version 0.1.78
WORKDIR /src

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
# The build's settings (aws-lc without CPU-jitter entropy) apply to the
# dependencies cooked here too.
COPY .cargo .cargo
COPY --from=planner /src/recipe.json recipe.json
RUN cargo chef cook --release --locked --recipe-path recipe.json \
      -p importer -p transformer -p fake-api
COPY . .
RUN cargo build --release --locked -p importer -p transformer -p fake-api --bins \
 && mkdir /out \
 && cp target/release/importer target/release/transformer target/release/fake-api /out/

FROM gcr.io/distroless/cc-debian13:nonroot AS runtime
# CA certificates of RDS, for DATABASE_URL's
# sslrootcert=/etc/ssl/certs/rds-global-bundle.pem with sslmode=verify-full.
ADD --chmod=644 https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem /etc/ssl/certs/rds-global-bundle.pem
# The health file lives here (see `healthcheck`); distroless has no shell,
# so the check is a subcommand of the binary itself. It is written once the
# start-up checks pass, which may wait up to STARTUP_WAIT (60 s) for
# PostgreSQL, SQS or S3: hence the 90 s start period below.
ENV HEALTH_FILE=/tmp/service.healthy
USER 65532:65532

FROM runtime AS importer
COPY --from=builder /out/importer /usr/local/bin/importer
HEALTHCHECK --interval=15s --timeout=5s --start-period=90s --retries=3 \
  CMD ["/usr/local/bin/importer", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/importer"]
CMD ["run"]

FROM runtime AS transformer
COPY --from=builder /out/transformer /usr/local/bin/transformer
HEALTHCHECK --interval=15s --timeout=5s --start-period=90s --retries=3 \
  CMD ["/usr/local/bin/transformer", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/transformer"]
CMD ["run"]

FROM runtime AS fake-api
COPY --from=builder /out/fake-api /usr/local/bin/fake-api
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/fake-api"]
CMD ["--listen", "0.0.0.0:8080"]
