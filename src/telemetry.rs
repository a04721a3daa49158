//! Logging set-up: `tracing` to stdout as text or JSON. Text carries ANSI colours only when
//! stdout is a terminal.
//!
//! The filter comes from `--log-level`, unless `RUST_LOG` is set: then `RUST_LOG` wins, so a
//! developer can turn up one module's logs without editing the Deployment's arguments.
//!
//! JSON lines carry the fields of every span the event is in at the top level of the
//! object, so the object's namespace and name recorded on the reconcile span appear on
//! every line logged while reconciling it, where a log query can filter on them.

use std::fmt;
use std::io::IsTerminal as _;

use anyhow::Context as _;
use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormattedFields, MakeWriter};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::LogFormat;

/// Installs the global subscriber; call once, at start-up.
pub fn init(level: &str, format: LogFormat) -> anyhow::Result<()> {
    let rust_log =
        std::env::var_os(EnvFilter::DEFAULT_ENV).map(|value| value.to_string_lossy().into_owned());
    let filter = filter(level, rust_log.as_deref())?;
    let layer = match format {
        // Colour only for a person at a terminal: a piped or collected log gets plain text.
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_ansi(colour(std::io::stdout().is_terminal()))
            .boxed(),
        LogFormat::Json => json_layer(std::io::stdout).boxed(),
    };
    tracing_subscriber::registry()
        .with(layer.with_filter(filter))
        .try_init()
        .context("installing the tracing subscriber")?;
    Ok(())
}

/// ANSI colour codes: only on a terminal, and never when `NO_COLOR` is set.
fn colour(terminal: bool) -> bool {
    terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// `RUST_LOG`, when set, replaces the `--log-level` directive entirely.
fn filter(level: &str, rust_log: Option<&str>) -> anyhow::Result<EnvFilter> {
    match rust_log {
        Some(directive) => {
            EnvFilter::try_new(directive).with_context(|| format!("invalid RUST_LOG {directive:?}"))
        }
        None => EnvFilter::try_new(level).with_context(|| format!("invalid --log-level {level:?}")),
    }
}

/// The JSON layer, writing to `writer` (tests pass a buffer).
fn json_layer<S, W>(writer: W) -> impl Layer<S>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    tracing_subscriber::fmt::layer()
        .fmt_fields(JsonFields::new())
        .event_format(FlatJson)
        .with_writer(writer)
}

/// One JSON object per event: timestamp, level, target, the innermost span's name, the
/// fields of all enclosing spans (inner ones win on a clash) and the event's own fields.
struct FlatJson;

impl<S> FormatEvent<S, JsonFields> for FlatJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, JsonFields>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let metadata = event.metadata();
        let mut line = Map::new();
        line.insert(
            "timestamp".into(),
            jiff::Timestamp::now().to_string().into(),
        );
        line.insert("level".into(), metadata.level().as_str().into());
        line.insert("target".into(), metadata.target().into());
        if let Some(scope) = ctx.event_scope() {
            let mut innermost = None;
            for span in scope.from_root() {
                innermost = Some(span.name());
                let extensions = span.extensions();
                // JsonFields stores each span's fields as a JSON object.
                if let Some(fields) = extensions.get::<FormattedFields<JsonFields>>()
                    && let Ok(Value::Object(fields)) = serde_json::from_str(&fields.fields)
                {
                    line.extend(fields);
                }
            }
            if let Some(name) = innermost {
                line.insert("span".into(), name.into());
            }
        }
        event.record(&mut FieldVisitor(&mut line));
        writeln!(writer, "{}", Value::Object(line))
    }
}

/// Copies an event's fields into the JSON object, keeping numbers and booleans typed.
struct FieldVisitor<'a>(&'a mut Map<String, Value>);

impl Visit for FieldVisitor<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0.insert(field.name().into(), value.to_string().into());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().into(), format!("{value:?}").into());
    }
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::layer::SubscriberExt as _;

    use super::*;

    /// Collects everything the layer writes.
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.0.lock().expect("buffer lock").extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'w> MakeWriter<'w> for Buffer {
        type Writer = Buffer;

        fn make_writer(&'w self) -> Self::Writer {
            self.clone()
        }
    }

    impl Buffer {
        fn lines(&self) -> Vec<Value> {
            let bytes = self.0.lock().expect("buffer lock").clone();
            String::from_utf8(bytes)
                .expect("utf-8 output")
                .lines()
                .map(|line| serde_json::from_str(line).expect("each line is JSON"))
                .collect()
        }
    }

    #[test]
    fn json_lines_carry_the_span_fields_at_the_top_level() {
        let buffer = Buffer::default();
        let subscriber = tracing_subscriber::registry().with(json_layer(buffer.clone()));
        tracing::subscriber::with_default(subscriber, || {
            let reconcile =
                tracing::info_span!("reconcile", namespace = "search", name = "synonyms");
            let _entered = reconcile.enter();
            let step = tracing::info_span!("act", step = "Update");
            let _entered = step.enter();
            tracing::info!(version = 3, dry = false, "updated package");
        });
        tracing::subscriber::with_default(
            tracing_subscriber::registry().with(json_layer(buffer.clone())),
            || tracing::warn!("outside any span"),
        );

        let lines = buffer.lines();
        assert_eq!(lines.len(), 2, "{lines:?}");
        let line = &lines[0];
        assert_eq!(line["namespace"], "search", "{line}");
        assert_eq!(line["name"], "synonyms", "{line}");
        assert_eq!(line["step"], "Update", "{line}");
        assert_eq!(line["span"], "act", "{line}");
        assert_eq!(line["message"], "updated package", "{line}");
        assert_eq!(line["version"], 3, "{line}");
        assert_eq!(line["dry"], false, "{line}");
        assert_eq!(line["level"], "INFO", "{line}");
        assert!(line["timestamp"].is_string(), "{line}");

        let line = &lines[1];
        assert_eq!(line["message"], "outside any span", "{line}");
        assert_eq!(line["level"], "WARN", "{line}");
        assert!(line.get("span").is_none(), "{line}");
    }

    #[test]
    fn rust_log_overrides_the_flag() {
        let chosen = filter("info", Some("ospkg=trace")).expect("valid RUST_LOG");
        assert_eq!(chosen.to_string(), "ospkg=trace");
        // The flag's value is not even parsed when RUST_LOG decides.
        assert!(filter("ospkg=loud", Some("warn")).is_ok());
        let chosen = filter("ospkg=debug,kube=info", None).expect("valid flag");
        assert!(chosen.to_string().contains("ospkg=debug"), "{chosen}");
    }

    #[test]
    fn bad_directives_name_their_source() {
        let error = filter("ospkg=loud", None).expect_err("bad flag");
        assert!(error.to_string().contains("--log-level"), "{error:#}");
        let error = filter("info", Some("ospkg=loud")).expect_err("bad RUST_LOG");
        assert!(error.to_string().contains("RUST_LOG"), "{error:#}");
    }
}
