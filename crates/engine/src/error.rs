use kappa_log::LogError;
use kappa_store::StoreError;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// SQL that does not parse, with the parser's position.
    #[error("SQL syntax error: {0}")]
    Syntax(String),
    /// SQL that parses but cannot be planned (unknown table, type error...).
    #[error("{0}")]
    Plan(String),
    /// A view definition outside what Kappa maintains incrementally.
    #[error("cannot maintain this view incrementally: {construct} is not supported{hint}")]
    Unsupported { construct: String, hint: String },
    #[error("record {index} of the batch for topic {topic} does not fit its schema{}: {reason}; nothing was appended", field.as_ref().map(|f| format!(" (field {f:?})")).unwrap_or_default())]
    RecordRejected {
        topic: String,
        index: usize,
        field: Option<String>,
        reason: String,
    },
    #[error("unknown topic or view {0:?}")]
    NotFound(String),
    #[error("{0:?} already exists")]
    Exists(String),
    #[error("AS OF {requested}: {reason}")]
    AsOf { requested: String, reason: String },
    #[error(
        "timed out after {waited_ms} ms waiting for view {view} to reach {token} (it is at {frontier})"
    )]
    Timeout {
        view: String,
        token: String,
        frontier: String,
        waited_ms: u64,
    },
    #[error(transparent)]
    Log(#[from] LogError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("query failed: {0}")]
    Query(String),
    /// An operation refused because of the state things are in (what
    /// blocks it, and what to do, in the message).
    #[error("{0}")]
    Refused(String),
    /// A view that cannot answer for now (rebuilt in place).
    #[error("{0}")]
    Unavailable(String),
    /// A snapshot file that cannot be written, read or used.
    #[error("snapshot {path}: {reason}")]
    Snapshot { path: String, reason: String },
}

impl From<datafusion::arrow::error::ArrowError> for EngineError {
    fn from(e: datafusion::arrow::error::ArrowError) -> Self {
        EngineError::Query(e.to_string())
    }
}

impl From<datafusion::error::DataFusionError> for EngineError {
    fn from(e: datafusion::error::DataFusionError) -> Self {
        use datafusion::error::DataFusionError as D;
        // DataFusion wraps the cause (in a diagnostic or a context):
        // classify by the root, report the whole chain.
        match e.find_root() {
            D::SQL(e, _) => EngineError::Syntax(e.to_string()),
            D::Plan(m) => EngineError::Plan(m.clone()),
            D::SchemaError(..) => EngineError::Plan(e.strip_backtrace()),
            _ => EngineError::Query(e.strip_backtrace()),
        }
    }
}
