# stocksync: a static binary in a minimal image, run as a non-root user.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# The copy has no .git, so the commit comes as an argument:
# docker build --build-arg REVISION=$(git rev-parse HEAD) .
ARG REVISION=
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w -X main.stampedRevision=${REVISION}" -o /out/stocksync ./cmd/stocksync

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/stocksync /usr/local/bin/stocksync
COPY examples/rules.yaml /etc/stocksync/rules.yaml
USER nonroot:nonroot
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/stocksync"]
CMD ["serve", "--config", "/etc/stocksync/stocksync.yaml"]
