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

fn env(var: &str) -> String {
    match std::env::var(var) {
        Ok(v) if !v.trim().is_empty() => v,
        _ => panic!(
            "{var} is not set: start the TLS test servers (scripts/services-tls.sh start) and \
             `source /tmp/liveops-services-tls/env` (plain ones: scripts/services.sh, \
             /tmp/liveops-services/env)"
        ),
    }
}

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

#[cfg(feature = "postgres")]
mod postgres {
    use super::*;

    fn url(params: &str) -> String {
        format!("{}?{params}", env("LIVEOPS_TEST_PG_TLS_URL"))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn verify_full_with_the_ca_passes_the_repository_suite() {
        let ca = env("LIVEOPS_TEST_TLS_CA");
        let repo =
            liveops_sql::PgRepository::open(&url(&format!("sslmode=verify-full&sslrootcert={ca}")))
                .await
                .unwrap();
        repo.migrate().await.unwrap();
        conformance::stores::run_all(&repo).await;
    }

    #[tokio::test]
    async fn require_encrypts_without_checking_the_certificate() {
        let repo = open(&url("sslmode=require")).await.unwrap();
        repo.healthcheck().await.unwrap();
    }

    #[tokio::test]
    async fn another_ca_another_name_or_no_tls_is_refused() {
        let ca = env("LIVEOPS_TEST_TLS_CA");
        let other = env("LIVEOPS_TEST_TLS_OTHER_CA");
        assert_refused(
            &url(&format!("sslmode=verify-full&sslrootcert={other}")),
            &["certificate", "unknownissuer"],
        )
        .await;
        assert_refused(
            &wrong_host(&url(&format!("sslmode=verify-full&sslrootcert={ca}"))),
            &["certificate not valid for name", "notvalidforname"],
        )
        .await;
        // The server takes TLS only (hostssl): a plain session is turned away.
        assert_refused(&url("sslmode=disable"), &["pg_hba.conf", "no encryption"]).await;
    }

    #[tokio::test]
    async fn plain_urls_still_work() {
        // Connect only: the shared plain database may hold other branches' migrations.
        let repo = connect_repository(&env("LIVEOPS_TEST_PG_URL"))
            .await
            .unwrap();
        repo.healthcheck().await.unwrap();
    }
}

#[cfg(feature = "mysql")]
mod mysql {
    use super::*;

    fn url(params: &str) -> String {
        format!("{}?{params}", env("LIVEOPS_TEST_MYSQL_TLS_URL"))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn verify_identity_with_the_ca_passes_the_repository_suite() {
        let ca = env("LIVEOPS_TEST_TLS_CA");
        let repo = liveops_sql::MySqlRepository::open(&url(&format!(
            "ssl-mode=VERIFY_IDENTITY&ssl-ca={ca}"
        )))
        .await
        .unwrap();
        repo.migrate().await.unwrap();
        conformance::stores::run_all(&repo).await;
    }

    #[tokio::test]
    async fn required_encrypts_without_checking_the_certificate() {
        let repo = open(&url("ssl-mode=REQUIRED")).await.unwrap();
        repo.healthcheck().await.unwrap();
    }

    #[tokio::test]
    async fn another_ca_another_name_or_no_tls_is_refused() {
        let ca = env("LIVEOPS_TEST_TLS_CA");
        let other = env("LIVEOPS_TEST_TLS_OTHER_CA");
        assert_refused(
            &url(&format!("ssl-mode=VERIFY_IDENTITY&ssl-ca={other}")),
            &["certificate", "unknownissuer"],
        )
        .await;
        assert_refused(
            &wrong_host(&url(&format!("ssl-mode=VERIFY_IDENTITY&ssl-ca={ca}"))),
            &["certificate not valid for name", "notvalidforname"],
        )
        .await;
        // require_secure_transport: a plain session is turned away.
        assert_refused(
            &url("ssl-mode=DISABLED"),
            &["secure transport", "access denied"],
        )
        .await;
    }

    #[tokio::test]
    async fn plain_urls_still_work() {
        // Connect only: the shared plain database may hold other branches' migrations.
        let repo = connect_repository(&env("LIVEOPS_TEST_MYSQL_URL"))
            .await
            .unwrap();
        repo.healthcheck().await.unwrap();
    }
}
