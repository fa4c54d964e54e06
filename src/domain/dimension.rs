//! A CloudWatch dimension, and the one validator every dimension passes, whatever its
//! source (`--service`, `--dimension`, ECS or EC2 metadata): a [`Dimension`] can only be
//! made by [`Dimension::new`], so nothing the agent sends can break CloudWatch's rules.
//!
//! Rules ("Dimension" in the CloudWatch API reference, and "Dimensions" in the user
//! guide): a name of 1–255 and a value of 1–1024 ASCII characters, each with at least one
//! that is not white space, and a name that does not start with `:`. Control characters
//! are refused too: they are ASCII, but in a dimension they only garble consoles and logs.

use std::fmt;

use serde::Serialize;
use thiserror::Error;

/// Name of the dimension every metric carries; its value is `--service`.
pub const SERVICE_DIMENSION: &str = "ServiceName";
/// The dimension that tells a task's containers apart, as Container Insights names it.
pub const CONTAINER_DIMENSION: &str = "ContainerName";
/// The dimension of `--task-id-dimension`, as Container Insights names it.
pub const TASK_ID_DIMENSION: &str = "TaskId";
/// Longest dimension name (API reference, `Dimension.Name`).
pub const MAX_NAME_LEN: usize = 255;
/// Longest dimension value (API reference, `Dimension.Value`).
pub const MAX_VALUE_LEN: usize = 1024;
/// Longest dimension name in an EMF document's `DimensionSet` (the EMF specification's
/// JSON schema, `DimensionReference`: 250, where `PutMetricData` takes 255). Checked at
/// start with `--output emf`.
pub const MAX_EMF_NAME_LEN: usize = 250;
/// The member that holds an EMF document's metadata (EMF specification: "_aws");
/// dimensions and metrics are its siblings, so none may take its name.
pub const EMF_METADATA_MEMBER: &str = "_aws";
/// Dimensions one metric may have (PutMetricData API reference, `Dimensions`: "up to
/// 30"), `ServiceName` included.
pub const MAX_DIMENSIONS: usize = 30;

/// A `Name`/`Value` pair that CloudWatch accepts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Dimension {
    /// 1–255 printable ASCII characters, not starting with `:`.
    name: String,
    /// 1–1024 printable ASCII characters.
    value: String,
}

/// Which half of a dimension broke a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Name,
    Value,
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Part::Name => "name",
            Part::Value => "value",
        })
    }
}

/// The rule a dimension name or value breaks.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DimensionError {
    #[error("the {0} must not be empty or blank")]
    Blank(Part),
    #[error("the {part} is {len} characters long; the limit is {limit}")]
    TooLong {
        part: Part,
        len: usize,
        limit: usize,
    },
    #[error("the {part} has {found:?}; CloudWatch takes only printable ASCII characters")]
    NotPrintableAscii { part: Part, found: char },
    #[error("the name must not start with ':'")]
    ColonFirst,
}

impl Dimension {
    /// The dimension, if CloudWatch would accept it.
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Result<Self, DimensionError> {
        let (name, value) = (name.into(), value.into());
        check(&name, Part::Name, MAX_NAME_LEN)?;
        if name.starts_with(':') {
            return Err(DimensionError::ColonFirst);
        }
        check(&value, Part::Value, MAX_VALUE_LEN)?;
        Ok(Dimension { name, value })
    }

    /// `ServiceName=<service>`.
    pub fn service(service: &str) -> Result<Self, DimensionError> {
        Dimension::new(SERVICE_DIMENSION, service)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn value(&self) -> &str {
        &self.value
    }
}

fn check(text: &str, part: Part, limit: usize) -> Result<(), DimensionError> {
    if let Some(found) = text.chars().find(|c| !c.is_ascii() || c.is_ascii_control()) {
        return Err(DimensionError::NotPrintableAscii { part, found });
    }
    if text.trim().is_empty() {
        return Err(DimensionError::Blank(part));
    }
    if text.len() > limit {
        return Err(DimensionError::TooLong {
            part,
            len: text.len(),
            limit,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_values_within_the_rules_are_accepted() {
        let d = Dimension::new("Env", "prod").unwrap();
        assert_eq!((d.name(), d.value()), ("Env", "prod"));
        assert!(Dimension::new("n".repeat(255), "v".repeat(1024)).is_ok());
        assert!(Dimension::new("a b", "x=y:z/ #").is_ok());
    }

    #[test]
    fn each_rule_names_what_breaks_it() {
        use DimensionError::*;
        use Part::*;
        let cases = [
            (("", "v"), Blank(Name)),
            ((" ", "v"), Blank(Name)),
            (("n", ""), Blank(Value)),
            (
                ("n", "\t "),
                NotPrintableAscii {
                    part: Value,
                    found: '\t',
                },
            ),
            ((":n", "v"), ColonFirst),
            (
                ("n", "café"),
                NotPrintableAscii {
                    part: Value,
                    found: 'é',
                },
            ),
            (
                ("n", "v\r"),
                NotPrintableAscii {
                    part: Value,
                    found: '\r',
                },
            ),
            (
                ("n", "\u{1b}[31m"),
                NotPrintableAscii {
                    part: Value,
                    found: '\u{1b}',
                },
            ),
            (
                ("n\u{7f}", "v"),
                NotPrintableAscii {
                    part: Name,
                    found: '\u{7f}',
                },
            ),
        ];
        for ((name, value), want) in cases {
            assert_eq!(Dimension::new(name, value), Err(want), "{name:?}={value:?}");
        }
        let long = Dimension::new("n".repeat(256), "v").unwrap_err();
        assert_eq!(
            long.to_string(),
            "the name is 256 characters long; the limit is 255"
        );
        let long = Dimension::new("n", "v".repeat(1025)).unwrap_err();
        assert!(long.to_string().contains("limit is 1024"), "{long}");
    }
}
