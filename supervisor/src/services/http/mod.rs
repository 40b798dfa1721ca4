//! `prx:host/http-outbound`: requests made by the supervisor, with
//! reqwest, on a plugin's behalf. Workers have no network at all; this is
//! the only place the allowlist is decided.
//!
//! A request goes out only when:
//!
//! - its URL passes the plugin's [`Allowlist`] (and so does every redirect
//!   hop, checked by a custom redirect policy before it is followed);
//! - every address it connects to is outside the ranges plugins may not
//!   reach (loopback, private, link-local with the cloud metadata address,
//!   CGNAT, unique-local, unspecified, multicast, IPv4-mapped forms of
//!   these, and the IPv6 ranges that carry an IPv4 address to a gateway:
//!   NAT64, 6to4, Teredo), unless the operator allowed a range. Names are
//!   resolved by a resolver of ours that drops such addresses, so a name
//!   that changes its answer between check and connect (DNS rebinding)
//!   gains nothing; IP literals are checked before the request;
//! - the plugin has made fewer than `max_http_requests` in this
//!   invocation.
//!
//! Proxies from the environment are ignored. The response body is read
//! in chunks and cut at the cap; bodies are passed on as sent (no
//! decompression), so a compressed bomb stays its compressed size.

pub mod allowlist;

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ipnet::IpNet;
use prx_ipc::HttpResponse;
use url::{Host, Url};

pub use allowlist::{Allowlist, Refusal};

/// Methods a plugin may use.
pub const METHODS: [&str; 6] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"];
/// Redirect hops followed at most.
const MAX_REDIRECTS: usize = 10;

/// Headers the supervisor sets itself: `Host` would send the request to
/// another site on the allowlisted server (a shared host or CDN), and the
/// others control the connection or the framing of the body.
const RESERVED_HEADERS: [&str; 11] = [
    "host",
    "connection",
    "content-length",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "keep-alive",
    "proxy-authorization",
    "proxy-connection",
    "expect",
];

/// A plugin's request header the supervisor refuses, if any.
fn reserved_header(headers: &[(String, String)]) -> Option<&str> {
    headers.iter().map(|(name, _)| name.as_str()).find(|name| {
        RESERVED_HEADERS
            .iter()
            .any(|r| r.eq_ignore_ascii_case(name.trim()))
    })
}

/// The operator's http settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpPolicy {
    /// Ranges plugins may reach although they are otherwise refused
    /// (tests allow loopback).
    pub allowed_ranges: Vec<IpNet>,
    /// Largest response body passed to a plugin.
    pub max_body: u64,
    /// Longest a request may take, the invocation's remaining time
    /// permitting.
    pub timeout: Duration,
}

impl Default for HttpPolicy {
    fn default() -> Self {
        Self {
            allowed_ranges: Vec::new(),
            max_body: 4 << 20,
            timeout: Duration::from_secs(30),
        }
    }
}

/// The range an address falls in that plugins may not reach, if any.
pub fn forbidden_range(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            if v4.is_loopback() {
                Some("loopback")
            } else if v4.is_private() {
                Some("private")
            } else if v4.is_link_local() {
                Some("link-local (cloud metadata)")
            } else if a == 100 && (64..128).contains(&b) {
                Some("shared address space (CGNAT)")
            } else if v4.is_unspecified() || a == 0 {
                Some("unspecified")
            } else if v4.is_broadcast() || v4.is_multicast() {
                Some("broadcast or multicast")
            } else {
                None
            }
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return forbidden_range(IpAddr::V4(v4));
            }
            let s = v6.segments();
            let first = s[0];
            if v6.is_loopback() {
                Some("loopback")
            } else if v6.is_unspecified() {
                Some("unspecified")
            } else if first & 0xfe00 == 0xfc00 {
                Some("unique-local")
            } else if first & 0xffc0 == 0xfe80 {
                Some("link-local")
            } else if v6.is_multicast() {
                Some("multicast")
            } else {
                embeds_ipv4(&s)
            }
        }
    }
}

/// IPv6 ranges whose addresses carry an IPv4 address for a gateway or
/// relay to reach: through one, `64:ff9b::7f00:1` is 127.0.0.1 and
/// `2002:a9fe:a9fe::1` is 169.254.169.254, on the operator's side.
///
/// Each range is refused whole, whatever IPv4 address it carries, rather
/// than only when that address is not public. Only the NAT64 well-known
/// prefix (`64:ff9b::/96`) fixes where the IPv4 address sits; in
/// `64:ff9b:1::/48` the operator's gateway picks the layout (RFC 6052
/// allows six), Teredo stores its client's address inverted next to a
/// server's, and 6to4 and Teredo are deprecated relays whose other end
/// the supervisor cannot see. Refusing whole ranges needs no decoding we
/// could get wrong. A public IPv4 address is reached as itself, so the
/// cost falls only on an IPv6-only host behind DNS64: its operator lists
/// `64:ff9b::/96` in `[http] allowed_ranges`, and [`refused`] still
/// checks the IPv4 address inside, so that opens the public IPv4 internet
/// and not the gateway's private side.
///
/// The deprecated IPv4-compatible (`::a.b.c.d`, RFC 4291) and SIIT
/// IPv4-translated (`::ffff:0:a.b.c.d`, RFC 2765) forms are refused for
/// the same reason.
fn embeds_ipv4(s: &[u16; 8]) -> Option<&'static str> {
    match s {
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Some("NAT64 (64:ff9b::/96, embeds an IPv4 address)"),
        [0x64, 0xff9b, 1, ..] => Some("NAT64 local-use (64:ff9b:1::/48, embeds an IPv4 address)"),
        [0x2002, ..] => Some("6to4 (2002::/16, embeds an IPv4 address)"),
        [0x2001, 0, ..] => Some("Teredo (2001::/32, embeds IPv4 addresses)"),
        [0, 0, 0, 0, 0, 0, _, _] => Some("IPv4-compatible (::/96, embeds an IPv4 address)"),
        [0, 0, 0, 0, 0xffff, 0, _, _] => {
            Some("IPv4-translated (::ffff:0:0/96, embeds an IPv4 address)")
        }
        _ => None,
    }
}

/// The IPv4 address a NAT64 well-known-prefix address (`64:ff9b::/96`)
/// stands for.
fn nat64_ipv4(ip: IpAddr) -> Option<std::net::Ipv4Addr> {
    let IpAddr::V6(v6) = ip else {
        return None;
    };
    match v6.octets() {
        [0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0, a, b, c, d] => {
            Some(std::net::Ipv4Addr::new(a, b, c, d))
        }
        _ => None,
    }
}

/// Why `ip` may not be reached under `allowed`, if it may not.
fn refused(ip: IpAddr, allowed: &[IpNet]) -> Option<&'static str> {
    let range = forbidden_range(ip)?;
    let canonical = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    };
    if !allowed.iter().any(|net| net.contains(&canonical)) {
        return Some(range);
    }
    // An allowed NAT64 range (an IPv6-only host behind DNS64) reaches
    // what the IPv4 address inside it may reach, and no more.
    nat64_ipv4(ip).and_then(|v4| refused(IpAddr::V4(v4), allowed))
}

/// Resolves names and drops the addresses plugins may not reach.
struct GuardedResolver {
    allowed: Arc<Vec<IpNet>>,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allowed = self.allowed.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let mut why = None;
            let usable: Vec<SocketAddr> = found
                .into_iter()
                .filter(|a| match refused(a.ip(), &allowed) {
                    Some(range) => {
                        why = Some((a.ip(), range));
                        false
                    }
                    None => true,
                })
                .collect();
            if usable.is_empty() {
                let message = match why {
                    Some((ip, range)) => {
                        format!("{host} resolves to {ip} ({range}), which plugins may not reach")
                    }
                    None => format!("{host} does not resolve"),
                };
                return Err(message.into());
            }
            Ok(Box::new(usable.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Checks a URL's IP literal (names go through the resolver).
fn check_literal(url: &Url, allowed: &[IpNet]) -> Result<(), String> {
    let ip = match url.host() {
        Some(Host::Ipv4(a)) => IpAddr::V4(a),
        Some(Host::Ipv6(a)) => IpAddr::V6(a),
        _ => return Ok(()),
    };
    match refused(ip, allowed) {
        Some(range) => Err(format!(
            "{url}: {ip} is {range}, which plugins may not reach"
        )),
        None => Ok(()),
    }
}

/// One plugin's http: its allowlist, its client, its request count.
#[derive(Debug)]
pub struct PluginHttp {
    plugin: Arc<str>,
    allowlist: Arc<Allowlist>,
    allowed: Arc<Vec<IpNet>>,
    client: reqwest::Client,
    max_body: u64,
    timeout: Duration,
    max_requests: u32,
    max_execution: Duration,
    made: AtomicU32,
    invocation_started: Mutex<Instant>,
}

impl PluginHttp {
    pub fn new(
        plugin: Arc<str>,
        allowlist: Allowlist,
        policy: &HttpPolicy,
        max_requests: u32,
        max_execution: Duration,
    ) -> Result<Self, String> {
        let allowlist = Arc::new(allowlist);
        let allowed = Arc::new(policy.allowed_ranges.clone());
        let (hop_list, hop_allowed, hop_plugin) =
            (allowlist.clone(), allowed.clone(), plugin.clone());
        let redirects = reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() >= MAX_REDIRECTS {
                return attempt.error(format!("more than {MAX_REDIRECTS} redirects"));
            }
            let hop = attempt.url().clone();
            let checked = hop_list
                .check_url(&hop)
                .map_err(|e| e.to_string())
                .and_then(|()| check_literal(&hop, &hop_allowed));
            match checked {
                Ok(()) => attempt.follow(),
                Err(why) => attempt.error(format!(
                    "plugin `{hop_plugin}`: redirect to {hop} refused ({why})"
                )),
            }
        });
        let client = reqwest::Client::builder()
            .no_proxy()
            .redirect(redirects)
            .dns_resolver(Arc::new(GuardedResolver {
                allowed: allowed.clone(),
            }))
            .connect_timeout(policy.timeout)
            .build()
            .map_err(|e| format!("cannot build the http client: {e}"))?;
        Ok(Self {
            plugin,
            allowlist,
            allowed,
            client,
            max_body: policy.max_body,
            timeout: policy.timeout,
            max_requests,
            max_execution,
            made: AtomicU32::new(0),
            invocation_started: Mutex::new(Instant::now()),
        })
    }

    /// A new invocation begins: the request count starts over, and the
    /// time left is counted from now.
    pub fn begin_invocation(&self) {
        self.made.store(0, Ordering::SeqCst);
        *self
            .invocation_started
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Instant::now();
    }

    /// Makes one request, or says which rule refused it.
    pub async fn request(
        &self,
        method: &str,
        url: &str,
        headers: Vec<(String, String)>,
        body: Option<Vec<u8>>,
    ) -> Result<HttpResponse, String> {
        let plugin = &self.plugin;
        let method = method.to_ascii_uppercase();
        if !METHODS.contains(&method.as_str()) {
            return Err(format!(
                "plugin `{plugin}`: method {method:?} is not one of {}",
                METHODS.join(", ")
            ));
        }
        let parsed = self
            .allowlist
            .check(url)
            .map_err(|e| format!("plugin `{plugin}`: {e}"))?;
        check_literal(&parsed, &self.allowed).map_err(|e| format!("plugin `{plugin}`: {e}"))?;
        if let Some(name) = reserved_header(&headers) {
            return Err(format!(
                "plugin `{plugin}`: header {name:?} is set by the host, not by plugins"
            ));
        }
        let made = self.made.fetch_add(1, Ordering::SeqCst);
        if made >= self.max_requests {
            return Err(format!(
                "plugin `{plugin}`: request {} of this invocation refused: max_http_requests = {}",
                made + 1,
                self.max_requests
            ));
        }
        let started = *self
            .invocation_started
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let left = self.max_execution.saturating_sub(started.elapsed());
        let timeout = self.timeout.min(left).max(Duration::from_millis(1));
        let method = reqwest::Method::from_bytes(method.as_bytes()).map_err(|e| e.to_string())?;
        let mut request = self.client.request(method, parsed.clone()).timeout(timeout);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        if let Some(body) = body {
            request = request.body(body);
        }
        let failed = |e: reqwest::Error| {
            let what = if e.is_timeout() {
                format!("no answer within {} ms", timeout.as_millis())
            } else {
                // The chain names the redirect or resolver refusal.
                let mut text = e.to_string();
                let mut source = std::error::Error::source(&e);
                while let Some(s) = source {
                    text.push_str(": ");
                    text.push_str(&s.to_string());
                    source = s.source();
                }
                text
            };
            format!("plugin `{plugin}`: {parsed}: {what}")
        };
        let mut response = request.send().await.map_err(failed)?;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let too_big = || {
            format!(
                "plugin `{plugin}`: {parsed}: response body larger than {} bytes (the limit)",
                self.max_body
            )
        };
        if response.content_length().is_some_and(|n| n > self.max_body) {
            return Err(too_big());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(failed)? {
            if body.len() as u64 + chunk.len() as u64 > self.max_body {
                return Err(too_big());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(HttpResponse {
            status,
            headers,
            body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_that_would_redirect_or_reframe_a_request_are_refused() {
        let h = |name: &str| {
            vec![
                ("accept".to_owned(), "*/*".to_owned()),
                (name.to_owned(), "x".to_owned()),
            ]
        };
        for name in [
            "Host",
            "host",
            " HOST",
            "Transfer-Encoding",
            "content-length",
            "Connection",
            "Upgrade",
        ] {
            assert!(reserved_header(&h(name)).is_some(), "{name} passed");
        }
        for name in [
            "accept",
            "authorization",
            "x-api-key",
            "content-type",
            "hostname",
        ] {
            assert_eq!(reserved_header(&h(name)), None, "{name} refused");
        }
    }

    #[test]
    fn the_ranges_plugins_may_not_reach() {
        for (ip, range) in [
            ("127.0.0.1", "loopback"),
            ("10.1.2.3", "private"),
            ("172.16.0.1", "private"),
            ("192.168.1.1", "private"),
            ("169.254.169.254", "link-local (cloud metadata)"),
            ("100.64.0.1", "shared address space (CGNAT)"),
            ("0.0.0.0", "unspecified"),
            ("::1", "loopback"),
            ("::", "unspecified"),
            ("fd00::1", "unique-local"),
            ("fe80::1", "link-local"),
            ("::ffff:127.0.0.1", "loopback"),
            ("::ffff:169.254.169.254", "link-local (cloud metadata)"),
        ] {
            assert_eq!(forbidden_range(ip.parse().unwrap()), Some(range), "{ip}");
        }
        for ip in ["93.184.216.34", "1.1.1.1", "2606:4700::1111", "100.128.0.1"] {
            assert_eq!(forbidden_range(ip.parse().unwrap()), None, "{ip}");
        }
        let loopback: Vec<IpNet> = vec!["127.0.0.0/8".parse().unwrap()];
        assert_eq!(refused("127.0.0.1".parse().unwrap(), &loopback), None);
        assert_eq!(
            refused("::ffff:127.0.0.1".parse().unwrap(), &loopback),
            None
        );
        assert_eq!(
            refused("10.0.0.1".parse().unwrap(), &loopback),
            Some("private")
        );
    }

    /// Finding 10 (c): IPv6 addresses that carry an IPv4 address to a
    /// gateway (NAT64, 6to4, Teredo) passed as public, and through the
    /// gateway reach the operator's loopback or the metadata service.
    #[test]
    fn ipv6_ranges_carrying_ipv4_cannot_reach_loopback_or_metadata() {
        for (ip, range) in [
            // NAT64, well-known prefix: 127.0.0.1, 169.254.169.254, and a
            // public address (the whole range is refused).
            ("64:ff9b::127.0.0.1", "NAT64 (64:ff9b::/96"),
            ("64:ff9b::7f00:1", "NAT64 (64:ff9b::/96"),
            ("64:ff9b::169.254.169.254", "NAT64 (64:ff9b::/96"),
            ("64:ff9b::10.0.0.1", "NAT64 (64:ff9b::/96"),
            ("64:ff9b::8.8.8.8", "NAT64 (64:ff9b::/96"),
            // NAT64, local-use: 127.0.0.1 in the /48 layout (bits 48..64,
            // then past the u-octet), 169.254.169.254 in the /96 one.
            ("64:ff9b:1:7f00:0:100::", "NAT64 local-use"),
            ("64:ff9b:1::a9fe:a9fe", "NAT64 local-use"),
            // 6to4: 2002:AABB:CCDD::/48 is IPv4 AA.BB.CC.DD.
            ("2002:7f00:1::1", "6to4"),
            ("2002:a9fe:a9fe::1", "6to4"),
            ("2002:808:808::1", "6to4"),
            // Teredo: server 169.254.169.254, client 127.0.0.1 (stored
            // inverted: 80ff:fffe); and server 127.0.0.1.
            ("2001:0:a9fe:a9fe::80ff:fffe", "Teredo"),
            ("2001:0:7f00:1::", "Teredo"),
            // The deprecated IPv4-compatible and SIIT forms.
            ("::127.0.0.1", "IPv4-compatible"),
            ("::169.254.169.254", "IPv4-compatible"),
            ("::ffff:0:127.0.0.1", "IPv4-translated"),
            ("::ffff:0:169.254.169.254", "IPv4-translated"),
        ] {
            let addr: IpAddr = ip.parse().unwrap();
            let found = forbidden_range(addr);
            assert!(
                found.is_some_and(|r| r.starts_with(range)),
                "{ip}: {found:?}"
            );
            // Allowing the IPv4 address it carries does not open it.
            let v4: Vec<IpNet> = vec!["127.0.0.0/8".parse().unwrap()];
            assert!(refused(addr, &v4).is_some(), "{ip}");
        }
        // As a URL's literal, refused before any connection.
        for url in [
            "http://[64:ff9b::7f00:1]/",
            "http://[64:ff9b::a9fe:a9fe]/latest/meta-data/",
            "http://[2002:a9fe:a9fe::1]/",
        ] {
            let err = check_literal(&Url::parse(url).unwrap(), &[]).unwrap_err();
            assert!(err.contains("plugins may not reach"), "{err}");
        }
        // Neighbouring public ranges stay reachable.
        for ip in [
            "2001:4860:4860::8888",
            "2001:db8::1",
            "2001:1::1",
            "2003::1",
            "64:ff9a::1",
            "64:ff9b:2::1",
            "64:ff9b::1:0:0:1",
        ] {
            assert_eq!(forbidden_range(ip.parse().unwrap()), None, "{ip}");
        }
        // An IPv6-only host behind DNS64 allows the NAT64 range: public
        // IPv4 becomes reachable through it, the gateway's private side not.
        let nat64: Vec<IpNet> = vec!["64:ff9b::/96".parse().unwrap()];
        assert_eq!(refused("64:ff9b::8.8.8.8".parse().unwrap(), &nat64), None);
        assert_eq!(
            refused("64:ff9b::127.0.0.1".parse().unwrap(), &nat64),
            Some("loopback")
        );
        assert_eq!(
            refused("64:ff9b::169.254.169.254".parse().unwrap(), &nat64),
            Some("link-local (cloud metadata)")
        );
        assert_eq!(
            refused("2002:7f00:1::1".parse().unwrap(), &nat64),
            Some("6to4 (2002::/16, embeds an IPv4 address)")
        );
    }
}
