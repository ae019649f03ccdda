# migrun: a static binary on a distroless base, for linux/amd64 and
# linux/arm64. CI builds and publishes it on a v* tag (RELEASING.md); by hand:
#   docker buildx build --platform linux/amd64,linux/arm64 \
#     --build-arg VERSION=$(git describe --tags --always) -t migrun .
# Most teams copy the binary into their Rails image instead:
#   COPY --from=ghcr.io/migrun/migrun:<version> /migrun /usr/local/bin/migrun

# The build stage runs on the builder's own platform and cross-compiles
# (CGO_ENABLED=0 needs no C toolchain for the target): no emulation, and the
# final stage runs nothing, so a multi-platform build needs no QEMU.
FROM --platform=$BUILDPLATFORM golang:1.26-bookworm AS build
WORKDIR /src
# Modules first, so source edits do not invalidate the download layer.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# Set by BuildKit for each platform of --platform.
ARG TARGETOS TARGETARCH
ARG VERSION=dev
# The Makefile's own recipe (CGO_ENABLED=0, -trimpath, version stamped),
# for the target platform: the image, `make build` and `make release`
# cannot drift apart (deploy/image_test.go).
RUN make build GOOS=${TARGETOS} GOARCH=${TARGETARCH} VERSION=${VERSION} BIN=/out/migrun

# Distroless static: CA certificates for Slack's HTTPS, no shell, uid 65532.
# Pulled for the target platform.
FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=dev
LABEL org.opencontainers.image.title="migrun" \
      org.opencontainers.image.description="Safe, ordered Rails database migrations for Kubernetes deploys" \
      org.opencontainers.image.source="https://github.com/migrun/migrun" \
      org.opencontainers.image.version="${VERSION}"
COPY --from=build /out/migrun /migrun
USER nonroot:nonroot
ENTRYPOINT ["/migrun"]
CMD ["version"]
