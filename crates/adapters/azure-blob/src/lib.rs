//! [`BlobContainer`]: an Azure Blob Storage container as an [`Archive`], over the Blob service's
//! REST API (reqwest; no SDK). It authenticates with the storage account key (Shared Key) or a
//! SAS token in the container URL, uploads files in blocks of [`BLOCK`] bytes (memory stays
//! bounded whatever the file size) and downloads them streaming to disk.
//!
//! URLs: `https://<account>.blob.core.windows.net/<container>[/<prefix>]` (host style) or
//! `http://127.0.0.1:10000/<account>/<container>[/<prefix>]` (path style: Azurite, the
//! emulator, and any host that is an address or `localhost`).

mod auth;

use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use liveops_core::ports::Archive;
use liveops_core::{PortError, PortResult};
use reqwest::{Method, Url};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Bytes per uploaded block (Put Block): a file is sent in pieces this big, one at a time.
pub const BLOCK: usize = 8 * 1024 * 1024;

/// The Blob service version the requests are written for.
const VERSION: &str = "2021-08-06";

/// How long one request may take (one block, one listing page); a download may take as long as
/// it needs while bytes keep coming, and fails after this long without any.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// Tries per request: a network error or an answer Azure documents as transient (408, 429, 5xx)
/// is retried, after 1, 2 and 4 seconds. Every request here is idempotent (Put Block, Put Block
/// List of the same ids, GET, listing, creating the container).
const ATTEMPTS: u32 = 4;

/// Whether an answer is worth a retry: a timeout, throttling or a server error.
fn transient(status: reqwest::StatusCode) -> bool {
    status == reqwest::StatusCode::REQUEST_TIMEOUT
        || status == reqwest::StatusCode::TOO_MANY_REQUESTS
        || status.is_server_error()
}

/// An Azure Blob container (with an optional name prefix) holding whole files.
pub struct BlobContainer {
    http: reqwest::Client,
    /// [`REQUEST_TIMEOUT`], shorter in tests.
    timeout: Duration,
    /// The wait before the first retry (doubling after each), shorter in tests.
    retry_wait: Duration,
    /// `scheme://host[:port]/[account/]container`, without a trailing slash.
    container_url: String,
    account: String,
    /// Prepended to every object name (`""` or ending with `/`).
    prefix: String,
    auth: auth::Auth,
}

impl std::fmt::Debug for BlobContainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobContainer")
            .field("location", &self.location())
            .finish_non_exhaustive()
    }
}

fn unavailable(what: impl std::fmt::Display) -> PortError {
    PortError::Unavailable(format!("azure blob: {what}"))
}

/// Object names are kept to characters that need no escaping in a URL path.
fn check_name(name: &str) -> PortResult<()> {
    let ok = !name.is_empty()
        && !name.starts_with('/')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/'));
    if ok {
        Ok(())
    } else {
        Err(unavailable(format!("unsupported object name {name:?}")))
    }
}

impl BlobContainer {
    /// The container at `url` (see the crate docs), authenticated with the base64 account `key`
    /// or with the SAS token in the URL's query.
    pub fn new(url: &str, key: Option<&str>) -> PortResult<Self> {
        let parsed = Url::parse(url).map_err(|e| unavailable(format!("bad container URL: {e}")))?;
        let host = parsed
            .host_str()
            .ok_or_else(|| unavailable("the container URL has no host"))?
            .to_owned();
        let mut segments: Vec<String> = parsed
            .path_segments()
            .map(|s| s.filter(|s| !s.is_empty()).map(str::to_owned).collect())
            .unwrap_or_default();
        let path_style = host == "localhost"
            || host.starts_with('[')
            || host.parse::<std::net::IpAddr>().is_ok();
        let account = if path_style {
            if segments.is_empty() {
                return Err(unavailable("a path-style URL names the account first"));
            }
            segments.remove(0)
        } else {
            host.split('.').next().unwrap_or_default().to_owned()
        };
        if segments.is_empty() {
            return Err(unavailable("the URL names no container"));
        }
        let container = segments.remove(0);
        let prefix = if segments.is_empty() {
            String::new()
        } else {
            format!("{}/", segments.join("/"))
        };
        let origin = parsed.origin().ascii_serialization();
        let container_url = if path_style {
            format!("{origin}/{account}/{container}")
        } else {
            format!("{origin}/{container}")
        };
        let auth = match (key, parsed.query()) {
            (Some(key), _) => auth::Auth::SharedKey(
                base64::engine::general_purpose::STANDARD
                    .decode(key.trim())
                    .map_err(|_| unavailable("the account key is not base64"))?,
            ),
            (None, Some(q)) if q.contains("sig=") => auth::Auth::Sas(q.to_owned()),
            (None, _) => return Err(unavailable("no account key and no SAS in the URL")),
        };
        Ok(Self {
            http: Self::client(REQUEST_TIMEOUT)?,
            timeout: REQUEST_TIMEOUT,
            retry_wait: Duration::from_secs(1),
            container_url,
            account,
            prefix,
            auth,
        })
    }

    /// A client whose reads fail after `timeout` without a byte (no deadline on a whole
    /// response: a large download takes as long as it needs).
    fn client(timeout: Duration) -> PortResult<reqwest::Client> {
        reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(timeout)
            .build()
            .map_err(|e| unavailable(e.without_url()))
    }

    /// The same container with `timeout` for a request and a silent read, and `retry_wait`
    /// before the first retry (tests).
    pub fn with_timings(mut self, timeout: Duration, retry_wait: Duration) -> PortResult<Self> {
        self.http = Self::client(timeout)?;
        self.timeout = timeout;
        self.retry_wait = retry_wait;
        Ok(self)
    }

    fn url(&self, name: Option<&str>, query: &[(&str, &str)]) -> PortResult<Url> {
        let mut url = match name {
            Some(n) => format!("{}/{}{n}", self.container_url, self.prefix),
            None => self.container_url.clone(),
        };
        if let auth::Auth::Sas(sas) = &self.auth {
            url = format!("{url}?{sas}");
        }
        let mut url = Url::parse(&url).map_err(unavailable)?;
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        Ok(url)
    }

    /// Sends one signed request, retrying transient failures ([`ATTEMPTS`]); a status other
    /// than 2xx is an error naming Azure's error code. `whole` bounds the whole request by the
    /// timeout; a download's body is bounded only between reads.
    async fn send(
        &self,
        method: Method,
        url: Url,
        body: Option<(bytes::Bytes, &str)>,
        whole: bool,
    ) -> PortResult<reqwest::Response> {
        let mut wait = self.retry_wait;
        let mut attempt = 1;
        loop {
            let error = match self.send_once(&method, &url, body.clone(), whole).await {
                Ok(res) if res.status().is_success() => return Ok(res),
                Ok(res) if !transient(res.status()) => {
                    return Err(self.refused(&method, &url, &res));
                }
                Ok(res) => self.refused(&method, &url, &res),
                // Never the error's URL: it may hold a SAS signature.
                Err(e) => unavailable(format!(
                    "{method} {}: {}",
                    self.location_of(url.path()),
                    e.without_url()
                )),
            };
            if attempt == ATTEMPTS {
                return Err(error);
            }
            tracing::warn!(%error, attempt, "azure blob request failed; retrying");
            metrics::counter!("backup_archive_retries_total").increment(1);
            tokio::time::sleep(wait).await;
            wait *= 2;
            attempt += 1;
        }
    }

    /// One attempt of [`Self::send`].
    async fn send_once(
        &self,
        method: &Method,
        url: &Url,
        body: Option<(bytes::Bytes, &str)>,
        whole: bool,
    ) -> reqwest::Result<reqwest::Response> {
        let date = chrono::Utc::now()
            .format("%a, %d %b %Y %H:%M:%S GMT")
            .to_string();
        let ms: Vec<(String, String)> = vec![
            ("x-ms-date".into(), date),
            ("x-ms-version".into(), VERSION.into()),
        ];
        let (length, content_type) = body.as_ref().map_or((0, ""), |(b, t)| (b.len(), *t));
        let mut req = self.http.request(method.clone(), url.clone());
        if whole {
            req = req.timeout(self.timeout);
        }
        let signed = auth::Signed {
            method,
            url,
            ms: &ms,
            length,
            content_type,
        };
        if let Some(authorization) = self.auth.authorization(&self.account, &signed) {
            req = req.header("authorization", authorization);
        }
        for (k, v) in &ms {
            req = req.header(k.as_str(), v.as_str());
        }
        if let Some((bytes, content_type)) = body {
            if !content_type.is_empty() {
                req = req.header("content-type", content_type);
            }
            req = req.body(bytes);
        } else if method == Method::PUT {
            req = req.header("content-length", "0");
        }
        req.send().await
    }

    /// A non-2xx answer as an error naming the request (never its query) and Azure's code.
    fn refused(&self, method: &Method, url: &Url, res: &reqwest::Response) -> PortError {
        let code = res
            .headers()
            .get("x-ms-error-code")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        unavailable(format!(
            "{method} {} answered {} {code}",
            self.location_of(url.path()),
            res.status()
        ))
    }

    fn location_of(&self, path: &str) -> String {
        // Never the query: it may hold a SAS signature.
        format!(
            "{}{path}",
            Url::parse(&self.container_url)
                .map(|u| u.origin().ascii_serialization())
                .unwrap_or_default()
        )
    }

    /// Creates the container if it does not exist (Terraform creates it in the cloud; tests
    /// against Azurite call this).
    pub async fn create_container(&self) -> PortResult<()> {
        let url = self.url(None, &[("restype", "container")])?;
        match self.send(Method::PUT, url, None, true).await {
            Ok(_) => Ok(()),
            Err(PortError::Unavailable(m)) if m.contains("ContainerAlreadyExists") => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// Reads up to `buf.len()` bytes, fewer only at the end of the file.
async fn fill(file: &mut tokio::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..]).await? {
            0 => break,
            got => n += got,
        }
    }
    Ok(n)
}

#[async_trait]
impl Archive for BlobContainer {
    fn location(&self) -> String {
        format!("{}/{}", self.container_url, self.prefix)
    }

    async fn put_file(&self, name: &str, from: &Path) -> PortResult<u64> {
        check_name(name)?;
        let mut file = tokio::fs::File::open(from)
            .await
            .map_err(|e| unavailable(format!("{}: {e}", from.display())))?;
        let mut buf = vec![0u8; BLOCK];
        let mut ids: Vec<String> = Vec::new();
        let mut sent = 0u64;
        loop {
            let n = fill(&mut file, &mut buf)
                .await
                .map_err(|e| unavailable(format!("{}: {e}", from.display())))?;
            if n == 0 {
                break;
            }
            // Block ids are base64 of equal-length strings.
            let id =
                base64::engine::general_purpose::STANDARD.encode(format!("block-{:08}", ids.len()));
            let url = self.url(Some(name), &[("comp", "block"), ("blockid", &id)])?;
            let block = bytes::Bytes::copy_from_slice(&buf[..n]);
            self.send(Method::PUT, url, Some((block, "")), true).await?;
            ids.push(id);
            sent += n as u64;
        }
        let mut list = String::from("<?xml version=\"1.0\" encoding=\"utf-8\"?><BlockList>");
        for id in &ids {
            list.push_str(&format!("<Latest>{id}</Latest>"));
        }
        list.push_str("</BlockList>");
        let url = self.url(Some(name), &[("comp", "blocklist")])?;
        let list = bytes::Bytes::from(list.into_bytes());
        self.send(Method::PUT, url, Some((list, "application/xml")), true)
            .await?;
        tracing::debug!(name, bytes = sent, blocks = ids.len(), "uploaded");
        Ok(sent)
    }

    async fn get_file(&self, name: &str, to: &Path) -> PortResult<u64> {
        check_name(name)?;
        let url = self.url(Some(name), &[])?;
        let mut res = self.send(Method::GET, url, None, false).await?;
        let expected = res.content_length();
        let io = |e: std::io::Error| unavailable(format!("{}: {e}", to.display()));
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(to)
            .await
            .map_err(io)?;
        let mut got = 0u64;
        while let Some(chunk) = res
            .chunk()
            .await
            .map_err(|e| unavailable(format!("{name}: {}", e.without_url())))?
        {
            file.write_all(&chunk).await.map_err(io)?;
            got += chunk.len() as u64;
        }
        file.sync_all().await.map_err(io)?;
        if expected.is_some_and(|n| n != got) {
            return Err(unavailable(format!(
                "{name}: received {got} of {expected:?} bytes"
            )));
        }
        Ok(got)
    }

    async fn list(&self, prefix: &str) -> PortResult<Vec<String>> {
        let full = format!("{}{prefix}", self.prefix);
        let mut names = Vec::new();
        let mut marker = String::new();
        loop {
            let mut query = vec![
                ("restype", "container"),
                ("comp", "list"),
                ("prefix", full.as_str()),
            ];
            if !marker.is_empty() {
                query.push(("marker", marker.as_str()));
            }
            let url = self.url(None, &query)?;
            let res = self.send(Method::GET, url, None, true).await?;
            let xml = res
                .text()
                .await
                .map_err(|e| unavailable(format!("listing: {}", e.without_url())))?;
            for name in elements(&xml, "Name") {
                if let Some(own) = name.strip_prefix(&self.prefix) {
                    names.push(own.to_owned());
                }
            }
            marker = elements(&xml, "NextMarker")
                .into_iter()
                .next()
                .unwrap_or_default();
            if marker.is_empty() {
                break;
            }
        }
        names.sort();
        Ok(names)
    }
}

/// The text of every `<tag>…</tag>` element of a listing, unescaped (the Blob service's list
/// answers are flat enough for this; object names here never hold markup).
fn elements(xml: &str, tag: &str) -> Vec<String> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find(&open) {
        let after = &rest[start + open.len()..];
        let Some(end) = after.find(&close) else { break };
        out.push(
            after[..end]
                .replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&quot;", "\"")
                .replace("&apos;", "'")
                .replace("&amp;", "&"),
        );
        rest = &after[end + close.len()..];
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const KEY: &str =
        "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

    #[test]
    fn host_and_path_style_urls_name_account_container_and_prefix() {
        // (account, container URL, prefix) of a container URL.
        let parts = |url: &str| {
            let c = BlobContainer::new(url, Some(KEY)).unwrap();
            (c.account, c.container_url, c.prefix)
        };
        assert_eq!(
            parts("https://acct.blob.core.windows.net/backups/prod/eu"),
            (
                "acct".to_owned(),
                "https://acct.blob.core.windows.net/backups".to_owned(),
                "prod/eu/".to_owned()
            )
        );
        assert_eq!(
            parts("http://127.0.0.1:10000/devstoreaccount1/backups"),
            (
                "devstoreaccount1".to_owned(),
                "http://127.0.0.1:10000/devstoreaccount1/backups".to_owned(),
                String::new()
            )
        );
        let sas = BlobContainer::new(
            "https://acct.blob.core.windows.net/backups?sv=2022-11-02&sp=rcwl&sig=abc%3D",
            None,
        )
        .unwrap();
        assert!(!sas.location().contains("sig"), "{}", sas.location());
        for bad in [
            "https://acct.blob.core.windows.net/",
            "http://127.0.0.1:10000/devstoreaccount1",
            "not a url",
        ] {
            assert!(BlobContainer::new(bad, Some(KEY)).is_err(), "{bad}");
        }
        assert!(BlobContainer::new("https://acct.blob.core.windows.net/c", None).is_err());
        assert!(BlobContainer::new("https://acct.blob.core.windows.net/c", Some("%%")).is_err());
    }

    #[test]
    fn listing_elements_are_read_and_unescaped() {
        let xml = "<EnumerationResults><Blobs><Blob><Name>a/b.db</Name></Blob>\
                   <Blob><Name>x&amp;y</Name></Blob></Blobs><NextMarker/></EnumerationResults>";
        assert_eq!(elements(xml, "Name"), vec!["a/b.db", "x&y"]);
        assert!(elements(xml, "NextMarker").is_empty());
    }

    /// A server on loopback that answers each connection with the next script: chunks, each
    /// written after its delay. Returns its address and the request lines it read.
    async fn scripted(
        scripts: Vec<Vec<(u64, &'static str)>>,
    ) -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
        use tokio::io::AsyncBufReadExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = seen.clone();
        tokio::spawn(async move {
            for script in scripts {
                let (stream, _) = listener.accept().await.unwrap();
                let mut stream = tokio::io::BufReader::new(stream);
                let (mut line, mut length) = (String::new(), 0usize);
                let mut first = true;
                loop {
                    line.clear();
                    stream.read_line(&mut line).await.unwrap();
                    if first {
                        log.lock().unwrap().push(line.trim().to_owned());
                        first = false;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap();
                    }
                    if line == "\r\n" {
                        break;
                    }
                }
                let mut body = vec![0u8; length];
                stream.read_exact(&mut body).await.unwrap();
                for (delay, chunk) in script {
                    tokio::time::sleep(Duration::from_millis(delay)).await;
                    if stream.get_mut().write_all(chunk.as_bytes()).await.is_err() {
                        break;
                    }
                }
            }
        });
        (format!("http://{addr}/devstoreaccount1/c"), seen)
    }

    fn container(url: &str, timeout_ms: u64) -> BlobContainer {
        BlobContainer::new(url, Some(KEY))
            .unwrap()
            .with_timings(Duration::from_millis(timeout_ms), Duration::from_millis(20))
            .unwrap()
    }

    #[tokio::test]
    async fn a_download_takes_as_long_as_its_bytes_keep_coming_and_fails_when_they_stop() {
        // Ten bytes, one every 150 ms: 1.5 s in all, past the 500 ms timeout, never silent
        // that long.
        let head = "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 10\r\n\r\n";
        let mut slow = vec![(0, head)];
        slow.extend(std::iter::repeat_n((150, "x"), 10));
        let stalled = vec![(0, head), (0, "xxxxx"), (1_500, "xxxxx")];
        let (url, _) = scripted(vec![slow, stalled]).await;
        let c = container(&url, 500);
        let dir = tempfile::tempdir().unwrap();
        let got = c.get_file("a.db", &dir.path().join("a.db")).await;
        assert_eq!(got.unwrap(), 10);
        assert_eq!(
            std::fs::read(dir.path().join("a.db")).unwrap(),
            b"xxxxxxxxxx"
        );
        let err = c
            .get_file("b.db", &dir.path().join("b.db"))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("b.db"), "{err}");
    }

    #[tokio::test]
    async fn a_transient_answer_is_retried_and_a_lasting_one_is_not() {
        let busy = "HTTP/1.1 503 Service Unavailable\r\nx-ms-error-code: ServerBusy\r\n\
                    Connection: close\r\nContent-Length: 0\r\n\r\n";
        let created = "HTTP/1.1 201 Created\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";
        let denied = "HTTP/1.1 403 Forbidden\r\nx-ms-error-code: AuthorizationFailure\r\n\
                      Connection: close\r\nContent-Length: 0\r\n\r\n";
        let (url, seen) = scripted(vec![
            vec![(0, busy)],
            vec![(0, created)],
            vec![(0, created)],
            vec![(0, denied)],
        ])
        .await;
        let c = container(&url, 2_000);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, b"hello").unwrap();
        // The block is sent again after the 503, then the block list.
        assert_eq!(c.put_file("set/f", &file).await.unwrap(), 5);
        assert_eq!(seen.lock().unwrap().len(), 3, "{:?}", seen.lock().unwrap());
        assert!(seen.lock().unwrap()[1].contains("comp=block&"));
        assert!(seen.lock().unwrap()[2].contains("comp=blocklist"));
        // A refusal is final: one request, the code named.
        let err = c.put_file("set/f", &file).await.unwrap_err();
        assert!(err.to_string().contains("AuthorizationFailure"), "{err}");
        assert_eq!(seen.lock().unwrap().len(), 4);
    }

    #[tokio::test]
    async fn a_failed_request_never_shows_the_sas_signature() {
        // A port nothing listens on: every try fails to connect.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("http://127.0.0.1:{port}/acct/c?sv=2022-11-02&sp=rl&sig=SECRETSIG");
        let c = BlobContainer::new(&url, None)
            .unwrap()
            .with_timings(Duration::from_secs(2), Duration::from_millis(10))
            .unwrap();
        let err = c.list("").await.unwrap_err().to_string();
        assert!(!err.contains("SECRETSIG") && !err.contains("sig="), "{err}");
        assert!(err.contains(&format!("127.0.0.1:{port}/acct/c")), "{err}");
    }

    #[test]
    fn object_names_stay_plain() {
        assert!(check_name("liveops-20261201T101500.123Z/bus.db").is_ok());
        for bad in ["", "/abs", "a b", "a?b", "é"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }
}
