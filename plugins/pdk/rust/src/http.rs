//! `prx:host/http-outbound`: HTTP made by the host on the plugin's behalf
//! (permission `http-outbound`, limited to `http_allowlist`).

use serde::Serialize;
use serde::de::DeserializeOwned;

/// An HTTP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The body as text (invalid UTF-8 replaced).
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Same as [`Response::body_text`].
    pub fn text(&self) -> String {
        self.body_text()
    }

    pub fn json<T: DeserializeOwned>(&self) -> Result<T, String> {
        serde_json::from_slice(&self.body).map_err(|e| e.to_string())
    }

    /// The first header with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Any method (`GET`, `HEAD`, `POST`, `PUT`, `PATCH`, `DELETE`).
pub fn request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Result<Response, String> {
    let headers: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    host_call!(
        wasm: {
            let r = crate::bindings::host::prx::host::http_outbound::request(
                method, url, &headers, body,
            )?;
            Ok(Response {
                status: r.status,
                headers: r.headers,
                body: r.body,
            })
        },
        native: crate::testing::http(method, url, &headers, body),
    )
}

pub fn get(url: &str, headers: &[(&str, &str)]) -> Result<Response, String> {
    request("GET", url, headers, None)
}

/// POSTs `body` as JSON (sets `content-type: application/json`).
pub fn post_json<T: Serialize>(
    url: &str,
    headers: &[(&str, &str)],
    body: &T,
) -> Result<Response, String> {
    let bytes = serde_json::to_vec(body).map_err(|e| e.to_string())?;
    let mut all = vec![("content-type", "application/json")];
    all.extend_from_slice(headers);
    request("POST", url, &all, Some(&bytes))
}
