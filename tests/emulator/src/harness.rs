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

impl Clusters {
    /// Starts `n` clusters (service CIDR 10.96.0.0/16 each, as kubeadm's default) and
    /// writes `<dir>/kubeconfig` with contexts named after them; the first is current.
    pub fn start(n: usize, dir: &Path) -> std::io::Result<Clusters> {
        let mut clusters = Vec::new();
        for i in 1..=n {
            clusters.push((format!("cluster{i}"), Emulator::start(Options::default())?));
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
