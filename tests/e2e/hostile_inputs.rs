//! Hostile input (issue 11): files anyone can change in a pull request, run with CI secrets
//! in the environment. Each case is refused with exit 1 and a clear message, nothing is
//! written, and no secret (nor its base64) reaches the output.

use super::harness::{base64, Project, Run, TWO_CLUSTERS};

/// A value that must never be printed.
const SECRET: &str = "Zq9-hostile-secret-4711";

fn leaks(run: &Run) -> Option<String> {
    let b64 = base64(SECRET.as_bytes());
    for (name, text) in [("stdout", &run.stdout), ("stderr", &run.stderr)] {
        if text.contains(SECRET) || text.contains(&b64) {
            return Some(format!("{name} leaks the secret:\n{text}"));
        }
    }
    None
}

/// Runs dcm with the secret in its environment, as CI does.
fn run(p: &Project, args: &[&str]) -> Run {
    let out = p
        .command(args)
        .env("DCM_TEST_CI_TOKEN", SECRET)
        .output()
        .expect("run dcm");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `validate` and `plan` both refuse, with every wanted text, writing nothing, leaking
/// nothing. Returns validate's stderr.
fn refused(p: &Project, extra: &[&str], wants: &[&str]) -> String {
    let before = p.snapshot();
    let mut first = None;
    for cmd in [&["validate"][..], &["plan"][..], &["plan", "--json"][..]] {
        let args: Vec<&str> = extra.iter().chain(cmd).copied().collect();
        let r = run(p, &args).expect(1);
        for w in wants {
            assert!(
                r.stderr.contains(w),
                "{args:?}: missing {w:?} in:\n{}",
                r.stderr
            );
        }
        if let Some(leak) = leaks(&r) {
            panic!("{args:?}: {leak}");
        }
        assert_eq!(p.snapshot(), before, "{args:?}: nothing may be written");
        first.get_or_insert(r.stderr);
    }
    first.unwrap_or_default()
}

/// One cluster, one resource reading `file`.
fn with_file(file: &str) -> Project {
    let p = Project::new();
    p.write(
        "dcm.toml",
        &format!(
            "[clusters.c1]\ndir = \"out/c1\"\nsecrets = \"plaintext\"\n\n[[resources]]\nclusters = [\"c1\"]\nfile = {}\n",
            toml_string(file)
        ),
    );
    p
}

fn toml_string(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

fn with_yaml(yaml: &str) -> Project {
    let p = with_file("manifests/app.yaml");
    p.write("manifests/app.yaml", yaml);
    p
}

const OK_YAML: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n  namespace: default\ndata:\n  a: b\n";

// ---- 1. Inputs are regular files inside the project ----

#[test]
fn proc_self_environ_is_refused_without_echoing_it() {
    let p = with_file("/proc/self/environ");
    refused(&p, &[], &["outside the project directory", "--allow-path"]);
}

#[test]
fn a_symlink_out_of_the_project_is_refused() {
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().join("leak.yaml");
    std::fs::write(&target, format!("password: {SECRET}\n: : :\n")).unwrap();
    let p = with_file("manifests/app.yaml");
    std::fs::create_dir_all(p.path("manifests")).unwrap();
    std::os::unix::fs::symlink(&target, p.path("manifests/app.yaml")).unwrap();
    refused(&p, &[], &["outside the project directory"]);
    // --allow-path lets it in (and its YAML error is still masked).
    let dir = outside.path().display().to_string();
    let r = run(&p, &["--allow-path", &dir, "validate"]).expect(1);
    assert!(r.stderr.contains("invalid YAML"), "{}", r.stderr);
    assert!(leaks(&r).is_none(), "{}", r.stderr);
}

#[test]
fn a_fifo_a_device_and_a_directory_are_refused_without_reading() {
    // The FIFO lives outside the project (the harness's snapshot would block reading it).
    let outside = tempfile::tempdir().unwrap();
    let fifo = outside.path().join("in.fifo");
    let status = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo");
    assert!(status.success());
    let p = with_file(&fifo.display().to_string());
    refused(&p, &[], &["outside the project directory"]);
    let dir = outside.path().display().to_string();
    refused(
        &p,
        &["--allow-path", &dir],
        &["is a FIFO, not a regular file"],
    );

    let p = with_file("/dev/zero");
    refused(&p, &[], &["outside the project directory"]);
    refused(
        &p,
        &["--allow-path", "/dev"],
        &["is a device, not a regular file"],
    );

    let p = with_file("manifests");
    std::fs::create_dir_all(p.path("manifests")).unwrap();
    refused(&p, &[], &["is a directory, not a regular file"]);
}

#[test]
fn files_over_the_size_limit_are_refused() {
    let p = with_file("big.yaml");
    let mut big = String::from("# ");
    big.push_str(&"x".repeat(8 * 1024 * 1024));
    p.write("big.yaml", &big);
    refused(&p, &[], &["is larger than 8388608 bytes"]);
}

#[test]
fn git_internals_are_never_read() {
    let p = with_file(".git/config");
    p.write(
        ".git/config",
        &format!("[http]\n\textraheader = AUTHORIZATION: basic {SECRET}\n"),
    );
    refused(&p, &[], &["inside a `.git` directory"]);
}

#[test]
fn token_and_pem_files_outside_or_unparsable_never_show_their_content() {
    let p = Project::new();
    p.write("token", &format!("{SECRET} {SECRET}\n"));
    p.write("ca.pem", &format!("{SECRET}\n"));
    p.write(
        "dcm.toml",
        "[clusters.c1]\ndir = \"out/c1\"\napi_server = \"https://192.0.2.1:6443\"\ntoken_file = \"token\"\nca_file = \"ca.pem\"\n",
    );
    refused(
        &p,
        &[],
        &[
            "`token_file` `token` must hold one token",
            "`ca_file` `ca.pem`",
        ],
    );
    p.edit(
        "dcm.toml",
        "token_file = \"token\"",
        "token_file = \"/proc/self/environ\"",
    );
    refused(
        &p,
        &[],
        &["cannot read `token_file` file", "outside the project"],
    );
}

#[test]
fn a_yaml_syntax_error_on_a_password_line_is_masked() {
    let p = with_yaml(&format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\ndata:\n  password: {SECRET}: x\n"
    ));
    let err = refused(&p, &[], &["invalid YAML", "app.yaml:6:"]);
    assert!(err.contains("6 |   password: ******"), "{err}");
}

#[test]
fn any_line_of_a_secret_is_masked_in_snippets() {
    // An invalid name: the error points at the name, inside a Secret.
    let p = with_yaml(&format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: Bad_Name, namespace: default, labels: {{k: {SECRET}}}}}\nstringData:\n  v: x\n"
    ));
    let err = refused(
        &p,
        &[],
        &["invalid name `Bad_Name` for a Secret", "app.yaml:3:"],
    );
    assert!(err.contains("3 | metadata: ******"), "{err}");

    // An inline Secret on one TOML line.
    let p = Project::new();
    p.write(
        "dcm.toml",
        &format!(
            "[clusters.c1]\ndir = \"out/c1\"\nsecrets = \"plaintext\"\n[[resources]]\nclusters = [\"c1\"]\nmanifest = {{ apiVersion = \"v1\", kind = \"Secret\", metadata = {{ name = \"UPPER\" }}, stringData = {{ token = \"{SECRET}\" }} }}\n"
        ),
    );
    let err = refused(&p, &[], &["invalid name `UPPER` for a Secret"]);
    assert!(err.contains("manifest = ******"), "{err}");
}

// ---- 2. Kinds and names as the API server sees them ----

#[test]
fn every_spelling_of_a_core_secret_is_refused_or_redacted() {
    let spellings = [
        "v1",
        "/v1",
        "core/v1",
        " v1",
        "v1 ",
        "V1",
        "/V1",
        "Core/v1",
        "core/V1",
        "v1/",
        "//v1",
        "\"v1\\t\"",
        "\"\\u0076\\u0031\"",
        "!!str v1",
        "'v1'",
    ];
    for kind in ["Secret", "secret", " Secret"] {
        for api in spellings {
            let p = with_yaml(&format!(
                "apiVersion: {api}\nkind: {kind}\nmetadata:\n  name: db\n  namespace: default\ndata:\n  password: {}\nstringData:\n  token: {SECRET}\n",
                base64(SECRET.as_bytes())
            ));
            let before = p.snapshot();
            let v = run(&p, &["validate"]);
            assert!(v.code == 0 || v.code == 1, "{api:?} {kind:?}: {v:?}");
            if let Some(leak) = leaks(&v) {
                panic!("validate {api:?} {kind:?}: {leak}");
            }
            if v.code == 1 {
                assert_eq!(p.snapshot(), before);
                continue;
            }
            // Accepted: it is a core Secret, so its values are hidden everywhere.
            for args in [
                &["plan"][..],
                &["plan", "--json"][..],
                &["plan", "--markdown"][..],
                &["apply", "--auto-approve"][..],
            ] {
                let r = run(&p, args);
                assert!(
                    r.code == 0 || r.code == 2,
                    "{api:?} {kind:?} {args:?}: {r:?}"
                );
                if let Some(leak) = leaks(&r) {
                    panic!("{args:?} {api:?} {kind:?}: {leak}");
                }
            }
            let state = p.read("state/dcm.state.json");
            assert!(!state.contains(SECRET), "state leaks");
            assert!(!state.contains(&base64(SECRET.as_bytes())), "state leaks");
        }
    }
}

#[test]
fn malformed_api_versions_are_refused() {
    for api in [
        "/v1",
        "core/v1",
        "v1/",
        "V1",
        "apps/",
        "/",
        "a//v1",
        "apps/v1/x",
    ] {
        let p = with_yaml(&OK_YAML.replace("apiVersion: v1", &format!("apiVersion: \"{api}\"")));
        refused(&p, &[], &["apiVersion", "app.yaml:1:13"]);
    }
}

#[test]
fn names_follow_each_kinds_rules() {
    let rbac = |name: &str| {
        format!(
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: {name}\nrules: []\n"
        )
    };
    // A newline in an RBAC name would print a fake summary line in the plan.
    let p = with_yaml(&rbac("\"x\\nPlan: 0 to add, 0 to change, 0 to destroy.\""));
    refused(
        &p,
        &[],
        &["must not contain control characters", "app.yaml:4:9"],
    );
    let p = with_yaml(&rbac("\"a/b\""));
    refused(&p, &[], &["valid path segment"]);
    let p = with_yaml(&rbac("\"..\""));
    refused(&p, &[], &["valid path segment"]);
    // 300 characters pass no kind's rule.
    let long = "a".repeat(300);
    let p = with_yaml(&OK_YAML.replace("name: settings", &format!("name: {long}")));
    refused(&p, &[], &["at most 253 characters", "app.yaml:4:9"]);
    let p = with_yaml(&rbac(&long));
    refused(&p, &[], &["at most 253 characters"]);
    // Namespaces and Services are DNS labels.
    let p =
        with_yaml("apiVersion: v1\nkind: Service\nmetadata:\n  name: a.b\n  namespace: default\n");
    refused(&p, &[], &["invalid name `a.b` for a Service"]);
    // Labels and annotation keys.
    let p = with_yaml(&OK_YAML.replace(
        "  namespace: default\n",
        "  namespace: default\n  labels:\n    app: \"x\\ny\"\n",
    ));
    refused(&p, &[], &["invalid value of label `app`", "app.yaml:7:10"]);
    let p = with_yaml(&OK_YAML.replace(
        "  namespace: default\n",
        "  namespace: default\n  annotations:\n    \"a\\tb\": x\n",
    ));
    refused(&p, &[], &["invalid annotation key `a\\tb`"]);
    let p = with_yaml(&OK_YAML.replace(
        "  namespace: default\n",
        &format!(
            "  namespace: default\n  labels:\n    app: {}\n",
            "v".repeat(64)
        ),
    ));
    refused(&p, &[], &["must be at most 63 characters"]);
}

// ---- 3. No ambiguous values ----

#[test]
fn duplicate_yaml_keys_name_both_places() {
    let p = with_yaml(&OK_YAML.replace(
        "  namespace: default\n",
        "  namespace: default\n  name: renamed\n",
    ));
    let err = refused(
        &p,
        &[],
        &[
            "duplicate key `name`",
            "app.yaml:6:3",
            "the first one is here",
            "app.yaml:4:3",
        ],
    );
    assert!(err.contains("6 |   name: renamed"), "{err}");
}

#[test]
fn duplicate_toml_keys_are_refused() {
    let p = Project::two_clusters();
    p.write(
        "dcm.toml",
        &TWO_CLUSTERS.replace(
            "dir = \"out/cluster2\"",
            "dir = \"out/cluster2\"\ndir = \"out/other\"",
        ),
    );
    refused(&p, &[], &["invalid TOML", "dcm.toml:8:"]);
}

#[test]
fn nan_and_infinity_are_refused() {
    for v in [".nan", ".inf", "-.Inf", ".NaN"] {
        let p = with_yaml(&format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n  namespace: default\nspec:\n  ratio: {v}\n"
        ));
        refused(
            &p,
            &[],
            &["NaN and infinity are not allowed", "app.yaml:7:10"],
        );
    }
    for v in ["nan", "inf", "-inf", "+nan"] {
        let p = Project::new();
        p.write(
            "dcm.toml",
            &format!(
                "[clusters.c1]\ndir = \"out/c1\"\n[[resources]]\nclusters = [\"c1\"]\nmanifest = {{ apiVersion = \"v1\", kind = \"ConfigMap\", metadata = {{ name = \"x\" }}, spec = {{ r = {v} }} }}\n"
            ),
        );
        refused(
            &p,
            &[],
            &["NaN and infinity are not allowed", "dcm.toml:5:"],
        );
    }
}

#[test]
fn secret_data_must_be_base64() {
    for bad in ["not base64!", "YWJj\"", "YWI", "YW=J", "\"YWJj ZA==\""] {
        let p = with_yaml(&format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\n  namespace: default\ndata:\n  ok: YWJj\n  pin: {bad}\n"
        ));
        refused(
            &p,
            &[],
            &["data `pin` of Secret `db` is not base64", "app.yaml:8:8"],
        );
    }
}

#[test]
fn a_manifest_file_with_no_objects_is_an_error_unless_allowed() {
    for text in ["", "# only a comment\n", "---\n", "---\n---\n# c\n"] {
        let p = with_yaml(text);
        refused(&p, &[], &["holds no objects", "allow_empty = true"]);
        p.edit("dcm.toml", "file =", "allow_empty = true\nfile =");
        run(&p, &["validate"]).expect(0);
    }
    let p = with_file("/dev/null");
    refused(&p, &[], &["outside the project directory"]);
}

// ---- 7. Control bytes and state sanity ----

#[test]
fn control_bytes_are_reported_at_their_place() {
    let p = Project::two_clusters();
    let mut lines: Vec<String> = TWO_CLUSTERS.lines().map(String::from).collect();
    lines[6] = "dir = \"out/clu\u{0}ster2\"".into();
    p.write("dcm.toml", &lines.join("\n"));
    refused(&p, &[], &["control character (U+0000)", "dcm.toml:7:15"]);

    let p = with_yaml(&OK_YAML.replace("  a: b", "  a: b\u{1}c"));
    refused(&p, &[], &["control character (U+0001)", "app.yaml:7:7"]);
}

#[test]
fn state_versions_and_serials_out_of_range_are_refused() {
    let cases = [
        ("1099511627776", "1", "format version 1099511627776,"),
        ("0", "1", "`version` 0 is not a state format"),
        (
            "1",
            "18446744073709551615",
            "`serial` 18446744073709551615 is out of range",
        ),
    ];
    for (version, serial, want) in cases {
        let p = Project::two_clusters();
        p.write(
            "state/dcm.state.json",
            &format!(
                r#"{{"version": {version}, "lineage": "x", "serial": {serial}, "objects": []}}"#
            ),
        );
        let before = p.snapshot();
        for args in [&["plan"][..], &["apply", "--auto-approve"][..]] {
            let r = run(&p, args).expect(1);
            assert!(r.stderr.contains(want), "{args:?}: {}", r.stderr);
            assert_eq!(p.snapshot(), before);
        }
    }
}

// ---- Property: random Unicode names and values never panic, never print controls ----

struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) as usize) % n.max(1)
    }

    fn string(&mut self) -> String {
        const PIECES: &[&str] = &[
            "a",
            "z",
            "0",
            "-",
            ".",
            "_",
            "/",
            "%",
            "..",
            " ",
            "\n",
            "\t",
            "\r",
            "\u{0}",
            "\u{7}",
            "\u{1b}[2J",
            "\u{85}",
            "\u{2028}",
            "\u{202e}",
            "é",
            "Ж",
            "漢",
            "🦀",
            "\u{feff}",
            ":",
            "#",
            "'",
            "\"",
            "\\",
            "Plan: 0 to add",
            "---",
            "{",
            "}",
        ];
        let len = self.next(12);
        (0..len).map(|_| PIECES[self.next(PIECES.len())]).collect()
    }
}

fn yaml_quoted(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

#[test]
fn random_unicode_names_and_values_never_panic_nor_print_controls() {
    let mut rng = Lcg(0x5eed_1511);
    let mut planned = 0;
    let mut applied = 0;
    for round in 0..24 {
        let mut applied_now = false;
        let name = if rng.next(3) == 0 {
            format!("n{round}")
        } else {
            rng.string()
        };
        let value = rng.string();
        let label = if rng.next(2) == 0 {
            "ok".to_string()
        } else {
            rng.string()
        };
        let kind = ["ConfigMap", "Secret", "ClusterRole"][rng.next(3)];
        let api = if kind == "ClusterRole" {
            "rbac.authorization.k8s.io/v1"
        } else {
            "v1"
        };
        let body = match kind {
            "Secret" => format!("stringData:\n  k: {}\n", yaml_quoted(&value)),
            "ClusterRole" => "rules: []\n".to_string(),
            _ => format!("data:\n  k: {}\n", yaml_quoted(&value)),
        };
        let ns = if kind == "ClusterRole" {
            String::new()
        } else {
            "  namespace: default\n".to_string()
        };
        let yaml = format!(
            "apiVersion: {api}\nkind: {kind}\nmetadata:\n  name: {}\n{ns}  labels:\n    l: {}\n  annotations:\n    a: {}\n{body}",
            yaml_quoted(&name),
            yaml_quoted(&label),
            yaml_quoted(&value),
        );
        let p = with_yaml(&yaml);
        for args in [
            &["validate"][..],
            &["plan"][..],
            &["plan", "--markdown"][..],
            &["apply", "--auto-approve"][..],
            &["plan", "--detailed-exitcode"][..],
        ] {
            let r = run(&p, args);
            assert!(
                r.code == 0 || r.code == 1 || (r.code == 2 && args[0] == "plan"),
                "round {round} {args:?} {yaml:?}: {r:?}"
            );
            if args[0] == "plan" && r.code != 1 {
                planned += 1;
            }
            if args[0] == "apply" && r.code == 0 {
                applied += 1;
            }
            // What was applied plans clean: nothing random breaks the round trip.
            if args == ["plan", "--detailed-exitcode"] && applied_now {
                assert_eq!(r.code, 0, "round {round}: {yaml:?}\n{}", r.stdout);
            }
            if args[0] == "apply" {
                applied_now = r.code == 0;
            }
            let bad = r
                .stdout
                .chars()
                .chain(r.stderr.chars())
                .find(|c| c.is_control() && !matches!(c, '\n' | '\t'));
            assert!(
                bad.is_none(),
                "round {round} {args:?}: control {bad:?} printed for {yaml:?}:\n{}\n{}",
                r.stdout,
                r.stderr
            );
        }
    }
    assert!(planned >= 4, "only {planned} random objects reached a plan");
    assert!(applied >= 2, "only {applied} random objects were applied");
}
