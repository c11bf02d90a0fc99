#!/usr/bin/env python3
"""Writes a benchmark estate: a dcm project of C clusters, L logical clouds (profile
`current`: Sail Istio, east-west gateways, remote secrets), S exported services per cloud
with subsets and a route each, and R plain objects per cluster from `[[resources]]` files.

    python3 bench/gen_estate.py --size 10k OUT            # a named size (see SIZES)
    python3 bench/gen_estate.py -c 8 -l 2 -s 50 -r 800 OUT
    python3 bench/gen_estate.py --contexts --size emu-5k OUT   # clusterN contexts
    python3 bench/gen_estate.py -c 20 -l 2 -s 20 -m 10 --objects 5000 OUT

OUT gets dcm.toml, manifests/ (the plain objects), certs/ (the test-only certificates of
examples/certs) and, with directory targets, an empty out/ for them. Cluster i is named
`cluster<i>`: with `--contexts` it is the kubeconfig context `cluster<i>` (as the emulator
example writes them), otherwise the directory `out/cluster<i>`.

Both modes write the same objects: every value dcm would otherwise read from a cluster
after apply (east-west gateway addresses, API servers, reader tokens) is pinned in the
file, so a Kubernetes target gets exactly the objects that `dcm apply` writes into a
directory target, which is what the kubectl comparison applies.

The object count is printed (an estimate from the same arithmetic dcm's compiler follows;
`dcm validate` prints the exact number). The named sizes:

    size     clusters  clouds  services/cloud  members/cloud  plain/cluster  objects (dcm validate)
    1k            4       2         10              4             141          1,004
    10k          10       4         50              5             564         10,000
    50k          20       5        100             10            1436         50,020
    100k         40       8        100             10            1644        100,040
    200k         50      10        150             10            2733        200,050
    emu-5k       20       2         20             10             149          5,020
    emu-20k      50       4         20             10             317         20,050

"plain/cluster" does not count the Namespaces that hold them (one per 100).

Python 3 standard library only."""
import argparse
import math
import os
import shutil
import sys

# name: (clusters, clouds, services per cloud, members per cloud, objects in all); the
# plain objects per cluster make up the rest. About 40% of each estate is mesh objects.
SIZES = {
    "1k": (4, 2, 10, 4, 1_000),
    "10k": (10, 4, 50, 5, 10_000),
    "50k": (20, 5, 100, 10, 50_000),
    "100k": (40, 8, 100, 10, 100_000),
    "200k": (50, 10, 150, 10, 200_000),
    # the emulated-cluster cases of issue 12: 20 clusters with ~5k objects, 50 with ~20k
    "emu-5k": (20, 2, 20, 10, 5_000),
    "emu-20k": (50, 4, 20, 10, 20_000),
}

# The plain objects of a cluster, in this repeating order (a small app: its namespace
# holds config, a service account, a Service and a Deployment per app).
KINDS = ["ConfigMap", "ConfigMap", "ServiceAccount", "Service", "Deployment"]
PER_FILE = 500  # objects per manifest file (dcm reads files of up to 8 MiB)
PER_NAMESPACE = 100  # plain objects per namespace


def members_of(cloud, clouds, clusters, members):
    """The clusters of cloud `cloud` (0-based): `members` consecutive clusters, the
    clouds' windows starting evenly over all clusters (they overlap when L*M > C, so a
    cluster may run several control planes, one per cloud)."""
    start = (cloud * clusters) // clouds
    return [1 + (start + k) % clusters for k in range(members)]


def manifest(kind, name, namespace, index):
    labels = f"{{app: {name}, tier: bench}}"
    if kind == "ConfigMap":
        return (f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n"
                f"  namespace: {namespace}\n  labels: {labels}\n"
                f"data:\n  index: \"{index}\"\n  settings.yaml: |\n"
                f"    replicas: 2\n    log_level: info\n    feature_{index % 7}: true\n")
    if kind == "ServiceAccount":
        return (f"apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: {name}\n"
                f"  namespace: {namespace}\n  labels: {labels}\n")
    if kind == "Service":
        return (f"apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n"
                f"  namespace: {namespace}\n  labels: {labels}\n"
                f"spec:\n  selector: {{app: {name}}}\n"
                f"  ports:\n  - {{name: http, port: 8080, targetPort: 8080}}\n")
    return (f"apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\n"
            f"  namespace: {namespace}\n  labels: {labels}\n"
            f"spec:\n  replicas: 2\n  selector:\n    matchLabels: {{app: {name}}}\n"
            f"  template:\n    metadata:\n      labels: {{app: {name}, tier: bench}}\n"
            f"    spec:\n      serviceAccountName: {name}\n      containers:\n"
            f"      - name: app\n        image: registry.example/bench/app:1.{index % 10}.0\n"
            f"        ports:\n        - containerPort: 8080\n"
            f"        env:\n        - {{name: INDEX, value: \"{index}\"}}\n")


def estimate(c, l, s, r, m):
    """The number of objects dcm compiles this estate to (`dcm validate` says exactly)."""
    per_member = 3  # the istio namespace, cacerts, the Sail Istio
    per_member += 5 + 1  # east-west gateway: SA, Role, RoleBinding, Deployment, Service; Gateway
    per_member += 2  # the cloud's workload namespaces (injection + services)
    per_member += m - 1  # a remote secret per other member
    per_member += 3 * s  # ServiceEntry, DestinationRule, -subsets DestinationRule
    per_member += s  # a VirtualService per route, in every member
    namespaces = math.ceil(r / PER_NAMESPACE) if r else 0
    return l * m * per_member + c * (r + namespaces)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", help="the project directory to write (created; must be empty or absent)")
    p.add_argument("--size", choices=list(SIZES),
                   help="a named size; options given explicitly override its parts")
    p.add_argument("-c", "--clusters", type=int)
    p.add_argument("-l", "--clouds", type=int)
    p.add_argument("-s", "--services", type=int, help="exported services per logical cloud")
    p.add_argument("-r", "--resources", type=int, help="plain objects per cluster")
    p.add_argument("-n", "--objects", type=int,
                   help="about this many objects in all: sets --resources from the other sizes")
    p.add_argument("-m", "--members", type=int, help="clusters per logical cloud (default: all, at most 10)")
    p.add_argument("--contexts", action="store_true",
                   help="Kubernetes targets: context = \"clusterN\" (as the emulator example names them)")
    a = p.parse_args()
    c, l, s, m, n = SIZES.get(a.size, (4, 1, 10, None, None))
    r = 100 if n is None else None
    c = a.clusters if a.clusters is not None else c
    l = a.clouds if a.clouds is not None else l
    s = a.services if a.services is not None else s
    m = a.members if a.members is not None else (m if m is not None else min(c, 10))
    m = min(m, c)
    n = a.objects if a.objects is not None else n
    if a.resources is not None:
        r = a.resources
    elif n is not None:
        r = max(0, round((n - estimate(c, l, s, 0, m)) / (c * (1 + 1 / PER_NAMESPACE))))
        if r == 0:
            print(f"warning: the logical clouds alone make {estimate(c, l, s, 0, m)} objects "
                  f"(--objects {n}): clusters outside them get none", file=sys.stderr)
    if c < 1 or l < 0 or s < 0 or r < 0:
        sys.exit("error: --clusters must be at least 1; the others at least 0")
    if l and not 2 <= m <= c:
        sys.exit("error: a logical cloud needs 2 to --clusters members")
    if os.path.exists(a.out) and os.listdir(a.out):
        sys.exit(f"error: {a.out} is not empty")
    write(a.out, c, l, s, r, m, a.contexts)
    print(f"{a.out}: {c} clusters x {l} clouds x {s} services + {r} objects per cluster "
          f"({m} members per cloud): about {estimate(c, l, s, r, m)} objects")


def write(out, c, l, s, r, m, contexts):
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    certs = os.path.join(repo, "examples", "certs")
    os.makedirs(os.path.join(out, "certs"), exist_ok=True)
    for f in ["root-cert.pem", "ca-cert.pem", "ca-key.pem", "cert-chain.pem"]:
        shutil.copy(os.path.join(certs, f), os.path.join(out, "certs", f))
    # One fake reader token and API-server CA serve every cluster (test-only; see
    # examples/certs/README.md): pinned so no value is known only after apply.
    shutil.copy(os.path.join(certs, "remotes", "cluster1.token"), os.path.join(out, "certs", "reader.token"))
    shutil.copy(os.path.join(certs, "remotes", "cluster1-api-ca.pem"), os.path.join(out, "certs", "api-ca.pem"))

    t = [f"# Benchmark estate: {c} clusters x {l} logical clouds x {s} services, "
         f"{r} plain objects per cluster. Written by bench/gen_estate.py.\n",
         '[istio]\nversion = "1.31.0"\n',
         '[ca]  # one shared intermediate for every member (a warning; fine for a benchmark)\n'
         'root_cert = "certs/root-cert.pem"\nca_cert = "certs/ca-cert.pem"\n'
         'ca_key = "certs/ca-key.pem"\ncert_chain = "certs/cert-chain.pem"\n']
    for i in range(1, c + 1):
        target = f'context = "cluster{i}"' if contexts else f'dir = "out/cluster{i}"\nsecrets = "plaintext"'
        t.append(f"[clusters.cluster{i}]\n{target}\n"
                 f'pod_cidr = "10.{i // 256}.{i % 256}.0/24"\n'
                 f'service_cidr = "100.{64 + i // 256}.{i % 256}.0/24"\n'
                 f'network = "net1"\n'
                 f'gateway = "cluster{i}.gw.example.com:15443"\n'
                 f'api_server = "https://cluster{i}.api.example.com:6443"\n'
                 'token_file = "certs/reader.token"\nca_file = "certs/api-ca.pem"\n')
    for j in range(1, l + 1):
        lc = f"lc{j}"
        mem = members_of(j - 1, l, c, m)
        names = ", ".join(f'"cluster{i}"' for i in mem)
        t.append(f"[logical_clouds.{lc}]\nclusters = [{names}]\n"
                 f'injection_namespaces = ["{lc}-apps"]\n')
        for k in range(s):
            a_, b_ = mem[k % m], mem[(k + 1) % m]
            t.append(f"[[logical_clouds.{lc}.services]]\nname = \"svc{k}\"\nnamespace = \"{lc}-shop\"\n"
                     f'clusters = ["cluster{a_}", "cluster{b_}"]\n'
                     'ports = [{ name = "http", number = 8080, protocol = "HTTP" }]\n'
                     f'subsets = [{{ name = "v1", cluster = "cluster{a_}", labels = {{ version = "v1" }} }}, '
                     f'{{ name = "v2", cluster = "cluster{b_}", labels = {{ version = "v2" }} }}]\n')
            t.append(f"[[logical_clouds.{lc}.routes]]\nservice = \"svc{k}.{lc}-shop\"\n"
                     'http = [{ headers = { end-user = { exact = "jason" } }, to = [{ subset = "v2" }] }, '
                     '{ to = [{ subset = "v1", weight = 90 }, { subset = "v2", weight = 10 }] }]\n')

    # Plain objects: the same application manifests in every cluster (as a platform
    # team ships one set of manifests to a fleet), in files of PER_FILE objects.
    if r:
        os.makedirs(os.path.join(out, "manifests"), exist_ok=True)
        every = ", ".join(f'"cluster{i}"' for i in range(1, c + 1))
        namespaces = math.ceil(r / PER_NAMESPACE)
        with open(os.path.join(out, "manifests", "namespaces.yaml"), "w") as f:
            for n in range(namespaces):
                f.write(f"---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: apps-{n}\n"
                        f"  labels: {{team: team-{n % 10}}}\n")
        t.append(f'[[resources]]\nname = "namespaces"\nclusters = [{every}]\nfile = "manifests/namespaces.yaml"\n')
        for fi in range(math.ceil(r / PER_FILE)):
            path = f"manifests/apps-{fi}.yaml"
            with open(os.path.join(out, path), "w") as f:
                for i in range(fi * PER_FILE, min(r, (fi + 1) * PER_FILE)):
                    kind = KINDS[i % len(KINDS)]
                    app = i // len(KINDS)
                    name = f"app{app}" if kind in ("ServiceAccount", "Service", "Deployment") else f"app{app}-{'config' if i % len(KINDS) == 0 else 'flags'}"
                    f.write("---\n" + manifest(kind, name, f"apps-{i // PER_NAMESPACE}", i))
            t.append(f'[[resources]]\nname = "apps-{fi}"\nclusters = [{every}]\nfile = "{path}"\n'
                     'depends_on = ["resources.namespaces"]\n')
    if not contexts:
        os.makedirs(os.path.join(out, "out"), exist_ok=True)
    with open(os.path.join(out, "dcm.toml"), "w") as f:
        f.write("\n".join(t))


if __name__ == "__main__":
    main()
