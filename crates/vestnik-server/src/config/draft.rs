//! A configuration being put together from its layers (the defaults, a file, then `VESTNIK_*`
//! variables and flags) and checked once, at the end, so that each problem names what the user
//! wrote: the file and line of a key, or the flag or variable that set it.
//!
//! This module must never read the environment or the command line itself: `main` says which keys
//! a flag or variable set ([`Draft::given`]).

use std::path::Path;

use vestnik_broker::App;

use super::recover::{self, ParseProblem};
use super::{line_of, Config, ConfigError, Located, Problem};

/// A [`Config`] before its one check.
#[derive(Debug, Clone)]
pub struct Draft {
    /// The values so far: change them, recording each with [`Draft::given`], then
    /// [`Draft::finish`].
    pub config: Config,
    /// The file read, if any: its text is searched for a key's line when a problem is reported.
    file: Option<SourceFile>,
    /// Problems found while reading the file (a value of the wrong type, an unknown key), kept so
    /// they are reported with the rest rather than one at a time.
    read_problems: Vec<ParseProblem>,
    /// Keys set by flags or variables, in the order they were set; the last one for a key wins.
    given: Vec<Given>,
}

/// The config file as read, for placing problems at their line.
#[derive(Debug, Clone)]
struct SourceFile {
    /// As the user named it, so the report shows the path they typed.
    path: String,
    text: String,
}

/// A key set by a flag or a variable, and that flag or variable as the user wrote it.
#[derive(Debug, Clone)]
struct Given {
    /// The dotted key, as problems name it.
    key: String,
    /// The flag or variable, as the user wrote it.
    name: String,
}

impl Draft {
    /// The built-in defaults, with no file.
    pub fn defaults() -> Self {
        Self {
            config: Config::default(),
            file: None,
            read_problems: Vec::new(),
            given: Vec::new(),
        }
    }

    /// Reads a TOML file. Fails only when the file cannot be read or is not TOML; bad values are
    /// kept for [`Draft::finish`], which reports them all.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: shown.clone(),
            source,
        })?;
        Self::from_toml(&text, &shown)
    }

    /// Reads TOML text; `path` labels the problems.
    pub fn from_toml(text: &str, path: &str) -> Result<Self, ConfigError> {
        let (mut config, read_problems) = recover::parse(text, path)?;
        if config.apps.is_empty() {
            config.apps.push(App::default());
        }
        Ok(Self {
            config,
            file: Some(SourceFile {
                path: path.into(),
                text: text.into(),
            }),
            read_problems,
            given: Vec::new(),
        })
    }

    /// Records that `key` (a dotted path such as `server.port` or `apps.0.id`) was set by `name`
    /// (`--port`, `VESTNIK_PORT`), so that a problem with it names that, not the file's line.
    pub fn given(&mut self, key: impl Into<String>, name: impl Into<String>) {
        self.given.push(Given {
            key: key.into(),
            name: name.into(),
        });
    }

    /// Checks the values as a start does: every problem at once, each placed where it was written.
    pub fn finish(self) -> Result<Config, ConfigError> {
        let problems = self.config.problems();
        self.conclude(problems)
    }

    /// Like [`Draft::finish`], and also loads the TLS certificate and key as the server will
    /// (`vestnik config check`).
    pub fn finish_with_tls(self) -> Result<Config, ConfigError> {
        let mut problems = self.config.problems();
        problems.extend(self.config.tls_problems());
        self.conclude(problems)
    }

    /// Places every problem, sorts them (flags and variables first, then the file by line), and
    /// returns the config only when there are none: a start either has a whole valid config or
    /// reports all of what is wrong at once.
    fn conclude(self, problems: Vec<Problem>) -> Result<Config, ConfigError> {
        let path = self.file.as_ref().map(|f| f.path.as_str());
        let mut located: Vec<(usize, Located)> = self
            .read_problems
            .iter()
            .map(|p| {
                let place = path.map(|path| format!("{path}:{}", p.line));
                (p.line, Located::new(place, p.message.clone()))
            })
            .collect();
        for problem in problems {
            located.push(self.place(problem));
        }
        if located.is_empty() {
            return Ok(self.config);
        }
        // Flags and variables first, then the file in line order.
        located.sort_by_key(|(line, _)| *line);
        Err(ConfigError::Invalid {
            problems: located.into_iter().map(|(_, l)| l).collect(),
        })
    }

    /// Where `problem` was written, and its message in the user's words; the line (0 when none)
    /// orders the report.
    fn place(&self, problem: Problem) -> (usize, Located) {
        let mut message = problem.message;
        for given in &self.given {
            message = replace_key(&message, &given.key, &given.name);
        }
        if let Some(given) = self.given.iter().rev().find(|g| g.key == problem.key) {
            if !message.contains(&given.name) {
                message = format!("{}: {message}", given.name);
            }
            return (0, Located::new(None, message));
        }
        match &self.file {
            Some(file) => match line_of(&file.text, &problem.key) {
                Some(line) => (
                    line,
                    Located::new(Some(format!("{}:{line}", file.path)), message),
                ),
                None => (0, Located::new(Some(file.path.clone()), message)),
            },
            None => (0, Located::new(None, message)),
        }
    }
}

/// `message` with each whole occurrence of the dotted `key` replaced by `name` (not inside a longer
/// key: `server.metrics` is left alone in `server.metrics_port`).
fn replace_key(message: &str, key: &str, name: &str) -> String {
    let is_key_char = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '.';
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(at) = rest.find(key) {
        let before = rest[..at].chars().next_back();
        let after = rest[at + key.len()..].chars().next();
        let whole = !before.is_some_and(is_key_char)
            && !after.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        out.push_str(&rest[..at]);
        out.push_str(if whole { name } else { key });
        rest = &rest[at + key.len()..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(draft: Draft) -> String {
        draft.finish().unwrap_err().to_string()
    }

    /// A bad value set by `--port` is reported as `--port`, the thing the user typed, not as
    /// `server.port`.
    #[test]
    fn a_flag_is_named_instead_of_the_key() {
        let mut d = Draft::from_toml("[server]\nport = 7000\n", "x.toml").unwrap();
        d.config.server.activity_timeout = 0;
        d.given("server.activity_timeout", "--activity-timeout");
        let err = report(d);
        assert!(
            err.starts_with("--activity-timeout must be at least 1") && !err.contains("x.toml"),
            "{err}"
        );
    }

    /// A problem points at `file:line` when the file set the key, at the variable when one overrode
    /// it.
    #[test]
    fn the_file_line_or_the_variable() {
        let d = Draft::from_toml("[server]\n\nactivity_timeout = 0\n", "x.toml").unwrap();
        assert!(report(d).starts_with("x.toml:3: server.activity_timeout"));
        let mut d = Draft::defaults();
        d.config.server.port = 9601;
        d.given("server.port", "VESTNIK_PORT");
        let err = report(d);
        assert!(err.contains("is also VESTNIK_PORT"), "{err}");
    }

    /// `server.metrics` must not be rewritten inside `server.metrics_port`.
    #[test]
    fn replaces_whole_keys_only() {
        assert_eq!(
            replace_key(
                "server.metrics_port and server.metrics.",
                "server.metrics",
                "--x"
            ),
            "server.metrics_port and --x."
        );
    }
}
