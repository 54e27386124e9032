# syntax=docker/dockerfile:1
#
# Images of the Go attune-sensor-agent.
#
#   builder       cross-compiles a static binary (CGO off) on the build host's
#                 architecture for the target's, so arm64 images build fast
#                 on amd64 hosts and vice versa (no emulation).
#   agent-binary  FROM scratch: only /usr/local/bin/attune-sensor-agent, for
#                 `COPY --from=` into other images.
#   agent-init    FROM scratch: an init container/service that runs the
#                 agent's own `install /opt/attune/agent`, so it needs no
#                 shell, cp or chmod (the reference's init image is busybox).
#
# Build (BuildKit):
#   docker buildx build --target agent-init --platform linux/amd64,linux/arm64 \
#     --build-arg VERSION=1.2.3 --build-arg COMMIT=$(git rev-parse HEAD) \
#     -t attune-sensor-agent-init:1.2.3 .

FROM --platform=$BUILDPLATFORM golang:1.26 AS builder
WORKDIR /src

# Modules first: this layer is reused until go.mod/go.sum change.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod \
    go mod download

COPY *.go ./
ARG TARGETOS TARGETARCH
ARG VERSION=0.0.0-dev
ARG COMMIT=
# .git is not in the build context (.dockerignore), so the commit is passed
# in; without it `--version` prints "commit: unknown".
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=${TARGETOS} GOARCH=${TARGETARCH} \
    go build -trimpath -buildvcs=false \
      -ldflags "-s -w -X main.version=${VERSION} -X main.buildCommit=${COMMIT}" \
      -o /out/attune-sensor-agent .

FROM scratch AS agent-binary
ARG VERSION=0.0.0-dev
LABEL org.opencontainers.image.title="attune-sensor-agent" \
      org.opencontainers.image.description="Attune sensor agent: static binary injected into stock interpreter images" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.source="https://github.com/attune-system/attune-sensor-agent"
COPY --from=builder /out/attune-sensor-agent /usr/local/bin/attune-sensor-agent
ENTRYPOINT ["/usr/local/bin/attune-sensor-agent"]

# The default target: last stage.
FROM scratch AS agent-init
ARG VERSION=0.0.0-dev
LABEL org.opencontainers.image.title="attune-sensor-agent-init" \
      org.opencontainers.image.description="Init image: installs attune-sensor-agent into the volume mounted at /opt/attune/agent" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.source="https://github.com/attune-system/attune-sensor-agent"
COPY --from=builder /out/attune-sensor-agent /usr/local/bin/attune-sensor-agent
ENTRYPOINT ["/usr/local/bin/attune-sensor-agent", "install", "/opt/attune/agent"]
