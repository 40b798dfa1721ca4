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
