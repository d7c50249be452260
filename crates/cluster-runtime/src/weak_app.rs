//! A handle to an app that does not keep it alive.

use std::fmt;
use std::sync::Arc;

use crate::App;

/// A handle to an [`App`] that does not keep it alive.
///
/// Resources registered with an app are owned by it; a resource that must act on its app (a
/// backend coordinator stepping the node down) holds a `WeakApp` so no reference cycle keeps
/// the app, its resources and their processes alive after the platform dropped them.
#[derive(Clone)]
pub struct WeakApp {
    upgrade: Arc<dyn Fn() -> Option<App> + Send + Sync>,
}

impl Default for WeakApp {
    /// A handle that never upgrades.
    fn default() -> Self {
        Self {
            upgrade: Arc::new(|| None),
        }
    }
}

impl fmt::Debug for WeakApp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WeakApp")
            .field("alive", &self.upgrade().is_some())
            .finish()
    }
}

impl WeakApp {
    /// A weak handle to `app`.
    pub fn new(app: &App) -> Self {
        let weak = Arc::downgrade(&app.inner);
        Self {
            upgrade: Arc::new(move || weak.upgrade().map(|inner| App { inner })),
        }
    }

    /// The app, while it is alive.
    pub fn upgrade(&self) -> Option<App> {
        (self.upgrade)()
    }
}
