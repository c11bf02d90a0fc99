//! Reference shapes: the east-west gateway, `cross-network-gateway`, istiod's exposure and
//! the remote secrets that the current-profile examples compile to, compared field by field
//! with what Istio publishes.
//!
//! Each expectation starts from the upstream object, copied here as a literal (the source
//! is named above it), and then states every deliberate difference as one edit: `replace`
//! (the field is upstream and dcm's value differs), `remove` (upstream has it, dcm does
//! not) or `add` (dcm has it, upstream does not), each with its reason. The result must be
//! equal to what dcm wrote, field for field: a field dcm drops or adds without an edit here
//! fails the test, and so does an edit of a field the upstream literal does not have.
//!
//! Sources (read at these commits; the samples are unchanged from 1.24.0 to 1.31, the
//! releases the current profile targets, except for `gen-eastwest-gateway.sh`'s ambient
//! mode, which dcm does not use):
//! - istio/istio 86c9f01fd735 (1.31.0-alpha.0+109): `samples/multicluster/
//!   expose-services.yaml`, `expose-istiod.yaml`, `expose-istiod-rev.yaml.tmpl`,
//!   `gen-eastwest-gateway.sh` (an IstioOperator rendered through
//!   `manifests/charts/gateways/istio-ingress/templates/{injected-deployment,service,
//!   serviceaccount,role,rolebindings}.yaml`), `manifests/charts/gateway` (the Helm
//!   `gateway` chart with `networkGateway`: the same pod annotations, Service ports with
//!   `protocol: TCP` and proxy resources, but other names for the ServiceAccount and Role;
//!   dcm follows the script), and `istioctl/pkg/multicluster/remote_secret.go` with its
//!   `remote_secret_test.go`;
//! - istio-ecosystem/sail-operator 328df99dc9fc: `docs/deployment-models/resources/
//!   east-west-gateway-net1.yaml` (that script's output, rendered), `expose-istiod.yaml`,
//!   `expose-services.yaml`.

use super::examples::example_project;
use super::harness::{base64, base64_decode, Project};
use serde_json::{json, Value};

/// An example applied to its directory targets.
fn applied(toml: &str) -> Project {
    let p = example_project(toml);
    p.dcm(&["apply", "--auto-approve", "-f", toml]).expect(0);
    p
}

/// The object dcm wrote at `out/<rel>`, without dcm's ownership marks: the labels
/// `app.kubernetes.io/managed-by: dcm` and `dcm.io/lineage` and the annotation
/// `dcm.io/address`, which dcm puts on every object it creates (a deliberate difference
/// from every sample, checked here once for all).
fn written(p: &Project, rel: &str) -> Value {
    let rel = format!("{}/{rel}", p.out);
    let mut v: Value =
        serde_yaml_ng::from_str(&p.read(&rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
    let meta = v["metadata"].as_object_mut().expect("metadata");
    for (field, keys) in [
        (
            "labels",
            &["app.kubernetes.io/managed-by", "dcm.io/lineage"][..],
        ),
        ("annotations", &["dcm.io/address"][..]),
    ] {
        let map = meta
            .get_mut(field)
            .and_then(Value::as_object_mut)
            .unwrap_or_else(|| panic!("{rel}: no {field}"));
        for k in keys {
            assert!(map.remove(*k).is_some(), "{rel}: no {field}.{k}");
        }
        if map.is_empty() {
            meta.remove(field);
        }
    }
    v
}

/// An upstream object, copied as YAML.
fn upstream(text: &str) -> Value {
    serde_yaml_ng::from_str(text).expect("upstream literal is YAML")
}

/// The parent of `pointer` in `v` and the last key, for the edits below.
fn parent<'v>(v: &'v mut Value, pointer: &str) -> (&'v mut serde_json::Map<String, Value>, String) {
    let (up, key) = pointer.rsplit_once('/').expect("a JSON pointer");
    let key = key.replace("~1", "/").replace("~0", "~");
    let map = v
        .pointer_mut(up)
        .and_then(Value::as_object_mut)
        .unwrap_or_else(|| panic!("{up} is not an object in the upstream shape"));
    (map, key)
}

/// A field upstream sets that dcm sets to another value.
fn replace(v: &mut Value, pointer: &str, to: Value) {
    let (map, key) = parent(v, pointer);
    let old = map
        .get_mut(&key)
        .unwrap_or_else(|| panic!("{pointer} is not in the upstream shape"));
    assert_ne!(*old, to, "{pointer}: no difference to declare");
    *old = to;
}

/// A field upstream sets that dcm leaves out.
fn remove(v: &mut Value, pointer: &str) {
    let (map, key) = parent(v, pointer);
    assert!(
        map.remove(&key).is_some(),
        "{pointer} is not in the upstream shape"
    );
}

/// A field dcm sets that upstream does not.
fn add(v: &mut Value, pointer: &str, value: Value) {
    let (map, key) = parent(v, pointer);
    assert!(
        map.insert(key, value).is_none(),
        "{pointer} is already in the upstream shape"
    );
}

/// Every difference between two values, one line per field (`/a/b: ...`).
fn differences(want: &Value, got: &Value, at: &str, out: &mut Vec<String>) {
    match (want, got) {
        (Value::Object(w), Value::Object(g)) => {
            for (k, wv) in w {
                let path = format!("{at}/{k}");
                match g.get(k) {
                    Some(gv) => differences(wv, gv, &path, out),
                    None => out.push(format!("{path}: missing (upstream: {wv})")),
                }
            }
            for (k, gv) in g {
                if !w.contains_key(k) {
                    out.push(format!("{at}/{k}: not upstream ({gv})"));
                }
            }
        }
        (Value::Array(w), Value::Array(g)) if w.len() == g.len() => {
            for (i, (wv, gv)) in w.iter().zip(g).enumerate() {
                differences(wv, gv, &format!("{at}/{i}"), out);
            }
        }
        _ if want == got => {}
        _ => out.push(format!(
            "{at}: {got}, upstream (with the declared differences) {want}"
        )),
    }
}

/// Asserts that dcm's object is the expected shape, field by field.
fn assert_shape(what: &str, got: &Value, want: &Value) {
    let mut diffs = Vec::new();
    differences(want, got, "", &mut diffs);
    assert!(
        diffs.is_empty(),
        "{what} differs from its reference shape:\n  {}\ndcm wrote:\n{}",
        diffs.join("\n  "),
        serde_yaml_ng::to_string(got).unwrap_or_default()
    );
}

#[test]
fn the_comparison_reports_missing_extra_and_changed_fields() {
    let want = json!({ "a": { "b": 1, "c": [1, 2] }, "d": "x" });
    let got = json!({ "a": { "b": 2, "c": [1, 2, 3], "e": true } });
    let mut diffs = Vec::new();
    differences(&want, &got, "", &mut diffs);
    assert_eq!(
        diffs,
        [
            "/a/b: 2, upstream (with the declared differences) 1",
            "/a/c: [1,2,3], upstream (with the declared differences) [1,2]",
            "/a/e: not upstream (true)",
            "/d: missing (upstream: \"x\")",
        ]
    );
    let mut v = json!({ "metadata": { "labels": { "a/b": "1" } } });
    replace(&mut v, "/metadata/labels/a~1b", json!("2"));
    add(&mut v, "/metadata/namespace", json!("n"));
    remove(&mut v, "/metadata/labels/a~1b");
    assert_eq!(v, json!({ "metadata": { "labels": {}, "namespace": "n" } }));
    for edit in [
        (|v: &mut Value| remove(v, "/metadata/name")) as fn(&mut Value),
        |v| add(v, "/metadata/namespace", json!("m")),
        |v| replace(v, "/metadata/namespace", json!("n")),
    ] {
        let mut v = v.clone();
        assert!(std::panic::catch_unwind(move || edit(&mut v)).is_err());
    }
}

/// The cloud whose objects are compared: its name, revision and control-plane namespace.
struct Cloud<'a> {
    name: &'a str,
    revision: &'a str,
    namespace: &'a str,
}

/// `gen-eastwest-gateway.sh --network network1`, rendered: the Sail Operator's
/// `docs/deployment-models/resources/east-west-gateway-net1.yaml`, object by object
/// (ServiceAccount, Deployment, PodDisruptionBudget, Role, RoleBinding,
/// HorizontalPodAutoscaler, Service; for the PodDisruptionBudget and the autoscaler, see
/// `kinds_in`).
const EAST_WEST_SERVICE_ACCOUNT: &str = r#"
apiVersion: v1
kind: ServiceAccount
metadata:
  labels:
    app: istio-eastwestgateway
    install.operator.istio.io/owning-resource: unknown
    istio: eastwestgateway
    istio.io/rev: default
    operator.istio.io/component: IngressGateways
    release: istio
    topology.istio.io/network: network1
  name: istio-eastwestgateway-service-account
  namespace: istio-system
"#;

const EAST_WEST_DEPLOYMENT: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  labels:
    app: istio-eastwestgateway
    install.operator.istio.io/owning-resource: unknown
    istio: eastwestgateway
    istio.io/rev: default
    operator.istio.io/component: IngressGateways
    release: istio
    topology.istio.io/network: network1
  name: istio-eastwestgateway
  namespace: istio-system
spec:
  selector:
    matchLabels:
      app: istio-eastwestgateway
      istio: eastwestgateway
      topology.istio.io/network: network1
  strategy:
    rollingUpdate:
      maxSurge: 100%
      maxUnavailable: 25%
  template:
    metadata:
      annotations:
        inject.istio.io/templates: gateway
        prometheus.io/path: /stats/prometheus
        prometheus.io/port: "15020"
        prometheus.io/scrape: "true"
        sidecar.istio.io/inject: "true"
      labels:
        app: istio-eastwestgateway
        chart: gateways
        heritage: Tiller
        install.operator.istio.io/owning-resource: unknown
        istio: eastwestgateway
        operator.istio.io/component: IngressGateways
        release: istio
        sidecar.istio.io/inject: "true"
        topology.istio.io/network: network1
    spec:
      affinity:
        nodeAffinity:
          preferredDuringSchedulingIgnoredDuringExecution: null
          requiredDuringSchedulingIgnoredDuringExecution: null
      containers:
        - env:
            - name: ISTIO_META_REQUESTED_NETWORK_VIEW
              value: network1
            - name: ISTIO_META_UNPRIVILEGED_POD
              value: "true"
          image: auto
          name: istio-proxy
          ports:
            - containerPort: 15021
              protocol: TCP
            - containerPort: 15443
              protocol: TCP
            - containerPort: 15012
              protocol: TCP
            - containerPort: 15017
              protocol: TCP
            - containerPort: 15090
              name: http-envoy-prom
              protocol: TCP
          resources:
            limits:
              cpu: 2000m
              memory: 1024Mi
            requests:
              cpu: 100m
              memory: 128Mi
          securityContext:
            allowPrivilegeEscalation: false
            capabilities:
              drop:
                - ALL
            privileged: false
            readOnlyRootFilesystem: true
          volumeMounts:
            - mountPath: /etc/istio/ingressgateway-certs
              name: ingressgateway-certs
              readOnly: true
            - mountPath: /etc/istio/ingressgateway-ca-certs
              name: ingressgateway-ca-certs
              readOnly: true
      serviceAccountName: istio-eastwestgateway-service-account
      volumes:
        - name: ingressgateway-certs
          secret:
            optional: true
            secretName: istio-ingressgateway-certs
        - name: ingressgateway-ca-certs
          secret:
            optional: true
            secretName: istio-ingressgateway-ca-certs
"#;

const EAST_WEST_ROLE: &str = r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  labels:
    install.operator.istio.io/owning-resource: unknown
    istio.io/rev: default
    operator.istio.io/component: IngressGateways
    release: istio
  name: istio-eastwestgateway-sds
  namespace: istio-system
rules:
  - apiGroups:
      - ""
    resources:
      - secrets
    verbs:
      - get
      - watch
      - list
"#;

const EAST_WEST_ROLE_BINDING: &str = r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  labels:
    install.operator.istio.io/owning-resource: unknown
    istio.io/rev: default
    operator.istio.io/component: IngressGateways
    release: istio
  name: istio-eastwestgateway-sds
  namespace: istio-system
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: Role
  name: istio-eastwestgateway-sds
subjects:
  - kind: ServiceAccount
    name: istio-eastwestgateway-service-account
"#;

const EAST_WEST_SERVICE: &str = r#"
apiVersion: v1
kind: Service
metadata:
  annotations: null
  labels:
    app: istio-eastwestgateway
    install.operator.istio.io/owning-resource: unknown
    istio: eastwestgateway
    istio.io/rev: default
    operator.istio.io/component: IngressGateways
    release: istio
    topology.istio.io/network: network1
  name: istio-eastwestgateway
  namespace: istio-system
spec:
  ports:
    - name: status-port
      port: 15021
      protocol: TCP
      targetPort: 15021
    - name: tls
      port: 15443
      protocol: TCP
      targetPort: 15443
    - name: tls-istiod
      port: 15012
      protocol: TCP
      targetPort: 15012
    - name: tls-webhook
      port: 15017
      protocol: TCP
      targetPort: 15017
  selector:
    app: istio-eastwestgateway
    istio: eastwestgateway
    topology.istio.io/network: network1
  type: LoadBalancer
"#;

/// The differences every east-west object of the sample has in a cloud's member, on its
/// metadata: what the script's flags give, then dcm's own choices.
fn east_west_metadata(v: &mut Value, cloud: &Cloud<'_>, network: &str) {
    // `--revision <rev>`: the chart labels its objects `istio.io/rev: {{ .Values.revision |
    // default "default" }}` (the sample was rendered without one).
    replace(v, "/metadata/labels/istio.io~1rev", json!(cloud.revision));
    // `--network <net>`: the member's network (the sample's is network1).
    if v["metadata"]["labels"]
        .get("topology.istio.io/network")
        .is_some()
    {
        replace(
            v,
            "/metadata/labels/topology.istio.io~1network",
            json!(network),
        );
    }
    // Deliberate: the cloud's own namespace (istio-<cloud>), so two clouds on one cluster
    // each have their own gateway.
    replace(v, "/metadata/namespace", json!(cloud.namespace));
    // Deliberate: the IstioOperator's bookkeeping labels (dcm is not the operator) give
    // way to the cloud's label, which dcm's ownership and `dcm drift` read.
    for label in [
        "install.operator.istio.io~1owning-resource",
        "operator.istio.io~1component",
        "release",
    ] {
        remove(v, &format!("/metadata/labels/{label}"));
    }
    add(
        v,
        "/metadata/labels/dcm.io~1logical-cloud",
        json!(cloud.name),
    );
}

/// The sample's east-west objects as they must be in `cluster` of a cloud.
fn check_east_west(p: &Project, cluster: &str, cloud: &Cloud<'_>, network: &str) {
    let dir = format!("{cluster}/{}", cloud.namespace);
    let at = |rel: &str| written(p, &format!("{dir}/{rel}"));

    let mut sa = upstream(EAST_WEST_SERVICE_ACCOUNT);
    east_west_metadata(&mut sa, cloud, network);
    assert_shape(
        &format!("{cluster}: east-west ServiceAccount"),
        &at("serviceaccount/istio-eastwestgateway-service-account.yaml"),
        &sa,
    );

    let mut d = upstream(EAST_WEST_DEPLOYMENT);
    east_west_metadata(&mut d, cloud, network);
    for pointer in [
        "/spec/selector/matchLabels/topology.istio.io~1network",
        "/spec/template/metadata/labels/topology.istio.io~1network",
    ] {
        replace(&mut d, pointer, json!(network));
    }
    replace(
        &mut d,
        "/spec/template/spec/containers/0/env/0/value",
        json!(network),
    );
    // `--revision <rev>`: `injected-deployment.yaml` labels the pod `istio.io/rev: <rev>`
    // (`{{- with .Values.revision }}`), so the revision's injector, and only it, injects
    // the gateway.
    add(
        &mut d,
        "/spec/template/metadata/labels/istio.io~1rev",
        json!(cloud.revision),
    );
    // Deliberate: no bookkeeping labels on the pod either. (Istio's current chart also
    // sets `service.istio.io/canonical-name`/`-revision` there; the `gateway` injection
    // template derives them from `app` when absent.)
    for label in [
        "chart",
        "heritage",
        "install.operator.istio.io~1owning-resource",
        "operator.istio.io~1component",
        "release",
    ] {
        remove(&mut d, &format!("/spec/template/metadata/labels/{label}"));
    }
    // Deliberate: Kubernetes' default rolling update (25%/25%). With one replica it does
    // what the chart's 100%/25% does: one new pod first, none stopped before it is ready.
    remove(&mut d, "/spec/strategy");
    // Equivalent: a node affinity with both terms null is no affinity.
    remove(&mut d, "/spec/template/spec/affinity");
    // Deliberate: no `istio-ingressgateway-certs` volumes. They mount optional Secrets for
    // file-based gateway certificates; the east-west gateway passes TLS through and
    // gateways read certificates through SDS (the Role below).
    remove(&mut d, "/spec/template/spec/volumes");
    remove(&mut d, "/spec/template/spec/containers/0/volumeMounts");
    assert_shape(
        &format!("{cluster}: east-west Deployment"),
        &at("deployment.apps/istio-eastwestgateway.yaml"),
        &d,
    );

    for (upstream_text, rel) in [
        (
            EAST_WEST_ROLE,
            "role.rbac.authorization.k8s.io/istio-eastwestgateway-sds.yaml",
        ),
        (
            EAST_WEST_ROLE_BINDING,
            "rolebinding.rbac.authorization.k8s.io/istio-eastwestgateway-sds.yaml",
        ),
    ] {
        let mut want = upstream(upstream_text);
        east_west_metadata(&mut want, cloud, network);
        assert_shape(&format!("{cluster}: {rel}"), &at(rel), &want);
    }

    let mut s = upstream(EAST_WEST_SERVICE);
    east_west_metadata(&mut s, cloud, network);
    // Equivalent: `annotations: null` is no annotations.
    remove(&mut s, "/metadata/annotations");
    replace(
        &mut s,
        "/spec/selector/topology.istio.io~1network",
        json!(network),
    );
    assert_shape(
        &format!("{cluster}: east-west Service"),
        &at("service/istio-eastwestgateway.yaml"),
        &s,
    );
}

/// `samples/multicluster/expose-services.yaml` (the Sail Operator's copy is the same, at
/// networking.istio.io/v1alpha3).
const CROSS_NETWORK_GATEWAY: &str = r#"
apiVersion: networking.istio.io/v1
kind: Gateway
metadata:
  name: cross-network-gateway
spec:
  selector:
    istio: eastwestgateway
  servers:
    - port:
        number: 15443
        name: tls
        protocol: TLS
      tls:
        mode: AUTO_PASSTHROUGH
      hosts:
        - "*.local"
"#;

/// The Istio objects dcm adds to a cloud's namespace: namespaced (Istio's docs apply the
/// samples with `-n istio-system`) and labelled with the cloud and its revision, so only
/// this cloud's istiod reads them.
fn cloud_object_metadata(v: &mut Value, cloud: &Cloud<'_>) {
    add(v, "/metadata/namespace", json!(cloud.namespace));
    add(
        v,
        "/metadata/labels",
        json!({ "dcm.io/logical-cloud": cloud.name, "istio.io/rev": cloud.revision }),
    );
}

fn check_cross_network_gateway(p: &Project, cluster: &str, cloud: &Cloud<'_>, suffix: &str) {
    let mut want = upstream(CROSS_NETWORK_GATEWAY);
    cloud_object_metadata(&mut want, cloud);
    // Deliberate: the cloud's names `<svc>.<ns>.<suffix>` pass through as well.
    want["spec"]["servers"][0]["hosts"]
        .as_array_mut()
        .unwrap()
        .push(json!(format!("*.{suffix}")));
    assert_shape(
        &format!("{cluster}: cross-network-gateway"),
        &written(
            p,
            &format!(
                "{cluster}/{}/gateway.networking.istio.io/cross-network-gateway.yaml",
                cloud.namespace
            ),
        ),
        &want,
    );
}

/// `samples/multicluster/expose-istiod-rev.yaml.tmpl` (its Gateway is `expose-istiod.yaml`'s,
/// and the Sail Operator's `expose-istiod.yaml` is the latter at v1alpha3), with
/// `{{.Revision}}` left in for the revision.
const EXPOSE_ISTIOD_REV: &str = r#"
apiVersion: networking.istio.io/v1
kind: Gateway
metadata:
  name: istiod-gateway
spec:
  selector:
    istio: eastwestgateway
  servers:
    - port:
        name: tls-istiod
        number: 15012
        protocol: tls
      tls:
        mode: PASSTHROUGH
      hosts:
        - "*"
    - port:
        name: tls-istiodwebhook
        number: 15017
        protocol: tls
      tls:
        mode: PASSTHROUGH
      hosts:
        - "*"
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: istiod-vs-{{.Revision}}
spec:
  hosts:
  - "*"
  gateways:
  - istiod-gateway
  tls:
  - match:
    - port: 15012
      sniHosts:
      - "istiod-{{.Revision}}.istio-system.svc"
      - "istiod-{{.Revision}}.istio-system.svc.cluster.local"
    route:
    - destination:
        host: istiod-{{.Revision}}.istio-system.svc.cluster.local
        port:
          number: 15012
  - match:
    - port: 15017
      sniHosts:
      - "istiod-{{.Revision}}.istio-system.svc"
      - "istiod-{{.Revision}}.istio-system.svc.cluster.local"
    route:
    - destination:
        host: istiod-{{.Revision}}.istio-system.svc.cluster.local
        port:
          number: 443
"#;

/// `istiod_service` is the name of istiod's Service: `istiod-<rev>` (Istio's
/// `istio-discovery/templates/service.yaml`: `istiod{{- if not (eq .Values.revision "") }}
/// -{{ .Values.revision }}{{- end }}`).
fn check_expose_istiod(p: &Project, cluster: &str, cloud: &Cloud<'_>, istiod_service: &str) {
    let mut docs = EXPOSE_ISTIOD_REV.split("\n---\n");
    let mut gateway = upstream(docs.next().unwrap());
    cloud_object_metadata(&mut gateway, cloud);
    assert_shape(
        &format!("{cluster}: istiod-gateway"),
        &written(
            p,
            &format!(
                "{cluster}/{}/gateway.networking.istio.io/istiod-gateway.yaml",
                cloud.namespace
            ),
        ),
        &gateway,
    );

    // The template's parameter, then dcm's differences: istiod runs in the cloud's
    // namespace, so its names there are the ones passed through (as the template does for
    // istio-system).
    let text = docs
        .next()
        .unwrap()
        .replace("{{.Revision}}", cloud.revision)
        .replace(
            &format!("istiod-{}.istio-system.", cloud.revision),
            &format!("{istiod_service}.{}.", cloud.namespace),
        );
    let mut vs = upstream(&text);
    cloud_object_metadata(&mut vs, cloud);
    assert_shape(
        &format!("{cluster}: istiod-vs"),
        &written(
            p,
            &format!(
                "{cluster}/{}/virtualservice.networking.istio.io/istiod-vs-{}.yaml",
                cloud.namespace, cloud.revision
            ),
        ),
        &vs,
    );
}

/// `istioctl create-remote-secret --name <cluster>` output, as `remote_secret_test.go`'s
/// `TestCreateRemoteSecrets` expects it (`--namespace istio-system-test` there; the flag's
/// default is istio-system), for cluster `{cluster}`. istioctl 1.24 to 1.27 also wrote
/// `preferences: {}` in the kubeconfig (client-go's encoder then), 1.28 and later do not.
const REMOTE_SECRET: &str = r#"
apiVersion: v1
kind: Secret
metadata:
  annotations:
    networking.istio.io/cluster: {cluster}
  labels:
    istio/multiCluster: "true"
  name: istio-remote-secret-{cluster}
  namespace: istio-system-test
stringData:
  {cluster}: |
    apiVersion: v1
    clusters:
    - cluster:
        certificate-authority-data: Y2FEYXRh
        server: server
      name: {cluster}
    contexts:
    - context:
        cluster: {cluster}
        user: {cluster}
      name: {cluster}
    current-context: {cluster}
    kind: Config
    users:
    - name: {cluster}
      user:
        token: token
"#;

/// The remote secret for `remote` in `holder`: the token, server and API CA are the remote
/// cluster's (the example's `token_file`, `api_server` and `ca_file`).
fn check_remote_secret(p: &Project, holder: &str, remote: &str, cloud: &Cloud<'_>, server: &str) {
    let got = written(
        p,
        &format!(
            "{holder}/{}/secret/istio-remote-secret-{remote}.yaml",
            cloud.namespace
        ),
    );
    let mut want = upstream(&REMOTE_SECRET.replace("{cluster}", remote));

    // The kubeconfig, field by field: the sample's with the remote's credentials.
    let mut kubeconfig = upstream(want["stringData"][remote].as_str().unwrap());
    let ca = base64(
        p.read(&format!("certs/remotes/{remote}-api-ca.pem"))
            .as_bytes(),
    );
    replace(
        &mut kubeconfig,
        "/clusters/0/cluster/certificate-authority-data",
        json!(ca),
    );
    replace(&mut kubeconfig, "/clusters/0/cluster/server", json!(server));
    let token = p.read(&format!("certs/remotes/{remote}.token"));
    replace(&mut kubeconfig, "/users/0/user/token", json!(token.trim()));
    let text = got["data"][remote]
        .as_str()
        .unwrap_or_else(|| panic!("{holder}: no data.{remote} in the remote secret"));
    let got_kubeconfig: Value = serde_yaml_ng::from_slice(&base64_decode(text)).unwrap();
    assert_shape(
        &format!("{holder}: the remote secret's kubeconfig for {remote}"),
        &got_kubeconfig,
        &kubeconfig,
    );

    // The Secret. Its kubeconfig is compared above; here it stands as dcm wrote it.
    // Deliberate: written as the API server stores istioctl's output, `stringData` folded
    // into `data` (base64), which is what a cluster holds and `dcm drift` compares.
    remove(&mut want, "/stringData");
    add(&mut want, "/data", json!({ remote: text }));
    // Deliberate: the cloud's control-plane namespace (`--namespace istio-<cloud>`).
    replace(&mut want, "/metadata/namespace", json!(cloud.namespace));
    // Deliberate: the cloud's label, for dcm's ownership, beside istiod's own.
    add(
        &mut want,
        "/metadata/labels/dcm.io~1logical-cloud",
        json!(cloud.name),
    );
    // Deliberate: the type the API server gives a Secret without one, stated, so a plan
    // against the live object shows no difference.
    add(&mut want, "/type", json!("Opaque"));
    assert_shape(
        &format!("{holder}: istio-remote-secret-{remote}"),
        &got,
        &want,
    );
}

/// The kinds dcm writes in a member's control-plane namespace. The sample's
/// PodDisruptionBudget (`minAvailable: 1`) and HorizontalPodAutoscaler (1 to 5 replicas at
/// 80% CPU) are left out deliberately: dcm manages no scaling, and a budget of one
/// available pod on a single replica blocks every node drain.
fn kinds_in(p: &Project, cluster: &str, cloud: &Cloud<'_>) -> Vec<String> {
    let mut kinds: Vec<String> = p
        .files(&format!("{}/{cluster}/{}", p.out, cloud.namespace))
        .into_iter()
        .map(|f| f.split('/').next().unwrap().to_string())
        .collect();
    kinds.dedup();
    kinds
}

#[test]
fn multi_primary_gateways_and_remote_secrets_are_istios_samples() {
    let p = applied("two-clusters-bookinfo.toml");
    let cloud = Cloud {
        name: "lc1",
        revision: "lc1",
        namespace: "istio-lc1",
    };
    for (cluster, network, other, other_server) in [
        ("cluster1", "net1", "cluster2", "https://192.0.2.21:6443"),
        ("cluster2", "net2", "cluster1", "https://192.0.2.11:6443"),
    ] {
        check_east_west(&p, cluster, &cloud, network);
        check_cross_network_gateway(&p, cluster, &cloud, "lc1");
        check_remote_secret(&p, cluster, other, &cloud, other_server);
        assert_eq!(
            kinds_in(&p, cluster, &cloud),
            [
                "deployment.apps",
                "gateway.networking.istio.io",
                "role.rbac.authorization.k8s.io",
                "rolebinding.rbac.authorization.k8s.io",
                "secret",
                "service",
                "serviceaccount",
            ],
            "{cluster}"
        );
        // Multi-primary: every member runs istiod, none exposes it.
        assert!(!p.exists(&format!(
            "{}/{cluster}/istio-lc1/gateway.networking.istio.io/istiod-gateway.yaml",
            p.out
        )));
    }
}

#[test]
fn primary_remote_gateways_istiod_exposure_and_remote_secrets_are_istios_samples() {
    let p = applied("primary-remote.toml");
    let cloud = Cloud {
        name: "mesh",
        revision: "mesh",
        namespace: "istio-mesh",
    };
    check_east_west(&p, "cluster1", &cloud, "net1");
    check_cross_network_gateway(&p, "cluster1", &cloud, "mesh");
    check_expose_istiod(&p, "cluster1", &cloud, "istiod-mesh");
    check_remote_secret(
        &p,
        "cluster1",
        "cluster2",
        &cloud,
        "https://192.0.2.21:6443",
    );
    check_remote_secret(
        &p,
        "cluster1",
        "cluster3",
        &cloud,
        "https://192.0.2.31:6443",
    );
    // The remotes serve `checkout`, so each has the gateway (its configuration is the
    // primary's: the Gateways live where istiod reads them).
    for remote in ["cluster2", "cluster3"] {
        check_east_west(&p, remote, &cloud, "net1");
        assert_eq!(
            kinds_in(&p, remote, &cloud),
            [
                "deployment.apps",
                "role.rbac.authorization.k8s.io",
                "rolebinding.rbac.authorization.k8s.io",
                "service",
                "serviceaccount",
            ],
            "{remote}"
        );
    }
}

/// The Sail Operator installs the revision named `default` with an empty revision value
/// (sail-operator `pkg/istiovalues/overrides.go`: `if revisionName == v1.DefaultRevision {
/// revisionName = "" }`), so its istiod Service is `istiod`, not `istiod-default`.
#[test]
fn a_cloud_named_default_exposes_sails_istiod_service() {
    let toml = "primary-remote.toml";
    let p = example_project(toml);
    p.edit_all(toml, "logical_clouds.mesh", "logical_clouds.default");
    p.dcm(&["apply", "--auto-approve", "-f", toml]).expect(0);
    let cloud = Cloud {
        name: "default",
        revision: "default",
        namespace: "istio-default",
    };
    check_expose_istiod(&p, "cluster1", &cloud, "istiod");
}

#[test]
fn two_clouds_on_the_same_clusters_each_have_istios_samples_in_their_namespace() {
    let p = applied("two-clouds.toml");
    let members = [
        ("cluster1", "cluster1", "net1", "https://192.0.2.11:6443"),
        ("cluster2", "cluster2", "net1", "https://192.0.2.21:6443"),
        ("cluster3", "cluster3", "net2", "https://192.0.2.31:6443"),
    ];
    for name in ["blue", "green"] {
        let namespace = format!("istio-{name}");
        let cloud = Cloud {
            name,
            revision: name,
            namespace: &namespace,
        };
        for (dir, cluster, network, _) in members {
            check_east_west(&p, dir, &cloud, network);
            check_cross_network_gateway(&p, dir, &cloud, name);
            for (_, other, _, server) in members.iter().filter(|m| m.1 != cluster) {
                check_remote_secret(&p, dir, other, &cloud, server);
            }
        }
    }
}
