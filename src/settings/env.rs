//! Where variables come from: the process environment, or a map in tests.

use std::collections::BTreeMap;

/// Reads environment variables; a seam so tests need not touch the process environment.
pub trait Env {
    /// The variable's value; blank counts as unset.
    fn var(&self, name: &str) -> Option<String>;
    /// Every variable, for `FEEDBACK_DISPATCH__…` overrides.
    fn all(&self) -> Vec<(String, String)>;
}

/// The process environment.
pub(crate) struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.trim().is_empty())
    }
    fn all(&self) -> Vec<(String, String)> {
        std::env::vars().collect()
    }
}

impl Env for BTreeMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).filter(|v| !v.trim().is_empty()).cloned()
    }
    fn all(&self) -> Vec<(String, String)> {
        self.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }
}
