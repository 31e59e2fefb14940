//! The room over `rediss://`, as a managed Redis needs: a real `redis-server` listening for
//! TLS only (its plain port off), with a certificate from a certificate authority this test
//! makes, and a password. The instances check the server against `store.redis_tls_ca_file`.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use chatdemo::config::Backend;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

use crate::helpers::TestApp;
use crate::redis_server::redis_server_installed;

const PASSWORD: &str = "s3cret-for-the-test";

/// A certificate authority, and a server certificate it signed for 127.0.0.1, as PEM files.
struct Certificates {
    dir: tempfile::TempDir,
}

impl Certificates {
    fn make() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "chatdemo test CA");
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca, ca_key);
        let server_key = KeyPair::generate().unwrap();
        let server = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .unwrap()
            .signed_by(&server_key, &issuer)
            .unwrap();
        let write = |name: &str, pem: String| std::fs::write(dir.path().join(name), pem).unwrap();
        write("ca.pem", ca_cert.pem());
        write("server.pem", server.pem());
        write("server.key", server_key.serialize_pem());
        // Another authority, which did not sign the server's certificate.
        let stranger_key = KeyPair::generate().unwrap();
        let mut stranger = CertificateParams::new(Vec::<String>::new()).unwrap();
        stranger.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        write(
            "stranger.pem",
            stranger.self_signed(&stranger_key).unwrap().pem(),
        );
        Self { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }
}

/// `redis-server` with TLS on a free port of 127.0.0.1 and no plain port; stopped by its
/// PID when dropped.
struct TlsRedis {
    child: Child,
    port: u16,
}

impl TlsRedis {
    async fn start(certs: &Certificates) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("redis-server")
            .args(["--port", "0", "--bind", "127.0.0.1", "--save", ""])
            .args(["--tls-port", &port.to_string()])
            .args(["--tls-cert-file", &certs.path("server.pem")])
            .args(["--tls-key-file", &certs.path("server.key")])
            .args(["--tls-ca-cert-file", &certs.path("ca.pem")])
            .args(["--tls-auth-clients", "no", "--requirepass", PASSWORD])
            .args(["--dir", &certs.path("")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        crate::nginx::wait_listening(port, "redis-server (TLS)", Duration::from_secs(10)).await;
        Self { child, port }
    }

    fn url(&self, password: &str) -> String {
        format!("rediss://:{password}@127.0.0.1:{}/0", self.port)
    }
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn instance(url: String, ca_file: String) -> TestApp {
    TestApp::spawn_with(move |s| {
        s.store.backend = Backend::Redis;
        s.store.redis_url = url;
        s.store.redis_tls_ca_file = Some(ca_file.into());
        s.store.key_prefix = "tls".into();
    })
    .await
}

#[tokio::test]
#[ignore = "needs redis-server; run with --include-ignored"]
async fn two_instances_are_one_room_over_tls_with_a_password() {
    if !redis_server_installed("two_instances_are_one_room_over_tls_with_a_password") {
        return;
    }
    let certs = Certificates::make();
    let redis = TlsRedis::start(&certs).await;
    let a = instance(redis.url(PASSWORD), certs.path("ca.pem")).await;
    let b = instance(redis.url(PASSWORD), certs.path("ca.pem")).await;
    let ann = a.login(Some("Ann")).await;
    let bob = b.login(Some("Bob")).await;
    let cursor = crate::helpers::page_cursor(&bob.page().await);
    let waiting = tokio::spawn(async move { bob.poll_ok(Some(&cursor)).await });
    let said = ann.say_ok("over TLS").await;
    let batch = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("the other instance delivers it")
        .unwrap();
    assert_eq!(batch.messages.len(), 1);
    assert_eq!(batch.messages[0].id, said.id);
    assert_eq!(batch.messages[0].body, "over TLS");
}

#[tokio::test]
#[ignore = "needs redis-server; run with --include-ignored"]
async fn a_server_the_ca_file_did_not_sign_or_a_wrong_password_stops_the_start() {
    if !redis_server_installed(
        "a_server_the_ca_file_did_not_sign_or_a_wrong_password_stops_the_start",
    ) {
        return;
    }
    let certs = Certificates::make();
    let redis = TlsRedis::start(&certs).await;
    let settings = |url: String, ca: String| {
        let mut s = chatdemo::Settings::defaults();
        s.server.port = 0;
        s.security.cookie_secret =
            chatdemo::config::Secret::new(crate::helpers::TEST_SECRET.into());
        s.store.backend = Backend::Redis;
        s.store.redis_url = url;
        s.store.redis_tls_ca_file = Some(ca.into());
        s
    };
    let error =
        chatdemo::Application::build(settings(redis.url(PASSWORD), certs.path("stranger.pem")))
            .await
            .err()
            .expect("a certificate the CA file did not sign is refused");
    assert!(error.to_string().contains("cannot reach Redis"), "{error}");
    assert!(
        !error.to_string().contains(PASSWORD),
        "no password in {error}"
    );
    let error = chatdemo::Application::build(settings(redis.url("wrong"), certs.path("ca.pem")))
        .await
        .err()
        .expect("a wrong password is refused");
    assert!(error.to_string().contains("cannot reach Redis"), "{error}");
    assert!(
        !error.to_string().contains("wrong"),
        "no password in {error}"
    );
    // The same settings with the right ones start: the refusals above were theirs.
    assert!(
        chatdemo::Application::build(settings(redis.url(PASSWORD), certs.path("ca.pem")))
            .await
            .is_ok()
    );
}
