//! The Istio a file targets: `[istio]` (the release and how the control planes are
//! installed), each cloud's profile, and the trust checks on CA files (every intermediate
//! must lead to its root).
//!
//! What a profile *means* for the objects written is the compiler's business; here the
//! file is only checked against what each profile can run on.

use super::logical_cloud::Ca;
use crate::config::{RawConfig, Spanned};
use crate::diag::{Diagnostic, Location};
use std::fmt;

/// An Istio release, `1.31.0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct IstioVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl IstioVersion {
    /// `1.31.0` or `v1.31.0`.
    pub fn parse(text: &str) -> Option<IstioVersion> {
        let mut parts = text.strip_prefix('v').unwrap_or(text).split('.');
        let mut num = || -> Option<u32> {
            let p = parts.next()?;
            (!p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) && p.len() <= 4)
                .then(|| p.parse().ok())
                .flatten()
        };
        let v = IstioVersion {
            major: num()?,
            minor: num()?,
            patch: num()?,
        };
        parts.next().is_none().then_some(v)
    }

    fn minor_release(&self) -> (u32, u32) {
        (self.major, self.minor)
    }
}

impl fmt::Display for IstioVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// The releases the `current` profile is written for and checked against.
pub const CURRENT_OLDEST: (u32, u32) = (1, 24);
pub const CURRENT_NEWEST: (u32, u32) = (1, 31);
/// The oldest release the Sail Operator (1.31) still installs.
pub const SAIL_OLDEST: (u32, u32) = (1, 29);
/// The last release with istiocoredns, which `legacy-global` needs.
pub const LEGACY_NEWEST: (u32, u32) = (1, 8);
/// The release dcm targets when the file names none.
pub const DEFAULT_VERSION: IstioVersion = IstioVersion {
    major: 1,
    minor: 31,
    patch: 0,
};

/// How a cloud's control planes get installed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Install {
    /// A Sail Operator `Istio` per cloud and cluster (current profile).
    Sail,
    /// An `IstioOperator` per cloud and cluster (legacy-global profile).
    Operator,
    /// Someone else installs the control plane; dcm writes everything else.
    None,
}

/// What the mesh objects are written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// Istio 1.24 and later: Sail, east-west gateways, remote secrets, DNS proxying.
    Current,
    /// The 2019 `.global` recipe (IstioOperator, istiocoredns, stub domains), for
    /// clusters still on Istio 1.8 or older.
    LegacyGlobal,
}

impl Profile {
    pub fn name(self) -> &'static str {
        match self {
            Profile::Current => "current",
            Profile::LegacyGlobal => "legacy-global",
        }
    }
}

/// `[istio]`, with defaults filled in.
#[derive(Debug, Clone)]
pub struct IstioSettings {
    pub version: IstioVersion,
    /// As written; None means each profile's own default.
    pub install: Option<Install>,
    /// Where `version` and `install` are (for messages about a cloud that cannot use them).
    pub version_at: Option<Location>,
    pub install_at: Option<Location>,
}

impl IstioSettings {
    /// How a cloud of `profile` is installed.
    pub fn install_for(&self, profile: Profile) -> Install {
        self.install.unwrap_or(match profile {
            Profile::Current => Install::Sail,
            Profile::LegacyGlobal => Install::Operator,
        })
    }
}

/// Reads `[istio]`.
pub fn build_istio(raw: &RawConfig, diags: &mut Vec<Diagnostic>) -> IstioSettings {
    let src = &raw.source;
    let at = |s: &Spanned<String>| src.locate(s.span.clone().unwrap_or(0..0));
    let mut out = IstioSettings {
        version: DEFAULT_VERSION,
        install: None,
        version_at: None,
        install_at: None,
    };
    let Some(istio) = &raw.istio else {
        return out;
    };
    if let Some(v) = &istio.version {
        out.version_at = Some(at(v));
        match IstioVersion::parse(&v.value) {
            Some(parsed) => out.version = parsed,
            None => diags.push(
                Diagnostic::new(format!(
                    "invalid Istio `version` `{}`: write the release as major.minor.patch, e.g. \"1.31.0\"",
                    v.value
                ))
                .at(at(v)),
            ),
        }
    }
    if let Some(i) = &istio.install {
        out.install_at = Some(at(i));
        out.install = match i.value.as_str() {
            "sail" => Some(Install::Sail),
            "operator" => Some(Install::Operator),
            "none" => Some(Install::None),
            other => {
                let mut d = Diagnostic::new(format!(
                    "unknown `install` `{other}`: must be \"sail\" (the Sail Operator's Istio resource), \"operator\" (an IstioOperator, legacy-global only) or \"none\" (installed by others)"
                ))
                .at(at(i));
                if let Some(m) = crate::diag::did_you_mean(other, ["sail", "operator", "none"]) {
                    d = d.help(format!("did you mean `{m}`?"));
                }
                diags.push(d);
                None
            }
        };
    }
    out
}

/// Checks that a cloud of `profile` can run on the release and install method of `[istio]`.
pub fn check_profile(
    istio: &IstioSettings,
    profile: Profile,
    cloud: &str,
    at: Location,
    diags: &mut Vec<Diagnostic>,
    warnings: &mut Vec<Diagnostic>,
) {
    let v = istio.version;
    let release = v.minor_release();
    let version_note = |d: Diagnostic| match &istio.version_at {
        Some(l) => d.note("the Istio release is set here", Some(l.clone())),
        None => d.note(
            format!("no [istio] version is set, so dcm targets {DEFAULT_VERSION}"),
            None,
        ),
    };
    match profile {
        Profile::Current => {
            if release < CURRENT_OLDEST {
                diags.push(version_note(
                    Diagnostic::new(format!(
                        "logical cloud `{cloud}` uses profile `current`, which needs Istio {}.{} or later, but [istio] version is {v}",
                        CURRENT_OLDEST.0, CURRENT_OLDEST.1
                    ))
                    .at(at.clone())
                    .help("upgrade the clusters' Istio, or use `profile = \"legacy-global\"` for Istio 1.8 or older"),
                ));
            } else if release > CURRENT_NEWEST {
                warnings.push(version_note(Diagnostic::warning(format!(
                    "logical cloud `{cloud}` targets Istio {v}; dcm's output is checked against Istio {}.{}–{}.{}",
                    CURRENT_OLDEST.0, CURRENT_OLDEST.1, CURRENT_NEWEST.0, CURRENT_NEWEST.1
                ))
                .at(at.clone())));
            }
            if istio.install_for(profile) == Install::Sail
                && release >= CURRENT_OLDEST
                && release < SAIL_OLDEST
            {
                let d = Diagnostic::new(format!(
                    "logical cloud `{cloud}` is installed by the Sail Operator, which installs Istio {}.{} and later ({}.{}–{}.{} are end-of-life there), but [istio] version is {v}",
                    SAIL_OLDEST.0, SAIL_OLDEST.1, CURRENT_OLDEST.0, CURRENT_OLDEST.1, SAIL_OLDEST.0, SAIL_OLDEST.1 - 1
                ))
                .help("set [istio] version to 1.29 or later, or `install = \"none\"` when the control plane is installed by other means");
                diags.push(version_note(d.at(at.clone())));
            }
            if istio.install == Some(Install::Operator) {
                let d = Diagnostic::new(format!(
                    "logical cloud `{cloud}` uses profile `current`, but `install = \"operator\"` writes IstioOperator resources, whose in-cluster controller was removed in Istio 1.24"
                ))
                .help("use `install = \"sail\"` (the Sail Operator) or `install = \"none\"`");
                diags.push(match &istio.install_at {
                    Some(l) => d.at(l.clone()),
                    None => d.at(at.clone()),
                });
            }
        }
        Profile::LegacyGlobal => {
            if release > LEGACY_NEWEST {
                diags.push(version_note(
                    Diagnostic::new(format!(
                        "logical cloud `{cloud}` uses profile `legacy-global`, which needs Istio {}.{} or older (istiocoredns was removed in 1.9), but [istio] version is {v}",
                        LEGACY_NEWEST.0, LEGACY_NEWEST.1
                    ))
                    .at(at.clone())
                    .help("remove `profile` to use the current profile, or set [istio] version to the 1.8 (or older) release the clusters run"),
                ));
            }
            if istio.install == Some(Install::Sail) {
                let d = Diagnostic::new(format!(
                    "logical cloud `{cloud}` uses profile `legacy-global`, which the Sail Operator cannot install (it installs Istio 1.24 and later)"
                ))
                .help("use `install = \"operator\"` or `install = \"none\"`");
                diags.push(match &istio.install_at {
                    Some(l) => d.at(l.clone()),
                    None => d.at(at),
                });
            }
        }
    }
}

/// Checks that a CA's certificate leads to its root: each certificate is issued (name and
/// signature) by the next one found in the chain file or the root file, until a root.
pub fn check_chain(ca: &Ca) -> Result<(), String> {
    use x509_parser::pem::Pem;
    let parse_all = |text: &str, what: &str| -> Result<Vec<Vec<u8>>, String> {
        let mut out = Vec::new();
        for pem in Pem::iter_from_buffer(text.as_bytes()) {
            let pem = pem.map_err(|e| format!("{what} is not readable PEM: {e}"))?;
            if pem.label == "CERTIFICATE" {
                out.push(pem.contents);
            }
        }
        Ok(out)
    };
    let roots_der = parse_all(&ca.root_cert, "root_cert")?;
    let chain_der = parse_all(&ca.cert_chain, "cert_chain")?;
    let leaf_der = parse_all(&ca.ca_cert, "ca_cert")?;
    fn parse<'a>(
        der: &'a [u8],
        what: &str,
    ) -> Result<x509_parser::certificate::X509Certificate<'a>, String> {
        x509_parser::parse_x509_certificate(der)
            .map(|(_, c)| c)
            .map_err(|e| format!("{what} holds a certificate that is not X.509: {e}"))
    }
    let roots = roots_der
        .iter()
        .map(|d| parse(d, "root_cert"))
        .collect::<Result<Vec<_>, _>>()?;
    let chain = chain_der
        .iter()
        .map(|d| parse(d, "cert_chain"))
        .collect::<Result<Vec<_>, _>>()?;
    let Some(leaf_der) = leaf_der.first() else {
        return Err("ca_cert holds no certificate".into());
    };
    let mut current = parse(leaf_der, "ca_cert")?;
    for _ in 0..8 {
        let signed_by = |issuer: &x509_parser::certificate::X509Certificate<'_>| {
            issuer.subject() == current.issuer()
                && current.verify_signature(Some(issuer.public_key())).is_ok()
        };
        if roots.iter().any(signed_by) {
            return Ok(());
        }
        let Some(next) = chain
            .iter()
            .find(|c| signed_by(c) && c.subject() != current.subject())
        else {
            return Err(format!(
                "the certificate `{}` is not issued by root_cert (`{}`) nor by any certificate of cert_chain",
                current.subject(),
                roots
                    .iter()
                    .map(|r| r.subject().to_string())
                    .collect::<Vec<_>>()
                    .join("`, `")
            ));
        };
        current = next.clone();
    }
    Err("the chain from ca_cert to root_cert is longer than 8 certificates".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ca(dir: &str) -> Ca {
        let read = |f: &str| {
            std::fs::read_to_string(format!(
                "{}/examples/certs/{dir}/{f}",
                env!("CARGO_MANIFEST_DIR")
            ))
            .unwrap()
        };
        Ca {
            root_cert: read("root-cert.pem"),
            ca_cert: read("ca-cert.pem"),
            ca_key: read("ca-key.pem"),
            cert_chain: read("cert-chain.pem"),
        }
    }

    #[test]
    fn versions_parse_with_or_without_v_and_order_by_release() {
        let v = IstioVersion::parse("v1.31.2").unwrap();
        assert_eq!(v.to_string(), "1.31.2");
        assert!(IstioVersion::parse("1.8.6").unwrap() < IstioVersion::parse("1.24.0").unwrap());
        for bad in ["1.31", "1.31.0.1", "one.2.3", "1..0", "", "1.31.0-rc"] {
            assert!(IstioVersion::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn intermediates_signed_by_their_root_pass() {
        for dir in [
            ".",
            "per-cluster/cluster1",
            "per-cluster/cluster2",
            "other-root/cluster3",
        ] {
            check_chain(&ca(dir)).unwrap_or_else(|e| panic!("{dir}: {e}"));
        }
    }

    #[test]
    fn an_intermediate_under_another_root_is_refused_with_both_names() {
        let mut wrong = ca("per-cluster/cluster1");
        wrong.root_cert = ca("other-root/cluster3").root_cert;
        wrong.cert_chain = wrong.ca_cert.clone();
        let e = check_chain(&wrong).unwrap_err();
        assert!(e.contains("intermediate CA cluster1"), "{e}");
        assert!(e.contains("second mesh"), "{e}");
    }
}
