//! A TCP relay in front of a backend that can stall (hold every byte) or die: how the bus tests
//! play an outage of a server that cannot be stopped without losing what it stores.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// The relay; [`Relay::kill`] closes the listener and every connection, [`Relay::retarget`]
/// sends new connections elsewhere (cutting the others), [`Relay::redirect`] too (keeping them).
pub struct Relay {
    /// Where clients connect.
    pub addr: SocketAddr,
    /// While set, every byte is held back (a stalled backend).
    pub stalled: Arc<AtomicBool>,
    /// The listener's task.
    listener: JoinHandle<()>,
    /// Where new connections go, and the pumps of the connections made.
    links: Arc<Mutex<Links>>,
}

/// What the accept loop and the relay's owner share, under one lock.
struct Links {
    upstream: SocketAddr,
    /// Bumped by `retarget` and `kill`: a connection made before is not kept.
    generation: u64,
    /// Set by `kill`: no connection is kept any more.
    killed: bool,
    pumps: Vec<JoinHandle<()>>,
}

/// The address a server URL (`scheme://[user@]host:port[/path]`) points at, for a relay to
/// forward to.
pub fn upstream_of(url: &str) -> SocketAddr {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    let host = rest.split('/').next().unwrap_or(rest);
    std::net::ToSocketAddrs::to_socket_addrs(host)
        .unwrap()
        .next()
        .unwrap_or_else(|| panic!("{url} names no address"))
}

impl Relay {
    /// Listens on `addr` (port 0: any) and forwards each connection to `upstream`.
    pub async fn start(addr: SocketAddr, upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stalled = Arc::new(AtomicBool::new(false));
        let links = Arc::new(Mutex::new(Links {
            upstream,
            generation: 0,
            killed: false,
            pumps: Vec::new(),
        }));
        let listener = {
            let (stalled, links) = (stalled.clone(), links.clone());
            tokio::spawn(async move {
                while let Ok((client, _)) = listener.accept().await {
                    let (to, generation) = {
                        let l = links.lock().unwrap();
                        (l.upstream, l.generation)
                    };
                    let Ok(server) = TcpStream::connect(to).await else {
                        continue;
                    };
                    let mut l = links.lock().unwrap();
                    // Retargeted or killed while connecting: this connection is not kept.
                    if l.killed || l.generation != generation {
                        continue;
                    }
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    l.pumps.push(tokio::spawn(pump(cr, sw, stalled.clone())));
                    l.pumps.push(tokio::spawn(pump(sr, cw, stalled.clone())));
                }
            })
        };
        Self {
            addr,
            stalled,
            listener,
            links,
        }
    }

    /// Closes the listener and every connection.
    pub fn kill(&self) {
        self.listener.abort();
        let mut l = self.links.lock().unwrap();
        l.killed = true;
        l.generation += 1;
        for pump in l.pumps.drain(..) {
            pump.abort();
        }
    }

    /// Sends new connections to `upstream` and keeps the ones made, as a failover behind one
    /// address that leaves kept connections on the old server (now a replica).
    pub fn redirect(&self, upstream: SocketAddr) {
        self.links.lock().unwrap().upstream = upstream;
    }

    /// Cuts every connection and sends new ones to `upstream`, as a failover that moves a
    /// service's address to its replica.
    pub fn retarget(&self, upstream: SocketAddr) {
        let mut l = self.links.lock().unwrap();
        l.upstream = upstream;
        l.generation += 1;
        for pump in l.pumps.drain(..) {
            pump.abort();
        }
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    stalled: Arc<AtomicBool>,
) {
    let mut buf = vec![0_u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        while stalled.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
