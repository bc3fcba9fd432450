#!/bin/sh
# Creates a local certificate authority and a server certificate signed by
# it, for localhost and 127.0.0.1, with ECDSA P-256 keys in PKCS#8 form
# ("BEGIN PRIVATE KEY", which native-tls requires).
#
#   certs/gen-certs.sh [OUTDIR] [EXTRA_DNS_NAME]
#
# Writes OUTDIR/ca.pem, ca.key, server.pem, server.key (OUTDIR defaults to
# the directory of this script). Existing files are overwritten. Clients
# trust ca.pem (`confab --ca certs/ca.pem`); the server uses server.pem and
# server.key. The private keys must never be committed (see .gitignore).
set -eu
out=${1:-$(dirname "$0")}
extra=${2:-}
mkdir -p "$out"
umask 077
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

san="DNS:localhost,IP:127.0.0.1,IP:::1"
[ -n "$extra" ] && san="$san,DNS:$extra"

openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout "$out/ca.key" -out "$out/ca.pem" -days 3650 \
    -subj "/CN=confab local CA" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" 2>"$tmp/log" || { cat "$tmp/log" >&2; exit 1; }

openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout "$out/server.key" -out "$tmp/server.csr" \
    -subj "/CN=localhost" 2>"$tmp/log" || { cat "$tmp/log" >&2; exit 1; }

printf 'subjectAltName=%s\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n' "$san" > "$tmp/ext"
openssl x509 -req -in "$tmp/server.csr" -CA "$out/ca.pem" -CAkey "$out/ca.key" \
    -CAcreateserial -CAserial "$tmp/ca.srl" -out "$out/server.pem" -days 825 \
    -extfile "$tmp/ext" 2>"$tmp/log" || { cat "$tmp/log" >&2; exit 1; }

chmod 644 "$out/ca.pem" "$out/server.pem"
echo "certificates written to $out (CA: $out/ca.pem)"
