//! The engine: the catalog of topics and views, SQL execution, validated
//! appends, and bringing views up to the log.

use crate::query::{StoredView, TopicTable};
use crate::schema::TopicDef;
use crate::sql::point::PointQuery;
use crate::sql::{self, AsOf, DropKind, Statement};
use crate::view::{Progress, ViewRuntime};
use crate::window_table::{WindowFunction, WindowKind};
use crate::{EngineError, plan};
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use datafusion::prelude::SessionContext;
use kappa_log::{Log, LogTime, ReadLimits, Token, TopicConfig};
use kappa_store::{StateStore, ViewId};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};
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
    /// 1 at creation; each replacement (or rebuild) makes the next.
    #[serde(default = "first_version")]
    pub version: u32,
    /// Verify the view against a rebuild this often (`verify_every`).
    #[serde(default)]
    pub verify_every_micros: Option<u64>,
    /// A version that starts from this snapshot, not loaded yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<std::path::PathBuf>,
}

fn first_version() -> u32 {
    1
}

/// The tables a plan reads, subqueries included.
pub(crate) fn read_tables(plan: &datafusion::logical_expr::LogicalPlan) -> BTreeSet<String> {
    use datafusion::common::tree_node::TreeNodeRecursion;
    let mut out = BTreeSet::new();
    let _ = plan.apply_with_subqueries(|p| {
        if let datafusion::logical_expr::LogicalPlan::TableScan(s) = p {
            out.insert(s.table_name.table().to_string());
        }
        Ok(TreeNodeRecursion::Continue)
    });
    out
}

/// What a statement returns.
#[derive(Debug)]
pub enum Output {
    Rows(Vec<RecordBatch>),
    /// A statement that changed the catalog, with a message.
    Done(String),
}

pub use crate::options::{EngineOptions, QueryOptions};

pub struct Engine {
    pub(crate) log: Arc<dyn Log>,
    pub(crate) store: Arc<dyn StateStore>,
    pub(crate) inner: Mutex<Inner>,
    /// Bumped after every catch-up that committed: waiters for a view's
    /// frontier watch it.
    pub(crate) progress: tokio::sync::watch::Sender<u64>,
    /// Wakes the maintenance task (a view was created).
    pub(crate) kick: tokio::sync::Notify,
    /// Wakes the task that builds views' next versions.
    pub(crate) regen_kick: tokio::sync::Notify,
    /// Whether a maintenance task keeps the views current (else waiters
    /// catch views up themselves).
    pub(crate) maintained: std::sync::atomic::AtomicBool,
    pub(crate) options: EngineOptions,
    /// Each view's columns and key columns, planned once.
    pub(crate) shapes: std::sync::Mutex<HashMap<String, ViewShape>>,
    /// Bumped by every statement that may change the catalog: what a
    /// cached description of a statement is checked against.
    catalog_version: std::sync::atomic::AtomicU64,
    /// `EngineOptions::workers`, changeable while running.
    workers: std::sync::atomic::AtomicUsize,
    /// The memory budget all views share.
    memory: Arc<crate::memory::MemoryPool>,
}

/// What queries need to know of a view.
#[derive(Clone)]
pub(crate) struct ViewShape {
    schema: datafusion::arrow::datatypes::SchemaRef,
    key_columns: Option<Vec<usize>>,
}

/// A view's runtime: one catch-up at a time; queries never wait for it.
pub(crate) type SharedRuntime = Arc<Mutex<ViewRuntime>>;

#[derive(Default)]
pub(crate) struct Inner {
    pub(crate) topics: BTreeMap<String, TopicDef>,
    pub(crate) views: BTreeMap<String, ViewDef>,
    /// Keyed by view name; a version being built by `regen::runtime_key`.
    pub(crate) runtimes: HashMap<String, SharedRuntime>,
    /// Each view's rate of records applied; outlives a runtime that is
    /// dropped and made again.
    pub(crate) meters: HashMap<String, Arc<crate::rate::RateMeter>>,
    pub(crate) next_view_id: ViewId,
    /// Versions being built beside the live ones (CREATE OR REPLACE).
    pub(crate) pending: BTreeMap<String, ViewDef>,
    /// The version each view had before its last swap, kept for rollback.
    pub(crate) retired: BTreeMap<String, crate::regen::Retired>,
    /// Each view's last verify.
    pub(crate) verified: BTreeMap<String, crate::verify::VerifyOutcome>,
    /// The snapshots written of each view, oldest first.
    pub(crate) snapshots: BTreeMap<String, Vec<crate::SnapshotInfo>>,
    /// How far each topic's history was truncated (records before this
    /// log time are gone).
    pub(crate) truncated: BTreeMap<String, u64>,
}

impl Inner {
    /// The live definition of view `name`.
    pub(crate) fn live(&self, name: &str) -> Result<ViewDef, EngineError> {
        self.views
            .get(name)
            .cloned()
            .ok_or_else(|| EngineError::NotFound(name.to_string()))
    }

    /// Records of `topic` before this log time were truncated (0: none).
    pub(crate) fn truncated_before(&self, topic: &str) -> u64 {
        self.truncated.get(topic).copied().unwrap_or(0)
    }
    /// Makes `runtime` the one that maintains view `name`, counting into
    /// the view's rate meter.
    pub(crate) fn install(&mut self, name: &str, mut runtime: ViewRuntime) {
        runtime.meter = self.meters.entry(name.to_string()).or_default().clone();
        self.runtimes
            .insert(name.to_string(), Arc::new(Mutex::new(runtime)));
    }
}

pub(crate) const TOPIC_PREFIX: &str = "topic:";
pub(crate) const VIEW_PREFIX: &str = "view:";

impl Engine {
    pub fn open(log: Arc<dyn Log>, store: Arc<dyn StateStore>) -> Result<Engine, EngineError> {
        Engine::open_with(log, store, EngineOptions::default())
    }

    pub fn open_with(
        log: Arc<dyn Log>,
        store: Arc<dyn StateStore>,
        options: EngineOptions,
    ) -> Result<Engine, EngineError> {
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
            } else if let Some(view) = name.strip_prefix(crate::regen::PENDING_PREFIX) {
                let def: ViewDef = serde_json::from_slice(&bytes).map_err(corrupt)?;
                inner.next_view_id = inner.next_view_id.max(def.id + 1);
                inner.pending.insert(view.to_string(), def);
            } else if name.starts_with(crate::verify::SHADOW_PREFIX) {
                // A verify was cut short: its shadow's state goes.
                let id: ViewId = serde_json::from_slice(&bytes).map_err(corrupt)?;
                inner.next_view_id = inner.next_view_id.max(id + 1);
                let mut w = store.write()?;
                w.drop_view(id)?;
                w.delete_catalog(&name)?;
                w.commit()?;
            } else if let Some(view) = name.strip_prefix(crate::verify::VERIFIED_PREFIX) {
                let o = serde_json::from_slice(&bytes).map_err(corrupt)?;
                inner.verified.insert(view.to_string(), o);
            } else if let Some(view) = name.strip_prefix(crate::snapshot::SNAPSHOTS_PREFIX) {
                let list = serde_json::from_slice(&bytes).map_err(corrupt)?;
                inner.snapshots.insert(view.to_string(), list);
            } else if let Some(topic) = name.strip_prefix(crate::snapshot::TRUNCATED_PREFIX) {
                let before = serde_json::from_slice(&bytes).map_err(corrupt)?;
                inner.truncated.insert(topic.to_string(), before);
            } else if let Some(view) = name.strip_prefix(crate::regen::RETIRED_PREFIX) {
                let r: crate::regen::Retired = serde_json::from_slice(&bytes).map_err(corrupt)?;
                inner.next_view_id = inner.next_view_id.max(r.def.id + 1);
                inner.retired.insert(view.to_string(), r);
            }
        }
        Ok(Engine {
            log,
            store,
            inner: Mutex::new(inner),
            progress: tokio::sync::watch::channel(0).0,
            kick: tokio::sync::Notify::new(),
            regen_kick: tokio::sync::Notify::new(),
            maintained: std::sync::atomic::AtomicBool::new(false),
            shapes: std::sync::Mutex::new(HashMap::new()),
            catalog_version: std::sync::atomic::AtomicU64::new(0),
            workers: std::sync::atomic::AtomicUsize::new(options.workers.max(1)),
            memory: crate::memory::MemoryPool::new(options.memory_budget),
            options,
        })
    }

    /// Sets how many threads catch-ups started from now on keep busy
    /// (see `EngineOptions::workers`).
    pub fn set_workers(&self, workers: usize) {
        self.workers
            .store(workers.max(1), std::sync::atomic::Ordering::Relaxed);
    }

    pub fn log(&self) -> &Arc<dyn Log> {
        &self.log
    }

    /// Changes whenever a statement may have changed the catalog (topics,
    /// views, their columns): a description cached under one version is
    /// good while the version stays the same.
    pub fn catalog_version(&self) -> u64 {
        self.catalog_version
            .load(std::sync::atomic::Ordering::Acquire)
    }

    pub(crate) fn bump_catalog(&self) {
        self.catalog_version
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }

    async fn ddl(&self, statement: Statement) -> Result<Output, EngineError> {
        match statement {
            Statement::CreateTopic { def, config } => self.create_topic(def, config).await,
            Statement::CreateView {
                name,
                query,
                history_micros,
                or_replace,
                verify_every_micros,
            } => {
                if or_replace && self.inner.lock().await.views.contains_key(&name) {
                    self.replace_view(name, query, history_micros, verify_every_micros)
                        .await
                } else {
                    self.create_view(name, query, history_micros, verify_every_micros)
                        .await
                }
            }
            Statement::Drop {
                kind,
                name,
                if_exists,
            } => self.drop(kind, name, if_exists).await,
            other => Err(EngineError::Plan(format!("{other:?} is not DDL"))),
        }
    }

    /// Runs one statement.
    pub async fn execute(&self, sql_text: &str) -> Result<Output, EngineError> {
        self.execute_with(sql_text, &QueryOptions::default()).await
    }

    /// Runs one statement; a query first waits for `options.after`.
    pub async fn execute_with(
        &self,
        sql_text: &str,
        options: &QueryOptions,
    ) -> Result<Output, EngineError> {
        match sql::parse(sql_text)? {
            ddl @ (Statement::CreateTopic { .. }
            | Statement::CreateView { .. }
            | Statement::Drop { .. }) => {
                // Before and after: a description made while it runs is stale.
                self.bump_catalog();
                let done = self.ddl(ddl).await;
                self.bump_catalog();
                done
            }
            Statement::Insert(insert) => self.insert(insert).await,
            Statement::Query { sql, as_of, point } => {
                let at = match &as_of {
                    None => None,
                    Some(a) => Some(self.resolve_as_of(a)?),
                };
                if let Some(p) = &point
                    && let Some(rows) = self.point_query(p, at, options).await?
                {
                    return Ok(Output::Rows(rows));
                }
                self.query_with(&sql, at, options).await.map(Output::Rows)
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

    async fn create_topic(
        &self,
        def: TopicDef,
        config: TopicConfig,
    ) -> Result<Output, EngineError> {
        let mut inner = self.inner.lock().await;
        if inner.views.contains_key(&def.name) {
            return Err(EngineError::Exists(def.name));
        }
        self.log.create_topic(&def.name, config).await?;
        let mut w = self.store.write()?;
        w.put_catalog(
            &format!("{TOPIC_PREFIX}{}", def.name),
            &serde_json::to_vec(&def).expect("topic definitions serialize"),
        )?;
        w.commit()?;
        let msg = format!(
            "created topic {} with {} partition(s)",
            def.name, config.partitions
        );
        inner.topics.insert(def.name.clone(), def);
        Ok(Output::Done(msg))
    }

    /// Registers every log topic the catalog does not know (made by an
    /// older `kappa topic create`, or by another tool on the same log) as
    /// a raw JSON topic, so that SQL can read it. Returns their names.
    pub async fn adopt_log_topics(&self) -> Result<Vec<String>, EngineError> {
        let listed = self.log.list_topics().await?;
        let mut inner = self.inner.lock().await;
        let found: Vec<TopicDef> = listed
            .into_iter()
            .filter(|t| !inner.topics.contains_key(&t.name) && !inner.views.contains_key(&t.name))
            .map(|t| TopicDef {
                name: t.name,
                columns: None,
                key: None,
                event_time: None,
            })
            .collect();
        if found.is_empty() {
            return Ok(Vec::new());
        }
        let mut w = self.store.write()?;
        for def in &found {
            w.put_catalog(
                &format!("{TOPIC_PREFIX}{}", def.name),
                &serde_json::to_vec(def).expect("topic definitions serialize"),
            )?;
        }
        w.commit()?;
        let names = found.iter().map(|d| d.name.clone()).collect();
        for def in found {
            inner.topics.insert(def.name.clone(), def);
        }
        Ok(names)
    }

    async fn create_view(
        &self,
        name: String,
        query: String,
        history_micros: u64,
        verify_every_micros: Option<u64>,
    ) -> Result<Output, EngineError> {
        let mut inner = self.inner.lock().await;
        if inner.views.contains_key(&name)
            || inner.topics.contains_key(&name)
            || inner.pending.contains_key(&name)
        {
            return Err(EngineError::Exists(name));
        }
        let def = ViewDef {
            id: inner.next_view_id,
            name: name.clone(),
            sql: query,
            history_micros,
            version: 1,
            verify_every_micros,
            seed: None,
        };
        let runtime = self
            .plan_and_record(&mut inner, &format!("{VIEW_PREFIX}{name}"), &def)
            .await?;
        inner.views.insert(name.clone(), def);
        inner.install(&name, runtime);
        self.kick.notify_one();
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
                    if inner.pending.contains_key(&name) {
                        // Being restored, or rebuilt in place.
                        self.forget_versions(&mut inner, &name).await?;
                        return Ok(Output::Done(format!("dropped view {name}")));
                    }
                    return if if_exists {
                        Ok(Output::Done(format!("no view {name}")))
                    } else {
                        Err(EngineError::NotFound(name))
                    };
                };
                // A catch-up in flight finishes before the view goes.
                let runtime = inner.runtimes.remove(&name);
                inner.meters.remove(&name);
                self.shapes.lock().expect("not poisoned").remove(&name);
                let _quiet = match &runtime {
                    Some(rt) => Some(rt.lock().await),
                    None => None,
                };
                drop(_quiet);
                self.forget_versions(&mut inner, &name).await?;
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
                let mut readers = Vec::new();
                for v in inner.views.values() {
                    if self.topic_of(&inner, v).await?.name == name {
                        readers.push(v.name.as_str());
                    }
                }
                if !readers.is_empty() {
                    return Err(EngineError::Plan(format!(
                        "cannot drop topic {name}: views read it ({}); drop them first",
                        readers.join(", ")
                    )));
                }
                self.log.delete_topic(&name).await?;
                let mut w = self.store.write()?;
                w.delete_catalog(&format!("{TOPIC_PREFIX}{name}"))?;
                // A topic made again under this name starts whole.
                w.delete_catalog(&format!("{}{name}", crate::snapshot::TRUNCATED_PREFIX))?;
                w.commit()?;
                inner.topics.remove(&name);
                inner.truncated.remove(&name);
                Ok(Output::Done(format!("dropped topic {name}")))
            }
        }
    }

    /// A session whose tables are the topics and, for planning a view, the
    /// other views as definitions (inlined); for queries, the views' rows at
    /// `as_of`.
    pub(crate) async fn session(
        &self,
        inner: &Inner,
        views_as_definitions: bool,
        as_of: Option<u64>,
    ) -> Result<SessionContext, EngineError> {
        // PostgreSQL's grammar, as Kappa's own statements use: among other
        // things `->>` binds tighter than `=` (`payload->>'k' = 'x'`).
        let config = datafusion::prelude::SessionConfig::new()
            .set_str("datafusion.sql_parser.dialect", "PostgreSQL");
        let mut ctx = SessionContext::new_with_config(config);
        datafusion_functions_json::register_all(&mut ctx)?;
        let upto = as_of.unwrap_or(u64::MAX);
        let topics = Arc::new(inner.topics.clone());
        for (name, kind) in [
            ("tumble", WindowKind::Tumble),
            ("TUMBLE", WindowKind::Tumble),
            ("hop", WindowKind::Hop),
            ("HOP", WindowKind::Hop),
        ] {
            ctx.register_udtf(
                name,
                Arc::new(WindowFunction {
                    kind,
                    topics: topics.clone(),
                    log: self.log.clone(),
                    upto,
                }),
            );
        }
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
                let shape = self.shape(inner, v).await?;
                ctx.register_table(v.name.as_str(), Arc::new(self.stored(v, shape, as_of)))?;
            }
        }
        Ok(ctx)
    }

    /// A view's shape, planned on first use.
    async fn shape(&self, inner: &Inner, def: &ViewDef) -> Result<ViewShape, EngineError> {
        if let Some(s) = self.shapes.lock().expect("not poisoned").get(&def.name) {
            return Ok(s.clone());
        }
        // Boxed: planning a view plans a session, which may ask for shapes.
        let runtime = Box::pin(self.runtime(inner, def)).await?;
        let shape = ViewShape {
            schema: runtime.pipeline.schema.clone(),
            key_columns: runtime.pipeline.key_columns(),
        };
        self.shapes
            .lock()
            .expect("not poisoned")
            .insert(def.name.clone(), shape.clone());
        Ok(shape)
    }

    /// Plans a new view (or version) `def` (an unsupported definition is
    /// refused here, before anything is written), records it in the
    /// catalog under `catalog_key`, and takes its id.
    pub(crate) async fn plan_and_record(
        &self,
        inner: &mut Inner,
        catalog_key: &str,
        def: &ViewDef,
    ) -> Result<ViewRuntime, EngineError> {
        let runtime = self.runtime(inner, def).await?;
        let mut w = self.store.write()?;
        w.put_catalog(
            catalog_key,
            &serde_json::to_vec(def).expect("view definitions serialize"),
        )?;
        w.commit()?;
        inner.next_view_id = inner.next_view_id.max(def.id + 1);
        Ok(runtime)
    }

    pub(crate) async fn runtime(
        &self,
        inner: &Inner,
        def: &ViewDef,
    ) -> Result<ViewRuntime, EngineError> {
        let (pipeline, topic) = self.plan_view(inner, def).await?;
        let mut runtime = ViewRuntime::new(
            def.id,
            def.name.clone(),
            topic,
            pipeline,
            def.history_micros,
            self.memory.share(),
        );
        runtime.workers = self.workers.load(std::sync::atomic::Ordering::Relaxed);
        runtime.stage_bytes = self.options.stage_bytes;
        Ok(runtime)
    }

    /// A view definition's stages, and the topic they read.
    async fn plan_view(
        &self,
        inner: &Inner,
        def: &ViewDef,
    ) -> Result<(plan::Pipeline, TopicDef), EngineError> {
        let ctx = self.session(inner, true, None).await?;
        let logical = ctx.state().create_logical_plan(&def.sql).await?;
        let pipeline = plan::compile(&ctx.state(), &logical)?;
        let topic = inner
            .topics
            .get(&pipeline.topic)
            .cloned()
            .ok_or_else(|| EngineError::NotFound(pipeline.topic.clone()))?;
        Ok((pipeline, topic))
    }

    /// The topic view definition `def` reads (planned again).
    pub(crate) async fn topic_of(
        &self,
        inner: &Inner,
        def: &ViewDef,
    ) -> Result<TopicDef, EngineError> {
        Ok(self.plan_view(inner, def).await?.1)
    }

    /// The frontier committed for view (or version) `id`.
    pub(crate) fn committed_frontier(&self, id: ViewId) -> Result<u64, EngineError> {
        Ok(self.store.read()?.meta(id)?.unwrap_or_default().frontier)
    }

    /// The columns a statement would return, planned without running it:
    /// `None` for statements that return no rows (DDL, INSERT).
    pub async fn describe(
        &self,
        sql_text: &str,
    ) -> Result<Option<datafusion::arrow::datatypes::SchemaRef>, EngineError> {
        match sql::parse(sql_text)? {
            Statement::Query { sql, point, .. } => {
                // A key lookup on a view has the view's columns: no
                // planning (a prepared statement is described each run).
                if let Some(p) = point
                    && let Some(def) = self.view(&p.table).await
                {
                    let shape = self.shape(&*self.inner.lock().await, &def).await?;
                    let indices = match &p.columns {
                        None => Some((0..shape.schema.fields().len()).collect::<Vec<_>>()),
                        Some(cs) => cs.iter().map(|c| shape.schema.index_of(c).ok()).collect(),
                    };
                    if let Some(indices) = indices {
                        return Ok(Some(std::sync::Arc::new(shape.schema.project(&indices)?)));
                    }
                }
                let inner = self.inner.lock().await;
                let ctx = self.session(&inner, false, None).await?;
                drop(inner);
                let df = ctx.sql(&sql).await?;
                Ok(Some(std::sync::Arc::new(df.schema().as_arrow().clone())))
            }
            _ => Ok(None),
        }
    }

    /// A view's columns.
    pub async fn view_schema(
        &self,
        name: &str,
    ) -> Result<datafusion::arrow::datatypes::SchemaRef, EngineError> {
        Ok(self.stored_view(name, None).await?.schema)
    }

    /// Runs a SELECT at `as_of` (a log time) or now.
    pub async fn query(
        &self,
        sql: &str,
        as_of: Option<u64>,
    ) -> Result<Vec<RecordBatch>, EngineError> {
        self.query_with(sql, as_of, &QueryOptions::default()).await
    }

    /// Runs a SELECT. With a token in `options`, it first waits (bounded)
    /// until every view it reads has applied the log up to the token.
    /// Without AS OF, views at different frontiers are read at the
    /// earliest of them, so the answer is one point of the log.
    pub async fn query_with(
        &self,
        sql: &str,
        as_of: Option<u64>,
        options: &QueryOptions,
    ) -> Result<Vec<RecordBatch>, EngineError> {
        let inner = self.inner.lock().await;
        let ctx = self.session(&inner, false, as_of).await?;
        let view_names: BTreeSet<String> = inner.views.keys().cloned().collect();
        let building: Vec<String> = inner
            .pending
            .keys()
            .filter(|n| !inner.views.contains_key(*n))
            .cloned()
            .collect();
        drop(inner);
        let mut df = match ctx.sql(sql).await {
            Ok(df) => df,
            Err(e) => return Err(crate::regen::unavailable(sql, &building).unwrap_or(e.into())),
        };
        let views = read_tables(df.logical_plan())
            .into_iter()
            .filter(|t| view_names.contains(t))
            .collect::<Vec<_>>();
        if let Some(token) = options.after {
            self.wait_for(&views, token, options.timeout).await?;
        }
        if as_of.is_none() && views.len() > 1 {
            let mut frontiers = Vec::with_capacity(views.len());
            for v in &views {
                frontiers.push(self.frontier(v).await?.0);
            }
            let low = frontiers.iter().copied().min().unwrap_or(0);
            if frontiers.iter().any(|f| *f != low) {
                let inner = self.inner.lock().await;
                let ctx = self.session(&inner, false, Some(low)).await?;
                drop(inner);
                df = ctx.sql(sql).await?;
            }
        }
        let schema = std::sync::Arc::new(df.schema().as_arrow().clone());
        let batches = df.collect().await?;
        // No rows still says which columns there would be.
        Ok(if batches.is_empty() {
            vec![RecordBatch::new_empty(schema)]
        } else {
            batches
        })
    }

    /// Answers a query that fixes every key column of a view with `=` by
    /// reading that one row, without planning it; `None` when the query
    /// is not such a lookup (DataFusion answers it then, the same way).
    /// Literals must have their column's type, so DataFusion's coercion
    /// rules never come into it.
    async fn point_query(
        &self,
        p: &PointQuery,
        as_of: Option<u64>,
        options: &QueryOptions,
    ) -> Result<Option<Vec<RecordBatch>>, EngineError> {
        let (def, shape) = {
            let inner = self.inner.lock().await;
            let Some(def) = inner.views.get(&p.table).cloned() else {
                return Ok(None);
            };
            let shape = self.shape(&inner, &def).await?;
            (def, shape)
        };
        let Some(key_columns) = &shape.key_columns else {
            return Ok(None);
        };
        if p.equals.len() != key_columns.len() {
            return Ok(None);
        }
        let mut key = Vec::new();
        for &c in key_columns {
            let field = shape.schema.field(c);
            let Some((_, v)) = p.equals.iter().find(|(n, _)| n == field.name()) else {
                return Ok(None);
            };
            let v = match (field.data_type(), v) {
                (DataType::Utf8, ScalarValue::Utf8(Some(_)))
                | (DataType::Int64, ScalarValue::Int64(Some(_)))
                | (DataType::Float64, ScalarValue::Float64(Some(_)))
                | (DataType::Boolean, ScalarValue::Boolean(Some(_))) => v.clone(),
                (DataType::Float64, ScalarValue::Int64(Some(i))) => {
                    ScalarValue::Float64(Some(*i as f64))
                }
                _ => return Ok(None),
            };
            crate::value::encode_scalar(&mut key, &v);
        }
        let indices = match &p.columns {
            None => (0..shape.schema.fields().len()).collect(),
            Some(columns) => match columns
                .iter()
                .map(|c| shape.schema.index_of(c))
                .collect::<Result<Vec<_>, _>>()
            {
                Ok(i) => i,
                // Let DataFusion name the missing column.
                Err(_) => return Ok(None),
            },
        };
        if let Some(token) = options.after {
            self.wait_for(std::slice::from_ref(&def.name), token, options.timeout)
                .await?;
        }
        let view = self.stored(&def, shape, as_of);
        let row = view.row(&key)?;
        Ok(Some(vec![
            view.to_batch(row.into_iter())?.project(&indices)?,
        ]))
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

    /// A view's stored rows as a table, now or at `as_of`.
    pub(crate) async fn stored_view(
        &self,
        name: &str,
        as_of: Option<u64>,
    ) -> Result<StoredView, EngineError> {
        let inner = self.inner.lock().await;
        let def = inner.live(name)?;
        let shape = self.shape(&inner, &def).await?;
        drop(inner);
        Ok(self.stored(&def, shape, as_of))
    }

    /// A view's rows in the store, as a table at `as_of` (or now).
    fn stored(&self, def: &ViewDef, shape: ViewShape, as_of: Option<u64>) -> StoredView {
        StoredView {
            name: def.name.clone(),
            id: def.id,
            history_micros: def.history_micros,
            schema: shape.schema,
            key_columns: shape.key_columns,
            store: self.store.clone(),
            as_of,
        }
    }

    /// A view's definition.
    pub async fn view(&self, name: &str) -> Option<ViewDef> {
        self.inner.lock().await.views.get(name).cloned()
    }

    /// Every view's definition, by name.
    pub async fn views(&self) -> Vec<ViewDef> {
        let mut views: Vec<ViewDef> = self.inner.lock().await.views.values().cloned().collect();
        views.sort_by(|a, b| a.name.cmp(&b.name));
        views
    }

    /// A topic's definition (its schema, key and event-time columns).
    pub async fn topic(&self, name: &str) -> Option<TopicDef> {
        self.inner.lock().await.topics.get(name).cloned()
    }

    /// Every topic's definition, by name.
    pub async fn topics(&self) -> Vec<TopicDef> {
        let mut topics: Vec<TopicDef> = self.inner.lock().await.topics.values().cloned().collect();
        topics.sort_by(|a, b| a.name.cmp(&b.name));
        topics
    }

    /// Brings every view up to the log's current head; returns each view's
    /// progress. Queries are not held up meanwhile: each view's runtime is
    /// locked on its own.
    /// Versions being built (CREATE OR REPLACE) are built to the head
    /// and swapped in too, as an embedded engine has no background task.
    pub async fn catch_up(&self) -> Result<Vec<(String, Progress)>, EngineError> {
        let done = self.catch_up_views(None).await?;
        while self.replacing_any().await {
            self.advance_replacements().await?;
        }
        Ok(done)
    }

    /// Brings every live view up to the log's head (what the maintenance
    /// task does at each commit; versions being built run on their own).
    pub(crate) async fn catch_up_live(&self) -> Result<Vec<(String, Progress)>, EngineError> {
        self.catch_up_views(None).await
    }

    /// Brings one view up to the log's current head.
    pub async fn catch_up_view(&self, name: &str) -> Result<Progress, EngineError> {
        let done = self.catch_up_views(Some(name)).await?;
        done.into_iter()
            .next()
            .map(|(_, p)| p)
            .ok_or_else(|| EngineError::NotFound(name.to_string()))
    }

    async fn catch_up_views(
        &self,
        only: Option<&str>,
    ) -> Result<Vec<(String, Progress)>, EngineError> {
        let head = self.log.head().await?.log_time().0;
        let runtimes: Vec<(String, SharedRuntime)> = {
            let mut inner = self.inner.lock().await;
            let names: Vec<String> = inner
                .views
                .keys()
                .filter(|n| only.is_none_or(|o| o == n.as_str()))
                .cloned()
                .collect();
            let mut out = Vec::new();
            for name in names {
                if !inner.runtimes.contains_key(&name) {
                    let def = inner.views[&name].clone();
                    let rt = self.runtime(&inner, &def).await?;
                    inner.install(&name, rt);
                }
                out.push((name.clone(), inner.runtimes[&name].clone()));
            }
            out
        };
        let mut out = Vec::new();
        for (name, rt) in runtimes {
            let limits = ReadLimits {
                max_records: self.options.batch_records.max(1),
                max_bytes: 32 << 20,
            };
            let result = {
                let mut rt = rt.lock().await;
                rt.catch_up(&self.log, &self.store, head, limits).await
            };
            match result {
                Ok(p) => {
                    if p.commits > 0 {
                        self.progress.send_modify(|g| *g += 1);
                    }
                    out.push((name, p));
                }
                Err(e) => {
                    // Its memory may be ahead of the store: start it again
                    // from what is committed.
                    let mut inner = self.inner.lock().await;
                    if inner
                        .runtimes
                        .get(&name)
                        .is_some_and(|r| Arc::ptr_eq(r, &rt))
                    {
                        inner.runtimes.remove(&name);
                    }
                    self.progress.send_modify(|g| *g += 1);
                    return Err(e);
                }
            }
        }
        Ok(out)
    }

    pub(crate) async fn view_id(&self, view: &str) -> Result<ViewId, EngineError> {
        let inner = self.inner.lock().await;
        Ok(inner
            .views
            .get(view)
            .ok_or_else(|| EngineError::NotFound(view.to_string()))?
            .id)
    }

    /// The log time a view has applied the log up to.
    pub async fn frontier(&self, view: &str) -> Result<LogTime, EngineError> {
        let id = self.view_id(view).await?;
        let meta = self.store.read()?.meta(id)?.unwrap_or_default();
        Ok(LogTime(meta.frontier))
    }
}
