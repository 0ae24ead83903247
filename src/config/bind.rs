//! `--bind` values: `HOST:PORT`, `[IPv6]:PORT`, `:PORT`, bare `HOST`,
//! `unix:/path` and `fd://N`.

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};

/// Port used when a `--bind` value names only a host, as gunicorn does.
pub const DEFAULT_PORT: u16 = 8000;

/// One `--bind` address, resolved to the socket addresses it names.
///
/// `HOST:PORT` (`127.0.0.1:8000`, `localhost:8000`), `[IPv6]:PORT`
/// (`[::1]:8000`), `:PORT` or an empty host (every IPv4 interface, as in
/// wsgiref's `''`), a bare `HOST` (port 8000), `unix:/path/to.sock` (a Unix
/// socket, removed on exit) and `fd://N` (an inherited listening socket).
///
/// # Errors
///
/// [`Bind::parse`] returns a one-line message naming the accepted forms when the
/// value cannot be parsed or the host does not resolve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    /// The value as typed, for messages.
    pub spec: String,
    /// Every address the host resolved to, in resolver order (empty for
    /// `unix:` and `fd://`).
    pub addrs: Vec<SocketAddr>,
    /// The path of a `unix:` bind.
    pub unix: Option<std::path::PathBuf>,
    /// The descriptor of an `fd://` bind.
    pub fd: Option<i32>,
}

impl Bind {
    /// Parse and resolve one `--bind` value.
    ///
    /// # Errors
    ///
    /// A message such as `--bind 'x:y': port "y" is not a number from 0 to 65535`.
    pub fn parse(spec: &str) -> Result<Bind, String> {
        let fail = |why: &str| {
            Err(format!(
                "--bind {spec:?}: {why} (use HOST:PORT, [IPv6]:PORT or :PORT)"
            ))
        };
        if let Some(path) = spec.strip_prefix("unix:") {
            if path.is_empty() {
                return fail("unix: needs a path, e.g. unix:/run/app.sock");
            }
            return Ok(Bind {
                spec: spec.to_owned(),
                addrs: Vec::new(),
                unix: Some(path.into()),
                fd: None,
            });
        }
        if let Some(fd) = spec.strip_prefix("fd://") {
            let Ok(fd) = fd.parse::<i32>() else {
                return fail("fd:// needs a descriptor number, e.g. fd://3");
            };
            return Ok(Bind {
                spec: spec.to_owned(),
                addrs: Vec::new(),
                unix: None,
                fd: Some(fd),
            });
        }
        // gunicorn accepts `tcp://HOST:PORT`; a URL's scheme is a mistake.
        let address = spec.strip_prefix("tcp://").unwrap_or(spec);
        if let Some((scheme, rest)) = address.split_once("://") {
            let rest = rest.trim_end_matches('/');
            let tls = if scheme.eq_ignore_ascii_case("https") {
                ", and --certfile/--keyfile for TLS"
            } else {
                ""
            };
            return fail(&format!(
                "a bind is an address, not a URL: write {rest}{tls}"
            ));
        }
        if !address.is_empty() && address.bytes().all(|b| b.is_ascii_digit()) {
            return fail(&format!(
                "a bare number is a host here: write :{address} for a port"
            ));
        }
        let (host, port) = if let Some(rest) = address.strip_prefix('[') {
            let Some((host, after)) = rest.split_once(']') else {
                return fail("missing ']' after the IPv6 address");
            };
            match after.strip_prefix(':') {
                Some(port) => (host, port),
                None if after.is_empty() => (host, ""),
                None => return fail("expected ':PORT' after ']'"),
            }
        } else {
            match address.rsplit_once(':') {
                Some((host, _)) if host.contains(':') => {
                    return fail("an IPv6 address needs brackets");
                }
                Some((host, port)) => (host, port),
                None => (address, ""),
            }
        };
        let port = if port.is_empty() {
            DEFAULT_PORT
        } else {
            match port.parse::<u16>() {
                Ok(port) => port,
                Err(_) => return fail(&format!("port {port:?} is not a number from 0 to 65535")),
            }
        };
        let host = if host.is_empty() { "0.0.0.0" } else { host };
        let addrs: Vec<SocketAddr> = match (host, port).to_socket_addrs() {
            Ok(addrs) => addrs.collect(),
            Err(err) => return fail(&format!("cannot resolve host {host:?}: {err}")),
        };
        if addrs.is_empty() {
            return fail(&format!("host {host:?} resolved to no address"));
        }
        Ok(Bind {
            spec: spec.to_owned(),
            addrs,
            unix: None,
            fd: None,
        })
    }

    /// Format `host` and `port` as a `--bind` value, bracketing IPv6 hosts.
    ///
    /// # Examples
    ///
    /// ```
    /// use _ferrule::config::Bind;
    /// assert_eq!(Bind::format("::1", 80), "[::1]:80");
    /// assert_eq!(Bind::format("", 8000), ":8000");
    /// ```
    pub fn format(host: &str, port: u16) -> String {
        if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        }
    }
}

impl fmt::Display for Bind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.spec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(spec: &str) -> SocketAddr {
        Bind::parse(spec).unwrap().addrs[0]
    }

    #[test]
    fn forms() {
        assert_eq!(one("127.0.0.1:9000"), "127.0.0.1:9000".parse().unwrap());
        assert_eq!(one("[::1]:9000"), "[::1]:9000".parse().unwrap());
        assert_eq!(one(":9000"), "0.0.0.0:9000".parse().unwrap());
        assert_eq!(one("127.0.0.1"), "127.0.0.1:8000".parse().unwrap());
        assert_eq!(one("[::1]"), "[::1]:8000".parse().unwrap());
        assert_eq!(one("127.0.0.1:0").port(), 0);
    }

    #[test]
    fn errors_name_the_value() {
        let err = Bind::parse("127.0.0.1:http").unwrap_err();
        assert!(
            err.contains("\"127.0.0.1:http\"") && err.contains("port"),
            "{err}"
        );
        assert!(Bind::parse("::1:80").unwrap_err().contains("brackets"));
        assert!(Bind::parse("[::1:80").unwrap_err().contains("']'"));
        assert!(Bind::parse("127.0.0.1:70000").is_err());
        assert_eq!(
            Bind::parse("unix:/tmp/x.sock").unwrap().unix.unwrap(),
            std::path::PathBuf::from("/tmp/x.sock")
        );
        assert_eq!(Bind::parse("fd://3").unwrap().fd, Some(3));
        assert!(Bind::parse("fd://x").unwrap_err().contains("descriptor"));
        assert!(Bind::parse("unix:").is_err());
        let err = Bind::parse("http://127.0.0.1:8080/").unwrap_err();
        assert!(
            err.contains("not a URL: write 127.0.0.1:8080 (use HOST:PORT"),
            "{err}"
        );
        let err = Bind::parse("https://0.0.0.0:443").unwrap_err();
        assert!(err.contains("write 0.0.0.0:443, and --certfile"), "{err}");
        let err = Bind::parse("8080").unwrap_err();
        assert!(err.contains("write :8080 for a port"), "{err}");
        assert_eq!(
            one("tcp://127.0.0.1:9001"),
            "127.0.0.1:9001".parse().unwrap()
        );
    }

    #[test]
    fn format_round_trips() {
        for (host, port) in [("127.0.0.1", 1), ("::1", 2), ("", 3)] {
            let spec = Bind::format(host, port);
            assert_eq!(Bind::parse(&spec).unwrap().addrs[0].port(), port);
        }
    }
}
