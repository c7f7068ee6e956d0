#!/usr/bin/env bash
# Makes the certificates a secured shardlog cluster needs, with openssl:
#   ca.crt, ca.key          the authority clients trust (--tls-ca)
#   server.crt, server.key  the brokers' client-listener certificate (--tls-cert, --tls-key)
#   peer-ca.crt, peer-ca.key  the cluster's own authority (--peer-tls-ca)
#   peer.crt, peer.key      the brokers' certificate to each other (--peer-tls-cert, --peer-tls-key)
# Both certificates name every HOST given, localhost and 127.0.0.1.
# The directory must be readable by the brokers' users (the compose
# cluster mounts it at /certs). Keep ca.key and peer-ca.key away from the brokers: with peer-ca.key, anyone
# can make a certificate that joins the cluster.
#
#   docker/gen-certs.sh OUT_DIR [HOST...]
set -euo pipefail
out=${1:?usage: gen-certs.sh OUT_DIR [HOST...]}
shift
mkdir -p "$out"
cd "$out"
san="DNS:localhost,IP:127.0.0.1"
for h in "$@"; do san="$san,DNS:$h"; done
days=825

key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
ca() { # name, subject
  key "$1.key"
  openssl req -x509 -new -key "$1.key" -subj "/CN=$2" -days "$days" -out "$1.crt" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
}
leaf() { # name, subject CN, ca, extended usage
  key "$1.key"
  openssl req -new -key "$1.key" -subj "/CN=$2" -out "$1.csr" 2>/dev/null
  printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=%s\nsubjectAltName=%s\n' "$4" "$san" > "$1.ext"
  openssl x509 -req -in "$1.csr" -CA "$3.crt" -CAkey "$3.key" -CAcreateserial -days "$days" -extfile "$1.ext" -out "$1.crt" 2>/dev/null
  rm -f "$1.csr" "$1.ext"
}
ca ca "shardlog client CA"
leaf server "shardlog-broker" ca serverAuth
ca peer-ca "shardlog cluster CA"
leaf peer "shardlog-broker" peer-ca serverAuth,clientAuth
rm -f ./*.srl
chmod 600 ca.key peer-ca.key
# The brokers' keys must be readable by the brokers' users: group 10001 in
# the compose cluster (docker/compose.yaml) when this runs as root; else
# every local user can read them, and this says so.
if [ "$(id -u)" = 0 ]; then
  chgrp 10001 server.key peer.key && chmod 640 server.key peer.key
else
  chmod 644 server.key peer.key
  echo "note: server.key and peer.key are readable by every user of this host (the containers' users must read them);" \
       "run as root to give them to group 10001 alone" >&2
fi
echo "certificates for ${*:-localhost} in $out"
