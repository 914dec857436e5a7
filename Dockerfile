# The Lockstitch image: the static binary and nothing else, run as an
# unprivileged user. There is no image registry to build from here, so the
# binary is built on the host and copied in; scripts/docker-build does both:
#
#   CGO_ENABLED=0 go build -trimpath -o build/lockstitch ./cmd/lockstitch
#   mkdir -p build/data && docker build -t lockstitch:dev -f Dockerfile build
FROM scratch
COPY lockstitch /lockstitch
# An empty /data owned by the runtime user: a named volume mounted there
# starts with this ownership.
COPY --chown=65534:65534 data /data
USER 65534:65534
# Clients (and peers' administration), Raft, admin HTTP.
EXPOSE 7400 7410 7420
VOLUME /data
ENTRYPOINT ["/lockstitch"]
CMD ["serve", "--data-dir", "/data", "--client-listen", "0.0.0.0:7400", "--admin-addr", "0.0.0.0:7420"]
