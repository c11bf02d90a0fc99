//! Where the state lives: a Kubernetes backend (Secrets and a Lease in a management
//! cluster, here an emulated one over HTTP), `state pull|push` between backends, the lock
//! timeout, `state mv` and `state list GLOB`.

use super::harness::{Project, Run};
use k8s_emulator::harness::Clusters;
use k8s_emulator::{Emulator, Fault, FaultKind, FaultWhen, Request};
use serde_json::{json, Value};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant, SystemTime};

const STATE_TABLE: &str = r#"
[state]
backend = "kubernetes"
context = "cluster2"
namespace = "default"
name = "dcm-e2e"
lock_lease = "3s"
"#;

/// cluster1 is the workload cluster, cluster2 holds the state: a namespace and `n`
/// ConfigMaps (and one Secret) in cluster1.
fn file(n: usize) -> String {
    let mut t = format!(
        "{STATE_TABLE}\n[clusters.cluster1]\ncontext = \"cluster1\"\n\n[[resources]]\nname = \"namespace\"\nclusters = [\"cluster1\"]\nmanifest = {{ apiVersion = \"v1\", kind = \"Namespace\", metadata = {{ name = \"shop\" }} }}\n\n[[resources]]\nname = \"secret\"\nclusters = [\"cluster1\"]\ndepends_on = [\"resources.namespace\"]\nmanifest = {{ apiVersion = \"v1\", kind = \"Secret\", metadata = {{ name = \"db\", namespace = \"shop\" }}, stringData = {{ password = \"hunter2-very-secret\" }} }}\n"
    );
    for i in 0..n {
        t.push_str(&format!(
            "\n[[resources]]\nname = \"cm{i}\"\nclusters = [\"cluster1\"]\ndepends_on = [\"resources.namespace\"]\nmanifest = {{ apiVersion = \"v1\", kind = \"ConfigMap\", metadata = {{ name = \"cm{i}\", namespace = \"shop\" }}, data = {{ n = \"{i}\" }} }}\n"
        ));
    }
    t
}

struct World {
    p: Project,
    clusters: Clusters,
}

impl World {
    fn new(n: usize) -> World {
        let p = Project::new();
        p.write("dcm.toml", &file(n));
        let clusters = Clusters::start(2, p.dir.path()).expect("start emulated clusters");
        World { p, clusters }
    }

    fn args<'a>(&'a self, kubeconfig: &'a str, args: &[&'a str]) -> Vec<&'a str> {
        let mut all = vec!["--kubeconfig", kubeconfig];
        all.extend_from_slice(args);
        all
    }

    fn dcm(&self, args: &[&str]) -> Run {
        let k = self.clusters.kubeconfig.display().to_string();
        self.p.dcm(&self.args(&k, args))
    }

    fn spawn(&self, args: &[&str]) -> Child {
        let k = self.clusters.kubeconfig.display().to_string();
        self.p
            .command(&self.args(&k, args))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start dcm")
    }

    fn workloads(&self) -> &Emulator {
        self.clusters.get("cluster1").expect("cluster1")
    }

    fn mgmt(&self) -> &Emulator {
        self.clusters.get("cluster2").expect("cluster2")
    }

    /// Every write to cluster1 takes `ms` more.
    fn slow_writes(&self, ms: u64) {
        self.workloads().add_fault(
            Fault::new(
                FaultKind::Latency(Duration::from_millis(ms)),
                FaultWhen::Share(1.0),
            )
            .on_method("PATCH"),
        );
    }
}

/// A request as another client sends it; `path` may end in `?k=v,...` (unescaped).
fn call(e: &Emulator, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    let (path, query) = path.split_once('?').unwrap_or((path, ""));
    let query = query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let resp = e.handle(&Request {
        method: method.into(),
        path: path.into(),
        query,
        content_type: "application/json".into(),
        user_agent: "kubectl/v1.32.0".into(),
        body: body.map(|b| b.to_string().into_bytes()).unwrap_or_default(),
        ..Default::default()
    });
    (resp.status, resp.body)
}

const SECRETS: &str = "/api/v1/namespaces/default/secrets";
const LEASE: &str = "/apis/coordination.k8s.io/v1/namespaces/default/leases/dcm-e2e-lock";

/// The state's Secrets of one part (`index`, `chunk`, `journal`).
fn parts(e: &Emulator, part: &str) -> Vec<Value> {
    let (code, list) = call(
        e,
        "GET",
        &format!("{SECRETS}?labelSelector=dcm.io/state=dcm-e2e,dcm.io/state-part={part}"),
        None,
    );
    assert_eq!(code, 200, "{list}");
    list["items"].as_array().cloned().unwrap_or_default()
}

fn lease(e: &Emulator) -> Value {
    call(e, "GET", LEASE, None).1
}

fn holder(e: &Emulator) -> Option<String> {
    lease(e)["spec"]["holderIdentity"]
        .as_str()
        .filter(|h| !h.is_empty())
        .map(str::to_string)
}

fn wait_for<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < limit, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn finish(child: Child) -> Run {
    Run::from_output(child.wait_with_output().expect("wait for dcm"))
}

fn gunzip(bytes: &[u8]) -> String {
    use std::io::Read;
    let mut out = String::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_string(&mut out)
        .expect("gzip");
    out
}

fn secret_data(s: &Value, key: &str) -> Vec<u8> {
    super::harness::base64_decode(s["data"][key].as_str().expect("data key"))
}

fn rfc3339(v: &Value) -> SystemTime {
    let text = v.as_str().expect("a time");
    humantime::parse_rfc3339(text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

#[test]
fn a_kubernetes_state_lives_in_labelled_secrets_and_reads_back() {
    let w = World::new(3);
    let run = w.dcm(&["apply", "--auto-approve"]).expect(0);
    assert!(run.stdout.contains("Apply complete!"), "{}", run.stdout);
    assert!(!w.p.exists("state"), "no local state was written");
    let index = parts(w.mgmt(), "index");
    assert_eq!(index.len(), 1);
    let labels = &index[0]["metadata"]["labels"];
    assert_eq!(labels["app.kubernetes.io/managed-by"], "dcm");
    assert_eq!(labels["dcm.io/state"], "dcm-e2e");
    assert_eq!(index[0]["metadata"]["name"], "dcm-e2e");
    // The whole state, compressed, in the index Secret; never the Secret's data.
    let text = gunzip(&secret_data(&index[0], "state.json.gz"));
    let state: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(state["objects"].as_array().unwrap().len(), 5, "{text}");
    assert!(!text.contains("hunter2"));
    let manifest: Value = serde_json::from_slice(&secret_data(&index[0], "manifest.json")).unwrap();
    assert_eq!(manifest["serial"], state["serial"]);
    assert_eq!(manifest["lineage"], state["lineage"]);
    // The journal was folded in at the end of the run, and the lock released.
    assert!(parts(w.mgmt(), "journal").is_empty());
    assert_eq!(holder(w.mgmt()), None);
    assert_eq!(
        lease(w.mgmt())["metadata"]["labels"]["dcm.io/state"],
        "dcm-e2e"
    );

    let list = w.dcm(&["state", "list", "*/ConfigMap/*"]).expect(0);
    assert!(!list.stdout.contains("hunter2"));
    assert_eq!(list.stdout.lines().count(), 3, "{}", list.stdout);
    let show = w.dcm(&["show"]).expect(0);
    assert!(
        show.stdout
            .contains("State k8s://cluster2/default/dcm-e2e (lineage"),
        "{}",
        show.stdout
    );
    w.dcm(&["plan", "--detailed-exitcode"]).expect(0);

    // --state wins over the file's [state]: another file is another state.
    let other = w.dcm(&["--state", "other.json", "show"]).expect(0);
    assert_eq!(other.stdout.trim(), "No state at other.json.");
    assert!(w
        .dcm(&["--state", "other.json", "state", "list"])
        .expect(0)
        .stdout
        .is_empty());
}

#[test]
fn records_that_finish_while_a_write_is_in_flight_are_written_together() {
    let w = World::new(40);
    // Every state write takes a while, so records pile up behind it.
    w.mgmt().add_fault(
        Fault::new(
            FaultKind::Latency(Duration::from_millis(100)),
            FaultWhen::Share(1.0),
        )
        .on_method("POST"),
    );
    w.dcm(&["--parallelism", "10", "apply", "--auto-approve"])
        .expect(0);
    // 42 objects created: 84 records (the intent, then the result), the first in the
    // state's first write.
    let journal_writes = w
        .mgmt()
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/secrets") && r.status == 201)
        .count();
    assert!(
        journal_writes < 60,
        "{journal_writes} writes for 83 records"
    );
    let state: Value = serde_json::from_str(&w.dcm(&["state", "pull"]).expect(0).stdout).unwrap();
    assert_eq!(state["objects"].as_array().unwrap().len(), 42);
    assert!(state["objects"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e.get("pending").is_none()));
}

#[test]
fn a_second_apply_fails_naming_the_holder_or_waits_with_lock_timeout() {
    let w = World::new(12);
    w.slow_writes(250);
    let first = w.spawn(&["--parallelism", "2", "apply", "--auto-approve"]);
    let id = wait_for(
        "the first apply holds the lock",
        Duration::from_secs(20),
        || holder(w.mgmt()),
    );
    let refused = w.dcm(&["apply", "--auto-approve"]).expect(1);
    assert!(
        refused.stderr.contains("the state is locked: apply by")
            && refused.stderr.contains(&format!("lock ID {id}"))
            && refused.stderr.contains(&format!("dcm force-unlock {id}")),
        "{}",
        refused.stderr
    );
    let second = w.spawn(&["--lock-timeout", "60s", "apply", "--auto-approve"]);
    let first = finish(first).expect(0);
    assert!(first.stdout.contains("14 added"), "{}", first.stdout);
    let second = finish(second).expect(0);
    assert!(
        second
            .stderr
            .contains("waiting for the state lock: apply by"),
        "{}",
        second.stderr
    );
    assert!(second.stdout.contains("No changes."), "{}", second.stdout);
    let state: Value = serde_json::from_str(&w.dcm(&["state", "pull"]).expect(0).stdout).unwrap();
    assert_eq!(state["objects"].as_array().unwrap().len(), 14);
    w.dcm(&["plan", "--detailed-exitcode"]).expect(0);
}

#[test]
fn a_killed_holder_s_lock_expires_and_the_next_run_takes_it_after_not_before() {
    let w = World::new(30);
    w.slow_writes(200);
    let mut first = w.spawn(&["--parallelism", "2", "apply", "--auto-approve"]);
    wait_for("a few objects are written", Duration::from_secs(30), || {
        let written = w
            .workloads()
            .requests()
            .iter()
            .filter(|r| r.method == "PATCH" && (200..300).contains(&r.status))
            .count();
        (written >= 6).then_some(())
    });
    first.kill().expect("kill -9");
    first.wait().expect("reap");
    let killed = lease(w.mgmt());
    let id = killed["spec"]["holderIdentity"]
        .as_str()
        .unwrap()
        .to_string();
    let expires = rfc3339(&killed["spec"]["renewTime"]) + Duration::from_secs(3);

    // Nothing the killed run finished is lost: every object it wrote is in the state
    // (read without the lock, with its journal).
    let listed = w
        .dcm(&["state", "list", "cluster1/core/ConfigMap/*"])
        .expect(0);
    let (_, live) = call(
        w.workloads(),
        "GET",
        "/api/v1/namespaces/shop/configmaps",
        None,
    );
    let live: Vec<String> = live["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            format!(
                "cluster1/core/ConfigMap/shop/{}",
                c["metadata"]["name"].as_str().unwrap()
            )
        })
        .collect();
    assert!(!live.is_empty());
    for a in &live {
        assert!(
            listed.stdout.lines().any(|l| l == a),
            "{a} is lost:\n{}",
            listed.stdout
        );
    }

    // Not before it expires…
    let early = w.dcm(&["apply", "--auto-approve"]);
    if SystemTime::now() < expires {
        assert_eq!(early.code, 1, "{}", early.stderr);
        assert!(
            early.stderr.contains(&format!("lock ID {id}")),
            "{}",
            early.stderr
        );
    }
    // …and then promptly: the old holder is seen until it expires, the new one soon after.
    let mut next = w.spawn(&["--lock-timeout", "30s", "apply", "--auto-approve"]);
    let (mut last_old, mut first_new) = (None, None);
    while next.try_wait().expect("poll dcm").is_none() {
        match holder(w.mgmt()) {
            Some(h) if h == id => last_old = Some(SystemTime::now()),
            Some(_) if first_new.is_none() => first_new = Some(SystemTime::now()),
            _ => {}
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let next = finish(next).expect(0);
    assert!(
        next.stderr.contains("expired") && next.stderr.contains(&id),
        "{}",
        next.stderr
    );
    if let Some(t) = last_old {
        assert!(
            t + Duration::from_millis(200) >= expires,
            "the old holder went early"
        );
    }
    let first_new = first_new.expect("the next run took the lock");
    assert!(
        first_new >= expires - Duration::from_millis(50),
        "taken {:?} before it expired",
        expires.duration_since(first_new).unwrap_or_default()
    );
    assert!(first_new <= expires + Duration::from_secs(3), "taken late");
    let taken = lease(w.mgmt());
    assert!(taken["spec"]["leaseTransitions"].as_i64().unwrap() >= 1);
    assert_eq!(taken["spec"]["leaseDurationSeconds"], 3);
    assert_eq!(holder(w.mgmt()), None, "released at the end");
    w.dcm(&["plan", "--detailed-exitcode"]).expect(0);
    let state: Value = serde_json::from_str(&w.dcm(&["state", "pull"]).expect(0).stdout).unwrap();
    assert_eq!(state["objects"].as_array().unwrap().len(), 32);
    assert!(
        parts(w.mgmt(), "journal").is_empty(),
        "the killed run's journal was folded"
    );
}

#[test]
fn a_run_that_cannot_renew_its_lease_stops_writing_and_says_so() {
    let w = World::new(40);
    w.slow_writes(250);
    let first = w.spawn(&["--parallelism", "2", "apply", "--auto-approve"]);
    wait_for(
        "the first apply holds the lock",
        Duration::from_secs(20),
        || holder(w.mgmt()),
    );
    // From now on the management cluster refuses every request about the Lease.
    w.mgmt()
        .add_fault(Fault::new(FaultKind::Unavailable, FaultWhen::Share(1.0)).on_path("/leases/"));
    let started = Instant::now();
    let first = finish(first).expect(1);
    assert!(
        first.stderr.contains(
            "this run no longer holds the lock of the state at k8s://cluster2/default/dcm-e2e"
        ) && first.stderr.contains("not renewed for 3s")
            && first.stderr.contains("stopped writing the state"),
        "{}",
        first.stderr
    );
    assert!(started.elapsed() < Duration::from_secs(30));
    // No state write after the lease ran out: the next run, once the Lease expired,
    // finds a state it can read, and finishes the job.
    w.mgmt().clear_faults();
    w.dcm(&["--lock-timeout", "30s", "apply", "--auto-approve"])
        .expect(0);
    w.dcm(&["plan", "--detailed-exitcode"]).expect(0);
}

#[test]
fn a_local_state_lock_is_waited_for_with_lock_timeout() {
    let w = World::new(30);
    w.slow_writes(250);
    let local = ["--state", "local/dcm.state.json"];
    let first = w.spawn(&[
        local[0],
        local[1],
        "--parallelism",
        "2",
        "apply",
        "--auto-approve",
    ]);
    wait_for("the first apply writes", Duration::from_secs(20), || {
        w.p.exists("local/dcm.state.json").then_some(())
    });
    let refused = w
        .dcm(&[local[0], local[1], "apply", "--auto-approve"])
        .expect(1);
    assert!(
        refused.stderr.contains("the state is locked: apply by"),
        "{}",
        refused.stderr
    );
    let short = w
        .dcm(&[
            local[0],
            local[1],
            "--lock-timeout",
            "300ms",
            "apply",
            "--auto-approve",
        ])
        .expect(1);
    assert!(
        short
            .stderr
            .contains("the state is still locked after waiting 300ms (--lock-timeout)"),
        "{}",
        short.stderr
    );
    let waited = w
        .dcm(&[
            local[0],
            local[1],
            "--lock-timeout",
            "60s",
            "apply",
            "--auto-approve",
        ])
        .expect(0);
    assert!(
        waited.stderr.contains("waiting for the state lock"),
        "{}",
        waited.stderr
    );
    finish(first).expect(0);
    assert!(
        parts(w.mgmt(), "index").is_empty(),
        "--state won over [state]"
    );
    // A lease out of range is refused before anything is contacted.
    let mut c = w.p.command(&["plan"]);
    let bad = Run::from_output(c.env("DCM_LOCK_LEASE", "1s").output().unwrap()).expect(1);
    assert!(
        bad.stderr.contains("DCM_LOCK_LEASE must be from 3s to 1h"),
        "{}",
        bad.stderr
    );
}

#[test]
fn force_unlock_frees_a_live_lease_and_its_holder_stops_writing() {
    let w = World::new(30);
    w.slow_writes(200);
    let first = w.spawn(&["--parallelism", "2", "apply", "--auto-approve"]);
    let id = wait_for(
        "the first apply holds the lock",
        Duration::from_secs(20),
        || holder(w.mgmt()),
    );
    w.dcm(&["force-unlock", "not-the-id"]).expect(1);
    let out = w.dcm(&["force-unlock", &id]).expect(0);
    assert!(
        out.stdout
            .contains("Unlocked the state at k8s://cluster2/default/dcm-e2e"),
        "{}",
        out.stdout
    );
    let first = finish(first).expect(1);
    assert!(
        first
            .stderr
            .contains("lost the lock of the state at k8s://cluster2/default/dcm-e2e")
            && first.stderr.contains("stopped writing the state"),
        "{}",
        first.stderr
    );
    // What it recorded before stands; the next run finishes the job.
    w.dcm(&["apply", "--auto-approve"]).expect(0);
    w.dcm(&["plan", "--detailed-exitcode"]).expect(0);
}

#[test]
fn a_write_after_another_writer_changed_the_state_is_refused_not_overwritten() {
    let w = World::new(20);
    w.slow_writes(200);
    let first = w.spawn(&["--parallelism", "2", "apply", "--auto-approve"]);
    // Once the run has written the state (its first object), someone else changes it.
    let index = wait_for("the run wrote the state", Duration::from_secs(20), || {
        parts(w.mgmt(), "index").into_iter().next()
    });
    let mut changed = index.clone();
    changed["metadata"]["annotations"] = json!({"someone": "else"});
    let (code, body) = call(
        w.mgmt(),
        "PUT",
        &format!("{SECRETS}/dcm-e2e"),
        Some(&changed),
    );
    assert_eq!(code, 200, "{body}");
    let first = finish(first).expect(1);
    assert!(
        first
            .stderr
            .contains("the state at k8s://cluster2/default/dcm-e2e was changed by another writer")
            && first.stderr.contains("nothing was overwritten"),
        "{}",
        first.stderr
    );
    let (_, now) = call(w.mgmt(), "GET", &format!("{SECRETS}/dcm-e2e"), None);
    assert_eq!(
        now["metadata"]["annotations"]["someone"], "else",
        "not overwritten"
    );
    // The run's records are still there to read, and the next run goes on from them.
    w.dcm(&["apply", "--auto-approve"]).expect(0);
    w.dcm(&["plan", "--detailed-exitcode"]).expect(0);
}

/// A state of `n` ConfigMap entries whose hashes and allocations do not compress.
fn big_state(n: usize, lineage: &str, serial: u64) -> String {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut hex = |len: usize| {
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                char::from_digit((x % 16) as u32, 16).unwrap()
            })
            .collect::<String>()
    };
    let objects: Vec<Value> = (0..n)
        .map(|i| {
            json!({
                "address": format!("c1/core/ConfigMap/default/cm-{i:06}"),
                "cluster": "c1", "apiVersion": "v1", "kind": "ConfigMap",
                "namespace": "default", "name": format!("cm-{i:06}"),
                "sha256": hex(64), "origin": "created",
                "allocated": {"note": hex(96)}
            })
        })
        .collect();
    json!({"version": 1, "lineage": lineage, "serial": serial, "objects": objects}).to_string()
}

#[test]
fn a_state_over_one_mebibyte_is_split_into_chunks_and_read_back_whole() {
    let p = Project::new();
    let clusters = Clusters::start(1, p.dir.path()).expect("start");
    let k = clusters.kubeconfig.display().to_string();
    let at = "k8s://cluster1/default/big";
    p.write("big.json", &big_state(20_000, "big-lineage", 7));
    let push = p
        .dcm(&[
            "--kubeconfig",
            &k,
            "--state",
            at,
            "state",
            "push",
            "big.json",
        ])
        .expect(0);
    assert!(
        push.stdout.contains("serial 7, 20000 objects"),
        "{}",
        push.stdout
    );
    let e = clusters.get("cluster1").unwrap();
    let chunks = |e: &Emulator| {
        let (_, l) = call(
            e,
            "GET",
            &format!("{SECRETS}?labelSelector=dcm.io/state=big,dcm.io/state-part=chunk"),
            None,
        );
        l["items"].as_array().cloned().unwrap_or_default()
    };
    let first = chunks(e);
    assert!(first.len() >= 2, "{} chunks", first.len());
    for c in &first {
        assert!(secret_data(c, "chunk").len() <= 1_000_000);
    }
    let (_, index) = call(e, "GET", &format!("{SECRETS}/big"), None);
    assert!(index["data"].get("state.json.gz").is_none());
    let pulled = p
        .dcm(&["--kubeconfig", &k, "--state", at, "state", "pull"])
        .expect(0);
    let state: Value = serde_json::from_str(&pulled.stdout).unwrap();
    let original: Value = serde_json::from_str(&p.read("big.json")).unwrap();
    assert_eq!(state["objects"], original["objects"]);
    assert_eq!(
        (state["serial"].as_u64(), state["lineage"].as_str()),
        (Some(7), Some("big-lineage"))
    );
    // A newer write replaces the chunks; the old ones go.
    p.write("big.json", &big_state(19_000, "big-lineage", 8));
    p.dcm(&[
        "--kubeconfig",
        &k,
        "--state",
        at,
        "state",
        "push",
        "big.json",
    ])
    .expect(0);
    let second = chunks(e);
    assert!(second.len() >= 2);
    let names = |l: &[Value]| -> Vec<String> {
        l.iter()
            .map(|c| c["metadata"]["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert!(
        names(&second).iter().all(|n| !names(&first).contains(n)),
        "old chunks are gone"
    );
    let list = p
        .dcm(&[
            "--kubeconfig",
            &k,
            "--state",
            at,
            "state",
            "list",
            "c1/core/ConfigMap/default/cm-01899?",
        ])
        .expect(0);
    assert_eq!(list.stdout.lines().count(), 10, "{}", list.stdout);
}

#[test]
fn push_refuses_another_lineage_or_an_older_serial_and_pull_push_round_trips() {
    let p = Project::two_clusters();
    let clusters = Clusters::start(1, p.dir.path()).expect("start");
    let k = clusters.kubeconfig.display().to_string();
    let remote = "k8s://cluster1/default/moved";
    p.dcm(&["apply", "--auto-approve"]).expect(0);
    let pulled = p.dcm(&["state", "pull"]).expect(0);
    assert_eq!(
        serde_json::from_str::<Value>(&pulled.stdout).unwrap(),
        p.state(),
        "pull prints the local state"
    );
    p.write("pulled.json", &pulled.stdout);
    let pushed = p
        .dcm(&[
            "--kubeconfig",
            &k,
            "--state",
            remote,
            "state",
            "push",
            "pulled.json",
        ])
        .expect(0);
    assert!(
        pushed.stdout.contains("to k8s://cluster1/default/moved"),
        "{}",
        pushed.stdout
    );
    let back = p
        .dcm(&["--kubeconfig", &k, "--state", remote, "state", "pull"])
        .expect(0);
    assert_eq!(
        back.stdout, pulled.stdout,
        "k8s gives back what it was given"
    );
    let backup = "k8s://cluster1/default/moved-backup";
    let none = p
        .dcm(&["--kubeconfig", &k, "--state", backup, "state", "pull"])
        .expect(0);
    assert!(
        none.stdout.is_empty(),
        "a new state has no backup: {}",
        none.stdout
    );

    // The same serial again: refused, naming both serials.
    let same = p
        .dcm(&[
            "--kubeconfig",
            &k,
            "--state",
            remote,
            "state",
            "push",
            "pulled.json",
        ])
        .expect(1);
    let serial = p.state()["serial"].as_u64().unwrap();
    assert!(
        same.stderr.contains(&format!(
            "has serial {serial}, not above the serial {serial}"
        )) && same.stderr.contains("--force"),
        "{}",
        same.stderr
    );
    // An older serial: refused.
    let mut older = p.state();
    older["serial"] = json!(serial - 1);
    p.write("older.json", &older.to_string());
    let refused = p
        .dcm(&[
            "--kubeconfig",
            &k,
            "--state",
            remote,
            "state",
            "push",
            "older.json",
        ])
        .expect(1);
    assert!(refused.stderr.contains("not above"), "{}", refused.stderr);
    // Another lineage: refused, naming both.
    let mut other = p.state();
    let lineage = other["lineage"].as_str().unwrap().to_string();
    other["lineage"] = json!("00000000-0000-0000-0000-000000000000");
    other["serial"] = json!(serial + 5);
    p.write("other.json", &other.to_string());
    let refused = p
        .dcm(&[
            "--kubeconfig",
            &k,
            "--state",
            remote,
            "state",
            "push",
            "other.json",
        ])
        .expect(1);
    assert!(
        refused
            .stderr
            .contains("has lineage 00000000-0000-0000-0000-000000000000")
            && refused.stderr.contains(&format!("has lineage {lineage}")),
        "{}",
        refused.stderr
    );
    let before = p
        .dcm(&["--kubeconfig", &k, "--state", remote, "state", "pull"])
        .expect(0);
    assert_eq!(
        before.stdout, pulled.stdout,
        "a refused push changes nothing"
    );
    // --force takes it, with a serial above what was there.
    p.dcm(&[
        "--kubeconfig",
        &k,
        "--state",
        remote,
        "state",
        "push",
        "--force",
        "older.json",
    ])
    .expect(0);
    let forced: Value = serde_json::from_str(
        &p.dcm(&["--kubeconfig", &k, "--state", remote, "state", "pull"])
            .expect(0)
            .stdout,
    )
    .unwrap();
    assert_eq!(forced["serial"].as_u64(), Some(serial + 1));
    // The state from before the push is kept as the backup, itself a state to pull.
    let kept = p
        .dcm(&["--kubeconfig", &k, "--state", backup, "state", "pull"])
        .expect(0);
    assert_eq!(kept.stdout, pulled.stdout);

    // And back from the cluster to a local file.
    p.write("remote.json", &back.stdout);
    p.dcm(&[
        "--state",
        "elsewhere/copy.json",
        "state",
        "push",
        "remote.json",
    ])
    .expect(0);
    assert_eq!(p.read("elsewhere/copy.json"), pulled.stdout);
    // A corrupt file is refused before anything is contacted.
    p.write("bad.json", "{\"version\": 1}");
    let bad = p
        .dcm(&[
            "--kubeconfig",
            &k,
            "--state",
            remote,
            "state",
            "push",
            "bad.json",
        ])
        .expect(1);
    assert!(bad.stderr.contains("bad.json is corrupt"), "{}", bad.stderr);
}

#[test]
fn state_mv_renames_an_address_and_what_refers_to_it_and_list_filters_by_glob() {
    let p = Project::two_clusters();
    p.dcm(&["apply", "--auto-approve"]).expect(0);
    let all = p.dcm(&["state", "list"]).expect(0).stdout;
    assert_eq!(all.lines().count(), 4, "{all}");
    let c1 = p.dcm(&["state", "list", "cluster1/*"]).expect(0).stdout;
    assert_eq!(
        c1.lines().collect::<Vec<_>>(),
        [
            "cluster1/core/ConfigMap/bookinfo/settings",
            "cluster1/core/Namespace/_cluster/bookinfo",
            "cluster1/core/Secret/bookinfo/db",
        ]
    );
    let secrets = p.dcm(&["state", "list", "*/Secret/*"]).expect(0).stdout;
    assert_eq!(secrets.trim(), "cluster1/core/Secret/bookinfo/db");
    let ns = p
        .dcm(&["state", "list", "cluster?/core/Namespace/_cluster/bookinfo"])
        .expect(0)
        .stdout;
    assert_eq!(ns.lines().count(), 2);
    let none = p.dcm(&["state", "list", "nope/*"]).expect(0);
    assert!(
        none.stdout.is_empty()
            && none
                .stderr
                .contains("No address in the state matches `nope/*`")
    );

    // Refusals change nothing.
    let before = p.read("state/dcm.state.json");
    let missing = p
        .dcm(&[
            "state",
            "mv",
            "cluster1/core/ConfigMap/bookinfo/nope",
            "east/core/ConfigMap/bookinfo/nope",
        ])
        .expect(1);
    assert!(
        missing
            .stderr
            .contains("cluster1/core/ConfigMap/bookinfo/nope is not in the state"),
        "{}",
        missing.stderr
    );
    let taken = p
        .dcm(&[
            "state",
            "mv",
            "cluster1/core/Namespace/_cluster/bookinfo",
            "cluster2/core/Namespace/_cluster/bookinfo",
        ])
        .expect(1);
    assert!(
        taken
            .stderr
            .contains("cluster2/core/Namespace/_cluster/bookinfo is in the state already"),
        "{}",
        taken.stderr
    );
    let kind = p
        .dcm(&[
            "state",
            "mv",
            "cluster1/core/ConfigMap/bookinfo/settings",
            "east/core/Secret/bookinfo/settings",
        ])
        .expect(1);
    assert!(
        kind.stderr
            .contains("keeps its kind and group (ConfigMap there, Secret here)"),
        "{}",
        kind.stderr
    );
    let bad = p
        .dcm(&[
            "state",
            "mv",
            "cluster1/core/ConfigMap/bookinfo/settings",
            "East/x",
        ])
        .expect(1);
    assert!(
        bad.stderr.contains("`East/x` is not an object address"),
        "{}",
        bad.stderr
    );
    assert_eq!(p.read("state/dcm.state.json"), before);

    // The file's cluster1 becomes east (same directory): move its three entries.
    p.edit("dcm.toml", "[clusters.cluster1]", "[clusters.east]");
    p.edit_all("dcm.toml", "\"cluster1\"", "\"east\"");
    for a in c1.lines() {
        let to = a.replacen("cluster1/", "east/", 1);
        let out = p.dcm(&["state", "mv", a, &to]).expect(0);
        assert!(
            out.stdout.contains(&format!("Moved {a} to {to}")),
            "{}",
            out.stdout
        );
    }
    let state = p.state();
    let settings = state["objects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["address"] == "east/core/ConfigMap/bookinfo/settings")
        .expect("moved entry");
    assert_eq!(settings["cluster"], "east");
    assert_eq!(
        settings["depends_on"],
        json!(["east/core/Namespace/_cluster/bookinfo"])
    );
    // Nothing changes: the objects are the same, under their new keys.
    let plan = p.dcm(&["plan", "--detailed-exitcode"]).expect(0);
    assert!(plan.stdout.contains("No changes."), "{}", plan.stdout);
}

#[test]
fn bad_state_locations_are_refused_naming_the_part_and_nothing_is_written() {
    let p = Project::two_clusters();
    let bad = p
        .dcm(&["--state", "k8s://ctx/Not_A_Namespace/x", "state", "list"])
        .expect(1);
    assert!(
        bad.stderr.contains(
            "the namespace `Not_A_Namespace` of a Kubernetes state is not a valid namespace name"
        ),
        "{}",
        bad.stderr
    );
    let long = format!("k8s://ctx/ns/{}", "a".repeat(60));
    let bad = p.dcm(&["--state", &long, "state", "rm", "x"]).expect(1);
    assert!(
        bad.stderr
            .contains("needs a name of at most 56 characters, to name its backup"),
        "{}",
        bad.stderr
    );
    let bad = p.dcm(&["--state", "k8s://ctx/ns", "show"]).expect(1);
    assert!(
        bad.stderr.contains("write k8s://CONTEXT/NAMESPACE/NAME"),
        "{}",
        bad.stderr
    );
    // [state] in the file: every problem at its place, before anything is contacted.
    let text = p.read("dcm.toml");
    p.write(
        "dcm.toml",
        &format!("[state]\nbackend = \"kubernetes\"\ncontext = \"mgmt\"\nname = \"Prod\"\n{text}"),
    );
    let before = p.snapshot();
    let plan = p.dcm(&["plan"]).expect(1);
    assert!(
        plan.stderr.contains("dcm.toml:1:1")
            && plan.stderr.contains("needs `namespace`")
            && plan.stderr.contains("dcm.toml:4:8")
            && plan
                .stderr
                .contains("the name `Prod` of a Kubernetes state is not valid"),
        "{}",
        plan.stderr
    );
    let validate = p.dcm(&["validate"]).expect(1);
    assert!(
        validate.stderr.contains("needs `namespace`"),
        "{}",
        validate.stderr
    );
    // A context the kubeconfig does not have is named, with the kubeconfig.
    p.edit(
        "dcm.toml",
        "name = \"Prod\"",
        "name = \"prod\"\nnamespace = \"dcm\"",
    );
    let clusters = Clusters::start(1, p.dir.path()).expect("start");
    let k = clusters.kubeconfig.display().to_string();
    let apply = p
        .dcm(&["--kubeconfig", &k, "apply", "--auto-approve"])
        .expect(1);
    assert!(
        apply
            .stderr
            .contains("the state at k8s://mgmt/dcm/prod: kubeconfig context `mgmt` does not exist"),
        "{}",
        apply.stderr
    );
    assert_eq!(
        p.snapshot().len(),
        before.len() + 1,
        "only the kubeconfig was added"
    );
}

#[test]
fn a_reader_never_sees_half_of_a_write() {
    let p = Project::new();
    let clusters = Clusters::start(1, p.dir.path()).expect("start");
    let k = clusters.kubeconfig.display().to_string();
    let at = "k8s://cluster1/default/big";
    // Each version has its own number of entries, so a read tells which one it saw.
    let size = |serial: u64| 15_000 + serial as usize;
    p.write("v1.json", &big_state(size(1), "big-lineage", 1));
    p.dcm(&[
        "--kubeconfig",
        &k,
        "--state",
        at,
        "state",
        "push",
        "v1.json",
    ])
    .expect(0);
    for serial in 2..=4 {
        p.write(
            &format!("v{serial}.json"),
            &big_state(size(serial), "big-lineage", serial),
        );
    }
    let writer = {
        let dir = p.dir.path().to_path_buf();
        let k = k.clone();
        std::thread::spawn(move || {
            for serial in 2..=4 {
                let out = std::process::Command::new(env!("CARGO_BIN_EXE_dcm"))
                    .args(["--kubeconfig", &k, "--state", at, "state", "push"])
                    .arg(format!("v{serial}.json"))
                    .current_dir(&dir)
                    .env("HOME", &dir)
                    .env_remove("KUBECONFIG")
                    .stdin(Stdio::null())
                    .output()
                    .expect("push");
                assert!(
                    out.status.success(),
                    "{}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        })
    };
    let mut seen = Vec::new();
    while !writer.is_finished() {
        let pulled = p
            .dcm(&["--kubeconfig", &k, "--state", at, "state", "pull"])
            .expect(0);
        let state: Value = serde_json::from_str(&pulled.stdout).expect("a whole state");
        let serial = state["serial"].as_u64().unwrap();
        assert_eq!(state["objects"].as_array().unwrap().len(), size(serial));
        seen.push(serial);
    }
    writer.join().expect("pushes");
    assert!(seen.len() >= 2, "the reads overlapped the writes: {seen:?}");
    assert!(seen.windows(2).all(|w| w[0] <= w[1]), "{seen:?}");
    let last: Value = serde_json::from_str(
        &p.dcm(&["--kubeconfig", &k, "--state", at, "state", "pull"])
            .expect(0)
            .stdout,
    )
    .unwrap();
    assert_eq!(last["serial"], 4);
}

#[test]
fn state_mv_keeps_allocations_unique_and_moves_the_cluster_identity() {
    let p = Project::new();
    let entry = |cluster: &str, name: &str, ip: &str| {
        json!({
            "address": format!("{cluster}/networking.istio.io/ServiceEntry/default/{name}"),
            "cluster": cluster, "apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry",
            "namespace": "default", "name": name, "sha256": "0".repeat(64), "origin": "created",
            "allocated": {"address": ip}, "uid": "u-1"
        })
    };
    let state = json!({
        "version": 1, "lineage": "l-1", "serial": 3,
        "clusters": {"c1": {"server": "https://c1.example", "kube_system_uid": "ks-1"}},
        "objects": [entry("c1", "a", "127.255.0.1"), entry("east", "b", "127.255.0.1")]
    });
    p.write("s.json", &state.to_string());
    p.dcm(&["state", "push", "s.json"]).expect(0);
    let before = p.read("state/dcm.state.json");
    let clash = p
        .dcm(&[
            "state",
            "mv",
            "c1/networking.istio.io/ServiceEntry/default/a",
            "east/networking.istio.io/ServiceEntry/default/a",
        ])
        .expect(1);
    assert!(
        clash.stderr.contains("its allocated address 127.255.0.1 is already east/networking.istio.io/ServiceEntry/default/b's in cluster `east`"),
        "{}",
        clash.stderr
    );
    assert_eq!(p.read("state/dcm.state.json"), before, "nothing changed");
    // To a new cluster key: the address moves with it, and so does c1's identity.
    p.dcm(&[
        "state",
        "mv",
        "c1/networking.istio.io/ServiceEntry/default/a",
        "west/networking.istio.io/ServiceEntry/default/a",
    ])
    .expect(0);
    let s = p.state();
    assert_eq!(
        s["clusters"],
        json!({"west": {"server": "https://c1.example", "kube_system_uid": "ks-1"}})
    );
    let moved = &s["objects"][1];
    assert_eq!(
        moved["address"],
        "west/networking.istio.io/ServiceEntry/default/a"
    );
    assert_eq!(
        (
            moved["allocated"]["address"].as_str(),
            moved["uid"].as_str()
        ),
        (Some("127.255.0.1"), Some("u-1"))
    );
    assert_eq!(s["serial"], 4);
    // A new name is another object: its UID is not kept.
    p.dcm(&[
        "state",
        "mv",
        "west/networking.istio.io/ServiceEntry/default/a",
        "west/networking.istio.io/ServiceEntry/default/a2",
    ])
    .expect(0);
    let s = p.state();
    assert_eq!(s["objects"][1]["name"], "a2");
    assert!(s["objects"][1].get("uid").is_none());
}

#[test]
fn a_saved_plan_records_a_kubernetes_state_and_is_applied_against_it() {
    let w = World::new(2);
    w.dcm(&["apply", "--auto-approve"]).expect(0);
    w.p.edit("dcm.toml", "n = \"0\"", "n = \"zero\"");
    w.dcm(&["plan", "-o", "plan.json"]).expect(0);
    let saved = w.p.read("plan.json");
    assert!(saved.contains("k8s://cluster2/default/dcm-e2e"), "{saved}");
    // Another state is refused, naming both…
    let other = w
        .dcm(&["--state", "elsewhere.json", "apply", "plan.json"])
        .expect(1);
    assert!(
        other.stderr.contains("k8s://cluster2/default/dcm-e2e")
            && other.stderr.contains("elsewhere.json"),
        "{}",
        other.stderr
    );
    // …and without --state the plan is applied against the state it names.
    w.dcm(&["apply", "plan.json"]).expect(0);
    let state: Value = serde_json::from_str(&w.dcm(&["state", "pull"]).expect(0).stdout).unwrap();
    assert_eq!(state["objects"].as_array().unwrap().len(), 4);
    // Applied once: the state moved on, so the same plan is now stale.
    let again = w.dcm(&["apply", "plan.json"]).expect(1);
    assert!(again.stderr.contains("serial"), "{}", again.stderr);
}
