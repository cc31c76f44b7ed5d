//! Hand-parsed flags: `--name value` and bare `--flag`.

use std::collections::HashMap;
use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::str::FromStr;

/// Flags that take no value.
const BARE_FLAGS: &[&str] = &["no-wait"];

/// A bad command line, in words.
#[derive(Debug)]
pub struct ArgError(String);

impl fmt::Display for ArgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The flags of one command, by name without the dashes.
#[derive(Debug, Default)]
pub struct Args {
    values: HashMap<String, Option<String>>,
}

impl Args {
    /// Reads `--name value` pairs and bare flags.
    pub fn parse(argv: impl IntoIterator<Item = String>) -> Result<Args, ArgError> {
        let mut argv = argv.into_iter();
        let mut values = HashMap::new();
        while let Some(arg) = argv.next() {
            let Some(name) = arg.strip_prefix("--") else {
                return Err(ArgError(format!("unexpected argument `{arg}`")));
            };
            let (name, value) = match name.split_once('=') {
                Some((name, value)) => (name.to_string(), Some(value.to_string())),
                None if BARE_FLAGS.contains(&name) => (name.to_string(), None),
                None => {
                    let value = argv
                        .next()
                        .ok_or_else(|| ArgError(format!("--{name} needs a value")))?;
                    (name.to_string(), Some(value))
                }
            };
            if values.insert(name.clone(), value).is_some() {
                return Err(ArgError(format!("--{name} given twice")));
            }
        }
        Ok(Args { values })
    }

    /// Fails on any flag not in `known`.
    pub fn only(&self, known: &[&str]) -> Result<(), ArgError> {
        match self
            .values
            .keys()
            .find(|name| !known.contains(&name.as_str()))
        {
            Some(name) => Err(ArgError(format!("unknown flag --{name}"))),
            None => Ok(()),
        }
    }

    fn value(&self, name: &str) -> Result<Option<&str>, ArgError> {
        match self.values.get(name) {
            None => Ok(None),
            Some(Some(value)) => Ok(Some(value)),
            Some(None) => Err(ArgError(format!("--{name} needs a value"))),
        }
    }

    /// A number flag, or `default` when absent.
    pub fn number<T: FromStr>(&self, name: &str, default: T) -> Result<T, ArgError> {
        match self.value(name)? {
            None => Ok(default),
            Some(text) => text
                .parse()
                .map_err(|_| ArgError(format!("--{name} `{text}` is not a valid number"))),
        }
    }

    /// Whether a bare flag was given.
    pub fn flag(&self, name: &str) -> Result<bool, ArgError> {
        match self.values.get(name) {
            None => Ok(false),
            Some(None) => Ok(true),
            Some(Some(_)) => Err(ArgError(format!("--{name} takes no value"))),
        }
    }

    /// The one `--addr`, which must be a loopback address.
    pub fn addr(&self) -> Result<SocketAddr, ArgError> {
        let addrs = self.addrs()?;
        match addrs.as_slice() {
            [addr] => Ok(*addr),
            _ => Err(ArgError("give one --addr".into())),
        }
    }

    /// `--addr A[,B…]`, each a loopback address.
    pub fn addrs(&self) -> Result<Vec<SocketAddr>, ArgError> {
        let text = self
            .value("addr")?
            .ok_or_else(|| ArgError("--addr is required".into()))?;
        text.split(',')
            .map(|one| {
                let addr = one
                    .to_socket_addrs()
                    .ok()
                    .and_then(|mut addrs| addrs.next())
                    .ok_or_else(|| ArgError(format!("--addr `{one}` is not HOST:PORT")))?;
                if !addr.ip().is_loopback() {
                    return Err(ArgError(format!(
                        "--addr `{one}` is not a loopback address"
                    )));
                }
                Ok(addr)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Args, ArgError> {
        Args::parse(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn values_flags_and_defaults() {
        let args = parse(&["--addr", "127.0.0.1:80", "--conns=7", "--no-wait"]).unwrap();
        assert_eq!(args.number("conns", 1usize).unwrap(), 7);
        assert_eq!(args.number("secs", 5.0f64).unwrap(), 5.0);
        assert!(args.flag("no-wait").unwrap());
        assert_eq!(args.addr().unwrap().port(), 80);
        assert!(args.only(&["addr", "conns", "no-wait"]).is_ok());
        assert!(args.only(&["addr"]).is_err());
    }

    #[test]
    fn rejects_bad_input() {
        assert!(parse(&["--conns"]).is_err());
        assert!(parse(&["stray"]).is_err());
        assert!(parse(&["--secs", "1", "--secs", "2"]).is_err());
        let remote = parse(&["--addr", "10.0.0.1:80"]).unwrap();
        assert!(remote.addr().is_err());
        let two = parse(&["--addr", "127.0.0.1:1,127.0.0.1:2"]).unwrap();
        assert_eq!(two.addrs().unwrap().len(), 2);
        assert!(two.addr().is_err());
        let bad = parse(&["--conns", "many"]).unwrap();
        assert!(bad.number("conns", 1usize).is_err());
    }
}
