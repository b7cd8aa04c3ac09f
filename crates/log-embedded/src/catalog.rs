//! The catalog: which topics exist, and the floors that must survive even
//! when the records that set them are cleaned away. One JSON file,
//! `catalog.json`, replaced atomically (temp file, fsync, rename, fsync dir)
//! on every change; changes are rare (DDL, retention steps).

use crate::fs::{self, FileSystem};
use crate::segment::PartitionId;
use kappa_log::{LogError, LogTime, TopicConfig, TopicInfo};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicU32;

pub const CATALOG_FILE: &str = "catalog.json";
const FORMAT: u32 = 1;

/// A topic as the log knows it.
#[derive(Debug)]
pub struct TopicMeta {
    pub id: u32,
    pub name: Arc<str>,
    pub config: TopicConfig,
    pub created: LogTime,
    /// Round-robin cursor for keyless records.
    pub next_keyless: AtomicU32,
}

impl TopicMeta {
    pub fn info(&self) -> TopicInfo {
        TopicInfo {
            name: self.name.to_string(),
            config: self.config,
            created: self.created,
        }
    }
}

/// Per-partition values that records alone cannot tell after cleaning.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionFloor {
    /// First readable offset (raised by retention).
    pub start_offset: u64,
    /// The next offset is at least this (the cleaner may remove the records
    /// that told it).
    pub next_offset: u64,
}

#[derive(Debug, Default)]
pub struct Catalog {
    pub by_name: HashMap<Arc<str>, Arc<TopicMeta>>,
    pub by_id: HashMap<u32, Arc<TopicMeta>>,
    pub next_topic_id: u32,
    pub floors: BTreeMap<PartitionId, PartitionFloor>,
    /// Log time never goes below this (the cleaner may remove the last record).
    pub log_time_floor: u64,
}

#[derive(Serialize, Deserialize)]
struct TopicFile {
    id: u32,
    name: String,
    config: TopicConfig,
    created: LogTime,
}

#[derive(Serialize, Deserialize)]
struct FloorFile {
    topic_id: u32,
    partition: u32,
    #[serde(flatten)]
    floor: PartitionFloor,
}

#[derive(Serialize, Deserialize)]
struct CatalogFile {
    format: u32,
    next_topic_id: u32,
    log_time_floor: u64,
    topics: Vec<TopicFile>,
    floors: Vec<FloorFile>,
}

impl Catalog {
    pub fn path(dir: &Path) -> PathBuf {
        dir.join(CATALOG_FILE)
    }

    pub fn load(fs: &dyn FileSystem, dir: &Path) -> Result<Catalog, LogError> {
        let path = Catalog::path(dir);
        if !fs.exists(&path) {
            return Ok(Catalog {
                next_topic_id: 1,
                ..Catalog::default()
            });
        }
        let bytes = fs::read_file(fs, &path).map_err(|e| LogError::io("read", &path, e))?;
        let file: CatalogFile =
            serde_json::from_slice(&bytes).map_err(|e| LogError::Corruption {
                file: path.clone(),
                offset: 0,
                detail: format!("catalog is not valid: {e}"),
            })?;
        if file.format != FORMAT {
            return Err(LogError::Corruption {
                file: path,
                offset: 0,
                detail: format!(
                    "catalog format {} is not supported (expected {FORMAT})",
                    file.format
                ),
            });
        }
        let mut catalog = Catalog {
            next_topic_id: file.next_topic_id,
            log_time_floor: file.log_time_floor,
            ..Catalog::default()
        };
        for t in file.topics {
            catalog.insert(TopicMeta {
                id: t.id,
                name: t.name.into(),
                config: t.config,
                created: t.created,
                next_keyless: AtomicU32::new(0),
            });
        }
        for f in file.floors {
            let pid = PartitionId {
                topic_id: f.topic_id,
                partition: f.partition,
            };
            catalog.floors.insert(pid, f.floor);
        }
        Ok(catalog)
    }

    pub fn insert(&mut self, meta: TopicMeta) {
        let meta = Arc::new(meta);
        self.by_name.insert(meta.name.clone(), meta.clone());
        self.by_id.insert(meta.id, meta);
    }

    pub fn remove(&mut self, name: &str) -> Option<Arc<TopicMeta>> {
        let meta = self.by_name.remove(name)?;
        self.by_id.remove(&meta.id);
        self.floors.retain(|pid, _| pid.topic_id != meta.id);
        Some(meta)
    }

    pub fn get(&self, name: &str) -> Result<&Arc<TopicMeta>, LogError> {
        self.by_name
            .get(name)
            .ok_or_else(|| LogError::TopicNotFound {
                topic: name.to_string(),
            })
    }

    pub fn floor(&self, pid: PartitionId) -> PartitionFloor {
        self.floors.get(&pid).copied().unwrap_or_default()
    }

    /// Writes the catalog durably (atomic replace).
    pub fn persist(&self, fs: &dyn FileSystem, dir: &Path) -> Result<(), LogError> {
        let mut topics: Vec<TopicFile> = self
            .by_id
            .values()
            .map(|t| TopicFile {
                id: t.id,
                name: t.name.to_string(),
                config: t.config,
                created: t.created,
            })
            .collect();
        topics.sort_by_key(|t| t.id);
        let file = CatalogFile {
            format: FORMAT,
            next_topic_id: self.next_topic_id,
            log_time_floor: self.log_time_floor,
            topics,
            floors: self
                .floors
                .iter()
                .map(|(pid, floor)| FloorFile {
                    topic_id: pid.topic_id,
                    partition: pid.partition,
                    floor: *floor,
                })
                .collect(),
        };
        let bytes = serde_json::to_vec_pretty(&file).expect("catalog serializes");
        let path = Catalog::path(dir);
        fs::write_file_atomic(fs, &path, &bytes).map_err(|e| LogError::io("write", &path, e))
    }
}
