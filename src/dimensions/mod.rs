//! The dimensions of a run, from every source: `ServiceName` (`--service`), `--dimension`
//! flags, the ECS task metadata (`--ecs-dimensions`) and the EC2 instance metadata
//! (`--ec2-dimensions`). Each value passes the one validator, [`Dimension::new`]; what
//! differs is what a broken rule means. A flag is the user's to fix: the agent refuses to
//! start (exit 2). A metadata value is not: that dimension is left out, with one warning
//! naming it and the rule, and everything else is sent.
//!
//! The names of the whole set are known from the configuration alone (the metadata
//! sources add fixed names), so a name given twice or more than 30 dimensions is refused
//! before anything is looked up or started.

use std::sync::Arc;

use thiserror::Error;

use crate::domain::dimension::{
    CONTAINER_DIMENSION, MAX_DIMENSIONS, SERVICE_DIMENSION, TASK_ID_DIMENSION,
};
use crate::domain::{Dimension, DimensionError};

pub mod ec2;

/// What `--ecs-dimensions` adds: the short cluster name and the task definition family.
pub const ECS_NAMES: [&str; 2] = ["ClusterName", "TaskDefinitionFamily"];
/// What `--batch-dimensions` adds: the job queue and the compute environment.
pub const BATCH_NAMES: [&str; 2] = ["JobQueue", "ComputeEnvironment"];
/// What `--ec2-dimensions` may add (the last two only where the metadata has them).
pub const EC2_NAMES: [&str; 3] = ["InstanceId", "InstanceType", "AutoScalingGroupName"];

/// A `--dimension` the agent cannot send.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum FlagError {
    #[error("must be Name=Value")]
    NotAPair,
    #[error(transparent)]
    Rule(#[from] DimensionError),
}

/// A set of dimension names CloudWatch would refuse.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum SetError {
    #[error("{name} is given twice ({why})")]
    Twice { name: String, why: String },
    #[error(
        "{count} dimensions with ServiceName{sources}; CloudWatch takes at most {MAX_DIMENSIONS}"
    )]
    TooMany { count: usize, sources: String },
}

/// One `--dimension Name=Value`. The value may contain `=`; spaces are kept as typed.
pub fn parse_flag(pair: &str) -> Result<Dimension, FlagError> {
    let (name, value) = pair.split_once('=').ok_or(FlagError::NotAPair)?;
    Ok(Dimension::new(name, value)?)
}

/// The dimensions other sources add to the flags' (their names are fixed).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Added {
    /// `--ecs-dimensions`: [`ECS_NAMES`].
    pub ecs: bool,
    /// `--task-id-dimension`: `TaskId`.
    pub task_id: bool,
    /// `--ec2-dimensions`: [`EC2_NAMES`].
    pub ec2: bool,
    /// `--batch-dimensions`: [`BATCH_NAMES`].
    pub batch: bool,
    /// `--metrics …,containers`: `ContainerName` on the per-container metrics.
    pub container: bool,
}

/// Checks the names of the whole set: `ServiceName`, the flags, and the names the
/// metadata sources will add. Each once, and at most 30 in all.
pub fn check_names(flags: &[Dimension], added: Added) -> Result<(), SetError> {
    let mut names: Vec<(&str, &str)> = vec![(SERVICE_DIMENSION, "--service")];
    names.extend(flags.iter().map(|d| (d.name(), "--dimension")));
    if added.ecs {
        names.extend(ECS_NAMES.iter().map(|n| (*n, "--ecs-dimensions")));
    }
    if added.task_id {
        names.push((TASK_ID_DIMENSION, "--task-id-dimension"));
    }
    if added.ec2 {
        names.extend(EC2_NAMES.iter().map(|n| (*n, "--ec2-dimensions")));
    }
    if added.batch {
        names.extend(BATCH_NAMES.iter().map(|n| (*n, "--batch-dimensions")));
    }
    if added.container {
        names.push((CONTAINER_DIMENSION, "--metrics containers"));
    }
    for (i, (name, source)) in names.iter().enumerate() {
        if let Some((_, first)) = names[..i].iter().find(|(n, _)| n == name) {
            let why = if first == source {
                format!("{source} twice")
            } else {
                format!("by {first} and by {source}")
            };
            return Err(SetError::Twice {
                name: (*name).to_owned(),
                why,
            });
        }
    }
    if names.len() > MAX_DIMENSIONS {
        let ecs = added.ecs || added.task_id || added.container;
        let others: Vec<&str> = [(ecs, "ECS"), (added.ec2, "EC2"), (added.batch, "AWS Batch")]
            .into_iter()
            .filter_map(|(on, name)| on.then_some(name))
            .collect();
        let sources = match others.as_slice() {
            [] => String::new(),
            [one] => format!(" and the {one} ones"),
            [first @ .., last] => format!(" and the {} and {last} ones", first.join(", ")),
        };
        return Err(SetError::TooMany {
            count: names.len(),
            sources,
        });
    }
    Ok(())
}

/// A dimension from instance or task metadata, or `None` (with a warning) when its value
/// breaks a rule: an empty cluster name, a value too long, a control character. The
/// metric is still sent, without that dimension.
pub fn from_metadata(source: &str, name: &str, value: &str) -> Option<Dimension> {
    match Dimension::new(name, value) {
        Ok(dimension) => {
            log::info!(
                "dimension {name}={} (from {source})",
                crate::redact::for_log(value)
            );
            Some(dimension)
        }
        Err(e) => {
            log::warn!(
                "{source} gave {name} a value CloudWatch would refuse ({e}): sending without \
                 the {name} dimension"
            );
            None
        }
    }
}

/// `TaskId` of an ECS task (the last part of its ARN), if its value can be sent.
pub fn task_id(task_arn: &str) -> Option<Dimension> {
    let id = task_arn.rsplit('/').next().unwrap_or(task_arn);
    from_metadata("the ECS task metadata", TASK_ID_DIMENSION, id)
}

/// `ClusterName` (the short name) and `TaskDefinitionFamily` of an ECS task, as far as
/// their values can be sent.
pub fn ecs(cluster_name: &str, family: &str) -> Vec<Dimension> {
    let [cluster, family_name] = ECS_NAMES;
    [(cluster, cluster_name), (family_name, family)]
        .into_iter()
        .filter_map(|(name, value)| from_metadata("the ECS task metadata", name, value))
        .collect()
}

/// The run's dimensions in the order they are sent: `ServiceName`, then the flags, the
/// ECS ones and the EC2 ones.
pub fn assemble(
    service: Dimension,
    flags: &[Dimension],
    metadata: impl IntoIterator<Item = Dimension>,
) -> Arc<[Dimension]> {
    std::iter::once(service)
        .chain(flags.iter().cloned())
        .chain(metadata)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn added(ecs: bool, ec2: bool) -> Added {
        Added {
            ecs,
            ec2,
            ..Added::default()
        }
    }

    fn flags(pairs: &[&str]) -> Vec<Dimension> {
        pairs.iter().map(|p| parse_flag(p).unwrap()).collect()
    }

    #[test]
    fn flags_are_name_value_pairs_under_the_one_rule_set() {
        let d = parse_flag("Team=a=b").unwrap();
        assert_eq!((d.name(), d.value()), ("Team", "a=b"));
        assert_eq!(parse_flag("Env"), Err(FlagError::NotAPair));
        assert!(matches!(parse_flag("Env="), Err(FlagError::Rule(_))));
        assert!(matches!(
            parse_flag("Env=a\u{1b}b"),
            Err(FlagError::Rule(_))
        ));
    }

    #[test]
    fn names_must_be_unique_across_every_source() {
        assert!(check_names(&flags(&["Env=prod"]), added(true, true)).is_ok());
        let twice = check_names(&flags(&["A=1", "A=2"]), added(false, false)).unwrap_err();
        assert_eq!(twice.to_string(), "A is given twice (--dimension twice)");
        let service = check_names(&flags(&["ServiceName=x"]), added(false, false)).unwrap_err();
        assert!(
            service
                .to_string()
                .contains("by --service and by --dimension")
        );
        let ecs = check_names(&flags(&["ClusterName=x"]), added(true, false)).unwrap_err();
        let task = Added {
            task_id: true,
            container: true,
            ..Added::default()
        };
        let clash = check_names(&flags(&["ContainerName=x"]), task).unwrap_err();
        assert!(
            clash
                .to_string()
                .contains("by --dimension and by --metrics containers"),
            "{clash}"
        );
        assert!(check_names(&flags(&["TaskId=x"]), task).is_err());
        assert!(check_names(&flags(&["Env=x"]), task).is_ok());
        assert!(
            ecs.to_string()
                .contains("by --dimension and by --ecs-dimensions")
        );
    }

    #[test]
    fn at_most_30_with_service_name_and_the_metadata_names() {
        let pairs: Vec<String> = (0..29).map(|i| format!("D{i}=v")).collect();
        let refs: Vec<&str> = pairs.iter().map(String::as_str).collect();
        assert!(check_names(&flags(&refs), added(false, false)).is_ok());
        assert!(check_names(&flags(&refs[..26]), added(false, true)).is_ok());
        let e = check_names(&flags(&refs[..27]), added(false, true)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "31 dimensions with ServiceName and the EC2 ones; CloudWatch takes at most 30"
        );
        assert!(check_names(&flags(&refs), added(true, false)).is_err());
        let batch = Added {
            batch: true,
            ec2: true,
            ..Added::default()
        };
        let e = check_names(&flags(&refs[..25]), batch).unwrap_err();
        assert_eq!(
            e.to_string(),
            "31 dimensions with ServiceName and the EC2 and AWS Batch ones; CloudWatch takes \
             at most 30"
        );
        let clash = check_names(&flags(&["JobQueue=x"]), batch).unwrap_err();
        assert!(
            clash.to_string().contains("by --batch-dimensions"),
            "{clash}"
        );
    }

    #[test]
    fn a_metadata_value_that_breaks_a_rule_is_left_out() {
        let got = ecs("", "web-api");
        assert_eq!(
            got,
            [Dimension::new("TaskDefinitionFamily", "web-api").unwrap()]
        );
        assert!(ecs("prod\u{1b}[2J", "x\ny").is_empty());
        let long = "c".repeat(1025);
        assert_eq!(ecs(&long, "f").len(), 1);
    }

    #[test]
    fn the_set_starts_with_service_name() {
        let set = assemble(
            Dimension::service("web").unwrap(),
            &flags(&["Env=prod"]),
            ecs("prod", "api"),
        );
        let names: Vec<&str> = set.iter().map(Dimension::name).collect();
        assert_eq!(
            names,
            ["ServiceName", "Env", "ClusterName", "TaskDefinitionFamily"]
        );
    }
}
