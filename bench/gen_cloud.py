#!/usr/bin/env python3
"""Writes a benchmark project: one logical cloud over N directory-target clusters with S
exported services, each with two subsets and a route. Usage:

    python3 bench/gen_cloud.py 100 50 /tmp/bench
    cd /tmp/bench && /usr/bin/time -v dcm plan    # then: dcm apply --auto-approve

The certificates are the test-only ones from examples/certs."""
import os
import shutil
import sys

n, s, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.makedirs(out, exist_ok=True)
shutil.copytree(os.path.join(repo, "examples/certs"), os.path.join(out, "certs"), dirs_exist_ok=True)
stock = open(os.path.join(repo, "examples/live/cluster1/kube-system/configmap/coredns.yaml")).read()
toml = ['[ca]\nroot_cert = "certs/root-cert.pem"\nca_cert = "certs/ca-cert.pem"\n'
        'ca_key = "certs/ca-key.pem"\ncert_chain = "certs/cert-chain.pem"\n']
for i in range(1, n + 1):
    toml.append(f'[clusters.c{i}]\ndir = "out/c{i}"\npod_cidr = "10.{i}.0.0/16"\n'
                f'service_cidr = "172.{16 + i // 16}.{(i % 16) * 16}.0/20"\ngateway = "192.0.2.{i}:15443"\n')
    d = os.path.join(out, f"out/c{i}/kube-system/configmap")
    os.makedirs(d, exist_ok=True)
    open(os.path.join(d, "coredns.yaml"), "w").write(stock)
members = ", ".join(f'"c{i}"' for i in range(1, n + 1))
forward = ", ".join(f'c{i} = "10.{i}.0.53"' for i in range(1, n + 1))
toml.append(f'[logical_clouds.lc1]\nclusters = [{members}]\ninjection_namespaces = ["default"]\n'
            f'dns_forward = {{ {forward} }}\n')
for k in range(s):
    a, b, c = 1 + k % n, 1 + (k + 1) % n, 1 + (k + 2) % n
    toml.append(f'[[logical_clouds.lc1.services]]\nname = "svc{k}"\nclusters = ["c{a}", "c{b}"]\n'
                f'ports = [{{ number = 8080, protocol = "HTTP" }}]\n'
                f'subsets = [{{ name = "v1", cluster = "c{a}", labels = {{ version = "v1" }} }}, '
                f'{{ name = "v2", cluster = "c{b}", labels = {{ version = "v2" }} }}]\n')
    toml.append(f'[[logical_clouds.lc1.routes]]\nservice = "svc{k}"\nclusters = ["c{c}"]\n'
                f'http = [{{ headers = {{ end-user = {{ exact = "jason" }} }}, to = [{{ subset = "v2" }}] }}, '
                f'{{ to = [{{ subset = "v1", weight = 90 }}, {{ subset = "v2", weight = 10 }}] }}]\n')
open(os.path.join(out, "dcm.toml"), "w").write("\n".join(toml))
