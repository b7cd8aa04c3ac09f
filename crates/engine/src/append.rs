//! Appends of JSON records through the engine: each record is checked
//! against its topic's schema (key and event time taken from it), or, for
//! a raw topic, keyed by a named field; one record that does not fit fails
//! the whole batch and nothing is appended.

use crate::{Engine, EngineError, Output};
use kappa_log::{AppendBatch, AppendRecord, AppendResult};

impl Engine {
    /// `INSERT INTO topic ...`: each row becomes a JSON record, appended
    /// like any other (checked against the schema; all or none).
    pub(crate) async fn insert(
        &self,
        insert: crate::sql::insert::Insert,
    ) -> Result<Output, EngineError> {
        let def = {
            let inner = self.inner.lock().await;
            inner
                .topics
                .get(&insert.topic)
                .cloned()
                .ok_or_else(|| EngineError::NotFound(insert.topic.clone()))?
        };
        let columns: Vec<String> = match (&insert.columns, &def.columns) {
            (Some(named), _) => named.clone(),
            (None, Some(schema)) => schema.iter().map(|c| c.name.clone()).collect(),
            (None, None) => vec![crate::schema::PAYLOAD.to_string()],
        };
        let mut values = Vec::with_capacity(insert.rows.len());
        for (n, row) in insert.rows.into_iter().enumerate() {
            if row.len() != columns.len() {
                return Err(EngineError::Plan(format!(
                    "row {n} of the INSERT has {} values for {} columns ({})",
                    row.len(),
                    columns.len(),
                    columns.join(", ")
                )));
            }
            let value = if def.columns.is_none() {
                // A raw topic: the one value is the record, as JSON text.
                match &row[0] {
                    serde_json::Value::String(s) => s.clone().into_bytes(),
                    other => other.to_string().into_bytes(),
                }
            } else {
                let object: serde_json::Map<String, serde_json::Value> =
                    columns.iter().cloned().zip(row).collect();
                serde_json::Value::Object(object).to_string().into_bytes()
            };
            values.push(value);
        }
        let refs: Vec<&[u8]> = values.iter().map(|v| v.as_slice()).collect();
        let result = self.append_json(&insert.topic, &refs).await?;
        Ok(Output::Done(format!(
            "INSERT 0 {} (token {})",
            refs.len(),
            result.token
        )))
    }

    /// Appends JSON records to a topic, checked against its schema: one
    /// record that does not fit fails the batch and nothing is appended.
    pub async fn append_json(
        &self,
        topic: &str,
        values: &[&[u8]],
    ) -> Result<AppendResult, EngineError> {
        self.append_json_if(topic, values, Vec::new()).await
    }

    /// [`Engine::append_json`] only if every condition holds (else a
    /// conflict naming the current value, and nothing is appended).
    pub async fn append_json_if(
        &self,
        topic: &str,
        values: &[&[u8]],
        conditions: Vec<kappa_log::Condition>,
    ) -> Result<AppendResult, EngineError> {
        let owned = values
            .iter()
            .map(|v| bytes::Bytes::copy_from_slice(v))
            .collect();
        let options = JsonAppend {
            conditions,
            key_field: None,
        };
        self.append_json_owned(topic, owned, options).await
    }

    /// [`Engine::append_json_if`] over values the caller already holds as
    /// `Bytes` (slices of a request body, say): appended without a copy.
    pub async fn append_json_owned(
        &self,
        topic: &str,
        values: Vec<bytes::Bytes>,
        options: JsonAppend,
    ) -> Result<AppendResult, EngineError> {
        let def = {
            let inner = self.inner.lock().await;
            inner
                .topics
                .get(topic)
                .cloned()
                .ok_or_else(|| EngineError::NotFound(topic.to_string()))?
        };
        if let (Some(field), Some(declared)) = (&options.key_field, &def.key)
            && field != declared
        {
            return Err(EngineError::Plan(format!(
                "topic {} takes its key from its column {declared:?}, not {field:?}: leave the key field out",
                def.name
            )));
        }
        let key_field = options.key_field.as_deref().filter(|_| def.key.is_none());
        let mut records = Vec::with_capacity(values.len());
        // One decoder for the batch: its scratch space is reused.
        let mut decoder = crate::decode::RecordDecoder::new(&def);
        for (i, v) in values.into_iter().enumerate() {
            let checked = decoder.check(&v).map_err(|r| EngineError::RecordRejected {
                topic: def.name.clone(),
                index: i,
                field: r.field,
                reason: r.reason,
            })?;
            let key = match key_field {
                Some(field) => {
                    Some(
                        json_key(&v, field).map_err(|reason| EngineError::RecordRejected {
                            topic: def.name.clone(),
                            index: i,
                            field: Some(field.to_string()),
                            reason,
                        })?,
                    )
                }
                None => checked.key.map(bytes::Bytes::from),
            };
            let mut r = AppendRecord::new(topic, v);
            if let Some(k) = key {
                r = r.with_key(k);
            }
            if let Some(t) = checked.event_time {
                r = r.with_event_time(t);
            }
            records.push(r);
        }
        let mut batch = AppendBatch::new(records);
        batch.conditions = options.conditions;
        Ok(self.log.append(batch).await?)
    }
}

/// How [`Engine::append_json_owned`] appends.
#[derive(Default)]
pub struct JsonAppend {
    /// Append only if every condition holds.
    pub conditions: Vec<kappa_log::Condition>,
    /// For a topic without a key column: the top-level field of each
    /// record that is its key (text as is, other values as JSON).
    pub key_field: Option<String>,
}

/// The key of a raw JSON record: its top-level `field`.
fn json_key(value: &[u8], field: &str) -> Result<bytes::Bytes, String> {
    let v: serde_json::Value =
        serde_json::from_slice(value).map_err(|e| format!("not valid JSON: {e}"))?;
    match v.get(field) {
        None | Some(serde_json::Value::Null) => {
            Err(format!("the key field {field:?} is missing or null"))
        }
        Some(serde_json::Value::String(s)) => Ok(bytes::Bytes::from(s.clone())),
        Some(other) => Ok(bytes::Bytes::from(other.to_string())),
    }
}
