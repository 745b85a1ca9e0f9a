#!/bin/bash
# The gateway container's start: a certificate if none is mounted, then nginx
# in the foreground with its error lines passed through redact-errors.sed (no
# client address, query string or referrer reaches `docker logs`).
set -euo pipefail
certs=/etc/nginx/certs
domain=${RELAY_DOMAIN:-localhost}
for f in fullchain.pem privkey.pem; do
  # A link into a directory that was not mounted (Let's Encrypt's live/ links into ../../archive/).
  if [ -L "$certs/$f" ] && [ ! -e "$certs/$f" ]; then
    echo "$certs/$f is a link to $(readlink "$certs/$f"), which is not in the container: mount plain files (cp -L)" >&2
    exit 1
  fi
done
if [ ! -s "$certs/fullchain.pem" ] || [ ! -s "$certs/privkey.pem" ]; then
  echo "no certificate in $certs: making a self-signed one for $domain (for local use; mount real ones for production)" >&2
  mkdir -p "$certs"
  umask 077
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 825 \
    -subj "/CN=$domain" -addext "subjectAltName=DNS:$domain,DNS:localhost,IP:127.0.0.1" \
    -addext "extendedKeyUsage=serverAuth" \
    -keyout "$certs/privkey.pem" -out "$certs/fullchain.pem" 2>/dev/null
else
  echo "using the certificate in $certs" >&2
fi
exec nginx -e stderr -g 'daemon off;' 2> >(sed -u -f /etc/nginx/relay/redact-errors.sed >&2)
