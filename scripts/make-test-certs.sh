#!/usr/bin/env bash
# Makes certificates for trying sluice's TLS, with openssl: a CA, a server certificate for
# localhost and 127.0.0.1, and a client certificate (CN "client") whose key is encrypted with a
# password, as in the Qpid Proton SSL example. For tests and trials, never for production.
#
#   scripts/make-test-certs.sh [DIR] [CLIENT_KEY_PASSWORD]
#
# DIR defaults to ./certs, the password to "client-password". Writes:
#   ca.pem, ca.key              the CA (trust ca.pem in clients: set_trusted_ca_db)
#   server.pem, server.key      [tls] cert and key
#   client.pem, client.key      the client's certificate and encrypted key (set_credentials)
# and prints the [tls] table to put in broker.toml.
set -euo pipefail

dir=${1:-certs}
password=${2:-client-password}
days=3650
mkdir -p "$dir"
cd "$dir"
command -v openssl >/dev/null || { echo "openssl is needed (apt-get install openssl)" >&2; exit 1; }

# The CA.
openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days "$days" \
  -subj "/O=sluice test/CN=sluice test CA" \
  -addext "basicConstraints=critical,CA:TRUE" \
  -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null

# One certificate signed by the CA: $1 name, $2 subject, $3 extensions.
sign() {
  openssl req -newkey rsa:2048 -nodes -keyout "$1.key" -out "$1.csr" -subj "$2" 2>/dev/null
  printf '%s\n' "$3" > "$1.ext"
  openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -out "$1.pem" \
    -days "$days" -sha256 -extfile "$1.ext" 2>/dev/null
  rm -f "$1.csr" "$1.ext"
}

sign server "/O=sluice test/CN=localhost" \
"basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1"

sign client "/O=Client/CN=client" \
"basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth"
# The client's key encrypted with the password, as the example's set_credentials expects.
openssl pkcs8 -topk8 -in client.key -out client.key.enc -passout "pass:$password" -v2 aes-256-cbc
mv client.key.enc client.key
rm -f ca.srl
chmod 600 ca.key server.key client.key

cat <<TOML
# Certificates in $(pwd). For broker.toml:
[tls]
listen = ["0.0.0.0:5671"]
cert = "$(pwd)/server.pem"
key = "$(pwd)/server.key"
client_ca = "$(pwd)/ca.pem"
TOML
