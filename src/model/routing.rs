//! Routes: how the clients of an exported service choose among its subsets, by request
//! header and by weight (the two-cluster Bookinfo set-up: `end-user: jason` goes 50/50 to
//! v2 and v3 in the other cluster, everyone else stays on the local v1).
//!
//! Every reference is checked here, and so is reachability: in the current profile a
//! subset must be where its service runs (every control plane discovers every member's
//! endpoints); in legacy-global, a subset in another cluster can only be reached through
//! the ServiceEntry dcm generates for that service.

use super::istio::Profile;
use super::logical_cloud::{Cx, ExportedService};
use crate::config::{RawHttpRoute, RawLogicalCloud, RawRoute, Spanned};
use crate::diag::did_you_mean;

/// One `[[logical_clouds.X.routes]]`: a VirtualService for the service in each client
/// cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The exported service (name and namespace).
    pub service: String,
    pub namespace: String,
    /// The clusters whose clients the route applies to.
    pub clusters: Vec<String>,
    pub http: Vec<HttpRule>,
}

/// One rule: requests that match every header go to the destinations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRule {
    pub headers: Vec<HeaderMatch>,
    pub to: Vec<Destination>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderMatch {
    /// Lower case, as Istio requires.
    pub name: String,
    /// `exact`, `prefix` or `regex`: Istio's StringMatch keys.
    pub kind: &'static str,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    pub subset: String,
    /// Percent of the rule's requests; `None` for the only destination of a rule.
    pub weight: Option<u32>,
}

/// Checks and builds every route of a cloud.
pub(super) fn build_routes(
    cx: &mut Cx<'_>,
    lc: &RawLogicalCloud,
    members: &[String],
    services: &[ExportedService],
    profile: Profile,
) -> Vec<Route> {
    let cloud = &lc.name.value;
    // A primary-remote cloud's configuration lives in its primary and serves every member.
    let primary = lc
        .primary
        .as_ref()
        .filter(|_| {
            lc.topology
                .as_ref()
                .is_some_and(|t| t.value == "primary-remote")
        })
        .map(|p| p.value.as_str());
    let primary_remote = primary.is_some();
    let mut out: Vec<Route> = Vec::new();
    for raw in &lc.routes {
        let here = Spanned::new((), raw.span.clone());
        let Some(svc_name) = &raw.service else {
            cx.err(
                &here,
                format!("a route of logical cloud `{cloud}` needs `service`: the exported service it routes (`name.namespace`)"),
            );
            continue;
        };
        let Some(service) = resolve_service(cx, cloud, svc_name, services) else {
            continue;
        };
        let clusters = route_clusters(cx, cloud, raw, members, primary);
        for earlier in out
            .iter()
            .filter(|r| r.service == service.name && r.namespace == service.namespace)
        {
            if let Some(c) = clusters.iter().find(|c| earlier.clusters.contains(c)) {
                cx.err(svc_name, format!("service `{}` has two routes in cluster `{c}`; one VirtualService per service and cluster: merge their rules", service.key()));
                break;
            }
        }
        let mut http = Vec::new();
        if raw.http.is_empty() {
            cx.err(svc_name, format!("the route for `{}` needs at least one rule: `http = [{{ to = [{{ subset = \"...\" }}] }}]`", service.key()));
        }
        let mut catch_all_seen = false;
        for rule in &raw.http {
            let rule_at = Spanned::new((), rule.span.clone());
            if catch_all_seen {
                cx.err(&rule_at, format!("this rule of the route for `{}` is never used: an earlier rule without `headers` takes every request", service.key()));
            }
            http.push(build_rule(
                cx,
                rule,
                service,
                &clusters,
                primary_remote,
                profile,
            ));
            catch_all_seen |= rule.headers.is_empty();
        }
        if !raw.http.is_empty() && !catch_all_seen {
            let last = raw.http.last().map(|r| r.span.clone()).unwrap_or_default();
            cx.err(&Spanned::new((), last), format!("the route for `{}` has no rule for requests that match no header, so they would get 404 from the mesh", service.key()))
                .help = Some("end with a rule without `headers`, e.g. `{ to = [{ subset = \"v1\" }] }`".into());
        }
        out.push(Route {
            service: service.name.clone(),
            namespace: service.namespace.clone(),
            clusters,
            http,
        });
    }
    out
}

/// `reviews.default`, or `reviews` when only one namespace exports that name.
fn resolve_service<'s>(
    cx: &mut Cx<'_>,
    cloud: &str,
    written: &Spanned<String>,
    services: &'s [ExportedService],
) -> Option<&'s ExportedService> {
    if let Some(s) = services.iter().find(|s| s.key() == written.value) {
        return Some(s);
    }
    let by_name: Vec<&ExportedService> = services
        .iter()
        .filter(|s| s.name == written.value)
        .collect();
    match by_name.as_slice() {
        [one] => return Some(one),
        [] => {}
        many => {
            let keys: Vec<String> = many.iter().map(|s| format!("`{}`", s.key())).collect();
            cx.err(
                written,
                format!(
                    "route service `{}` is ambiguous in logical cloud `{cloud}`: it could be {}",
                    written.value,
                    keys.join(" or ")
                ),
            );
            return None;
        }
    }
    let keys: Vec<String> = services.iter().map(ExportedService::key).collect();
    let hint = did_you_mean(&written.value, keys.iter().map(String::as_str));
    let d = cx.err(
        written,
        format!(
            "route service `{}` is not a service of logical cloud `{cloud}`",
            written.value
        ),
    );
    d.help = Some(match hint {
        Some(h) => format!("did you mean `{h}`?"),
        None => "a route needs a service declared in `[[logical_clouds.<name>.services]]`".into(),
    });
    None
}

/// The clusters whose VirtualService carries the route: every member unless `clusters`
/// narrows it, or, in a primary-remote cloud, the primary alone (its configuration applies
/// to the whole mesh).
fn route_clusters(
    cx: &mut Cx<'_>,
    cloud: &str,
    raw: &RawRoute,
    members: &[String],
    primary: Option<&str>,
) -> Vec<String> {
    if let Some(primary) = primary {
        if let Some(list) = &raw.clusters {
            cx.err(list, format!("logical cloud `{cloud}` is primary-remote: its routes are configured once, in the primary, for every member; remove `clusters`"));
        }
        return vec![primary.to_string()];
    }
    let Some(list) = &raw.clusters else {
        return members.to_vec();
    };
    let mut out = Vec::new();
    for c in &list.value {
        if !members.contains(&c.value) {
            cx.err_unknown(
                c,
                format!(
                    "route names cluster `{}`, which is not a member of logical cloud `{cloud}`",
                    c.value
                ),
                members.iter().map(String::as_str),
            );
        } else if out.contains(&c.value) {
            cx.err(c, format!("cluster `{}` is listed twice", c.value));
        } else {
            out.push(c.value.clone());
        }
    }
    out
}

fn build_rule(
    cx: &mut Cx<'_>,
    rule: &RawHttpRoute,
    service: &ExportedService,
    clusters: &[String],
    primary_remote: bool,
    profile: Profile,
) -> HttpRule {
    let rule_at = Spanned::new((), rule.span.clone());
    let mut headers = Vec::new();
    for h in &rule.headers {
        let valid_name = !h.name.value.is_empty()
            && h.name.value.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_!#$%&'*+.^`|~".contains(&b)
            });
        if !valid_name {
            cx.err(&h.name, format!("invalid header name `{}`: Istio matches lower-case header names (letters, digits, '-')", h.name.value));
        }
        let kinds = [
            ("exact", &h.exact),
            ("prefix", &h.prefix),
            ("regex", &h.regex),
        ];
        let given: Vec<(&'static str, &Spanned<String>)> = kinds
            .iter()
            .filter_map(|(k, v)| v.as_ref().map(|v| (*k, v)))
            .collect();
        match given.as_slice() {
            [(kind, value)] => headers.push(HeaderMatch {
                name: h.name.value.clone(),
                kind,
                value: value.value.clone(),
            }),
            _ => {
                cx.err(&h.name, format!("header `{}` needs exactly one of `exact`, `prefix` or `regex`, e.g. `{} = {{ exact = \"jason\" }}`", h.name.value, h.name.value));
            }
        }
    }
    if rule.to.is_empty() {
        cx.err(
            &rule_at,
            format!(
                "a rule of the route for `{}` needs `to`: the subsets requests go to",
                service.key()
            ),
        );
    }
    let weighted = rule.to.len() > 1 || rule.to.iter().any(|d| d.weight.is_some());
    let mut to: Vec<Destination> = Vec::new();
    let mut sum = 0i64;
    for d in &rule.to {
        let d_at = Spanned::new((), d.span.clone());
        let weight = match &d.weight {
            Some(w) if (0..=100).contains(&w.value) => {
                sum += w.value;
                Some(w.value as u32)
            }
            Some(w) => {
                cx.err(
                    w,
                    format!("weight {} is out of range: weights are 0–100", w.value),
                );
                None
            }
            None if weighted => {
                cx.err(
                    &d_at,
                    "a rule with several destinations needs a `weight` on each (they sum to 100)"
                        .into(),
                );
                None
            }
            None => None,
        };
        let Some(subset) = &d.subset else {
            cx.err(&d_at, "a destination needs `subset`".into());
            continue;
        };
        let Some(found) = service.subsets.iter().find(|s| s.name == subset.value) else {
            let hint = did_you_mean(
                &subset.value,
                service.subsets.iter().map(|s| s.name.as_str()),
            );
            let d = cx.err(
                subset,
                format!(
                    "service `{}` has no subset `{}`",
                    service.key(),
                    subset.value
                ),
            );
            d.help = Some(match hint {
                Some(h) => format!("did you mean `{h}`?"),
                None if service.subsets.is_empty() => format!("declare it in the service: `subsets = [{{ name = \"{}\", cluster = \"...\", labels = {{ version = \"...\" }} }}]`", subset.value),
                None => format!(
                    "its subsets are {}",
                    service
                        .subsets
                        .iter()
                        .map(|s| format!("`{}`", s.name))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
            continue;
        };
        if to.iter().any(|t| t.subset == found.name) {
            cx.err(
                subset,
                format!("subset `{}` appears twice in one rule", found.name),
            );
        }
        match profile {
            // Every control plane discovers every member's endpoints: a subset is
            // reachable from everywhere, as long as the service runs where it is.
            Profile::Current => {
                if !service.clusters.contains(&found.cluster) {
                    cx.err(subset, format!("subset `{}` is in cluster `{}`, where `{}` does not run (its `clusters` are {})", found.name, found.cluster, service.key(), quoted(&service.clusters)))
                        .help = Some(format!("add `{}` to the service's `clusters`", found.cluster));
                }
            }
            Profile::LegacyGlobal if !primary_remote => {
                check_reachable(cx, subset, service, &found.cluster, clusters);
            }
            Profile::LegacyGlobal => {}
        }
        to.push(Destination {
            subset: found.name.clone(),
            weight,
        });
    }
    if weighted && sum != 100 && rule.to.iter().all(|d| d.weight.is_some()) {
        cx.err(
            &rule_at,
            format!("the weights of this rule sum to {sum}; they must sum to 100"),
        );
    }
    HttpRule { headers, to }
}

/// A client in cluster C reaches a subset in another cluster S only through the
/// ServiceEntry dcm puts in C: S must serve the service (be in its `clusters`), and C must
/// not (dcm puts ServiceEntries only where a service does not run).
fn check_reachable(
    cx: &mut Cx<'_>,
    at: &Spanned<String>,
    service: &ExportedService,
    subset_cluster: &str,
    clients: &[String],
) {
    for client in clients.iter().filter(|c| *c != subset_cluster) {
        if !service.clusters.iter().any(|c| c == subset_cluster) {
            cx.err(at, format!("clients in cluster `{client}` cannot reach subset `{}`: it is in cluster `{subset_cluster}`, which does not export `{}` (its `clusters` are {})", at.value, service.key(), quoted(&service.clusters)))
                .help = Some(format!("add `{subset_cluster}` to the service's `clusters`, or limit the route with `clusters = [\"{subset_cluster}\"]`"));
            return;
        }
        if service.clusters.contains(client) {
            cx.err(at, format!("clients in cluster `{client}` cannot reach subset `{}` in cluster `{subset_cluster}`: `{client}` runs `{}` itself, so it has no ServiceEntry for the other clusters", at.value, service.key()))
                .help = Some(format!("limit the route to the clusters that do not run it, e.g. `clusters = [...]` without `{client}`"));
            return;
        }
    }
}

fn quoted(list: &[String]) -> String {
    list.iter()
        .map(|c| format!("`{c}`"))
        .collect::<Vec<_>>()
        .join(", ")
}
