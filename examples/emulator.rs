//! Starts emulated Kubernetes clusters for trying dcm by hand and for benchmarks.
//!
//! `cargo run --example emulator -- --clusters 2 [--dir DIR]` starts `cluster1`..`clusterN`
//! on 127.0.0.1, seeds each with a stock `kube-system/coredns` ConfigMap, writes a
//! kubeconfig with one context per cluster, prints its path, and serves until stopped.
//! The clusters act like real control planes a moment after a write: LoadBalancer
//! Services get an address (cluster N <= 25 from 198.51.100.N0-N9), token Secrets a token,
//! Sail `Istio` objects a Healthy status, new CRDs are established.

use k8s_emulator::harness::Clusters;
use std::path::PathBuf;

fn main() {
    let mut clusters = 2usize;
    let mut dir: Option<PathBuf> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--clusters" => match args.next().and_then(|n| n.parse().ok()) {
                Some(n) if n > 0 => clusters = n,
                _ => fail("--clusters needs a number above 0"),
            },
            "--dir" => match args.next() {
                Some(d) => dir = Some(PathBuf::from(d)),
                None => fail("--dir needs a directory"),
            },
            "-h" | "--help" => {
                println!("usage: emulator [--clusters N] [--dir DIR]");
                return;
            }
            other => fail(&format!("unknown argument {other:?}")),
        }
    }
    let dir = dir.unwrap_or_else(|| {
        std::env::temp_dir().join(format!("dcm-emulator-{}", std::process::id()))
    });
    if let Err(e) = std::fs::create_dir_all(&dir) {
        fail(&format!("cannot create {}: {e}", dir.display()));
    }
    let started = match Clusters::start(clusters, &dir) {
        Ok(c) => c,
        Err(e) => fail(&format!("cannot start the clusters: {e}")),
    };
    if let Err(e) = started.seed_coredns() {
        fail(&format!("cannot seed coredns: {e}"));
    }
    for (name, e) in &started.clusters {
        eprintln!("{name}: {}", e.url());
    }
    println!("{}", started.kubeconfig.display());
    eprintln!("serving until stopped (Ctrl-C)");
    loop {
        std::thread::park();
    }
}

fn fail(message: &str) -> ! {
    eprintln!("error: {message}");
    std::process::exit(1);
}
