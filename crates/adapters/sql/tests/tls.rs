//! The repository over TLS (rustls) against the TLS-only PostgreSQL and MariaDB of
//! `scripts/services-tls.sh`, whose certificates chain to a test CA and name localhost and
//! 127.0.0.1. Verifying with that CA (`sslmode=verify-full` / `ssl-mode=VERIFY_IDENTITY`) the
//! repository suite passes; `require` encrypts without checking; another CA, or a host name the
//! certificate does not cover (127.0.0.2 reaches the same server), is refused at connect time
//! with an error that says why and holds no password; a plain connection is refused by the server;
//! and the plain servers of `scripts/services.sh` still work in this build.

#![cfg(any(feature = "postgres", feature = "mysql"))]
#![allow(clippy::unwrap_used)] // tests may unwrap

use std::time::{Duration, Instant};

use liveops_core::ports::PortError;
use liveops_sql::{connect_repository, Repository};
use liveops_testkit::conformance;
use liveops_testkit::fixtures::server_env as env;

/// The password in `url` (`scheme://user:password@host...`), to check errors never show it.
fn password(url: &str) -> String {
    let rest = url.split_once("://").unwrap().1;
    let userinfo = rest.split_once('@').unwrap().0;
    userinfo.split_once(':').unwrap().1.to_owned()
}

async fn open(url: &str) -> Result<std::sync::Arc<dyn Repository>, PortError> {
    let repo = connect_repository(url).await?;
    repo.migrate().await?;
    Ok(repo)
}

/// Opening `url` fails within the connect timeout with an error naming `why` and no password.
async fn assert_refused(url: &str, why: &[&str]) {
    let started = Instant::now();
    let err = open(url).await.err().expect("the connection is refused");
    let text = err.to_string();
    assert!(matches!(err, PortError::Unavailable(_)), "{text}");
    let lower = text.to_lowercase();
    assert!(
        why.iter().any(|w| lower.contains(w)),
        "{url}: expected one of {why:?} in: {text}"
    );
    assert!(!text.contains(&password(url)), "password leaked: {text}");
    assert!(started.elapsed() < Duration::from_secs(10), "took too long");
}

/// The same server under a name its certificate does not cover.
fn wrong_host(url: &str) -> String {
    url.replace("127.0.0.1", "127.0.0.2")
}

/// What differs between the two TLS servers: how a URL asks for TLS, and how each turns a
/// plain session away.
struct Server {
    /// The TLS server's URL variable.
    tls: &'static str,
    /// The plain server's URL variable.
    plain: &'static str,
    /// The query that verifies the certificate and its name against the CA file `ca`.
    verify: fn(&str) -> String,
    /// The query that encrypts without checking the certificate.
    require: &'static str,
    /// The query that asks for no encryption, and what the refusal then says.
    disable: (&'static str, &'static [&'static str]),
}

impl Server {
    fn url(&self, params: &str) -> String {
        format!("{}?{params}", env(self.tls))
    }

    /// Verifying against the test CA, the repository suite passes on what `open` opens.
    async fn verified_passes_the_suite<R, F, Fut>(&self, open: F)
    where
        R: Repository,
        F: FnOnce(String) -> Fut,
        Fut: std::future::Future<Output = Result<R, PortError>>,
    {
        let ca = env("LIVEOPS_TEST_TLS_CA");
        let repo = open(self.url(&(self.verify)(&ca))).await.unwrap();
        repo.migrate().await.unwrap();
        conformance::stores::run_all(&repo).await;
    }

    /// Encrypting without checking connects.
    async fn required_connects(&self) {
        let repo = open(&self.url(self.require)).await.unwrap();
        repo.healthcheck().await.unwrap();
    }

    /// Another CA, another name, or no TLS: refused, saying why.
    async fn refuses_the_wrong_ca_name_or_no_tls(&self) {
        let ca = env("LIVEOPS_TEST_TLS_CA");
        let other = env("LIVEOPS_TEST_TLS_OTHER_CA");
        assert_refused(
            &self.url(&(self.verify)(&other)),
            &["certificate", "unknownissuer"],
        )
        .await;
        assert_refused(
            &wrong_host(&self.url(&(self.verify)(&ca))),
            &["certificate not valid for name", "notvalidforname"],
        )
        .await;
        let (disable, why) = self.disable;
        assert_refused(&self.url(disable), why).await;
    }

    /// The plain server still works in this build.
    async fn plain_url_connects(&self) {
        // Connect only: the shared plain database may hold other branches' migrations.
        let repo = connect_repository(&env(self.plain)).await.unwrap();
        repo.healthcheck().await.unwrap();
    }
}

/// The tests of `$server` that need nothing but its [`Server`]: `require` connects, a wrong CA,
/// a wrong name or no TLS is refused, and the plain URL connects.
macro_rules! connection_checks {
    ($server:ident) => {
        #[tokio::test]
        async fn require_encrypts_without_checking_the_certificate() {
            $server.required_connects().await;
        }

        #[tokio::test]
        async fn another_ca_another_name_or_no_tls_is_refused() {
            $server.refuses_the_wrong_ca_name_or_no_tls().await;
        }

        #[tokio::test]
        async fn plain_urls_still_work() {
            $server.plain_url_connects().await;
        }
    };
}

#[cfg(feature = "postgres")]
mod postgres {
    use super::*;

    const PG: Server = Server {
        tls: "LIVEOPS_TEST_PG_TLS_URL",
        plain: "LIVEOPS_TEST_PG_URL",
        verify: |ca| format!("sslmode=verify-full&sslrootcert={ca}"),
        require: "sslmode=require",
        // The server takes TLS only (hostssl): a plain session is turned away.
        disable: ("sslmode=disable", &["pg_hba.conf", "no encryption"]),
    };

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn verify_full_with_the_ca_passes_the_repository_suite() {
        PG.verified_passes_the_suite(
            |url| async move { liveops_sql::PgRepository::open(&url).await },
        )
        .await;
    }

    connection_checks!(PG);
}

#[cfg(feature = "mysql")]
mod mysql {
    use super::*;

    const MY: Server = Server {
        tls: "LIVEOPS_TEST_MYSQL_TLS_URL",
        plain: "LIVEOPS_TEST_MYSQL_URL",
        verify: |ca| format!("ssl-mode=VERIFY_IDENTITY&ssl-ca={ca}"),
        require: "ssl-mode=REQUIRED",
        // require_secure_transport: a plain session is turned away.
        disable: ("ssl-mode=DISABLED", &["secure transport", "access denied"]),
    };

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn verify_identity_with_the_ca_passes_the_repository_suite() {
        MY.verified_passes_the_suite(|url| async move {
            liveops_sql::MySqlRepository::open(&url).await
        })
        .await;
    }

    connection_checks!(MY);
}
