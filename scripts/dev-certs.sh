#!/usr/bin/env bash
# Makes a development CA and certificates signed by it, with the openssl command (EC P-256 keys):
#   scripts/dev-certs.sh DIR [CLIENT ...]
# DIR/ca.pem + ca.key      the development CA (10 years)
# DIR/server.pem + .key    the bus: CN=localhost, SAN DNS:localhost, IP:127.0.0.1, IP:::1
# DIR/CLIENT.pem + .key    one client certificate per CLIENT (CN=CLIENT, the agent id under mTLS);
#                          CLIENT@TENANT adds OU=TENANT (the certificate is then for that tenant only)
#                          and is written to DIR/CLIENT@TENANT.pem + .key
# Existing files are kept, so running it again is safe. For development and tests only.
set -euo pipefail
dir=${1:?usage: scripts/dev-certs.sh DIR [CLIENT ...]}
shift
mkdir -p "$dir"
cd "$dir"

key() { [ -f "$1.key" ] || openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1.key" 2>/dev/null; }

if [ ! -f ca.pem ]; then
  key ca
  openssl req -x509 -new -key ca.key -sha256 -days 3650 -subj "/O=ACB development/CN=ACB development CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" -out ca.pem
fi

# sign NAME SUBJECT EXTENSIONS: a certificate for NAME.key signed by the CA, valid for 825 days.
sign() {
  [ -f "$1.pem" ] && return 0
  key "$1"
  openssl req -new -key "$1.key" -subj "$2" -out "$1.csr"
  openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -sha256 -days 825 \
    -extfile <(printf '%s\n' "$3") -out "$1.pem" 2>/dev/null
  rm -f "$1.csr"
}

sign server "/O=ACB development/CN=localhost" \
  "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1
extendedKeyUsage=serverAuth"
for client in "$@"; do
  agent=${client%@*}
  unit=""
  if [ "$agent" != "$client" ]; then unit="/OU=${client#*@}"; fi
  sign "$client" "/O=ACB development${unit}/CN=$agent" "extendedKeyUsage=clientAuth"
done
chmod 600 ./*.key
