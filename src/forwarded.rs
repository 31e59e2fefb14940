//! Where a request came from: the client's address (for the limits per address) and the
//! site that sent it (for the origin checks). Behind a reverse proxy the client's address,
//! the `Host` and the scheme the browser used arrive as `X-Forwarded-For`,
//! `X-Forwarded-Host` and `X-Forwarded-Proto`; anyone can send those headers, so they count
//! only when the peer is one of `server.trusted_proxies`. This is the one place that
//! decides, and [`Provenance`] the one origin policy, for POSTs and upgrades alike.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

use actix_web::http::header;
use actix_web::HttpRequest;

use crate::config::Origin;
use crate::error::AppError;

/// The proxies in front, and the origins besides this server's own that may send requests.
#[derive(Debug, Clone, Default)]
pub struct Provenance {
    proxies: TrustedProxies,
    allowed: Vec<Origin>,
}

/// A client as the limits per address count it: an IPv4 address, an IPv6 /64, or
/// unknown. Plain data (it is looked up on every request); its text is for the stores'
/// keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientKey {
    V4(Ipv4Addr),
    V6Net([u16; 4]),
    Unknown,
}

impl fmt::Display for ClientKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::V4(v4) => v4.fmt(f),
            Self::V6Net(s) => write!(f, "{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3]),
            Self::Unknown => f.write_str("unknown"),
        }
    }
}

impl Provenance {
    pub fn new(proxies: Vec<IpAddr>, allowed: Vec<Origin>) -> Self {
        Self {
            proxies: TrustedProxies(proxies),
            allowed,
        }
    }

    /// Who a request is from, for limits per client (see [`TrustedProxies::client_ip`]).
    pub fn client_address(&self, req: &HttpRequest) -> ClientKey {
        match self.proxies.client_ip(req) {
            None => ClientKey::Unknown,
            Some(IpAddr::V4(v4)) => ClientKey::V4(v4),
            // IPv6 counts by its /64, which one host usually holds whole.
            Some(IpAddr::V6(v6)) => {
                let s = v6.segments();
                ClientKey::V6Net([s[0], s[1], s[2], s[3]])
            }
        }
    }

    /// The client's own address (see [`TrustedProxies::client_ip`]), an IPv4-mapped IPv6
    /// address as IPv4; `None` when the peer is unknown.
    pub fn client_ip(&self, req: &HttpRequest) -> Option<IpAddr> {
        self.proxies.client_ip(req)
    }

    /// A POST: a page on the same host but another port can read the `_xsrf` cookie
    /// (cookies do not separate ports), so the token alone does not prove the request came
    /// from our page. A browser says where it did: an `Origin` that is neither ours nor
    /// allowlisted, or a `Sec-Fetch-Site` of `cross-site` or `same-site`, is refused.
    /// Without either header (scripts, old clients) the token decides.
    pub fn check_post(&self, req: &HttpRequest) -> Result<(), AppError> {
        let site = req
            .headers()
            .get("sec-fetch-site")
            .and_then(|v| v.to_str().ok());
        if matches!(site, Some("cross-site" | "same-site")) {
            return Err(AppError::Forbidden("cross-site POSTs are not allowed"));
        }
        match origin_header(req) {
            Some(origin) if !self.admits(req, origin) => {
                Err(AppError::Forbidden("cross-origin POSTs are not allowed"))
            }
            _ => Ok(()),
        }
    }

    /// A WebSocket upgrade: browsers send cookies on cross-site handshakes and CORS does
    /// not apply, so the `Origin` is required and must be ours or allowlisted (this is
    /// what stops cross-site WebSocket hijacking). Missing or `null` is refused.
    pub fn check_upgrade(&self, req: &HttpRequest) -> Result<(), AppError> {
        let origin = origin_header(req).ok_or(AppError::Forbidden("Origin header required"))?;
        if self.admits(req, origin) {
            Ok(())
        } else {
            tracing::info!(origin, "socket refused: foreign origin");
            Err(AppError::Forbidden(
                "cross-origin WebSockets are not allowed",
            ))
        }
    }

    /// `origin` is this server's own (scheme, host and port as the browser addressed it)
    /// or on the allowlist.
    fn admits(&self, req: &HttpRequest, origin: &str) -> bool {
        origin.eq_ignore_ascii_case(&self.proxies.origin(req))
            || self
                .allowed
                .iter()
                .any(|a| a.as_str().eq_ignore_ascii_case(origin))
    }
}

fn origin_header(req: &HttpRequest) -> Option<&str> {
    req.headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
}

#[derive(Debug, Clone, Default)]
struct TrustedProxies(Vec<IpAddr>);

impl TrustedProxies {
    fn trusts(&self, req: &HttpRequest) -> bool {
        req.peer_addr()
            .is_some_and(|peer| self.0.contains(&peer.ip()))
    }

    /// Who a request is from: the peer's address, or behind a trusted proxy the nearest
    /// address in `X-Forwarded-For` that is not one of ours (proxies append, so the entries
    /// left of it are the client's own claims).
    fn client_ip(&self, req: &HttpRequest) -> Option<IpAddr> {
        let peer = req.peer_addr()?.ip().to_canonical();
        let mut client = peer;
        if self.0.contains(&peer) {
            let hops = req
                .headers()
                .get_all("x-forwarded-for")
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .map(str::trim)
                .collect::<Vec<_>>();
            for hop in hops.iter().rev() {
                let Ok(ip) = hop.parse::<IpAddr>() else {
                    break;
                };
                client = ip;
                if !self.0.contains(&ip) {
                    break;
                }
            }
        }
        Some(client.to_canonical())
    }

    /// The origin the browser addressed: `scheme://host[:port]`.
    fn origin(&self, req: &HttpRequest) -> String {
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
    fn the_client_address_is_the_peer_or_the_nearest_untrusted_forwarded_hop() {
        let proxies = Provenance::new(
            vec!["10.0.0.1".parse().unwrap(), "10.0.0.9".parse().unwrap()],
            vec![],
        );
        let with = |peer: &str, xff: &str| {
            let req = TestRequest::default()
                .peer_addr(peer.parse().unwrap())
                .insert_header(("X-Forwarded-For", xff))
                .to_http_request();
            proxies.client_address(&req).to_string()
        };
        // An untrusted peer's header is ignored.
        assert_eq!(with("192.0.2.7:1", "203.0.113.5"), "192.0.2.7");
        // Through our proxy: the client it saw, not what the client claimed before it.
        assert_eq!(with("10.0.0.1:1", "1.2.3.4, 203.0.113.5"), "203.0.113.5");
        // Through two of ours.
        assert_eq!(
            with("10.0.0.1:1", "1.2.3.4, 203.0.113.5, 10.0.0.9"),
            "203.0.113.5"
        );
        // A garbled header leaves the nearest good hop.
        assert_eq!(with("10.0.0.1:1", "junk"), "10.0.0.1");
        // IPv6 by /64; v4-mapped as v4.
        assert_eq!(with("[2001:db8:1:2:3:4:5:6]:1", ""), "2001:db8:1:2::/64");
        assert_eq!(with("[::ffff:192.0.2.1]:1", ""), "192.0.2.1");
        let ip = TestRequest::default()
            .peer_addr("[::ffff:127.0.0.1]:1".parse().unwrap())
            .to_http_request();
        assert_eq!(proxies.client_ip(&ip), Some(IpAddr::from([127, 0, 0, 1])));
    }

    #[test]
    fn forwarded_headers_count_only_from_a_trusted_proxy() {
        let proxies = TrustedProxies(vec!["10.0.0.1".parse().unwrap()]);
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
