//! Errors the kernels report; each names the argument at fault (and the list, where one is).

use std::fmt;

#[derive(Debug, Clone, PartialEq)]
pub enum Error {
    /// `arg` has the wrong length, shape or value.
    Invalid { arg: &'static str, msg: String },
    /// `arg` holds NaN or an infinity in list `list`.
    NonFinite { arg: &'static str, list: usize },
}

impl Error {
    pub fn invalid(arg: &'static str, msg: impl Into<String>) -> Self {
        Error::Invalid { arg, msg: msg.into() }
    }

    pub fn arg(&self) -> &'static str {
        match self {
            Error::Invalid { arg, .. } | Error::NonFinite { arg, .. } => arg,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Invalid { arg, msg } => write!(f, "{arg}: {msg}"),
            Error::NonFinite { arg, list } => write!(f, "{arg} contains NaN or inf (list {list})"),
        }
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;
