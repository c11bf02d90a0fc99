//! The process's edges: SIGINT during an apply, and a reader that goes away (`dcm plan |
//! head -1`) or a closed standard error.

use super::harness::Project;
use k8s_emulator::harness::Clusters;
use k8s_emulator::{Fault, FaultKind, FaultWhen};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

/// A namespace and `n` ConfigMaps in it, in cluster1.
fn many_objects(n: usize, cluster: &str) -> String {
    let mut t = format!(
        "[clusters.cluster1]\n{cluster}\n\n[[resources]]\nname = \"namespace\"\nclusters = [\"cluster1\"]\nmanifest = {{ apiVersion = \"v1\", kind = \"Namespace\", metadata = {{ name = \"shop\" }} }}\n"
    );
    for i in 0..n {
        t.push_str(&format!(
            "\n[[resources]]\nname = \"cm{i}\"\nclusters = [\"cluster1\"]\ndepends_on = [\"resources.namespace\"]\nmanifest = {{ apiVersion = \"v1\", kind = \"ConfigMap\", metadata = {{ name = \"cm{i}\", namespace = \"shop\" }}, data = {{ n = \"{i}\", text = \"{}\" }} }}\n",
            "x".repeat(200)
        ));
    }
    t
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn sigint_during_apply_finishes_the_writes_in_flight_records_them_and_exits_130() {
    let p = Project::new();
    p.write("dcm.toml", &many_objects(30, "context = \"cluster1\""));
    let clusters = Clusters::start(1, p.dir.path()).expect("start cluster");
    let c1 = clusters.get("cluster1").unwrap();
    c1.add_fault(
        Fault::new(
            FaultKind::Latency(Duration::from_millis(300)),
            FaultWhen::Share(1.0),
        )
        .on_method("PATCH"),
    );
    let kubeconfig = clusters.kubeconfig.display().to_string();
    let mut child = p
        .command(&[
            "--kubeconfig",
            &kubeconfig,
            "--parallelism",
            "2",
            "apply",
            "--auto-approve",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start dcm");
    // Once a few writes are done, well before the last (31 writes, 2 at a time, 300 ms each).
    let start = Instant::now();
    while c1
        .requests()
        .iter()
        .filter(|r| r.method == "PATCH" && (200..300).contains(&r.status))
        .count()
        < 3
    {
        if start.elapsed() > Duration::from_secs(30) || child.try_wait().ok().flatten().is_some() {
            let _ = child.kill();
            let out = child.wait_with_output().expect("wait for dcm");
            panic!(
                "no writes came\n{}\n{}",
                text(&out.stdout),
                text(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let killed = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(killed.success());
    let out: Output = child.wait_with_output().expect("wait for dcm");
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(130), "{stdout}\n{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stderr.contains("Interrupted"), "{stderr}");
    assert!(stderr.contains("apply interrupted: "), "{stderr}");
    // What was done: the progress lines; what was not: counted and listed.
    let created: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.strip_suffix(": created"))
        .collect();
    assert!(created.len() >= 3 && created.len() < 31, "{stdout}");
    assert!(
        stderr.contains(&format!("{} of 31 changes done", created.len())),
        "{stderr}"
    );
    let not_started = stderr.matches("\n  not started: ").count();
    assert_eq!(created.len() + not_started, 31, "{stderr}");
    assert!(
        stderr.contains(&format!("{not_started} not done")),
        "{stderr}"
    );
    // The state is whole and holds exactly what was done.
    let state = p.state();
    let mut recorded: Vec<String> = state["objects"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["pending"] != true)
        .map(|e| e["address"].as_str().unwrap().to_string())
        .collect();
    recorded.sort();
    let mut done: Vec<String> = created.iter().map(|s| s.to_string()).collect();
    done.sort();
    assert_eq!(recorded, done);

    // The same command again finishes the job, and then there is nothing left to do.
    c1.clear_faults();
    let run = p.dcm(&["--kubeconfig", &kubeconfig, "apply", "--auto-approve"]);
    let run = run.expect(0);
    assert!(
        run.stdout
            .contains(&format!("Resources: {not_started} added")),
        "{}",
        run.stdout
    );
    p.dcm(&["--kubeconfig", &kubeconfig, "plan", "--detailed-exitcode"])
        .expect(0);
}

/// Runs dcm with its standard output (or error) a pipe nobody reads any more.
fn with_closed(p: &Project, args: &[&str], stderr_too: bool) -> Output {
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let mut c = p.command(args);
    if stderr_too {
        c.stderr(writer.try_clone().expect("pipe"));
    } else {
        c.stderr(Stdio::piped());
    }
    c.stdout(writer);
    c.output().expect("run dcm")
}

#[test]
fn a_closed_standard_output_ends_the_run_quietly() {
    let p = Project::new();
    p.write("dcm.toml", &many_objects(200, "dir = \"out/cluster1\""));
    for args in [
        &["completions", "bash"][..],
        &["plan"],
        &["plan", "--json"],
        &["graph"],
    ] {
        let out = with_closed(&p, args, false);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(stderr.is_empty(), "{args:?}: {stderr}");
    }
    // An apply whose reader went away still does all its work and records it.
    let out = with_closed(&p, &["apply", "--auto-approve"], false);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(p.state_addresses().len(), 201);

    // A closed standard error as well: errors cannot be shown, but there is no panic.
    for args in [&["plan", "-f", "missing.toml"][..], &["plan", "--bogus"]] {
        let out = with_closed(&p, args, true);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
    }
}
