# migrun: a static binary on a distroless base. Build it with
#   docker build --build-arg VERSION=$(git describe --tags --always) -t migrun .
# Most teams copy the binary into their Rails image instead:
#   COPY --from=ghcr.io/migrun/migrun:<tag> /migrun /usr/local/bin/migrun

FROM golang:1.26-bookworm AS build
WORKDIR /src
# Modules first, so source edits do not invalidate the download layer.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
# The Makefile's own recipe (CGO_ENABLED=0, -trimpath, version stamped):
# the image and `make build` cannot drift apart (deploy/image_test.go).
RUN make build VERSION=${VERSION} BIN=/out/migrun

# Distroless static: CA certificates for Slack's HTTPS, no shell, uid 65532.
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
