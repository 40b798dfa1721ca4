//! `[permissions] http_allowlist`, parsed: entries and request URLs are
//! both parsed with the `url` crate (the WHATWG rules browsers use) and
//! compared part by part, never as strings.
//!
//! - scheme, host and port must be equal; default ports are made explicit,
//!   hosts are lower-cased, one trailing dot is dropped, and IP literals in
//!   any notation the parser accepts (`0x7f.1`, `2130706433`) become the
//!   address they mean;
//! - an entry with a path allows that path and what is below it, at
//!   segment boundaries, after the request's path is normalized
//!   (`/v2/` allows `/v2` and `/v2/x`, not `/v2x`, and `/v2/../admin` or
//!   `/v2/%2e%2e/admin` are `/admin`);
//! - a path a server could read as holding a `.` or `..` segment that the
//!   URL parser did not see is refused, whatever the list says: behind an
//!   encoded slash or backslash (`/v2/..%2Fadmin`, `/v2/%2E%2E%2Fadmin`,
//!   `/v2/..%5Cadmin`), a path parameter (`/v2/..;/admin`, as Tomcat reads
//!   it) or a second percent-encoding (`/v2/%252e%252e%252fadmin`). Such a
//!   path is never matched on its raw text. An encoded slash alone stays
//!   allowed (`/v2/group%2Fproject`, as GitLab's API names projects): with
//!   no dot segment, however a server decodes it, the path stays below the
//!   entry's;
//! - URLs with a user name or password, and schemes other than http and
//!   https, are refused whatever the list says;
//! - an empty list allows nothing.

use url::{Host, Url};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AllowlistError {
    #[error("http_allowlist entry {entry:?}: {why}")]
    BadEntry { entry: String, why: String },
}

/// Why a URL is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("{url} is not a valid URL: {why}")]
    Invalid { url: String, why: String },
    #[error("{url}: only http and https URLs are allowed")]
    Scheme { url: String },
    #[error("{url}: URLs with a user name or password are refused")]
    Userinfo { url: String },
    #[error("{url} is not in http_allowlist")]
    NotListed { url: String },
    #[error(
        "{url}: the path hides a `.` or `..` segment (behind %2F, %5C, `;` or a second percent-encoding), which a server could resolve outside the allowlisted path"
    )]
    HiddenDotSegment { url: String },
}

/// Rounds of percent-decoding a path is checked through; a path that is
/// still encoded after them is refused.
const MAX_DECODINGS: usize = 4;

/// Whether a server could find a `.` or `..` segment in `path` (as the
/// URL parser left it: plain `.` and `..`, `%2e` forms included, are
/// already resolved) by decoding it once or more, by taking `\` for `/`,
/// or by dropping `;` parameters. Any of these is enough for `..%2F` to
/// climb out of an allowlisted path on some server.
fn hides_dot_segment(path: &str) -> bool {
    let mut text = path.as_bytes().to_vec();
    for _ in 0..=MAX_DECODINGS {
        if text
            .split(|b| *b == b'/' || *b == b'\\')
            .any(is_dot_segment)
        {
            return true;
        }
        let decoded = percent_decode(&text);
        if decoded == text {
            return false;
        }
        text = decoded;
    }
    true
}

/// `.` or `..`, with or without `;` parameters.
fn is_dot_segment(segment: &[u8]) -> bool {
    let name = segment.split(|b| *b == b';').next().unwrap_or_default();
    name == b"." || name == b".."
}

/// One round of percent-decoding; a `%` without two hex digits stays.
fn percent_decode(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut rest = input;
    while let Some((&byte, tail)) = rest.split_first() {
        let hex = |i: usize| tail.get(i).and_then(|h| char::from(*h).to_digit(16));
        match (byte, hex(0), hex(1)) {
            (b'%', Some(high), Some(low)) => {
                out.push((high * 16 + low) as u8);
                rest = tail.get(2..).unwrap_or_default();
            }
            _ => {
                out.push(byte);
                rest = tail;
            }
        }
    }
    out
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Origin {
    scheme: String,
    host: Host<String>,
    port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    origin: Origin,
    /// Path segments that must lead the request's; empty: any path.
    path: Vec<String>,
}

/// A plugin's allowlist.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Allowlist {
    entries: Vec<Entry>,
}

/// Scheme, host and port of an http(s) URL, normalized.
fn origin(url: &Url) -> Option<Origin> {
    let scheme = url.scheme();
    if scheme != "http" && scheme != "https" {
        return None;
    }
    let host = match url.host()? {
        Host::Domain(d) => Host::Domain(d.strip_suffix('.').unwrap_or(d).to_ascii_lowercase()),
        Host::Ipv4(a) => Host::Ipv4(a),
        Host::Ipv6(a) => Host::Ipv6(a),
    };
    Some(Origin {
        scheme: scheme.to_owned(),
        host,
        port: url.port_or_known_default()?,
    })
}

/// Non-empty path segments (the parser has already removed `.` and `..`).
fn segments(url: &Url) -> Vec<String> {
    url.path_segments()
        .map(|s| s.filter(|s| !s.is_empty()).map(str::to_owned).collect())
        .unwrap_or_default()
}

impl Allowlist {
    /// Parses every entry; the first bad one is the error.
    pub fn parse(entries: &[String]) -> Result<Self, AllowlistError> {
        let entries = entries
            .iter()
            .map(|text| {
                let bad = |why: &str| AllowlistError::BadEntry {
                    entry: text.clone(),
                    why: why.into(),
                };
                let url = Url::parse(text)
                    .map_err(|e| bad(&format!("{e}; write it like \"https://api.example.com\"")))?;
                if !url.username().is_empty() || url.password().is_some() {
                    return Err(bad(
                        "a user name or password has no place in an allowlist entry",
                    ));
                }
                if url.query().is_some() || url.fragment().is_some() {
                    return Err(bad(
                        "an entry is an origin and an optional path, without ? or #",
                    ));
                }
                let origin = origin(&url)
                    .ok_or_else(|| bad("only http and https origins can be allowed"))?;
                if hides_dot_segment(url.path()) {
                    return Err(bad(
                        "the path hides a `.` or `..` segment (behind %2F, %5C, `;` or a second percent-encoding); write the path plainly",
                    ));
                }
                Ok(Entry {
                    origin,
                    path: segments(&url),
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { entries })
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The parsed URL when it is allowed.
    pub fn check(&self, url: &str) -> Result<Url, Refusal> {
        let parsed = Url::parse(url).map_err(|e| Refusal::Invalid {
            url: url.into(),
            why: e.to_string(),
        })?;
        self.check_url(&parsed)?;
        Ok(parsed)
    }

    /// The entries of this list that `ceiling` does not cover (an entry
    /// is covered by one with its origin and a leading part of its path),
    /// written out normalized. Empty when this list asks for nothing more.
    pub fn beyond(&self, ceiling: &Allowlist) -> Vec<String> {
        self.entries
            .iter()
            .filter(|e| {
                !ceiling
                    .entries
                    .iter()
                    .any(|c| c.origin == e.origin && e.path.starts_with(&c.path))
            })
            .map(|e| {
                format!(
                    "{}://{}:{}/{}",
                    e.origin.scheme,
                    e.origin.host,
                    e.origin.port,
                    e.path.join("/")
                )
            })
            .collect()
    }

    /// Checks an already parsed URL (a redirect's target).
    pub fn check_url(&self, url: &Url) -> Result<(), Refusal> {
        let shown = url.as_str().to_owned();
        if !url.username().is_empty() || url.password().is_some() {
            return Err(Refusal::Userinfo { url: shown });
        }
        let Some(origin) = origin(url) else {
            return Err(Refusal::Scheme { url: shown });
        };
        // Before matching: a path that a server could read in two ways is
        // not matched on either.
        if hides_dot_segment(url.path()) {
            return Err(Refusal::HiddenDotSegment { url: shown });
        }
        let path = segments(url);
        let listed = self
            .entries
            .iter()
            .any(|e| e.origin == origin && path.starts_with(&e.path));
        if listed {
            Ok(())
        } else {
            Err(Refusal::NotListed { url: shown })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(entries: &[&str]) -> Allowlist {
        Allowlist::parse(&entries.iter().map(|e| e.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn a_list_within_the_operators_ceiling_asks_for_nothing_beyond_it() {
        let ceiling = list(&["https://api.example.com/v2", "http://10.0.0.1:8080"]);
        assert!(
            list(&[
                "https://API.example.com:443/v2/forecast",
                "http://10.0.0.1:8080/x"
            ])
            .beyond(&ceiling)
            .is_empty()
        );
        assert_eq!(
            list(&[
                "https://api.example.com/v3",
                "https://api.example.com",
                "http://10.0.0.1"
            ])
            .beyond(&ceiling),
            [
                "https://api.example.com:443/v3",
                "https://api.example.com:443/",
                "http://10.0.0.1:80/"
            ]
        );
    }

    #[test]
    fn origins_match_exactly_with_default_ports_explicit() {
        let l = list(&["https://api.example.com"]);
        for ok in [
            "https://api.example.com",
            "https://api.example.com/",
            "https://api.example.com:443/any/path?q=1#f",
            "https://API.Example.COM/x",
            "https://api.example.com./x",
        ] {
            assert!(l.check(ok).is_ok(), "{ok} was refused");
        }
        for bad in [
            "http://api.example.com/",
            "https://api.example.com:8443/",
            "https://api.example.com.evil.net/",
            "https://evil-api.example.com/",
            "https://xapi.example.com/",
            "https://example.com/",
            "https://api.example.co/",
        ] {
            assert!(
                matches!(l.check(bad), Err(Refusal::NotListed { .. })),
                "{bad} was allowed"
            );
        }
    }

    #[test]
    fn userinfo_and_other_schemes_are_refused_whatever_the_list() {
        let l = list(&["https://allowed.test"]);
        for (url, refusal) in [
            ("https://allowed.test@evil.test/", "user name"),
            ("https://evil.test@allowed.test/", "user name"),
            ("https://user:pw@allowed.test/", "user name"),
            ("file:///etc/passwd", "only http and https"),
            ("ftp://allowed.test/", "only http and https"),
            ("gopher://allowed.test:70/", "only http and https"),
            ("data:text/plain,hi", "only http and https"),
            ("not a url", "not a valid URL"),
        ] {
            let err = l.check(url).unwrap_err();
            assert!(err.to_string().contains(refusal), "{url}: {err}");
        }
    }

    #[test]
    fn paths_match_at_segment_boundaries_after_normalization() {
        let l = list(&["https://api.example.com/v2/"]);
        for ok in [
            "https://api.example.com/v2",
            "https://api.example.com/v2/",
            "https://api.example.com/v2/items/7",
            "https://api.example.com/v2/./items",
            "https://api.example.com/v1/../v2/items",
        ] {
            assert!(l.check(ok).is_ok(), "{ok} was refused");
        }
        for bad in [
            "https://api.example.com/",
            "https://api.example.com/v2x",
            "https://api.example.com/v2x/items",
            "https://api.example.com/v2/../admin",
            "https://api.example.com/v2/%2e%2e/admin",
            "https://api.example.com/v2/%2E%2e/admin",
            "https://api.example.com/v2/.%2e/admin",
            "https://api.example.com/V2/items",
            "https://api.example.com/%76%32/items",
        ] {
            assert!(l.check(bad).is_err(), "{bad} was allowed");
        }
        // Without a trailing slash the entry means the same.
        assert_eq!(list(&["https://api.example.com/v2"]), l);
    }

    /// Finding 10 (d): `..%2F` was matched on its raw text (one segment,
    /// `..%2Fadmin`, below `/v1`), and a server that decodes `%2F` before
    /// resolving dot segments serves `/admin`. Every form that hides a dot
    /// segment is refused; an encoded slash that cannot climb stays allowed.
    #[test]
    fn encoded_dot_segments_cannot_climb_out_of_an_allowlisted_path() {
        let l = list(&["https://api.example.com/v1/"]);
        // Plain and `%2e` dot segments the parser resolves: matched as
        // the path they resolve to, `/admin`.
        for bad in [
            "https://api.example.com/v1/../admin",
            "https://api.example.com/v1/%2e%2e/admin",
            "https://api.example.com/v1/%2E%2E/admin",
        ] {
            assert!(
                matches!(l.check(bad), Err(Refusal::NotListed { .. })),
                "{bad}: {:?}",
                l.check(bad)
            );
        }
        // Dot segments only a server's decoding would find: refused.
        for bad in [
            "https://api.example.com/v1/..%2Fadmin",
            "https://api.example.com/v1/..%2fadmin",
            "https://api.example.com/v1/%2e%2e%2fadmin",
            "https://api.example.com/v1/%2E%2E%2Fadmin",
            "https://api.example.com/v1/.%2E%2Fadmin",
            "https://api.example.com/v1/x/..%2F..%2Fadmin",
            "https://api.example.com/v1/a%2F..%2F..%2Fadmin",
            "https://api.example.com/v1/..%5Cadmin",
            "https://api.example.com/v1/..;/admin",
            "https://api.example.com/v1/..;x=1/admin",
            "https://api.example.com/v1/%252e%252e%252fadmin",
            "https://api.example.com/v1/..%252Fadmin",
            "https://api.example.com/v1/%25252525252e%25252525252e%25252525252fadmin",
            "https://api.example.com/v1/..%2Fadmin?q=1",
        ] {
            let err = l.check(bad).expect_err(bad);
            assert!(
                matches!(err, Refusal::HiddenDotSegment { .. }),
                "{bad}: {err}"
            );
            assert!(
                err.to_string().contains("hides a `.` or `..` segment"),
                "{err}"
            );
        }
        // An encoded slash inside a segment: below the entry's path however
        // it is decoded, so allowed; it cannot forge the entry's own segment.
        for ok in [
            "https://api.example.com/v1/group%2Fproject",
            "https://api.example.com/v1/a%2Fb%5Cc/d",
            "https://api.example.com/v1/file..txt",
            "https://api.example.com/v1/100%25",
            "https://api.example.com/v1/items;color=red",
            "https://api.example.com/v1/x?path=..%2F..%2Fadmin",
        ] {
            assert!(l.check(ok).is_ok(), "{ok}: {:?}", l.check(ok));
        }
        assert!(matches!(
            l.check("https://api.example.com/v1%2Fadmin"),
            Err(Refusal::NotListed { .. })
        ));
        // A whole-origin entry refuses them too (the server behind it may
        // route by path), and so does an entry that would hide one.
        let origin = list(&["https://api.example.com"]);
        assert!(matches!(
            origin.check("https://api.example.com/v1/..%2Fadmin"),
            Err(Refusal::HiddenDotSegment { .. })
        ));
        let err = Allowlist::parse(&["https://api.example.com/v1/..%2F".to_string()])
            .expect_err("an entry hiding `..` was accepted");
        assert!(err.to_string().contains("hides a `.` or `..`"), "{err}");
    }

    #[test]
    fn ip_literals_are_compared_as_addresses() {
        let l = list(&["http://127.0.0.1:8080"]);
        for same in [
            "http://127.0.0.1:8080/",
            "http://0x7f.0.0.1:8080/",
            "http://2130706433:8080/",
            "http://0177.0.0.1:8080/",
        ] {
            assert!(l.check(same).is_ok(), "{same} was refused");
        }
        assert!(l.check("http://127.0.0.2:8080/").is_err());
        assert!(l.check("http://[::1]:8080/").is_err());
        assert!(l.check("http://localhost:8080/").is_err());
    }

    #[test]
    fn an_empty_list_allows_nothing_and_bad_entries_are_refused() {
        let empty = list(&[]);
        assert!(empty.is_empty());
        assert!(empty.check("https://api.example.com/").is_err());
        for (entry, why) in [
            ("api.example.com", "write it like"),
            ("https://user@api.example.com", "user name"),
            ("ftp://files.example.com", "only http and https"),
            ("https://api.example.com/?key=1", "without ? or #"),
        ] {
            let err = Allowlist::parse(&[entry.to_string()]).unwrap_err();
            assert!(err.to_string().contains(why), "{entry}: {err}");
        }
    }
}
