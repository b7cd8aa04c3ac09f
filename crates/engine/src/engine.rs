//! The engine: the catalog of topics and views, SQL execution, validated
//! appends, and bringing views up to the log.

use crate::query::{StoredView, TopicTable};
use crate::schema::TopicDef;
use crate::sql::{self, AsOf, DropKind, Statement};
use crate::view::{Progress, ViewRuntime};
use crate::{EngineError, plan};
use datafusion::arrow::array::RecordBatch;
use datafusion::prelude::SessionContext;
use kappa_log::{
    AppendBatch, AppendRecord, AppendResult, Log, LogTime, ReadLimits, Token, TopicConfig,
};
use kappa_store::{StateStore, ViewId};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use tokio::sync::Mutex;

/// A view as the catalog keeps it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ViewDef {
    pub id: ViewId,
    pub name: String,
    /// The defining SELECT.
    pub sql: String,
    pub history_micros: u64,
}

/// What a statement returns.
#[derive(Debug)]
pub enum Output {
    Rows(Vec<RecordBatch>),
    /// A statement that changed the catalog, with a message.
    Done(String),
}

pub struct Engine {
    log: Arc<dyn Log>,
    store: Arc<dyn StateStore>,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    topics: BTreeMap<String, TopicDef>,
    views: BTreeMap<String, ViewDef>,
    runtimes: HashMap<String, ViewRuntime>,
    next_view_id: ViewId,
}

const TOPIC_PREFIX: &str = "topic:";
const VIEW_PREFIX: &str = "view:";

impl Engine {
    pub fn open(log: Arc<dyn Log>, store: Arc<dyn StateStore>) -> Result<Engine, EngineError> {
        let mut inner = Inner {
            next_view_id: 1,
            ..Inner::default()
        };
        for (name, bytes) in store.read()?.catalog()? {
            let corrupt = |e: serde_json::Error| {
                EngineError::Store(kappa_store::StoreError::Corrupt(format!(
                    "catalog entry {name}: {e}"
                )))
            };
            if let Some(topic) = name.strip_prefix(TOPIC_PREFIX) {
                let def: TopicDef = serde_json::from_slice(&bytes).map_err(corrupt)?;
                inner.topics.insert(topic.to_string(), def);
            } else if let Some(view) = name.strip_prefix(VIEW_PREFIX) {
                let def: ViewDef = serde_json::from_slice(&bytes).map_err(corrupt)?;
                inner.next_view_id = inner.next_view_id.max(def.id + 1);
                inner.views.insert(view.to_string(), def);
            }
        }
        Ok(Engine {
            log,
            store,
            inner: Mutex::new(inner),
        })
    }

    pub fn log(&self) -> &Arc<dyn Log> {
        &self.log
    }

    /// Runs one statement.
    pub async fn execute(&self, sql_text: &str) -> Result<Output, EngineError> {
        match sql::parse(sql_text)? {
            Statement::CreateTopic { def, partitions } => self.create_topic(def, partitions).await,
            Statement::CreateView {
                name,
                query,
                history_micros,
            } => self.create_view(name, query, history_micros).await,
            Statement::Drop {
                kind,
                name,
                if_exists,
            } => self.drop(kind, name, if_exists).await,
            Statement::Query { sql, as_of } => {
                let at = match &as_of {
                    None => None,
                    Some(a) => Some(self.resolve_as_of(a)?),
                };
                self.query(&sql, at).await.map(Output::Rows)
            }
        }
    }

    fn resolve_as_of(&self, a: &AsOf) -> Result<u64, EngineError> {
        match a {
            AsOf::Token(t) => {
                t.parse::<Token>()
                    .map(|t| t.log_time().0)
                    .map_err(|e| EngineError::AsOf {
                        requested: format!("TOKEN '{t}'"),
                        reason: e.to_string(),
                    })
            }
            AsOf::Timestamp(s) => crate::schema::parse_timestamp(s)
                .filter(|m| *m >= 0)
                .map(|m| m as u64)
                .ok_or_else(|| EngineError::AsOf {
                    requested: format!("TIMESTAMP '{s}'"),
                    reason: "not a timestamp (try '2026-01-01 12:00:00' or RFC 3339)".into(),
                }),
        }
    }

    async fn create_topic(&self, def: TopicDef, partitions: u32) -> Result<Output, EngineError> {
        let mut inner = self.inner.lock().await;
        if inner.views.contains_key(&def.name) {
            return Err(EngineError::Exists(def.name));
        }
        self.log
            .create_topic(&def.name, TopicConfig::with_partitions(partitions))
            .await?;
        let mut w = self.store.write()?;
        w.put_catalog(
            &format!("{TOPIC_PREFIX}{}", def.name),
            &serde_json::to_vec(&def).expect("topic definitions serialize"),
        )?;
        w.commit()?;
        let msg = format!("created topic {} with {partitions} partition(s)", def.name);
        inner.topics.insert(def.name.clone(), def);
        Ok(Output::Done(msg))
    }

    async fn create_view(
        &self,
        name: String,
        query: String,
        history_micros: u64,
    ) -> Result<Output, EngineError> {
        let mut inner = self.inner.lock().await;
        if inner.views.contains_key(&name) || inner.topics.contains_key(&name) {
            return Err(EngineError::Exists(name));
        }
        let def = ViewDef {
            id: inner.next_view_id,
            name: name.clone(),
            sql: query,
            history_micros,
        };
        // Plan it now: an unsupported definition is refused here.
        let runtime = self.runtime(&inner, &def).await?;
        let mut w = self.store.write()?;
        w.put_catalog(
            &format!("{VIEW_PREFIX}{name}"),
            &serde_json::to_vec(&def).expect("view definitions serialize"),
        )?;
        w.commit()?;
        inner.next_view_id += 1;
        inner.views.insert(name.clone(), def);
        inner.runtimes.insert(name.clone(), runtime);
        Ok(Output::Done(format!("created view {name}")))
    }

    async fn drop(
        &self,
        kind: DropKind,
        name: String,
        if_exists: bool,
    ) -> Result<Output, EngineError> {
        let mut inner = self.inner.lock().await;
        match kind {
            DropKind::View => {
                let Some(def) = inner.views.remove(&name) else {
                    return if if_exists {
                        Ok(Output::Done(format!("no view {name}")))
                    } else {
                        Err(EngineError::NotFound(name))
                    };
                };
                inner.runtimes.remove(&name);
                let mut w = self.store.write()?;
                w.delete_catalog(&format!("{VIEW_PREFIX}{name}"))?;
                w.drop_view(def.id)?;
                w.commit()?;
                Ok(Output::Done(format!("dropped view {name}")))
            }
            DropKind::Topic => {
                if !inner.topics.contains_key(&name) {
                    return if if_exists {
                        Ok(Output::Done(format!("no topic {name}")))
                    } else {
                        Err(EngineError::NotFound(name))
                    };
                }
                let readers: Vec<&str> = inner
                    .runtimes
                    .values()
                    .filter(|r| r.topic.name == name)
                    .map(|r| r.name.as_str())
                    .collect();
                if !readers.is_empty() {
                    return Err(EngineError::Plan(format!(
                        "cannot drop topic {name}: views read it ({}); drop them first",
                        readers.join(", ")
                    )));
                }
                self.log.delete_topic(&name).await?;
                let mut w = self.store.write()?;
                w.delete_catalog(&format!("{TOPIC_PREFIX}{name}"))?;
                w.commit()?;
                inner.topics.remove(&name);
                Ok(Output::Done(format!("dropped topic {name}")))
            }
        }
    }

    /// A session whose tables are the topics and, for planning a view, the
    /// other views as definitions (inlined); for queries, the views' rows at
    /// `as_of`.
    async fn session(
        &self,
        inner: &Inner,
        views_as_definitions: bool,
        as_of: Option<u64>,
    ) -> Result<SessionContext, EngineError> {
        let mut ctx = SessionContext::new();
        datafusion_functions_json::register_all(&mut ctx)?;
        let upto = as_of.unwrap_or(u64::MAX);
        for def in inner.topics.values() {
            ctx.register_table(
                def.name.as_str(),
                Arc::new(TopicTable {
                    def: def.clone(),
                    log: self.log.clone(),
                    upto,
                }),
            )?;
        }
        // Views in creation order, so a view's inputs exist before it.
        let mut views: Vec<&ViewDef> = inner.views.values().collect();
        views.sort_by_key(|v| v.id);
        for v in views {
            if views_as_definitions {
                let plan = ctx.state().create_logical_plan(&v.sql).await?;
                ctx.register_table(
                    v.name.as_str(),
                    Arc::new(datafusion::catalog::view::ViewTable::new(
                        plan,
                        Some(v.sql.clone()),
                    )),
                )?;
            } else {
                let plan = ctx.state().create_logical_plan(&v.sql).await?;
                let schema = Arc::new(plan.schema().as_arrow().clone());
                ctx.register_table(
                    v.name.as_str(),
                    Arc::new(StoredView {
                        name: v.name.clone(),
                        id: v.id,
                        schema,
                        store: self.store.clone(),
                        as_of,
                    }),
                )?;
            }
        }
        Ok(ctx)
    }

    async fn runtime(&self, inner: &Inner, def: &ViewDef) -> Result<ViewRuntime, EngineError> {
        let ctx = self.session(inner, true, None).await?;
        let logical = ctx.state().create_logical_plan(&def.sql).await?;
        let pipeline = plan::compile(&ctx.state(), &logical)?;
        let topic = inner
            .topics
            .get(&pipeline.topic)
            .cloned()
            .ok_or_else(|| EngineError::NotFound(pipeline.topic.clone()))?;
        Ok(ViewRuntime {
            id: def.id,
            name: def.name.clone(),
            topic,
            pipeline,
            frontier: None,
            history_micros: def.history_micros,
        })
    }

    /// Runs a SELECT at `as_of` (a log time) or now.
    pub async fn query(
        &self,
        sql: &str,
        as_of: Option<u64>,
    ) -> Result<Vec<RecordBatch>, EngineError> {
        let inner = self.inner.lock().await;
        let ctx = self.session(&inner, false, as_of).await?;
        drop(inner);
        let df = ctx.sql(sql).await?;
        Ok(df.collect().await?)
    }

    /// The oracle: `sql` evaluated as one batch query over every record up
    /// to `upto`, with views expanded to their definitions. An incrementally
    /// maintained view must equal this at its frontier.
    pub async fn evaluate_batch(
        &self,
        sql: &str,
        upto: u64,
    ) -> Result<Vec<RecordBatch>, EngineError> {
        let inner = self.inner.lock().await;
        let ctx = self.session(&inner, true, Some(upto)).await?;
        drop(inner);
        Ok(ctx.sql(sql).await?.collect().await?)
    }

    /// A view's definition.
    pub async fn view(&self, name: &str) -> Option<ViewDef> {
        self.inner.lock().await.views.get(name).cloned()
    }

    /// Appends JSON records to a topic, checked against its schema: one
    /// record that does not fit fails the batch and nothing is appended.
    pub async fn append_json(
        &self,
        topic: &str,
        values: &[&[u8]],
    ) -> Result<AppendResult, EngineError> {
        let def = {
            let inner = self.inner.lock().await;
            inner
                .topics
                .get(topic)
                .cloned()
                .ok_or_else(|| EngineError::NotFound(topic.to_string()))?
        };
        let mut records = Vec::with_capacity(values.len());
        for (i, v) in values.iter().enumerate() {
            let checked = def.check(i, v)?;
            let mut r = AppendRecord::new(topic, bytes::Bytes::copy_from_slice(v));
            if let Some(k) = checked.key {
                r = r.with_key(k);
            }
            if let Some(t) = checked.event_time {
                r = r.with_event_time(t);
            }
            records.push(r);
        }
        Ok(self.log.append(AppendBatch::new(records)).await?)
    }

    /// Brings every view up to the log's current head; returns each view's
    /// progress.
    pub async fn catch_up(&self) -> Result<Vec<(String, Progress)>, EngineError> {
        let head = self.log.head().await?.log_time().0;
        let mut inner = self.inner.lock().await;
        let names: Vec<String> = inner.views.keys().cloned().collect();
        let mut out = Vec::new();
        for name in names {
            if !inner.runtimes.contains_key(&name) {
                let def = inner.views[&name].clone();
                let rt = self.runtime(&inner, &def).await?;
                inner.runtimes.insert(name.clone(), rt);
            }
            let rt = inner.runtimes.get_mut(&name).expect("just inserted");
            let limits = ReadLimits {
                max_records: 50_000,
                max_bytes: 32 << 20,
            };
            let p = rt.catch_up(&self.log, &self.store, head, limits).await?;
            out.push((name, p));
        }
        Ok(out)
    }

    /// The records a view could not evaluate, oldest first: each with its
    /// topic, partition, offset, log time and the reason.
    pub async fn dead_letters(&self, view: &str) -> Result<Vec<serde_json::Value>, EngineError> {
        let id = {
            let inner = self.inner.lock().await;
            inner
                .views
                .get(view)
                .ok_or_else(|| EngineError::NotFound(view.to_string()))?
                .id
        };
        let mut out = Vec::new();
        self.store
            .read()?
            .state_prefix(id, &[crate::view::DEAD_LETTER_PREFIX], &mut |_, v| {
                out.push(serde_json::from_slice(v).unwrap_or(serde_json::Value::Null));
                true
            })?;
        Ok(out)
    }

    /// The log time a view has applied the log up to.
    pub async fn frontier(&self, view: &str) -> Result<LogTime, EngineError> {
        let inner = self.inner.lock().await;
        let def = inner
            .views
            .get(view)
            .ok_or_else(|| EngineError::NotFound(view.to_string()))?;
        let meta = self.store.read()?.meta(def.id)?.unwrap_or_default();
        Ok(LogTime(meta.frontier))
    }
}
