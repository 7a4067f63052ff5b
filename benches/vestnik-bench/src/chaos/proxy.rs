//! A TCP proxy between one node and the backbone that the run can cut: while cut, it drops every
//! connection it carries and closes new ones at once, so the node sees its backbone vanish while
//! the other nodes keep theirs.
//!
//! It listens on a loopback port of its own and only ever connects to the backbone address it was
//! given. It never inspects or changes the bytes it carries.

use std::net::SocketAddr;

use anyhow::{Context, Result};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// A running proxy; dropping it does not stop it, `stop` does.
#[derive(Debug)]
pub struct Proxy {
    /// Where the node connects.
    pub addr: SocketAddr,
    cut: watch::Sender<bool>,
    cancel: CancellationToken,
}

impl Proxy {
    /// Listens on a free loopback port and forwards to `backbone`.
    pub async fn start(backbone: SocketAddr) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the backbone proxy")?;
        let addr = listener.local_addr()?;
        let (cut, cut_rx) = watch::channel(false);
        let cancel = CancellationToken::new();
        let stop = cancel.clone();
        tokio::spawn(async move {
            loop {
                let (client, _) = tokio::select! {
                    () = stop.cancelled() => return,
                    accepted = listener.accept() => match accepted {
                        Ok(a) => a,
                        Err(_) => continue,
                    },
                };
                if *cut_rx.borrow() {
                    drop(client);
                    continue;
                }
                let mut cut_rx = cut_rx.clone();
                let stop = stop.clone();
                tokio::spawn(async move {
                    let Ok(mut upstream) = TcpStream::connect(backbone).await else {
                        return;
                    };
                    let mut client = client;
                    let _ = client.set_nodelay(true);
                    let _ = upstream.set_nodelay(true);
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {}
                        _ = cut_rx.wait_for(|cut| *cut) => {}
                        () = stop.cancelled() => {}
                    }
                });
            }
        });
        Ok(Self { addr, cut, cancel })
    }

    /// Cuts (`true`) or restores (`false`) the link.
    pub fn set_cut(&self, cut: bool) {
        self.cut.send_replace(cut);
    }

    /// Stops listening and drops every connection.
    pub fn stop(&self) {
        self.cancel.cancel();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn forwards_then_cuts_then_forwards_again() {
        let echo = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let echo_addr = echo.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((mut s, _)) = echo.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        let proxy = Proxy::start(echo_addr).await.expect("proxy");
        let mut c = TcpStream::connect(proxy.addr).await.expect("connect");
        c.write_all(b"ping").await.expect("write");
        let mut buf = [0u8; 4];
        c.read_exact(&mut buf).await.expect("echo");
        assert_eq!(&buf, b"ping");

        proxy.set_cut(true);
        let n = tokio::time::timeout(std::time::Duration::from_secs(5), c.read(&mut buf))
            .await
            .expect("the cut closes the carried connection");
        assert!(matches!(n, Ok(0) | Err(_)));
        let mut refused = TcpStream::connect(proxy.addr)
            .await
            .expect("accepted, then closed");
        let n = tokio::time::timeout(std::time::Duration::from_secs(5), refused.read(&mut buf))
            .await
            .expect("closed at once while cut");
        assert!(matches!(n, Ok(0) | Err(_)));

        proxy.set_cut(false);
        let mut c = TcpStream::connect(proxy.addr).await.expect("connect");
        c.write_all(b"pong").await.expect("write");
        c.read_exact(&mut buf).await.expect("echo after the cut");
        assert_eq!(&buf, b"pong");
        proxy.stop();
    }
}
