//! Config errors and where they point. In: a file's path and text, a span
//! or a `RawError` from the TOML layer. Out: a `ConfigError` naming the file,
//! line and column (in characters), and the dotted key; and `read`, which turns
//! an I/O failure into `ConfigError::Read`.

use std::ops::Range;
use std::path::{Path, PathBuf};

use super::raw::{self, RawError};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}:{line}:{column}: {key}: {problem}", .file.display())]
    Invalid {
        file: PathBuf,
        line: usize,
        column: usize,
        key: String,
        problem: String,
    },
    #[error("cannot read {}", .file.display())]
    Read {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A problem with no single position (e.g. no watches and no include).
    #[error("{}: {problem}", .file.display())]
    File { file: PathBuf, problem: String },
}

/// One file's text and name, to turn spans into `ConfigError::Invalid`.
pub(super) struct Source<'a> {
    pub path: &'a Path,
    pub text: &'a str,
}

impl Source<'_> {
    pub fn invalid(
        &self,
        span: Range<usize>,
        key: &str,
        problem: impl Into<String>,
    ) -> ConfigError {
        let (line, column) = raw::position(self.text, span.start);
        ConfigError::Invalid {
            file: self.path.to_path_buf(),
            line,
            column,
            key: key.to_string(),
            problem: problem.into(),
        }
    }

    pub fn raw_error(&self, err: RawError) -> ConfigError {
        match err {
            RawError::At {
                line,
                column,
                key,
                problem,
            } => ConfigError::Invalid {
                file: self.path.to_path_buf(),
                line,
                column,
                key,
                problem,
            },
            RawError::Whole { problem } => ConfigError::File {
                file: self.path.to_path_buf(),
                problem,
            },
        }
    }
}

pub(super) fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        file: path.to_path_buf(),
        source,
    })
}
