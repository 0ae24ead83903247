//! Where option values come from: a TOML file, `FERRULE_*` variables, the command line.
//!
//! Precedence, lowest first: built-in defaults (with `$WEB_CONCURRENCY` as the
//! default of `--workers`, as gunicorn has it), the `-c FILE` TOML file, the
//! `FERRULE_<OPTION>` environment variables, the command line. The file is read
//! first and its values become clap's defaults, so clap applies the rest of the
//! order and validates every value with the same parsers, whatever its source.
//!
//! A config file holds option names as keys (`-` or `_` both work):
//!
//! ```toml
//! app = "myproject.wsgi:application"
//! bind = ["0.0.0.0:8000", "[::1]:8000"]
//! workers = 4
//! access-logfile = "-"
//! ```

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::parser::ValueSource;
use clap::{ArgAction, ArgMatches, Command, CommandFactory, FromArgMatches};

use super::cli::DEFAULT_BIND;
use super::Args;

/// Where a resolved option value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// ferrule's built-in default.
    Default,
    /// `$WEB_CONCURRENCY` (the default of `--workers`).
    WebConcurrency,
    /// The config file.
    File(PathBuf),
    /// A `FERRULE_*` environment variable.
    Env(String),
    /// The command line.
    CommandLine,
}

/// Parsed options and the source of each.
#[derive(Debug)]
pub struct Resolved {
    /// The options.
    pub args: Args,
    /// Option id → where its value came from.
    pub sources: BTreeMap<String, Source>,
    /// Option id → value as a TOML literal, for `--print-config`.
    pub values: BTreeMap<String, String>,
}

/// The environment variable of an option: `FERRULE_` + its long name in capitals.
pub fn env_name(long: &str) -> String {
    format!("FERRULE_{}", long.to_ascii_uppercase().replace('-', "_"))
}

/// The command with `FERRULE_*` variables attached to every option.
pub fn command() -> Command {
    let mut cmd = Args::command();
    let ids: Vec<(String, String)> = cmd
        .get_arguments()
        .filter_map(|a| Some((a.get_id().to_string(), a.get_long()?.to_owned())))
        .collect();
    for (id, long) in ids {
        cmd = cmd.mut_arg(id, |a| a.env(env_name(&long)));
    }
    cmd
}

/// Parse `argv` (program name first) with every source applied.
///
/// # Errors
///
/// A clap error (exit status 2) for anything invalid, whatever its source; a
/// config file that cannot be read or has an unknown key is reported the same way.
pub fn parse<I, T>(argv: I) -> Result<Resolved, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let argv: Vec<OsString> = argv.into_iter().map(Into::into).collect();
    let mut cmd = command();
    // First pass, lenient: only to find -c/--config (or FERRULE_CONFIG),
    // wherever it is among the other options (they are all known here, so
    // none of their values is taken for it).
    let config = cmd
        .clone()
        .ignore_errors(true)
        .disable_help_flag(true)
        .disable_version_flag(true)
        .try_get_matches_from(&argv)
        .ok()
        .and_then(|m| m.get_one::<PathBuf>("config").cloned());
    let mut file_ids = Vec::new();
    if let Some(path) = &config {
        let table = read_table(path).map_err(|e| cmd.error(clap::error::ErrorKind::Io, e))?;
        for (key, value) in table {
            // Keys are the options' long names, `-` or `_` alike (`max-requests`,
            // `pid`), or the positional `app`.
            let wanted = key.replace('_', "-");
            let Some(arg) = cmd
                .get_arguments()
                .find(|a| {
                    a.get_long().map_or(a.get_id().as_str() == wanted, |long| {
                        long.replace('_', "-") == wanted
                    })
                })
                .cloned()
            else {
                let msg = format!(
                    "config file {}: unknown option {key:?} (keys are the long option names, e.g. workers, max-requests)",
                    path.display()
                );
                return Err(cmd.error(clap::error::ErrorKind::UnknownArgument, msg));
            };
            let id = arg.get_id().to_string();
            let flag = matches!(arg.get_action(), ArgAction::SetTrue);
            let values = toml_values(&value).map_err(|why| {
                let msg = format!("config file {}: {key}: {why}", path.display());
                cmd.error(clap::error::ErrorKind::InvalidValue, msg)
            })?;
            let values: Vec<String> = if flag {
                values.into_iter().take(1).collect()
            } else {
                values
            };
            // Checked here, where the file can be named: as a default value
            // clap would report it as if it came from the command line.
            let long = arg.get_long().filter(|_| !flag);
            for value in values.iter().filter(|_| long.is_some()) {
                // `--name=value`: a value that starts with `-` stays a value.
                let given = format!("--{}={value}", long.unwrap_or_default());
                let alone = Command::new("ferrule")
                    .no_binary_name(true)
                    .arg(arg.clone().required(false).env(None::<&str>))
                    .try_get_matches_from([given]);
                if let Err(err) = alone {
                    let why = err.to_string();
                    let why = why.lines().next().unwrap_or_default();
                    let why = why.strip_prefix("error: ").unwrap_or(why);
                    let msg = format!("config file {}: {key}: {why}", path.display());
                    return Err(cmd.error(clap::error::ErrorKind::InvalidValue, msg));
                }
            }
            cmd = cmd.mut_arg(id.as_str(), |a| a.default_values(values).required(false));
            file_ids.push(id);
        }
    }
    let web_concurrency = std::env::var("WEB_CONCURRENCY")
        .ok()
        .filter(|v| !v.is_empty());
    if let Some(n) = &web_concurrency {
        if !file_ids.iter().any(|id| id == "workers") {
            let n = n.clone();
            cmd = cmd.mut_arg("workers", |a| a.default_value(n));
        }
    }
    let matches = match cmd.try_get_matches_from_mut(&argv) {
        Ok(matches) => matches,
        Err(err) if missing_only_the_app(&err) => {
            let place = match &config {
                Some(path) => format!(" or as `app = \"MODULE:APP\"` in {}", path.display()),
                None => String::new(),
            };
            let msg = format!(
                "no application given: name it as MODULE:APP on the command line{place}, \
                 e.g. ferrule examples.hello:app"
            );
            return Err(cmd.error(clap::error::ErrorKind::MissingRequiredArgument, msg));
        }
        Err(err) => return Err(err),
    };
    let args = Args::from_arg_matches(&matches).map_err(|e| e.format(&mut cmd))?;
    let mut sources = BTreeMap::new();
    let mut values = BTreeMap::new();
    for arg in cmd.get_arguments() {
        let id = arg.get_id().as_str();
        if matches!(
            id,
            "help" | "version" | "config" | "print_config" | "check_config"
        ) {
            continue;
        }
        let source = match matches.value_source(id) {
            Some(ValueSource::CommandLine) => Source::CommandLine,
            Some(ValueSource::EnvVariable) => Source::Env(env_name(arg.get_long().unwrap_or(id))),
            _ if file_ids.iter().any(|f| f == id) => {
                Source::File(config.clone().unwrap_or_default())
            }
            _ if id == "workers" && web_concurrency.is_some() => Source::WebConcurrency,
            _ => Source::Default,
        };
        let key = arg.get_long().unwrap_or(id).replace('_', "-");
        let multiple = arg.get_num_args().is_some_and(|n| n.max_values() > 1)
            || matches!(arg.get_action(), ArgAction::Append);
        let Some(value) = toml_literal(&matches, id, multiple) else {
            continue; // unset, no default: nothing to print
        };
        sources.insert(key.clone(), source);
        values.insert(key, value);
    }
    if values.get("bind").map_or(true, |v| v == "[]") {
        // --bind has no clap default: show what binds() will use.
        if let Ok(binds) = args.binds() {
            let list: Vec<String> = binds.iter().map(|b| toml_string(&b.spec)).collect();
            values.insert("bind".into(), format!("[{}]", list.join(", ")));
            // `Args::binds`' order: systemd's sockets, then $PORT.
            let source = match binds.first() {
                Some(bind) if bind.fd.is_some() => Source::Env("LISTEN_FDS".into()),
                Some(bind) if bind.spec != DEFAULT_BIND => Source::Env("PORT".into()),
                _ => Source::Default,
            };
            sources.insert("bind".into(), source);
        }
    }
    Ok(Resolved {
        args,
        sources,
        values,
    })
}

/// Whether `err` says the one thing missing is the positional MODULE:APP
/// (not an option another requires, such as `--keyfile` for `--certfile`).
fn missing_only_the_app(err: &clap::Error) -> bool {
    use clap::error::{ContextKind, ContextValue};
    err.kind() == clap::error::ErrorKind::MissingRequiredArgument
        && matches!(
            err.get(ContextKind::InvalidArg),
            Some(ContextValue::Strings(missing))
                if missing.len() == 1 && missing[0].contains("MODULE:APP")
        )
}

fn read_table(path: &Path) -> Result<toml::Table, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read config file {}: {e}", path.display()))?;
    text.parse::<toml::Table>().map_err(|e| {
        format!(
            "config file {} is not valid TOML: {}",
            path.display(),
            e.message()
        )
    })
}

/// A TOML value as the strings clap parses.
fn toml_values(value: &toml::Value) -> Result<Vec<String>, String> {
    Ok(match value {
        toml::Value::String(s) => vec![s.clone()],
        toml::Value::Integer(i) => vec![i.to_string()],
        toml::Value::Float(f) => vec![f.to_string()],
        toml::Value::Boolean(b) => vec![b.to_string()],
        toml::Value::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                match item {
                    toml::Value::Array(_) | toml::Value::Table(_) => {
                        return Err("nested arrays and tables are not option values".into())
                    }
                    other => out.extend(toml_values(other)?),
                }
            }
            out
        }
        toml::Value::Table(_) | toml::Value::Datetime(_) => {
            return Err("expected a string, number, boolean or array".into())
        }
    })
}

fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

/// The raw value(s) of `id` as a TOML literal (`None` when unset); options
/// that take several values are always arrays, so the output reads back.
fn toml_literal(matches: &ArgMatches, id: &str, multiple: bool) -> Option<String> {
    let raw: Vec<String> = matches
        .get_raw(id)
        .map(|vals| vals.map(|v| v.to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    let quote = |s: &str| {
        if s.parse::<f64>().is_ok() || s == "true" || s == "false" {
            s.to_owned()
        } else {
            toml_string(s)
        }
    };
    let list = || {
        let items: Vec<String> = raw.iter().map(|s| toml_string(s)).collect();
        format!("[{}]", items.join(", "))
    };
    match raw.as_slice() {
        [] if multiple => Some("[]".to_owned()),
        [] => None,
        _ if multiple => Some(list()),
        [one] => Some(quote(one)),
        _ => Some(list()),
    }
}

/// `--print-config`: one `key = value  # source` line per option.
pub fn render(resolved: &Resolved) -> String {
    let mut out = String::new();
    for (id, value) in &resolved.values {
        let source = match &resolved.sources[id] {
            Source::Default => "default".to_owned(),
            Source::WebConcurrency => "$WEB_CONCURRENCY".to_owned(),
            Source::File(p) => format!("file {}", p.display()),
            Source::Env(name) => format!("${name}"),
            Source::CommandLine => "command line".to_owned(),
        };
        out.push_str(&format!("{id} = {value}  # {source}\n"));
    }
    out
}

/// The README's option table, generated from the command definition.
pub fn options_markdown() -> String {
    let cmd = command();
    let mut out =
        String::from("| option | environment | default | what it does |\n|---|---|---|---|\n");
    for arg in cmd.get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        if matches!(long, "help" | "version") {
            continue;
        }
        let mut name = format!("`--{long}`");
        if let Some(short) = arg.get_short() {
            name = format!("`-{short}`, {name}");
        }
        let default: Vec<String> = arg
            .get_default_values()
            .iter()
            .map(|v| v.to_string_lossy().into_owned())
            .collect();
        let default = match default.as_slice() {
            [] if long == "bind" => "`127.0.0.1:8000`".to_owned(),
            [] if matches!(arg.get_action(), ArgAction::SetTrue) => "off".to_owned(),
            [] => "none".to_owned(),
            [one] if one.is_empty() => "empty".to_owned(),
            values => format!("`{}`", values.join(" ")),
        };
        let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
        let help = help.replace('|', "\\|");
        out.push_str(&format!(
            "| {name} | `{}` | {default} | {help} |\n",
            env_name(long)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> tempfile_path::Path {
        tempfile_path::Path::new(text)
    }

    /// A tiny temporary-file helper (no extra crate).
    mod tempfile_path {
        pub struct Path(pub std::path::PathBuf);
        impl Path {
            pub fn new(text: &str) -> Path {
                // One name per file of the process: tests run in parallel.
                static MADE: std::sync::atomic::AtomicUsize =
                    std::sync::atomic::AtomicUsize::new(0);
                let path = std::env::temp_dir().join(format!(
                    "ferrule-config-{}-{}.toml",
                    std::process::id(),
                    MADE.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
                ));
                std::fs::write(&path, text).unwrap();
                Path(path)
            }
        }
        impl Drop for Path {
            fn drop(&mut self) {
                let _ = std::fs::remove_file(&self.0);
            }
        }
    }

    #[test]
    fn file_then_env_then_command_line() {
        let file = write("app = \"m:app\"\nworkers = 3\nthreads = 2\nbind = [\"127.0.0.1:0\", \"127.0.0.1:0\"]\npreload = true\n");
        let path = file.0.to_str().unwrap().to_owned();
        let r = parse(["ferrule", "-c", &path, "--threads", "5"]).unwrap();
        assert_eq!(r.args.app, "m:app");
        assert_eq!(r.args.workers, 3);
        assert_eq!(r.args.threads, 5);
        assert!(r.args.preload);
        assert_eq!(r.args.bind.len(), 2);
        assert_eq!(r.sources["workers"], Source::File(file.0.clone()));
        assert_eq!(r.sources["threads"], Source::CommandLine);
        assert_eq!(r.sources["timeout"], Source::Default);
        let printed = render(&r);
        assert!(printed.contains("threads = 5  # command line"), "{printed}");
        assert!(
            printed.contains("bind = [\"127.0.0.1:0\", \"127.0.0.1:0\"]"),
            "{printed}"
        );
    }

    #[test]
    fn printed_config_reads_back() {
        let r = parse([
            "ferrule",
            "m:app",
            "-w",
            "3",
            "-e",
            "A=1",
            "--pid",
            "/tmp/x.pid",
        ])
        .unwrap();
        let printed = render(&r);
        assert!(
            printed.contains("bind = [\"127.0.0.1:8000\"]  # default"),
            "{printed}"
        );
        assert!(printed.contains("env = [\"A=1\"]"), "{printed}");
        assert!(printed.contains("pid = \"/tmp/x.pid\""), "{printed}");
        assert!(
            !printed.contains("ca-certs"),
            "unset options are left out: {printed}"
        );
        let file = write(
            &printed
                .lines()
                .map(|l| l.split("  #").next().unwrap())
                .collect::<Vec<_>>()
                .join("\n"),
        );
        let again = parse(["ferrule", "-c", file.0.to_str().unwrap()]).unwrap();
        assert_eq!(again.args.app, "m:app");
        assert_eq!(again.args.workers, 3);
        assert_eq!(again.args.env, vec![("A".to_owned(), "1".to_owned())]);
        assert_eq!(
            again.args.pidfile.as_deref(),
            Some(std::path::Path::new("/tmp/x.pid"))
        );
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_file_and_key() {
        let file = write("wokers = 3\n");
        let err = parse(["ferrule", "-c", file.0.to_str().unwrap(), "m:app"]).unwrap_err();
        assert!(
            err.to_string().contains("unknown option \"wokers\""),
            "{err}"
        );
        assert_eq!(err.exit_code(), 2);
        let file = write("threads = 0\n");
        let err = parse(["ferrule", "-c", file.0.to_str().unwrap(), "m:app"]).unwrap_err();
        assert!(err.to_string().contains("threads"), "{err}");
        let file = write("workers = \"two\"\n");
        let path = file.0.to_str().unwrap();
        let err = parse(["ferrule", "-c", path, "m:app"]).unwrap_err();
        let expected =
            format!("config file {path}: workers: invalid value 'two' for '--workers <N>'");
        assert!(err.to_string().contains(&expected), "{err}");
        assert_eq!(err.exit_code(), 2);
        // A value the command line overrides is still the file's mistake.
        let err = parse(["ferrule", "-c", path, "-w", "2", "m:app"]).unwrap_err();
        assert!(err.to_string().contains(&expected), "{err}");
        // A missing option another requires keeps clap's message.
        let err = parse(["ferrule", "--certfile", "c.pem", "m:app"]).unwrap_err();
        assert!(err.to_string().contains("--keyfile"), "{err}");
        let file = write("workers = 2\n");
        let path = file.0.to_str().unwrap();
        let err = parse(["ferrule", "-c", path]).unwrap_err();
        assert!(
            err.to_string().contains(&format!(
                "no application given: name it as MODULE:APP on the command line or as `app = \"MODULE:APP\"` in {path}"
            )),
            "{err}"
        );
        let err = parse(["ferrule", "-c", "/nonexistent/ferrule.toml", "m:app"]).unwrap_err();
        assert!(err.to_string().contains("cannot read config file"), "{err}");
    }

    #[test]
    fn the_config_file_is_read_wherever_it_is_given() {
        let file = write("workers = 3\n");
        let path = file.0.to_str().unwrap();
        let joined = format!("--config={path}");
        for argv in [
            vec!["ferrule", "--threads", "2", "-c", path, "m:app"],
            vec!["ferrule", "m:app", "--config", path],
            vec!["ferrule", "-b", "127.0.0.1:0", &joined, "m:app"],
        ] {
            let r = parse(argv.clone()).unwrap();
            assert_eq!(r.args.workers, 3, "{argv:?}");
            assert_eq!(r.sources["workers"], Source::File(file.0.clone()));
        }
    }

    #[test]
    fn send_timeout_from_a_file_and_a_bad_one_named() {
        let file = write("app = \"m:app\"\nsend-timeout = 2.5\n");
        let r = parse(["ferrule", "-c", file.0.to_str().unwrap()]).unwrap();
        assert!((r.args.send_timeout - 2.5).abs() < f64::EPSILON);
        assert_eq!(r.sources["send-timeout"], Source::File(file.0.clone()));
        let file = write("send_timeout = -1\n");
        let err = parse(["ferrule", "-c", file.0.to_str().unwrap(), "m:app"]).unwrap_err();
        assert!(err.to_string().contains("--send-timeout"), "{err}");
        assert_eq!(err.exit_code(), 2);
    }

    #[test]
    fn every_option_has_an_env_name_in_the_table() {
        let table = options_markdown();
        assert!(
            table.contains("| `-b`, `--bind` | `FERRULE_BIND` |"),
            "{table}"
        );
        assert!(table.contains("`FERRULE_MAX_REQUESTS_JITTER`"));
        assert_eq!(env_name("max-requests"), "FERRULE_MAX_REQUESTS");
    }
}
