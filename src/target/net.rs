//! How dcm talks to API servers over the network: time limits, retries with capped
//! exponential backoff and jitter within a total budget, and what a failure means in words
//! (a timeout, a refused connection, which TLS check failed).
//!
//! - Every request is bounded by the request timeout (connecting included; connecting is
//!   also bounded on its own by the connect timeout, which names it). A request that
//!   times out is not retried: a cluster that does not answer fails at once, and the
//!   other clusters go on.
//! - Passing failures (429, 500, 502, 503, 504, a connection dropped or reset) are retried
//!   after a delay that doubles from 250 ms up to 8 s, each delay drawn between its half
//!   and its whole (jitter, so that many clients do not retry in step). A 429 or 503 that
//!   says how long to wait (`Retry-After`; kube does not pass HTTP headers on to its
//!   errors, so this is the `details.retryAfterSeconds` the API server puts in the Status
//!   body alongside the header) waits that long instead.
//! - Retries stop at the end of the retry budget (counted from the first try; the last
//!   retry comes at its end), or at once when the server asks to wait beyond it; the error
//!   then says how many tries were made and over how long.
//! - A 500 is tried at most 4 times (within the budget): it is more often a request the
//!   server cannot handle than a passing failure.
//! - Failures that retrying cannot mend (connection refused, a TLS failure, a name that
//!   does not resolve) are not retried.

use std::error::Error as StdError;
use std::time::Duration;

/// Time limits and the retry budget for requests to API servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetSettings {
    /// How long connecting to an API server may take.
    pub connect_timeout: Duration,
    /// How long one request may take, from sending it to the whole answer.
    pub request_timeout: Duration,
    /// How long an operation may keep retrying passing failures, from its first try.
    pub retry_budget: Duration,
    /// How many reads (LISTs) may be in flight to one cluster at once.
    pub reads_in_flight: usize,
}

impl Default for NetSettings {
    fn default() -> NetSettings {
        NetSettings {
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            retry_budget: Duration::from_secs(60),
            reads_in_flight: 10,
        }
    }
}

const FIRST_DELAY: Duration = Duration::from_millis(250);
const MAX_DELAY: Duration = Duration::from_secs(8);
/// A 500 is more often a request the server cannot handle (a server-side apply of a value
/// of the wrong type) than a passing failure: it is tried this many times at most.
const INTERNAL_ERROR_TRIES: u32 = 4;

/// What went wrong with the last try.
#[derive(Debug)]
pub enum Failure {
    /// The client or the server said no.
    Kube(kube::Error),
    /// No whole answer within the request timeout.
    Timeout(Duration),
}

/// Why an operation failed, after as many tries as it was given.
#[derive(Debug)]
pub struct RetryError {
    pub failure: Failure,
    /// How many tries were made.
    pub tries: u32,
    /// Set when the retries stopped because the budget ran out: how long they went on,
    /// and the budget.
    pub gave_up: Option<(Duration, Duration)>,
}

impl From<kube::Error> for RetryError {
    fn from(e: kube::Error) -> RetryError {
        RetryError {
            failure: Failure::Kube(e),
            tries: 1,
            gave_up: None,
        }
    }
}

impl std::fmt::Display for RetryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&describe(self))
    }
}

impl StdError for RetryError {}

impl RetryError {
    /// The HTTP status the server answered, when it answered.
    pub fn status_code(&self) -> Option<u16> {
        match &self.failure {
            Failure::Kube(kube::Error::Api(s)) => Some(s.code),
            _ => None,
        }
    }

    /// The underlying kube error, when there is one.
    pub fn kube(&self) -> Option<&kube::Error> {
        match &self.failure {
            Failure::Kube(e) => Some(e),
            Failure::Timeout(_) => None,
        }
    }
}

/// A short message for an error: the server's own message for API errors, what failed
/// for a connection, and how long the retries went on when they gave up.
pub fn describe(e: &RetryError) -> String {
    let what = match &e.failure {
        Failure::Timeout(d) => format!(
            "timeout: no answer within {} (--request-timeout)",
            humantime::format_duration(*d)
        ),
        Failure::Kube(k) => describe_kube(k),
    };
    match e.gave_up {
        Some((spent, budget)) => format!(
            "gave up after {} {} over {} (retry budget {}, --retry-budget): {what}",
            e.tries,
            if e.tries == 1 { "try" } else { "tries" },
            humantime::format_duration(round_ms(spent)),
            humantime::format_duration(budget)
        ),
        None => what,
    }
}

fn round_ms(d: Duration) -> Duration {
    Duration::from_millis(d.as_millis().min(u128::from(u64::MAX)) as u64 / 100 * 100)
}

/// A short message for one kube error.
pub fn describe_kube(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => format!("{} ({} {})", s.message, s.code, s.reason),
        kube::Error::HyperError(_) | kube::Error::Service(_) => match transport(e) {
            Transport::Other(m) => format!("connection failed: {m}"),
            t => t.phrase(),
        },
        other => other.to_string(),
    }
}

/// What went wrong below HTTP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    Refused,
    ConnectTimeout,
    Dns(String),
    TlsNotTls,
    TlsUnknownAuthority,
    TlsWrongName,
    TlsExpired,
    Tls(String),
    /// A connection closed or reset mid-request, or anything else (the chain of messages).
    Other(String),
}

impl Transport {
    fn phrase(&self) -> String {
        match self {
            Transport::Refused => "connection refused: nothing listens at the server's address and port (is the API server up, and is the URL right?)".into(),
            Transport::ConnectTimeout => "connect timeout: no connection could be made in time (--connect-timeout); is the address reachable from here?".into(),
            Transport::Dns(m) => format!("the server's host name does not resolve: {m}"),
            Transport::TlsNotTls => "TLS handshake failed: the server does not speak TLS (wrong protocol: is it an http:// server named with https://?)".into(),
            Transport::TlsUnknownAuthority => "TLS handshake failed: the server's certificate is not trusted (self-signed or signed by an unknown authority); set the cluster's certificate-authority(-data) in the kubeconfig".into(),
            Transport::TlsWrongName => "TLS handshake failed: the server's certificate is not valid for the host name in the server URL (name mismatch); use a name the certificate lists, or set tls-server-name in the kubeconfig".into(),
            Transport::TlsExpired => "TLS handshake failed: the server's certificate has expired or is not yet valid".into(),
            Transport::Tls(m) => format!("TLS handshake failed: {m}"),
            Transport::Other(m) => m.clone(),
        }
    }
}

/// The errors below `e`, `e` first; the error an `io::Error` wraps counts as its source.
fn chain<'a>(e: &'a (dyn StdError + 'static)) -> Vec<&'a (dyn StdError + 'static)> {
    let mut out = vec![e];
    let mut cur = e;
    while out.len() < 16 {
        let next = match cur.downcast_ref::<std::io::Error>() {
            Some(io) => io
                .get_ref()
                .map(|inner| inner as &(dyn StdError + 'static))
                .or_else(|| cur.source()),
            None => cur.source(),
        };
        match next {
            Some(n) => {
                out.push(n);
                cur = n;
            }
            None => break,
        }
    }
    out
}

/// Classifies a failure below HTTP by walking its chain of sources: rustls' and io's
/// error kinds first, message text as a last resort.
pub fn transport(e: &kube::Error) -> Transport {
    let links = chain(e);
    for link in &links {
        if let Some(tls) = link.downcast_ref::<rustls::Error>() {
            return classify_tls(tls);
        }
    }
    for link in &links {
        if let Some(io) = link.downcast_ref::<std::io::Error>() {
            match io.kind() {
                std::io::ErrorKind::ConnectionRefused => return Transport::Refused,
                std::io::ErrorKind::TimedOut => return Transport::ConnectTimeout,
                _ => {}
            }
        }
    }
    let text: Vec<String> = links.iter().map(|l| l.to_string()).collect();
    let all = text.join(": ").to_lowercase();
    if all.contains("connection refused") {
        Transport::Refused
    } else if all.contains("invalidcontenttype") || all.contains("corrupt message") {
        Transport::TlsNotTls
    } else if all.contains("unknownissuer") || all.contains("unknown issuer") {
        Transport::TlsUnknownAuthority
    } else if all.contains("notvalidforname") || all.contains("not valid for name") {
        Transport::TlsWrongName
    } else if all.contains("dns error") || all.contains("failed to lookup address") {
        Transport::Dns(text.last().cloned().unwrap_or_default())
    } else if all.contains("timed out") || all.contains("timeout") {
        Transport::ConnectTimeout
    } else {
        let mut deduped: Vec<&str> = Vec::new();
        for t in &text {
            // A wrapper often repeats its source's message.
            if !deduped.iter().any(|d| d.contains(t.as_str())) {
                deduped.push(t);
            }
        }
        Transport::Other(deduped.join(": "))
    }
}

fn classify_tls(e: &rustls::Error) -> Transport {
    use rustls::{CertificateError as C, Error as E};
    match e {
        E::InvalidMessage(_) => Transport::TlsNotTls,
        E::InvalidCertificate(c) => match c {
            C::UnknownIssuer | C::BadSignature => Transport::TlsUnknownAuthority,
            C::NotValidForName | C::NotValidForNameContext { .. } => Transport::TlsWrongName,
            C::Expired
            | C::ExpiredContext { .. }
            | C::NotValidYet
            | C::NotValidYetContext { .. } => Transport::TlsExpired,
            other => Transport::Tls(format!("the server's certificate is not valid: {other:?}")),
        },
        other => Transport::Tls(other.to_string()),
    }
}

/// A server-side apply the server cannot type (a value of the wrong type): a real API
/// server answers it with 500, yet no retry mends it.
pub fn typed_patch_failure(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 500 && s.message.contains("failed to create typed patch object"))
}

/// Whether retrying may mend the failure.
pub fn transient(e: &kube::Error) -> bool {
    if typed_patch_failure(e) {
        return false;
    }
    match e {
        kube::Error::Api(s) => matches!(s.code, 429 | 500 | 502 | 503 | 504),
        kube::Error::HyperError(_) | kube::Error::Service(_) => {
            matches!(transport(e), Transport::Other(_))
        }
        _ => false,
    }
}

/// How long the server asked to wait before trying again, if it did.
fn retry_after(e: &kube::Error) -> Option<Duration> {
    match e {
        kube::Error::Api(s) if matches!(s.code, 429 | 503) => s
            .details
            .as_ref()
            .map(|d| d.retry_after_seconds)
            .filter(|&secs| secs > 0)
            .map(|secs| Duration::from_secs(u64::from(secs))),
        _ => None,
    }
}

/// A number in 0..1 from the operating system's randomness (a clock when it has none).
fn unit_random() -> f64 {
    let bits = getrandom::u64().unwrap_or_else(|_| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407)
    });
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

/// The delay before try `tries + 1`: 250 ms doubled per try, at most 8 s, drawn between
/// its half and its whole.
pub fn backoff(tries: u32, random: f64) -> Duration {
    let exp = FIRST_DELAY.saturating_mul(1u32 << tries.saturating_sub(1).min(16));
    let full = exp.min(MAX_DELAY);
    full / 2 + full.mul_f64(random.clamp(0.0, 1.0) / 2.0)
}

/// Runs `op` (each try bounded by the request timeout) until it succeeds, fails for good,
/// or the retry budget is spent.
pub async fn retry<T, F, Fut>(net: &NetSettings, mut op: F) -> Result<T, RetryError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, kube::Error>>,
{
    let start = tokio::time::Instant::now();
    let mut tries = 0;
    loop {
        tries += 1;
        let e = match tokio::time::timeout(net.request_timeout, op()).await {
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(e)) => e,
            Err(_) => {
                return Err(RetryError {
                    failure: Failure::Timeout(net.request_timeout),
                    tries,
                    gave_up: None,
                })
            }
        };
        if !transient(&e) {
            return Err(RetryError {
                failure: Failure::Kube(e),
                tries,
                gave_up: None,
            });
        }
        // The last retry comes at the end of the budget, unless the server asked to
        // wait beyond it.
        let spent = start.elapsed();
        let remaining = net.retry_budget.saturating_sub(spent);
        let asked = retry_after(&e);
        let internal_error = matches!(&e, kube::Error::Api(s) if s.code == 500);
        if remaining.is_zero()
            || asked.is_some_and(|a| a > remaining)
            || (internal_error && tries >= INTERNAL_ERROR_TRIES)
        {
            return Err(RetryError {
                failure: Failure::Kube(e),
                tries,
                gave_up: Some((spent, net.retry_budget)),
            });
        }
        let delay = asked.unwrap_or_else(|| backoff(tries, unit_random()));
        tokio::time::sleep(delay.min(remaining)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap_with_jitter() {
        assert_eq!(backoff(1, 0.0), Duration::from_millis(125));
        assert_eq!(backoff(1, 1.0), Duration::from_millis(250));
        assert_eq!(backoff(2, 1.0), Duration::from_millis(500));
        assert_eq!(backoff(3, 0.5), Duration::from_millis(750));
        assert_eq!(backoff(10, 1.0), MAX_DELAY);
        assert_eq!(backoff(u32::MAX, 1.0), MAX_DELAY);
        for _ in 0..100 {
            let d = backoff(4, unit_random());
            assert!(
                d >= Duration::from_secs(1) && d <= Duration::from_secs(2),
                "{d:?}"
            );
        }
    }

    fn status(code: u16, retry_after: u32) -> kube::Error {
        kube::Error::Api(Box::new(kube::core::Status {
            code,
            message: "slow down".into(),
            reason: "TooManyRequests".into(),
            details: serde_json::from_value(
                serde_json::json!({ "retryAfterSeconds": retry_after }),
            )
            .ok(),
            ..Default::default()
        }))
    }

    #[tokio::test(start_paused = true)]
    async fn retries_stop_at_the_budget_and_say_so() {
        let net = NetSettings {
            retry_budget: Duration::from_secs(3),
            ..NetSettings::default()
        };
        let mut calls = 0;
        let r: Result<(), _> = retry(&net, || {
            calls += 1;
            async { Err(status(503, 0)) }
        })
        .await;
        let e = r.unwrap_err();
        assert!(e.gave_up.is_some());
        assert_eq!(e.tries, calls);
        assert!(calls >= 3, "{calls}");
        let m = describe(&e);
        assert!(
            m.starts_with(&format!("gave up after {calls} tries")),
            "{m}"
        );
        assert!(m.contains("retry budget 3s"), "{m}");
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_is_honoured() {
        let net = NetSettings::default();
        let start = tokio::time::Instant::now();
        let mut calls = 0;
        let r = retry(&net, || {
            calls += 1;
            let n = calls;
            async move {
                if n <= 2 {
                    Err(status(429, 7))
                } else {
                    Ok(n)
                }
            }
        })
        .await;
        assert_eq!(r.unwrap(), 3);
        assert_eq!(start.elapsed().as_secs(), 14);
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_beyond_the_budget_gives_up_at_once() {
        let net = NetSettings {
            retry_budget: Duration::from_secs(5),
            ..NetSettings::default()
        };
        let r: Result<(), _> = retry(&net, || async { Err(status(429, 30)) }).await;
        let e = r.unwrap_err();
        assert_eq!((e.tries, e.gave_up.map(|g| g.0)), (1, Some(Duration::ZERO)));
        assert!(describe(&e).contains("slow down (429 TooManyRequests)"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_that_gets_no_answer_times_out_once() {
        let net = NetSettings {
            request_timeout: Duration::from_secs(2),
            ..NetSettings::default()
        };
        let r: Result<(), _> = retry(&net, std::future::pending).await;
        let e = r.unwrap_err();
        assert_eq!(e.tries, 1);
        assert!(describe(&e).starts_with("timeout: no answer within 2s"));
    }

    /// A connection error as the client hands it over: a boxed error around an io::Error
    /// around the cause.
    fn connect_error(cause: impl Into<Box<dyn StdError + Send + Sync>>) -> kube::Error {
        #[derive(Debug)]
        struct Wrapper(std::io::Error);
        impl std::fmt::Display for Wrapper {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("client error (Connect)")
            }
        }
        impl StdError for Wrapper {
            fn source(&self) -> Option<&(dyn StdError + 'static)> {
                Some(&self.0)
            }
        }
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, cause);
        kube::Error::Service(Box::new(Wrapper(io)))
    }

    #[test]
    fn tls_failures_are_told_apart() {
        use rustls::{CertificateError as C, Error as E};
        let cases = [
            (
                E::InvalidMessage(rustls::InvalidMessage::InvalidContentType),
                Transport::TlsNotTls,
            ),
            (
                E::InvalidCertificate(C::UnknownIssuer),
                Transport::TlsUnknownAuthority,
            ),
            (
                E::InvalidCertificate(C::NotValidForName),
                Transport::TlsWrongName,
            ),
            (E::InvalidCertificate(C::Expired), Transport::TlsExpired),
        ];
        for (cause, want) in cases {
            let e = connect_error(cause);
            assert_eq!(transport(&e), want);
            assert!(!transient(&e));
            assert!(describe_kube(&e).starts_with("TLS handshake failed: "));
        }
        let refused = kube::Error::Service(Box::new(std::io::Error::from(
            std::io::ErrorKind::ConnectionRefused,
        )));
        assert_eq!(transport(&refused), Transport::Refused);
        assert!(!transient(&refused));
        let reset = connect_error("connection reset by peer");
        assert!(matches!(transport(&reset), Transport::Other(_)));
        assert!(transient(&reset));
        assert!(describe_kube(&reset).contains("connection reset by peer"));
    }
}
