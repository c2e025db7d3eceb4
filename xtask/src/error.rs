//! The one error type of the xtask: "the tool could not do its job" (exit code 2).
//!
//! Every variant names the file or input that was wrong and carries a hint saying what to do, so
//! that a message for exit code 2 is actionable on its own. A failed gate is not an error: verbs
//! return [`crate::Outcome`] for that.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
        help: String,
    },
    #[error("{}: cannot write: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {detail}", path.display())]
    Parse {
        path: PathBuf,
        detail: String,
        help: String,
    },
    #[error("{}: key `{key}`: {detail}", path.display())]
    Policy {
        path: PathBuf,
        key: String,
        detail: String,
    },
    #[error("{what}: {detail}")]
    Input {
        what: String,
        detail: String,
        help: String,
    },
    #[error("`{command}` failed: {detail}")]
    Command {
        command: String,
        detail: String,
        help: String,
    },
}

impl Error {
    /// What the user can do about it, printed under the message.
    pub fn help(&self) -> String {
        match self {
            Error::Read { help, .. }
            | Error::Parse { help, .. }
            | Error::Input { help, .. }
            | Error::Command { help, .. } => help.clone(),
            Error::Write { .. } => {
                "check that the directory is writable and the disk is not full".to_owned()
            }
            Error::Policy { .. } => {
                "fix baselines/policy.toml; its comments document every key".to_owned()
            }
        }
    }

    pub fn input(
        what: impl Into<String>,
        detail: impl Into<String>,
        help: impl Into<String>,
    ) -> Self {
        Error::Input {
            what: what.into(),
            detail: detail.into(),
            help: help.into(),
        }
    }

    pub fn parse(
        path: impl Into<PathBuf>,
        detail: impl Into<String>,
        help: impl Into<String>,
    ) -> Self {
        Error::Parse {
            path: path.into(),
            detail: detail.into(),
            help: help.into(),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Reads a file, attaching its path (and a hint) to the error.
pub fn read_to_string(path: &std::path::Path, help: &str) -> Result<String> {
    std::fs::read_to_string(path).map_err(|source| Error::Read {
        path: path.to_owned(),
        source,
        help: help.to_owned(),
    })
}

/// Parses JSON, attaching the file's path to the error (serde_json's message has line and column).
pub fn parse_json<T: serde::de::DeserializeOwned>(
    path: &std::path::Path,
    text: &str,
    help: &str,
) -> Result<T> {
    serde_json::from_str(text).map_err(|e| Error::parse(path, e.to_string(), help))
}

/// Writes a file atomically: a temporary file beside it, then a rename, so a reader never sees half
/// a run file and a crash never destroys the previous one.
pub fn write_atomic(path: &std::path::Path, contents: &[u8]) -> Result<()> {
    let err = |source| Error::Write {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{file_name}.tmp.{}", std::process::id()));
    std::fs::write(&tmp, contents).map_err(err)?;
    std::fs::rename(&tmp, path).map_err(|source| {
        let _ = std::fs::remove_file(&tmp);
        Error::Write {
            path: path.to_owned(),
            source,
        }
    })
}
