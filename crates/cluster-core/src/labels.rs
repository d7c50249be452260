//! Node labels.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Maximum length of a label key or value.
pub const MAX_LABEL_LEN: usize = 253;

/// Key/value labels attached to a node (zone, tier, capacity, ...).
///
/// Keys: 1 to 253 characters from `a-z A-Z 0-9 - _ . /`, starting with a letter or digit.
/// Values: up to 253 printable ASCII characters without spaces. Labels are owned (copied on
/// input), ordered by key, and serialised as a JSON object.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Labels(BTreeMap<String, String>);

impl Labels {
    /// An empty label set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds a label set from pairs, validating every key and value.
    pub fn from_pairs<K, V>(pairs: impl IntoIterator<Item = (K, V)>) -> Result<Self>
    where
        K: Into<String>,
        V: Into<String>,
    {
        let mut labels = Labels::new();
        for (k, v) in pairs {
            labels.insert(k, v)?;
        }
        Ok(labels)
    }

    /// Sets `key` to `value`, validating both.
    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<String>) -> Result<()> {
        let key = key.into();
        let value = value.into();
        validate_key(&key)?;
        validate_value(&key, &value)?;
        self.0.insert(key, value);
        Ok(())
    }

    /// Removes `key`, returning its value.
    pub fn remove(&mut self, key: &str) -> Option<String> {
        self.0.remove(key)
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// Whether `key` is set to exactly `value`.
    pub fn matches(&self, key: &str, value: &str) -> bool {
        self.get(key) == Some(value)
    }

    /// Iterates over the labels in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Number of labels.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no labels.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fn validate_key(key: &str) -> Result<()> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/');
    if key.is_empty() || key.len() > MAX_LABEL_LEN {
        return Err(Error::InvalidArgument(format!(
            "label key {key:?} must be 1 to {MAX_LABEL_LEN} characters"
        )));
    }
    if !key.starts_with(|c: char| c.is_ascii_alphanumeric()) || !key.chars().all(ok_char) {
        return Err(Error::InvalidArgument(format!(
            "label key {key:?} must start with a letter or digit and use only a-z A-Z 0-9 - _ . /"
        )));
    }
    Ok(())
}

fn validate_value(key: &str, value: &str) -> Result<()> {
    if value.len() > MAX_LABEL_LEN || !value.chars().all(|c| c.is_ascii_graphic()) {
        return Err(Error::InvalidArgument(format!(
            "label {key}: value {value:?} must be at most {MAX_LABEL_LEN} printable ASCII characters without spaces"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_labels_round_trip() {
        let l = Labels::from_pairs([("zone", "us-east-1a"), ("k8s.io/tier", "compute")])
            .expect("valid");
        assert!(l.matches("zone", "us-east-1a"));
        let json = serde_json::to_string(&l).expect("serialise");
        assert_eq!(json, r#"{"k8s.io/tier":"compute","zone":"us-east-1a"}"#);
    }

    #[test]
    fn invalid_labels_are_rejected_and_change_nothing() {
        let mut l = Labels::from_pairs([("a", "1")]).expect("valid");
        assert!(l.insert("", "x").is_err());
        assert!(l.insert("-a", "x").is_err());
        assert!(l.insert("a b", "x").is_err());
        assert!(l.insert("b", "has space").is_err());
        assert_eq!(l.len(), 1);
    }
}
