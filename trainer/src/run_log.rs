//! The lines a worker logs while it executes a run, kept with the run in Postgres so the run
//! page can show them: every `tracing` event at info level or above inside the worker's `run`
//! span (progress by epoch and step, warnings, the error). The layer only hands lines to a
//! bounded channel, so logging never waits on the database; a writer task inserts them in
//! batches. If the database falls behind by more than the buffer, lines are dropped and the
//! next batch says how many.
use sqlx::PgPool;
use std::{
    fmt::Write as _,
    sync::{
        OnceLock,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};
use tokio::sync::mpsc;
use tracing::{
    Event, Level, Subscriber,
    field::{Field, Visit},
    span,
};
use tracing_subscriber::{Layer, filter::LevelFilter, layer::Context, registry::LookupSpan};

const BUFFER: usize = 10_000;
const BATCH: usize = 500;
const FLUSH_EVERY: Duration = Duration::from_millis(250);

/// One line, as stored in `run_logs`.
#[derive(Debug)]
struct Line {
    run_id: i64,
    attempt: i32,
    at: chrono::DateTime<chrono::Utc>,
    level: &'static str,
    message: String,
}

static SINK: OnceLock<mpsc::Sender<Line>> = OnceLock::new();
static DROPPED: AtomicU64 = AtomicU64::new(0);

/// The layer to install in the process's subscriber; lines go nowhere until `start` runs.
pub fn layer<S>() -> impl Layer<S> + Send + Sync
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    RunLogLayer.with_filter(LevelFilter::INFO)
}

/// Starts the task that writes lines to Postgres. Later calls in the same process (tests run
/// several workers in one) keep the first writer.
pub fn start(pool: &PgPool) {
    SINK.get_or_init(|| {
        let (sender, receiver) = mpsc::channel(BUFFER);
        tokio::spawn(write(pool.clone(), receiver));
        sender
    });
}

/// The run an event belongs to, kept in the `run` span's extensions.
#[derive(Debug, Clone, Copy)]
struct RunScope {
    run_id: i64,
    attempt: i32,
}

struct RunLogLayer;

impl<S> Layer<S> for RunLogLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &span::Attributes<'_>, id: &span::Id, ctx: Context<'_, S>) {
        if attrs.metadata().name() != "run" {
            return;
        }
        let mut fields = ScopeFields::default();
        attrs.record(&mut fields);
        if let (Some(run_id), Some(attempt), Some(span)) = (fields.run_id, fields.attempt, ctx.span(id)) {
            span.extensions_mut().insert(RunScope { run_id, attempt });
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let Some(sink) = SINK.get() else {
            return;
        };
        let Some(scope) = ctx
            .event_scope(event)
            .and_then(|mut spans| spans.find_map(|span| span.extensions().get::<RunScope>().copied()))
        else {
            return;
        };
        let mut text = EventText::default();
        event.record(&mut text);
        let line = Line {
            run_id: scope.run_id,
            attempt: scope.attempt,
            at: chrono::Utc::now(),
            level: level_name(*event.metadata().level()),
            message: text.finish(),
        };
        if sink.try_send(line).is_err() {
            DROPPED.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn level_name(level: Level) -> &'static str {
    match level {
        Level::ERROR => "error",
        Level::WARN => "warn",
        Level::INFO => "info",
        Level::DEBUG => "debug",
        Level::TRACE => "trace",
    }
}

#[derive(Default)]
struct ScopeFields {
    run_id: Option<i64>,
    attempt: Option<i32>,
}

impl Visit for ScopeFields {
    fn record_i64(&mut self, field: &Field, value: i64) {
        match field.name() {
            "run.id" => self.run_id = Some(value),
            "run.attempt" => self.attempt = i32::try_from(value).ok(),
            _ => {}
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        // `run.id = %id` arrives formatted.
        if field.name() == "run.id" {
            self.run_id = format!("{value:?}").parse().ok();
        }
    }
}

/// The event's message followed by its fields, as `key=value`.
#[derive(Default)]
struct EventText {
    message: String,
    fields: String,
}

impl EventText {
    fn finish(self) -> String {
        if self.fields.is_empty() { self.message } else { format!("{}{}", self.message, self.fields) }
    }
}

impl Visit for EventText {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.fields, " {}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            let _ = write!(self.fields, " {}={value}", field.name());
        }
    }
}

/// Inserts lines in batches until every sender is gone. A failed insert is logged (outside
/// any run span, so it does not feed itself) and its batch dropped: logs must not hold a run.
async fn write(pool: PgPool, mut receiver: mpsc::Receiver<Line>) {
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        let open = receiver.recv_many(&mut batch, BATCH).await > 0;
        if !open {
            return;
        }
        // Let a burst of lines collect into one insert.
        tokio::time::sleep(FLUSH_EVERY).await;
        while batch.len() < BATCH {
            match receiver.try_recv() {
                Ok(line) => batch.push(line),
                Err(_) => break,
            }
        }
        let dropped = DROPPED.swap(0, Ordering::Relaxed);
        if dropped > 0
            && let Some(last) = batch.last()
        {
            let note = Line {
                run_id: last.run_id,
                attempt: last.attempt,
                at: last.at,
                level: "warn",
                message: format!("{dropped} log lines were dropped: the database fell behind"),
            };
            batch.push(note);
        }
        if let Err(err) = insert(&pool, &batch).await {
            tracing::warn!(error = %err, lines = batch.len(), "writing run log lines failed");
        }
        batch.clear();
    }
}

async fn insert(pool: &PgPool, lines: &[Line]) -> sqlx::Result<()> {
    let run_ids: Vec<i64> = lines.iter().map(|l| l.run_id).collect();
    let attempts: Vec<i32> = lines.iter().map(|l| l.attempt).collect();
    let ats: Vec<chrono::DateTime<chrono::Utc>> = lines.iter().map(|l| l.at).collect();
    let levels: Vec<&str> = lines.iter().map(|l| l.level).collect();
    let messages: Vec<&str> = lines.iter().map(|l| l.message.as_str()).collect();
    sqlx::query(
        "INSERT INTO run_logs (run_id, attempt, at, level, message)
         SELECT l.run_id, l.attempt, l.at, l.level, l.message
         FROM UNNEST($1::int8[], $2::int4[], $3::timestamptz[], $4::text[], $5::text[])
             WITH ORDINALITY AS l (run_id, attempt, at, level, message, n)
         WHERE EXISTS (SELECT 1 FROM runs WHERE runs.id = l.run_id)
         -- The join may reorder rows; ids must follow the order lines were logged in.
         ORDER BY l.n",
    )
    .bind(&run_ids)
    .bind(&attempts)
    .bind(&ats)
    .bind(&levels)
    .bind(&messages)
    .execute(pool)
    .await?;
    Ok(())
}
