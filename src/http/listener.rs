//! Binding listening sockets: TCP, Unix, and inherited descriptors.
//!
//! A [`Bound`] socket is a plain (std) listening socket: the master binds it
//! before forking and every worker turns a duplicate of it into a tokio
//! [`Listener`] after the fork. A `unix:` path is removed first when a stale
//! socket sits there, and again by [`Bound::cleanup`] when the server stops.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

use socket2::{Domain, SockAddr, Socket, Type};

use super::Listener;
use crate::config::Bind;

/// How sockets are created.
#[derive(Debug, Clone, Copy)]
pub struct ListenOptions {
    /// Pending connections the kernel queues (`--backlog`).
    pub backlog: i32,
    /// Set `SO_REUSEPORT` (`--reuse-port`).
    pub reuse_port: bool,
}

/// A bound, listening socket.
#[derive(Debug)]
pub enum Bound {
    /// A TCP socket and its local address.
    Tcp(std::net::TcpListener, SocketAddr),
    /// A Unix socket and its path (`None` for an inherited unnamed one), and
    /// whether this process created the path (and so removes it).
    Unix(UnixListener, Option<PathBuf>, bool),
}

impl Bound {
    /// Bind `bind` (its first resolved address).
    ///
    /// # Errors
    ///
    /// The OS error, with the `--bind` value in the message.
    pub fn bind(bind: &Bind, options: ListenOptions) -> io::Result<Bound> {
        let context = |err: io::Error| {
            let hint = match err.kind() {
                io::ErrorKind::AddrInUse => {
                    ": another process is listening there; stop it or choose another address with --bind"
                }
                io::ErrorKind::PermissionDenied => {
                    ": ports below 1024 need privileges; choose a port from 1024 up with --bind"
                }
                _ => "",
            };
            io::Error::new(
                err.kind(),
                format!("cannot bind {}: {err}{hint}", bind.spec),
            )
        };
        if let Some(path) = &bind.unix {
            return listen_unix(path, options).map_err(context);
        }
        if let Some(fd) = bind.fd {
            return inherit(fd).map_err(context);
        }
        let addr = bind.addrs[0];
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None).map_err(context)?;
        socket.set_reuse_address(true).map_err(context)?;
        if options.reuse_port {
            socket.set_reuse_port(true).map_err(context)?;
        }
        if addr.is_ipv6() {
            socket.set_only_v6(true).map_err(context)?;
        }
        socket.set_nonblocking(true).map_err(context)?;
        socket.bind(&addr.into()).map_err(context)?;
        socket.listen(options.backlog).map_err(context)?;
        let listener: std::net::TcpListener = socket.into();
        let local = listener.local_addr()?;
        Ok(Bound::Tcp(listener, local))
    }

    /// How the log and `server_address` show it: `http://127.0.0.1:8000`, `unix:/path`.
    pub fn describe(&self) -> String {
        match self {
            Bound::Tcp(_, addr) => format!("http://{addr}"),
            Bound::Unix(_, Some(path), _) => format!("unix:{}", path.display()),
            Bound::Unix(_, None, _) => "unix:(inherited)".to_owned(),
        }
    }

    /// `SERVER_NAME` and `SERVER_PORT` for requests on this socket.
    pub fn server_name_port(&self) -> (String, String) {
        match self {
            Bound::Tcp(_, addr) => (addr.ip().to_string(), addr.port().to_string()),
            Bound::Unix(..) => ("localhost".to_owned(), "80".to_owned()),
        }
    }

    /// The TCP address, if this is a TCP socket.
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        match self {
            Bound::Tcp(_, addr) => Some(*addr),
            Bound::Unix(..) => None,
        }
    }

    /// A duplicate descriptor of the same socket (it does not remove the path).
    ///
    /// # Errors
    ///
    /// The `dup(2)` error.
    pub fn try_clone(&self) -> io::Result<Bound> {
        Ok(match self {
            Bound::Tcp(l, addr) => Bound::Tcp(l.try_clone()?, *addr),
            Bound::Unix(l, path, _) => Bound::Unix(l.try_clone()?, path.clone(), false),
        })
    }

    /// Register with the current tokio runtime.
    ///
    /// # Errors
    ///
    /// The registration error.
    pub fn into_tokio(self) -> io::Result<Listener> {
        Ok(match self {
            Bound::Tcp(l, _) => Listener::Tcp(tokio::net::TcpListener::from_std(l)?),
            Bound::Unix(l, _, _) => Listener::Unix(tokio::net::UnixListener::from_std(l)?),
        })
    }

    /// Remove the socket file this process created.
    pub fn cleanup(&self) {
        if let Bound::Unix(_, Some(path), true) = self {
            let _ = std::fs::remove_file(path);
        }
    }
}

impl AsRawFd for Bound {
    fn as_raw_fd(&self) -> RawFd {
        match self {
            Bound::Tcp(l, _) => l.as_raw_fd(),
            Bound::Unix(l, _, _) => l.as_raw_fd(),
        }
    }
}

fn listen_unix(path: &Path, options: ListenOptions) -> io::Result<Bound> {
    use std::os::unix::fs::FileTypeExt;
    // A stale socket from a previous run would make bind fail; anything else
    // at that path is left alone and reported.
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if meta.file_type().is_socket() {
            std::fs::remove_file(path)?;
        }
    }
    let socket = Socket::new(Domain::UNIX, Type::STREAM, None)?;
    socket.set_nonblocking(true)?;
    socket.bind(&SockAddr::unix(path)?)?;
    socket.listen(options.backlog)?;
    let fd = socket.into_raw_fd_owned();
    Ok(Bound::Unix(fd, Some(path.to_owned()), true))
}

/// Take over an inherited listening socket (`fd://N`, systemd's `LISTEN_FDS`).
fn inherit(fd: RawFd) -> io::Result<Bound> {
    // SAFETY: the caller names a descriptor handed to this process to own.
    let socket = unsafe { Socket::from_raw_fd(fd) };
    socket.set_nonblocking(true)?;
    let local = socket.local_addr()?;
    if let Some(addr) = local.as_socket() {
        return Ok(Bound::Tcp(socket.into(), addr));
    }
    let path = local.as_pathname().map(Path::to_path_buf);
    Ok(Bound::Unix(socket.into_raw_fd_owned(), path, false))
}

trait IntoUnix {
    fn into_raw_fd_owned(self) -> UnixListener;
}

impl IntoUnix for Socket {
    fn into_raw_fd_owned(self) -> UnixListener {
        use std::os::fd::IntoRawFd;
        // SAFETY: the descriptor moves from the socket2 value to the listener.
        unsafe { UnixListener::from_raw_fd(self.into_raw_fd()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPTIONS: ListenOptions = ListenOptions {
        backlog: 16,
        reuse_port: false,
    };

    #[test]
    fn unix_socket_replaces_a_stale_one_and_cleans_up() {
        let path = std::env::temp_dir().join(format!("ferrule-test-{}.sock", std::process::id()));
        let bind = Bind::parse(&format!("unix:{}", path.display())).unwrap();
        let first = Bound::bind(&bind, OPTIONS).unwrap();
        drop(first); // leaves a stale socket file behind
        let second = Bound::bind(&bind, OPTIONS).unwrap();
        assert_eq!(second.describe(), format!("unix:{}", path.display()));
        std::os::unix::net::UnixStream::connect(&path).unwrap();
        let clone = second.try_clone().unwrap();
        clone.cleanup();
        assert!(path.exists(), "a duplicate must not remove the path");
        second.cleanup();
        assert!(!path.exists());
    }

    #[test]
    fn inherited_descriptor_keeps_its_family() {
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = tcp.local_addr().unwrap();
        use std::os::fd::IntoRawFd;
        let bind = Bind::parse(&format!("fd://{}", tcp.into_raw_fd())).unwrap();
        let bound = Bound::bind(&bind, OPTIONS).unwrap();
        assert_eq!(bound.tcp_addr(), Some(addr));
    }
}
