//! One keep-alive HTTP/1.1 connection, as lean as a load generator needs: a hyper connection per
//! generator task, so `--connections C` means exactly C sockets and the generator spends as
//! little of the shared CPU as possible.

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{handshake, SendRequest};
use hyper::header::{HeaderValue, CONTENT_TYPE, HOST};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::BenchError;

/// Where the bench sends its requests: a resolved socket address plus the `Host` header.
#[derive(Clone, Debug)]
pub struct Endpoint {
    /// Resolved address.
    pub addr: SocketAddr,
    /// `host:port`, sent as `Host`.
    pub host: String,
    /// Base URL for reqwest (`http://host:port`).
    pub base: String,
}

impl Endpoint {
    /// Resolves an `http://host:port` URL (no path, no TLS).
    pub async fn parse(url: &str) -> Result<Self, BenchError> {
        let bad = |why: &str| BenchError::Url(format!("{url:?}: {why}"));
        let parsed = reqwest::Url::parse(url).map_err(|e| bad(&e.to_string()))?;
        if parsed.scheme() != "http" {
            return Err(bad("only http:// is supported"));
        }
        let host = parsed.host_str().ok_or_else(|| bad("no host"))?.to_owned();
        let port = parsed.port_or_known_default().unwrap_or(80);
        let addr = tokio::net::lookup_host((host.as_str(), port))
            .await
            .map_err(|e| bad(&e.to_string()))?
            .next()
            .ok_or_else(|| bad("host does not resolve"))?;
        Ok(Self {
            addr,
            host: format!("{host}:{port}"),
            base: format!("http://{host}:{port}"),
        })
    }

    /// The endpoint of a server listening on `127.0.0.1:port`.
    pub fn local(port: u16) -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            host: format!("127.0.0.1:{port}"),
            base: format!("http://127.0.0.1:{port}"),
        }
    }
}

/// A request the generator sends.
pub(crate) struct Outgoing<'a> {
    pub(crate) method: Method,
    pub(crate) path: &'a str,
    /// `(X-Timestamp, X-Signature)` for a signed POST.
    pub(crate) signed: Option<(String, String)>,
    pub(crate) body: Bytes,
}

/// One HTTP/1.1 keep-alive connection; reconnects on the next request after a failure.
pub(crate) struct Connection {
    endpoint: Endpoint,
    host: HeaderValue,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl Connection {
    pub(crate) fn new(endpoint: Endpoint) -> Result<Self, BenchError> {
        let host = HeaderValue::from_str(&endpoint.host)
            .map_err(|_| BenchError::Url(format!("bad host {:?}", endpoint.host)))?;
        Ok(Self {
            endpoint,
            host,
            sender: None,
        })
    }

    async fn connect(&mut self) -> Result<&mut SendRequest<Full<Bytes>>, String> {
        if self.sender.as_ref().is_none_or(|s| s.is_closed()) {
            let stream = TcpStream::connect(self.endpoint.addr)
                .await
                .map_err(|e| format!("connect: {e}"))?;
            stream
                .set_nodelay(true)
                .map_err(|e| format!("nodelay: {e}"))?;
            let (sender, conn) = handshake(TokioIo::new(stream))
                .await
                .map_err(|e| format!("handshake: {e}"))?;
            tokio::spawn(async move {
                // The connection ends when the sender is dropped or the peer closes it.
                let _ = conn.await;
            });
            self.sender = Some(sender);
        }
        self.sender
            .as_mut()
            .ok_or_else(|| "no connection".to_owned())
    }

    /// Sends one request and reads the whole answer; `Err` is a transport failure (the
    /// connection is dropped and re-opened by the next call).
    pub(crate) async fn send(&mut self, out: Outgoing<'_>) -> Result<(u16, Bytes), String> {
        let host = self.host.clone();
        let sender = self.connect().await?;
        let result = async {
            sender.ready().await.map_err(|e| format!("ready: {e}"))?;
            let mut req = Request::builder()
                .method(out.method)
                .uri(out.path)
                .header(HOST, host);
            if let Some((ts, sig)) = out.signed {
                req = req
                    .header(CONTENT_TYPE, "application/json")
                    .header("x-timestamp", ts)
                    .header("x-signature", sig);
            }
            let req = req
                .body(Full::new(out.body))
                .map_err(|e| format!("request: {e}"))?;
            let res = sender
                .send_request(req)
                .await
                .map_err(|e| format!("send: {e}"))?;
            let status = res.status().as_u16();
            let body = res
                .into_body()
                .collect()
                .await
                .map_err(|e| format!("body: {e}"))?
                .to_bytes();
            Ok((status, body))
        }
        .await;
        if result.is_err() {
            self.sender = None;
        }
        result
    }
}
