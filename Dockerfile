# The lokilab image, built from source: one static binary, every component.
#
#   docker build -t lokilab:latest .
#   docker run --rm -p 3100:3100 lokilab:latest          # lokilab run, all in one
#
# One image holds the single `lokilab` binary, whose subcommands are the
# components (distributor, ingester, querier, compactor, kafka, load,
# verify, healthcheck): one build, one tag to move, and a component is
# chosen by the command, as `lokilab run -processes` does on one machine.
#
# The runtime stage is FROM scratch and is the same as Dockerfile.scratch,
# which builds it from a prebuilt binary on machines that cannot pull the Go
# image (deploy/docker/build-scratch-image.sh).
ARG GO_VERSION=1.26

FROM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# CGO_ENABLED=0: a static binary needs no libc in the runtime image, and the
# pure-Go resolver reads /etc/hosts and Docker's DNS.
RUN CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o /rootfs/usr/bin/lokilab ./cmd/lokilab \
 && mkdir -p /rootfs/etc/ssl/certs /rootfs/data/store /rootfs/data/kafka /rootfs/tmp \
 && cp deploy/docker/rootfs/etc/passwd deploy/docker/rootfs/etc/group /rootfs/etc/ \
 && cp /etc/ssl/certs/ca-certificates.crt /rootfs/etc/ssl/certs/ \
 && chmod 1777 /rootfs/tmp

# --- runtime: keep identical to Dockerfile.scratch below this line ---
FROM scratch
COPY --from=build /rootfs/etc/ /etc/
COPY --from=build /rootfs/usr/ /usr/
COPY --from=build /rootfs/tmp/ /tmp/
# /data and the mount points under it belong to the runtime user, so that a
# fresh named volume mounted there (Docker copies the image's ownership into
# it) is writable without running as root.
COPY --from=build --chown=65532:65532 /rootfs/data/ /data/
USER 65532:65532
WORKDIR /data
ENV HOME=/data
EXPOSE 3100 7946 9092
# No shell in the image: the binary probes itself. Compose overrides the URL
# per service (each component listens on its container's address).
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
  CMD ["/usr/bin/lokilab", "healthcheck", "-quiet", "http://127.0.0.1:3100/ready"]
ENTRYPOINT ["/usr/bin/lokilab"]
CMD ["run", "-server.http-listen-address=0.0.0.0", "-data.dir=/data"]
