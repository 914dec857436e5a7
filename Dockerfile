# The Lockstitch image: the static binary and nothing else, run as an
# unprivileged user. Build it with scripts/docker-build, which builds the
# binary on the host into build/run-scripts-docker-build-first/ and then
# runs docker build on the repository root. A multi-stage build (a golang
# image compiling the binary) needs an image registry, which the machines
# this is built on do not reach; so a bare `docker build .` stops at the
# first COPY, with one line that names the step to run:
#
#   COPY failed: ...: stat build/run-scripts-docker-build-first/lockstitch: file does not exist
FROM scratch
COPY build/run-scripts-docker-build-first/lockstitch /lockstitch
# An empty /data owned by the runtime user: a named volume mounted there
# starts with this ownership.
COPY --chown=65534:65534 build/run-scripts-docker-build-first/data /data
USER 65534:65534
# Clients (and peers' administration), Raft, admin HTTP.
EXPOSE 7400 7410 7420
VOLUME /data
ENTRYPOINT ["/lockstitch"]
# A try-out in plain text (--insecure: serve refuses a non-loopback port
# without TLS otherwise); docs/security.md says how to turn TLS on.
CMD ["serve", "--data-dir", "/data", "--client-listen", "0.0.0.0:7400", "--admin-addr", "0.0.0.0:7420", "--insecure"]
