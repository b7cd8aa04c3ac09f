//! Descriptions of extended-protocol statements, cached: a driver that
//! runs a prepared statement asks for its columns at every execution
//! (Bind, Describe, Execute), and working them out means parsing it.
//!
//! An entry is keyed by everything the columns can depend on: the
//! statement's text, its parameters' declared types and which of them
//! are NULL (a parameter is bound as a literal of its type, so its value
//! does not change the columns), and the result formats. It holds while
//! the engine's catalog version is the one it was made under.

use pgwire::api::portal::Portal;
use pgwire::api::results::FieldInfo;
use std::collections::HashMap;
use std::sync::Mutex;

/// At most this many statements are remembered (then all are forgotten,
/// and the ones in use come back at their next run).
const CAPACITY: usize = 1024;

#[derive(Default)]
pub struct Described {
    entries: Mutex<HashMap<String, (u64, Vec<FieldInfo>)>>,
}

impl Described {
    /// The key of a portal's description.
    pub fn key(portal: &Portal<String>) -> String {
        let nulls: String = portal
            .parameters
            .iter()
            .map(|p| if p.is_some() { '1' } else { '0' })
            .collect();
        format!(
            "{:?}\0{:?}\0{nulls}\0{}",
            portal.result_column_format,
            portal.statement.parameter_types,
            portal.statement.statement
        )
    }

    pub fn get(&self, key: &str, version: u64) -> Option<Vec<FieldInfo>> {
        let entries = self.entries.lock().expect("described");
        entries
            .get(key)
            .filter(|(v, _)| *v == version)
            .map(|(_, fields)| fields.clone())
    }

    pub fn put(&self, key: String, version: u64, fields: Vec<FieldInfo>) {
        let mut entries = self.entries.lock().expect("described");
        if entries.len() >= CAPACITY && !entries.contains_key(&key) {
            entries.clear();
        }
        entries.insert(key, (version, fields));
    }
}
