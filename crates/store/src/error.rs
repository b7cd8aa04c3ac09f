use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("the state store {path} is in use by another process")]
    Locked { path: PathBuf },
    #[error("cannot open the state store {path}: {detail}")]
    Open { path: PathBuf, detail: String },
    /// A failed commit is fatal to the writer: the caller must reopen the
    /// store (which recovers the last committed state), never retry.
    #[error("state store commit failed: {0}; reopen to recover the last committed state")]
    CommitFailed(String),
    #[error("state store I/O failed: {0}")]
    Io(String),
    #[error("state store data is damaged: {0}")]
    Corrupt(String),
}

impl From<redb::TransactionError> for StoreError {
    fn from(e: redb::TransactionError) -> Self {
        StoreError::Io(e.to_string())
    }
}

impl From<redb::TableError> for StoreError {
    fn from(e: redb::TableError) -> Self {
        StoreError::Io(e.to_string())
    }
}

impl From<redb::StorageError> for StoreError {
    fn from(e: redb::StorageError) -> Self {
        match e {
            redb::StorageError::Corrupted(detail) => StoreError::Corrupt(detail),
            other => StoreError::Io(other.to_string()),
        }
    }
}

impl From<redb::CommitError> for StoreError {
    fn from(e: redb::CommitError) -> Self {
        StoreError::CommitFailed(e.to_string())
    }
}
