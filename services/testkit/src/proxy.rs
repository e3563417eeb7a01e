//! A TCP proxy on 127.0.0.1 that a test can cut, restore and slow down:
//! an outage or a slow network between a service and PostgreSQL or
//! LocalStack, without touching the real servers.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

#[derive(Debug, Default)]
struct State {
    down: AtomicBool,
    /// Pause before each chunk sent back to the client, in milliseconds.
    delay_ms: AtomicU64,
    connections: Mutex<Vec<AbortHandle>>,
    /// Connections closed by a cut or refused while down.
    broken: AtomicU64,
}

/// Forwards every connection to `target` until dropped.
#[derive(Debug)]
pub struct Proxy {
    addr: SocketAddr,
    state: Arc<State>,
    accept: AbortHandle,
}

/// A port on 127.0.0.1 that nothing listens on: connections to it are
/// refused, as to a server that has not started, until [`Proxy::start_on`]
/// opens it.
pub fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("its address").port()
}

impl Proxy {
    pub async fn start(target: SocketAddr) -> Self {
        Self::start_on(0, target).await
    }

    /// A proxy listening on `port` (0: any free one).
    pub async fn start_on(port: u16, target: SocketAddr) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind the proxy");
        let addr = listener.local_addr().expect("the proxy's address");
        let state = Arc::new(State::default());
        let shared = Arc::clone(&state);
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if shared.down.load(Ordering::SeqCst) {
                    shared.broken.fetch_add(1, Ordering::SeqCst);
                    drop(client);
                    continue;
                }
                let state = Arc::clone(&shared);
                let handle = tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(target).await {
                        forward(client, server, &state).await;
                    }
                })
                .abort_handle();
                let mut connections = shared.connections.lock().expect("lock");
                connections.retain(|c| !c.is_finished());
                connections.push(handle);
            }
        })
        .abort_handle();
        Self {
            addr,
            state,
            accept,
        }
    }

    /// A proxy in front of the test LocalStack.
    pub async fn to_localstack() -> Self {
        Self::start(localstack_addr()).await
    }

    /// The proxy's address, to give the service instead of the target's.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr>`, as an endpoint URL.
    pub fn url(&self) -> url::Url {
        url::Url::parse(&format!("http://{}", self.addr)).expect("an address is a URL")
    }

    /// Closes every open connection and refuses new ones, as a server that
    /// went away would.
    pub fn cut(&self) {
        self.state.down.store(true, Ordering::SeqCst);
        for connection in self.state.connections.lock().expect("lock").drain(..) {
            if !connection.is_finished() {
                self.state.broken.fetch_add(1, Ordering::SeqCst);
            }
            connection.abort();
        }
    }

    /// Connections open through the proxy now.
    pub fn open_connections(&self) -> usize {
        let connections = self.state.connections.lock().expect("lock");
        connections.iter().filter(|c| !c.is_finished()).count()
    }

    /// How many connections a cut closed or the proxy refused while down:
    /// more than none shows that the outage was felt.
    pub fn broken(&self) -> u64 {
        self.state.broken.load(Ordering::SeqCst)
    }

    /// Accepts connections again, as a server that came back would.
    pub fn restore(&self) {
        self.state.down.store(false, Ordering::SeqCst);
    }

    /// Pauses before every chunk of every answer: a slow network.
    pub fn slow_down(&self, per_chunk: Duration) {
        self.state
            .delay_ms
            .store(per_chunk.as_millis() as u64, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

/// The test LocalStack's address.
pub fn localstack_addr() -> SocketAddr {
    crate::TestAws::endpoint()
        .socket_addrs(|| None)
        .expect("LocalStack's address")[0]
}

/// The test PostgreSQL server's address.
pub fn postgres_addr() -> SocketAddr {
    crate::env_url("TEST_DATABASE_URL")
        .socket_addrs(|| Some(5432))
        .expect("PostgreSQL's address")[0]
}

async fn forward(client: TcpStream, server: TcpStream, state: &State) {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let upstream = async {
        let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
        let _ = server_write.shutdown().await;
    };
    let downstream = async {
        let mut buffer = vec![0u8; 8 * 1024];
        loop {
            let n = match server_read.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let delay = state.delay_ms.load(Ordering::SeqCst);
            if delay > 0 {
                tokio::time::sleep(Duration::from_millis(delay)).await;
            }
            if client_write.write_all(&buffer[..n]).await.is_err() {
                break;
            }
        }
        let _ = client_write.shutdown().await;
    };
    tokio::join!(upstream, downstream);
}
