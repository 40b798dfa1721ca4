//! http-outbound: a request checked against the plugin's allowlist and
//! limits, made by the supervisor.

use prx_ipc::{HostCall, HostReply, HostValue};

use crate::broker::PluginBroker;
use crate::services::http;

impl PluginBroker {
    /// Serves http-outbound for this plugin.
    pub fn with_http(mut self, http: http::PluginHttp) -> Self {
        self.http = Some(http);
        self
    }

    pub(in crate::broker) async fn http(&self, call: HostCall) -> HostReply {
        let Some(http) = &self.http else {
            return self.unavailable(&call);
        };
        let function = call.function();
        let HostCall::HttpRequest {
            method,
            url,
            headers,
            body,
        } = call
        else {
            return HostReply::Trap("not an http call".into());
        };
        let reply = http.request(&method, &url, headers, body).await;
        self.reply(function, reply.map(HostValue::Http))
    }
}
