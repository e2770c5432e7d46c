//! Building watches from `[[watch]]` tables. In: one file's raw tables and
//! the `[aws] region` default. Out: each table validated into a `Watch` and
//! added to the `WatchSet` (duplicates merge), or a `ConfigError` naming the
//! file, the table's line and the key (`watch[2].execution_arn`).

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use toml::Spanned;

use super::error::{ConfigError, Source};
use super::raw::RawWatch;
use crate::watch::ids::{Part, check_region};
use crate::watch::{ExecutionRef, Labels, Origin, Watch, WatchSet};

/// Validates one file's `[[watch]]` tables into `set`; returns how many
/// tables the file held (before dedup).
pub(super) fn add_watches(
    src: &Source<'_>,
    watches: &[Spanned<RawWatch>],
    default_region: Option<&str>,
    label_sets: &mut HashSet<Arc<Labels>>,
    set: &mut WatchSet,
) -> Result<usize, ConfigError> {
    // Tables come in file order: count lines from the previous table on, so
    // a file of N watches is read once, not N times.
    let (mut counted_to, mut line) = (0, 1);
    // One copy of the path and of each region for all of this file's watches.
    let file: Arc<Path> = src.path.into();
    let mut regions: Vec<Arc<str>> = Vec::new();
    for (i, raw) in watches.iter().enumerate() {
        let index = i + 1;
        let mut watch = build_watch(src, index, raw, default_region, &file)?;
        match label_sets.get(&watch.labels) {
            Some(known) => watch.labels = known.clone(),
            None => {
                label_sets.insert(watch.labels.clone());
            }
        }
        if let Some(region) = &mut watch.target.region {
            match regions.iter().find(|known| **known == *region) {
                Some(known) => *region = known.clone(),
                None => regions.push(region.clone()),
            }
        }
        let start = raw.span().start.min(src.text.len());
        if start < counted_to {
            (counted_to, line) = (0, 1); // out of order after all: count from the top
        }
        let between = src
            .text
            .as_bytes()
            .get(counted_to..start)
            .unwrap_or_default();
        line += between.iter().filter(|&&b| b == b'\n').count();
        counted_to = start;
        let at = Origin {
            file: file.clone(),
            line: u32::try_from(line).ok(),
        };
        set.insert(watch, at).map_err(|conflict| {
            let labels = raw.get_ref().labels.as_ref();
            let span = labels
                .and_then(|l| l.get(&conflict.label))
                .map_or(raw.span(), |v| v.span());
            let key = format!("watch[{index}].labels.{}", conflict.label);
            src.invalid(span, &key, conflict.to_string())
        })?;
    }
    Ok(watches.len())
}

fn build_watch(
    src: &Source<'_>,
    index: usize,
    raw: &Spanned<RawWatch>,
    default_region: Option<&str>,
    file: &Arc<Path>,
) -> Result<Watch, ConfigError> {
    let w = raw.get_ref();
    let key = |name: &str| format!("watch[{index}].{name}");
    let whole = format!("watch[{index}]");

    let mut target = match (&w.execution_arn, &w.flow, &w.alias, &w.execution) {
        (Some(arn), None, None, None) => {
            let target = ExecutionRef::parse_arn(arn.get_ref())
                .map_err(|e| src.invalid(arn.span(), &key("execution_arn"), e.0))?;
            if let Some(region) = &w.region {
                check_region(region.get_ref())
                    .map_err(|e| src.invalid(region.span(), &key("region"), e.0))?;
                if target.region.as_deref() != Some(region.get_ref().as_str()) {
                    return Err(src.invalid(
                        region.span(),
                        &key("region"),
                        format!(
                            "region {} differs from the execution arn's region {}",
                            region.get_ref(),
                            target.region.as_deref().unwrap_or("-")
                        ),
                    ));
                }
            }
            target
        }
        (None, Some(flow), Some(alias), Some(execution)) => {
            let region = w.region.as_ref().map(|r| r.get_ref().as_str());
            ExecutionRef::parse_parts_located(
                flow.get_ref(),
                alias.get_ref(),
                execution.get_ref(),
                region,
            )
            .map_err(|(part, e)| {
                let span = match part {
                    Part::Flow => flow.span(),
                    Part::Alias => alias.span(),
                    Part::Execution => execution.span(),
                    Part::Region => w.region.as_ref().map_or(raw.span(), |r| r.span()),
                };
                src.invalid(span, &key(part.key()), e.0)
            })?
        }
        (Some(_), ..) => {
            return Err(src.invalid(
                raw.span(),
                &whole,
                "give either execution_arn or flow, alias and execution, not both",
            ));
        }
        (None, flow, alias, execution) => {
            let missing: Vec<&str> = [("flow", flow), ("alias", alias), ("execution", execution)]
                .into_iter()
                .filter(|(_, v)| v.is_none())
                .map(|(name, _)| name)
                .collect();
            let problem = if missing.len() == 3 {
                "missing execution_arn, or flow, alias and execution".to_string()
            } else {
                format!(
                    "missing {} (give flow, alias and execution, or execution_arn)",
                    missing.join(" and ")
                )
            };
            return Err(src.invalid(raw.span(), &whole, problem));
        }
    };
    if target.region.is_none() {
        target.region = default_region.map(Arc::from);
    }

    let labels = labels(src, w.labels.as_ref(), &key("labels"))?;

    Ok(Watch {
        target,
        labels: Arc::new(labels),
        source: file.clone(),
    })
}

/// A table's `labels`: every name non-empty.
pub(super) fn labels(
    src: &Source,
    raw: Option<&BTreeMap<String, Spanned<String>>>,
    key: &str,
) -> Result<BTreeMap<String, String>, ConfigError> {
    let mut labels = BTreeMap::new();
    for (name, value) in raw.into_iter().flatten() {
        if name.is_empty() {
            return Err(src.invalid(value.span(), key, "a label name must not be empty"));
        }
        labels.insert(name.clone(), value.get_ref().clone());
    }
    Ok(labels)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::fixture::*;
    use crate::config::parse_str;

    #[test]
    fn an_unknown_key_in_a_watch_names_the_watch_by_index() {
        let dir = Dir::new();
        let text = format!("{ONE_WATCH}[[watch]]\nexecution_arn = \"{ARN}\"\nlables = {{}}\n");
        let err = dir.error(&text);
        assert!(
            err.starts_with("{main}:7:1: watch[2].lables: unknown key, expected one of"),
            "{err}"
        );
    }

    #[test]
    fn a_bad_execution_arn_names_the_watch_and_the_rule() {
        let dir = Dir::new();
        let bad = ARN.replace("123456789012", "1234");
        let text = format!("{ONE_WATCH}\n[[watch]]\nexecution_arn = \"{bad}\"\n");
        assert_eq!(
            dir.error(&text),
            format!(
                "{{main}}:7:17: watch[2].execution_arn: {bad:?} is not an execution arn: the account must be 12 digits"
            )
        );
    }

    #[test]
    fn arn_parts_that_disagree_are_refused_at_the_later_part() {
        let dir = Dir::new();
        let text = "[[watch]]\n\
                    flow = \"arn:aws:bedrock:us-east-1:123456789012:flow/FLOW123456\"\n\
                    alias = \"arn:aws:bedrock:us-east-1:123456789012:flow/FLOWOTHER1/alias/ALIAS12345\"\n\
                    execution = \"run-1\"\n";
        assert_eq!(
            dir.error(text),
            "{main}:3:9: watch[1].alias: alias arn names flow FLOWOTHER1 but flow is FLOW123456"
        );
    }

    #[test]
    fn a_watch_region_that_contradicts_its_arn_is_refused() {
        let dir = Dir::new();
        let text = format!("[[watch]]\nexecution_arn = \"{ARN}\"\nregion = \"eu-west-1\"\n");
        assert_eq!(
            dir.error(&text),
            "{main}:3:10: watch[1].region: region eu-west-1 differs from the execution arn's region us-east-1"
        );
    }

    #[test]
    fn a_watch_with_both_forms_is_refused() {
        let dir = Dir::new();
        let text = format!("{ONE_WATCH}execution_arn = \"{ARN}\"\n");
        assert_eq!(
            dir.error(&text),
            "{main}:1:1: watch[1]: give either execution_arn or flow, alias and execution, not both"
        );
    }

    #[test]
    fn a_watch_missing_parts_names_them() {
        let dir = Dir::new();
        let text = "[[watch]]\nflow = \"FLOW123456\"\n";
        assert_eq!(
            dir.error(text),
            "{main}:1:1: watch[1]: missing alias and execution (give flow, alias and execution, or execution_arn)"
        );
    }

    #[test]
    fn the_aws_region_fills_in_for_watches_without_one() {
        let dir = Dir::new();
        let text = format!(
            "[aws]\nregion = \"ap-south-1\"\n{ONE_WATCH}[[watch]]\nexecution_arn = \"{ARN}\"\n"
        );
        let config = dir.load(&text).unwrap();
        let regions: Vec<_> = config
            .watches
            .iter()
            .map(|(k, w)| {
                (
                    k.as_str().to_string(),
                    w.target.region.as_deref().unwrap().to_string(),
                )
            })
            .collect();
        assert_eq!(
            regions,
            [
                (
                    "ap-south-1/FLOW123456/ALIAS12345/run-0001".to_string(),
                    "ap-south-1".to_string()
                ),
                (ARN.to_string(), "us-east-1".to_string()),
            ]
        );
    }

    #[test]
    fn an_error_in_an_included_file_counts_watches_within_that_file() {
        let dir = Dir::new();
        let included = dir.write(
            "w/x.toml",
            &format!("[[watch]]\nexecution_arn = \"{ARN}\"\n[[watch]]\nexecution_arn = \"nope\"\n"),
        );
        let err = dir
            .load(&format!("include = [\"w/*.toml\"]\n{ONE_WATCH}"))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "{}:4:17: watch[2].execution_arn: \"nope\" is not an execution arn (arn:PARTITION:bedrock:REGION:ACCOUNT:...)",
                included.display()
            )
        );
    }

    #[test]
    fn watches_with_the_same_labels_share_one_copy_across_files() {
        let dir = Dir::new();
        let watch = |id: &str, team: &str| {
            format!(
                "[[watch]]\nflow = \"FLOW123456\"\nalias = \"ALIAS12345\"\nexecution = \"{id}\"\nlabels = {{ team = \"{team}\" }}\n"
            )
        };
        dir.write("w/a.toml", &watch("a", "search"));
        dir.write("w/b.toml", &watch("b", "search"));
        let main = format!("include = [\"w/*.toml\"]\n{}", watch("c", "ads"));
        let config = dir.load(&main).unwrap();
        let labels: Vec<_> = config
            .watches
            .iter()
            .map(|(_, w)| w.labels.clone())
            .collect();
        assert_eq!(labels.len(), 3);
        let search: Vec<_> = labels.iter().filter(|l| l["team"] == "search").collect();
        assert_eq!(search.len(), 2);
        assert!(Arc::ptr_eq(search[0], search[1]), "one shared copy");
    }

    #[test]
    fn the_same_execution_in_two_files_is_one_watch_with_merged_labels() {
        let dir = Dir::new();
        dir.write(
            "w/x.toml",
            &format!("[[watch]]\nexecution_arn = \"{ARN}\"\nlabels = {{ tier = \"gold\" }}\n"),
        );
        let text = format!(
            "include = [\"w/*.toml\"]\n[[watch]]\nexecution_arn = \"{ARN}\"\nlabels = {{ team = \"search\" }}\n"
        );
        let config = dir.load(&text).unwrap();
        assert_eq!(config.watches.len(), 1);
        assert_eq!(config.watches.merged(), 1);
        let (_, watch) = config.watches.iter().next().unwrap();
        assert_eq!(&*watch.source, dir.main());
        assert_eq!(
            *watch.labels,
            BTreeMap::from([
                ("team".to_string(), "search".to_string()),
                ("tier".to_string(), "gold".to_string())
            ])
        );
    }

    #[test]
    fn a_duplicate_with_a_conflicting_label_names_both_places() {
        let dir = Dir::new();
        let included = dir.write(
            "w/x.toml",
            &format!("\n[[watch]]\nexecution_arn = \"{ARN}\"\nlabels = {{ team = \"ads\" }}\n"),
        );
        let text = format!(
            "include = [\"w/*.toml\"]\n[[watch]]\nexecution_arn = \"{ARN}\"\nlabels = {{ team = \"search\" }}\n"
        );
        let err = dir.load(&text).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "{}:4:19: watch[1].labels.team: duplicate watch {ARN} conflicts with {}:2: label team is \"search\" there and \"ads\" here",
                included.display(),
                dir.main().display()
            )
        );
    }

    /// One execution in every spelling the contract allows (issue 7.1).
    fn spellings() -> Vec<String> {
        let flow_arn = "arn:aws:bedrock:us-east-1:123456789012:flow/FLOW123456";
        let by_parts = |flow: &str, alias: &str, execution: &str, region: &str| {
            format!(
                "[[watch]]\nflow = \"{flow}\"\nalias = \"{alias}\"\nexecution = \"{execution}\"\n{region}"
            )
        };
        vec![
            format!("[[watch]]\nexecution_arn = \"{ARN}\"\n"),
            by_parts("FLOW123456", "ALIAS12345", "run-0001", ""),
            by_parts(
                "FLOW123456",
                "ALIAS12345",
                "run-0001",
                "region = \"us-east-1\"\n",
            ),
            by_parts(flow_arn, "ALIAS12345", "run-0001", ""),
            by_parts(
                "FLOW123456",
                &format!("{flow_arn}/alias/ALIAS12345"),
                "run-0001",
                "",
            ),
            by_parts("FLOW123456", "ALIAS12345", ARN, ""),
        ]
    }

    #[test]
    fn every_spelling_of_one_execution_is_one_watch_named_by_its_arn() {
        let dir = Dir::new();
        let all: String = spellings().concat();
        let text = format!("[aws]\nregion = \"us-east-1\"\n{all}");
        let config = parse_str(&text, &dir.main()).unwrap();
        assert_eq!(config.watches.len(), 1, "{:?}", config.watches);
        assert_eq!(config.watches.merged(), spellings().len() - 1);
        let (key, watch) = config.watches.iter().next().unwrap();
        assert_eq!(key.as_str(), ARN);
        assert_eq!(watch.target.arn.as_deref(), Some(ARN));
        // Every pair, in either order, from the main file.
        for a in spellings() {
            for b in spellings() {
                let text = format!("[aws]\nregion = \"us-east-1\"\n{a}{b}");
                let config = parse_str(&text, &dir.main()).unwrap();
                assert_eq!(config.watches.len(), 1, "{a}{b}");
            }
        }
    }

    #[test]
    fn an_include_that_respells_a_watch_adds_nothing_and_merges_labels() {
        let dir = Dir::new();
        dir.write(
            "w/x.toml",
            &format!("[[watch]]\nexecution_arn = \"{ARN}\"\nlabels = {{ tier = \"gold\" }}\n"),
        );
        let text = "include = [\"w/*.toml\"]\n[[watch]]\nflow = \"FLOW123456\"\nalias = \"ALIAS12345\"\nexecution = \"run-0001\"\nregion = \"us-east-1\"\nlabels = { team = \"search\" }\n";
        let config = dir.load(text).unwrap();
        assert_eq!(config.watches.len(), 1);
        let (key, watch) = config.watches.iter().next().unwrap();
        assert_eq!(key.as_str(), ARN);
        assert_eq!(&*watch.source, dir.main());
        assert_eq!(watch.labels.len(), 2);
        assert_eq!(
            config.summary_lines().last().unwrap(),
            "ok: 1 watch (1 duplicate merged) in 2 files, region us-east-1"
        );
    }

    #[test]
    fn a_label_conflict_across_spellings_names_both_places() {
        let dir = Dir::new();
        let included = dir.write(
            "w/x.toml",
            "[[watch]]\nflow = \"FLOW123456\"\nalias = \"ALIAS12345\"\nexecution = \"run-0001\"\nregion = \"us-east-1\"\nlabels = { team = \"ads\" }\n",
        );
        let text = format!(
            "include = [\"w/*.toml\"]\n[[watch]]\nexecution_arn = \"{ARN}\"\nlabels = {{ team = \"search\" }}\n"
        );
        let err = dir.load(&text).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "{}:6:19: watch[1].labels.team: duplicate watch {ARN} conflicts with {}:2: label team is \"search\" there and \"ads\" here",
                included.display(),
                dir.main().display()
            )
        );
    }

    #[test]
    fn a_watch_left_to_the_default_region_merges_once_the_region_is_known() {
        let dir = Dir::new();
        let text = format!("{ONE_WATCH}[[watch]]\nexecution_arn = \"{ARN}\"\n");
        let mut config = parse_str(&text, &dir.main()).unwrap();
        assert_eq!(config.watches.len(), 2, "the region is not known yet");
        config.watches.resolve_default_region("us-east-1").unwrap();
        assert_eq!(config.watches.len(), 1);
        assert_eq!(config.watches.iter().next().unwrap().0.as_str(), ARN);
    }
}
