#!/usr/bin/env bash
# Writes TEST-ONLY CAs: a root with one intermediate per cluster, as Istio's plug-in CA
# guide lays them out (ca-cert.pem, ca-key.pem, root-cert.pem, cert-chain.pem).
# usage: gen.sh OUTDIR ROOT_CN CLUSTER...
set -euo pipefail
out=$1; root_cn=$2; shift 2
mkdir -p "$out"
cd "$out"
cat > root.conf <<CONF
[req]
distinguished_name = dn
prompt = no
x509_extensions = v3
[dn]
O = dcm test only
CN = $root_cn
[v3]
basicConstraints = critical, CA:true
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
CONF
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout root-key.pem -out root-cert.pem -days 36500 -config root.conf 2>/dev/null
for c in "$@"; do
  mkdir -p "$c"
  cat > "$c/ca.conf" <<CONF
[req]
distinguished_name = dn
prompt = no
[dn]
O = dcm test only
CN = dcm test intermediate CA $c
L = $c
[v3]
basicConstraints = critical, CA:true, pathlen:0
keyUsage = critical, digitalSignature, keyCertSign, cRLSign
subjectAltName = URI:spiffe://cluster.local/ns/istio-system/sa/citadel
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
CONF
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$c/ca-key.pem" -out "$c/ca.csr" -config "$c/ca.conf" 2>/dev/null
  openssl x509 -req -in "$c/ca.csr" -CA root-cert.pem -CAkey root-key.pem -CAcreateserial -out "$c/ca-cert.pem" -days 36500 -extfile "$c/ca.conf" -extensions v3 2>/dev/null
  cp root-cert.pem "$c/root-cert.pem"
  cat "$c/ca-cert.pem" root-cert.pem > "$c/cert-chain.pem"
  rm -f "$c/ca.csr" "$c/ca.conf"
done
rm -f root.conf root-cert.srl root-key.pem
