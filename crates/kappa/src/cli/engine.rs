//! Opening a data directory as an engine (the log plus the view store),
//! and the marker a server leaves there so that other commands can say
//! where it listens.

use anyhow::Context;
use kappa_engine::Engine;
use kappa_log_embedded::EmbeddedLog;
use kappa_store::{RedbStore, StoreOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where views keep their state, inside the data directory.
const STATE_FILE: &str = "views/state.redb";
/// Where `kappa view snapshot` writes, inside the data directory.
const SNAPSHOT_DIR: &str = "snapshots";
/// Written by `kappa serve` while it runs.
const SERVER_FILE: &str = "server.json";

pub struct Opened {
    pub log: Arc<EmbeddedLog>,
    pub engine: Arc<Engine>,
}

impl Opened {
    /// Stops the log's threads after the engine is done with it.
    pub fn close(self) {
        drop(self.engine);
        self.log.close();
    }
}

/// Opens the data directory's log (taking its lock) and view store.
pub fn open(data_dir: &Path) -> anyhow::Result<Opened> {
    open_with(
        data_dir,
        StoreOptions::default(),
        kappa_engine::EngineOptions::default(),
    )
}

/// [`open`] with store and engine options (the server's flags).
pub fn open_with(
    data_dir: &Path,
    store_options: StoreOptions,
    mut options: kappa_engine::EngineOptions,
) -> anyhow::Result<Opened> {
    if options.snapshot_dir.is_none() {
        options.snapshot_dir = Some(data_dir.join(SNAPSHOT_DIR));
    }
    let log = Arc::new(super::open(data_dir)?);
    let state = data_dir.join(STATE_FILE);
    if let Some(parent) = state.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    let store = RedbStore::open(&state, &store_options)
        .with_context(|| format!("cannot open the view store {}", state.display()))?;
    let engine = Engine::open_with(log.clone(), Arc::new(store), options)
        .with_context(|| format!("cannot open the views in {}", data_dir.display()))?;
    Ok(Opened {
        log,
        engine: Arc::new(engine),
    })
}

/// `server.json`: the running server's pid and addresses. Removed when
/// the server stops (a stale one, after a crash, names a dead pid and is
/// overwritten by the next server).
pub struct ServerMarker {
    path: PathBuf,
}

impl ServerMarker {
    /// `url`: the HTTP API's base URL (`http://` or `https://`).
    pub fn write(data_dir: &Path, url: &str) -> anyhow::Result<ServerMarker> {
        let path = data_dir.join(SERVER_FILE);
        let body = serde_json::json!({
            "pid": std::process::id(),
            "http": url,
        });
        std::fs::write(&path, format!("{body}\n"))
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(ServerMarker { path })
    }

    /// The HTTP URL of the server that holds `data_dir`, if one said so.
    pub fn read(data_dir: &Path) -> Option<String> {
        let text = std::fs::read_to_string(data_dir.join(SERVER_FILE)).ok()?;
        let value: serde_json::Value = serde_json::from_str(&text).ok()?;
        value.get("http")?.as_str().map(str::to_string)
    }
}

impl Drop for ServerMarker {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
