#!/usr/bin/env bash
# Local stand-ins for the base images that Dockerfile, nginx/Dockerfile and docker-compose.yml build on, for a
# machine that reaches Debian's mirror and the npm registry but no image registry (air-gapped CI, this project's
# test machines). Each is made from Debian bookworm with debootstrap, as root:
#
#   relay-base/debian:bookworm  minbase bookworm + this machine's CA bundle (the others start from it)
#   relay-base/node:20          + this machine's node and npm, and a `node` user (uid 1000) as in node:20-bookworm-slim
#   relay-base/nginx:bookworm   + Debian's nginx and openssl
#   relay-base/redis:bookworm   + Debian's redis-server and redis-cli
#
# Then build and run the project on them, overriding only the base images:
#
#   NODE_IMAGE=relay-base/node:20 NGINX_IMAGE=relay-base/nginx:bookworm REDIS_IMAGE=relay-base/redis:bookworm \
#     docker compose up --build          (or docker-compose up --build)
#
# Usage: deploy/base-images.sh [--rebuild]   (an image that exists is kept unless --rebuild)
set -euo pipefail

MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
CA_BUNDLE=${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
rebuild=false
case "${1:-}" in
  '') ;;
  --rebuild) rebuild=true ;;
  *) echo "usage: $0 [--rebuild]" >&2; exit 2 ;;
esac

say() { echo "base-images: $*"; }
die() { echo "base-images: error: $*" >&2; exit 1; }

command -v docker >/dev/null || die "no docker command (apt-get install docker.io)"
docker info >/dev/null 2>&1 || die "no Docker engine answers (start dockerd first)"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# wanted TAG: true when TAG must be (re)made.
wanted() {
  if docker image inspect "$1" >/dev/null 2>&1 && [ "$rebuild" = false ]; then
    say "$1 exists, kept (--rebuild to make it again)"
    return 1
  fi
  say "making $1"
}

# build TAG DIR: docker build of DIR's Dockerfile, its output kept in a file and shown only on failure.
build() {
  if ! docker build -t "$1" "$2" >"$work/build.log" 2>&1; then
    tail -n 30 "$work/build.log" >&2
    die "docker build of $1 failed (above)"
  fi
}

if wanted relay-base/debian:bookworm; then
  [ "$(id -u)" -eq 0 ] || die "run as root (debootstrap needs it)"
  command -v debootstrap >/dev/null || die "no debootstrap (apt-get install debootstrap)"
  [ -s "$CA_BUNDLE" ] || die "no CA bundle at $CA_BUNDLE (set CA_BUNDLE)"
  root=$work/rootfs
  say "debootstrap --variant=minbase bookworm from $MIRROR (about a minute)"
  debootstrap --variant=minbase bookworm "$root" "$MIRROR" >"$work/debootstrap.log" 2>&1 || {
    tail -n 20 "$work/debootstrap.log" >&2
    die "debootstrap failed (above): is $MIRROR reachable?"
  }
  # The official images' apt sources (security updates included), no package lists or caches kept.
  cat >"$root/etc/apt/sources.list" <<EOF
deb $MIRROR bookworm main
deb $MIRROR bookworm-updates main
deb ${MIRROR%/debian}/debian-security bookworm-security main
EOF
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb
  # This machine's CA bundle, so npm and node inside trust what this machine trusts (a TLS-inspecting proxy too).
  mkdir -p "$root/etc/ssl/certs"
  cp "$CA_BUNDLE" "$root/etc/ssl/certs/ca-certificates.crt"
  tar -C "$root" -c . | docker import \
    --change 'ENV NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt' \
    --change 'CMD ["bash"]' - relay-base/debian:bookworm >/dev/null
fi

if wanted relay-base/node:20; then
  node_bin=$(command -v node) || die "no node on PATH to copy into relay-base/node:20"
  node_bin=$(readlink -f "$node_bin")
  case "$("$node_bin" --version)" in
    v20.*) ;;
    *) die "node $("$node_bin" --version) is not Node 20, which relay-base/node:20 stands in for" ;;
  esac
  npm_dir=$(npm root -g)/npm
  [ -f "$npm_dir/bin/npm-cli.js" ] || die "npm not found at $npm_dir"
  mkdir -p "$work/node"
  cp "$node_bin" "$work/node/node"
  cp -a "$npm_dir" "$work/node/npm"
  # Laid out as in the official image: /usr/local/bin/node, npm under /usr/local/lib/node_modules.
  cat >"$work/node/Dockerfile" <<'EOF'
FROM relay-base/debian:bookworm
COPY node /usr/local/bin/node
COPY npm /usr/local/lib/node_modules/npm
RUN ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm \
 && ln -s ../lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx \
 && groupadd --gid 1000 node \
 && useradd --uid 1000 --gid node --shell /bin/bash --create-home node \
 && node --version && npm --version
CMD ["node"]
EOF
  build relay-base/node:20 "$work/node"
fi

if wanted relay-base/nginx:bookworm; then
  mkdir -p "$work/nginx"
  # Debian's package starts nothing in a build; its default site is not used (the relay's nginx.conf replaces it).
  cat >"$work/nginx/Dockerfile" <<'EOF'
FROM relay-base/debian:bookworm
RUN apt-get update \
 && apt-get install -y --no-install-recommends nginx openssl \
 && rm -rf /var/lib/apt/lists/* \
 && ln -sf /dev/stdout /var/log/nginx/access.log && ln -sf /dev/stderr /var/log/nginx/error.log
STOPSIGNAL SIGQUIT
CMD ["nginx", "-g", "daemon off;"]
EOF
  build relay-base/nginx:bookworm "$work/nginx"
fi

if wanted relay-base/redis:bookworm; then
  mkdir -p "$work/redis"
  cat >"$work/redis/Dockerfile" <<'EOF'
FROM relay-base/debian:bookworm
RUN apt-get update \
 && apt-get install -y --no-install-recommends redis-server \
 && rm -rf /var/lib/apt/lists/* \
 && redis-cli --version
CMD ["redis-server", "--protected-mode", "no"]
EOF
  build relay-base/redis:bookworm "$work/redis"
fi

say "ready: NODE_IMAGE=relay-base/node:20 NGINX_IMAGE=relay-base/nginx:bookworm REDIS_IMAGE=relay-base/redis:bookworm"
