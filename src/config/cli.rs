//! The `ferrule` command line, parsed with clap.
//!
//! Option names follow gunicorn's where a gunicorn user would look for them
//! (`--bind`, `--threads`, `--log-level`, `--graceful-timeout`); options may come
//! before or after the application spec.

use clap::{Parser, ValueEnum};

use super::Bind;

/// Where ferrule listens without `--bind`, `$PORT` or systemd's sockets.
pub const DEFAULT_BIND: &str = "127.0.0.1:8000";

/// What the user typed on the command line, validated field by field.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "ferrule",
    version,
    about = "Serve a WSGI (PEP 3333) application through ferrule's Rust HTTP core.",
    after_help = "Example: ferrule --bind 127.0.0.1:8000 --threads 4 myproject.wsgi:application"
)]
pub struct Args {
    /// The WSGI application: MODULE:APP, e.g. `examples.hello:app`.
    ///
    /// The attribute defaults to `application`. As in gunicorn, it may be a call of an
    /// application factory with literal arguments: `'myapp:create_app()'` or
    /// `'myapp:create_app("prod")'`. The current directory is put on `sys.path` first, as
    /// gunicorn does.
    #[arg(value_name = "MODULE:APP")]
    pub app: String,

    /// Address to listen on: `HOST:PORT`, `[IPv6]:PORT`, `:PORT` (every interface), `HOST`
    /// (port 8000), `unix:PATH` or `fd://N`. Repeatable.
    ///
    /// Default is `127.0.0.1:8000`.
    #[arg(short = 'b', long = "bind", value_name = "ADDRESS", value_parser = Bind::parse)]
    pub bind: Vec<Bind>,

    /// Worker processes (1 to 64), forked by a master that replaces any that die.
    ///
    /// Default is `$WEB_CONCURRENCY`, else 1.
    #[arg(short = 'w', long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u16).range(1..=64))]
    pub workers: u16,

    /// Python threads per worker that run the application (1 to 1024).
    ///
    /// One thread is the fastest path for CPU-bound apps; more threads let an app
    /// that waits on a database overlap its requests. Default is 1.
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub threads: u16,

    /// Accepted for gunicorn command lines: `sync` and `gthread` both name ferrule's one
    /// worker type.
    ///
    /// Each worker is an event loop in Rust that calls the application on its own thread
    /// (`--threads 1`) or on a pool of Python threads (`--threads N`); other classes
    /// (gevent, eventlet, ASGI workers) are refused. Default is `sync`.
    #[arg(short = 'k', long, value_name = "CLASS", default_value = "sync",
          value_parser = parse_worker_class)]
    pub worker_class: String,

    /// Mount point of the application: SCRIPT_NAME, stripped from PATH_INFO.
    ///
    /// Must start with `/`; a trailing `/` is dropped. Default is empty.
    #[arg(long, value_name = "/PREFIX", default_value = "", value_parser = parse_root_path)]
    pub root_path: String,

    /// Call MODULE:APP with no arguments and serve what it returns.
    #[arg(long)]
    pub factory: bool,

    /// Seconds the application may run on one request (its call and the iteration of its
    /// response) before its worker is killed and replaced; waiting for a slow client to take
    /// the response or send the body does not count; 0 disables.
    ///
    /// The clock starts with the call and again after each wait for the client (with
    /// `--threads 1`, for each item of the response too): each stretch the application runs
    /// without waiting is measured on its own. A client slow to read the response (which
    /// `--send-timeout` bounds) or to send the request body (which `--body-timeout` bounds)
    /// costs nothing here. The log names the request (method, path, seconds). Default is 30.
    #[arg(short = 't', long, value_name = "SECONDS", default_value_t = 30.0, value_parser = parse_seconds)]
    pub timeout: f64,

    /// Recycle a worker after it has served this many requests; 0 disables.
    ///
    /// The worker finishes its in-flight requests first. Default is 0.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub max_requests: u64,

    /// Add a random 0..=N to each worker's --max-requests, so workers do not
    /// all recycle at once.
    ///
    /// Default is 0: no jitter.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub max_requests_jitter: u64,

    /// Import the application in the master, before forking workers.
    ///
    /// Workers share its memory copy-on-write; a reload (SIGHUP) then keeps the
    /// old code. Default is off: each worker imports the application.
    #[arg(long)]
    pub preload: bool,

    /// Restart the workers when a Python source file under the current
    /// directory changes (development).
    ///
    /// Virtualenvs, site-packages, __pycache__, node_modules, target, .git and other
    /// hidden directories are not watched.
    #[arg(long, conflicts_with = "preload")]
    pub reload: bool,

    /// Pending connections the kernel queues per listener (listen(2)'s backlog).
    ///
    /// Default is 2048.
    #[arg(long, value_name = "N", default_value_t = 2048,
          value_parser = clap::value_parser!(i32).range(1..))]
    pub backlog: i32,

    /// Set SO_REUSEPORT on the listeners.
    #[arg(long)]
    pub reuse_port: bool,

    /// Change to DIR before loading the application.
    #[arg(long, value_name = "DIR")]
    pub chdir: Option<std::path::PathBuf>,

    /// Set an environment variable for the application: KEY=VALUE. Repeatable.
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE", value_parser = parse_env_pair)]
    pub env: Vec<(String, String)>,

    /// File mode creation mask of the server processes, in octal (e.g. 027).
    #[arg(long, value_name = "MASK", value_parser = parse_umask)]
    pub umask: Option<u32>,

    /// Run the workers as this user (name or uid); the master keeps its own.
    ///
    /// Needs the master to run as root.
    #[arg(short = 'u', long, value_name = "USER")]
    pub user: Option<String>,

    /// Run the workers with this group (name or gid).
    #[arg(short = 'g', long, value_name = "GROUP")]
    pub group: Option<String>,

    /// Name shown for the processes: `ferrule: master [NAME]` and
    /// `ferrule: worker [NAME]` in `ps` (the full title needs the
    /// `setproctitle` package, as in gunicorn; without it only the short
    /// `ferrule: master`/`ferrule: worker` name is set). Default is the app spec.
    #[arg(short = 'n', long, value_name = "NAME")]
    pub name: Option<String>,

    /// Write the master's process id to this file (removed on exit).
    #[arg(short = 'p', long = "pid", value_name = "FILE")]
    pub pidfile: Option<std::path::PathBuf>,

    /// Most bytes in a request line; 0 means unlimited (up to 64 KiB). 414 beyond.
    ///
    /// Default is 4094, as in gunicorn.
    #[arg(long, value_name = "BYTES", default_value_t = 4094)]
    pub limit_request_line: usize,

    /// Most header fields in a request; 0 means unlimited. 431 beyond.
    ///
    /// Default is 100, as in gunicorn.
    #[arg(long, value_name = "N", default_value_t = 100,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(0..=32768))]
    pub limit_request_fields: usize,

    /// Most bytes in one header field line; 0 means unlimited. 431 beyond.
    ///
    /// gunicorn spells it `--limit-request-field_size`; both work. Default is 8190.
    #[arg(
        long,
        alias = "limit-request-field_size",
        value_name = "BYTES",
        default_value_t = 8190
    )]
    pub limit_request_field_size: usize,

    /// Most bytes in a request body; 0 means unlimited. 413 beyond.
    ///
    /// Checked on Content-Length before the body is read, and on chunked bodies
    /// as they arrive. Default is 1073741824 (1 GiB).
    #[arg(long, value_name = "BYTES", default_value_t = 1 << 30)]
    pub limit_request_body: u64,

    /// Proxies trusted to set the client address and scheme: IPs, CIDRs, `*`, `unix`.
    ///
    /// From those peers only, `X-Forwarded-For` sets REMOTE_ADDR and
    /// `X-Forwarded-Proto` sets wsgi.url_scheme. Default is empty: nobody.
    #[arg(long, value_name = "LIST", default_value = "",
          value_parser = crate::config::forwarded::TrustedProxies::parse)]
    pub forwarded_allow_ips: crate::config::forwarded::TrustedProxies,

    /// Expect a PROXY protocol header (v1 or v2) on every TCP connection from
    /// --proxy-allow-from peers; the client address it names becomes REMOTE_ADDR.
    #[arg(long)]
    pub proxy_protocol: bool,

    /// Peers allowed (and required) to send a PROXY header: IPs, CIDRs or `*`.
    ///
    /// Default is `127.0.0.1,::1`, as in gunicorn.
    #[arg(long, value_name = "LIST", default_value = "127.0.0.1,::1",
          value_parser = crate::config::forwarded::TrustedProxies::parse)]
    pub proxy_allow_from: crate::config::forwarded::TrustedProxies,

    /// Serve HTTPS with this PEM certificate chain (needs --keyfile).
    #[arg(long, value_name = "FILE", requires = "keyfile")]
    pub certfile: Option<std::path::PathBuf>,

    /// The PEM private key of --certfile (RSA, ECDSA or Ed25519; PKCS#1, SEC1 or PKCS#8).
    #[arg(long, value_name = "FILE", requires = "certfile")]
    pub keyfile: Option<std::path::PathBuf>,

    /// Require client certificates signed by one of these PEM CA certificates.
    #[arg(long, value_name = "FILE", requires = "certfile")]
    pub ca_certs: Option<std::path::PathBuf>,

    /// Seconds a client has, from the first byte of a request head, to send all
    /// of it (slowloris); 408 after. Default is 10.
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0, value_parser = parse_positive_seconds)]
    pub header_timeout: f64,

    /// Seconds an idle connection waits for its next request before it is
    /// closed (gunicorn's `--keep-alive`). Default is 5.
    #[arg(long, value_name = "SECONDS", default_value_t = 5.0, value_parser = parse_positive_seconds)]
    pub keep_alive: f64,

    /// Longest wait, in seconds, for the next piece of a request body. Default is 60.
    #[arg(long, value_name = "SECONDS", default_value_t = 60.0, value_parser = parse_positive_seconds)]
    pub body_timeout: f64,

    /// Seconds a client may take no bytes of a response while some wait to be
    /// sent before its connection is closed (nginx's `send_timeout`); 0 disables.
    ///
    /// Measured between two successive writes, not over the whole response: a
    /// client that reads slowly but steadily is never cut off. With `--threads N`
    /// it bounds how long a client that stopped reading holds a worker thread.
    /// Default is 60.
    #[arg(long, value_name = "SECONDS", default_value_t = 60.0, value_parser = parse_seconds)]
    pub send_timeout: f64,

    /// Seconds that in-flight requests get to finish after SIGTERM or SIGINT.
    ///
    /// Default is 30.
    #[arg(long, value_name = "SECONDS", default_value_t = 30.0, value_parser = parse_seconds)]
    pub graceful_timeout: f64,

    /// Write one line per request to FILE (`-` for stdout). Default is off.
    #[arg(long, value_name = "FILE")]
    pub access_logfile: Option<String>,

    /// Access log line format, with gunicorn's atoms (`%(h)s`, `%(r)s`,
    /// `%({header}i)s`, ...). Default is gunicorn's:
    /// `%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"`.
    #[arg(long, value_name = "FORMAT", default_value = crate::wsgi::access_log::DEFAULT_FORMAT,
          value_parser = parse_access_format)]
    pub access_logformat: String,

    /// Write access log lines as JSON objects with the same fields, keyed by atom.
    #[arg(long)]
    pub access_log_json: bool,

    /// Write the error log to FILE (`-` for stderr). Default is stderr.
    #[arg(long, value_name = "FILE", default_value = "-")]
    pub error_logfile: String,

    /// Configure logging from FILE instead: `logging.config.fileConfig` for an
    /// INI file, `dictConfig` for a `.json` file. The loggers are
    /// `ferrule.error` and `ferrule.access`.
    #[arg(long, value_name = "FILE")]
    pub log_config: Option<std::path::PathBuf>,

    /// Lowest level of messages written to the error log. Default is `info`.
    #[arg(long, value_enum, value_name = "LEVEL", default_value_t = LogLevel::Info)]
    pub log_level: LogLevel,

    /// Read options from a TOML file (keys are option names: `workers = 4`).
    ///
    /// Precedence: file < `FERRULE_*` environment variables < command line.
    #[arg(short = 'c', long, value_name = "FILE", env = "FERRULE_CONFIG")]
    pub config: Option<std::path::PathBuf>,

    /// Print the resolved configuration, with where each value came from, and exit.
    #[arg(long)]
    pub print_config: bool,

    /// Check the configuration and that the application imports, then exit.
    #[arg(long)]
    pub check_config: bool,
}

impl Args {
    /// The bind addresses: `--bind`, else the sockets systemd passed
    /// (`LISTEN_FDS` for this `LISTEN_PID`, from descriptor 3 on), else
    /// `0.0.0.0:$PORT` when `$PORT` is set (as gunicorn and Heroku-style
    /// platforms do), else `127.0.0.1:8000`.
    ///
    /// # Errors
    ///
    /// A message naming `$PORT` when it is not a port number.
    pub fn binds(&self) -> Result<Vec<Bind>, String> {
        if !self.bind.is_empty() {
            return Ok(self.bind.clone());
        }
        let for_us = std::env::var("LISTEN_PID")
            .ok()
            .and_then(|pid| pid.parse::<u32>().ok())
            .is_some_and(|pid| pid == std::process::id());
        if let Some(count) = std::env::var("LISTEN_FDS")
            .ok()
            .and_then(|n| n.parse::<i32>().ok())
        {
            if for_us && count > 0 {
                return (3..3 + count)
                    .map(|fd| Bind::parse(&format!("fd://{fd}")))
                    .collect();
            }
        }
        match std::env::var("PORT") {
            Ok(port) if !port.is_empty() => Bind::parse(&format!("0.0.0.0:{port}"))
                .map(|b| vec![b])
                .map_err(|e| format!("$PORT: {e}")),
            _ => Ok(vec![
                Bind::parse(DEFAULT_BIND).expect("the default bind parses")
            ]),
        }
    }
}

/// Log levels, as Python's `logging` names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogLevel {
    /// Everything, including per-connection detail.
    Debug,
    /// Start, stop and listening addresses.
    Info,
    /// Things that were handled but look wrong.
    Warning,
    /// Application errors and failed requests.
    Error,
    /// Only what stops the server.
    Critical,
}

impl LogLevel {
    /// The level's name in Python's `logging` module.
    pub fn python_name(self) -> &'static str {
        match self {
            LogLevel::Debug => "DEBUG",
            LogLevel::Info => "INFO",
            LogLevel::Warning => "WARNING",
            LogLevel::Error => "ERROR",
            LogLevel::Critical => "CRITICAL",
        }
    }
}

/// Validate `--root-path`: empty, or `/` followed by the prefix, trailing `/` dropped.
///
/// # Errors
///
/// A message naming the option when the value does not start with `/`.
pub fn parse_root_path(value: &str) -> Result<String, String> {
    if value.is_empty() {
        return Ok(String::new());
    }
    if !value.starts_with('/') {
        return Err(format!("{value:?} must start with '/', e.g. /app"));
    }
    Ok(value.trim_end_matches('/').to_owned())
}

fn parse_env_pair(value: &str) -> Result<(String, String), String> {
    match value.split_once('=') {
        Some((key, val)) if !key.is_empty() => Ok((key.to_owned(), val.to_owned())),
        _ => Err(format!("{value:?} is not KEY=VALUE")),
    }
}

fn parse_umask(value: &str) -> Result<u32, String> {
    u32::from_str_radix(value.trim_start_matches("0o"), 8)
        .ok()
        .filter(|m| *m <= 0o777)
        .ok_or_else(|| format!("{value:?} is not an octal mask from 0 to 777"))
}

fn parse_access_format(value: &str) -> Result<String, String> {
    crate::wsgi::access_log::AccessFormat::parse(value).map(|_| value.to_owned())
}

fn parse_positive_seconds(value: &str) -> Result<f64, String> {
    match parse_seconds(value)? {
        secs if secs > 0.0 => Ok(secs),
        _ => Err(format!("{value:?} must be more than 0 seconds")),
    }
}

fn parse_worker_class(value: &str) -> Result<String, String> {
    match value {
        "sync" | "gthread" => Ok(value.to_owned()),
        class if class.to_ascii_lowercase().contains("uvicorn") || class.contains("Asgi") => {
            Err("ferrule serves WSGI applications, not ASGI: drop -k".into())
        }
        _ => Err(
            "ferrule has one worker type, an event loop that runs the application \
                  inline or on --threads N Python threads: drop -k, or give sync or gthread"
                .into(),
        ),
    }
}

/// The most seconds a timeout option takes: about 31 years. More would not
/// fit the clocks' arithmetic (`Duration::from_secs_f64` panics past `u64`
/// seconds, a deadline past `i64` seconds overflows).
const MAX_SECONDS: f64 = 1e9;

fn parse_seconds(value: &str) -> Result<f64, String> {
    match value.parse::<f64>() {
        Ok(secs) if secs > MAX_SECONDS => Err(format!(
            "{value:?} is too many seconds (at most {MAX_SECONDS}; 0 disables a timeout that allows it)"
        )),
        Ok(secs) if secs.is_finite() && secs >= 0.0 => Ok(secs),
        _ => Err(format!("{value:?} is not a number of seconds (0 or more)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(argv: &[&str]) -> Result<Args, clap::Error> {
        Args::try_parse_from(std::iter::once("ferrule").chain(argv.iter().copied()))
    }

    #[test]
    fn defaults() {
        let args = parse(&["m:app"]).unwrap();
        assert_eq!(args.app, "m:app");
        assert_eq!(args.threads, 1);
        assert_eq!(args.root_path, "");
        assert_eq!(args.workers, 1);
        assert!((args.timeout - 30.0).abs() < f64::EPSILON);
        assert!((args.send_timeout - 60.0).abs() < f64::EPSILON);
        assert_eq!(args.log_level, LogLevel::Info);
    }

    #[test]
    fn options_after_the_app_spec() {
        let args = parse(&["m:app", "--threads", "4", "-b", ":0", "--bind", "[::1]:0"]).unwrap();
        assert_eq!(args.threads, 4);
        assert_eq!(args.binds().unwrap().len(), 2);
    }

    #[test]
    fn bad_usage_exits_2() {
        for argv in [
            &["--threads", "0", "m:app"][..],
            &["--workers", "0", "m:app"],
            &["--timeout", "-1", "m:app"],
            &["--timeout", "1e300", "m:app"],
            &["--body-timeout", "1e300", "m:app"],
            &["--send-timeout", "-1", "m:app"],
            &["--send-timeout", "soon", "m:app"],
            &["--send-timeout", "inf", "m:app"],
            &["--send-timeout", "1e300", "m:app"],
            &["--bind", "x:y", "m:app"],
            &["--root-path", "app", "m:app"],
            &[],
            &["--no-such-option", "m:app"],
        ] {
            let err = parse(argv).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{argv:?}: {err}");
        }
    }

    #[test]
    fn root_path_normalised() {
        assert_eq!(parse_root_path("/app/").unwrap(), "/app");
        assert_eq!(parse_root_path("/").unwrap(), "");
    }
}
