# syntax=docker/dockerfile:1
# slimgate's images: the admission webhook (the default, last target) and
# the CLI (--target cli), each one static binary on distroless. The Go
# toolchain stays in the build stage, so the images pass slimgate's own
# default policy (cmd/webhook/dockerfile_test.go models this build).
#
#   docker buildx build --build-arg VERSION=$(git describe --tags --always) \
#     -t ghcr.io/slimgate/slimgate-webhook:dev .

FROM --platform=$BUILDPLATFORM golang:1.26.8-bookworm AS build
WORKDIR /src
# Modules first: this layer and the download are reused until go.mod or
# go.sum change.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG TARGETOS TARGETARCH VERSION=dev
# Cross-compiled on the build platform: no emulation for other targets.
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    export CGO_ENABLED=0 GOOS="$TARGETOS" GOARCH="$TARGETARCH" && \
    go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/webhook ./cmd/webhook && \
    go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/slimgate ./cmd/slimgate

FROM gcr.io/distroless/static-debian12:nonroot AS cli
COPY --from=build /out/slimgate /slimgate
USER 65532:65532
ENTRYPOINT ["/slimgate"]

FROM gcr.io/distroless/static-debian12:nonroot AS webhook
COPY --from=build /out/webhook /webhook
USER 65532:65532
ENTRYPOINT ["/webhook"]
