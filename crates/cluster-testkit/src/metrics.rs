//! A process-wide recording `metrics` recorder for tests: install it once, exercise a feature,
//! then assert that its series moved.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};

use metrics::{
    Counter, CounterFn, Gauge, GaugeFn, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder,
    SharedString, Unit,
};

/// What a series recorded so far.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Series {
    /// Counter total.
    pub counter: u64,
    /// Last gauge value.
    pub gauge: f64,
    /// Gauge writes (a gauge set to 0 still counts as written).
    pub gauge_writes: u64,
    /// Histogram samples.
    pub samples: u64,
}

impl Series {
    /// Whether anything was recorded.
    pub fn moved(&self) -> bool {
        self.counter > 0 || self.gauge_writes > 0 || self.samples > 0
    }
}

type Values = Mutex<BTreeMap<String, Series>>;

struct Cell(Arc<Values>, String);

impl Cell {
    fn with(&self, f: impl FnOnce(&mut Series)) {
        let mut g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        f(g.entry(self.1.clone()).or_default());
    }
}

impl CounterFn for Cell {
    fn increment(&self, v: u64) {
        self.with(|s| s.counter += v);
    }
    fn absolute(&self, v: u64) {
        self.with(|s| s.counter = s.counter.max(v));
    }
}

impl GaugeFn for Cell {
    fn increment(&self, v: f64) {
        self.with(|s| {
            s.gauge += v;
            s.gauge_writes += 1;
        });
    }
    fn decrement(&self, v: f64) {
        self.with(|s| {
            s.gauge -= v;
            s.gauge_writes += 1;
        });
    }
    fn set(&self, v: f64) {
        self.with(|s| {
            s.gauge = v;
            s.gauge_writes += 1;
        });
    }
}

impl HistogramFn for Cell {
    fn record(&self, _v: f64) {
        self.with(|s| s.samples += 1);
    }
}

struct TestRecorder(Arc<Values>);

impl TestRecorder {
    fn cell(&self, key: &Key) -> Arc<Cell> {
        Arc::new(Cell(self.0.clone(), series_name(key)))
    }
}

/// `name{a="x",b="y"}` with labels sorted.
fn series_name(key: &Key) -> String {
    let mut labels: Vec<String> = key
        .labels()
        .map(|l| format!("{}=\"{}\"", l.key(), l.value()))
        .collect();
    labels.sort();
    format!("{}{{{}}}", key.name(), labels.join(","))
}

impl Recorder for TestRecorder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(self.cell(key))
    }
    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(self.cell(key))
    }
    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::from_arc(self.cell(key))
    }
}

/// The installed recorder's values.
#[derive(Clone)]
pub struct RecordedMetrics(Arc<Values>);

impl std::fmt::Debug for RecordedMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordedMetrics").finish_non_exhaustive()
    }
}

static INSTALLED: OnceLock<RecordedMetrics> = OnceLock::new();

impl RecordedMetrics {
    /// Installs the recording recorder as the global recorder (once per process) and returns
    /// its values. Panics if another global recorder was installed first.
    pub fn install() -> Self {
        INSTALLED
            .get_or_init(|| {
                let values = Arc::new(Values::default());
                #[allow(clippy::expect_used)]
                metrics::set_global_recorder(TestRecorder(values.clone()))
                    .expect("another global metrics recorder is installed");
                Self(values)
            })
            .clone()
    }

    /// Every series, keyed `name{label="value",...}` (labels sorted).
    pub fn snapshot(&self) -> BTreeMap<String, Series> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The series of metric `name` whose labels include every `(label, value)` of `labels`.
    pub fn find(&self, name: &str, labels: &[(&str, &str)]) -> Vec<(String, Series)> {
        let prefix = format!("{name}{{");
        self.snapshot()
            .into_iter()
            .filter(|(k, _)| k.starts_with(&prefix))
            .filter(|(k, _)| {
                labels
                    .iter()
                    .all(|(l, v)| k.contains(&format!("{l}=\"{v}\"")))
            })
            .collect()
    }

    /// Whether some series of `name` with `labels` moved.
    pub fn moved(&self, name: &str, labels: &[(&str, &str)]) -> bool {
        self.find(name, labels).iter().any(|(_, s)| s.moved())
    }
}
