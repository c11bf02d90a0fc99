//! Several emulated clusters and a kubeconfig with one context per cluster, as tests
//! and the `emulator` example use them.

use crate::{Emulator, Options};
use serde_json::json;
use std::path::{Path, PathBuf};

/// The Corefile of a stock kubeadm cluster's `kube-system/coredns` ConfigMap.
pub const STOCK_COREFILE: &str = ".:53 {
    errors
    health {
       lameduck 5s
    }
    ready
    kubernetes cluster.local in-addr.arpa ip6.arpa {
       pods insecure
       fallthrough in-addr.arpa ip6.arpa
       ttl 30
    }
    prometheus :9153
    forward . /etc/resolv.conf
    cache 30
    loop
    reload
    loadbalance
}
";

/// N clusters named `cluster1`..`clusterN` and the kubeconfig that reaches them.
pub struct Clusters {
    pub clusters: Vec<(String, Emulator)>,
    pub kubeconfig: PathBuf,
}

/// The LoadBalancer addresses of the `index`th cluster (from 1) of `Clusters`: ten
/// addresses of a documentation range, so that an address tells its cluster —
/// cluster1 gets 198.51.100.10-19, cluster2 198.51.100.20-29, ... cluster25
/// 198.51.100.250-254; clusters 26-50 the same in 203.0.113.0/24 and 51-75 in
/// 192.0.2.0/24; further clusters a /24 each in 100.64.0.0/10.
pub fn lb_pool(index: usize) -> String {
    let nets = ["198.51.100", "203.0.113", "192.0.2"];
    let i = index.max(1);
    match nets.get((i - 1) / 25) {
        Some(net) => {
            let first = 10 * ((i - 1) % 25 + 1);
            format!("{net}.{first}-{net}.{}", (first + 9).min(254))
        }
        None => format!("100.{}.{}.0/24", 64 + i / 256, i % 256),
    }
}

/// The options `Clusters::start` gives its `index`th cluster (from 1): the defaults
/// with the cluster's own LoadBalancer pool (`lb_pool`).
pub fn cluster_options(index: usize) -> Options {
    Options {
        lb_pool: lb_pool(index),
        ..Options::default()
    }
}

impl Clusters {
    /// Starts `n` clusters (service CIDR 10.96.0.0/16 each, as kubeadm's default) and
    /// writes `<dir>/kubeconfig` with contexts named after them; the first is current.
    /// Each cluster hands out LoadBalancer addresses of its own (see `lb_pool`).
    pub fn start(n: usize, dir: &Path) -> std::io::Result<Clusters> {
        Clusters::start_with(n, dir, |_, _| {})
    }

    /// As `start`, with each cluster's options (those of `cluster_options`) changed by
    /// `configure(name, &mut options)` first.
    pub fn start_with(
        n: usize,
        dir: &Path,
        configure: impl Fn(&str, &mut Options),
    ) -> std::io::Result<Clusters> {
        let mut clusters = Vec::new();
        for i in 1..=n {
            let name = format!("cluster{i}");
            let mut options = cluster_options(i);
            configure(&name, &mut options);
            clusters.push((name, Emulator::start(options)?));
        }
        let kubeconfig = dir.join("kubeconfig");
        std::fs::write(&kubeconfig, kubeconfig_yaml(&clusters))?;
        Ok(Clusters {
            clusters,
            kubeconfig,
        })
    }

    pub fn get(&self, name: &str) -> Option<&Emulator> {
        self.clusters
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, e)| e)
    }

    /// Seeds every cluster with a stock `kube-system/coredns` ConfigMap.
    pub fn seed_coredns(&self) -> Result<(), String> {
        for (_, e) in &self.clusters {
            e.seed(stock_coredns())?;
        }
        Ok(())
    }
}

/// The stock `kube-system/coredns` ConfigMap.
pub fn stock_coredns() -> serde_json::Value {
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "coredns", "namespace": "kube-system", "labels": {"k8s-app": "kube-dns"}},
        "data": {"Corefile": STOCK_COREFILE}
    })
}

fn kubeconfig_yaml(clusters: &[(String, Emulator)]) -> String {
    let mut out = String::from("apiVersion: v1\nkind: Config\npreferences: {}\n");
    out += &format!(
        "current-context: {}\nclusters:\n",
        clusters.first().map(|(n, _)| n.as_str()).unwrap_or("")
    );
    for (name, e) in clusters {
        out += &format!("- name: {name}\n  cluster:\n    server: {}\n", e.url());
    }
    out += "users:\n- name: emulator-admin\n  user:\n    token: emulator-token\ncontexts:\n";
    for (name, _) in clusters {
        out +=
            &format!("- name: {name}\n  context:\n    cluster: {name}\n    user: emulator-admin\n");
    }
    out
}
