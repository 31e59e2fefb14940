//! What a request says about where it came from. Behind a reverse proxy the `Host` and the
//! scheme the browser used arrive as `X-Forwarded-Host`/`X-Forwarded-Proto` (or
//! `Forwarded`); anyone can send those headers, so they count only when the peer is one of
//! `server.trusted_proxies`. This is the one place that decides.

use std::net::IpAddr;

use actix_web::http::header;
use actix_web::HttpRequest;

#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<IpAddr>);

impl TrustedProxies {
    pub fn new(proxies: Vec<IpAddr>) -> Self {
        Self(proxies)
    }

    fn trusts(&self, req: &HttpRequest) -> bool {
        req.peer_addr()
            .is_some_and(|peer| self.0.contains(&peer.ip()))
    }

    /// The origin the browser addressed: `scheme://host[:port]`.
    pub fn origin(&self, req: &HttpRequest) -> String {
        if self.trusts(req) {
            let info = req.connection_info();
            return format!("{}://{}", info.scheme(), info.host());
        }
        // Plain HTTP is all this server speaks itself; TLS is a proxy's job.
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| req.uri().authority().map(|a| a.as_str()))
            .unwrap_or("");
        format!("http://{host}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    fn request(peer: &str) -> HttpRequest {
        TestRequest::default()
            .peer_addr(peer.parse().unwrap())
            .insert_header((header::HOST, "inner:8881"))
            .insert_header(("X-Forwarded-Host", "chat.example"))
            .insert_header(("X-Forwarded-Proto", "https"))
            .to_http_request()
    }

    #[test]
    fn forwarded_headers_count_only_from_a_trusted_proxy() {
        let proxies = TrustedProxies::new(vec!["10.0.0.1".parse().unwrap()]);
        assert_eq!(
            proxies.origin(&request("10.0.0.1:5000")),
            "https://chat.example"
        );
        assert_eq!(
            proxies.origin(&request("10.0.0.2:5000")),
            "http://inner:8881"
        );
        assert_eq!(
            TrustedProxies::default().origin(&request("10.0.0.1:5000")),
            "http://inner:8881"
        );
    }
}
