//! Validated identifiers.
//!
//! Every name that ends up in a NATS subject token, a JetStream bucket name or a KV key goes
//! through one rule set, so a valid identifier is always safe in all three places:
//!
//! * 1 to 63 characters (the length of a DNS label);
//! * lowercase ASCII letters `a-z`, digits `0-9` and `-` only;
//! * starts and ends with a letter or a digit.
//!
//! The rule deliberately excludes `.` (subject token separator), `*` and `>` (wildcards),
//! whitespace, and `_`. The underscore is reserved as the separator in bucket names
//! (`{platform}_app_{app}`) and as the prefix of internal subject tokens (`_all`, `_any`), so no
//! user name can collide with an internal one.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Maximum length of an identifier, in bytes.
pub const MAX_ID_LEN: usize = 63;

/// What kind of identifier failed validation (used in error messages).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdKind {
    /// A platform name.
    Platform,
    /// A node identifier.
    Node,
    /// An app name.
    App,
    /// A lock name.
    Lock,
    /// An RPC method name.
    Method,
    /// A single subject token.
    SubjectToken,
}

impl fmt::Display for IdKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IdKind::Platform => "platform name",
            IdKind::Node => "node id",
            IdKind::App => "app name",
            IdKind::Lock => "lock name",
            IdKind::Method => "method name",
            IdKind::SubjectToken => "subject token",
        })
    }
}

/// The rule an identifier broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdRule {
    /// The identifier is empty.
    Empty,
    /// The identifier is longer than [`MAX_ID_LEN`].
    TooLong,
    /// The identifier contains a character outside `a-z`, `0-9`, `-`.
    InvalidChar(char),
    /// The identifier starts or ends with `-`.
    EdgeHyphen,
}

impl fmt::Display for IdRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdRule::Empty => f.write_str("must not be empty"),
            IdRule::TooLong => write!(f, "must be at most {MAX_ID_LEN} characters"),
            IdRule::InvalidChar(c) => write!(
                f,
                "contains {c:?}; only lowercase letters a-z, digits 0-9 and '-' are allowed"
            ),
            IdRule::EdgeHyphen => f.write_str("must start and end with a letter or digit"),
        }
    }
}

/// An identifier that failed validation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} {value:?}: {rule}")]
pub struct InvalidId {
    /// Which kind of identifier was being validated.
    pub kind: IdKind,
    /// The rejected input.
    pub value: String,
    /// The rule it broke.
    pub rule: IdRule,
}

/// Checks `value` against the identifier rule set.
pub fn validate_id(kind: IdKind, value: &str) -> Result<(), InvalidId> {
    let fail = |rule| {
        Err(InvalidId {
            kind,
            value: value.to_owned(),
            rule,
        })
    };
    if value.is_empty() {
        return fail(IdRule::Empty);
    }
    if value.len() > MAX_ID_LEN {
        return fail(IdRule::TooLong);
    }
    if let Some(c) = value
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return fail(IdRule::InvalidChar(c));
    }
    if value.starts_with('-') || value.ends_with('-') {
        return fail(IdRule::EdgeHyphen);
    }
    Ok(())
}

macro_rules! identifier {
    ($(#[$doc:meta])* $name:ident, $kind:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Validates `value` and wraps it.
            pub fn new(value: impl Into<String>) -> Result<Self, InvalidId> {
                let value = value.into();
                validate_id($kind, &value)?;
                Ok(Self(value))
            }

            /// The identifier as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl FromStr for $name {
            type Err = InvalidId;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::new(s)
            }
        }

        impl TryFrom<String> for $name {
            type Error = InvalidId;
            fn try_from(s: String) -> Result<Self, Self::Error> {
                Self::new(s)
            }
        }

        impl TryFrom<&str> for $name {
            type Error = InvalidId;
            fn try_from(s: &str) -> Result<Self, Self::Error> {
                Self::new(s)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

identifier!(
    /// The name of a platform (a set of nodes sharing one NATS deployment).
    PlatformName,
    IdKind::Platform
);
identifier!(
    /// The identifier of a node, unique among the live nodes of a platform.
    NodeId,
    IdKind::Node
);
identifier!(
    /// The name of an app, unique within a platform.
    AppName,
    IdKind::App
);
identifier!(
    /// The name of a distributed lock.
    LockName,
    IdKind::Lock
);
identifier!(
    /// The name of an RPC method.
    MethodName,
    IdKind::Method
);
identifier!(
    /// One token of a NATS subject, with the identifier rules.
    SubjectToken,
    IdKind::SubjectToken
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_dns_label_like_names() {
        for ok in ["a", "node-1", "x9", "abc-def-123", &"a".repeat(63)] {
            assert!(NodeId::new(ok).is_ok(), "{ok} should be valid");
        }
    }

    #[test]
    fn rejects_each_rule_with_its_reason() {
        let cases: &[(&str, IdRule)] = &[
            ("", IdRule::Empty),
            (&"a".repeat(64), IdRule::TooLong),
            ("a.b", IdRule::InvalidChar('.')),
            ("a*", IdRule::InvalidChar('*')),
            ("a>", IdRule::InvalidChar('>')),
            ("a b", IdRule::InvalidChar(' ')),
            ("a_b", IdRule::InvalidChar('_')),
            ("Node", IdRule::InvalidChar('N')),
            ("-a", IdRule::EdgeHyphen),
            ("a-", IdRule::EdgeHyphen),
        ];
        for (input, rule) in cases {
            let err = AppName::new(*input).expect_err("must be rejected");
            assert_eq!(err.rule, *rule, "input {input:?}");
            assert_eq!(err.kind, IdKind::App);
        }
    }

    #[test]
    fn error_message_names_kind_value_and_rule() {
        let err = LockName::new("a.b").expect_err("invalid");
        assert_eq!(
            err.to_string(),
            "invalid lock name \"a.b\": contains '.'; only lowercase letters a-z, digits 0-9 and '-' are allowed"
        );
    }

    #[test]
    fn serde_validates_on_deserialize() {
        let ok: NodeId = serde_json::from_str("\"n1\"").expect("valid");
        assert_eq!(ok.as_str(), "n1");
        assert!(serde_json::from_str::<NodeId>("\"n.1\"").is_err());
    }
}
